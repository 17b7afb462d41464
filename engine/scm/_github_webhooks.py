"""GitHub webhook deliveries → :class:`~state.InboundEvent`: the signature check and the mapping
of each native event to coro's event keys (see :mod:`engine.scm._events`)."""

from __future__ import annotations

import json
from collections.abc import Mapping

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
from engine.scm._protocol import ScmError, WebhookRejected
from state import ExternalRef, InboundEvent

__all__ = ["CHECK_FAILED", "login", "normalize_inbound"]

#: Check run conclusions that fail CI.
CHECK_FAILED = {"failure", "timed_out", "cancelled", "action_required", "startup_failure"}


def login(user: object) -> str | None:
    """The ``login`` of a GitHub user object, or ``None``."""
    return user.get("login") if isinstance(user, dict) else None


def normalize_inbound(
    headers: Mapping[str, str], body: bytes, *, secret: str | None, plugin_id: str
) -> list[InboundEvent]:
    """Verify ``X-Hub-Signature-256`` and map the delivery to event keys.

    ``pull_request`` ``opened`` maps to nothing: coro opens its own pull requests, and a job
    waiting on ``pr:updated`` must not be woken by that. ``status`` events (legacy commit
    statuses) name no pull request and map to nothing either; ``check_run`` and
    ``check_suite`` give one ``ci:completed`` per pull request they list.

    Args:
        secret: the webhook secret; without one every delivery is rejected.
        plugin_id: the plugin id the events and their references carry.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if not secret:
        raise WebhookRejected(
            "GitHub webhook rejected: no webhook secret is configured; set "
            f"plugins.installed.{plugin_id}.config.webhookSecret (or git.webhookSecret)",
            status=401,
        )
    signature = lowered.get("x-hub-signature-256", "")
    if not signature:
        raise WebhookRejected("GitHub webhook rejected: no X-Hub-Signature-256", status=401)
    if not signature_matches(signature, secret, body):
        raise WebhookRejected(
            "GitHub webhook rejected: X-Hub-Signature-256 does not match the configured secret",
            status=401,
        )
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScmError("GitHub webhook body is not JSON", status=400) from exc
    if not isinstance(data, dict):
        raise ScmError("GitHub webhook body is not a JSON object", status=400)
    native = lowered.get("x-github-event", "")
    try:
        found = _map_event(native, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ScmError(f"GitHub {native} webhook is missing {exc}", status=400) from exc
    repo = (data.get("repository") or {}).get("full_name", "")
    html = (data.get("repository") or {}).get("html_url", "")
    events = []
    for key, number, url, extra in found:
        payload = {
            "nativeEvent": native,
            "action": data.get("action"),
            "repo": repo,
            "prId": number,
            **extra,
        }
        ref = ExternalRef(
            kind="pull_request",
            plugin_id=plugin_id,
            repo_key=repo,
            external_id=str(number),
            url=url or (f"{html}/pull/{number}" if html else None),
        )
        events.append(
            InboundEvent(
                event_key=key,
                payload=payload,
                plugin_id=plugin_id,
                ref=ref,
                delivery_id=lowered.get("x-github-delivery"),
            )
        )
    return events


_Found = tuple[str, int, str | None, Json]
_REVIEW_KEYS = {
    "approved": PR_APPROVED,
    "changes_requested": PR_CHANGES_REQUESTED,
    "commented": PR_COMMENT,
}


def _map_event(native: str, data: Json) -> list[_Found]:
    """(event key, PR number, PR URL, extra payload) for each PR the delivery concerns."""
    action = data.get("action")
    sender = login(data.get("sender"))
    if native == "pull_request":
        pr = data["pull_request"]
        number, url = int(pr["number"]), pr.get("html_url")
        extra = {
            "author": sender,
            "state": "merged" if pr.get("merged") else pr.get("state"),
            "merged": bool(pr.get("merged")),
            "sha": (pr.get("head") or {}).get("sha"),
        }
        if action == "closed":
            key = PR_MERGED if pr.get("merged") else PR_DECLINED
            if pr.get("merged"):
                extra["mergeCommit"] = pr.get("merge_commit_sha")
            return [(key, number, url, extra)]
        if action in ("synchronize", "edited", "reopened"):
            return [(PR_UPDATED, number, url, extra)]
        return []
    if native == "pull_request_review" and action == "submitted":
        pr, review = data["pull_request"], data["review"]
        verdict = str(review.get("state", "")).lower()
        review_key = _REVIEW_KEYS.get(verdict)
        if review_key is None:
            return []
        extra = {
            "author": login(review.get("user")),
            "body": review.get("body") or "",
            "state": verdict,
            "sha": review.get("commit_id"),
            "reviewId": review.get("id"),
        }
        return [(review_key, int(pr["number"]), pr.get("html_url"), extra)]
    if native == "issue_comment" and action == "created":
        issue, comment = data["issue"], data["comment"]
        if not issue.get("pull_request"):
            return []  # a plain issue, not a pull request
        extra = {
            "author": login(comment.get("user")),
            "body": comment.get("body") or "",
            "commentId": comment.get("id"),
        }
        return [(PR_COMMENT, int(issue["number"]), issue.get("html_url"), extra)]
    if native == "pull_request_review_comment" and action == "created":
        pr, comment = data["pull_request"], data["comment"]
        extra = {
            "author": login(comment.get("user")),
            "body": comment.get("body") or "",
            "commentId": comment.get("id"),
            "parentId": comment.get("in_reply_to_id"),
            "path": comment.get("path"),
            "line": comment.get("line"),
        }
        return [(PR_COMMENT, int(pr["number"]), pr.get("html_url"), extra)]
    if native in ("check_run", "check_suite") and action == "completed":
        check = data[native]
        conclusion = check.get("conclusion")
        state = "failure" if conclusion in CHECK_FAILED else "success"
        extra = {
            "conclusion": conclusion,
            "state": state,
            "sha": check.get("head_sha"),
            "name": check.get("name") or (check.get("app") or {}).get("name"),
        }
        return [
            (CI_COMPLETED, int(pr["number"]), None, dict(extra))
            for pr in check.get("pull_requests") or []
        ]
    return []
