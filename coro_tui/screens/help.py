"""The key help: every binding of the screen underneath and of the app, with its stable id.

Keys are shown as the user's keymap (``tui.keymap``) has them, so the help never lies about a
rebound key; the id is what to put in that keymap to rebind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

if TYPE_CHECKING:
    from textual.dom import DOMNode

__all__ = ["HelpScreen", "KeyHelp", "bindings_of"]


@dataclass(frozen=True, slots=True)
class KeyHelp:
    """One action and the keys that run it."""

    keys: str
    description: str
    binding_id: str


def bindings_of(node: DOMNode, *, only_with_id: bool = False) -> list[KeyHelp]:
    """The bindings ``node`` declares, after the app's keymap, one row per action.

    Args:
        node: a screen, a widget or the app.
        only_with_id: keep only bindings with a stable id (coro's own, not a widget's built-ins).
    """
    app = node.app
    bindings = node._bindings.copy()
    if app._keymap:
        bindings.apply_keymap(app._keymap)
    rows: dict[tuple[str, str], list[str]] = {}
    described: dict[tuple[str, str], str] = {}
    for _key, binding in bindings:
        if only_with_id and binding.id is None:
            continue
        if binding.id is None and not binding.description:
            continue  # an unnamed internal key (Textual's ctrl+c "help quit" hint)
        action = (binding.id or "", binding.action)
        rows.setdefault(action, []).append(app.get_key_display(binding))
        described[action] = binding.description or binding.action.replace("_", " ")
    found = [
        KeyHelp(", ".join(dict.fromkeys(keys)), described[action], action[0])
        for action, keys in rows.items()
    ]
    return sorted(found, key=lambda row: not row.binding_id)  # coro's own keys first


class HelpScreen(ModalScreen[None]):
    """Show the keys of ``screen`` (default: the screen it was opened over) and of the app."""

    CSS_PATH = "help.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark", "close", "Close help", id="help.close"),
    ]

    def __init__(self, screen: Screen[object] | None = None) -> None:
        super().__init__()
        self._target = screen

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield VerticalScroll(id="help-body")
            yield Static("↑↓ pgup pgdn scroll · esc or ? close", id="help-keys")

    def on_mount(self) -> None:
        self.query_one("#help").border_title = "Keys"
        body = self.query_one("#help-body", VerticalScroll)
        target = self._target or self._screen_below()
        if target is not None:
            rows = bindings_of(target)
            focused = target.focused
            if focused is not None:
                for node in focused.ancestors_with_self:
                    if node is target:
                        break
                    rows.extend(r for r in bindings_of(node, only_with_id=True) if r not in rows)
            body.mount(_section(_screen_name(target), rows))
        body.mount(_section("Everywhere", bindings_of(self.app)))
        body.focus()

    def _screen_below(self) -> Screen[object] | None:
        stack = self.app.screen_stack
        if self in stack:
            index = stack.index(self)
            return stack[index - 1] if index > 0 else None
        return stack[-1] if stack else None

    def action_close(self) -> None:
        self.dismiss(None)


def _screen_name(screen: Screen[object]) -> str:
    return screen.title or type(screen).__name__.removesuffix("Screen") or "This screen"


def _section(title: str, rows: list[KeyHelp]) -> Static:
    table = Table(box=None, expand=True, show_edge=False, pad_edge=False)
    table.add_column("Key", no_wrap=True, ratio=1)
    table.add_column("Action", ratio=3)
    table.add_column("Id", no_wrap=True, ratio=2, overflow="ellipsis")
    for row in rows:
        table.add_row(Text(row.keys, style="bold"), row.description, row.binding_id or "—")
    if not rows:
        table.add_row("", "no keys of its own", "")
    static = Static(table, classes="help-section")
    static.border_title = title
    return static
