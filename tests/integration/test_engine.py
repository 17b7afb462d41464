"""The engine end to end: real state, real overlay, real MCP domain tools, a scripted model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.phase import PhaseRequest, PhaseResult
from engine.runtime import ActionRefused, Engine
from state import JobInput, JobStatus
from tests.support.engine import ScriptedExecutor, rate_limited, write_config, write_intelligence

WORKFLOW_PATH = "workflows/test/workflow.md"


@pytest.fixture
def home(coro_home: Path) -> Path:
    write_intelligence(coro_home)
    write_config(coro_home)
    return coro_home


@pytest.fixture
async def make_engine(home: Path) -> AsyncIterator[Any]:
    engines: list[Engine] = []

    async def make(executor: ScriptedExecutor) -> Engine:
        engine = Engine(home, executors=executor.registry(), watch_config=False)
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.stop(grace=1)


def job_input(**params: Any) -> JobInput:
    return JobInput(workflow_path=WORKFLOW_PATH, params={"repo": "acme/svc", **params})


async def transitions(engine: Engine, job_id: str) -> list[tuple[str, Any]]:
    events = await engine.store.read_events(job_id, kinds=["status", "phase"], limit=10_000)
    return [(e.kind, e.data["to"]) for e in events]


async def test_a_job_goes_through_every_phase_to_complete(make_engine: Any) -> None:
    executor = ScriptedExecutor(
        {
            "spec": [[("set_work_items", {"workItems": ["limiter"]}),
                      ("log", {"message": "spec written"})]],
            "build": [[("update_work_item", {"name": "limiter", "status": "in-progress"}),
                       ("post_artifact", {"kind": "pr-link", "title": "PR #1",
                                          "data": {"prId": 1}})]],
            "review": [[("update_work_item", {"name": "limiter", "status": "complete"})]],
        }
    )  # fmt: skip
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        job = await engine.wait_until(job.id)
    assert job.status is JobStatus.COMPLETE, job.escalation_message
    assert await transitions(engine, job.id) == [
        ("phase", "spec"), ("status", "spec"),
        ("phase", "build"), ("status", "build"),
        ("phase", "review"), ("status", "reviewing"),
        ("status", "complete"),
    ]  # fmt: skip
    assert [(w.name, w.status.value) for w in job.work_items] == [("limiter", "complete")]
    assert [a.kind for a in job.artifacts] == ["pr-link"]
    assert [u.phase for u in job.phase_usage] == ["spec", "build", "review"]
    assert job.token_usage.input_tokens == 300 and job.token_usage.total_cost_usd > 0.029
    assert not any(is_error for *_, is_error in executor.outcomes)
    assert "spec written" in await engine.store.get_log(job.id)
    # Each phase got the phase's system prompt from the overlay, and a model from its tier.
    first = executor.requests[0]
    assert "# build agent" not in first.system_prompt and "spec agent" in first.system_prompt
    assert first.model == engine.config.llm.aliases["mini"].model
    assert len(executor.requests[2].resume_conversation) == 4  # the session carried over


async def test_an_agent_edited_between_phases_reaches_the_next_phase(
    home: Path, make_engine: Any
) -> None:
    """Overlay files are kept in memory by the digest each resolve checks: after one job has
    read an agent, an edit made during another job's phase is still in that job's next
    prompt; and a file with CRLF line ends reads the same from memory as from disk."""
    agents = home / "intelligence" / "agents"
    (agents / "review.md").write_bytes(b"# review agent\r\n\r\nCheck the diff.\r\n")

    async def edit(request: PhaseRequest) -> None:
        (agents / "build.md").write_text("# build agent\n\nBuild it with a token bucket.\n")

    executor = ScriptedExecutor({"spec": [[], edit]})
    engine = await make_engine(executor)
    with anyio.fail_after(20):
        for i in range(2):  # one after the other: job-0 reads build.md before the edit
            await engine.wait_until((await engine.create_job(job_input(), job_id=f"job-{i}")).id)
    prompts = {(r.job.id, r.phase.name): r.system_prompt for r in executor.requests}
    assert "token bucket" not in prompts["job-0", "build"]
    assert "Build it with a token bucket." in prompts["job-1", "build"]
    review = prompts["job-0", "review"]
    assert "# review agent\n\nCheck the diff." in review and "\r" not in review
    assert prompts["job-1", "review"].replace("job-1", "job-0") == review


async def test_await_event_parks_and_resume_continues(make_engine: Any) -> None:
    executor = ScriptedExecutor(
        {"review": [[("await_event", {"eventName": "pr:merged", "prId": 7})], []]}
    )
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        job = await engine.wait_until(job.id)
        assert job.status is JobStatus.AWAITING_PR_MERGE
        assert (job.awaiting_event, job.awaiting_pr_id, job.phase) == ("pr:merged", 7, "review")
        with pytest.raises(ActionRefused):
            await engine.approve(job.id)
        await engine.resume(job.id, message="PR 7 is merged")
        job = await engine.wait_until(job.id, lambda j: j.status.is_stopped)
    assert job.status is JobStatus.COMPLETE
    assert "[DEVELOPER MESSAGE]" in executor.requests[-1].kickoff
    assert "PR 7 is merged" in executor.requests[-1].kickoff


async def test_goto_phase_loops_back(make_engine: Any) -> None:
    executor = ScriptedExecutor({"review": [[("goto_phase", {"phase": "build"})], []]})
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        job = await engine.wait_until(job.id)
    assert job.status is JobStatus.COMPLETE
    assert [r.phase.name for r in executor.requests] == ["spec", "build", "review", "build",
                                                         "review"]  # fmt: skip


async def test_goto_an_undeclared_phase_is_refused_to_the_model(make_engine: Any) -> None:
    executor = ScriptedExecutor({"spec": [[("goto_phase", {"phase": "deploy"})]]})
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        job = await engine.wait_until(job.id)
    assert job.status is JobStatus.COMPLETE
    assert ("spec", "goto_phase", True) in executor.outcomes


async def test_escalate_stops_the_job_and_resume_restarts_it(make_engine: Any) -> None:
    executor = ScriptedExecutor({"build": [[("escalate", {"reason": "no credentials"})], []]})
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        job = await engine.wait_until(job.id)
        assert job.status is JobStatus.ESCALATED
        assert job.escalation_message == "no credentials"
        await engine.resume(job.id)
        job = await engine.wait_until(job.id, lambda j: j.status.is_terminal)
    assert job.status is JobStatus.COMPLETE


async def test_checkpoint_parks_and_approval_reaches_the_next_phase(make_engine: Any) -> None:
    executor = ScriptedExecutor()
    engine = await make_engine(executor)
    job = await engine.create_job(job_input().model_copy(update={"interactive": True}))
    with anyio.fail_after(20):
        job = await engine.wait_until(job.id)
        assert job.status is JobStatus.AWAITING_DEVELOPER_INPUT
        assert job.awaiting_event == "developer-input: approval after build"
        assert job.awaiting_next_phase == "review"
        await engine.approve(job.id, by="alice", message="looks right")
        job = await engine.wait_until(job.id, lambda j: j.status.is_terminal)
    assert job.status is JobStatus.COMPLETE
    review_kickoff = executor.requests[-1].kickoff
    assert "[DEVELOPER APPROVAL]" in review_kickoff and "looks right" in review_kickoff


async def test_completion_gate_blocks_until_work_items_close(make_engine: Any) -> None:
    executor = ScriptedExecutor(
        {
            "spec": [[("set_work_items", {"workItems": ["a", "b"]})]],
            "review": [
                [("update_work_item", {"name": "a", "status": "complete"})],
                [("update_work_item", {"name": "b", "status": "escalated"})],
            ],
        }
    )
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        job = await engine.wait_until(job.id)
    assert job.status is JobStatus.COMPLETE
    gate = executor.requests[3]
    assert gate.phase.name == "review" and gate.kickoff.startswith("[completion-gate]")
    assert "`b`" in gate.kickoff and "`a`" not in gate.kickoff
    assert any("[completion-gate] blocked 1/5" in s for s in await engine.store.get_log(job.id))


async def test_completion_gate_fails_the_job_after_five_blocks(make_engine: Any) -> None:
    executor = ScriptedExecutor({"spec": [[("set_work_items", {"workItems": ["never"]})]]})
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        job = await engine.wait_until(job.id)
    assert job.status is JobStatus.FAILED
    assert "never" in (job.escalation_message or "")
    assert [r.phase.name for r in executor.requests].count("review") == 5


async def test_open_prs_without_work_items_also_hold_completion(make_engine: Any) -> None:
    async def open_pr(request: PhaseRequest) -> None:
        from state import PrMapping

        request.context.job.pr_mappings.append(PrMapping(pr_id=9, work_item="x"))
        await request.context.save()

    executor = ScriptedExecutor({"build": [open_pr]})
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        job = await engine.wait_until(job.id)
    assert job.status is JobStatus.FAILED
    assert "#9" in (job.escalation_message or "")


async def test_rate_limited_phase_parks_and_resumes_by_itself(make_engine: Any) -> None:
    executor = ScriptedExecutor({"spec": [rate_limited(0.3)]})
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        parked = await engine.wait_until(job.id)
        assert parked.status is JobStatus.AWAITING_RATE_LIMIT
        assert parked.rate_limit_info is not None
        job = await engine.wait_until(job.id, lambda j: j.status.is_terminal)
    assert job.status is JobStatus.COMPLETE
    assert [r.phase.name for r in executor.requests][:2] == ["spec", "spec"]


async def test_rate_limit_timer_is_rearmed_after_a_restart(home: Path) -> None:
    first = ScriptedExecutor({"spec": [rate_limited(0.5)]})
    engine = Engine(home, executors=first.registry(), watch_config=False)
    await engine.start()
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        assert (await engine.wait_until(job.id)).status is JobStatus.AWAITING_RATE_LIMIT
    await engine.stop(grace=1)
    second = ScriptedExecutor()
    engine = Engine(home, executors=second.registry(), watch_config=False)
    await engine.start()
    try:
        with anyio.fail_after(20):
            job = await engine.wait_until(job.id, lambda j: j.status.is_terminal)
        assert job.status is JobStatus.COMPLETE
    finally:
        await engine.stop(grace=1)


async def test_budget_parks_the_job_instead_of_spending_on(home: Path, make_engine: Any) -> None:
    write_config(home, jobs={"budget": {"maxTokens": 200}})
    executor = ScriptedExecutor()
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        job = await engine.wait_until(job.id)
    assert job.status is JobStatus.AWAITING_DEVELOPER_INPUT
    assert (job.awaiting_event or "").startswith("developer-input: budget reached")
    assert [r.phase.name for r in executor.requests] == ["spec", "build"]


async def test_idle_watchdog_nudges_then_parks_a_stalled_phase(
    home: Path, make_engine: Any
) -> None:
    write_config(
        home,
        jobs={"idleWatchdog": {"idleMinutes": 0.002, "nudges": 1, "checkSeconds": 0.02,
                               "graceSeconds": 0.2}},
    )  # fmt: skip
    seen: list[str] = []

    async def stall(request: PhaseRequest) -> PhaseResult:
        while True:
            seen.extend(request.steering.drain())
            await asyncio.sleep(0.01)

    executor = ScriptedExecutor({"spec": [stall]})
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        job = await engine.wait_until(job.id)
    assert job.status is JobStatus.AWAITING_DEVELOPER_INPUT
    assert (job.awaiting_event or "").startswith("developer-input: stalled")
    assert len(seen) == 1 and seen[0].startswith("[SYSTEM NUDGE]")


async def test_concurrency_is_bounded(home: Path, make_engine: Any) -> None:
    write_config(home, jobs={"maxConcurrent": 2})
    running = 0
    peak = 0
    release = asyncio.Event()

    async def slow(request: PhaseRequest) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    executor = ScriptedExecutor({"spec": [slow] * 4})
    engine = await make_engine(executor)
    jobs = [await engine.create_job(job_input(), job_id=f"job-{i}") for i in range(4)]
    with anyio.fail_after(20):
        while len(executor.requests) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert running == 2
        # Queued jobs start in order: the first two run, the last two wait for a slot.
        assert {r.job.id for r in executor.requests} == {"job-0", "job-1"}
        release.set()
        for job in jobs:
            await engine.wait_until(job.id)
    assert peak == 2


async def test_cancel_stops_a_running_job(make_engine: Any) -> None:
    async def hang(request: PhaseRequest) -> None:
        await asyncio.Event().wait()

    executor = ScriptedExecutor({"spec": [hang]})
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        await executor.entered.wait()
        job = await engine.cancel(job.id, reason="wrong repo")
    assert job.status is JobStatus.CANCELLED and job.escalation_message == "wrong repo"
    with pytest.raises(ActionRefused):
        await engine.resume(job.id)


async def test_switch_workflow_changes_lane(home: Path, make_engine: Any) -> None:
    fast = home / "intelligence" / "workflows" / "fast"
    fast.mkdir(parents=True)
    (fast / "workflow.md").write_text(
        "---\nphases:\n  - name: quick\n    agent: agents/other.md\n---\nFast lane.\n"
    )
    executor = ScriptedExecutor(
        {"spec": [[("switch_workflow", {"workflowPath": "workflows/fast/workflow.md",
                                        "paramsPatch": {"lane": "fast"}, "reason": "tiny"})]]}
    )  # fmt: skip
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        job = await engine.wait_until(job.id)
    assert job.status is JobStatus.COMPLETE
    assert job.workflow_path == "workflows/fast/workflow.md" and job.params["lane"] == "fast"
    assert [r.phase.name for r in executor.requests] == ["spec", "quick"]
    assert job.workflow_path_history[0].reason == "tiny"
    assert [p.name for p in job.workflow_phases] == ["quick"]


async def test_an_unknown_workflow_escalates_with_a_clear_message(make_engine: Any) -> None:
    engine = await make_engine(ScriptedExecutor())
    job = await engine.create_job(JobInput(workflow_path="workflows/nope/workflow.md"))
    with anyio.fail_after(20):
        job = await engine.wait_until(job.id)
    assert job.status is JobStatus.ESCALATED
    assert "workflows/nope/workflow.md" in (job.escalation_message or "")


async def test_a_message_to_a_parked_job_resumes_it_and_reaches_its_kickoff(
    make_engine: Any,
) -> None:
    executor = ScriptedExecutor(
        {"spec": [[("await_event", {"eventName": "developer-input: go?"})]]}
    )
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    async with asyncio.timeout(10):
        parked = await engine.wait_until(job.id)
    assert parked.status is JobStatus.AWAITING_DEVELOPER_INPUT
    await engine.message(job.id, "yes, go ahead", mode="queue")
    async with asyncio.timeout(10):
        await engine.wait_until(job.id, lambda j: len(executor.requests) >= 2)
    assert "yes, go ahead" in executor.requests[1].kickoff
    events = await engine.store.read_events(job.id, kinds=["message_accepted"])
    assert [e.data["mode"] for e in events] == ["queue"]


async def test_messages_and_pauses_that_cannot_apply_are_refused(make_engine: Any) -> None:
    executor = ScriptedExecutor()
    engine = await make_engine(executor)
    job = await engine.create_job(job_input())
    with pytest.raises(ActionRefused, match="unknown message mode"):
        await engine.message(job.id, "hi", mode="shout")
    async with asyncio.timeout(10):
        await engine.wait_until(job.id, lambda j: j.status.is_parked or j.status.is_terminal)
    done = await engine.store.get_job(job.id)
    assert done is not None
    with pytest.raises(ActionRefused):
        await engine.pause(job.id)


async def test_stop_lets_a_running_phase_finish_then_resumes_at_the_next_phase(
    home: Path,
) -> None:
    release = asyncio.Event()

    async def slow(request: PhaseRequest) -> None:
        await release.wait()

    first = ScriptedExecutor({"spec": [slow]})
    engine = Engine(home, executors=first.registry(), watch_config=False)
    await engine.start()
    job = await engine.create_job(job_input())
    with anyio.fail_after(20):
        await first.entered.wait()
        stopping = asyncio.create_task(engine.stop(grace=10))
        await asyncio.sleep(0.1)
        assert not stopping.done()  # the phase is still running: stop waits for it
        release.set()
        await stopping
    second = ScriptedExecutor()
    engine = Engine(home, executors=second.registry(), watch_config=False)
    await engine.start()
    try:
        with anyio.fail_after(20):
            done = await engine.wait_until(job.id, lambda j: j.status.is_terminal)
        assert done.status is JobStatus.COMPLETE
        assert [r.phase.name for r in second.requests] == ["build", "review"]  # spec ran once
        lines = await engine.store.get_log(job.id)
        assert "[shutdown] stopped before phase build; it runs when the runner starts again" in (
            lines
        )
    finally:
        await engine.stop(grace=1)


async def test_a_second_signal_cuts_the_grace_period(make_engine: Any) -> None:
    async def hang(request: PhaseRequest) -> None:
        await asyncio.Event().wait()

    executor = ScriptedExecutor({"spec": [hang]})
    engine = await make_engine(executor)
    await engine.create_job(job_input())
    with anyio.fail_after(20):
        await executor.entered.wait()
        stopping = asyncio.create_task(engine.stop(grace=60))
        await asyncio.sleep(0.1)
        engine.cut_running()
        await stopping  # within fail_after's 20 s, so well before the 60 s grace
    assert stopping.exception() is None
