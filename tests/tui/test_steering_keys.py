"""Steering a running job from its screen: ``m`` steer, ``M`` queue, ``!`` urgent, ``p``
pause, the message line, the receipts and the activity line, on a real engine through both
client kinds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from coro_tui.widgets.steering import ActivityLine, MessageInput, MessageList
from engine.phase import PhaseRequest, PhaseResult
from state import JobEvent, JobStatus, PhaseUsage
from tests.support.tui import TuiRig
from tests.tui._jobs import until
from tests.tui.test_job_screen import job_app, opened

Hold = Callable[[PhaseRequest], Awaitable[PhaseResult]]


def holding(release: asyncio.Event, tool: dict[str, Any] | None = None) -> Hold:
    """A visit that keeps the phase running (optionally inside a tool call) until ``release``
    is set or the developer pauses or interrupts it."""

    async def visit(request: PhaseRequest) -> PhaseResult:
        from state import EventKind

        if tool is not None:
            await request.context.emit(EventKind.TOOL_CALL, tool)
        steering = request.steering
        while not (release.is_set() or steering.pause_requested or steering.interrupted):
            await asyncio.sleep(0.01)
        stop = "interrupted" if steering.pause_requested else "end_turn"
        return PhaseResult(stop_reason=stop, usage=PhaseUsage(phase=request.phase.name))

    return visit


async def running_job(rig: TuiRig, job_id: str, release: asyncio.Event, **kw: Any) -> None:
    rig.executor.script = {"spec": [holding(release, **kw)]}
    await rig.start_job(job_id)
    await rig.wait(job_id, lambda j: j.status.is_running and j.phase == "spec")


async def accepted(rig: TuiRig, job_id: str) -> list[JobEvent]:
    return await rig.engine.store.read_events(job_id, kinds=["message_accepted"])


@pytest.mark.parametrize(
    ("key", "mode"), [("m", "steer"), ("M", "queue"), ("exclamation_mark", "urgent")]
)
async def test_each_key_sends_its_mode(tui_rig: TuiRig, key: str, mode: str) -> None:
    release = asyncio.Event()
    await running_job(tui_rig, f"st-{mode}", release)
    app = job_app(tui_rig, f"st-{mode}")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await opened(pilot)
            line = screen.query_one("#job-message", MessageInput)
            await pilot.press(key)
            await until(pilot, lambda: line.has_focus)
            assert line.mode == mode
            await pilot.press(*"run tests", "enter")
            await until(pilot, lambda: not line.has_class("-shown"))
            events: list[JobEvent] = []

            async def arrived() -> bool:
                events[:] = await accepted(tui_rig, f"st-{mode}")
                return bool(events)

            for _ in range(200):
                if await arrived():
                    break
                await pilot.pause(0.01)
            assert [(e.data["mode"], e.data["text"]) for e in events] == [(mode, "run tests")]
            want = f"you ({mode}): run tests  [accepted]"
            await until(pilot, lambda: any(want in line for line in screen.log_pane.lines))
            messages = screen.query_one("#job-messages", MessageList)
            assert "run tests" in str(messages.render())
    finally:
        release.set()


async def test_escape_closes_the_message_line_unsent(tui_rig: TuiRig) -> None:
    release = asyncio.Event()
    await running_job(tui_rig, "st-esc", release)
    app = job_app(tui_rig, "st-esc")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await opened(pilot)
            line = screen.query_one("#job-message", MessageInput)
            await pilot.press("m")
            await until(pilot, lambda: line.has_focus)
            await pilot.press(*"never mind", "escape")
            await until(pilot, lambda: not line.has_class("-shown"))
            assert app.screen is screen  # escape closed the line, not the screen
            assert screen.log_pane.log_widget.has_focus
            await pilot.pause(0.1)
            assert await accepted(tui_rig, "st-esc") == []
    finally:
        release.set()


async def test_p_pauses_a_running_job(tui_rig: TuiRig) -> None:
    release = asyncio.Event()
    await running_job(tui_rig, "st-pause", release)
    app = job_app(tui_rig, "st-pause")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await opened(pilot)
            await pilot.press("p")
            job = await tui_rig.wait("st-pause", lambda j: j.status.is_parked)
            assert job.status is JobStatus.AWAITING_DEVELOPER_INPUT
            await until(pilot, lambda: app.said("pausing st-pause"))
    finally:
        release.set()


async def test_the_activity_line_shows_the_tool_in_flight(tui_rig: TuiRig) -> None:
    release = asyncio.Event()
    tool = {"id": "toolu_1", "name": "Bash", "input": {"command": "pytest -q"}}
    await running_job(tui_rig, "st-act", release, tool=tool)
    app = job_app(tui_rig, "st-act")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await opened(pilot)
            activity = screen.query_one("#job-activity", ActivityLine)
            for _ in range(2000):
                if activity.describe().startswith("tool Bash: pytest -q — "):
                    break
                await pilot.pause(0.01)
            else:
                events = await tui_rig.engine.store.read_events("st-act", limit=100)
                raise AssertionError(
                    f"the activity line says {activity.describe()!r}, tools {activity.tools!r}; "
                    f"events: {[(e.seq, e.kind, e.data) for e in events]}"
                )
            assert activity.has_class("-shown")
            assert "now: tool Bash: pytest -q" in str(activity.render())
            release.set()
            await until(pilot, lambda: not activity.describe().startswith("tool"))
    finally:
        release.set()


async def test_a_refused_message_stays_in_the_line(tui_rig: TuiRig) -> None:
    await tui_rig.finished_job("st-done")
    app = job_app(tui_rig, "st-done")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await opened(pilot)
        line = screen.query_one("#job-message", MessageInput)
        await pilot.press("m")
        await until(pilot, lambda: line.has_focus)
        await pilot.press(*"too late", "enter")
        await until(pilot, lambda: app.said("no more messages", "error"))
        assert line.has_class("-shown") and line.value == "too late"
