"""The settings screen against a real engine, through both client kinds, plus its snapshots."""

from __future__ import annotations

import json
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, TextArea

from coro_tui.screens._config_form import MASK, SecretInput
from coro_tui.screens.settings import SettingsScreen
from tests.support.tui import TuiRig
from tests.tui._doubles import FixedClient, ScreenHost

SECRET = "ghp_never_on_screen_1234"


def _host(client: Any) -> ScreenHost:
    return ScreenHost(lambda: SettingsScreen(client))


async def _opened(pilot: Pilot[None]) -> SettingsScreen:
    """The screen, once the config has arrived and the forms are built."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, SettingsScreen)
    assert screen.fields, "the forms were not built"
    return screen


def _on_disk(rig: TuiRig) -> dict[str, Any]:
    return json.loads((rig.home / "config.json").read_text())  # type: ignore[no-any-return]


async def _with_secret(rig: TuiRig) -> None:
    """Save a git token through the real path, so the screen receives it masked."""
    config = await rig.client.get_config()
    config["git"]["token"] = SECRET
    await rig.client.put_config(config)
    assert _on_disk(rig)["git"]["token"] == SECRET


def _screen_text(app: ScreenHost) -> str:
    return app.export_screenshot()


async def _replace(pilot: Pilot[None], screen: SettingsScreen, name: str, text: str) -> None:
    """Focus the field ``name`` (opening its section) and type ``text`` over its value."""
    screen.focus_field(name)
    await pilot.pause()
    await pilot.press("ctrl+shift+a" if isinstance(screen.focused, Input) else "ctrl+a")
    await pilot.press(*text)


async def test_a_changed_value_is_saved_to_config_json(tui_rig: TuiRig) -> None:
    app = _host(tui_rig.client)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _opened(pilot)
        assert screen.fields["jobs.maxConcurrent"].read() == 4
        await _replace(pilot, screen, "jobs.maxConcurrent", "7")
        assert screen.modified
        await pilot.press("ctrl+s")

        saved = await app.outcome()
        assert isinstance(saved, SettingsScreen.Saved)
        assert saved.config["jobs"]["maxConcurrent"] == 7
        await pilot.pause()
        assert not screen.modified

    assert _on_disk(tui_rig)["jobs"]["maxConcurrent"] == 7
    assert tui_rig.engine.config.jobs.max_concurrent == 7


async def test_keyboard_reaches_a_block_and_a_switch(tui_rig: TuiRig) -> None:
    app = _host(tui_rig.client)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _opened(pilot)
        blocks = screen.query_one("#settings-blocks", OptionList)
        assert screen.focused is blocks
        jobs = [str(option.prompt) for option in blocks.options].index("jobs")
        await pilot.press(*["down"] * jobs, "tab")  # the first field of the jobs block
        assert screen.focused is screen.fields["jobs.maxConcurrent"].control
        assert tui_rig.engine.config.jobs.idle_watchdog.enabled is False
        await pilot.press("tab", "space")  # jobs.idleWatchdog.enabled
        await pilot.press("ctrl+s")
        assert isinstance(await app.outcome(), SettingsScreen.Saved)

    # Back to the default (on), so the file no longer holds the block at all.
    assert "jobs" not in _on_disk(tui_rig)
    assert tui_rig.engine.config.jobs.idle_watchdog.enabled is True


async def test_a_secret_left_masked_stays_unchanged_and_never_shows(tui_rig: TuiRig) -> None:
    await _with_secret(tui_rig)
    app = _host(tui_rig.client)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _opened(pilot)
        token = screen.fields["git.token"]
        assert isinstance(token.control, SecretInput)
        assert token.control.value == MASK
        screen.focus_field("git.token")
        await pilot.pause()
        assert SECRET not in _screen_text(app)
        assert MASK in _screen_text(app)

        await _replace(pilot, screen, "git.username", "dev")
        await pilot.press("ctrl+s")
        saved = await app.outcome()
        assert isinstance(saved, SettingsScreen.Saved)
        await pilot.pause()
        assert SECRET not in _screen_text(app)

    on_disk = _on_disk(tui_rig)
    assert on_disk["git"] == {"username": "dev", "token": SECRET}


async def test_typing_over_a_secret_replaces_it_without_showing_it(tui_rig: TuiRig) -> None:
    await _with_secret(tui_rig)
    app = _host(tui_rig.client)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _opened(pilot)
        screen.focus_field("git.token")
        await pilot.pause()
        await pilot.press("left", *"ghp_new_token_5678")  # even with the mask deselected
        assert screen.fields["git.token"].read() == "ghp_new_token_5678"
        assert "ghp_new_token_5678" not in _screen_text(app)
        await pilot.press("ctrl+s")
        assert isinstance(await app.outcome(), SettingsScreen.Saved)
        await pilot.pause()
        assert screen.fields["git.token"].control.value == MASK  # type: ignore[attr-defined]
        assert "ghp_new_token_5678" not in _screen_text(app)

    assert _on_disk(tui_rig)["git"]["token"] == "ghp_new_token_5678"


async def test_an_invalid_value_is_shown_inline_and_nothing_is_saved(tui_rig: TuiRig) -> None:
    before = (tui_rig.home / "config.json").read_text()
    app = _host(tui_rig.client)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _opened(pilot)
        await _replace(pilot, screen, "jobs.maxConcurrent", "0")
        await _replace(pilot, screen, "server.host", "example.org")
        await pilot.press("ctrl+s")

        refused = await app.outcome()
        assert isinstance(refused, SettingsScreen.Refused)
        assert refused.field == "jobs.maxConcurrent"
        await pilot.pause()
        field = screen.fields["jobs.maxConcurrent"]
        assert field.has_class("-invalid")
        assert "jobs.maxConcurrent" in str(field.query_one(".config-error").render())
        assert screen.focused is field.control  # its block opened, the field focused
        # The user's edits are all still there.
        assert field.control.value == "0"  # type: ignore[attr-defined]
        assert screen.fields["server.host"].read() == "example.org"

    assert (tui_rig.home / "config.json").read_text() == before
    assert tui_rig.engine.config.jobs.max_concurrent == 4


async def test_broken_json_is_refused_before_anything_is_sent(tui_rig: TuiRig) -> None:
    before = (tui_rig.home / "config.json").read_text()
    app = _host(tui_rig.client)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _opened(pilot)
        keymap = screen.fields["tui.keymap"]
        assert isinstance(keymap.control, TextArea)
        keymap.control.load_text('{"runs.open": ')
        await pilot.press("ctrl+s")

        refused = await app.outcome()
        assert isinstance(refused, SettingsScreen.Refused)
        assert refused.field == "tui.keymap"
        assert "not valid JSON" in str(keymap.query_one(".config-error").render())

    assert (tui_rig.home / "config.json").read_text() == before


async def test_a_json_block_is_saved_and_revert_undoes_edits(tui_rig: TuiRig) -> None:
    app = _host(tui_rig.client)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _opened(pilot)
        keymap = screen.fields["tui.keymap"].control
        assert isinstance(keymap, TextArea)
        keymap.load_text('{"runs.open": "o"}')
        await _replace(pilot, screen, "jobs.maxConcurrent", "9")
        await pilot.press("ctrl+r")  # revert: both edits undone
        assert screen.fields["jobs.maxConcurrent"].read() == 4
        assert screen.fields["tui.keymap"].read() == {}

        keymap.load_text('{"runs.open": "o"}')
        await pilot.press("ctrl+s")
        assert isinstance(await app.outcome(), SettingsScreen.Saved)

    assert _on_disk(tui_rig)["tui"] == {"keymap": {"runs.open": "o"}}
    assert "maxConcurrent" not in _on_disk(tui_rig).get("jobs", {})


async def test_escape_with_unsaved_edits_asks_for_a_second_escape(tui_rig: TuiRig) -> None:
    before = (tui_rig.home / "config.json").read_text()
    app = _host(tui_rig.client)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _opened(pilot)
        await _replace(pilot, screen, "jobs.maxConcurrent", "3")
        await pilot.press("escape")
        assert app.screen is screen  # warned, still open
        await pilot.press("escape")
        assert await app.outcome() == ("dismissed", None)

    assert (tui_rig.home / "config.json").read_text() == before


# ── snapshots ───────────────────────────────────────────────────────────────────────────────


def _show(block: str, field: str | None = None) -> Any:
    async def run_before(pilot: Pilot[None]) -> None:
        screen = await _opened(pilot)
        blocks = screen.query_one("#settings-blocks", OptionList)
        names = [str(option.prompt) for option in blocks.options]
        blocks.highlighted = names.index(block)
        await pilot.pause()
        if field is not None:
            screen.focus_field(field)
            await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_git_block_with_a_masked_secret(snap_compare: Any, size: tuple[int, int]) -> None:
    run_before = _show("git", "git.token")
    assert snap_compare(_host(FixedClient()), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_jobs_block_with_sub_sections(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(_host(FixedClient()), terminal_size=size, run_before=_show("jobs"))


def test_snapshot_tui_block_no_color(snap_compare: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(_host(FixedClient()), terminal_size=(80, 24), run_before=_show("tui"))
