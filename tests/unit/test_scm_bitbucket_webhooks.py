"""Bitbucket Cloud webhook deliveries → InboundEvents: real payloads, signed like Bitbucket."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from engine.scm import (
    CI_COMPLETED,
    PR_APPROVED,
    PR_CHANGES_REQUESTED,
    PR_COMMENT,
    PR_DECLINED,
    PR_MERGED,
    PR_UPDATED,
    ScmError,
    WebhookRejected,
    awaited_matches,
)
from engine.scm.bitbucket import BitbucketPlugin
from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures" / "webhooks" / "bitbucket"
SECRET = "whsec-test-0123456789"
PLUGIN = BitbucketPlugin(workspace="acme", webhook_secret=SECRET)

#: What each real payload must become: (event key, PR id, repository, action).
EXPECTED = {
    "pullrequest.fulfilled.json": (PR_MERGED, 2, "cloudbeers/temp", "fulfilled"),
    "pullrequest.comment_created.json": (
        PR_COMMENT,
        1,
        "rutvijmehta-harness/spring-cloud-alibaba",
        "comment_created",
    ),
}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_bytes())
    return data


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(event_key: str, body: bytes, **headers: str) -> list[Any]:
    sent = {
        "X-Event-Key": event_key,
        "X-Hub-Signature": sign(body),
        "X-Request-UUID": "7f0c2a1e-delivery",
        **headers,
    }
    return PLUGIN.normalize_inbound(sent, body)


def event_key_of(path: Path) -> str:
    return path.stem.replace(".", ":", 1)


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_real_payloads_normalise(path: Path) -> None:
    key, pr_id, repo, action = EXPECTED[path.name]
    [event] = deliver(event_key_of(path), path.read_bytes())
    assert event.event_key == key
    assert event.payload["prId"] == pr_id and event.payload["repo"] == repo
    assert event.payload["action"] == action
    assert event.payload["nativeEvent"] == event_key_of(path)
    assert event.delivery_id == "7f0c2a1e-delivery"
    assert event.plugin_id == "bitbucket"
    assert event.ref is not None
    assert event.ref.key == ("bitbucket", "pull_request", repo, str(pr_id))
    assert event.ref.url == f"https://bitbucket.org/{repo}/pull-requests/{pr_id}"


def test_a_merge_says_who_merged_and_wakes_pr_merged() -> None:
    [event] = deliver(
        "pullrequest:fulfilled", (FIXTURES / "pullrequest.fulfilled.json").read_bytes()
    )
    payload = event.payload
    assert (payload["merged"], payload["state"], payload["author"]) == (True, "merged", "stephenc")
    assert payload["mergeCommit"] == "1986c2284946"
    assert (payload["sourceBranch"], payload["targetBranch"]) == ("foo", "main")
    assert awaited_matches("pr:merged", event.event_key, payload, awaiting_pr_id=2)
    assert not awaited_matches("pr:merged", event.event_key, payload, awaiting_pr_id=3)


def test_a_comment_carries_its_body_and_author() -> None:
    body = (FIXTURES / "pullrequest.comment_created.json").read_bytes()
    [event] = deliver("pullrequest:comment_created", body)
    payload = event.payload
    assert (payload["body"], payload["author"]) == ("test comment", "Rutvij Mehta")
    assert (payload["commentId"], payload["parentId"], payload["merged"]) == (
        311512047,
        None,
        False,
    )
    assert awaited_matches("pr:comment", event.event_key, payload)


def derived(native: str, **changes: Any) -> bytes:
    """A delivery for ``native`` derived from the real merged-PR payload."""
    data = copy.deepcopy(load("pullrequest.fulfilled.json"))
    data["pullrequest"].update(changes.pop("pullrequest", {}))
    data.update(changes)
    return json.dumps(data).encode()


REVIEWER = {"display_name": "Alice Liddell", "nickname": "alice", "uuid": "{a1}", "type": "user"}


@pytest.mark.parametrize(
    ("native", "changes", "key", "author", "state"),
    [
        (
            "pullrequest:rejected",
            {"pullrequest": {"state": "DECLINED", "merge_commit": None}},
            PR_DECLINED,
            "stephenc",
            "declined",
        ),
        (
            "pullrequest:updated",
            {"pullrequest": {"state": "OPEN", "merge_commit": None}},
            PR_UPDATED,
            "stephenc",
            "open",
        ),
        (
            "pullrequest:approved",
            {
                "pullrequest": {"state": "OPEN"},
                "approval": {"date": "2017-03-06T10:41:00+00:00", "user": REVIEWER},
            },
            PR_APPROVED,
            "alice",
            "open",
        ),
        (
            "pullrequest:changes_request_created",
            {
                "pullrequest": {"state": "OPEN"},
                "changes_request": {"date": "2017-03-06T10:41:00+00:00", "user": REVIEWER},
            },
            PR_CHANGES_REQUESTED,
            "alice",
            "open",
        ),
    ],
)
def test_other_pull_request_events(
    native: str, changes: dict[str, Any], key: str, author: str, state: str
) -> None:
    [event] = deliver(native, derived(native, **changes))
    assert event.event_key == key
    assert (event.payload["prId"], event.payload["repo"]) == (2, "cloudbeers/temp")
    assert (event.payload["action"], event.payload["nativeEvent"]) == (native.split(":")[1], native)
    assert (event.payload["author"], event.payload["state"]) == (author, state)
    assert event.payload["merged"] is False
    assert awaited_matches("pr:updated", key, event.payload) is (
        key in (PR_UPDATED, PR_CHANGES_REQUESTED, PR_DECLINED)
    )


def commit_status(state: str) -> bytes:
    fixture = load("pullrequest.fulfilled.json")
    return json.dumps(
        {
            "actor": fixture["actor"],
            "repository": fixture["repository"],
            "commit_status": {
                "type": "build",
                "key": "pipeline-42",
                "name": "Pipeline #42",
                "state": state,
                "url": "https://ci.example.test/42",
                "refname": "foo",
                "commit": {"hash": "a72355f35fde", "type": "commit"},
                "created_on": "2017-03-06T10:40:00+00:00",
                "updated_on": "2017-03-06T10:41:00+00:00",
            },
        }
    ).encode()


@pytest.mark.parametrize(
    ("state", "conclusion"),
    [("SUCCESSFUL", "success"), ("FAILED", "failure"), ("STOPPED", "failure")],
)
def test_a_final_commit_status_is_ci_completed_by_sha(state: str, conclusion: str) -> None:
    [event] = deliver("repo:commit_status_updated", commit_status(state))
    assert event.event_key == CI_COMPLETED and event.ref is None
    assert "prId" not in event.payload  # the status does not name its PR: the poller does
    assert (event.payload["sha"], event.payload["conclusion"]) == ("a72355f35fde", conclusion)
    assert (event.payload["repo"], event.payload["branch"]) == ("cloudbeers/temp", "foo")


def test_events_that_concern_no_finished_pr_produce_nothing() -> None:
    assert deliver("repo:commit_status_updated", commit_status("INPROGRESS")) == []
    body = (FIXTURES / "pullrequest.fulfilled.json").read_bytes()
    assert deliver("pullrequest:created", body) == []
    assert deliver("repo:push", b'{"push": {}}') == []


def test_delivery_id_falls_back_to_the_hook_and_the_body() -> None:
    body = commit_status("SUCCESSFUL")
    headers = {
        "x-event-key": "repo:commit_status_updated",
        "x-hub-signature": sign(body),
        "x-hook-uuid": "{hook-1}",
    }
    [first] = PLUGIN.normalize_inbound(headers, body)
    [again] = PLUGIN.normalize_inbound(headers, body)
    assert first.delivery_id is not None and first.delivery_id.startswith("{hook-1}:")
    assert first.delivery_id == again.delivery_id


@pytest.mark.parametrize(
    "signature",
    [None, "", sign(b"another body"), sign(b"{}", "wrong-secret"), "sha1=" + "0" * 40, "garbage"],
)
def test_a_bad_or_missing_signature_is_rejected(signature: str | None) -> None:
    body = (FIXTURES / "pullrequest.fulfilled.json").read_bytes()
    headers = {"X-Event-Key": "pullrequest:fulfilled"}
    if signature is not None:
        headers["X-Hub-Signature"] = signature
    with pytest.raises(WebhookRejected):
        PLUGIN.normalize_inbound(headers, body)


def test_headers_are_matched_case_insensitively() -> None:
    body = (FIXTURES / "pullrequest.fulfilled.json").read_bytes()
    headers = {"x-event-key": "pullrequest:fulfilled", "X-HUB-SIGNATURE": sign(body)}
    assert [e.event_key for e in PLUGIN.normalize_inbound(headers, body)] == [PR_MERGED]


def test_without_a_secret_every_delivery_is_rejected_naming_the_setting() -> None:
    plugin = BitbucketPlugin(workspace="acme")
    body = (FIXTURES / "pullrequest.fulfilled.json").read_bytes()
    headers = {"X-Event-Key": "pullrequest:fulfilled", "X-Hub-Signature": sign(body)}
    with pytest.raises(WebhookRejected) as caught:
        plugin.normalize_inbound(headers, body)
    assert "plugins.installed.bitbucket.config.webhookSecret" in str(caught.value)
    assert "git.webhookSecret" in str(caught.value)


@pytest.mark.parametrize("body", [b"not json", b"<xml/>", b"[1, 2]"])
def test_a_body_that_is_not_a_json_object_is_an_scm_error(body: bytes) -> None:
    with pytest.raises(ScmError) as caught:
        deliver("pullrequest:fulfilled", body)
    assert not isinstance(caught.value, WebhookRejected)


def test_a_pr_event_without_its_pull_request_is_an_scm_error() -> None:
    with pytest.raises(ScmError, match="no pullrequest id"):
        deliver("pullrequest:fulfilled", b'{"repository": {"full_name": "a/b"}}')


def test_the_secret_never_appears_in_a_rejection() -> None:
    with pytest.raises(WebhookRejected) as caught:
        PLUGIN.normalize_inbound({"X-Hub-Signature": "sha256=00"}, b"{}")
    assert SECRET not in str(caught.value)
