"""A fixed, in-memory :class:`~coro_tui.client.EngineClient` for snapshot tests only.

Behaviour tests use the real clients (``tests/support/tui.py``); snapshots need data that never
changes: a fixed workflow list and a fixed, already-redacted config.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import anyio
from textual import on
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen

from coro_tui.client import ClientError, PlanEvent, RunnerInfo, WorkflowSummary
from coro_tui.screens.new_job import NewJobScreen
from coro_tui.screens.settings import SettingsScreen

__all__ = [
    "FIXED_CONFIG",
    "FIXED_WORKFLOWS",
    "FixedClient",
    "FixedPlanClient",
    "SampleApp",
    "SampleScreen",
    "ScreenHost",
]

MASK = "********"

FIXED_WORKFLOWS = [
    WorkflowSummary(
        path="workflows/job-fast/workflow.md",
        display_name="Fast lane",
        description="Small changes.",
        kind="job",
        phases=("build", "review"),
        layer="base",
    ),
    WorkflowSummary(
        path="workflows/job/workflow.md",
        display_name="Standard lane",
        description="Plan, build, review.",
        kind="job",
        phases=("plan", "build", "review"),
        layer="base",
    ),
]


def _fixed_config() -> dict[str, Any]:
    from engine.config import LocalConfig
    from engine.config._secrets import redact

    config = LocalConfig.model_validate(
        {
            "git": {"provider": "github", "username": "dev", "token": "ghp_snapshot_secret"},
            "llm": {"apiKey": "sk-ant-snapshot-secret"},
            "jobs": {"maxConcurrent": 2},
            "tui": {"keymap": {"new_job.submit": "ctrl+enter"}},
        }
    )
    return redact(config)


FIXED_CONFIG: dict[str, Any] = _fixed_config()


class FixedClient:
    """Answers ``workflows`` and ``get_config`` with fixed data; records ``put_config``."""

    def __init__(self) -> None:
        self.config = copy.deepcopy(FIXED_CONFIG)
        self.saved: list[dict[str, Any]] = []

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo(mode="local", url=None)

    async def workflows(self) -> list[WorkflowSummary]:
        return list(FIXED_WORKFLOWS)

    async def get_config(self) -> dict[str, Any]:
        return copy.deepcopy(self.config)

    async def put_config(self, config: dict[str, Any]) -> dict[str, Any]:
        self.saved.append(copy.deepcopy(config))
        return copy.deepcopy(config)

    async def create_job(self, spec: Any) -> Any:
        raise ClientError("not in snapshots")

    def all_events(self, after: int = 0) -> AsyncIterator[list[Any]]:
        raise NotImplementedError

    def job_events(self, job_id: str, after: int = 0) -> AsyncIterator[list[Any]]:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class FixedPlanClient(FixedClient):
    """A saved plan (``get_plan``) and one scripted turn (``plan_turn``) for plan snapshots.

    Args:
        plan: what ``get_plan`` answers.
        turn: the events of the next turn, as ``(kind, data)``.
        hold: after the events, keep the turn open (a reply caught mid-stream).
    """

    def __init__(
        self,
        plan: dict[str, Any],
        turn: list[tuple[str, dict[str, Any]]] | None = None,
        *,
        hold: bool = False,
    ) -> None:
        super().__init__()
        self.plan = plan
        self.turn = turn or []
        self.hold = hold
        self.held = asyncio.Event()
        """Set once the turn's events are all out and it is being held open."""

    async def get_plan(self, session_id: str) -> dict[str, Any]:
        return copy.deepcopy(self.plan)

    async def plan_turn(
        self, session_id: str, messages: list[dict[str, str]], **_: Any
    ) -> AsyncIterator[PlanEvent]:
        for kind, data in self.turn:
            yield PlanEvent(kind, data)
        if self.hold:
            self.held.set()
            await asyncio.Event().wait()


class ScreenHost(App[None]):
    """A bare app that opens one screen, so a screen can be tested on its own.

    ``outcomes`` receives what the screen reports: its messages (``Saved``, ``Refused``) and,
    when it closes, ``("dismissed", result)``; a test awaits them under ``fail_after``.
    """

    def __init__(self, make_screen: Callable[[], Screen[Any]]) -> None:
        super().__init__()
        self._make_screen = make_screen
        self.outcomes: asyncio.Queue[object] = asyncio.Queue()

    def on_mount(self) -> None:
        self.push_screen(self._make_screen(), self._dismissed)

    def _dismissed(self, result: object) -> None:
        self.outcomes.put_nowait(("dismissed", result))

    @on(SettingsScreen.Saved)
    @on(SettingsScreen.Refused)
    @on(NewJobScreen.Refused)
    def _reported(self, message: Message) -> None:
        self.outcomes.put_nowait(message)

    async def outcome(self) -> object:
        """The screen's next report (15 s at most)."""
        with anyio.fail_after(15):
            return await self.outcomes.get()


class SampleScreen(Screen[None]):
    """A screen with a few bindings, for the help screen to list."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_job", "New job", id="runs.new_job"),
        Binding("enter", "open_job", "Open job", id="runs.open"),
        Binding("p", "pause", "Pause job", id="job.pause"),
    ]


class SampleApp(App[None]):
    """An app with bindings of its own, opening :class:`SampleScreen` then the help over it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Keys", id="app.help"),
        Binding("comma", "settings", "Settings", id="app.settings"),
    ]

    def __init__(self, keymap: dict[str, str] | None = None) -> None:
        super().__init__()
        self._user_keymap = keymap or {}

    def on_mount(self) -> None:
        from coro_tui.screens.help import HelpScreen

        self.set_keymap(self._user_keymap)
        self.push_screen(SampleScreen())
        self.push_screen(HelpScreen())
