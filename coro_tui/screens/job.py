"""The job screen: one job's phases, live log, work items, PRs, artefacts and usage, and the
actions a developer takes on it (approve, cancel, resume, pause, steer, copy, export)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    MarkdownViewer,
    OptionList,
    Static,
    TabbedContent,
    TabPane,
)
from textual.widgets.option_list import Option

from coro_tui._clipboard import copy_text
from coro_tui.client import ClientError
from coro_tui.screens import _format as fmt
from coro_tui.widgets import ConfirmDialog, LogPane, PhaseStrip
from coro_tui.widgets.steering import ActivityLine, MessageInput, MessageList

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from textual.app import ComposeResult
    from textual.notifications import SeverityLevel
    from textual.timer import Timer

    from coro_tui.client import EngineClient, MessageMode
    from state import Artifact, Job, JobEvent

__all__ = ["RESERVED_KEYS", "JobScreen"]

#: Keys this screen leaves to the app: ``P`` plans a new job (``s`` is the app's settings).
RESERVED_KEYS = {"P": "app.plan"}
#: Events before the log's end read on opening, for what the job is doing and its messages.
ACTIVITY_BACKLOG = 200
#: At most this many re-reads of the job a second, however fast its events arrive.
REFRESH_HZ = 10
_CHECKPOINT = "developer-input: approval after "
_MARKDOWN_SUFFIXES = (".md", ".markdown")
_TAB_FOCUS = {"tab-log": "#job-log #log", "tab-work": "#work-scroll",
              "tab-artifacts": "#artifact-list", "tab-usage": "#usage-table"}  # fmt: skip
_WORK_MARKS = {"pending": "○", "in-progress": "●", "complete": "✓", "escalated": "!"}


class JobScreen(Screen[None]):
    """One job, live."""

    CSS_PATH = "job.tcss"

    BINDINGS = [
        Binding("a", "approve", "Approve", id="job.approve",
                tooltip="Approve the checkpoint the job waits at"),
        Binding("r", "resume", "Resume", id="job.resume",
                tooltip="Start a parked, escalated or failed job again"),
        Binding("c", "cancel_job", "Cancel", id="job.cancel", tooltip="Stop the job for good"),
        Binding("m", "message('steer')", "Steer", id="job.steer",
                tooltip="Send the job a message it sees at its next tool boundary"),
        Binding("M", "message('queue')", "Queue", id="job.queue", show=False,
                tooltip="Send the job a message it sees when the model ends its turn"),
        Binding("exclamation_mark", "message('urgent')", "Urgent", id="job.urgent",
                tooltip="Stop the model call or tool in flight and send the job a message"),
        Binding("p", "pause", "Pause", id="job.pause",
                tooltip="Park the running job at its next safe boundary (r resumes it)"),
        Binding("g", "merge_pr", "Merge PR", id="job.merge_pr",
                tooltip="Approve and merge the job's open pull request on the local SCM"),
        Binding("y", "copy", "Copy", id="job.copy",
                tooltip="Copy the selected log lines (or those in view), or the artefact shown"),
        Binding("e", "export_log", "Export log", id="job.export",
                tooltip="Write the job's whole log to a file"),
        Binding("end", "follow", "Follow", id="job.follow", show=False,
                tooltip="Jump to the end of the log and follow it"),
        Binding("1", "tab('tab-log')", "Log", id="job.tab.log", show=False),
        Binding("2", "tab('tab-work')", "Work", id="job.tab.work", show=False),
        Binding("3", "tab('tab-artifacts')", "Artefacts", id="job.tab.artifacts", show=False),
        Binding("4", "tab('tab-usage')", "Usage", id="job.tab.usage", show=False),
        Binding("escape", "back", "Back", id="job.back", tooltip="Back to the runs"),
    ]  # fmt: skip

    def __init__(
        self,
        client: EngineClient,
        job_id: str,
        *,
        log_max_lines: int = 5000,
        export_dir: Path | None = None,
        live: bool = True,
        banner: str | None = None,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        """
        Args:
            client: the runner.
            job_id: the job to show.
            log_max_lines: the most log lines the view keeps (older ones drop off the top).
            export_dir: where ``e`` writes ``<job_id>.log`` (default: the working directory).
            live: follow the job's events (snapshot tests show a still job).
            banner: a line shown above the job, always (``coro demo``: the model is scripted).
        """
        super().__init__(name=name, id=id)
        self.client = client
        self.job_id = job_id
        self.log_max_lines = log_max_lines
        self.export_dir = export_dir
        self._live = live
        self._banner = banner
        self.job: Job | None = None
        self._artifact_ids: list[str] = []
        self._artifact_text: str | None = None
        self._refresh_timer: Timer | None = None
        self._log_cursor = 0
        # Kept, not queried: events may still arrive while the screen is being removed.
        self._activity = ActivityLine(id="job-activity")
        self._messages = MessageList(id="job-messages")
        self._last_refresh = 0.0
        self.loaded = False
        """Whether the job and the end of its log have arrived."""

    def _say(self, message: str, *, title: str, severity: SeverityLevel = "information") -> None:
        """Notify without markup: messages carry job ids, paths and the runner's words."""
        self.notify(message, title=title, severity=severity, markup=False)

    # -- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        if self._banner:
            yield Static(Text(self._banner, style="bold"), id="job-banner")
        yield Static(self.job_id, id="job-title", markup=False)
        yield PhaseStrip(id="job-phases")
        yield Static("", id="job-alert")
        with TabbedContent(initial="tab-log", id="job-tabs"):
            with TabPane("Log", id="tab-log"):
                yield LogPane(self.log_max_lines, id="job-log")
            with TabPane("Work", id="tab-work"), VerticalScroll(id="work-scroll"):
                yield Static("", id="work-items")
                yield Static("", id="work-prs")
            with TabPane("Artefacts", id="tab-artifacts"), Horizontal(id="artifacts"):
                yield OptionList(id="artifact-list")
                yield MarkdownViewer(
                    "", show_table_of_contents=False, open_links=False, id="artifact-view"
                )
            with TabPane("Usage", id="tab-usage"):
                yield DataTable(id="usage-table", cursor_type="row", zebra_stripes=True)
        yield self._activity
        yield self._messages
        yield MessageInput(id="job-message")
        yield Footer()

    @property
    def log_pane(self) -> LogPane:
        return self.query_one("#job-log", LogPane)

    def on_mount(self) -> None:
        self.log_pane.log_widget.focus()
        self._load()

    # -- data -----------------------------------------------------------------------------------
    @work(exclusive=True, group="job-feed")
    async def _load(self) -> None:
        try:
            job = await self.client.get_job(self.job_id)
            if not self.is_attached:
                return
            self.show_job(job)
            lines, cursor = await self.client.log_tail(self.job_id, self.log_max_lines)
        except ClientError as exc:
            self._say(exc.message, title=self.job_id, severity="error")
            return
        if not self.is_attached:
            return
        pane = self.log_pane
        pane.write(lines)
        pane.flush()
        self.loaded = True
        if not self._live:
            return
        self._log_cursor = cursor
        try:
            after = max(0, cursor - ACTIVITY_BACKLOG)
            async for batch in self.client.job_events(self.job_id, after=after):
                self._take(batch)
        except ClientError as exc:
            self._say(f"live updates stopped: {exc.message}", title=self.job_id,
                        severity="error")  # fmt: skip

    def _take(self, batch: list[JobEvent]) -> None:
        cursor = self._log_cursor
        lines: list[str] = []
        other = False
        activity, messages = self._activity, self._messages
        for event in batch:
            if event.kind == "log":
                if event.seq > cursor:  # the backlog's lines are shown already
                    lines.append(str(event.data.get("line", "")))
                continue
            other = True
            activity.take(event)
            said = messages.take(event)
            if said is not None and event.seq > cursor:
                lines.append(said)
        if lines:
            self.log_pane.write(lines)
        if other and batch[-1].seq > cursor:
            self._schedule_refresh()

    def _schedule_refresh(self) -> None:
        if self._refresh_timer is None:
            delay = max(0.001, self._last_refresh + 1 / REFRESH_HZ - time.monotonic())
            self._refresh_timer = self.set_timer(delay, self._refresh)

    @work(group="job-refresh")
    async def _refresh(self) -> None:
        self._refresh_timer = None
        self._last_refresh = time.monotonic()
        try:
            job = await self.client.get_job(self.job_id)
        except ClientError as exc:
            self._say(exc.message, title=self.job_id, severity="error")
            return
        if self.is_attached:  # the screen may have closed while the job was fetched
            self.show_job(job)

    # -- drawing --------------------------------------------------------------------------------
    def show_job(self, job: Job) -> None:
        """Draw ``job`` (every panel but the log)."""
        had_pr = self._local_pr() is not None
        self.job = job
        if had_pr != (self._local_pr() is not None):
            self.refresh_bindings()  # g comes and goes with an open local pull request
        title = Text(job.id, style="bold")
        title.append(f"  {job.status.value}")
        if job.phase:
            title.append(f"  phase {job.phase}", style="dim")
        title.append(f"  {fmt.workflow_name(job.workflow_path)}", style="dim")
        if fmt.repo(job):
            title.append(f"  {fmt.repo(job)}", style="dim")
        self.query_one("#job-title", Static).update(title)
        self.query_one("#job-phases", PhaseStrip).show_job(job)
        self._activity.set_running(job.status.is_running)
        self._draw_alert(job)
        self._draw_work(job)
        self._draw_artifacts(job)
        self._draw_usage(job)

    def _draw_alert(self, job: Job) -> None:
        alert = self.query_one("#job-alert", Static)
        awaiting = job.awaiting_event or ""
        status = job.status.value
        head, body, hint, kind = "", "", "", "question"
        if awaiting.startswith(_CHECKPOINT):
            head = "Checkpoint"
            body = f"the job waits for your approval after {awaiting[len(_CHECKPOINT) :]}"
            hint = "a approve · r resume · c cancel"
        elif awaiting.startswith("developer-input:"):
            head = "Waiting for you"
            body = awaiting.removeprefix("developer-input:").strip() or "the job asks for input"
            hint = "r resume · c cancel"
        elif awaiting.startswith("pr:") and (pr := self._local_pr()) is not None:
            head = "Waiting for you"
            body = f"pull request #{pr[1]} on {pr[0]} (local SCM) waits for your approval"
            hint = "g approve and merge it · c cancel"
        elif status == "awaiting-plan-approval":
            head, body, hint = "Plan approval", "the plan awaits your approval", "a approve"
        elif status in ("escalated", "failed"):
            head, kind = status.capitalize(), "escalated"
            body = job.escalation_message or "no reason given"
            hint = "r resume · c cancel" if status == "escalated" else "r resume"
        if not head:
            alert.remove_class("-shown", "-question", "-escalated")
            alert.update("")
            return
        text = Text(f"{head}: ", style="bold").append(body)
        if hint:
            text.append(f"\n{hint}", style="dim")
        alert.update(text)
        alert.set_classes(f"-shown -{kind}")

    def _draw_work(self, job: Job) -> None:
        items = Text("Work items", style="bold")
        if not job.work_items:
            items.append("\n  none yet", style="dim")
        for item in job.work_items:
            mark = _WORK_MARKS.get(item.status.value, "?")
            items.append(f"\n  {mark} {item.name}  ").append(item.status.value, style="dim")
            if item.loop_count:
                items.append(f"  loop {item.loop_count}", style="dim")
        self.query_one("#work-items", Static).update(items)
        prs = Text("\nPull requests", style="bold")
        if not job.pr_mappings:
            prs.append("\n  none yet", style="dim")
        for pr in job.pr_mappings:
            state = "open" if pr.is_open else "merged"
            prs.append(f"\n  #{pr.pr_id} ").append(state, style="bold" if pr.is_open else "dim")
            where = "  ".join(str(v) for v in (pr.repo_slug, pr.work_item, pr.url) if v)
            if where:
                prs.append(f"  {where}")
        self.query_one("#work-prs", Static).update(prs)

    def _draw_artifacts(self, job: Job) -> None:
        ids = [a.id for a in job.artifacts]
        if ids == self._artifact_ids:
            return
        self._artifact_ids = ids
        options = self.query_one("#artifact-list", OptionList)
        highlighted = options.highlighted
        options.clear_options()
        options.add_options(
            Option(Text(a.title).append(f"\n{a.kind}", style="dim"), id=a.id) for a in job.artifacts
        )
        if ids:
            options.highlighted = highlighted if highlighted is not None else 0

    def _draw_usage(self, job: Job) -> None:
        table = self.query_one("#usage-table", DataTable)
        table.clear(columns=True)
        table.add_columns("Phase", "Item", "In", "Out", "Cache", "Cost", "Turns")
        for usage in job.phase_usage:
            cache = usage.cache_read_input_tokens + usage.cache_creation_input_tokens
            table.add_row(
                usage.phase, usage.work_item or "", fmt.tokens(usage.input_tokens),
                fmt.tokens(usage.output_tokens), fmt.tokens(cache), fmt.cost(usage.cost_usd),
                str(usage.num_turns),
            )  # fmt: skip
        total = job.token_usage
        cache = total.cache_read_input_tokens + total.cache_creation_input_tokens
        table.add_row(
            Text("total", style="bold"), "", fmt.tokens(total.input_tokens),
            fmt.tokens(total.output_tokens), fmt.tokens(cache),
            Text(fmt.cost(total.total_cost_usd), style="bold"), "",
        )  # fmt: skip

    @on(TabbedContent.TabActivated, "#job-tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        target = _TAB_FOCUS.get(event.pane.id or "")
        if target:
            self.query_one(target).focus()

    @on(OptionList.OptionHighlighted, "#artifact-list")
    def _artifact_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if self.job is None or event.option.id is None:
            return
        artifact = next((a for a in self.job.artifacts if a.id == event.option.id), None)
        if artifact is not None:
            self._show_artifact(artifact)

    @work(exclusive=True, group="artifact")
    async def _show_artifact(self, artifact: Artifact) -> None:
        self._artifact_text = None
        path = artifact.data.get("path")
        if isinstance(path, str) and path:
            try:
                text = await self.client.artifact_content(self.job_id, artifact.id)
            except ClientError as exc:
                text, shown = "", f"*{exc.message}*"
            else:
                markdown = artifact.kind.endswith("-md") or path.endswith(_MARKDOWN_SUFFIXES)
                shown = text if markdown else f"```\n{text}\n```"
        else:
            text = "\n".join(f"{k}: {v}" for k, v in artifact.data.items())
            shown = "\n".join(f"- **{k}**: {v}" for k, v in artifact.data.items()) or "*no data*"
        self._artifact_text = text
        viewer = self.query_one("#artifact-view", MarkdownViewer)
        await viewer.document.update(f"# {artifact.title}\n\n{shown}")

    # -- actions --------------------------------------------------------------------------------
    def _act(self, verb: str, call: Callable[[], Awaitable[Job]], done: str) -> None:
        async def run() -> None:
            try:
                job = await call()
            except ClientError as exc:
                self._say(exc.message, title=f"{verb} refused", severity="error")
                return
            self._say(done.format(id=job.id), title=verb)
            self._schedule_refresh()

        self.run_worker(run(), group="job-action")

    def action_approve(self) -> None:
        self._act("Approve", lambda: self.client.approve(self.job_id),
                  "approved {id}: it moves on")  # fmt: skip

    def action_resume(self) -> None:
        self._act("Resume", lambda: self.client.resume(self.job_id), "resumed {id}")

    def action_pause(self) -> None:
        self._act("Pause", lambda: self.client.pause(self.job_id),
                  "pausing {id}: it parks at its next safe boundary")  # fmt: skip

    def _local_pr(self) -> tuple[str, int] | None:
        """``(repo, number)`` of the job's first open pull request on the local SCM."""
        for pr in self.job.pr_mappings if self.job is not None else ():
            if pr.is_open and pr.plugin_id == "local" and pr.repo_slug and str(pr.pr_id).isdigit():
                return pr.repo_slug, int(pr.pr_id)
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "merge_pr":
            return self._local_pr() is not None
        return True

    def action_merge_pr(self) -> None:
        pr = self._local_pr()
        if pr is None:
            self._say("the job has no open pull request on the local SCM", title="Merge PR",
                      severity="warning")  # fmt: skip
            return
        repo, number = pr

        def answered(yes: bool | None) -> None:
            if not yes:
                return

            async def merge() -> None:
                try:
                    await self.client.merge_local_pr(repo, number)
                except ClientError as exc:
                    self._say(exc.message, title="Merge refused", severity="error")
                    return
                self._say(f"approved and merged {repo}#{number}: the job moves on",
                          title="Merge PR")  # fmt: skip
                self._schedule_refresh()

            self.run_worker(merge(), group="job-action")

        question = (
            f"Approve pull request #{number} on {repo} (local SCM) as yourself and merge it into "
            "its target branch?"
        )
        self.app.push_screen(ConfirmDialog(f"Merge {repo}#{number}", question), answered)

    def action_message(self, mode: MessageMode) -> None:
        self.query_one("#job-message", MessageInput).open(mode)

    @on(MessageInput.Submitted, "#job-message")
    async def _message_submitted(self, event: MessageInput.Submitted) -> None:
        line = self.query_one("#job-message", MessageInput)
        text = event.value.strip()
        if text:
            # Sent before the line closes: closing it redraws the screen, and a refused
            # message stays in the line to be fixed or sent again.
            try:
                await self.client.send_message(self.job_id, text, line.mode)
            except ClientError as exc:
                self._say(exc.message, title="Message refused", severity="error")
                return
        line.close()
        self.log_pane.log_widget.focus()

    @on(MessageInput.Closed)
    def _message_closed(self) -> None:
        self.log_pane.log_widget.focus()

    def action_cancel_job(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._act("Cancel", lambda: self.client.cancel(self.job_id), "cancelled {id}")

        self.app.push_screen(
            ConfirmDialog("Cancel job", f"Stop {self.job_id} for good? This cannot be undone."),
            answered,
        )

    def action_follow(self) -> None:
        self.query_one("#job-tabs", TabbedContent).active = "tab-log"
        self.log_pane.follow()

    def action_tab(self, tab: str) -> None:
        self.query_one("#job-tabs", TabbedContent).active = tab

    def action_back(self) -> None:
        self.app.pop_screen()

    @work(group="job-copy")
    async def action_copy(self) -> None:
        tabs = self.query_one("#job-tabs", TabbedContent)
        if tabs.active == "tab-artifacts":
            if not self._artifact_text:
                self._say("no artefact is shown", title="Copy", severity="warning")
                return
            text, what = self._artifact_text, "the artefact"
        else:
            text = self.log_pane.selected_text()
            count = len(text.splitlines())
            what = f"{count} log line{'s' if count != 1 else ''}"
        if not text:
            self._say("nothing to copy", title="Copy", severity="warning")
            return
        where = await copy_text(self.app, text)
        self._say(f"copied {what} to the {where}", title="Copy")

    @work(exclusive=True, group="job-export")
    async def action_export_log(self) -> None:
        target = (self.export_dir or Path.cwd()) / f"{self.job_id}.log"
        try:
            lines = await self._whole_log()
            await asyncio.to_thread(_write_lines, target, lines)
        except ClientError as exc:
            self._say(exc.message, title="Export refused", severity="error")
            return
        except OSError as exc:
            self._say(f"cannot write {target}: {exc.strerror or exc}", title="Export",
                        severity="error")  # fmt: skip
            return
        self._say(f"wrote {len(lines)} lines to {target}", title="Export")

    async def _whole_log(self) -> list[str]:
        """Every log line of the job, from the event log (no cap, unlike the view)."""
        _, last = await self.client.log_tail(self.job_id, 0)
        lines: list[str] = []
        if last <= 0:
            return lines
        stream = self.client.job_events(self.job_id, after=0)
        try:
            async for batch in stream:
                lines.extend(str(e.data.get("line", "")) for e in batch if e.kind == "log")
                if batch and batch[-1].seq >= last:
                    break
        finally:
            await _close(stream)
        return lines


def _write_lines(target: Path, lines: list[str]) -> None:
    target.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


async def _close(stream: AsyncIterator[Any]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
