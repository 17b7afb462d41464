"""The contract between the phase loop, executors and tools.

The runner builds a :class:`PhaseRequest` for each phase and hands it to a
:class:`PhaseExecutor`; tool handlers change the job through a :class:`ToolContext` and set
:class:`PhaseSignals`; the executor returns a :class:`PhaseResult`. The runner then applies the
signals (go to a phase, park, escalate, switch workflow, or by default advance).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, runtime_checkable

from state import EventKind, Job, PhaseUsage, RateLimitInfo, StateBackend
from state.models import ConversationMessage

if TYPE_CHECKING:
    from engine.config import LocalConfig
    from engine.scm.registry import ScmRegistry
    from engine.tools.mcp_bridge import DomainSession
    from engine.workflow import PhaseConfig, Workflow

__all__ = [
    "ChatRequest",
    "ChatResult",
    "DeveloperMessage",
    "PhaseExecutor",
    "PhaseRequest",
    "PhaseResult",
    "PhaseSignals",
    "SteeringChannel",
    "StopReason",
    "ToolBox",
    "ToolBoxView",
    "ToolContext",
    "ToolOutcome",
    "ToolSpec",
    "WorkflowSwitchSignal",
]


@dataclass(slots=True)
class WorkflowSwitchSignal:
    """An agent's request to continue the job under another workflow (a lane switch)."""

    workflow_path: str
    reason: str
    to_phase: str | None = None
    params_patch: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PhaseSignals:
    """What the agent asked for during the phase. With none set, the job advances."""

    next_phase: str | None = None
    awaiting_event: str | None = None
    awaiting_pr_id: int | str | None = None
    escalated: bool = False
    escalation_reason: str | None = None
    switch_workflow: WorkflowSwitchSignal | None = None
    new_session_reason: str | None = None

    @property
    def ends_phase(self) -> bool:
        """A signal that should end the phase as soon as the current tool call returns."""
        return (
            self.next_phase is not None
            or self.awaiting_event is not None
            or self.escalated
            or self.switch_workflow is not None
        )

    def reset(self) -> None:
        self.next_phase = self.awaiting_event = self.awaiting_pr_id = None
        self.escalated = False
        self.escalation_reason = None
        self.switch_workflow = None
        self.new_session_reason = None


@dataclass(slots=True)
class ToolContext:
    """What a domain tool handler may see and change during one phase.

    ``job`` is the runner's live copy of the job: handlers change it in place and call
    :meth:`save`, so the runner and its tools never hold diverging copies.
    """

    job: Job
    workflow: Workflow
    phase: PhaseConfig
    signals: PhaseSignals
    store: StateBackend
    config: LocalConfig
    job_dir: Path
    intelligence_dir: Path
    proposals_dir: Path
    tenant_id: str
    known_workflows: Callable[[str], bool] = lambda _path: False
    """Whether a workflow path exists in some layer (for ``switch_workflow``)."""
    external_tools: ToolBox | None = None
    """The phase's share of the job's external MCP servers, when any are configured."""
    scm: ScmRegistry | None = None
    """The SCM plugins, for the ``scm_*`` tools (``None``: source control unavailable)."""
    guardrails_dir: Path | None = None
    """Where guardrail scripts live (``$CORO_HOME/guardrails``)."""
    domain_session: DomainSession | None = None
    """The job run's domain-tool server, when the runner opened one (else one per phase)."""

    async def save(self, *, durable: bool = False) -> None:
        await self.store.save_job(self.job, durable=durable)

    async def log(self, line: str) -> None:
        await self.store.append_event(self.job.id, EventKind.LOG, {"line": line})

    async def emit(self, kind: str, data: Mapping[str, Any]) -> None:
        await self.store.append_event(self.job.id, kind, data)


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as a model sees it."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    text: str
    is_error: bool = False


class ToolBox(Protocol):
    """The tools of one phase (domain tools, and later external MCP servers), already
    filtered by the phase's ``tools:`` allow-list."""

    def specs(self) -> list[ToolSpec]: ...

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome: ...


class ToolBoxView(Protocol):
    """Tools started once for a job's run (external MCP servers), narrowed per phase."""

    def restrict(self, allowed: Collection[str] | None) -> ToolBox: ...


StopReason = Literal[
    "end_turn",  # the model finished its turn
    "signal",  # a tool set a signal that ends the phase
    "turn_cap",  # the per-phase turn cap was reached
    "interrupted",  # the developer paused or interrupted
    "rate_limited",  # the provider kept refusing; park until rate_limit.resume_at
    "error",  # the phase could not run; ``error`` says why
]


class DeveloperMessage(NamedTuple):
    """A developer's message on its way to the model, with the id its receipts name
    (``None`` for the runner's own notes, such as the watchdog's nudges)."""

    text: str
    message_id: str | None = None


class SteeringChannel:
    """The developer's (and the watchdog's) line into a running phase.

    - :meth:`push` (*steer*): text the executor takes with :meth:`drain` at the next tool
      boundary and sends with its next model request;
    - :meth:`queue`: text delivered when the model ends its turn (the phase continues with it);
    - :meth:`interrupt` (*urgent*): the executor cancels the in-flight model stream or tool
      (killing the tool's process group), then delivers the text, if any;
    - :meth:`request_pause`: the executor stops at the next safe boundary (after the current
      model call or tool returns, or at once with ``urgent``) and returns ``interrupted``;
    - :meth:`push_events`: inbound events (PR reviews, merges, CI) rendered as one message,
      which the executor takes with :meth:`drain_events` along with the steers.

    Each developer message may carry its ``message_id``: an executor takes them with
    :meth:`drain_messages` / :meth:`drain_queued_messages` and records ``message_delivered``
    for each one it puts into a model request. What is still here when the phase ends
    (:meth:`leftovers`) goes with the next kickoff.

    Executors call :meth:`touch` whenever the model or a tool shows progress, and take an
    interrupt with :meth:`clear_interrupt` (which acknowledges it).
    """

    def __init__(self) -> None:
        self._pending: deque[DeveloperMessage] = deque()
        self._queued: deque[DeveloperMessage] = deque()
        self._events: deque[str] = deque()
        self.inbox_ids: list[int] = []  # inbox items handed over; acknowledged at phase end
        self.merged_prs: list[tuple[str, datetime]] = []  # PRs the events say were merged
        self._interrupt = asyncio.Event()
        self._acknowledged = asyncio.Event()
        self._acknowledged.set()
        self.pause_requested = False
        self.last_activity = time.monotonic()
        self.taken_without_receipt: list[str] = []
        """Ids of messages taken with :meth:`drain`/:meth:`drain_queued` (texts only): the
        runner records their delivery when the phase ends."""

    def push(self, text: str, message_id: str | None = None) -> None:
        self._pending.append(DeveloperMessage(text, message_id))

    def queue(self, text: str, message_id: str | None = None) -> None:
        self._queued.append(DeveloperMessage(text, message_id))

    def drain(self) -> list[str]:
        """The steers' texts (see :meth:`drain_messages` to record each delivery yourself)."""
        return self._untracked(self.drain_messages())

    def _untracked(self, messages: list[DeveloperMessage]) -> list[str]:
        self.taken_without_receipt += [m.message_id for m in messages if m.message_id]
        return [message.text for message in messages]

    def drain_messages(self) -> list[DeveloperMessage]:
        items = list(self._pending)
        self._pending.clear()
        return items

    def push_events(self, text: str, inbox_ids: Sequence[int] = ()) -> None:
        """Inbound events (already rendered), for the next model request, like a steer but
        without the developer's label."""
        self._events.append(text)
        self.inbox_ids.extend(inbox_ids)

    def drain_events(self) -> list[str]:
        items = list(self._events)
        self._events.clear()
        return items

    def drain_queued(self) -> list[str]:
        return self._untracked(self.drain_queued_messages())

    def drain_queued_messages(self) -> list[DeveloperMessage]:
        items = list(self._queued)
        self._queued.clear()
        return items

    def leftovers(self) -> list[DeveloperMessage]:
        """Every developer message not taken yet (steers first, then queued ones)."""
        return [*self.drain_messages(), *self.drain_queued_messages()]

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def queued(self) -> int:
        return len(self._queued)

    def interrupt(self, text: str | None = None, message_id: str | None = None) -> None:
        """Cancel what the phase is doing now; ``text`` goes to the model right after."""
        if text:
            self._pending.append(DeveloperMessage(text, message_id))
        self._acknowledged.clear()
        self._interrupt.set()

    def request_pause(self, *, urgent: bool = False) -> None:
        self.pause_requested = True
        if urgent:
            self._acknowledged.clear()
            self._interrupt.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    def clear_interrupt(self) -> None:
        """The executor took the interrupt (or it is moot): acknowledge it."""
        self._interrupt.clear()
        self._acknowledged.set()

    def acknowledge_interrupt(self) -> None:
        """The executor has started acting on the interrupt (it cancelled what ran)."""
        self._acknowledged.set()

    def withdraw_interrupt(self) -> None:
        """Nobody took the interrupt: drop it (its text stays, delivered as a steer)."""
        self.clear_interrupt()

    async def wait_acknowledged(self, seconds: float) -> bool:
        """Whether the executor took the interrupt within ``seconds``."""
        try:
            await asyncio.wait_for(self._acknowledged.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """The phase is over: nothing waits for an acknowledgement any more."""
        self._acknowledged.set()

    async def wait_interrupt(self) -> None:
        await self._interrupt.wait()

    def touch(self) -> None:
        self.last_activity = time.monotonic()


@dataclass(slots=True)
class PhaseRequest:
    """Everything an executor needs to run one phase."""

    job: Job
    workflow: Workflow
    phase: PhaseConfig
    provider: str
    model: str
    system_prompt: str
    kickoff: str
    cwd: Path
    intelligence_dir: Path
    tools: ToolBox
    signals: PhaseSignals
    context: ToolContext
    resume_conversation: list[ConversationMessage] = field(default_factory=list)
    """The conversation so far when the session continues (empty for a fresh session)."""
    steering: SteeringChannel = field(default_factory=SteeringChannel)


@dataclass(slots=True)
class PhaseResult:
    stop_reason: StopReason
    usage: PhaseUsage
    conversation: list[ConversationMessage] = field(default_factory=list)
    error: str | None = None
    rate_limit: RateLimitInfo | None = None
    session_id: str | None = None


@dataclass(slots=True)
class ChatRequest:
    """One plan-mode turn: a streamed completion, with read-only tools when ``tools`` is set.

    The executor runs the tool loop itself, at most ``max_tool_rounds`` rounds. It stops
    calling tools, and asks the model to answer with what it has, when the rounds run out,
    when the turn's output reaches ``max_output_tokens``, or when the turn has spent
    ``token_budget`` tokens (input and output, all rounds). ``ChatResult.stopped`` says why.
    """

    system_prompt: str
    messages: list[dict[str, Any]]
    model: str
    max_output_tokens: int = 4096
    on_token: Callable[[str], Awaitable[None]] | None = None
    on_thinking: Callable[[str], Awaitable[None]] | None = None
    tools: ToolBox | None = None
    max_tool_rounds: int = 0
    token_budget: int | None = None
    #: Awaited with (tool_use id, tool name, input) before a tool runs.
    on_tool_start: Callable[[str, str, dict[str, Any]], Awaitable[None]] | None = None
    #: Awaited with (tool_use id, tool name, outcome, milliseconds) after it ran.
    on_tool_end: Callable[[str, str, ToolOutcome, int], Awaitable[None]] | None = None


@dataclass(slots=True)
class ChatResult:
    text: str
    usage: PhaseUsage
    tool_rounds: int = 0
    #: Why the tool loop was cut short (``None``: the model finished on its own).
    stopped: str | None = None
    #: Input tokens of the last model call: how big the conversation has grown.
    context_tokens: int = 0


@runtime_checkable
class PhaseExecutor(Protocol):
    """Runs one phase on some LLM provider with its own tool loop.

    An executor that loads the overlay's ``.claude/CLAUDE.md`` by itself (as Claude Code does)
    sets a class attribute ``reads_claude_md = True``; every other executor receives the
    runtime rules at the top of the system prompt.
    """

    provider_id: str

    async def execute_phase(self, request: PhaseRequest) -> PhaseResult: ...
