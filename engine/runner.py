"""``JobRunner``: carries one job through the phases of its workflow until it parks or ends.

The runner decides nothing about the work: agents do, through tools. It enforces only the
invariants — approval checkpoints, the completion gate, budgets, the turn and idle limits — and
it writes every transition to the job's event log after saving the state behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.errors import CoroError
from engine.executors import ExecutorRegistry, assign
from engine.phase import (
    DeveloperMessage,
    PhaseExecutor,
    PhaseRequest,
    PhaseResult,
    PhaseSignals,
    SteeringChannel,
    ToolBox,
    ToolBoxView,
    ToolContext,
)
from engine.prompt import (
    PromptBuilder,
    ScmAvailability,
    TrackerAvailability,
    WorkspaceLayout,
    completion_gate_pr_prompt,
    completion_gate_prompt,
    developer_message_prompt,
    select_kickoff,
)
from engine.scm._events import PR_DECLINED
from state import (
    CheckpointApproval,
    EventKind,
    ExternalRef,
    Job,
    JobStatus,
    PhaseUsage,
    PrMapping,
    StateBackend,
    WorkflowPhaseInfo,
    WorkflowSwitch,
)

if TYPE_CHECKING:
    from engine.config import LocalConfig
    from engine.inbound import InboundRouter
    from engine.overlay import OverlayManager
    from engine.paths import CoroPaths
    from engine.scm.registry import ScmRegistry
    from engine.tools.mcp_bridge import DomainServer, DomainSession
    from engine.workflow import PhaseConfig, Workflow

__all__ = [
    "CHECKPOINT_PREFIX",
    "JobRunner",
    "OpenToolbox",
    "RunOutcome",
    "budget_exceeded",
    "fold_message",
    "undelivered_messages",
]

#: Opens the phase's tools: ``(context, allowed names or None) -> async context of a ToolBox``.
OpenToolbox = Callable[["ToolContext", "set[str] | None"], AbstractAsyncContextManager["ToolBox"]]

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "developer-input: approval after "
BUDGET_PREFIX = "developer-input: budget reached"
STALLED_PREFIX = "developer-input: stalled"


@dataclass(slots=True)
class RunOutcome:
    """How a run stopped: the job's status when it did."""

    status: JobStatus


def fold_message(job: Job, text: str, message_id: str | None) -> None:
    """Add a developer message to what the job's next kickoff sends (``pending_prompt``)."""
    prompt = developer_message_prompt(text)
    job.pending_prompt = f"{job.pending_prompt}\n\n{prompt}" if job.pending_prompt else prompt
    ids = job.pending_message_ids or []
    if message_id is not None and message_id not in ids:
        job.pending_message_ids = [*ids, message_id]


async def undelivered_messages(store: StateBackend, job_id: str) -> dict[str, str]:
    """The job's accepted messages with neither a delivery nor a drop: id → text, oldest
    first (only the ``message_*`` events are read)."""
    kinds = (EventKind.MESSAGE_ACCEPTED, EventKind.MESSAGE_DELIVERED, EventKind.MESSAGE_DROPPED)
    open_: dict[str, str] = {}
    after = 0
    while True:
        batch = await store.read_events(job_id, after_seq=after, limit=1000, kinds=kinds)
        for event in batch:
            message_id = str(event.data.get("messageId"))
            if event.kind == EventKind.MESSAGE_ACCEPTED:
                open_[message_id] = str(event.data.get("text", ""))
            else:
                open_.pop(message_id, None)
        if len(batch) < 1000:
            return open_
        after = batch[-1].seq


def budget_exceeded(job: Job, config: LocalConfig) -> str | None:
    """A description of the budget the job has used up, or ``None``.

    ``params.budget`` (``{"maxTokens": …, "maxCostUsd": …}``) overrides ``jobs.budget``.
    """
    raw = job.params.get("budget")
    own: dict[str, Any] = raw if isinstance(raw, dict) else {}
    max_tokens = own.get("maxTokens", config.jobs.budget.max_tokens)
    max_cost = own.get("maxCostUsd", config.jobs.budget.max_cost_usd)
    used = job.token_usage
    if max_tokens is not None and used.total_tokens >= max_tokens:
        return f"{used.total_tokens:,} tokens used of a budget of {int(max_tokens):,}"
    if max_cost is not None and used.total_cost_usd >= max_cost:
        return f"${used.total_cost_usd:.2f} spent of a budget of ${float(max_cost):.2f}"
    return None


class JobRunner:
    """Runs jobs phase by phase. One instance serves every job of an engine.

    Args:
        store: where jobs and their events live.
        config: returns the current config (it can change while the runner lives).
        paths: the ``CORO_HOME`` layout.
        overlays: builds and loads each job's intelligence overlay and workflows.
        executors: the executor registry.
        toolbox: opens the phase's domain tools (``engine.tools.open_domain_toolbox``).
    """

    def __init__(
        self,
        *,
        store: StateBackend,
        config: Callable[[], LocalConfig],
        paths: Callable[[], CoroPaths],
        overlays: OverlayManager,
        executors: ExecutorRegistry,
        toolbox: OpenToolbox | None = None,
    ) -> None:
        self.store = store
        self._config = config
        self._paths = paths
        self.overlays = overlays
        self.executors = executors
        self._domain_server: DomainServer | None = None
        if toolbox is None:
            from engine.tools.mcp_bridge import DomainServer
            from engine.tools.phase_tools import open_phase_toolbox

            toolbox = open_phase_toolbox
            self._domain_server = DomainServer()
        self._toolbox = toolbox
        self._prompts = PromptBuilder()
        self._why: dict[str, str] = {}  # why a job's next phase was chosen, until announced
        self._steering: dict[str, SteeringChannel] = {}
        self._active: set[str] = set()  # jobs in a run (a phase may not be running)
        self._held: dict[str, list[DeveloperMessage]] = {}  # sent between two phases
        self._leftovers: dict[str, list[DeveloperMessage]] = {}  # not taken by the last phase
        self._draining = False
        self.inbound: InboundRouter | None = None  # set by the engine
        self.scm: ScmRegistry | None = None  # set by the engine

    def drain(self) -> None:
        """Start no new phase: each running job stops at its next phase boundary, still in
        its running status, so the next start recovers it where it stopped."""
        self._draining = True

    def steering(self, job_id: str) -> SteeringChannel | None:
        """The steering channel of the job's running phase, if a phase is running."""
        return self._steering.get(job_id)

    def post(self, job_id: str, mode: str, text: str, message_id: str | None) -> bool:
        """Hand a developer message to the job's run: to the running phase's steering
        channel, or (between two phases) to the next phase's first request. False when the
        job is not in a run here (the caller folds it into the job's ``pending_prompt``)."""
        steering = self._steering.get(job_id)
        if steering is not None:
            if mode == "queue":
                steering.queue(text, message_id)
            elif mode == "urgent":
                steering.interrupt(text, message_id)
            else:
                steering.push(text, message_id)
            return True
        if job_id in self._active:
            self._held.setdefault(job_id, []).append(DeveloperMessage(text, message_id))
            return True
        return False

    async def drop_undelivered(self, job: Job, reason: str) -> None:
        """Record ``message_dropped`` for every message of the job that never reached it."""
        lost = await undelivered_messages(self.store, job.id)
        if lost:
            await self.store.append_events(job.id, [
                (EventKind.MESSAGE_DROPPED, {"messageId": message_id, "reason": reason})
                for message_id in lost
            ])  # fmt: skip
        job.pending_message_ids = None

    # -- transitions ----------------------------------------------------------------------------
    async def _log(self, job: Job, line: str) -> None:
        await self.store.append_event(job.id, EventKind.LOG, {"line": line})

    async def set_status(
        self, job: Job, status: JobStatus | str, *, reason: str | None = None
    ) -> None:
        """Save the new status, then announce it (state is written before it is told).

        The one place a status change is written; the engine's resume and cancel use it too.
        """
        before = job.status
        job.status = JobStatus(status)
        if job.status.is_terminal and not before.is_terminal:
            await self.drop_undelivered(job, f"the job ended ({job.status.value}) before the "
                                        "message reached the agent")  # fmt: skip
        await self.store.save_job(job)
        if before != job.status:
            data = {"from": before.value, "to": job.status.value}
            if reason:
                data["reason"] = reason
            await self.store.append_event(job.id, EventKind.STATUS, data)

    def _goto(self, job: Job, to: str, *, why: str | None = None) -> None:
        """Choose the next phase; it is saved and announced when the loop enters it."""
        job.phase = to
        if why:
            self._why[job.id] = why
        else:
            self._why.pop(job.id, None)

    async def _move(self, job: Job, to: str, *, why: str | None = None) -> None:
        """Put the job in another phase and announce it."""
        before = job.phase
        job.phase = to
        if before != to:
            await self.store.save_job(job)
            data: dict[str, Any] = {"from": before, "to": to}
            if why:
                data["reason"] = why
            await self.store.append_event(job.id, EventKind.PHASE, data)

    async def _enter_phase(self, job: Job, phase: PhaseConfig, announced: str | None) -> None:
        """Put the job in ``phase`` with the phase's status: one save, one commit for both
        announcements (``announced`` is the phase the log last announced)."""
        events: list[tuple[str, dict[str, Any]]] = []
        why = self._why.pop(job.id, None)
        job.phase = phase.name
        if announced != phase.name:
            moved: dict[str, Any] = {"from": announced, "to": phase.name}
            if why:
                moved["reason"] = why
            events.append((EventKind.PHASE, moved))
        before, job.status = job.status, JobStatus(phase.status)
        if before != job.status:
            events.append((EventKind.STATUS, {"from": before.value, "to": job.status.value}))
        await self.store.save_job(job)
        if events:
            await self.store.append_events(job.id, events)

    async def park(self, job: Job, status: JobStatus, awaiting: str, reason: str) -> None:
        job.awaiting_event = awaiting
        await self.set_status(job, status, reason=reason)
        await self.store.flush()

    # -- the loop -------------------------------------------------------------------------------
    async def run(self, job_id: str) -> RunOutcome:
        """Run the job until it parks, stops or ends; returns how it stopped."""
        job = await self.store.get_job(job_id)
        if job is None:
            raise CoroError(f"no job {job_id!r}")
        self._active.add(job.id)
        try:
            async with self._external_servers(job) as external, self._domain() as domain:
                outcome = await self._loop(job, external, domain)
            await self._keep_held(job)
            return outcome
        except asyncio.CancelledError:
            await self.store.flush()
            raise
        except CoroError as exc:
            await self._escalate(job, exc.message)
            return RunOutcome(job.status)
        except Exception as exc:
            log.exception("job %s crashed in the runner", job.id)
            await self._escalate(job, f"the runner hit an internal error: {exc!r}")
            return RunOutcome(job.status)
        finally:
            self._active.discard(job.id)
            self._held.pop(job.id, None)
            self._leftovers.pop(job.id, None)
            self.overlays.forget(job.id)  # a parked job's overlay waits on disk, not in memory

    async def _keep_held(self, job: Job) -> None:
        """Messages sent after the run's last phase: the next kickoff takes them, or, when
        the job is over, they are dropped."""
        held = self._held.pop(job.id, [])
        if not held:
            return
        if job.status.is_terminal:
            await self.drop_undelivered(job, f"the job ended ({job.status.value}) before the "
                                        "message reached the agent")  # fmt: skip
            return
        for message in held:
            fold_message(job, message.text, message.message_id)
        await self.store.save_job(job, durable=True)

    async def _escalate(self, job: Job, message: str) -> None:
        fresh = await self.store.get_job(job.id)
        if fresh is not None:
            job = fresh
        job.escalation_message = message
        await self._log(job, f"[escalated] {message}")
        await self.set_status(job, JobStatus.ESCALATED, reason=message)
        await self.store.flush()

    @asynccontextmanager
    async def _domain(self) -> AsyncIterator[DomainSession | None]:
        """The runner's domain-tool server, shared by every job, when the runner opens the
        tools itself."""
        yield None if self._domain_server is None else await self._domain_server.session()

    async def aclose(self) -> None:
        """Close what the runner keeps open between jobs (after its jobs have stopped)."""
        if self._domain_server is not None:
            await self._domain_server.aclose()

    def _external_servers(self, job: Job) -> AbstractAsyncContextManager[ToolBoxView | None]:
        """The config's MCP servers, started for this run of the job (none configured: none)."""
        config = self._config()
        if not any(server.enabled for server in config.mcp_servers.values()):
            return nullcontext()
        from engine.tools.external import open_external_toolbox

        async def log(line: str) -> None:
            await self._log(job, line)

        job_dir = self._paths().job_dir(job.id)
        job_dir.mkdir(parents=True, exist_ok=True)
        return open_external_toolbox(config.mcp_servers, cwd=job_dir, log=log)

    async def _loop(
        self,
        job: Job,
        external: ToolBoxView | None = None,
        domain: DomainSession | None = None,
    ) -> RunOutcome:
        announced = job.phase
        while True:
            if job.status.is_terminal or job.status.is_parked or job.status.is_stopped:
                return RunOutcome(job.status)
            if self._draining:
                await self.store.save_job(job, durable=True)
                await self._log(job, f"[shutdown] stopped before phase {job.phase}; "
                                "it runs when the runner starts again")  # fmt: skip
                await self.store.flush()
                return RunOutcome(job.status)
            await self.overlays.resolve(job)
            workflow = self.overlays.load_workflow(job.id, job.workflow_path)
            if not job.workflow_phases:
                self._record_phases(job, workflow)
            phase = workflow.phase(job.phase or workflow.start_for(job.trigger_source)[0])
            await self._enter_phase(job, phase, announced)
            announced = phase.name
            exceeded = budget_exceeded(job, self._config())
            if exceeded:
                await self._log(job, f"[budget] {exceeded}: parked before phase {phase.name}")
                await self.park(
                    job, JobStatus.AWAITING_DEVELOPER_INPUT, f"{BUDGET_PREFIX}: {exceeded}",
                    f"budget reached ({exceeded}); raise params.budget or cancel the job",
                )  # fmt: skip
                return RunOutcome(job.status)
            if phase.agent is None:
                if await self._runner_managed(job, workflow, phase):
                    return RunOutcome(job.status)
                continue
            result, signals = await self._run_phase(job, workflow, phase, external, domain)
            if await self._after_phase(job, workflow, phase, result, signals):
                return RunOutcome(job.status)

    async def _runner_managed(self, job: Job, workflow: Workflow, phase: PhaseConfig) -> bool:
        """A phase without an agent parks when its status is a waiting one, else passes.

        Returns True when the run should stop.
        """
        if job.status.is_parked:
            keys = await self._take_events(job, phase)
            if keys and PR_DECLINED in keys and job.open_pr_mappings():
                open_prs = ", ".join(f"#{p.pr_id}" for p in job.open_pr_mappings())
                job.escalation_message = f"pull request {open_prs} was declined"
                await self.set_status(job, JobStatus.FAILED, reason=job.escalation_message)
                await self.store.flush()
                return True
            if keys:
                return await self._advance(job, workflow, phase)
            job.awaiting_event = job.awaiting_event or "pr:merged"
            await self._track_named_pr(job, phase)
            await self.store.save_job(job, durable=True)
            return True
        return await self._advance(job, workflow, phase)

    async def _take_events(self, job: Job, phase: PhaseConfig) -> list[str]:
        """The keys of the events that woke a waiting runner-managed phase (none on its first
        entry); they are logged and acknowledged, since no agent will read them."""
        if self.inbound is None:
            return []
        items = await self.inbound.claim_for_phase(job.id)
        if not items:
            return []
        from engine.inbound import merged_prs, stamp_merged

        stamp_merged(job, merged_prs(items))
        keys = list(dict.fromkeys(item.event.event_key for item in items))
        await self._log(job, f"[events] phase {phase.name} received {', '.join(keys)}")
        await self.store.ack([item.id for item in items])
        return keys

    async def _track_named_pr(self, job: Job, phase: PhaseConfig) -> None:
        """Map the pull request a tracking job names (``params.repo`` and ``params.prId``), so
        the poller and webhooks find the job; a job that names none waits for the developer."""
        repo, pr_id = job.params.get("repo"), job.params.get("prId")
        if not isinstance(repo, str) or not repo or not isinstance(pr_id, int | str):
            return
        if job.pr_mapping(pr_id) is not None:
            return
        scm = job.params.get("scm")
        plugin_id = scm if isinstance(scm, str) and scm else None
        if plugin_id is None and self.scm is not None:
            plugin_id = self.scm.default_id()
        job.pr_mappings.append(
            PrMapping(pr_id=pr_id, work_item=phase.name, repo_slug=repo, plugin_id=plugin_id)
        )
        job.awaiting_pr_id = pr_id
        if plugin_id is not None:
            ref = ExternalRef(kind="pull_request", plugin_id=plugin_id, repo_key=repo.lower(),
                              external_id=str(pr_id))  # fmt: skip
            await self.store.map_external_ref(ref, job.id)
        await self._log(job, f"[tracking] {repo} #{pr_id} until it is merged or declined")

    def _scm_availability(self, job: Job) -> ScmAvailability:
        if self.scm is None:
            return ScmAvailability()
        asked = job.params.get("scm")
        requested = asked if isinstance(asked, str) and asked else None
        resolved, default, installed = self.scm.resolve_for(requested)
        return ScmAvailability(
            available=resolved is not None, resolved=resolved or "none", requested=requested,
            default=default, installed=tuple(installed),
        )  # fmt: skip

    def _record_phases(self, job: Job, workflow: Workflow) -> None:
        job.workflow_phases = [
            WorkflowPhaseInfo(
                name=p.name,
                status=p.status,
                interactive_checkpoint=p.interactive_checkpoint,
                agent=p.agent,
            )
            for p in workflow.phases
        ]

    async def _run_phase(
        self,
        job: Job,
        workflow: Workflow,
        phase: PhaseConfig,
        external: ToolBoxView | None,
        domain: DomainSession | None = None,
    ) -> tuple[PhaseResult, PhaseSignals]:
        config = self._config()
        paths = self._paths()
        job_dir = paths.job_dir(job.id)
        intelligence_dir = self.overlays.intelligence_dir(job.id)
        assignment = assign(job, phase, config)
        executor = self.executors.executor(assignment.provider, config)
        system_prompt = self._prompts.build(
            job,
            workflow,
            phase,
            intelligence_dir=intelligence_dir,
            scm=self._scm_availability(job),
            tracker=TrackerAvailability(),
            workspace=WorkspaceLayout(job_dir=job_dir, repo_dir=None,
                                      intelligence_dir=intelligence_dir),
            # An executor that loads CLAUDE.md itself (as Claude Code does) says so; every
            # other one gets the runtime rules at the top of its system prompt.
            include_claude_md=not getattr(executor, "reads_claude_md", False),
            read=lambda relpath: self.overlays.read_text(job.id, relpath),
        )  # fmt: skip
        resumed = bool(job.conversation_history)
        kickoff = select_kickoff(job, workflow, phase, resumed=resumed, now=datetime.now(UTC))
        signals = PhaseSignals()
        context = ToolContext(
            job=job,
            workflow=workflow,
            phase=phase,
            signals=signals,
            store=self.store,
            config=config,
            job_dir=job_dir,
            intelligence_dir=intelligence_dir,
            proposals_dir=paths.intelligence_dir / "proposals",
            tenant_id=self.overlays.tenant_id,
            known_workflows=lambda path: self.overlays.workflow_exists(job.id, path),
            scm=self.scm,
            guardrails_dir=paths.guardrails_dir,
            domain_session=domain,
        )
        await self.store.append_event(
            job.id,
            "phase_started",
            {"phase": phase.name, "provider": assignment.provider, "model": assignment.model,
             "resumed": resumed},
        )  # fmt: skip
        started = time.monotonic()
        allowed = set(phase.tools) if phase.tools is not None else None
        if external is not None:
            context.external_tools = external.restrict(allowed)
        steering = self._steering[job.id] = SteeringChannel()
        for message in self._held.pop(job.id, []):
            steering.push(message.text, message.message_id)
        if job.pending_message_ids and job.pending_prompt:
            # The kickoff (the first request) carries the messages folded into it.
            await self.store.append_events(job.id, [
                (EventKind.MESSAGE_DELIVERED, {"messageId": message_id, "turn": 1})
                for message_id in job.pending_message_ids
            ])  # fmt: skip
            job.pending_message_ids = None
        delivered = False
        try:
            if self.inbound is not None:
                items = await self.inbound.claim_for_phase(job.id)
                if items:
                    from engine.inbound import merged_prs, render_events, stamp_merged

                    steering.push_events(render_events(items), [item.id for item in items])
                    if stamp_merged(job, merged_prs(items)):
                        await self.store.save_job(job)
                    await self._log(job, f"[events] {len(items)} pending event(s) delivered "
                                         f"to phase {phase.name}")  # fmt: skip
            async with self._toolbox(context, allowed) as tools:
                request = PhaseRequest(
                    job=job,
                    workflow=workflow,
                    phase=phase,
                    provider=assignment.provider,
                    model=assignment.model,
                    system_prompt=system_prompt,
                    kickoff=kickoff,
                    cwd=job_dir,
                    intelligence_dir=intelligence_dir,
                    tools=tools,
                    signals=signals,
                    context=context,
                    resume_conversation=list(job.conversation_history),
                    steering=steering,
                )
                result = await self._execute_watched(job, executor, request)
            delivered = True
            if steering.merged_prs:
                from engine.inbound import stamp_merged

                stamp_merged(job, steering.merged_prs)  # saved with the phase's end
        finally:
            self._steering.pop(job.id, None)
            steering.close()
            leftovers = [m for m in steering.leftovers() if m.message_id is not None]
            if steering.taken_without_receipt:  # the executor took them: in this phase
                await asyncio.shield(self.store.append_events(job.id, [
                    (EventKind.MESSAGE_DELIVERED, {"messageId": message_id, "turn": None})
                    for message_id in steering.taken_without_receipt
                ]))  # fmt: skip
            if leftovers:  # carried over to the next kickoff (see _after_phase)
                self._leftovers[job.id] = leftovers
            if steering.inbox_ids:
                # Delivered events are done once the phase that got them ends; otherwise
                # they go back, to be delivered again (at least once, never lost).
                if delivered or self.inbound is None:
                    await asyncio.shield(self.store.ack(steering.inbox_ids))
                else:
                    await asyncio.shield(self.inbound.release(job.id, steering.inbox_ids))
        if not result.usage.duration_ms:
            result.usage.duration_ms = int((time.monotonic() - started) * 1000)
        return result, signals

    async def _execute_watched(
        self, job: Job, executor: PhaseExecutor, request: PhaseRequest
    ) -> PhaseResult:
        """Run the executor under the idle watchdog (nudge, then park a stalled phase)."""
        settings = self._config().jobs.idle_watchdog
        task = asyncio.ensure_future(executor.execute_phase(request))
        if not settings.enabled:
            return await task
        idle_limit = settings.idle_minutes * 60
        nudges = 0
        try:
            while True:
                done, _ = await asyncio.wait(
                    {task}, timeout=min(settings.check_seconds, idle_limit)
                )
                if done:
                    return task.result()
                idle = time.monotonic() - request.steering.last_activity
                if idle < idle_limit:
                    continue
                if nudges < settings.nudges:
                    nudges += 1
                    request.steering.push(
                        f"[SYSTEM NUDGE] No progress for {idle / 60:.1f} minutes. Continue your "
                        "work, or call escalate if you are blocked."
                    )
                    request.steering.touch()
                    await self._log(job, f"[watchdog] nudge {nudges} after {idle:.0f}s idle")
                    continue
                await self._log(job, f"[watchdog] no progress after {nudges} nudges: stopping")
                task.cancel()
                with suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), settings.grace_seconds)
                return PhaseResult(
                    stop_reason="interrupted",
                    usage=PhaseUsage(phase=request.phase.name, model=request.model),
                    conversation=list(job.conversation_history),
                    error=f"stalled: no progress for {idle / 60:.1f} minutes after {nudges} nudges",
                )
        finally:
            if not task.done():
                task.cancel()

    # -- after a phase --------------------------------------------------------------------------
    async def _after_phase(
        self,
        job: Job,
        workflow: Workflow,
        phase: PhaseConfig,
        result: PhaseResult,
        signals: PhaseSignals,
    ) -> bool:
        """Apply the phase's outcome to the job. Returns True when the run should stop."""
        if signals.new_session_reason is None:
            job.conversation_history = result.conversation
        job.session_id = None if signals.new_session_reason else result.session_id
        job.pending_prompt = None  # it was delivered with this phase's kickoff
        job.pending_message_ids = None
        carried = self._leftovers.pop(job.id, [])
        for message in carried:  # sent too late for this phase: the next kickoff has them
            fold_message(job, message.text, message.message_id)
        if carried:
            await self._log(job, f"[steering] {len(carried)} message(s) the phase ended "
                            "before delivering go with the next kickoff")  # fmt: skip
        await self._account(job, phase, result)  # commits: the phase boundary is durable
        if result.stop_reason == "rate_limited" and result.rate_limit is not None:
            job.rate_limit_info = result.rate_limit
            resume = datetime.fromtimestamp(result.rate_limit.resume_at / 1000, UTC)
            await self.park(
                job, JobStatus.AWAITING_RATE_LIMIT, "rate-limit",
                f"{result.rate_limit.provider} is limiting requests; resuming at "
                f"{resume:%H:%M:%S} UTC",
            )  # fmt: skip
            return True
        job.rate_limit_info = None
        if result.stop_reason == "error":
            await self._escalate(job, result.error or "the executor failed without a message")
            return True
        if result.stop_reason == "turn_cap":
            cap = self._config().llm.max_turns_per_phase
            await self._escalate(
                job,
                f"phase {phase.name!r} reached the cap of {cap} model turns without finishing "
                "(llm.maxTurnsPerPhase); look at the log, then resume or raise the cap",
            )
            return True
        if result.stop_reason == "interrupted" and not signals.ends_phase:
            reason = result.error or "paused by developer"
            prefix = STALLED_PREFIX if reason.startswith("stalled") else "developer-input:"
            await self.park(job, JobStatus.AWAITING_DEVELOPER_INPUT, f"{prefix} {reason}", reason)
            return True
        if signals.escalated:
            await self._escalate(job, signals.escalation_reason or "escalated by the agent")
            return True
        if signals.awaiting_event is not None:
            job.awaiting_pr_id = signals.awaiting_pr_id
            developer = signals.awaiting_event.startswith("developer-input:")
            status = (
                JobStatus.AWAITING_DEVELOPER_INPUT if developer else JobStatus.AWAITING_PR_MERGE
            )
            await self.park(
                job, status, signals.awaiting_event, f"waiting for {signals.awaiting_event}"
            )
            return True
        if signals.switch_workflow is not None:
            await self._switch(job, workflow, phase, signals)
            return False
        if signals.next_phase is not None:
            job.completion_gate_blocks = 0
            self._goto(job, signals.next_phase, why="goto_phase")
            return False
        return await self._advance(job, workflow, phase)

    async def _account(self, job: Job, phase: PhaseConfig, result: PhaseResult) -> None:
        usage = result.usage
        usage.phase = usage.phase or phase.name
        usage.work_item = usage.work_item or job.current_work_item
        job.phase_usage.append(usage)
        job.token_usage.add(usage)
        await self.store.save_job(job)
        # The append returns once its transaction commits, and that carries the save above.
        await self.store.append_event(job.id, EventKind.USAGE, usage.to_wire())

    async def _switch(
        self, job: Job, workflow: Workflow, phase: PhaseConfig, signals: PhaseSignals
    ) -> None:
        switch = signals.switch_workflow
        assert switch is not None
        target = self.overlays.load_workflow(job.id, switch.workflow_path)
        to_phase = switch.to_phase or target.start_for(job.trigger_source)[0]
        target.phase(to_phase)  # refuse an unknown phase before changing anything
        job.workflow_path_history.append(
            WorkflowSwitch.model_validate(
                {"from": job.workflow_path, "to": switch.workflow_path, "fromPhase": phase.name,
                 "toPhase": to_phase, "reason": switch.reason, "by": "switch_workflow"}
            )
        )  # fmt: skip
        job.workflow_path = switch.workflow_path
        job.params.update(switch.params_patch)
        job.completion_gate_blocks = 0
        self._record_phases(job, target)
        self._goto(job, to_phase, why="switch_workflow")
        await self._log(
            job, f"[workflow] switched to {switch.workflow_path} at {to_phase}: {switch.reason}"
        )

    async def _advance(self, job: Job, workflow: Workflow, phase: PhaseConfig) -> bool:
        nxt = workflow.next_phase(phase.name)
        if (
            phase.interactive_checkpoint
            and job.interactive
            and job.approved_advance_from_phase != phase.name
        ):
            job.awaiting_next_phase = nxt
            await self.park(
                job, JobStatus.AWAITING_DEVELOPER_INPUT, f"{CHECKPOINT_PREFIX}{phase.name}",
                f"checkpoint: approve to continue after {phase.name}",
            )  # fmt: skip
            return True
        job.approved_advance_from_phase = None
        if nxt is not None:
            job.completion_gate_blocks = 0
            self._goto(job, nxt)
            return False
        return await self._gate_or_complete(job)

    async def _gate_or_complete(self, job: Job) -> bool:
        """The completion gate: a job completes only with no open work (or escalates to fail)."""
        open_items = job.open_work_items()
        open_prs = job.open_pr_mappings() if not job.work_items else []
        if not open_items and not open_prs:
            await self._complete(job)
            return True
        cap = self._config().jobs.completion_gate_max_retries
        job.completion_gate_blocks += 1
        blocking = (
            ", ".join(w.name for w in open_items)
            if open_items
            else "open PRs " + ", ".join(f"#{p.pr_id}" for p in open_prs)
        )
        await self._log(
            job, f"[completion-gate] blocked {job.completion_gate_blocks}/{cap}: {blocking}"
        )
        if job.completion_gate_blocks >= cap:
            job.escalation_message = (
                f"the completion gate blocked {cap} times in a row; still open: {blocking}"
            )
            await self.set_status(job, JobStatus.FAILED, reason=job.escalation_message)
            await self.store.flush()
            return True
        make = completion_gate_prompt if open_items else completion_gate_pr_prompt
        gate = make(job, attempt=job.completion_gate_blocks, max_attempts=cap)
        job.pending_prompt = f"{gate}\n\n{job.pending_prompt}" if job.pending_prompt else gate
        return False

    async def _complete(self, job: Job) -> None:
        job.awaiting_event = None
        job.awaiting_next_phase = None
        job.completion_gate_blocks = 0
        await self.set_status(job, JobStatus.COMPLETE, reason="all phases done")
        await self.store.flush()

    # -- developer actions ----------------------------------------------------------------------
    async def approve(self, job: Job, *, by: str | None, message: str | None) -> bool:
        """Release a checkpoint park. Returns True when the job should be dispatched."""
        assert job.awaiting_event is not None and job.phase is not None
        job.checkpoint_approval = CheckpointApproval(
            for_phase=job.phase, approved_by=by, message=message
        )
        job.approved_advance_from_phase = job.phase
        job.awaiting_event = None
        nxt, job.awaiting_next_phase = job.awaiting_next_phase, None
        await self._log(job, f"[approved] after {job.phase}" + (f" by {by}" if by else ""))
        if nxt is not None:
            approved = job.phase
            job.completion_gate_blocks = 0
            await self._move(job, nxt, why=f"approved after {approved}")
            await self.set_status(job, JobStatus.QUEUED, reason=f"approved after {approved}")
            return True
        if await self._gate_or_complete(job):
            return False
        await self.set_status(job, JobStatus.QUEUED, reason="approved; completion gate open")
        return True
