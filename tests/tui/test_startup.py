"""Start-up: a bare ``coro`` attaches to a runner that answers, and owns the engine otherwise;
quitting an owning TUI asks when jobs run, then stops the engine and removes ``runner.json``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from textual.pilot import Pilot
from typer.testing import CliRunner

from coro_tui._startup import Launch, Session, open_session, resolve_token, runner_urls
from coro_tui.app import CoroApp
from coro_tui.cli import app as cli
from coro_tui.screens.runs import RunsScreen
from coro_tui.widgets.confirm import ConfirmDialog
from engine.api import ApiServer
from engine.headless import write_runner_file
from engine.phase import PhaseRequest, PhaseResult
from engine.runtime import Engine
from state import JobInput, SqliteStateBackend
from tests.support.engine import ScriptedExecutor, write_config, write_intelligence


@pytest.fixture
def home(coro_home: Path) -> Path:
    write_intelligence(coro_home)
    write_config(coro_home, server={"port": 0})
    return coro_home


@pytest.fixture
async def headless_runner(home: Path) -> AsyncIterator[ApiServer]:
    """A runner already running for ``home``, as ``coro start --headless`` leaves it."""
    engine = Engine(home, watch_config=False)
    await engine.start()
    api = ApiServer(engine, port=0, mode="headless")
    await api.start()
    write_runner_file(engine.paths, api)
    yield api
    await api.stop()
    await engine.stop(grace=1)


async def connected(pilot: Pilot[Any]) -> CoroApp:
    app = pilot.app
    assert isinstance(app, CoroApp)
    with anyio.fail_after(20):
        while app.client is None or not isinstance(app.screen, RunsScreen):
            await pilot.pause()
    return app


async def test_coro_attaches_to_a_runner_that_answers(
    home: Path, headless_runner: ApiServer
) -> None:
    app = CoroApp(Launch.auto())
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        assert app.sub_title == f"attached to {headless_runner.url}"
        assert app.session is not None and not app.session.owns_engine
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0
    await app.session.aclose()
    async with httpx2.AsyncClient() as http:  # quitting an attached TUI leaves the runner up
        assert (await http.get(f"{headless_runner.url}/health")).status_code == 200


async def test_coro_owns_the_engine_when_no_runner_answers(home: Path) -> None:
    app = CoroApp(Launch.auto())
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        session = app.session
        assert session is not None and session.owns_engine and session.api is not None
        url = session.api.url
        assert app.sub_title == f"engine in this process · {url}"
        recorded = json.loads((home / "runner.json").read_text())
        assert recorded["url"] == url and recorded["mode"] == "tui"
        async with httpx2.AsyncClient() as http:  # `coro jobs` and `coro attach` can reach it
            health = (await http.get(f"{url}/health")).json()
        assert health["mode"] == "tui"
        await pilot.press("q")  # no job runs: no question
        with anyio.fail_after(10):
            while app.is_running:
                await pilot.pause()
    assert app.return_value == 0
    assert not (home / "runner.json").exists()


async def test_quitting_with_jobs_running_asks_then_stops_the_engine(home: Path) -> None:
    started = asyncio.Event()

    async def forever(request: PhaseRequest) -> PhaseResult | None:
        started.set()
        await asyncio.Event().wait()  # a phase that never reaches a boundary by itself
        return None

    executor = ScriptedExecutor({"spec": [forever]})

    def make_engine(home: Path | None) -> Engine:
        return Engine(home, executors=executor.registry(), watch_config=False)

    app = CoroApp(Launch.auto(), opener=partial(open_session, make_engine=make_engine))
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        session = app.session
        assert session is not None and session.engine is not None
        job = await session.engine.create_job(
            JobInput(workflow_path="workflows/test/workflow.md", params={"repo": "svc"})
        )
        with anyio.fail_after(10):
            await started.wait()
        await pilot.press("q")
        with anyio.fail_after(5):
            while not isinstance(app.screen, ConfirmDialog):
                await pilot.pause()
        await pilot.press("n")  # stay
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, RunsScreen)
        await pilot.press("q")
        with anyio.fail_after(5):
            while not isinstance(app.screen, ConfirmDialog):
                await pilot.pause()
        await pilot.press("y")  # quit: running phases get the grace period …
        await pilot.pause()
        assert app.is_running
        await pilot.press("q")  # … and a second q cuts them now
        with anyio.fail_after(10):
            while app.is_running:
                await pilot.pause()
    assert not (home / "runner.json").exists()
    async with SqliteStateBackend(home / "state.db") as store:
        stored = await store.get_job(job.id)
    assert stored is not None and stored.status.is_running  # cut mid-phase: resumes at start


async def test_attach_uses_the_token_given_then_the_environment_then_the_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home / "runner.token").write_text("from-file\n")
    monkeypatch.delenv("CORO_TOKEN", raising=False)
    assert resolve_token(None) == "from-file"
    monkeypatch.setenv("CORO_TOKEN", "from-env")
    assert resolve_token(None) == "from-env"
    assert resolve_token("given") == "given"


async def test_coro_attach_reaches_the_runner_with_its_token(
    home: Path, headless_runner: ApiServer
) -> None:
    launch = Launch.attach(None)  # URL from runner.json, token from runner.token
    assert launch.url == headless_runner.url == runner_urls()[0]
    session: Session = await open_session(launch)
    try:
        assert session.client.info.mode == "attached"
        assert await session.client.list_jobs() == []
    finally:
        await session.aclose()


def test_bare_coro_without_a_terminal_says_so(home: Path) -> None:
    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 2
    assert "needs a terminal" in result.output


def test_coro_attach_is_a_command() -> None:
    result = CliRunner().invoke(cli, ["attach", "--help"])
    assert result.exit_code == 0
    assert "--token" in result.output and "CORO_TOKEN" in result.output
