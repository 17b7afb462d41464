"""The runs screen: every job in one table, the ones that need the developer on top."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.widgets.data_table import RowDoesNotExist

from coro_tui.client import ClientError
from coro_tui.screens import _format as fmt

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.events import Resize
    from textual.notifications import SeverityLevel
    from textual.timer import Timer

    from coro_tui.client import EngineClient
    from state import Job

__all__ = ["RunsScreen", "matches_filter"]

#: At most this many table refreshes a second however fast events arrive.
REFRESH_HZ = 10
#: Below this width the table drops repository, workflow, phase and tokens.
WIDE = 110
_FILTER_FIELDS = ("id", "repo", "workflow", "status", "phase")


@dataclass(frozen=True, slots=True)
class _Column:
    key: str
    label: str
    width: int | None  # None: shares what the fixed columns leave
    wide_only: bool = False


_COLUMNS = (
    _Column("needs", "!", 1),
    _Column("id", "Job", None),
    _Column("repo", "Repository", None, wide_only=True),
    _Column("workflow", "Workflow", 8, wide_only=True),
    _Column("phase", "Phase", 10, wide_only=True),
    _Column("status", "Status", None),
    _Column("items", "Items", 5),
    _Column("prs", "PRs", 3),
    _Column("tokens", "Tokens", 6, wide_only=True),
    _Column("cost", "Cost", 7),
    _Column("age", "Age", 3),
)


def _fields(job: Job) -> dict[str, str]:
    return {
        "id": job.id,
        "repo": fmt.repo(job),
        "workflow": fmt.workflow_name(job.workflow_path),
        "status": job.status.value,
        "phase": job.phase or "",
    }


def matches_filter(job: Job, query: str) -> bool:
    """Whether ``job`` passes the filter: every word must match.

    ``field:value`` words (``status:failed``, ``repo:acme``) match that field's start; other
    words match anywhere in the id, repository, workflow, status or phase. Case is ignored.
    """
    fields = {k: v.lower() for k, v in _fields(job).items()}
    for word in query.lower().split():
        name, sep, value = word.partition(":")
        if sep and name in _FILTER_FIELDS:
            if not fields[name].startswith(value):
                return False
        elif not any(word in v for v in fields.values()):
            return False
    return True


class RunsScreen(Screen[None]):
    """Every job with its phase, status, work items, PRs and cost; live."""

    CSS_PATH = "runs.tcss"

    BINDINGS = [
        Binding("enter", "open_job", "Open", id="runs.open", priority=True,
                tooltip="Open the selected job"),
        Binding("slash", "filter", "Filter", id="runs.filter",
                tooltip="Filter by id, repository, workflow or status (status:failed)"),
        Binding("escape", "clear_filter", "Clear filter", id="runs.clear_filter", show=False,
                tooltip="Clear the filter"),
    ]  # fmt: skip

    def __init__(
        self,
        client: EngineClient,
        *,
        now: Callable[[], datetime] | None = None,
        live: bool = True,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        """
        Args:
            client: the runner.
            now: the clock ages are computed from (tests pass a fixed one).
            live: follow the runner's events (snapshot tests show a still list).
        """
        super().__init__(name=name, id=id)
        self.client = client
        self._now = now or (lambda: datetime.now(UTC))
        self._live = live
        self._jobs: dict[str, Job] = {}
        self._reasons: dict[str, str | None] = {}
        self._dirty: set[str] = set()
        self._refresh_timer: Timer | None = None
        self._last_refresh = 0.0
        self._width = 0
        self.loaded = False
        """Whether the first list of jobs has arrived."""

    def _say(self, message: str, *, title: str, severity: SeverityLevel = "information") -> None:
        """Notify without markup: messages carry job ids, paths and the runner's words."""
        self.notify(message, title=title, severity=severity, markup=False)

    # -- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("Runs", id="runs-title")
        yield Input(placeholder="filter: text or status:failed, repo:…", id="runs-filter")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-detail")
        yield Footer()

    @property
    def table(self) -> DataTable[str | Text]:
        return self.query_one("#runs-table", DataTable)

    @property
    def filter_input(self) -> Input:
        return self.query_one("#runs-filter", Input)

    def on_mount(self) -> None:
        self.table.focus()
        self._load()
        self.set_interval(30, self._render_rows)  # ages move on

    def on_resize(self, event: Resize) -> None:
        if event.size.width != self._width:
            self._width = event.size.width
            self._render_rows()

    def _columns(self) -> list[tuple[str, str, int]]:
        wide = self._width >= WIDE
        shown = [c for c in _COLUMNS if wide or not c.wide_only]
        fixed = sum(c.width or 0 for c in shown)
        # Two cells of padding per column and one for the scrollbar.
        spare = max(30, self._width - fixed - 2 * len(shown) - 2)
        status = min(len("awaiting-developer-input"), int(spare * 0.5))
        rest = spare - status
        flex = {"status": status, "id": int(rest * 0.6) if wide else rest, "repo": int(rest * 0.4)}
        return [(c.key, c.label, c.width or max(6, flex[c.key])) for c in shown]

    # -- data -----------------------------------------------------------------------------------
    @work(exclusive=True, group="runs-feed")
    async def _load(self) -> None:
        try:
            cursor = await self.client.last_global_seq()
            jobs = await self.client.list_jobs()
        except ClientError as exc:
            self._say(exc.message, title="Runs", severity="error")
            return
        self._jobs = {job.id: job for job in jobs}
        self.loaded = True
        self._render_rows()
        if not self._live:
            return
        try:
            async for batch in self.client.all_events(after=cursor):
                for event in batch:
                    if event.kind != "log":
                        self._dirty.add(event.job_id)
                if self._dirty:
                    self._schedule_refresh()
        except ClientError as exc:
            self._say(f"live updates stopped: {exc.message}", title="Runs", severity="error")

    def _schedule_refresh(self) -> None:
        if self._refresh_timer is None:
            delay = max(0.001, self._last_refresh + 1 / REFRESH_HZ - time.monotonic())
            self._refresh_timer = self.set_timer(delay, self._refresh_dirty)

    def _refresh_dirty(self) -> None:
        self._refresh_timer = None
        self._last_refresh = time.monotonic()
        dirty, self._dirty = self._dirty, set()
        if dirty:
            self._fetch(dirty)

    @work(group="runs-fetch")
    async def _fetch(self, job_ids: set[str]) -> None:
        for job_id in sorted(job_ids):
            try:
                self._jobs[job_id] = await self.client.get_job(job_id)
            except ClientError as exc:
                if exc.status == 404:
                    self._jobs.pop(job_id, None)
        self._render_rows()

    # -- drawing --------------------------------------------------------------------------------
    def _visible(self) -> list[Job]:
        query = self.filter_input.value.strip()
        jobs = [job for job in self._jobs.values() if not query or matches_filter(job, query)]
        self._reasons = {job.id: fmt.needs_developer(job) for job in self._jobs.values()}
        jobs.sort(key=lambda job: job.created_at, reverse=True)
        jobs.sort(key=lambda job: self._reasons[job.id] is None)
        return jobs

    def _render_rows(self) -> None:
        if not self.is_mounted or not self._width:
            return
        table = self.table
        selected = self.selected_job_id
        jobs = self._visible()
        columns = self._columns()
        table.clear(columns=True)
        for key, label, width in columns:
            table.add_column(label, key=key, width=width)
        now = self._now()
        widths = {key: width for key, _, width in columns}
        for job in jobs:
            cells = self._cells(job, now)
            table.add_row(
                *(fmt.ellipsis(c, widths[k]) if isinstance(c, str) else c
                  for k, c in ((key, cells[key]) for key, _, _ in columns)),
                key=job.id,
            )  # fmt: skip
        if selected is not None:
            with suppress(RowDoesNotExist):  # unless filtered out
                table.move_cursor(row=table.get_row_index(selected), animate=False)
        self._draw_title(len(jobs))
        self._draw_detail()

    def _cells(self, job: Job, now: datetime) -> dict[str, str | Text]:
        reason = self._reasons.get(job.id)
        usage = job.token_usage
        return {
            "needs": Text("!", style="bold red") if reason else "",
            "id": Text(job.id, style="bold") if reason else job.id,
            **{k: v for k, v in _fields(job).items() if k != "id"},
            "items": fmt.work_items_done(job),
            "prs": str(len(job.open_pr_mappings())),
            "tokens": fmt.tokens(usage.total_tokens),
            "cost": fmt.cost(usage.total_cost_usd),
            "age": fmt.age(job.created_at, now),
        }

    def _draw_title(self, shown: int) -> None:
        needing = sum(1 for reason in self._reasons.values() if reason)
        total = len(self._jobs)
        parts = [f"Runs — {total} job{'s' if total != 1 else ''}"]
        if needing:
            parts.append(f"{needing} need{'s' if needing == 1 else ''} you")
        query = self.filter_input.value.strip()
        if query:
            parts.append(f"filter “{query}”: {shown} shown")
        info = self.client.info
        if info.mode == "attached":
            parts.append(f"attached to {info.url}")
        self.query_one("#runs-title", Static).update(Text(" · ".join(parts)))

    def _draw_detail(self) -> None:
        detail = self.query_one("#runs-detail", Static)
        job_id = self.selected_job_id
        job = self._jobs.get(job_id) if job_id else None
        if job is None:
            empty = "No jobs match the filter." if self._jobs else "No jobs yet."
            detail.update(Text(empty if self.loaded else "Loading jobs…", style="dim"))
            return
        fields = _fields(job)
        line = Text(job.id, style="bold")
        for key in ("repo", "workflow", "phase"):
            if fields[key]:
                line.append(f"  {key} ", style="dim").append(fields[key])
        reason = self._reasons.get(job.id)
        if reason:
            line.append("\n").append("! needs you: ", style="bold red").append(reason)
        detail.update(line)

    @property
    def selected_job_id(self) -> str | None:
        """The id of the job under the cursor."""
        table = self.table
        if not table.row_count:
            return None
        row = table.cursor_row
        if not 0 <= row < table.row_count:
            return None
        value = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return value

    @on(DataTable.RowHighlighted, "#runs-table")
    def _highlighted(self) -> None:
        self._draw_detail()

    @on(DataTable.RowSelected, "#runs-table")
    def _selected(self) -> None:
        self.action_open_job()

    # -- filter ---------------------------------------------------------------------------------
    def action_filter(self) -> None:
        self.filter_input.add_class("-shown")
        self.filter_input.focus()

    def action_clear_filter(self) -> None:
        self.filter_input.value = ""
        self.filter_input.remove_class("-shown")
        self.table.focus()

    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self) -> None:
        self._render_rows()

    # -- opening --------------------------------------------------------------------------------
    def action_open_job(self) -> None:
        if self.filter_input.has_focus:
            if not self.filter_input.value.strip():
                self.filter_input.remove_class("-shown")
            self.table.focus()
            return
        job_id = self.selected_job_id
        if job_id is None:
            return
        from coro_tui.screens.job import JobScreen

        prefs = getattr(self.app, "prefs", None)
        lines = getattr(prefs, "log_max_lines", 5000)
        self.app.push_screen(JobScreen(self.client, job_id, log_max_lines=lines))
