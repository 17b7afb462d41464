"""The command palette's coro commands: every binding of the active screen and the app, and
the plan commands (``plan: start a plan for a job``, ``plan: reopen …`` per open plan).

A binding ``Binding("a", "approve", "approve", id="job.approve")`` shows as ``job: approve``
(the namespace is the part of the id before the dot) with its key as help, and choosing it runs
the same action the key runs. Bindings without an id (Textual's own) are left out, as are
actions the screen disables (``check_action`` returning ``False``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from textual.binding import Binding
    from textual.dom import DOMNode
    from textual.screen import Screen

__all__ = ["BindingCommands", "PaletteEntry", "PlanCommands", "palette_entries"]

_PALETTE_ACTIONS = frozenset({"command_palette", "app.command_palette"})


@dataclass(frozen=True, slots=True)
class PaletteEntry:
    """One binding as the palette lists it."""

    id: str
    title: str
    """``<namespace>: <description>``, e.g. ``job: approve``."""
    key: str | None
    """The key that runs it now (after the keymap), ``None`` when another binding shadows it."""
    action: str
    node: DOMNode
    help: str


def _title(binding: Binding, binding_id: str) -> str:
    namespace, _, name = binding_id.partition(".")
    description = binding.description or name.replace("_", " ")
    if description[1:2].islower():  # "Open" → "open", but "PR list" stays
        description = description[:1].lower() + description[1:]
    return f"{namespace}: {description}" if name else description


def palette_entries(screen: Screen[object]) -> list[PaletteEntry]:
    """The palette's entries for ``screen``: its active bindings (focused widget, screen, app),
    then bindings of the screen and the app that another binding shadows on their key."""
    app = screen.app
    entries: dict[str, PaletteEntry] = {}

    def add(node: DOMNode, binding: Binding, key: str | None) -> None:
        if binding.id is None or binding.id in entries or binding.action in _PALETTE_ACTIONS:
            return
        if app._check_action_state(binding.action, node) is False:
            return
        display = app.get_key_display(binding) if key is not None else None
        help_text = " · ".join(t for t in (display and f"key {display}", binding.tooltip) if t)
        entries[binding.id] = PaletteEntry(
            binding.id, _title(binding, binding.id), key, binding.action, node, help_text
        )

    for key, active in screen.active_bindings.items():
        add(active.node, active.binding, key)
    for node in (screen, app):
        for _key, binding in node._bindings:
            add(node, binding, None)
    return sorted(entries.values(), key=lambda e: e.title)


class BindingCommands(Provider):
    """Palette commands for the bindings of the screen the palette was opened on."""

    def _entries(self) -> Iterator[PaletteEntry]:
        yield from palette_entries(self.screen)

    def _run(self, entry: PaletteEntry) -> Callable[[], Awaitable[bool]]:
        return partial(self.app.run_action, entry.action, entry.node)

    async def discover(self) -> Hits:
        for entry in self._entries():
            yield DiscoveryHit(entry.title, self._run(entry), text=entry.title, help=entry.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for entry in self._entries():
            score = matcher.match(entry.title)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(entry.title),
                    self._run(entry),
                    text=entry.title,
                    help=entry.help,
                )


class PlanCommands(Provider):
    """``plan: start a plan for a job``, and ``plan: reopen <id> · <title>`` per open plan."""

    async def startup(self) -> None:
        self._plans: list[dict[str, Any]] = []
        client = getattr(self.app, "client", None)
        if client is None:
            return
        from coro_tui.client import ClientError

        try:
            self._plans = await client.list_plans(status="open")
        except ClientError:
            self._plans = []  # the palette still offers a new plan

    def _commands(self) -> Iterator[tuple[str, Callable[[], object], str]]:
        open_plan = getattr(self.app, "open_plan", None)
        if open_plan is None:
            return
        yield "plan: start a plan for a job", open_plan, "Talk it through, then dispatch its brief"
        for plan in getattr(self, "_plans", []):
            session_id = str(plan.get("id"))
            what = plan.get("title") or plan.get("repo") or ""
            state = (plan.get("readiness") or {}).get("state", "new")
            title = f"plan: reopen {session_id}" + (f" · {what}" if what else "")
            yield title, partial(open_plan, session_id), f"{state}, {plan.get('turns', 0)} turns"

    async def discover(self) -> Hits:
        for title, run, help_text in self._commands():
            yield DiscoveryHit(title, run, text=title, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, run, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, text=title, help=help_text)
