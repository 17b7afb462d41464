"""``Engine``: the running coro engine — state, dispatcher, runner, timers and config reload.

The TUI, the HTTP shim and the headless runner all drive jobs through one ``Engine``::

    engine = Engine()                 # CORO_HOME from the environment
    await engine.start()              # opens state.db, recovers interrupted jobs
    job = await engine.create_job(JobInput(params={"repo": "acme/svc", ...}))
    ...
    await engine.stop()               # drains running phases, flushes, closes
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import ConfigFingerprint, LocalConfig, config_fingerprint, load_config
from engine.dispatcher import Dispatcher
from engine.errors import ConfigError, CoroError
from engine.executors import ExecutorRegistry
from engine.overlay import OverlayManager
from engine.paths import CoroPaths
from engine.runner import (
    CHECKPOINT_PREFIX,
    JobRunner,
    OpenToolbox,
    fold_message,
    undelivered_messages,
)
from state import (
    EventKind,
    Job,
    JobInput,
    JobNotFoundError,
    JobStatus,
    SqliteStateBackend,
    StateBackend,
)

if TYPE_CHECKING:
    from engine.inbound import InboundRouter
    from engine.intake import IntakeService
    from engine.phase import SteeringChannel
    from engine.polling import PrPoller
    from engine.scm.registry import ScmRegistry

__all__ = ["ActionRefused", "Engine"]

log = logging.getLogger(__name__)


class ActionRefused(CoroError):
    """The job's status does not allow what was asked (resume a complete job, …)."""

    title = "Not possible now"


def _slug(text: str) -> str:
    name = text.rstrip("/").rsplit("/", 1)[-1]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:40] or "job"


class Engine:
    """Owns everything that runs jobs in this process.

    ``interrupt_ack_seconds``: how long an urgent message waits for the executor to take its
    interrupt before it is left queued as a steer.

    Args:
        home: ``CORO_HOME`` (default: from the environment).
        store: a state backend (default: SQLite at ``$CORO_HOME/state.db``).
        executors: the executor registry (default: discovered from entry points).
        toolbox: opens each phase's tools (default: the in-process MCP domain tools).
        watch_config: reload ``config.json`` when it changes on disk.
        poll_prs: poll parked jobs' pull requests (``polling.intervalSeconds``).
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        store: StateBackend | None = None,
        executors: ExecutorRegistry | None = None,
        toolbox: OpenToolbox | None = None,
        watch_config: bool = True,
        poll_prs: bool = True,
    ) -> None:
        self.paths = CoroPaths.from_home(home)
        self.config = LocalConfig()
        self.config_error: str | None = None
        self._store = store
        self.executors = executors or ExecutorRegistry()
        self._toolbox = toolbox
        self._watch = watch_config
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._started = False
        self.dispatcher: Dispatcher | None = None
        self.runner: JobRunner | None = None
        self.inbound: InboundRouter | None = None
        self.scm: ScmRegistry
        self.intake: IntakeService
        self.poller: PrPoller | None = None
        self._poll = poll_prs
        self.runner_id = f"runner-{uuid.uuid4().hex[:12]}"
        """This process's identity: in ``/health``, and as the owner of inbox claims."""
        self._config_fingerprint: ConfigFingerprint | None = None
        self.config_listeners: list[Callable[[bool], None]] = []
        """Called after every reload attempt with whether the new config was applied."""
        self.interrupt_ack_seconds = 10.0
        self._ack_waits: set[asyncio.Task[None]] = set()

    @property
    def store(self) -> StateBackend:
        if self._store is None:
            raise CoroError("the engine is not started")
        return self._store

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the config, open state, and resume what a previous process left running."""
        if self._started:
            return
        self._config_fingerprint = config_fingerprint(self.paths.config_file)
        self.config = load_config(self.paths.config_file)
        self.paths = CoroPaths.from_home(self.paths.home, self.config)
        self.paths.ensure()
        if self._store is None:
            self._store = SqliteStateBackend(
                self.paths.state_db, synchronous=self.config.state.synchronous
            )
        await self._store.open()
        self.overlays = OverlayManager(self.config, self.paths, known_tool=self._known_tool)
        self.runner = JobRunner(
            store=self._store,
            config=lambda: self.config,
            paths=lambda: self.paths,
            overlays=self.overlays,
            executors=self.executors,
            toolbox=self._toolbox,
        )
        self.dispatcher = Dispatcher(self._run, max_concurrent=self.config.jobs.max_concurrent)
        from engine.inbound import InboundRouter

        self.inbound = InboundRouter(
            store=self._store, runner=self.runner, wake=self._wake, owner=self.runner_id
        )
        self.runner.inbound = self.inbound
        from engine.scm.registry import ScmRegistry

        self.scm = ScmRegistry(config=lambda: self.config, paths=lambda: self.paths,
                               store=self._store)  # fmt: skip
        self.runner.scm = self.scm
        from engine.intake import IntakeService

        self.intake = IntakeService(self)
        self._started = True
        await asyncio.to_thread(self.overlays.sweep_store)
        await self._recover()
        await self.inbound.sweep()
        await self.intake.expire_stale()
        if self._poll:
            from engine.polling import PrPoller

            self.poller = PrPoller(
                store=self._store, scm=self.scm, inbound=self.inbound,
                interval=lambda: self.config.polling.interval_seconds,
            )  # fmt: skip
            self.poller.start()
        if self._watch:
            self._watcher = asyncio.create_task(self._watch_config(), name="coro-config-watch")

    async def stop(self, *, grace: float = 30.0) -> None:
        """Stop taking jobs, let running phases finish for ``grace`` seconds, save, close."""
        if not self._started:
            return
        self._started = False
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for wait in list(self._ack_waits):
            wait.cancel()
        assert self.dispatcher is not None and self.runner is not None
        self.runner.drain()
        cut = await self.dispatcher.close(grace=grace)
        for job_id in cut:
            log.info("job %s was mid-phase at shutdown; it resumes at the next start", job_id)
        if self.poller is not None:
            await self.poller.stop()
        await self.runner.aclose()
        await self.intake.aclose()
        await self.executors.aclose()
        await self.scm.aclose()
        await self.store.close()

    def cut_running(self) -> None:
        """During :meth:`stop`, stop waiting for running phases: cut them now (they resume
        at the next start)."""
        if self.dispatcher is not None:
            self.dispatcher.cut()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _known_tool(self, name: str) -> bool:
        from engine.tools import domain_tool_names

        return name in domain_tool_names()

    async def _run(self, job_id: str) -> None:
        assert self.runner is not None
        outcome = await self.runner.run(job_id)
        if outcome.status is JobStatus.AWAITING_RATE_LIMIT:
            job = await self.store.get_job(job_id)
            if job is not None:
                self._arm_rate_limit(job)

    def _dispatch(self, job_id: str) -> None:
        assert self.dispatcher is not None
        self.dispatcher.dispatch(job_id)

    async def _recover(self) -> None:
        """Resume jobs a previous process left mid-phase or queued; re-arm rate-limit timers."""
        jobs = await self.store.list_jobs()
        for job in reversed(jobs):  # oldest first, so queued jobs keep their order
            job = await self._restore_messages(job)
            if job.status.is_running:
                await self.store.append_event(
                    job.id,
                    EventKind.RECOVERED,
                    {"phase": job.phase, "status": job.status.value},
                )
                await self.store.append_event(
                    job.id,
                    EventKind.LOG,
                    {"line": f"[recovered] resuming phase {job.phase} after a restart"},
                )
                self._dispatch(job.id)
            elif job.status is JobStatus.QUEUED:
                self._dispatch(job.id)
            elif job.status is JobStatus.AWAITING_RATE_LIMIT:
                self._arm_rate_limit(job)

    async def _restore_messages(self, job: Job) -> Job:
        """Nothing is lost: a message accepted but neither delivered nor dropped (the runner
        stopped before it reached the agent) goes with the job's next kickoff, or is dropped
        when the job is over."""
        lost = await undelivered_messages(self.store, job.id)
        missing = {k: v for k, v in lost.items() if k not in (job.pending_message_ids or ())}
        if not missing:
            return job
        assert self.runner is not None
        if job.status.is_terminal:
            await self.runner.drop_undelivered(
                job, f"the job ended ({job.status.value}) before the message reached the agent"
            )
            return job
        for message_id, text in missing.items():
            fold_message(job, text, message_id)
        await self.store.save_job(job, durable=True)
        await self.store.append_event(job.id, EventKind.LOG, {
            "line": f"[steering] {len(missing)} undelivered message(s) go with the next kickoff"
        })  # fmt: skip
        return job

    def _arm_rate_limit(self, job: Job) -> None:
        info = job.rate_limit_info
        delay = 0.0 if info is None else max(0.0, info.resume_at / 1000 - time.time())
        old = self._timers.pop(job.id, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[job.id] = loop.call_later(
            delay, lambda: asyncio.ensure_future(self._rate_limit_over(job.id))
        )

    async def _rate_limit_over(self, job_id: str) -> None:
        self._timers.pop(job_id, None)
        job = await self.store.get_job(job_id)
        if job is None or job.status is not JobStatus.AWAITING_RATE_LIMIT:
            return
        job.awaiting_event = None
        await self._requeue(job, "rate limit window over")

    async def _wake(self, job: Job, reason: str) -> None:
        """Queue a parked job again because what it awaited arrived."""
        job = await self._require(job.id)
        if not job.status.is_parked:
            return
        job.awaiting_event = None
        job.awaiting_pr_id = None
        await self._requeue(job, reason)

    async def _requeue(self, job: Job, reason: str) -> None:
        assert self.runner is not None
        await self.runner.set_status(job, JobStatus.QUEUED, reason=reason)
        self._dispatch(job.id)

    # -- config -----------------------------------------------------------------------------------
    async def _watch_config(self) -> None:
        """Reload on change. The file's content fingerprint decides (so touching it does
        nothing), and it is also compared every second, which catches an edit made before the
        file-system watch was in place."""
        from watchfiles import awatch

        target = self.paths.config_file
        watched = [target.parent]
        tenant = self._tenant_dir()
        if tenant is not None:
            watched.append(tenant)
        async for changes in awatch(
            *watched, debounce=200, yield_on_timeout=True, rust_timeout=1000,
            watch_filter=lambda _change, path: Path(path) == target
            or (tenant is not None and Path(path).is_relative_to(tenant)),
        ):  # fmt: skip
            fingerprint = config_fingerprint(target)
            if fingerprint != self._config_fingerprint:
                self._config_fingerprint = fingerprint
                self.reload_config()
            touched = [p for _, p in changes if tenant is not None and p != str(target)]
            if touched:
                # Overlays are re-resolved at every phase boundary: the next phase sees it.
                log.info(
                    "tenant layer changed (%d files); the next phase picks it up", len(touched)
                )

    def _tenant_dir(self) -> Path | None:
        overlay = self.config.tenant.overlay
        if overlay.kind == "localDir":
            return Path(overlay.path).expanduser()
        if overlay.kind == "none" and self.paths.intelligence_dir.is_dir():
            return self.paths.intelligence_dir
        return None

    def reload_config(self) -> bool:
        """Apply ``config.json`` as it is now; keep the last good config if it is invalid."""
        try:
            config = load_config(self.paths.config_file)
        except ConfigError as exc:
            self.config_error = exc.message
            log.warning("config.json not applied, keeping the last good one: %s", exc.message)
            self._tell_listeners(False)
            return False
        self.config_error = None
        self.config = config
        self.paths = CoroPaths.from_home(self.paths.home, config)
        self.overlays.reconfigure(config, self.paths)
        for provider in self.executors.providers:
            self.executors.forget(provider)
        if self.dispatcher is not None:
            self.dispatcher.set_max_concurrent(config.jobs.max_concurrent)
        log.info("config.json reloaded")
        self._tell_listeners(True)
        return True

    def _tell_listeners(self, applied: bool) -> None:
        for listener in list(self.config_listeners):
            try:
                listener(applied)
            except Exception:
                log.exception("a config listener failed")

    # -- jobs -------------------------------------------------------------------------------------
    async def _require(self, job_id: str) -> Job:
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    async def create_job(self, spec: JobInput, *, job_id: str | None = None) -> Job:
        """Create a job from a request and queue it."""
        params = dict(spec.params)
        if job_id is None:
            base = _slug(str(params.get("serviceName") or params.get("repo") or "job"))
            job_id = f"{base}-job-{int(time.time() * 1000)}"
        job = Job(
            id=job_id,
            type=spec.type,
            tenant_id=self.overlays.tenant_id,
            workflow_path=spec.workflow_path,
            params=params,
            trigger_source=spec.trigger_source,
            interactive=spec.interactive,
            insights=list(spec.initial_insights),
        )
        await self.store.create_job(job)
        await self.store.append_event(
            job.id,
            EventKind.JOB_CREATED,
            {"workflowPath": job.workflow_path, "triggerSource": job.trigger_source},
        )
        self._dispatch(job.id)
        return job

    async def approve(
        self,
        job_id: str,
        *,
        by: str | None = None,
        message: str | None = None,
        message_id: str | None = None,
    ) -> Job:
        """Release a job parked at an interactive checkpoint."""
        job = await self._require(job_id)
        if not (job.awaiting_event or "").startswith(CHECKPOINT_PREFIX):
            raise ActionRefused(
                f"job {job_id} is {job.status.value}, not waiting at a checkpoint; "
                "there is nothing to approve"
            )
        if message and message_id is not None:  # the approval block of the kickoff has it
            job.pending_message_ids = [*(job.pending_message_ids or []), message_id]
        assert self.runner is not None
        if await self.runner.approve(job, by=by, message=message):
            self._dispatch(job.id)
        return job

    async def resume(
        self,
        job_id: str,
        *,
        from_phase: str | None = None,
        clear_session: bool = False,
        message: str | None = None,
        message_id: str | None = None,
    ) -> Job:
        """Start a parked, escalated or failed job again (optionally at another phase)."""
        job = await self._require(job_id)
        if not job.status.is_resumable:
            raise ActionRefused(
                f"job {job_id} is {job.status.value}; only parked, escalated or failed jobs "
                "can be resumed"
            )
        if (job.awaiting_event or "").startswith(CHECKPOINT_PREFIX) and from_phase is None:
            return await self.approve(job_id, message=message, message_id=message_id)
        if from_phase is not None:
            workflow = self.overlays.load_workflow(job.id, job.workflow_path)
            workflow.phase(from_phase)
            job.phase = from_phase
        if clear_session:
            job.conversation_history = []
            job.session_id = None
        if message:
            fold_message(job, message, message_id)
        job.awaiting_event = None
        job.awaiting_pr_id = None
        job.escalation_message = None
        job.completion_gate_blocks = 0
        await self.store.append_event(
            job.id, EventKind.LOG, {"line": f"[manual-resume] from {job.status.value}"}
        )
        await self._requeue(job, "resumed by developer")
        return job

    async def cancel(self, job_id: str, *, reason: str = "cancelled by developer") -> Job:
        """Stop a job for good."""
        job = await self._require(job_id)
        if not job.status.is_cancellable:
            raise ActionRefused(f"job {job_id} is already {job.status.value}")
        assert self.dispatcher is not None
        await self.dispatcher.cancel(job_id)
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()
        job = await self._require(job_id)  # the run may have saved on its way out
        job.escalation_message = reason
        assert self.runner is not None
        await self.runner.set_status(job, JobStatus.CANCELLED, reason=reason)
        await self.store.flush()
        return job

    async def message(self, job_id: str, text: str, *, mode: str = "steer") -> str:
        """Send the developer's message to a job; returns the message id.

        ``mode`` says when a running phase sees it: ``queue`` when the model ends its turn,
        ``steer`` at the next tool boundary, ``urgent`` at once (the model call or tool in
        flight is cancelled). A job that is not running gets it with its next kickoff: a
        parked, escalated or failed job is resumed with it, a queued one keeps it pending.
        """
        if mode not in ("queue", "steer", "urgent"):
            raise ActionRefused(f"unknown message mode {mode!r}; use queue, steer or urgent")
        if not text.strip():
            raise ActionRefused("the message is empty")
        job = await self._require(job_id)
        if job.status.is_terminal:
            raise ActionRefused(f"job {job_id} is {job.status.value}; it takes no more messages")
        message_id = f"msg-{uuid.uuid4().hex[:12]}"
        await self.store.append_event(
            job_id, EventKind.MESSAGE_ACCEPTED, {"messageId": message_id, "mode": mode,
                                                 "text": text}
        )  # fmt: skip
        assert self.runner is not None
        steering = self.runner.steering(job_id)
        if self.runner.post(job_id, mode, text, message_id):
            if mode == "urgent" and steering is not None:
                wait = asyncio.create_task(self._await_interrupt(job_id, steering))
                self._ack_waits.add(wait)
                wait.add_done_callback(self._ack_waits.discard)
            return message_id
        if job.status.is_resumable:
            await self.resume(job_id, message=text, message_id=message_id)
            return message_id
        fold_message(job, text, message_id)
        await self.store.save_job(job, durable=True)
        return message_id

    async def _await_interrupt(self, job_id: str, steering: SteeringChannel) -> None:
        """An interrupt the executor does not take in time becomes a steer."""
        if await steering.wait_acknowledged(self.interrupt_ack_seconds):
            return
        steering.withdraw_interrupt()
        await self.store.append_event(job_id, EventKind.LOG, {
            "line": f"[control] interrupt not acknowledged after {self.interrupt_ack_seconds:g} "
                    "s; the message stays queued"
        })  # fmt: skip

    async def pause(self, job_id: str) -> Job:
        """Park a job as ``awaiting-developer-input``, keeping its session.

        A running phase stops at its next safe boundary (after the model call or tool in
        flight); a queued job parks at once. ``resume`` continues where it stopped.
        """
        job = await self._require(job_id)
        if job.status.is_terminal or job.status.is_parked:
            raise ActionRefused(f"job {job_id} is {job.status.value}; there is nothing to pause")
        steering = self.runner.steering(job_id) if self.runner is not None else None
        if steering is not None:
            steering.request_pause()
            return job
        assert self.dispatcher is not None and self.runner is not None
        await self.dispatcher.cancel(job_id)
        job = await self._restore_messages(await self._require(job_id))
        if job.status.is_parked or job.status.is_terminal:
            return job
        await self.runner.park(
            job, JobStatus.AWAITING_DEVELOPER_INPUT, "developer-input: paused by developer",
            "paused by developer",
        )  # fmt: skip
        return job

    async def set_interactive(self, job_id: str, interactive: bool) -> Job:
        """Turn checkpoints on or off; turning them off releases a checkpoint park."""
        job = await self._require(job_id)
        job.interactive = interactive
        await self.store.save_job(job, durable=True)
        if not interactive and (job.awaiting_event or "").startswith(CHECKPOINT_PREFIX):
            return await self.approve(job_id, by="interactive off")
        return job

    async def wait_until(self, job_id: str, predicate: Callable[[Job], bool] | None = None) -> Job:
        """Wait until the job is parked or stopped (or ``predicate(job)`` holds) and the log
        has announced its current status.

        Bound it with ``asyncio.timeout(...)``: it waits as long as the job takes.
        """
        stream = self.store.subscribe(job_id)
        announced: str | None = None
        try:
            job = await self._require(job_id)
            while True:
                done = (
                    predicate(job) if predicate else job.status.is_parked or job.status.is_stopped
                )
                if done and announced == job.status.value:
                    return job
                batch = await anext(stream)
                for event in batch:
                    if event.kind == EventKind.STATUS:
                        announced = event.data.get("to")
                # Without a predicate only a status event can end the wait, so the job (a full
                # parse) is re-read only then: re-reading it per batch of log lines slows the job.
                if predicate is not None or any(e.kind == EventKind.STATUS for e in batch):
                    job = await self._require(job_id)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
