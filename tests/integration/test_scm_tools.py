"""The ``scm_*`` domain tools in a real job: clone, push through coro's credential helper, open
a PR (twice: the same one), be refused a merge without a human approval, merge after one.

The hosting service is the fake GitHub over real git repositories; everything else is real.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.phase import PhaseRequest
from engine.runtime import Engine
from state import JobInput, JobStatus
from tests.support.engine import ScriptedExecutor, write_config, write_intelligence
from tests.support.fake_github import FakeGitHub

TOKEN = "ghp_tools_test_token_0123456789"
REPO = "acme/svc"
DESCRIPTION = "## What\n\nAdds a rate limiter to /api/users so one client cannot starve the rest."


@pytest.fixture
async def github(tmp_path: Path) -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub(tmp_path / "host", token=TOKEN)
    fake.create_repo(REPO, {"README.md": "# svc\n", "app.py": "VALUE = 1\n"})
    async with fake.serving():
        yield fake


async def sh(*args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, f"{args}: {out.decode()}"
    return out.decode()


async def call(request: PhaseRequest, name: str, **args: Any) -> tuple[bool, Any]:
    outcome = await request.tools.call(f"mcp__coro__{name}", args)
    try:
        data = json.loads(outcome.text)
    except ValueError:
        data = outcome.text
    return outcome.is_error, data


async def test_clone_push_open_and_merge_a_pr_with_the_guardrail_in_between(
    coro_home: Path, github: FakeGitHub
) -> None:
    seen: dict[str, Any] = {}

    async def build(request: PhaseRequest) -> None:
        failed, cloned = await call(request, "scm_clone_repo", repo=REPO)
        assert not failed, cloned
        checkout = Path(cloned["absDir"])
        seen["checkout"] = checkout
        (checkout / "app.py").write_text("VALUE = 2\n")
        await sh("git", "checkout", "-q", "-b", "feat/limit", cwd=checkout)
        await sh("git", "commit", "-qam", "Rate-limit /api/users", cwd=checkout)
        await sh("git", "push", "-q", "origin", "feat/limit", cwd=checkout)  # the helper answers
        failed, short = await call(request, "scm_create_pr", repo=REPO, title="Limit",
                                   description="too short", sourceBranch="feat/limit")  # fmt: skip
        seen["short"] = (failed, short)
        failed, pr = await call(request, "scm_create_pr", repo=REPO, title="Rate-limit users",
                                description=DESCRIPTION, sourceBranch="feat/limit")  # fmt: skip
        assert not failed, pr
        failed, again = await call(request, "scm_create_pr", repo=REPO, title="Rate-limit users",
                                   description=DESCRIPTION, sourceBranch="feat/limit")  # fmt: skip
        seen["pr"], seen["again"] = pr, again

    async def review(request: PhaseRequest) -> None:
        number = seen["pr"]["prId"]
        failed, refused = await call(request, "scm_merge_pr", repo=REPO, prId=number)
        seen["refused"] = (failed, refused)
        github.add_review(REPO, number, "alice", "APPROVED")
        failed, status = await call(request, "scm_get_pr_status", repo=REPO, prId=number)
        seen["status"] = status
        failed, merged = await call(request, "scm_merge_pr", repo=REPO, prId=number,
                                    strategy="squash")  # fmt: skip
        assert not failed, merged
        seen["merged"] = merged

    write_intelligence(coro_home)
    write_config(coro_home, git={"provider": "github", "token": TOKEN,
                                 "baseUrl": github.base_url})  # fmt: skip
    executor = ScriptedExecutor({"build": [build], "review": [review]})
    engine = Engine(coro_home, executors=executor.registry(), watch_config=False, poll_prs=False)
    await engine.start()
    try:
        spec = JobInput(
            workflow_path="workflows/test/workflow.md", params={"repo": REPO, "reviewers": ["bob"]}
        )
        job = await engine.create_job(spec)
        with anyio.fail_after(60):
            done = await engine.wait_until(job.id, lambda j: j.status.is_stopped)
        assert done.status is JobStatus.COMPLETE, done.escalation_message

        failed, short = seen["short"]
        assert failed and "pr-description" in short and "80" in short
        assert seen["again"]["prId"] == seen["pr"]["prId"]  # the open PR, not a second one
        failed, refused = seen["refused"]
        assert failed and "merge-requires-approval" in refused
        assert seen["status"]["approvedBy"] == ["alice"]
        assert seen["merged"]["state"] == "merged"
        merged_app = await sh("git", "--git-dir", str(github.bare(REPO)), "show", "main:app.py",
                              cwd=coro_home)  # fmt: skip
        assert merged_app == "VALUE = 2\n"  # squashed into main of the real repository

        [mapping] = done.pr_mappings
        assert (mapping.repo_slug, mapping.plugin_id) == (REPO, "github")
        assert mapping.merged_at is not None and done.params["repoCheckoutDir"] == "svc"
        config = (seen["checkout"] / ".git" / "config").read_text()
        assert TOKEN not in config and "git-credential" in config
        events = await engine.store.read_events(job.id, kinds=["guardrail_denied"])
        assert sorted(e.data["ruleId"] for e in events) == [
            "merge-requires-approval", "pr-description",
        ]  # fmt: skip
        lines = await engine.store.get_log(job.id)
        assert any(line.startswith("[repo-cloned] acme/svc → svc") for line in lines)
        assert any(line.startswith("[pr-opened] acme/svc #") for line in lines)
        assert all(TOKEN not in line for line in lines)
    finally:
        await engine.stop(grace=1)


CODING_WORKFLOW = """---
display_name: Coding only
phases:
  - name: coding
    agent: agents/build.md
    tier: coding
---
# Coding only
"""


async def test_the_diff_size_guardrail_measures_the_branch_during_coding(
    coro_home: Path, github: FakeGitHub
) -> None:
    seen: dict[str, Any] = {}

    async def coding(request: PhaseRequest) -> None:
        _, cloned = await call(request, "scm_clone_repo", repo=REPO)
        checkout = Path(cloned["absDir"])
        await sh("git", "checkout", "-q", "-b", "feat/big", cwd=checkout)
        (checkout / "big.py").write_text("".join(f"V{i} = {i}\n" for i in range(600)))
        await sh("git", "add", ".", cwd=checkout)
        await sh("git", "commit", "-qm", "A change too big to review", cwd=checkout)
        await sh("git", "push", "-q", "origin", "feat/big", cwd=checkout)
        seen["big"] = await call(request, "scm_create_pr", repo=REPO, title="Big",
                                 description=DESCRIPTION, sourceBranch="feat/big")  # fmt: skip
        await sh("git", "checkout", "-q", "-b", "feat/small", "origin/main", cwd=checkout)
        (checkout / "app.py").write_text("VALUE = 3\n")
        await sh("git", "commit", "-qam", "A small change", cwd=checkout)
        await sh("git", "push", "-q", "origin", "feat/small", cwd=checkout)
        seen["small"] = await call(request, "scm_create_pr", repo=REPO, title="Small",
                                   description=DESCRIPTION, sourceBranch="feat/small")  # fmt: skip

    write_intelligence(coro_home, CODING_WORKFLOW)
    write_config(coro_home, git={"provider": "github", "token": TOKEN,
                                 "baseUrl": github.base_url})  # fmt: skip
    executor = ScriptedExecutor({"coding": [coding]})
    engine = Engine(coro_home, executors=executor.registry(), watch_config=False, poll_prs=False)
    await engine.start()
    try:
        job = await engine.create_job(
            JobInput(workflow_path="workflows/test/workflow.md", params={"repo": REPO})
        )
        with anyio.fail_after(60):
            await engine.wait_until(job.id, lambda j: j.status.is_stopped)
        failed, refused = seen["big"]
        assert failed and "pr-diff-size" in refused
        assert "600 changed lines (+600 -0; the limit is 500)" in refused
        failed, opened = seen["small"]
        assert not failed, opened
    finally:
        await engine.stop(grace=1)
