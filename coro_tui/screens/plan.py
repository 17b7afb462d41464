"""The plan screen: talk a job through with the assistant, then dispatch the brief it writes.

::

    PlanScreen(client)                                   # a new plan
    PlanScreen(client, repo="svc", initial_text="…")     # from the new-job dialog
    PlanScreen(client, "plan-20260314-120000-ab12")      # reopen a saved plan

Each ``enter`` sends one turn (:meth:`EngineClient.plan_turn`) with the whole conversation; the
reply streams in as Markdown, tool calls show as one-line rows, and the header says where the
investigation stands (readiness, open questions) and what the session has used of its
budgets. Once the assistant writes a brief it shows as a card whose fields can be edited;
``ctrl+d`` dispatches it as a job and opens that job.
"""

from __future__ import annotations

import gc
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input, Markdown, Static

from coro_tui.client import ClientError
from coro_tui.screens._plan_parts import BriefCard, StreamingReply, ToolRow, brief_field

if TYPE_CHECKING:
    from coro_tui.client import EngineClient, PlanEvent

__all__ = ["PlanScreen", "new_session_id"]

_BADGES = {
    "investigating": ("● investigating", "bold yellow"),
    "ready": ("✓ ready", "bold green"),
    "no-run-needed": ("○ no run needed", "bold cyan"),
}
_NO_LLM_HELP = (
    "Plan mode needs a model: set ANTHROPIC_API_KEY (or llm.apiKey in config.json, s opens "
    "Settings) and a 'planning' alias in llm.aliases."
)


def new_session_id(now: datetime | None = None) -> str:
    """``plan-<yyyymmdd-hhmmss>-<4 hex>``, in UTC."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"plan-{stamp}-{secrets.token_hex(2)}"


class PlanScreen(Screen[None]):
    """One plan-mode conversation, live.

    Args:
        client: the runner.
        session_id: a saved plan to reopen; a new id when ``None``.
        repo: the repository to investigate (its slug on the SCM).
        repo_path: a local checkout to read instead (absolute path).
        initial_text: put in the message line, not sent (the developer sends it).
    """

    CSS_PATH = "plan.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+d", "dispatch", "Dispatch", id="plan.dispatch", priority=True,
                tooltip="Create the job the brief card describes (as edited) and open it"),
        Binding("escape", "back", "Back", id="plan.back",
                tooltip="Leave the plan (it is saved; reopen it from the palette)"),
    ]  # fmt: skip

    def __init__(
        self,
        client: EngineClient,
        session_id: str | None = None,
        *,
        repo: str | None = None,
        repo_path: str | None = None,
        initial_text: str | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.reopening = session_id is not None
        self.session_id = session_id or new_session_id()
        self.repo = repo
        self.repo_path = repo_path
        self._initial_text = initial_text or ""
        self.messages: list[dict[str, str]] = []
        """The visible conversation, sent whole with every turn."""
        self.streaming = False
        self.readiness: dict[str, Any] | None = None
        self.turns = 0
        self.session_tokens = 0
        self.limits: dict[str, int] = {}
        self.brief: dict[str, Any] | None = None
        self.reply: StreamingReply | None = None
        """The reply streaming now (or the last one)."""
        self._tools: dict[str, ToolRow] = {}
        self._dispatching = False
        self.loaded = not self.reopening
        """Whether a reopened plan's history is on screen (always, for a new plan)."""

    # -- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="plan-header")
        with Horizontal(id="plan-body"):
            yield VerticalScroll(id="plan-transcript")
            with VerticalScroll(id="plan-cards"):
                with Vertical(id="findings-card"):
                    yield Markdown("", id="findings")
                yield BriefCard()
        yield Static("", id="plan-status", markup=False)
        yield Input(
            self._initial_text,
            placeholder="Ask, answer, or say what the job should do — enter sends",
            id="plan-input",
        )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#findings-card").border_title = "Findings"
        self.query_one("#plan-input", Input).focus()
        self._show_header()
        self._load_workflows()
        if self.reopening:
            self._reopen()
        else:
            self._say("Plan mode: describe the job; the assistant reads the repository, asks "
                      "what it needs, then writes a brief you can edit and dispatch (ctrl+d).",
                      "hint")  # fmt: skip

    @property
    def transcript(self) -> VerticalScroll:
        return self.query_one("#plan-transcript", VerticalScroll)

    @property
    def card(self) -> BriefCard:
        return self.query_one(BriefCard)

    def _add(self, widget: Widget) -> None:
        self.transcript.mount(widget)

    def _say(self, text: str, kind: str) -> None:
        """A line in the transcript: ``hint``, ``notice`` or ``error``."""
        self._add(Static(text, classes=f"line -{kind}", markup=False))

    def _add_user(self, text: str) -> Static:
        bubble = Static(Text(text), classes="user-message", markup=False)
        bubble.border_title = "you"
        self._add(bubble)
        return bubble

    # -- the header -----------------------------------------------------------------------------
    def _show_header(self) -> None:
        line = Text(self.session_id, style="bold")
        where = self.repo or self.repo_path
        if where:
            line.append(f"  {where}")
        state = (self.readiness or {}).get("state")
        badge, style = _BADGES.get(str(state), ("· new", "dim"))
        line.append("  ")
        line.append(badge, style=style)
        questions = len((self.readiness or {}).get("openQuestions") or [])
        if questions:
            line.append(f" ({questions} open question{'s' if questions > 1 else ''})")
        turn = f"turn {self.turns}"
        if self.limits.get("maxTurns"):
            turn += f"/{self.limits['maxTurns']}"
        tokens = f"{self.session_tokens:,}"
        if self.limits.get("maxSessionTokens"):
            tokens += f"/{self.limits['maxSessionTokens']:,}"
        line.append(f"  {turn} · {tokens} tokens", style="dim")
        self.query_one("#plan-header", Static).update(line)

    def _status(self, text: str) -> None:
        self.query_one("#plan-status", Static).update(text)
        self.query_one("#plan-status").set_class(bool(text), "-shown")

    # -- loading --------------------------------------------------------------------------------
    @work(exclusive=True, group="plan-workflows", exit_on_error=False)
    async def _load_workflows(self) -> None:
        try:
            workflows = await self.client.workflows()
        except ClientError as exc:
            self.notify(f"cannot list workflows: {exc.message}", severity="warning")
            return
        self.card.set_workflows(workflows)

    @work(exclusive=True, group="plan-turn", exit_on_error=False)
    async def _reopen(self) -> None:
        from engine.intake._protocol import visible_text

        try:
            plan = await self.client.get_plan(self.session_id)
        except ClientError as exc:
            self._say(f"cannot open plan {self.session_id}: {exc.message}", "error")
            self.loaded = True
            return
        self.repo = plan.get("repo") or self.repo
        self.repo_path = plan.get("repoPath") or self.repo_path
        for message in plan.get("messages") or []:
            content = str(message.get("content", ""))
            self.messages.append({"role": str(message.get("role")), "content": content})
            if message.get("role") == "user":
                self._add_user(content)
            else:
                self._add(Markdown(visible_text(content), classes="reply"))
        self.turns = int(plan.get("turns") or 0)
        self.session_tokens = int(plan.get("sessionTokens") or 0)
        self._finished(plan)
        self.call_after_refresh(self.transcript.scroll_end, animate=False)
        status = plan.get("status")
        if status == "dispatched":
            self._say(f"This plan was dispatched as job {plan.get('jobId')}.", "notice")
        elif status in ("expired", "abandoned"):
            self._say(f"This plan is {status}: it can be read, not continued.", "notice")
        self.loaded = True

    # -- a turn ---------------------------------------------------------------------------------
    @on(Input.Submitted, "#plan-input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.streaming:
            self.notify("the reply is still streaming; send when it is done", severity="warning")
            return
        event.input.value = ""
        self.messages.append({"role": "user", "content": text})
        bubble = self._add_user(text)
        self.transcript.anchor()
        self._turn(text, bubble)

    def _turn_context(self) -> dict[str, Any] | None:
        if self.repo_path:
            return {"repoPath": self.repo_path}
        if self.repo:
            return {"repo": self.repo}
        return None

    @work(exclusive=True, group="plan-turn", exit_on_error=False)
    async def _turn(self, text: str, bubble: Static) -> None:
        self.streaming = True
        self._status("thinking…")
        # Mounted now, hidden: the first token then only draws text, with no layout of a new
        # widget between the endpoint sending it and the screen showing it.
        self.reply = StreamingReply()
        self.reply.display = False
        self._add(self.reply)
        self._tools.clear()
        tokens: list[str] = []
        ended = False
        try:
            async for event in self.client.plan_turn(
                self.session_id, list(self.messages), context=self._turn_context()
            ):
                ended = self._apply(event, tokens) or ended
        except ClientError as exc:
            self._say(exc.message, "error")
        finally:
            self.streaming = False
            self._status("")
            # A turn leaves plenty of garbage: collect it now, while the developer reads,
            # rather than in a full pass (80 ms and more) in the middle of the next reply.
            self.call_after_refresh(gc.collect)
        if ended:
            self.messages.append({"role": "assistant", "content": "".join(tokens)})
        else:  # not part of the conversation: the message goes back into the line
            self.messages.pop()
            bubble.add_class("-unsent")
            field = self.query_one("#plan-input", Input)
            if not field.value:
                field.value = text

    def _apply(self, event: PlanEvent, tokens: list[str]) -> bool:
        """Show one event of a turn; ``True`` when the turn ended well (``done``)."""
        kind, data = event.kind, event.data
        if kind == "token":
            text = str(data.get("text", ""))
            tokens.append(text)
            if self.reply is None:
                self.reply = StreamingReply()
                self._add(self.reply)
            if self.reply.empty:
                self._status("answering…")
            self.reply.feed(text)
        elif kind == "thinking":
            self._status("thinking…")
        elif kind == "tool_start":
            self.reply = None  # text after the tool goes below its row
            row = ToolRow(data)
            self._tools[row.tool_id] = row
            self._add(row)
            self._status(f"running {data.get('name', 'a tool')}…")
        elif kind == "tool_end":
            started = self._tools.get(str(data.get("id", "")))
            if started is not None:
                started.finish(data)
            self._status("thinking…")
        elif kind == "session":
            self.turns = int(data.get("turn") or self.turns)
            self.limits = dict(data.get("limits") or self.limits)
            self._show_header()
        elif kind == "notice":
            self._say(str(data.get("message", "")), "notice")
        elif kind == "error":
            message = str(data.get("message", "the turn failed"))
            if data.get("reason") == "no-llm":
                message = f"{message}\n{_NO_LLM_HELP}"
            self._say(message, "error")
        elif kind == "done":
            self.turns = int(data.get("turns") or self.turns)
            self.session_tokens = int(data.get("sessionTokens") or self.session_tokens)
            self.limits = dict(data.get("limits") or self.limits)
            self._finished(data)
            for problem in data.get("problems") or []:
                self._say(f"the reply: {problem}", "notice")
            if data.get("exhausted"):
                self._say(str(data["exhausted"]), "notice")
            return True
        return False

    def _finished(self, data: dict[str, Any]) -> None:
        """Show what a turn (or a saved plan) says: readiness, findings and brief."""
        self.readiness = data.get("readiness") or self.readiness
        self._show_header()
        findings = data.get("findings")
        if findings:
            self.query_one("#findings", Markdown).update(str(findings))
            self.query_one("#findings-card").add_class("-shown")
        brief = data.get("brief")
        if brief and brief != self.brief:
            self.brief = dict(brief)
            self.card.show(self.brief, list(data.get("briefErrors") or []))
            self.card.add_class("-shown")
        self.query_one("#plan-cards").set_class(bool(findings or self.brief), "-shown")

    # -- actions --------------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    async def action_dispatch(self) -> None:
        if self._dispatching:
            return
        if self.brief is None:
            self.notify("no brief yet: ask the assistant to write one", severity="warning")
            return
        if self.streaming:
            self.notify("the reply is still streaming; dispatch when it is done",
                        severity="warning")  # fmt: skip
            return
        from coro_tui.screens.new_job import parse_reviewers

        brief = self.card.edited(parse_reviewers)
        self._dispatching = True
        try:
            job = await self.client.dispatch_plan(self.session_id, brief)
        except ClientError as exc:
            if exc.message.startswith("brief."):
                errors = exc.message.split("; ")
            elif brief_field(exc.field):
                errors = [f"brief.{exc.field}: {exc.message}"]
            else:
                errors = [exc.message]
            self.card.show_errors(errors)
            self.notify(exc.message, title="Not dispatched", severity="error")
            return
        finally:
            self._dispatching = False
        self.notify(f"Dispatched plan {self.session_id} as job {job.id}", title="Plan")
        from coro_tui.screens.job import JobScreen

        lines = getattr(getattr(self.app, "prefs", None), "log_max_lines", 5000)
        self.app.switch_screen(JobScreen(self.client, job.id, log_max_lines=lines))
