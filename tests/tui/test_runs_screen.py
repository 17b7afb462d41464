"""The runs screen: live jobs from a real engine through both client kinds, keys, and snapshots."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import DataTable, Static

from coro_tui.screens import JobScreen, RunsScreen
from coro_tui.screens.runs import matches_filter
from state import JobStatus
from tests.support.tui import TuiRig
from tests.tui._jobs import NOW, FixedJobsClient, Host, fixed_jobs, until


def runs_app(rig: TuiRig) -> Host:
    return Host(lambda: RunsScreen(rig.client))


def runs_of(app: Host) -> RunsScreen:
    screen = app.screen
    assert isinstance(screen, RunsScreen)
    return screen


def rows(app: Host) -> list[list[str]]:
    table = app.screen.query_one("#runs-table", DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def row_of(app: Host, job_id: str) -> dict[str, str]:
    table = app.screen.query_one("#runs-table", DataTable)
    keys = [str(c.key.value) for c in table.ordered_columns]
    return dict(zip(keys, [str(c) for c in table.get_row(job_id)], strict=True))


def ids(app: Host) -> list[str]:
    table = app.screen.query_one("#runs-table", DataTable)
    return [str(row.key.value) for row in table.ordered_rows]


async def loaded(pilot: Any) -> RunsScreen:
    await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and pilot.app.screen.loaded)
    return runs_of(pilot.app)


async def test_jobs_that_need_the_developer_come_first_with_the_reason(tui_rig: TuiRig) -> None:
    await tui_rig.finished_job("done-1")
    await tui_rig.job_at_checkpoint("ck-1")
    await tui_rig.finished_job("done-2")
    app = runs_app(tui_rig)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        assert ids(app) == ["ck-1", "done-2", "done-1"]
        ck = row_of(app, "ck-1")
        assert ck["needs"] == "!" and ck["status"] == "awaiting-developer-input"
        assert ck["repo"] == "svc" and ck["workflow"] == "test" and ck["phase"] == "build"
        done = row_of(app, "done-1")
        assert done["needs"] == "" and done["status"] == "complete"
        assert done["tokens"] == "360" and done["cost"] == "$0.03"
        detail = str(app.screen.query_one("#runs-detail", Static).render())
        assert "ck-1" in detail and "! needs you:" in detail and "build" in detail
        assert "1 needs you" in str(app.screen.query_one("#runs-title", Static).render())


async def test_rows_follow_the_engine_live(tui_rig: TuiRig) -> None:
    app = runs_app(tui_rig)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        assert ids(app) == []
        await tui_rig.job_at_checkpoint("live-1")
        await until(pilot, lambda: "live-1" in ids(app) and row_of(app, "live-1")["needs"] == "!")
        await tui_rig.engine.approve("live-1")
        await tui_rig.wait("live-1", lambda j: j.status is JobStatus.COMPLETE)
        await until(pilot, lambda: row_of(app, "live-1")["status"] == "complete")
        assert row_of(app, "live-1")["needs"] == ""


async def test_slash_filters_and_escape_clears(tui_rig: TuiRig) -> None:
    await tui_rig.finished_job("done-1")
    await tui_rig.start_job("ck-1", interactive=True, repo="acme/web")
    await tui_rig.wait("ck-1", lambda j: j.status.is_parked)
    app = runs_app(tui_rig)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.press("slash", *"status:complete")
        await until(pilot, lambda: ids(app) == ["done-1"])
        await pilot.press("enter")  # back to the table, the filter stays
        assert ids(app) == ["done-1"]
        assert app.screen.query_one("#runs-table").has_focus
        await pilot.press("escape")
        await until(pilot, lambda: ids(app) == ["ck-1", "done-1"])
        await pilot.press("slash", *"web")
        await until(pilot, lambda: ids(app) == ["ck-1"])


async def test_enter_opens_the_job_and_escape_comes_back(tui_rig: TuiRig) -> None:
    await tui_rig.finished_job("done-1")
    await tui_rig.finished_job("done-2")
    app = runs_app(tui_rig)
    async with app.run_test(size=(80, 24)) as pilot:
        runs = await loaded(pilot)
        await pilot.press("down")
        assert runs.selected_job_id == "done-1"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job_screen = app.screen
        assert isinstance(job_screen, JobScreen) and job_screen.job_id == "done-1"
        await until(pilot, lambda: job_screen.job is not None)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is runs)


async def test_no_color_keeps_the_marker_readable(
    tui_rig: TuiRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    await tui_rig.job_at_checkpoint("ck-1")
    app = runs_app(tui_rig)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        assert app.no_color
        assert row_of(app, "ck-1")["needs"] == "!"


# -- units ---------------------------------------------------------------------------------------
def test_filter_words() -> None:
    api, billing, web, docs, infra = fixed_jobs()
    assert matches_filter(web, "status:esc")
    assert not matches_filter(api, "status:esc")
    assert matches_filter(api, "acme/api coding")
    assert not matches_filter(api, "acme/api complete")
    assert matches_filter(web, "workflow:job-fast") and not matches_filter(docs, "workflow:job-f")
    assert matches_filter(infra, "AWAITING") and matches_filter(billing, "repo:acme/bill")


def test_bindings_have_stable_ids() -> None:
    assert {b.id for b in RunsScreen.BINDINGS} >= {  # type: ignore[union-attr]
        "runs.open", "runs.filter", "runs.clear_filter"
    }  # fmt: skip


# -- snapshots -----------------------------------------------------------------------------------
def still(**kwargs: Any) -> Host:
    client = FixedJobsClient()
    return Host(lambda: RunsScreen(client, now=lambda: NOW, live=False, **kwargs))


async def _loaded(pilot: Any) -> None:
    await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and pilot.app.screen.loaded)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_runs(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(still(), terminal_size=size, run_before=_loaded)


def test_snapshot_runs_filtered(snap_compare: Any) -> None:
    """``enter`` leaves the filter for the table: no blinking cursor in the picture."""
    assert snap_compare(
        still(), terminal_size=(80, 24), run_before=_loaded, press=["slash", *"status:aw", "enter"]
    )
