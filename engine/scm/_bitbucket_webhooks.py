"""Bitbucket webhook deliveries → :class:`~state.InboundEvent`: the signature check, and pull
request and commit status events mapped to coro's event keys (see :mod:`engine.scm._events`).

The helpers for Bitbucket's JSON shapes (:func:`dig`, :func:`user_name`, the state tables) live
here because webhook payloads and API answers share them; the plugin imports them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from engine.scm._events import (
    CI_COMPLETED,
    PR_APPROVED,
    PR_CHANGES_REQUESTED,
    PR_COMMENT,
    PR_DECLINED,
    PR_MERGED,
    PR_UPDATED,
)
from engine.scm._http import Json, signature_matches
from engine.scm._protocol import CiState, PrState, ScmError, WebhookRejected
from state import ExternalRef, InboundEvent

__all__ = [
    "CI_EVENT_KEYS",
    "CI_STATES",
    "PR_EVENT_KEYS",
    "PR_STATES",
    "dig",
    "normalize_inbound",
    "user_name",
]

#: Bitbucket's webhook event keys → coro's event keys (see :mod:`engine.scm._events`).
PR_EVENT_KEYS: dict[str, str] = {
    "pullrequest:fulfilled": PR_MERGED,
    "pullrequest:rejected": PR_DECLINED,
    "pullrequest:updated": PR_UPDATED,
    "pullrequest:approved": PR_APPROVED,
    "pullrequest:changes_request_created": PR_CHANGES_REQUESTED,
    "pullrequest:comment_created": PR_COMMENT,
}
CI_EVENT_KEYS = frozenset({"repo:commit_status_updated", "repo:commit_status_created"})

PR_STATES: dict[str, PrState] = {
    "OPEN": "open",
    "MERGED": "merged",
    "DECLINED": "declined",
    "SUPERSEDED": "declined",
}
CI_STATES: dict[str, CiState] = {
    "SUCCESSFUL": "success",
    "FAILED": "failure",
    "STOPPED": "failure",
    "INPROGRESS": "pending",
}
_FINAL_CI_STATES = frozenset({"SUCCESSFUL", "FAILED", "STOPPED"})


def dig(data: object, *keys: str) -> Any:
    """``data[k1][k2]…``, or ``None`` where a level is missing or not an object."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def user_name(user: object) -> str | None:
    """The name a Bitbucket user object is best known by: nickname, username, … or ``None``."""
    if not isinstance(user, dict):
        return None
    for key in ("nickname", "username", "display_name", "account_id", "uuid"):
        if user.get(key):
            return str(user[key])
    return None


def normalize_inbound(
    headers: Mapping[str, str], body: bytes, *, secret: str | None, plugin_id: str
) -> list[InboundEvent]:
    """Verify a delivery's ``X-Hub-Signature`` and turn it into events.

    Pull request events carry ``prId`` and a ``ref`` to the PR. A commit status
    (``repo:commit_status_updated``/``_created`` in a final state) becomes ``ci:completed``
    with the commit's ``sha`` and no ``prId`` or ``ref``: Bitbucket's status payload does
    not say which pull request the commit belongs to, so the PR poller, which reads
    ``/pullrequests/{id}/statuses``, is what ties a build to a job.

    Args:
        secret: the webhook secret; without one every delivery is rejected.
        plugin_id: the plugin id the events and their references carry.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    _verify_signature(lowered, body, secret, plugin_id)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ScmError("Bitbucket webhook: the body is not JSON") from exc
    if not isinstance(data, dict):
        raise ScmError("Bitbucket webhook: the body is not a JSON object")
    native = lowered.get("x-event-key", "").strip()
    delivery = lowered.get("x-request-uuid") or _fallback_delivery_id(lowered, body)
    if native in PR_EVENT_KEYS:
        return [_pr_event(native, data, delivery, plugin_id)]
    if native in CI_EVENT_KEYS:
        return _ci_events(native, data, delivery, plugin_id)
    return []


def _verify_signature(
    headers: Mapping[str, str], body: bytes, secret: str | None, plugin_id: str
) -> None:
    if not secret:
        raise WebhookRejected(
            "Bitbucket webhook rejected: no webhook secret is configured; set "
            f"plugins.installed.{plugin_id}.config.webhookSecret (or "
            "git.webhookSecret) to the secret of the repository's webhook"
        )
    signature = headers.get("x-hub-signature", "").strip()
    if not signature:
        raise WebhookRejected("Bitbucket webhook rejected: no X-Hub-Signature header")
    if not signature_matches(signature, secret, body):
        raise WebhookRejected("Bitbucket webhook rejected: the signature does not match")


def _pr_event(native: str, data: Json, delivery: str | None, plugin_id: str) -> InboundEvent:
    pr = data.get("pullrequest")
    if not isinstance(pr, dict) or pr.get("id") is None:
        raise ScmError(f"Bitbucket webhook {native}: the payload has no pullrequest id")
    repo = dig(data, "repository", "full_name") or dig(pr, "destination", "repository", "full_name")
    if not repo:
        raise ScmError(f"Bitbucket webhook {native}: the payload names no repository")
    pr_id = int(pr["id"])
    state = PR_STATES.get(str(pr.get("state", "")).upper(), "open")
    url = dig(pr, "links", "html", "href")
    payload: Json = {
        "nativeEvent": native,
        "action": native.split(":", 1)[1],
        "repo": repo,
        "prId": pr_id,
        "state": state,
        "merged": state == "merged",
        "title": pr.get("title"),
        "sourceBranch": dig(pr, "source", "branch", "name"),
        "targetBranch": dig(pr, "destination", "branch", "name"),
        "url": url,
    }
    actor = data.get("actor")
    if native == "pullrequest:approved":
        actor = dig(data, "approval", "user") or actor
    elif native == "pullrequest:changes_request_created":
        actor = dig(data, "changes_request", "user") or actor
    elif native == "pullrequest:comment_created":
        comment = data.get("comment") or {}
        actor = comment.get("user") or actor
        payload["body"] = dig(comment, "content", "raw") or ""
        payload["commentId"] = comment.get("id")
        payload["parentId"] = dig(comment, "parent", "id")
        if isinstance(comment.get("inline"), dict):
            payload["path"] = comment["inline"].get("path")
            payload["line"] = comment["inline"].get("to") or comment["inline"].get("from")
    elif native == "pullrequest:fulfilled":
        payload["mergeCommit"] = dig(pr, "merge_commit", "hash")
    payload["author"] = user_name(actor) or user_name(pr.get("author"))
    return InboundEvent(
        event_key=PR_EVENT_KEYS[native],
        payload=payload,
        plugin_id=plugin_id,
        ref=ExternalRef(
            kind="pull_request",
            plugin_id=plugin_id,
            repo_key=repo,
            external_id=str(pr_id),
            url=url,
        ),
        delivery_id=delivery,
    )


def _ci_events(native: str, data: Json, delivery: str | None, plugin_id: str) -> list[InboundEvent]:
    status = data.get("commit_status")
    if not isinstance(status, dict):
        raise ScmError(f"Bitbucket webhook {native}: the payload has no commit_status")
    state = str(status.get("state", "")).upper()
    if state not in _FINAL_CI_STATES:
        return []
    repo = dig(data, "repository", "full_name") or dig(status, "repository", "full_name")
    payload: Json = {
        "nativeEvent": native,
        "action": native.split(":", 1)[1],
        "repo": repo,
        "sha": dig(status, "commit", "hash"),
        "state": state,
        "conclusion": CI_STATES[state],
        "key": status.get("key"),
        "name": status.get("name"),
        "url": status.get("url"),
        "branch": status.get("refname"),
        "author": user_name(data.get("actor")),
    }
    return [
        InboundEvent(
            event_key=CI_COMPLETED,
            payload=payload,
            plugin_id=plugin_id,
            delivery_id=delivery,
        )
    ]


def _fallback_delivery_id(headers: Mapping[str, str], body: bytes) -> str | None:
    """Without ``X-Request-UUID``: the hook's UUID and a digest of the body, so a redelivery
    is still recognised."""
    hook = headers.get("x-hook-uuid")
    if not hook:
        return None
    return f"{hook}:{hashlib.sha256(body).hexdigest()[:16]}"
