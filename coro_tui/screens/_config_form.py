"""The settings form's parts: a field spec per config value, and the widget that edits one.

:func:`build_specs` walks the redacted config (camelCase JSON, as ``GET /config`` answers) next
to the ``LocalConfig`` schema, so each value gets the right control: ``bool`` → switch,
numbers and strings → input, a ``Literal`` → select, a nested block → a sub-section, anything
map- or list-shaped (``mcpServers``, ``plugins.installed``, ``tui.keymap``…) → JSON text.
Keys the schema does not know (a newer runner's) are typed from their values.

Secrets arrive as :data:`MASK`; a :class:`SecretInput` shows the mask, never a value, and
hands the mask back untouched unless the user types a replacement.
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

from textual import events, on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch, TextArea

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "MASK",
    "ConfigField",
    "FieldInvalid",
    "FieldSpec",
    "SecretInput",
    "build_specs",
    "dotted",
]

MASK = "********"
"""What the runner sends for a saved secret; sent back, it means "unchanged"."""

Kind = Literal["bool", "int", "float", "str", "secret", "choice", "json", "section"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One value of the config and how to edit it (``section``: a block of ``children``)."""

    path: tuple[str, ...]
    kind: Kind
    nullable: bool = False
    choices: tuple[str, ...] = ()
    children: tuple[FieldSpec, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return self.path[-1]

    @property
    def name(self) -> str:
        """The dotted camelCase path, as the runner names fields in errors."""
        return dotted(self.path)


class FieldInvalid(ValueError):
    """A value the form cannot even send (not a number, not JSON)."""


def dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)


def build_specs(config: dict[str, Any]) -> list[FieldSpec]:
    """A spec for every top-level value of ``config``, typed by ``LocalConfig`` where known."""
    try:
        from engine.config import LocalConfig
    except ImportError:  # pragma: no cover - a TUI installed without the engine
        return _specs(config, None, ())
    return _specs(config, LocalConfig, ())


def _specs(
    data: dict[str, Any], model: type[BaseModel] | None, path: tuple[str, ...]
) -> list[FieldSpec]:
    fields = {}
    if model is not None:
        fields = {info.alias or name: info for name, info in model.model_fields.items()}
    out = []
    for key, value in data.items():
        info = fields.get(key)
        out.append(_spec((*path, str(key)), value, info.annotation if info else None, info))
    return out


def _spec(path: tuple[str, ...], value: Any, annotation: Any, known: object) -> FieldSpec:
    from engine.config import is_secret_key

    if known is None:
        return _spec_from_value(path, value)
    args = get_args(annotation) if _is_union(annotation) else (annotation,)
    nullable = type(None) in args
    kinds = [a for a in args if a is not type(None)]
    base = kinds[0] if len(kinds) == 1 else None
    if value == MASK or (base is str and is_secret_key(path[-1])):
        return FieldSpec(path, "secret", nullable=True)
    if base is bool and isinstance(value, bool | None):
        return FieldSpec(path, "bool", nullable)
    if base is int and isinstance(value, int | None) and not isinstance(value, bool):
        return FieldSpec(path, "int", nullable)
    if base is float and isinstance(value, int | float | None) and not isinstance(value, bool):
        return FieldSpec(path, "float", nullable)
    if base is str and isinstance(value, str | None):
        return FieldSpec(path, "str", nullable)
    if get_origin(base) is Literal and isinstance(value, str | None):
        choices = tuple(str(choice) for choice in get_args(base))
        return FieldSpec(path, "choice", nullable, choices)
    if _is_model(base) and isinstance(value, dict):
        return FieldSpec(path, "section", children=tuple(_specs(value, base, path)))
    return FieldSpec(path, "json", nullable)


def _spec_from_value(path: tuple[str, ...], value: Any) -> FieldSpec:
    """A key the schema does not declare: typed by what it holds (``null``: text)."""
    if value == MASK:
        return FieldSpec(path, "secret", nullable=True)
    if isinstance(value, bool):
        return FieldSpec(path, "bool")
    if isinstance(value, int):
        return FieldSpec(path, "int")
    if isinstance(value, float):
        return FieldSpec(path, "float")
    if isinstance(value, str) or value is None:
        return FieldSpec(path, "str", nullable=value is None)
    return FieldSpec(path, "json")


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


# ── widgets ─────────────────────────────────────────────────────────────────────────────────


class SecretInput(Input):
    """A secret's input: shows :data:`MASK` for a saved secret and never a typed value.

    Typing, pasting or deleting on the mask replaces it whole; an untouched input reads back as
    the mask (the runner keeps the saved secret); an emptied one as ``None`` (cleared).
    """

    def __init__(self, value: str | None, *, id: str | None = None) -> None:
        super().__init__(
            MASK if value == MASK else "",
            placeholder="(not set)",
            select_on_focus=True,
            id=id,
        )

    def on_key(self, event: events.Key) -> None:
        if self.value != MASK:
            return
        if event.is_printable:
            self.value = ""
        elif event.key in ("backspace", "delete", "ctrl+d", "ctrl+k", "ctrl+u", "ctrl+w"):
            self.value = ""
            event.prevent_default()
            event.stop()

    def on_paste(self, event: events.Paste) -> None:
        if self.value == MASK:
            self.value = ""

    @on(Input.Changed)
    def _hide_typed(self) -> None:
        self.password = self.value not in ("", MASK)


class ConfigField(Vertical):
    """One editable config value: its key, a control chosen by its spec, and its error line."""

    def __init__(self, spec: FieldSpec, value: Any) -> None:
        super().__init__(classes=f"config-field -{spec.kind}")
        self.spec = spec
        self._initial = value

    def compose(self) -> ComposeResult:
        spec = self.spec
        if spec.kind == "json":
            yield Label(spec.key, classes="config-key")
            yield self._control(self._initial)
        else:
            with Horizontal(classes="config-row"):
                yield Label(spec.key, classes="config-key")
                yield self._control(self._initial)
        yield Static(classes="config-error")

    @property
    def control(self) -> Widget:
        return self.query_one(".config-control")

    def _control(self, value: Any) -> Widget:
        spec = self.spec
        unset = "(not set)" if spec.nullable else ""
        widget: Widget
        if spec.kind == "bool":
            widget = Switch(bool(value))
        elif spec.kind == "secret":
            widget = SecretInput(value)
        elif spec.kind in ("int", "float"):
            kind: Literal["integer", "number"] = "integer" if spec.kind == "int" else "number"
            widget = Input(_text(value), type=kind, placeholder=unset, valid_empty=True)
        elif spec.kind == "str":
            widget = Input(_text(value), placeholder=unset)
        elif spec.kind == "choice":
            choices = list(spec.choices)
            if isinstance(value, str) and value not in choices:
                choices.append(value)
            widget = Select(
                [(choice, choice) for choice in choices],
                allow_blank=spec.nullable or value is None,
                value=value if value is not None else Select.NULL,
                prompt=unset or "choose",
            )
        else:
            widget = TextArea(_json_text(value), soft_wrap=False, tab_behavior="focus")
        widget.add_class("config-control")
        widget.tooltip = self.spec.name
        return widget

    def load(self, value: Any) -> None:
        """Show ``value`` in the control (a revert, or the config as saved)."""
        control = self.control
        if isinstance(control, Switch):
            control.value = bool(value)
        elif isinstance(control, SecretInput):
            control.value = MASK if value == MASK else ""
        elif isinstance(control, Input):
            control.value = _text(value)
        elif isinstance(control, Select):
            control.value = value if value is not None else Select.NULL
        elif isinstance(control, TextArea):
            control.load_text(_json_text(value))
        self.show_error(None)

    def read(self) -> Any:
        """The control's value as JSON data.

        Raises:
            FieldInvalid: the text is not a number, or not JSON.
        """
        control = self.control
        spec = self.spec
        if isinstance(control, Switch):
            return control.value
        if isinstance(control, Select):
            return None if control.value is Select.NULL else control.value
        if isinstance(control, TextArea):
            try:
                return json.loads(control.text)
            except json.JSONDecodeError as exc:
                raise FieldInvalid(
                    f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
                ) from None
        assert isinstance(control, Input)
        text = control.value
        if spec.kind == "secret":
            return text or None
        if spec.kind == "str":
            return None if not text and spec.nullable else text
        if not text.strip():
            if spec.nullable:
                return None
            raise FieldInvalid("a value is required")
        try:
            return int(text) if spec.kind == "int" else float(text)
        except ValueError:
            kind = "a whole number" if spec.kind == "int" else "a number"
            raise FieldInvalid(f"expected {kind}") from None

    def show_error(self, message: str | None) -> None:
        """Show ``message`` under the field; ``None`` clears it."""
        error = self.query_one(".config-error", Static)
        error.update(message or "")
        self.set_class(bool(message), "-invalid")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
