"""The parts of the plan screen: a reply that streams as Markdown, a tool row, the brief card.

A reply is fed raw tokens (tags and all) and shows :func:`engine.intake.visible_text` of them,
redrawn at most :data:`REDRAW_HZ` times a second however fast tokens come, so a fast stream
never starves the keyboard. The engine's module is imported when the first reply is built,
after the first frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Select, Static, Switch, TextArea

from coro_tui.client import WorkflowSummary

__all__ = ["REDRAW_HZ", "BriefCard", "StreamingReply", "ToolRow", "brief_field"]

#: At most this many redraws of a streaming reply a second.
REDRAW_HZ = 30

# Where a brief's field (as the engine names it in ``briefErrors`` or a refusal) is shown.
_CARD_FIELD = {
    "repo": "repo",
    "title": "title",
    "description": "description",
    "reviewers": "reviewers",
    "workflowPath": "workflow",
    "workflow_path": "workflow",
    "lane": "workflow",
    "interactive": "interactive",
}


def brief_field(name: str | None) -> str | None:
    """The card field for an engine field name (``brief.repo``, ``workflowPath`` …), if any."""
    if not name:
        return None
    return _CARD_FIELD.get(name.removeprefix("brief.").split(".", 1)[0])


def _visible(text: str) -> str:
    from engine.intake._protocol import visible_text

    return visible_text(text)


#: A reply's finished text is frozen into segments of about this many characters: each is one
#: widget drawn once, so a long reply costs the screen a few dozen widgets, not one per block.
SEGMENT_CHARS = 2_000


class StreamingReply(Vertical):
    """An assistant reply: raw text in, its visible Markdown out, redrawn at most 30 times a
    second (tokens that arrive in between are drawn together).

    The text already complete (up to a blank line outside a code fence) is frozen into
    segments of about :data:`SEGMENT_CHARS` characters, each a :class:`Static` rendering its
    Markdown once; only the tail is redrawn as tokens arrive. Rendering the whole reply as
    one live Markdown document instead made every redraw cost in proportion to the reply.
    """

    DEFAULT_CSS = """
    StreamingReply { height: auto; }
    StreamingReply > .segment { height: auto; }
    """

    def __init__(self, text: str = "", *, classes: str = "reply") -> None:
        super().__init__(classes=classes)
        self._parts: list[str] = [text] if text else []
        self._fed = len(text)
        self._drawn_upto = 0
        self._shown = ""
        self._frozen = ""
        self._scheduled = False
        self._last_draw = 0.0
        self._tail = Static("", classes="segment")
        self.first_painted_at: float | None = None
        """``time.perf_counter()`` when the first visible text was painted (for the bench)."""

    def compose(self) -> ComposeResult:
        yield self._tail

    def on_mount(self) -> None:
        if self._fed:
            self.call_later(self._draw)

    @property
    def raw(self) -> str:
        """Every token fed so far, tags included."""
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @property
    def empty(self) -> bool:
        """Nothing has been fed yet."""
        return self._fed == 0

    @property
    def source(self) -> str:
        """The Markdown shown so far."""
        return self._shown

    def feed(self, text: str) -> None:
        """Add streamed text; it is drawn with the next redraw."""
        self._parts.append(text)
        self._fed += len(text)
        if text and not self.display:
            self.display = True
        if self._scheduled or not self.is_mounted:
            return
        self._scheduled = True
        wait = self._last_draw + 1 / REDRAW_HZ - time.perf_counter()
        if wait > 0:
            self.set_timer(wait, self._draw)
        else:
            self.call_later(self._draw)

    async def _draw(self) -> None:
        self._scheduled = False
        if not self.is_attached:
            return
        self._drawn_upto = self._fed
        visible = _visible(self.raw)
        if visible != self._shown:
            if not visible.startswith(self._frozen):  # an earlier part changed: start over
                await self.remove_children(".frozen")
                self._frozen = ""
            tail = visible[len(self._frozen) :]
            if len(tail) > SEGMENT_CHARS:
                cut = _block_end(self._frozen, tail)
                if cut:
                    segment = Static(_markdown(tail[:cut]), classes="segment frozen")
                    await self.mount(segment, before=self._tail)
                    self._frozen += tail[:cut]
                    tail = tail[cut:]
            self._tail.update(_markdown(tail.strip("\n")) if tail.strip() else "")
            self._shown = visible
            if self.first_painted_at is None and visible:
                self.call_after_refresh(self._painted)
        self._last_draw = time.perf_counter()
        if self._fed != self._drawn_upto:  # more came while drawing
            self.feed("")

    def _painted(self) -> None:
        if self.first_painted_at is None:
            self.first_painted_at = time.perf_counter()


def _markdown(text: str) -> Any:
    from rich.markdown import Markdown as RichMarkdown

    return RichMarkdown(text)


def _block_end(before: str, tail: str) -> int:
    """Where ``tail`` can be cut after a finished block: just past its last blank line that is
    outside a code fence (0: nowhere yet). ``before`` is the text already frozen."""
    fenced = _fences(before) % 2 == 1
    cut = 0
    at = 0
    for line in tail.splitlines(keepends=True):
        at += len(line)
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not line.strip() and not fenced and at < len(tail):
            cut = at
    return cut


def _fences(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.lstrip().startswith(("```", "~~~")))


def _tool_argument(data: dict[str, Any]) -> str:
    """The tool call's most telling argument (a path, a query …), short."""
    for value in (data.get("input") or {}).values():
        if isinstance(value, str) and value.strip():
            line = " ".join(value.split())
            return line if len(line) <= 48 else line[:47] + "…"
    return ""


class ToolRow(Static):
    """One tool call on one line: ``▸ scm_read_file limits.py … ok 12 ms``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.tool_id = str(data.get("id", ""))
        self._head = f"{data.get('name', 'tool')} {_tool_argument(data)}".rstrip()
        super().__init__(self._line("…", ""), classes="tool-row", markup=False)

    def _line(self, outcome: str, style: str) -> Text:
        line = Text("▸ ", style="dim")
        line.append(self._head)
        line.append(" … ", style="dim")
        line.append(outcome, style=style)
        return line

    def finish(self, data: dict[str, Any]) -> None:
        """Show how the call ended."""
        ms = data.get("durationMs")
        took = f" {ms:,} ms" if isinstance(ms, int) else ""
        if data.get("ok", True):
            self.update(self._line(f"ok{took}", "green"))
        else:
            why = " ".join(str(data.get("error") or "failed").split())[:60]
            self.update(self._line(f"failed{took}: {why}", "red"))
            self.add_class("-failed")


class BriefCard(Vertical):
    """The brief the assistant proposed, as fields the developer can edit before dispatching."""

    def __init__(self) -> None:
        super().__init__(id="brief-card")
        self.brief: dict[str, Any] = {}
        self._workflows: list[WorkflowSummary] = []

    def compose(self) -> ComposeResult:
        def field(label: str, name: str, widget: Any) -> ComposeResult:
            with Horizontal(classes="row"):
                yield Label(label, classes="label")
                with Vertical(classes="field"):
                    yield widget
                    yield Static(classes="error", id=f"brief-{name}-error", markup=False)

        yield from field("Repository", "repo", Input(id="brief-repo"))
        yield from field("Title", "title", Input(id="brief-title"))
        yield from field(
            "Description",
            "description",
            TextArea(id="brief-description", soft_wrap=True, tab_behavior="focus"),
        )
        yield from field(
            "Reviewers", "reviewers", Input(placeholder="ana, bo", id="brief-reviewers")
        )
        yield from field(
            "Workflow", "workflow", Select[str]([], prompt="choose a workflow", id="brief-workflow")
        )
        yield from field("Interactive", "interactive", Switch(False, id="brief-interactive"))
        yield Static(classes="error", id="brief-form-error", markup=False)

    def on_mount(self) -> None:
        self.border_title = "Brief"
        self.border_subtitle = "ctrl+d dispatch"

    def set_workflows(self, workflows: list[WorkflowSummary]) -> None:
        """The workflows the runner offers (the choices of the workflow field)."""
        self._workflows = list(workflows)
        if self.brief:
            self._fill_workflow(self._workflow_of(self.brief))

    def show(self, brief: dict[str, Any], errors: list[str]) -> None:
        """Fill the fields from ``brief`` and show ``errors`` (``brief.<field>: why``)."""
        self.brief = dict(brief)
        self.query_one("#brief-repo", Input).value = str(brief.get("repo") or "")
        self.query_one("#brief-title", Input).value = str(brief.get("title") or "")
        self.query_one("#brief-description", TextArea).text = str(brief.get("description") or "")
        reviewers = brief.get("reviewers") or []
        self.query_one("#brief-reviewers", Input).value = ", ".join(str(r) for r in reviewers)
        self.query_one("#brief-interactive", Switch).value = bool(brief.get("interactive"))
        self._fill_workflow(self._workflow_of(brief))
        self.show_errors(errors)

    @staticmethod
    def _workflow_of(brief: dict[str, Any]) -> str | None:
        path = brief.get("workflowPath")
        if path:
            return str(path)
        lane = brief.get("lane")
        return f"workflows/job-{lane}/workflow.md" if lane in ("fast", "deep") else None

    def _fill_workflow(self, path: str | None) -> None:
        select = self.query_one("#brief-workflow", Select)
        options = [(_workflow_label(w), w.path) for w in self._workflows]
        if path and path not in {p for _, p in options}:
            options.append((path, path))  # shown as asked; dispatching says what is wrong
        select.set_options(options)
        if path:
            select.value = path
        elif any(p == "workflows/job/workflow.md" for _, p in options):
            select.value = "workflows/job/workflow.md"

    def show_errors(self, errors: list[str]) -> None:
        """Show each ``brief.<field>: why`` under its field (others under the card)."""
        by_field: dict[str, list[str]] = {}
        for error in errors:
            name, _, why = error.partition(":")
            target = brief_field(name.strip())
            by_field.setdefault(target or "form", []).append(why.strip() if target else error)
        for name in ("repo", "title", "description", "reviewers", "workflow", "interactive"):
            self._error(name, "; ".join(by_field.get(name, [])))
        self._error("form", "; ".join(by_field.get("form", [])))

    def _error(self, name: str, message: str) -> None:
        error = self.query_one(f"#brief-{name}-error", Static)
        error.update(message)
        error.set_class(bool(message), "-shown")
        if name != "form":
            self.query_one(f"#brief-{name}").set_class(bool(message), "-invalid")

    def edited(self, parse_reviewers: Callable[[str], list[str]]) -> dict[str, Any]:
        """The brief as the fields now say (what dispatch sends)."""
        brief = {k: v for k, v in self.brief.items() if k not in ("lane", "workflowPath")}
        brief["repo"] = self.query_one("#brief-repo", Input).value.strip()
        title = self.query_one("#brief-title", Input).value.strip()
        if title:
            brief["title"] = title
        else:
            brief.pop("title", None)
        brief["description"] = self.query_one("#brief-description", TextArea).text.strip()
        brief["reviewers"] = parse_reviewers(self.query_one("#brief-reviewers", Input).value)
        workflow = self.query_one("#brief-workflow", Select).value
        if isinstance(workflow, str):
            brief["workflowPath"] = workflow
        brief["interactive"] = self.query_one("#brief-interactive", Switch).value
        return brief


def _workflow_label(workflow: WorkflowSummary) -> str:
    name = workflow.display_name or workflow.path
    return f"{name} · {workflow.path}" if name != workflow.path else name
