"""What the TUI needs from a runner, whether the engine runs in this process or elsewhere.

Every screen talks to :class:`EngineClient` only. :class:`~coro_tui.client.LocalClient` wraps
an :class:`~engine.runtime.Engine` in this process; :class:`~coro_tui.client.RemoteClient`
speaks the runner's HTTP API (REST + SSE) to a runner elsewhere (``coro attach``). The same
screens, and the same tests, run on both.

Nothing here imports the engine or ``state`` at run time: the first frame is painted before
either is loaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from state import Job, JobEvent, JobInput

__all__ = [
    "ClientError",
    "EngineClient",
    "MessageMode",
    "PlanEvent",
    "RunnerInfo",
    "WorkflowSummary",
]

MessageMode = Literal["queue", "steer", "urgent"]


class ClientError(Exception):
    """The runner refused a request or cannot be reached; ``message`` is for the screen.

    Attributes:
        status: the HTTP status for a refusal (404, 409, 422 …), ``None`` when unreachable.
        field: the request field at fault, when the runner names one (for inline errors).
    """

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


@dataclass(frozen=True, slots=True)
class RunnerInfo:
    """Where the TUI's jobs run: ``local`` (this process owns the engine) or ``attached``."""

    mode: Literal["local", "attached"]
    url: str | None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowSummary:
    """A workflow a new job can run (``GET /workflows``)."""

    path: str
    display_name: str
    description: str
    kind: str
    phases: tuple[str, ...]
    layer: str | None = None


@dataclass(frozen=True, slots=True)
class PlanEvent:
    """One event of a plan-mode turn (``POST /intake/stream``): ``session``, ``notice``,
    ``token``, ``thinking``, ``tool_start``, ``tool_end``, then ``done`` or ``error``."""

    kind: str
    data: dict[str, Any]


class EngineClient(Protocol):
    """The runner as the TUI sees it. Every method may raise :class:`ClientError`."""

    @property
    def info(self) -> RunnerInfo: ...

    # -- jobs ----------------------------------------------------------------------------------
    async def list_jobs(self) -> list[Job]:
        """Every job, newest first."""

    async def get_job(self, job_id: str) -> Job: ...

    async def create_job(self, spec: JobInput) -> Job: ...

    async def last_global_seq(self) -> int:
        """The newest ``global_seq``: pass it to :meth:`all_events` to get only new events."""

    def all_events(self, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        """Batches of every job's events after ``global_seq`` ``after``, the backlog first.
        It goes on (reconnecting when it must) until the task is cancelled or the client
        closes."""

    def job_events(self, job_id: str, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        """Batches of one job's events after ``seq`` ``after``, the backlog first. It goes on
        until the task is cancelled or the client closes, also past the job's end (a resumed
        job keeps streaming)."""

    async def log_tail(self, job_id: str, lines: int) -> tuple[list[str], int]:
        """The job's last ``lines`` log lines, and the ``seq`` to follow :meth:`job_events`
        from (a line committed in between may come twice, never not at all)."""

    async def artifact_content(self, job_id: str, artifact_id: str) -> str:
        """An artefact's content as text (Markdown artefacts: the Markdown)."""

    # -- actions -------------------------------------------------------------------------------
    async def approve(self, job_id: str, message: str | None = None) -> Job: ...

    async def cancel(self, job_id: str) -> Job: ...

    async def resume(self, job_id: str, message: str | None = None) -> Job: ...

    async def pause(self, job_id: str) -> Job: ...

    async def send_message(self, job_id: str, text: str, mode: MessageMode = "queue") -> None: ...

    # -- workflows and config ------------------------------------------------------------------
    async def workflows(self) -> list[WorkflowSummary]: ...

    async def get_config(self) -> dict[str, Any]:
        """The whole config as camelCase JSON, every secret replaced by the mask."""

    async def put_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Validate and save a config sent back with masks in place (``PUT /config``); returns
        the saved config, redacted. A bad value raises :class:`ClientError` with ``field``."""

    # -- plan mode -----------------------------------------------------------------------------
    def plan_turn(
        self,
        session_id: str,
        messages: list[dict[str, str]],
        *,
        context: dict[str, Any] | None = None,
        model: str | None = None,
    ) -> AsyncIterator[PlanEvent]:
        """One plan-mode turn: ``messages`` is the whole visible conversation, ending with
        the developer's. Refusals before the turn starts (busy, expired, bad input) raise
        :class:`ClientError`; budgets and provider trouble arrive as an ``error`` event."""

    async def list_plans(self, status: str | None = None) -> list[dict[str, Any]]:
        """Saved plan sessions, newest first, without their conversations."""

    async def get_plan(self, session_id: str) -> dict[str, Any]:
        """One plan session with its conversation, readiness, findings and brief."""

    async def abandon_plan(self, session_id: str) -> None: ...

    async def dispatch_plan(self, session_id: str, brief: dict[str, Any] | None = None) -> Job:
        """Create the job the plan's brief describes (``brief``: the developer's edit)."""

    async def aclose(self) -> None: ...

    # -- local SCM -----------------------------------------------------------------------------
    async def merge_local_pr(self, repo: str, pr_id: int) -> None:
        """Approve pull request ``pr_id`` of the local SCM's ``repo`` as the developer, then
        merge it (``/scm/local/prs/{pr_id}/approve`` and ``/merge``); the job that opened it
        hears of both."""
