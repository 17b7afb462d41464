"""The settings screen: the runner's config as forms, one section per block, saved with ``ctrl+s``.

The config comes from :meth:`EngineClient.get_config` with every secret masked and goes back,
whole, through :meth:`EngineClient.put_config` (``PUT /config``), which validates and saves it
atomically. A secret left as the mask stays as saved. A refusal is shown next to the field the
runner names (``jobs.maxConcurrent``), and the user's edits stay on screen.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    ContentSwitcher,
    Footer,
    Input,
    Label,
    OptionList,
    Select,
    Static,
    Switch,
    TextArea,
)
from textual.widgets.option_list import Option

from coro_tui.client import ClientError
from coro_tui.screens._config_form import ConfigField, FieldInvalid, FieldSpec, build_specs

if TYPE_CHECKING:
    from coro_tui.client import EngineClient

__all__ = ["SettingsScreen"]

GENERAL = "general"
"""The section holding top-level values that are not blocks (``inheritClaudeCodeMcps``)."""


class SettingsScreen(Screen[None]):
    """Edit the runner's configuration."""

    CSS_PATH = "settings.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", id="settings.save", tooltip="Validate and save"),
        Binding("ctrl+r", "revert", "Revert", id="settings.revert", tooltip="Undo unsaved edits"),
        Binding("escape", "close", "Close", id="settings.close", tooltip="Leave settings"),
    ]

    @dataclass
    class Saved(Message):
        """The runner validated and saved the config (``config``: as saved, redacted)."""

        config: dict[str, Any]

    @dataclass
    class Refused(Message):
        """Nothing was saved: ``field`` (dotted camelCase path, if known) is at fault."""

        message: str
        field: str | None

    def __init__(self, client: EngineClient) -> None:
        super().__init__()
        self.client = client
        self._config: dict[str, Any] | None = None
        self._sections: dict[str, list[FieldSpec]] = {}
        self._section_of: dict[str, str] = {}
        self._warned = False

    # -- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("Settings", id="settings-title")
        yield Static(id="settings-error")
        if self._config is None:
            yield Static("Loading the configuration…", id="settings-loading")
        else:
            with Horizontal(id="settings-body"):
                yield OptionList(
                    *(Option(name, id=_dom_id(name)) for name in self._sections),
                    id="settings-blocks",
                )
                with ContentSwitcher(id="settings-forms", initial=self._first_id()):
                    for name, specs in self._sections.items():
                        section = VerticalScroll(id=_dom_id(name), classes="settings-section")
                        section.can_focus = False  # tab goes straight to the first field
                        with section:
                            yield from self._fields(specs)
        yield Footer()

    def _fields(self, specs: list[FieldSpec] | tuple[FieldSpec, ...]) -> ComposeResult:
        for spec in specs:
            if spec.kind == "section":
                with Vertical(classes="config-section"):
                    yield Label(spec.name, classes="config-section-title")
                    yield from self._fields(spec.children)
            else:
                yield ConfigField(spec, _get(self._config or {}, spec.path))

    def _first_id(self) -> str | None:
        return _dom_id(next(iter(self._sections))) if self._sections else None

    def on_mount(self) -> None:
        self._load()

    @work(exclusive=True, group="settings-load")
    async def _load(self) -> None:
        try:
            config = await self.client.get_config()
        except ClientError as exc:
            self.query_one("#settings-loading", Static).update(
                f"Cannot read the configuration: {exc.message}"
            )
            return
        self._use(config)
        await self.recompose()
        self.query_one("#settings-blocks", OptionList).focus()

    def _use(self, config: dict[str, Any]) -> None:
        self._config = config
        self._sections = {}
        general: list[FieldSpec] = []
        for spec in build_specs(config):
            if spec.kind in ("section", "json"):
                self._sections[spec.key] = [spec] if spec.kind == "json" else list(spec.children)
            else:
                general.append(spec)
        if general:
            self._sections = {GENERAL: general, **self._sections}
        self._section_of = {}
        for name, specs in self._sections.items():
            for spec in _leaves(specs):
                self._section_of[spec.name] = name

    @on(OptionList.OptionHighlighted, "#settings-blocks")
    def _show_section(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self.query_one("#settings-forms", ContentSwitcher).current = event.option.id

    def _open_section(self, name: str) -> None:
        blocks = self.query_one("#settings-blocks", OptionList)
        blocks.highlighted = list(self._sections).index(name)
        self.query_one("#settings-forms", ContentSwitcher).current = _dom_id(name)

    # -- reading the form ----------------------------------------------------------------------
    @property
    def fields(self) -> dict[str, ConfigField]:
        """Every field on the form, by dotted camelCase path."""
        return {field.spec.name: field for field in self.query(ConfigField)}

    def _collect(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The whole config as edited, and the fields whose text cannot be sent."""
        assert self._config is not None
        out = copy.deepcopy(self._config)
        problems: dict[str, str] = {}
        for name, field in self.fields.items():
            try:
                value = field.read()
            except FieldInvalid as exc:
                problems[name] = str(exc)
                continue
            node = out
            for part in field.spec.path[:-1]:
                node = node.setdefault(part, {})
            node[field.spec.key] = value
        return out, problems

    @property
    def modified(self) -> bool:
        """Whether the form differs from the config as last loaded or saved."""
        if self._config is None:
            return False
        edited, problems = self._collect()
        return bool(problems) or edited != self._config

    @on(Input.Changed)
    @on(Switch.Changed)
    @on(Select.Changed)
    @on(TextArea.Changed)
    def _edited(self) -> None:
        self._warned = False
        title = "Settings · unsaved changes" if self.modified else "Settings"
        self.query_one("#settings-title", Static).update(title)

    # -- actions -------------------------------------------------------------------------------
    async def action_save(self) -> None:
        if self._config is None:
            return
        self._show_error(None)
        for field in self.fields.values():
            field.show_error(None)
        edited, problems = self._collect()
        if problems:
            for name, message in problems.items():
                self.fields[name].show_error(message)
            first, message = next(iter(problems.items()))
            self.focus_field(first)
            self.post_message(self.Refused(message, first))
            return
        try:
            saved = await self.client.put_config(edited)
        except ClientError as exc:
            self._refused(exc)
            self.post_message(self.Refused(exc.message, exc.field))
            return
        self._reload(saved)
        self.notify("Settings saved", title="Settings")
        self.post_message(self.Saved(saved))

    def action_revert(self) -> None:
        if self._config is not None:
            self._reload(self._config)
            self.notify("Unsaved edits undone", title="Settings")

    def action_close(self) -> None:
        """Leave; with unsaved edits, only on a second ``escape`` in a row."""
        if self.modified and not self._warned:
            self._warned = True
            self.notify(
                "Unsaved changes: escape again to discard them, ctrl+s to save.",
                title="Settings",
                severity="warning",
            )
            return
        self.dismiss(None)

    def _reload(self, config: dict[str, Any]) -> None:
        self._config = config
        self._show_error(None)
        for field in self.fields.values():
            field.load(_get(config, field.spec.path))
        self.query_one("#settings-title", Static).update("Settings")

    def _refused(self, exc: ClientError) -> None:
        name = _owner(exc.field, self.fields)
        if name is None:
            self._show_error(exc.message)
            return
        self.fields[name].show_error(exc.message)
        self.focus_field(name)

    def focus_field(self, name: str) -> None:
        """Open the section holding the field ``name`` (``jobs.maxConcurrent``) and focus it."""
        section = self._section_of.get(name)
        if section is not None:
            self._open_section(section)
        self.fields[name].control.focus()

    def _show_error(self, message: str | None) -> None:
        error = self.query_one("#settings-error", Static)
        error.update(message or "")
        error.set_class(bool(message), "-shown")


def _leaves(specs: list[FieldSpec] | tuple[FieldSpec, ...]) -> list[FieldSpec]:
    out: list[FieldSpec] = []
    for spec in specs:
        out.extend(_leaves(spec.children) if spec.kind == "section" else [spec])
    return out


def _owner(field: str | None, fields: dict[str, ConfigField]) -> str | None:
    """The form field that holds the runner's ``field`` (itself, or the JSON value around it)."""
    if not field:
        return None
    best: str | None = None
    for name in fields:
        if (field == name or field.startswith((f"{name}.", f"{name}["))) and (
            best is None or len(name) > len(best)
        ):
            best = name
    return best


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _dom_id(name: str) -> str:
    return "section-" + re.sub(r"[^A-Za-z0-9_-]", "_", name)
