"""The new-job dialog against a real engine, through both client kinds, plus its snapshots."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static, Switch

from coro_tui.screens.new_job import NewJobScreen
from tests.support.tui import TuiRig
from tests.tui._doubles import FixedClient, ScreenHost

TEST_WORKFLOW = "workflows/test/workflow.md"


def _host(client: Any) -> ScreenHost:
    return ScreenHost(lambda: NewJobScreen(client))


async def _opened(pilot: Pilot[None]) -> NewJobScreen:
    """The dialog, once its workflow list has arrived."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, NewJobScreen)
    return screen


def _error(screen: NewJobScreen, field: str) -> str:
    error = screen.query_one(f"#{field}-error", Static)
    return str(error.render()) if error.display else ""


async def test_ctrl_s_creates_the_job_with_the_form_s_params(tui_rig: TuiRig) -> None:
    app = _host(tui_rig.client)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _opened(pilot)
        select = screen.query_one("#workflow", Select)
        assert select.value == "workflows/job/workflow.md"  # the default when offered

        await pilot.press(*"svc")  # the repository field has the focus
        await pilot.press("tab", *"Add a health check", "enter", *"on /healthz")
        await pilot.press("tab", *"ana, bo")
        await pilot.press("tab", "enter", "T", "enter")  # open the list, type to search
        assert select.value == TEST_WORKFLOW
        await pilot.press("tab", "space")  # interactive on
        assert screen.query_one("#interactive", Switch).value is True
        await pilot.press("ctrl+s")

        kind, job_id = await app.outcome()  # type: ignore[misc]
        assert kind == "dismissed"
        assert isinstance(job_id, str)

    job = await tui_rig.client.get_job(job_id)
    assert job.workflow_path == TEST_WORKFLOW
    assert job.interactive is True
    assert job.params == {
        "repo": "svc",
        "description": "Add a health check\non /healthz",
        "reviewers": ["ana", "bo"],
    }


async def test_missing_fields_are_shown_inline_and_nothing_is_created(tui_rig: TuiRig) -> None:
    app = _host(tui_rig.client)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _opened(pilot)
        await pilot.press("ctrl+s")
        assert _error(screen, "repo") == "a repository is required"
        assert _error(screen, "description") == "a description is required"
        assert screen.focused is screen.query_one("#repo", Input)
        assert app.screen is screen  # still open

        await pilot.press(*"svc")
        assert _error(screen, "repo") == ""  # fixed as typed

    assert await tui_rig.client.list_jobs() == []


async def test_a_reviewer_name_with_a_space_is_refused_inline(tui_rig: TuiRig) -> None:
    app = _host(tui_rig.client)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _opened(pilot)
        await pilot.press(*"svc", "tab", *"brief", "tab", *"ana, bo b")
        assert "no spaces" in _error(screen, "reviewers")
        await pilot.press("ctrl+s")
        assert app.screen is screen
        assert screen.focused is screen.query_one("#reviewers", Input)

    assert await tui_rig.client.list_jobs() == []


async def test_the_runner_s_refusal_is_shown_next_to_its_field(tui_rig: TuiRig) -> None:
    app = _host(tui_rig.client)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _opened(pilot)
        screen.query_one("#workflow", Select).value = TEST_WORKFLOW
        # The workflow disappears between listing and creating: the runner refuses it.
        (tui_rig.home / "intelligence" / TEST_WORKFLOW).unlink()
        await pilot.press(*"svc", "tab", *"brief", "ctrl+s")

        refused = await app.outcome()
        assert isinstance(refused, NewJobScreen.Refused)
        assert refused.field == "workflowPath"
        await pilot.pause()
        assert TEST_WORKFLOW in _error(screen, "workflow")
        assert screen.query_one("#workflow").has_class("-invalid")
        assert screen.query_one("#repo", Input).value == "svc"  # the form is kept

    assert await tui_rig.client.list_jobs() == []


async def test_escape_cancels_without_creating_a_job(tui_rig: TuiRig) -> None:
    app = _host(tui_rig.client)
    async with app.run_test(size=(100, 30)) as pilot:
        await _opened(pilot)
        await pilot.press(*"svc", "escape")
        assert await app.outcome() == ("dismissed", None)

    assert await tui_rig.client.list_jobs() == []


# ── snapshots ───────────────────────────────────────────────────────────────────────────────


async def _filled(pilot: Pilot[None]) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.press(*"acme/svc", "tab", *"Add a health check.", "tab", *"ana, b o")
    await pilot.press("ctrl+s")
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_empty(snap_compare: Any, size: tuple[int, int]) -> None:
    async def loaded(pilot: Pilot[None]) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(_host(FixedClient()), terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_with_errors(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(_host(FixedClient()), terminal_size=size, run_before=_filled)


def test_snapshot_no_color(snap_compare: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(_host(FixedClient()), terminal_size=(80, 24), run_before=_filled)
