"""Inbound events reach jobs: parked jobs wake on what they await, running phases get them at
their next turn, replays are dropped, and nothing is lost across a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.phase import PhaseRequest
from engine.runtime import Engine
from engine.scm import PR_APPROVED, PR_COMMENT, PR_MERGED
from state import ExternalRef, InboundEvent, JobInput, JobStatus
from tests.support.engine import ScriptedExecutor, write_config, write_intelligence

WORKFLOW_PATH = "workflows/test/workflow.md"


@pytest.fixture
def home(coro_home: Path) -> Path:
    write_intelligence(coro_home)
    write_config(coro_home)
    return coro_home


@pytest.fixture
async def engines(home: Path) -> AsyncIterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        await engine.stop(grace=1)


async def start(home: Path, executor: ScriptedExecutor, made: list[Engine]) -> Engine:
    engine = Engine(home, executors=executor.registry(), watch_config=False)
    await engine.start()
    made.append(engine)
    return engine


def pr_ref(pr: int = 7, repo: str = "Acme/Svc") -> ExternalRef:
    return ExternalRef(kind="pull_request", plugin_id="github", repo_key=repo,
                       external_id=str(pr))  # fmt: skip


def event(key: str, pr: int = 7, delivery: str | None = None, **payload: Any) -> InboundEvent:
    return InboundEvent(
        event_key=key, plugin_id="github", ref=pr_ref(pr), delivery_id=delivery,
        payload={"repo": "Acme/Svc", "prId": pr, **payload},
    )  # fmt: skip


def recorder(seen: list[str]) -> Any:
    """A visit that records the events its phase was handed, then ends the turn."""

    async def visit(request: PhaseRequest) -> None:
        seen.extend(request.steering.drain_events())

    return visit


async def parked_on_merge(engine: Engine) -> str:
    job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH, params={"repo": "a/b"}))
    await engine.store.map_external_ref(pr_ref().model_copy(update={"repo_key": "acme/svc"}),
                                        job.id)  # fmt: skip
    with anyio.fail_after(20):
        parked = await engine.wait_until(job.id)
    assert parked.status is JobStatus.AWAITING_PR_MERGE
    return job.id


async def test_a_parked_job_wakes_on_what_it_awaits_with_every_pending_event(
    home: Path, engines: list[Engine]
) -> None:
    seen: list[str] = []
    executor = ScriptedExecutor(
        {"review": [[("await_event", {"eventName": "pr:merged", "prId": 7})], recorder(seen)]}
    )
    engine = await start(home, executor, engines)
    job_id = await parked_on_merge(engine)
    assert engine.inbound is not None

    approved = await engine.inbound.submit(event(PR_APPROVED, delivery="d-1", author="alice"))
    assert approved is not None
    await asyncio.sleep(0.05)
    job = await engine.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.AWAITING_PR_MERGE  # not what it awaits
    other_pr = await engine.inbound.submit(event(PR_MERGED, pr=8, delivery="d-2"))
    assert other_pr is not None and other_pr.job_id is None  # nobody's PR: acknowledged

    await engine.inbound.submit(event(PR_MERGED, delivery="d-3", merged=True))
    with anyio.fail_after(20):
        job = await engine.wait_until(job_id, lambda j: j.status.is_stopped)
    assert job.status is JobStatus.COMPLETE
    assert len(seen) == 1 and seen[0].startswith("[WEBHOOK EVENTS: 2]")
    assert seen[0].index("pullrequest:approved") < seen[0].index("pullrequest:fulfilled")
    assert "by alice" in seen[0]
    assert await engine.store.pending_inbox(job_id) == 0
    lines = await engine.store.get_log(job_id)
    assert "[events] woken from pr:merged by pullrequest:approved, pullrequest:fulfilled" in lines


async def test_a_replayed_delivery_is_dropped(home: Path, engines: list[Engine]) -> None:
    executor = ScriptedExecutor(
        {"review": [[("await_event", {"eventName": "pr:comment", "prId": 7})]]}
    )
    engine = await start(home, executor, engines)
    job_id = await parked_on_merge_or(engine, "pr:comment")
    assert engine.inbound is not None
    first = await engine.inbound.submit(event(PR_COMMENT, delivery="same", body="hi"), route=False)
    again = await engine.inbound.submit(event(PR_COMMENT, delivery="same", body="hi"))
    assert first is not None and again is None
    assert await engine.store.pending_inbox(job_id) == 1


async def parked_on_merge_or(engine: Engine, awaited: str) -> str:
    job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH, params={"repo": "a/b"}))
    await engine.store.map_external_ref(pr_ref().model_copy(update={"repo_key": "acme/svc"}),
                                        job.id)  # fmt: skip
    with anyio.fail_after(20):
        parked = await engine.wait_until(job.id)
    assert parked.awaiting_event == awaited
    return job.id


async def test_a_running_phase_gets_events_at_its_next_turn(
    home: Path, engines: list[Engine]
) -> None:
    seen: list[str] = []
    arrived = asyncio.Event()

    async def running(request: PhaseRequest) -> None:
        with anyio.fail_after(10):
            await arrived.wait()
            while not seen:
                seen.extend(request.steering.drain_events())
                await asyncio.sleep(0.01)

    executor = ScriptedExecutor({"spec": [running]})
    engine = await start(home, executor, engines)
    job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH, params={"repo": "a/b"}))
    await engine.store.map_external_ref(pr_ref().model_copy(update={"repo_key": "acme/svc"}),
                                        job.id)  # fmt: skip
    assert engine.inbound is not None
    with anyio.fail_after(20):
        await executor.entered.wait()
        await engine.inbound.submit(event(PR_COMMENT, delivery="c-1", body="rename it"))
        arrived.set()
        done = await engine.wait_until(job.id, lambda j: j.status.is_stopped)
    assert done.status is JobStatus.COMPLETE
    assert "[WEBHOOK EVENTS: 1]" in seen[0] and "rename it" in seen[0]
    assert await engine.store.pending_inbox(job.id) == 0  # acknowledged when the phase ended


async def test_pending_events_survive_a_restart_and_reach_the_next_phase(
    home: Path, engines: list[Engine]
) -> None:
    first = ScriptedExecutor({"review": [[("await_event", {"eventName": "pr:merged", "prId": 7})]]})
    engine = await start(home, first, engines)
    job_id = await parked_on_merge(engine)
    assert engine.inbound is not None
    await engine.inbound.submit(event(PR_APPROVED, delivery="a-1", author="bob"))
    engines.remove(engine)
    await engine.stop(grace=1)

    seen: list[str] = []
    second = ScriptedExecutor({"review": [recorder(seen)]})
    engine = await start(home, second, engines)
    assert await engine.store.pending_inbox(job_id) == 1
    await engine.resume(job_id)
    with anyio.fail_after(20):
        done = await engine.wait_until(job_id, lambda j: j.status.is_stopped)
    assert done.status is JobStatus.COMPLETE
    assert "pullrequest:approved" in seen[0] and "by bob" in seen[0]
