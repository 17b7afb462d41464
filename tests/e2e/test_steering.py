"""Steering a running job on the real executor: the anthropic SDK → the scripted model endpoint
over loopback HTTP → real tools. What the model receives, and when, is read from
``server.requests``; every message's receipt from the event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.model_server import RecordedRequest, ScriptedModelServer
from engine.phase import PhaseRequest
from engine.runtime import ActionRefused, Engine
from state import Job, JobInput, JobStatus
from tests.e2e.test_anthropic_job import WORKFLOW_PATH, configure, phase_requests, script
from tests.support.engine import ScriptedExecutor, write_config, write_intelligence

MARKER = "600.4242"  # the unique argument of this file's long sleeps


@pytest.fixture
async def engine_for(coro_home: Path) -> AsyncIterator[Any]:
    engines: list[Engine] = []

    async def make(server: ScriptedModelServer, *, reconfigure: bool = True) -> Engine:
        if reconfigure:
            configure(coro_home, server.base_url)
        engine = Engine(coro_home, watch_config=False)
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.stop(grace=1)


def _state(pid: int) -> bytes:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0]


def _marked() -> list[int]:
    """Live (not zombie) processes whose command line holds :data:`MARKER`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            state = _state(int(entry))
        except OSError:
            continue
        if MARKER.encode() in cmdline and state != b"Z":
            found.append(int(entry))
    return found


async def _until_tool_runs(engine: Engine, job_id: str, name: str = "Bash") -> None:
    async with asyncio.timeout(20):
        while not any(
            e.data.get("name") == name
            for e in await engine.store.read_events(job_id, kinds=["tool_call"])
        ):
            await asyncio.sleep(0.02)


async def _finish(engine: Engine, job_id: str) -> Job:
    async with asyncio.timeout(30):
        return await engine.wait_until(job_id, lambda j: j.status.is_terminal)


async def _receipts(engine: Engine, job_id: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """messageId → its message_* events, in order."""
    kinds = ["message_accepted", "message_delivered", "message_dropped"]
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for event in await engine.store.read_events(job_id, kinds=kinds, limit=10_000):
        out.setdefault(event.data["messageId"], []).append((event.kind, event.data))
    return out


def _assert_all_settled(receipts: dict[str, list[tuple[str, dict[str, Any]]]]) -> None:
    for message_id, events in receipts.items():
        kinds = [kind for kind, _ in events]
        assert kinds[0] == "message_accepted", (message_id, kinds)
        ends = [k for k in kinds[1:] if k in ("message_delivered", "message_dropped")]
        assert len(ends) == 1, (message_id, kinds)


def _last_user(request: RecordedRequest) -> list[dict[str, Any]]:
    message = request.body["messages"][-1]
    assert message["role"] == "user"
    return list(message["content"])


def _clean(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages without cache breakpoints (they move from request to request)."""
    return [
        {"role": m["role"], "content": [{k: v for k, v in b.items() if k != "cache_control"}
                                        for b in m["content"]]}
        for m in messages
    ]  # fmt: skip


def _texts(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(b.get("text", "") for b in blocks if b.get("type") == "text")


STEER_SCRIPT = """
phases:
  spec:
    - text: "Nothing to specify."
  code:
    - tool_calls:
        - name: Bash
          input: {command: "sleep 1 && echo slept"}
    - text: "Using the v2 API."
  review:
    - text: "Nothing to review."
"""


async def test_a_steer_arrives_with_the_first_request_after_the_running_tool(
    engine_for: Any,
) -> None:
    async with ScriptedModelServer(script(STEER_SCRIPT)) as server:
        engine = await engine_for(server)
        job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH))
        await _until_tool_runs(engine, job.id)
        message_id = await engine.message(job.id, "use the v2 API", mode="steer")
        done = await _finish(engine, job.id)
        assert done.status is JobStatus.COMPLETE, done.escalation_message

        code = phase_requests(server, "code")
        assert "use the v2 API" not in json.dumps(code[0].body)
        after = _last_user(code[1])
        # the tool finished undisturbed, and its result comes first
        assert after[0]["type"] == "tool_result" and "slept" in after[0]["content"]
        assert not after[0].get("is_error")
        assert after[-1]["text"] == "[DEVELOPER MESSAGE] use the v2 API"
        receipts = await _receipts(engine, job.id)
        _assert_all_settled(receipts)
        assert receipts[message_id][0][1]["mode"] == "steer"
        assert receipts[message_id][-1] == (
            "message_delivered",
            {"messageId": message_id, "turn": 2},
        )


URGENT_SCRIPT = f"""
phases:
  spec:
    - text: "Nothing to specify."
  code:
    - tool_calls:
        - name: Bash
          input: {{command: "sleep {MARKER} & sleep {MARKER}; wait"}}
    - when:
        - if_result_contains: interrupted
          text: "Stopped as asked."
  review:
    - text: "Nothing to review."
"""


async def test_urgent_kills_the_running_tool_and_delivers_at_once(engine_for: Any) -> None:
    async with ScriptedModelServer(script(URGENT_SCRIPT)) as server:
        engine = await engine_for(server)
        job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH))
        async with asyncio.timeout(20):
            while len(_marked()) < 3:  # the shell and its two sleeps
                await asyncio.sleep(0.02)
        pids = _marked()
        sent = time.monotonic()
        message_id = await engine.message(job.id, "stop: wrong approach", mode="urgent")
        async with asyncio.timeout(1):
            while _marked():
                await asyncio.sleep(0.01)
        assert time.monotonic() - sent < 1
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            assert _state(pid) == b"Z"  # only a zombie may be left
        done = await _finish(engine, job.id)
        assert done.status is JobStatus.COMPLETE, done.escalation_message

        after = _last_user(phase_requests(server, "code")[1])
        uses = [b for m in phase_requests(server, "code")[1].body["messages"]
                for b in m["content"] if b.get("type") == "tool_use"]  # fmt: skip
        assert after[0]["type"] == "tool_result" and after[0]["is_error"] is True
        assert after[0]["tool_use_id"] == uses[0]["id"]  # no orphaned tool_use
        assert "interrupted" in after[0]["content"]
        assert after[-1]["text"] == "[DEVELOPER MESSAGE] stop: wrong approach"
        receipts = await _receipts(engine, job.id)
        _assert_all_settled(receipts)
        assert receipts[message_id][-1][1]["turn"] == 2
        log = await engine.store.get_log(job.id)
        assert not any(line.startswith("[control]") for line in log)
        assert not any("[escalated]" in line for line in log)  # the aborted tool is no failure


QUEUE_SCRIPT = """
phases:
  spec:
    - text: "Nothing to specify."
  code:
    - tool_calls:
        - name: Bash
          input: {command: "sleep 1 && echo slept"}
    - text: "Turn over."
    - text: "Read your queued note."
  review:
    - text: "Nothing to review."
"""


async def test_a_queued_message_waits_for_the_end_of_the_turn(engine_for: Any) -> None:
    async with ScriptedModelServer(script(QUEUE_SCRIPT)) as server:
        engine = await engine_for(server)
        job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH))
        await _until_tool_runs(engine, job.id)
        message_id = await engine.message(job.id, "also update the docs", mode="queue")
        done = await _finish(engine, job.id)
        assert done.status is JobStatus.COMPLETE, done.escalation_message

        code = phase_requests(server, "code")
        assert len(code) == 3
        assert "also update the docs" not in json.dumps(code[1].body)  # not at the tool boundary
        last = code[2].body["messages"]
        assert last[-2]["role"] == "assistant" and _texts(last[-2]["content"]) == "Turn over."
        assert _texts(_last_user(code[2])) == "[DEVELOPER MESSAGE] also update the docs"
        receipts = await _receipts(engine, job.id)
        _assert_all_settled(receipts)
        assert receipts[message_id][-1][1] == {"messageId": message_id, "turn": 3}


PAUSE_SCRIPT = """
phases:
  spec:
    - text: "Nothing to specify."
  code:
    - tool_calls:
        - name: Bash
          input: {command: "sleep 1 && echo slept"}
    - text: "Back at it."
  review:
    - text: "Nothing to review."
"""


async def _pause_during_the_tool(engine: Engine, server: ScriptedModelServer) -> Job:
    job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH))
    await _until_tool_runs(engine, job.id)
    await engine.pause(job.id)
    async with asyncio.timeout(20):
        parked = await engine.wait_until(job.id)
    assert parked.status is JobStatus.AWAITING_DEVELOPER_INPUT
    assert parked.awaiting_event == "developer-input: paused by developer"
    # the tool finished: its result is in the kept conversation, and no model call followed
    results = [b for m in parked.conversation_history for b in m.content
               if isinstance(b, dict) and b.get("type") == "tool_result"]  # fmt: skip
    assert results and "slept" in results[0]["content"] and not results[0].get("is_error")
    assert len(phase_requests(server, "code")) == 1
    return parked


def _assert_same_conversation_plus(server: ScriptedModelServer, text: str) -> None:
    first, resumed = phase_requests(server, "code")[:2]
    before = _clean(first.body["messages"])
    now = _clean(resumed.body["messages"])
    assert now[: len(before)] == before  # the kickoff, unchanged
    assert now[len(before)]["role"] == "assistant"  # the tool call …
    assert now[-1]["content"][0]["type"] == "tool_result"  # … and its result
    assert len(now) == len(before) + 2
    assert now[-1]["content"][-1]["text"].startswith(f"[DEVELOPER MESSAGE]\n{text}")


async def test_pause_parks_after_the_tool_and_resume_continues_the_same_conversation(
    engine_for: Any,
) -> None:
    async with ScriptedModelServer(script(PAUSE_SCRIPT)) as server:
        engine = await engine_for(server)
        job = await _pause_during_the_tool(engine, server)
        await engine.resume(job.id, message="carry on with the tests")
        done = await _finish(engine, job.id)
        assert done.status is JobStatus.COMPLETE, done.escalation_message
        _assert_same_conversation_plus(server, "carry on with the tests")


async def test_a_paused_job_survives_a_restart_and_resumes_its_conversation(
    engine_for: Any,
) -> None:
    async with ScriptedModelServer(script(PAUSE_SCRIPT)) as server:
        engine = await engine_for(server)
        job = await _pause_during_the_tool(engine, server)
        await engine.stop(grace=1)

        engine = await engine_for(server, reconfigure=False)
        again = await engine.store.get_job(job.id)
        assert again is not None and again.status is JobStatus.AWAITING_DEVELOPER_INPUT
        message_id = await engine.message(job.id, "pick it up again", mode="steer")
        done = await _finish(engine, job.id)
        assert done.status is JobStatus.COMPLETE, done.escalation_message
        _assert_same_conversation_plus(server, "pick it up again")
        receipts = await _receipts(engine, job.id)
        _assert_all_settled(receipts)
        assert receipts[message_id][-1][1] == {"messageId": message_id, "turn": 1}


RESTART_SCRIPT = f"""
phases:
  spec:
    - text: "Nothing to specify."
  code:
    - tool_calls:
        - name: Bash
          input: {{command: "sleep {MARKER}"}}
    - text: "Resumed after the restart."
  review:
    - text: "Nothing to review."
"""


async def test_a_message_accepted_before_a_restart_is_delivered_after_it(
    engine_for: Any,
) -> None:
    async with ScriptedModelServer(script(RESTART_SCRIPT)) as server:
        engine = await engine_for(server)
        job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH))
        await _until_tool_runs(engine, job.id)
        message_id = await engine.message(job.id, "after the restart, use v2", mode="steer")
        await engine.stop(grace=0.5)  # the phase is cut mid-tool: the steer never went out
        assert len(phase_requests(server, "code")) == 1

        engine = await engine_for(server, reconfigure=False)
        done = await _finish(engine, job.id)
        assert done.status is JobStatus.COMPLETE, done.escalation_message
        code = phase_requests(server, "code")
        assert "after the restart, use v2" in _texts(_last_user(code[1]))
        receipts = await _receipts(engine, job.id)
        _assert_all_settled(receipts)
        assert receipts[message_id][-1][0] == "message_delivered"


ENDING_SCRIPT = f"""
phases:
  spec:
    - text: "Nothing to specify."
  code:
    - tool_calls:
        - name: Bash
          input: {{command: "sleep {MARKER}"}}
  review:
    - text: "Nothing to review."
"""


async def test_every_message_ends_delivered_or_dropped(engine_for: Any) -> None:
    async with ScriptedModelServer(script(STEER_SCRIPT)) as server:
        engine = await engine_for(server)
        job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH))
        sent: list[str] = []
        await _until_tool_runs(engine, job.id)
        sent.append(await engine.message(job.id, "a steer", mode="steer"))
        sent.append(await engine.message(job.id, "a queued note", mode="queue"))
        # one sent as the job's last phase answers: delivered, or dropped when it ends first
        async with asyncio.timeout(20):
            while not any(
                e.data.get("phase") == "review"
                for e in await engine.store.read_events(job.id, kinds=["phase_started"])
            ):
                await asyncio.sleep(0.005)
        with contextlib.suppress(ActionRefused):  # the job was already over: not accepted
            sent.append(await engine.message(job.id, "one more thing", mode="queue"))
        done = await _finish(engine, job.id)
        assert done.status is JobStatus.COMPLETE, done.escalation_message
        receipts = await _receipts(engine, job.id)
        assert set(sent) <= set(receipts)
        _assert_all_settled(receipts)
        await engine.stop(grace=1)

    async with ScriptedModelServer(script(ENDING_SCRIPT)) as server:
        engine = await engine_for(server)
        job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH))
        await _until_tool_runs(engine, job.id)
        message_id = await engine.message(job.id, "never read", mode="steer")
        await engine.cancel(job.id, reason="changed my mind")
        receipts = await _receipts(engine, job.id)
        _assert_all_settled(receipts)
        kind, data = receipts[message_id][-1]
        assert kind == "message_dropped" and "cancelled" in data["reason"]
        assert not _marked()


# -- an executor of its own (not the real one): acknowledgement and carry-over -----------------


@pytest.fixture
def scripted_home(coro_home: Path) -> Path:
    write_intelligence(coro_home)
    write_config(coro_home)
    return coro_home


async def test_an_unacknowledged_interrupt_stays_queued_as_a_steer(scripted_home: Path) -> None:
    taken: list[str] = []
    release = asyncio.Event()

    async def deaf(request: PhaseRequest) -> None:  # never looks at interrupts
        await release.wait()
        taken.extend(request.steering.drain())

    executor = ScriptedExecutor({"spec": [deaf]})
    async with Engine(scripted_home, executors=executor.registry(), watch_config=False) as engine:
        engine.interrupt_ack_seconds = 0.2
        job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH))
        async with asyncio.timeout(10):
            await executor.entered.wait()
            message_id = await engine.message(job.id, "stop now", mode="urgent")
            while not any(line.startswith("[control]") for line in
                          await engine.store.get_log(job.id)):  # fmt: skip
                await asyncio.sleep(0.02)
        log = await engine.store.get_log(job.id)
        assert "[control] interrupt not acknowledged after 0.2 s; the message stays queued" in log
        steering = engine.runner.steering(job.id) if engine.runner else None
        assert steering is not None and not steering.interrupted and steering.pending == 1
        release.set()
        async with asyncio.timeout(10):
            await engine.wait_until(job.id)
        assert taken == ["stop now"]
        receipts = await _receipts(engine, job.id)
        _assert_all_settled(receipts)
        assert receipts[message_id][-1][0] == "message_delivered"


async def test_a_steer_the_phase_never_sent_goes_with_the_next_kickoff(
    scripted_home: Path,
) -> None:
    engines: list[Engine] = []
    sent: list[str] = []

    async def late(request: PhaseRequest) -> None:  # ends its turn without taking the steer
        sent.append(await engines[0].message(request.job.id, "late note", mode="steer"))

    executor = ScriptedExecutor({"spec": [late]})
    async with Engine(scripted_home, executors=executor.registry(), watch_config=False) as engine:
        engines.append(engine)
        job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH))
        async with asyncio.timeout(10):
            parked = await engine.wait_until(job.id)
        assert parked.status is JobStatus.COMPLETE
        build = [r for r in executor.requests if r.phase.name == "build"]
        assert "[DEVELOPER MESSAGE]\nlate note" in build[0].kickoff
        receipts = await _receipts(engine, job.id)
        _assert_all_settled(receipts)
        assert receipts[sent[0]][-1] == ("message_delivered", {"messageId": sent[0], "turn": 1})
