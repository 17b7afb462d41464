"""The key help: the bindings of the screen below and of the app, as the keymap has them."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Static

from coro_tui.screens.help import HelpScreen, KeyHelp, bindings_of
from coro_tui.screens.settings import SettingsScreen
from tests.support.tui import TuiRig
from tests.tui._doubles import SampleApp, SampleScreen, ScreenHost


def _rows(screen: HelpScreen) -> list[str]:
    """Each section's title, then its table rendered as plain text lines."""
    lines: list[str] = []
    for section in screen.query(".help-section").results(Static):
        lines.append(f"## {section.border_title}")
        lines.extend(
            line.text.rstrip() for line in section.render_lines(section.content_region.reset_offset)
        )
    return lines


async def test_help_lists_the_screen_below_and_the_app_with_ids() -> None:
    app = SampleApp(keymap={"runs.open": "o"})
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HelpScreen)
        text = "\n".join(_rows(screen))
        assert "## Sample" in text and "## Everywhere" in text
        sample, everywhere = text.split("## Everywhere")
        for key, description, binding_id in [
            ("n", "New job", "runs.new_job"),
            ("o", "Open job", "runs.open"),  # as the user's keymap rebinds it
            ("p", "Pause job", "job.pause"),
        ]:
            assert any(
                line.split()[:1] == [key] and description in line and binding_id in line
                for line in sample.splitlines()
            ), (key, sample)
        assert "enter" not in sample  # the rebound default key is gone
        assert "app.help" in everywhere and "app.settings" in everywhere
        assert "^q" in everywhere  # Textual's own app keys are listed too


@pytest.mark.parametrize("key", ["escape", "question_mark"])
async def test_escape_or_question_mark_closes_the_help(key: str) -> None:
    app = SampleApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press(key)
        assert isinstance(app.screen, SampleScreen)


async def test_help_over_settings_lists_its_bindings(tui_rig: TuiRig) -> None:
    app = ScreenHost(lambda: SettingsScreen(tui_rig.client))
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        settings = app.screen
        assert isinstance(settings, SettingsScreen)
        await app.push_screen(HelpScreen(settings))
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        rows = bindings_of(settings)
        assert KeyHelp("^s", "Save", "settings.save") in rows
        assert KeyHelp("^r", "Revert", "settings.revert") in rows
        text = "\n".join(_rows(app.screen))
        assert "settings.save" in text and "settings.revert" in text


async def test_a_long_list_scrolls_by_keyboard() -> None:
    app = SampleApp()
    async with app.run_test(size=(80, 12)) as pilot:
        await pilot.pause()
        body = app.screen.query_one("#help-body")
        assert body.has_focus
        assert body.max_scroll_y > 0  # more keys than rows at 80x12
        await pilot.press("pagedown")
        assert body.scroll_y > 0


# ── snapshots ───────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(SampleApp(keymap={"runs.open": "o"}), terminal_size=size)


def test_snapshot_no_color(snap_compare: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(SampleApp(), terminal_size=(80, 24))
