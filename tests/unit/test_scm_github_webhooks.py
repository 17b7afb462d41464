"""GitHub webhooks: signatures checked, real deliveries normalised into coro's event keys."""

from __future__ import annotations

import copy
import json
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
)
from engine.scm.github import GitHubPlugin, webhook_signature
from state import InboundEvent
from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures" / "webhooks" / "github"
SECRET = "test-webhook-secret"

#: fixture → (event key, PR number, repository, action), read off the payloads by hand.
EXPECTED = {
    "pull_request.closed.json": (PR_MERGED, 117, "robvanderleek/create-issue-branch", "closed"),
    "pull_request.closed-unmerged.json": (PR_DECLINED, 2, "Codertocat/Hello-World", "closed"),
    "pull_request_review.submitted.json": (PR_COMMENT, 2, "Codertocat/Hello-World", "submitted"),
    "issue_comment.created.json": (PR_COMMENT, 3, "chhsia0/knative-route-demo", "created"),
    "check_suite.completed.json": (CI_COMPLETED, 2, "Codertocat/Hello-World", "completed"),
    "check_run.completed.json": (CI_COMPLETED, 2, "Codertocat/Hello-World", "completed"),
}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def deliver(
    event: str, payload: dict[str, Any] | bytes, *, secret: str | None = SECRET
) -> list[InboundEvent]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": webhook_signature(SECRET, body),
        "Content-Type": "application/json",
    }
    return GitHubPlugin(token=None, webhook_secret=secret).normalize_inbound(headers, body)


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_deliveries_normalise(name: str) -> None:
    key, number, repo, action = EXPECTED[name]
    body = (FIXTURES / name).read_bytes()  # signed byte for byte, as GitHub sends it
    event = name.split(".")[0]
    plugin = GitHubPlugin(token=None, webhook_secret=SECRET, plugin_id="gh")
    headers = {
        "x-github-event": event,
        "x-github-delivery": "d-1",
        "x-hub-signature-256": webhook_signature(SECRET, body),
    }
    [found] = plugin.normalize_inbound(headers, body)
    assert found.event_key == key and found.plugin_id == "gh" and found.delivery_id == "d-1"
    assert found.payload["nativeEvent"] == event and found.payload["action"] == action
    assert (found.payload["prId"], found.payload["repo"]) == (number, repo)
    assert found.ref is not None
    assert (found.ref.kind, found.ref.plugin_id, found.ref.repo_key, found.ref.external_id) == (
        "pull_request",
        "gh",
        repo,
        str(number),
    )
    assert found.ref.url is not None and found.ref.url.endswith(f"/{repo}/pull/{number}")


def test_payload_details_of_merge_comment_and_ci() -> None:
    [merged] = deliver("pull_request", load("pull_request.closed.json"))
    assert merged.payload["merged"] is True and merged.payload["state"] == "merged"
    assert merged.payload["mergeCommit"]
    [declined] = deliver("pull_request", load("pull_request.closed-unmerged.json"))
    assert declined.payload["merged"] is False and declined.payload["state"] == "closed"
    [comment] = deliver("issue_comment", load("issue_comment.created.json"))
    assert (comment.payload["author"], comment.payload["body"]) == ("chhsia0", "/build")
    [ci] = deliver("check_run", load("check_run.completed.json"))
    assert ci.payload["conclusion"] == "success" and ci.payload["state"] == "success"
    assert ci.payload["sha"] == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


@pytest.mark.parametrize(
    ("state", "key"),
    [
        ("approved", PR_APPROVED),
        ("changes_requested", PR_CHANGES_REQUESTED),
        ("commented", PR_COMMENT),
    ],
)
def test_review_verdicts(state: str, key: str) -> None:
    payload = load("pull_request_review.submitted.json")
    payload["review"]["state"] = state
    [found] = deliver("pull_request_review", payload)
    assert found.event_key == key and found.payload["state"] == state
    assert found.payload["author"] == "Codertocat" and found.payload["body"] == ""


@pytest.mark.parametrize(
    ("action", "keys"),
    [
        ("synchronize", [PR_UPDATED]),
        ("edited", [PR_UPDATED]),
        ("reopened", [PR_UPDATED]),
        ("opened", []),
        ("labeled", []),
    ],
)
def test_pull_request_actions(action: str, keys: list[str]) -> None:
    payload = load("pull_request.closed-unmerged.json")
    payload["action"], payload["pull_request"]["state"] = action, "open"
    assert [e.event_key for e in deliver("pull_request", payload)] == keys


def test_a_check_gives_one_event_per_pull_request_it_lists() -> None:
    payload = load("check_suite.completed.json")
    second = copy.deepcopy(payload["check_suite"]["pull_requests"][0])
    second["number"] = 5
    payload["check_suite"]["pull_requests"].append(second)
    payload["check_suite"]["conclusion"] = "failure"
    found = deliver("check_suite", payload)
    assert [(e.event_key, e.payload["prId"], e.payload["state"]) for e in found] == [
        (CI_COMPLETED, 2, "failure"),
        (CI_COMPLETED, 5, "failure"),
    ]
    payload["check_suite"]["pull_requests"] = []
    assert deliver("check_suite", payload) == []


def test_review_comments_carry_their_thread() -> None:
    base = load("pull_request_review.submitted.json")
    payload = {
        "action": "created",
        "pull_request": base["pull_request"],
        "repository": base["repository"],
        "comment": {
            "id": 11,
            "in_reply_to_id": 7,
            "body": "nit",
            "path": "a.py",
            "line": 3,
            "user": {"login": "alice"},
        },
    }
    [found] = deliver("pull_request_review_comment", payload)
    assert found.event_key == PR_COMMENT
    assert {k: found.payload[k] for k in ("author", "body", "parentId", "path", "line")} == {
        "author": "alice",
        "body": "nit",
        "parentId": 7,
        "path": "a.py",
        "line": 3,
    }


def test_deliveries_about_no_pull_request_give_nothing() -> None:
    on_issue = load("issue_comment.created.json")
    del on_issue["issue"]["pull_request"]
    assert deliver("issue_comment", on_issue) == []
    assert deliver("ping", {"zen": "Keep it logically awesome.", "hook_id": 1}) == []
    assert deliver("star", {"action": "created", "repository": {"full_name": "a/b"}}) == []


def test_githubs_published_signature_test_vector() -> None:
    # docs.github.com, "Validating webhook deliveries"
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert webhook_signature(secret, body) == expected
    plugin = GitHubPlugin(token=None, webhook_secret=secret)
    with pytest.raises(ScmError, match="not JSON") as caught:  # verified, then not understood
        plugin.normalize_inbound({"X-Hub-Signature-256": expected, "X-GitHub-Event": "ping"}, body)
    assert not isinstance(caught.value, WebhookRejected)


@pytest.mark.parametrize(
    "signature",
    [None, "", "sha256=" + "0" * 64, webhook_signature("another secret", b"{}"), "sha1=abc"],
)
def test_a_wrong_or_missing_signature_is_rejected(signature: str | None) -> None:
    plugin = GitHubPlugin(token=None, webhook_secret=SECRET)
    headers = {"X-GitHub-Event": "ping"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    with pytest.raises(WebhookRejected, match="X-Hub-Signature-256"):
        plugin.normalize_inbound(headers, b"{}")


def test_a_tampered_body_is_rejected() -> None:
    body = (FIXTURES / "pull_request.closed.json").read_bytes()
    headers = {
        "X-GitHub-Event": "pull_request",
        "X-Hub-Signature-256": webhook_signature(SECRET, body),
    }
    plugin = GitHubPlugin(token=None, webhook_secret=SECRET)
    with pytest.raises(WebhookRejected):
        plugin.normalize_inbound(headers, body.replace(b'"merged": true', b'"merged": false'))


def test_without_a_secret_every_delivery_is_rejected_naming_the_setting() -> None:
    with pytest.raises(WebhookRejected) as caught:
        deliver("pull_request", load("pull_request.closed.json"), secret=None)
    assert "plugins.installed.github.config.webhookSecret" in caught.value.message
    assert "git.webhookSecret" in caught.value.message


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[1, 2]", b""])
def test_a_body_that_is_not_a_json_object_is_an_scm_error(body: bytes) -> None:
    with pytest.raises(ScmError) as caught:
        deliver("pull_request", body)
    assert not isinstance(caught.value, WebhookRejected)


def test_a_payload_missing_its_pull_request_is_an_scm_error() -> None:
    with pytest.raises(ScmError, match="pull_request"):
        deliver("pull_request", {"action": "closed", "repository": {"full_name": "a/b"}})
