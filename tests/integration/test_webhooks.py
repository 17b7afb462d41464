"""``POST /webhook/{plugin}`` on the runner: signed deliveries wake parked jobs, replays and
forgeries do not, and the route needs no token (a tunnel forwards it from outside)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx2
import pytest

from engine.api import ApiServer
from engine.runtime import Engine
from engine.scm.github import webhook_signature
from state import ExternalRef, JobInput, JobStatus
from tests.support.engine import ScriptedExecutor, write_config, write_intelligence

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "webhooks"
SECRET = "webhook-secret-for-tests"
MERGED = FIXTURES / "github" / "pull_request.closed.json"  # robvanderleek/create-issue-branch#117


@pytest.fixture
async def running(coro_home: Path) -> AsyncIterator[tuple[Engine, ApiServer, ScriptedExecutor]]:
    write_intelligence(coro_home)
    write_config(coro_home, git={"provider": "github", "token": "ghp_test_token_123456",
                                 "webhookSecret": SECRET})  # fmt: skip
    executor = ScriptedExecutor(
        {"review": [[("await_event", {"eventName": "pr:merged", "prId": 117})]]}
    )
    engine = Engine(coro_home, executors=executor.registry(), watch_config=False, poll_prs=False)
    await engine.start()
    try:
        async with ApiServer(engine, port=0) as server:
            yield engine, server, executor
    finally:
        await engine.stop(grace=1)


def signed(body: bytes, delivery: str, event: str = "pull_request") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": webhook_signature(SECRET, body),
        "Host": "coro-tunnel.example.net",  # forwarded from outside: not a loopback Host
    }


async def test_a_signed_merge_wakes_the_job_and_a_replay_is_ignored(
    running: tuple[Engine, ApiServer, ScriptedExecutor],
) -> None:
    engine, server, _ = running
    job = await engine.create_job(JobInput(workflow_path="workflows/test/workflow.md"))
    ref = ExternalRef(kind="pull_request", plugin_id="github",
                      repo_key="robvanderleek/create-issue-branch", external_id="117")  # fmt: skip
    await engine.store.map_external_ref(ref, job.id)
    with anyio.fail_after(20):
        assert (await engine.wait_until(job.id)).status is JobStatus.AWAITING_PR_MERGE

    body = MERGED.read_bytes()
    async with httpx2.AsyncClient(base_url=server.url) as client:  # no token on purpose
        first = await client.post("/webhook/github", content=body, headers=signed(body, "d-1"))
        assert first.status_code == 202, first.text
        assert first.json() == {"accepted": 1, "duplicates": 0}
        with anyio.fail_after(20):
            done = await engine.wait_until(job.id, lambda j: j.status.is_stopped)
        assert done.status is JobStatus.COMPLETE

        again = await client.post("/webhook/github", content=body, headers=signed(body, "d-1"))
        assert again.status_code == 202 and again.json() == {"accepted": 0, "duplicates": 1}
    lines = await engine.store.get_log(job.id)
    assert "[events] woken from pr:merged by pullrequest:fulfilled" in lines


async def test_forged_unknown_and_oversized_deliveries_are_refused(
    running: tuple[Engine, ApiServer, ScriptedExecutor],
) -> None:
    engine, server, _ = running
    body = MERGED.read_bytes()
    forged = dict(signed(body, "d-2"))
    forged["X-Hub-Signature-256"] = webhook_signature("not-the-secret", body)
    async with httpx2.AsyncClient(base_url=server.url) as client:
        bad = await client.post("/webhook/github", content=body, headers=forged)
        assert bad.status_code == 401
        unsigned = {k: v for k, v in forged.items() if k != "X-Hub-Signature-256"}
        assert (
            await client.post("/webhook/github", content=body, headers=unsigned)
        ).status_code == 401
        unknown = await client.post("/webhook/gitea", content=body, headers=signed(body, "d-3"))
        assert unknown.status_code == 404 and "not configured" in unknown.json()["error"]
        huge = b"{" + b" " * (26 * 1024 * 1024) + b"}"
        too_big = await client.post("/webhook/github", content=huge, headers=signed(huge, "d-4"))
        assert too_big.status_code == 413
        elsewhere = await client.get("/jobs", headers={"Host": "coro-tunnel.example.net"})
        assert elsewhere.status_code == 403  # only the webhook route skips the Host check
    assert await engine.store.pending_inbox() == 0
    body_text = json.loads(body)
    assert body_text["number"] == 117
