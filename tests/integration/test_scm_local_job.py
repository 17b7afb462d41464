"""A job on the local SCM, end to end with real git: it opens a PR and parks on ``pr:merged``;
the developer approves and merges with ``coro pr`` (a subprocess talking to the runner's API)
and the job wakes at once; a merge the runner only learns about by polling wakes it within one
poll interval."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.api import ApiServer
from engine.phase import PhaseRequest
from engine.runtime import Engine
from engine.scm.local import LocalScmPlugin
from state import JobInput, JobStatus
from tests.support.engine import ScriptedExecutor, write_config, write_intelligence

DESCRIPTION = (
    "## What\n\nAdds a rate limiter to /api/users so that one client cannot starve others."
)
POLL_SECONDS = 1.0


async def git(*args: str, cwd: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, f"git {args}: {out.decode()}"
    return out.decode()


@dataclass
class Setup:
    engine: Engine
    server: ApiServer
    local: LocalScmPlugin
    seen: list[str]


def script(seen: list[str]) -> ScriptedExecutor:
    async def build(request: PhaseRequest) -> None:
        outcome = await request.tools.call("mcp__coro__scm_clone_repo", {"repo": "svc"})
        assert not outcome.is_error, outcome.text
        checkout = request.cwd / "svc"
        (checkout / "app.py").write_text("LIMIT = 100\n")
        await git("checkout", "-q", "-b", "feat/limit", cwd=checkout)
        await git("commit", "-qam", "Limit /api/users", cwd=checkout)
        await git("push", "-q", "origin", "feat/limit", cwd=checkout)
        opened = await request.tools.call(
            "mcp__coro__scm_create_pr",
            {"repo": "svc", "title": "Rate-limit users", "description": DESCRIPTION,
             "sourceBranch": "feat/limit"},
        )  # fmt: skip
        assert not opened.is_error, opened.text

    async def woken(request: PhaseRequest) -> None:
        seen.extend(request.steering.drain_events())

    return ScriptedExecutor(
        {
            "build": [build],
            "review": [[("await_event", {"eventName": "pr:merged", "prId": 1})], woken],
        }
    )


@pytest.fixture
async def setup(coro_home: Path) -> AsyncIterator[Setup]:
    write_intelligence(coro_home)
    write_config(coro_home, polling={"intervalSeconds": POLL_SECONDS})
    seen: list[str] = []
    engine = Engine(coro_home, executors=script(seen).registry(), watch_config=False)
    await engine.start()
    local = engine.scm.plugin("local")
    assert isinstance(local, LocalScmPlugin)
    bare = await local.create_repo("svc")
    seed = coro_home.parent / "seed"
    seed.mkdir()
    await git("init", "-q", "-b", "main", cwd=seed)
    (seed / "app.py").write_text("LIMIT = None\n")
    await git("add", ".", cwd=seed)
    await git("-c", "user.name=dev", "-c", "user.email=dev@x", "commit", "-qm", "init", cwd=seed)
    await git("push", "-q", str(bare), "main", cwd=seed)
    try:
        async with ApiServer(engine, port=0) as server:
            yield Setup(engine, server, local, seen)
    finally:
        await engine.stop(grace=1)


async def parked_job(setup: Setup) -> str:
    job = await setup.engine.create_job(
        JobInput(workflow_path="workflows/test/workflow.md", params={"repo": "svc"})
    )
    with anyio.fail_after(30):
        parked = await setup.engine.wait_until(job.id)
    assert parked.status is JobStatus.AWAITING_PR_MERGE, parked.escalation_message
    assert [(m.repo_slug, m.plugin_id, str(m.pr_id)) for m in parked.pr_mappings] == [
        ("svc", "local", "1")
    ]
    return job.id


def coro_pr(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CORO_URL": setup.server.url, "USER": "alice", "LOGNAME": "alice"}
    return subprocess.run(
        [sys.executable, "-m", "coro_tui", "pr", *args], env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip


async def test_coro_pr_approve_and_merge_wake_the_parked_job(setup: Setup) -> None:
    job_id = await parked_job(setup)

    listed = await asyncio.to_thread(coro_pr, setup, "list")
    assert listed.returncode == 0 and "svc#1  open" in listed.stdout, listed.stderr
    diff = await asyncio.to_thread(coro_pr, setup, "diff", "1")
    assert "+LIMIT = 100" in diff.stdout
    commented = await asyncio.to_thread(coro_pr, setup, "comment", "1", "Looks right")
    assert commented.returncode == 0, commented.stderr
    approved = await asyncio.to_thread(coro_pr, setup, "approve", "1")
    assert approved.returncode == 0 and "approved by alice" in approved.stdout
    began = time.monotonic()
    merged = await asyncio.to_thread(coro_pr, setup, "merge", "1", "--strategy", "squash")
    assert merged.returncode == 0, merged.stderr

    with anyio.fail_after(POLL_SECONDS + 10):
        done = await setup.engine.wait_until(job_id, lambda j: j.status.is_stopped)
    assert done.status is JobStatus.COMPLETE
    assert time.monotonic() - began < POLL_SECONDS + 5
    [events] = setup.seen
    assert "pullrequest:comment_created" in events and "Looks right" in events
    assert "pullrequest:approved" in events and "by alice" in events
    assert events.index("pullrequest:approved") < events.index("pullrequest:fulfilled")
    main = await git("--git-dir", str(setup.local.repo_path("svc")), "show", "main:app.py",
                     cwd=setup.local.root)  # fmt: skip
    assert main == "LIMIT = 100\n"
    shown = await asyncio.to_thread(coro_pr, setup, "show", "1")
    assert "[merged]" in shown.stdout and f"job {job_id}" in shown.stdout
    again = await asyncio.to_thread(coro_pr, setup, "merge", "1")
    assert again.returncode == 1 and "409" in again.stderr


async def test_a_merge_found_by_polling_wakes_the_job_within_one_interval(setup: Setup) -> None:
    job_id = await parked_job(setup)
    # Merged behind the runner's back (another process): only the poller can notice.
    other = LocalScmPlugin(root=setup.local.root, store=setup.engine.store, user="bob")
    await other.merge("svc", 1)
    began = time.monotonic()
    with anyio.fail_after(POLL_SECONDS * 3 + 5):
        done = await setup.engine.wait_until(job_id, lambda j: j.status.is_stopped)
    assert done.status is JobStatus.COMPLETE
    assert time.monotonic() - began <= POLL_SECONDS + 1.0
    assert "pullrequest:fulfilled" in setup.seen[0]


async def test_five_failed_polls_report_the_pr_gone(setup: Setup) -> None:
    job_id = await parked_job(setup)
    await asyncio.to_thread(_remove_tree, setup.local.repo_path("svc"))
    poller = setup.engine.poller
    assert poller is not None
    with anyio.fail_after(POLL_SECONDS * 8 + 10):
        while not setup.seen:  # the woken phase records what woke it
            await asyncio.sleep(0.05)
    assert "pullrequest:rejected" in setup.seen[0] and "NOT_FOUND" in setup.seen[0]
    lines = await setup.engine.store.get_log(job_id)
    assert "[events] woken from pr:merged by pullrequest:rejected" in lines


def _remove_tree(path: Path) -> Any:
    import shutil

    shutil.rmtree(path)
