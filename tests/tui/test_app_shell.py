"""The app shell: global keys, the command palette, the keymap from config, and the alerts
when a job starts needing the developer — on a real engine, through both client kinds."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from textual.command import CommandPalette
from textual.pilot import Pilot

from coro_tui._commands import palette_entries
from coro_tui._needs import CHECKPOINT_AWAITING, needs_developer
from coro_tui._notify import DeveloperAlerts, osc9, terminal_alert
from coro_tui._startup import TuiPrefs
from coro_tui.app import CoroApp
from coro_tui.client import EngineClient
from coro_tui.screens.new_job import NewJobScreen
from coro_tui.screens.runs import RunsScreen
from coro_tui.screens.settings import SettingsScreen
from state import Job, JobStatus
from tests.support.engine import write_config
from tests.support.tui import TuiRig

ROOT = Path(__file__).resolve().parents[2]


class AlertingApp(CoroApp):
    """Records the bell instead of ringing it (a headless app has no terminal)."""

    def __init__(self, client: EngineClient, **kwargs: Any) -> None:
        super().__init__(client=client, **kwargs)
        self.bells = 0
        self.rang = asyncio.Event()

    def bell(self) -> None:
        self.bells += 1
        self.rang.set()


async def on_runs(pilot: Pilot[Any]) -> RunsScreen:
    with anyio.fail_after(10):
        while not (isinstance(pilot.app.screen, RunsScreen) and pilot.app.screen.loaded):
            await pilot.pause()
    return pilot.app.screen


async def test_global_keys_open_new_job_and_settings_and_q_quits(tui_rig: TuiRig) -> None:
    app = CoroApp(client=tui_rig.client, prefs=TuiPrefs())
    async with app.run_test(size=(100, 30)) as pilot:
        await on_runs(pilot)
        assert app.sub_title.startswith(
            "attached to http://" if tui_rig.kind == "remote" else "engine in this process"
        )
        await pilot.press("n")
        assert isinstance(app.screen, NewJobScreen)
        await pilot.press("escape")
        await pilot.press("s")
        assert isinstance(app.screen, SettingsScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0


async def test_the_palette_lists_every_binding_by_id_and_runs_it(tui_rig: TuiRig) -> None:
    app = CoroApp(client=tui_rig.client, prefs=TuiPrefs())
    async with app.run_test(size=(100, 30)) as pilot:
        runs = await on_runs(pilot)
        titles = {e.id: e.title for e in palette_entries(runs)}
        assert titles["app.quit"] == "app: quit"
        assert titles["app.new_job"] == "app: new job"
        assert titles["app.help"] == "app: help"
        assert titles["runs.filter"] == "runs: filter"
        assert "app.command_palette" not in titles
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"new job", "enter")
        with anyio.fail_after(5):
            while not isinstance(app.screen, NewJobScreen):
                await pilot.pause()


async def test_a_keymap_in_config_rebinds_a_global_key(tui_rig: TuiRig) -> None:
    write_config(tui_rig.home, tui={"keymap": {"app.new_job": "j"}})
    app = CoroApp(client=tui_rig.client)
    async with app.run_test(size=(100, 30)) as pilot:
        runs = await on_runs(pilot)
        await pilot.press("n")
        assert app.screen is runs
        await pilot.press("j")
        assert isinstance(app.screen, NewJobScreen)
        entry = next(e for e in palette_entries(runs) if e.id == "app.new_job")
        assert entry.key == "j" and "key j" in entry.help


async def test_a_keymap_saved_in_settings_applies_to_a_local_engine(tui_rig: TuiRig) -> None:
    app = CoroApp(client=tui_rig.client, prefs=TuiPrefs())
    async with app.run_test(size=(100, 30)) as pilot:
        await on_runs(pilot)
        app.post_message(SettingsScreen.Saved({"tui": {"keymap": {"app.new_job": "j"}}}))
        await pilot.press("j")
        # A remote runner's config is another machine's: its keymap is not this terminal's.
        assert isinstance(app.screen, NewJobScreen) == (tui_rig.kind == "local")


async def test_each_transition_into_needing_the_developer_rings_once(tui_rig: TuiRig) -> None:
    tui_rig.executor.script["review"] = [[("escalate", {"reason": "no credentials"})]]
    app = AlertingApp(tui_rig.client, prefs=TuiPrefs(notify=True))
    async with app.run_test(size=(100, 30)) as pilot:
        await on_runs(pilot)
        await tui_rig.job_at_checkpoint("job-a")
        with anyio.fail_after(10):
            await app.rang.wait()
        app.rang.clear()
        await tui_rig.engine.approve("job-a")
        await tui_rig.wait("job-a", lambda j: j.status is JobStatus.ESCALATED)
        with anyio.fail_after(10):
            await app.rang.wait()
        await pilot.pause()
    assert app.bells == 2  # the checkpoint, then the escalation: each once


async def test_alerts_fire_once_per_transition_into_needing_the_developer(
    tui_rig: TuiRig,
) -> None:
    tui_rig.executor.script["build"] = [[("escalate", {"reason": "no credentials"})], []]
    alerts: list[str] = []
    seen = asyncio.Event()

    def alert(text: str) -> None:
        alerts.append(text)
        seen.set()

    follower = asyncio.create_task(DeveloperAlerts(tui_rig.client, alert).run())
    try:
        await tui_rig.start_job("job-b")
        await tui_rig.wait("job-b", lambda j: j.status is JobStatus.ESCALATED)
        with anyio.fail_after(10):
            await seen.wait()
        seen.clear()
        await tui_rig.client.resume("job-b", "credentials are in place")
        await tui_rig.wait("job-b", lambda j: j.status is JobStatus.COMPLETE)
        await tui_rig.finished_job("job-c")
        await tui_rig.job_at_checkpoint("job-d")
        with anyio.fail_after(10):
            await seen.wait()
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    assert alerts == [
        "coro: job-b needs you: escalated: no credentials",
        "coro: job-d needs you: checkpoint: approve to continue after build",
    ]


def test_needs_developer_names_the_reason() -> None:
    from engine.runner import CHECKPOINT_PREFIX

    assert CHECKPOINT_AWAITING == CHECKPOINT_PREFIX
    job = Job(id="j", status=JobStatus.AWAITING_DEVELOPER_INPUT,
              awaiting_event=f"{CHECKPOINT_PREFIX}plan")  # fmt: skip
    assert needs_developer(job) == "checkpoint: approve to continue after plan"
    assert needs_developer(Job(id="j", awaiting_event="checkpoint: look")) == "checkpoint: look"
    failed = Job(id="j", status=JobStatus.FAILED, escalation_message="budget\nmore")
    assert needs_developer(failed) == "failed: budget"
    assert needs_developer(Job(id="j", status=JobStatus.CODING)) is None
    assert needs_developer(Job(id="j", status=JobStatus.AWAITING_PR_MERGE)) is None


class _Driver:
    def __init__(self) -> None:
        self.written: list[str] = []

    def write(self, data: str) -> None:
        self.written.append(data)


class _Terminal:
    """What :func:`terminal_alert` uses of an app."""

    is_headless = False

    def __init__(self) -> None:
        self._driver = _Driver()
        self.bells = 0

    def bell(self) -> None:
        self.bells += 1


def test_an_alert_rings_and_sends_osc9_through_the_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TMUX", raising=False)
    terminal = _Terminal()
    terminal_alert(terminal)("coro: job-a needs you:\x1b[31m escalated")  # type: ignore[arg-type]
    assert terminal.bells == 1
    assert terminal._driver.written == ["\x1b]9;coro: job-a needs you: [31m escalated\x07"]
    wrapped = osc9("hi", tmux=True)
    assert wrapped == "\x1bPtmux;\x1b\x1b]9;hi\x07\x1b\\"


_PROBE = """
import json, sys
from coro_tui.app import CoroApp
CoroApp()
import coro_tui.screens.help, coro_tui.screens.new_job, coro_tui.screens.settings
heavy = ("anthropic", "mcp", "starlette", "uvicorn", "engine.runtime", "state", "httpx2")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def test_the_app_is_built_without_loading_the_engine(coro_home: Path) -> None:
    """Before the first paint only Textual and coro's UI modules load (the screens too)."""
    (coro_home / "config.json").write_text(json.dumps({"tui": {"keymap": {"app.help": "h"}}}))
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


async def test_a_job_created_from_the_new_job_dialog_opens_on_its_job_screen(
    tui_rig: TuiRig,
) -> None:
    from coro_tui.screens.job import JobScreen

    app = CoroApp(client=tui_rig.client, prefs=TuiPrefs(log_max_lines=123))
    async with app.run_test(size=(100, 30)) as pilot:
        await on_runs(pilot)
        await pilot.press("n")
        await pilot.pause()
        await pilot.press(*"svc", "tab", *"Add a health check", "tab", *"ana")
        await pilot.press("ctrl+s")
        for _ in range(100):
            if isinstance(app.screen, JobScreen):
                break
            await pilot.pause(0.05)
        screen = app.screen
        assert isinstance(screen, JobScreen) and screen.log_max_lines == 123
        [job] = await tui_rig.client.list_jobs()
        assert screen.job_id == job.id and job.params["repo"] == "svc"
