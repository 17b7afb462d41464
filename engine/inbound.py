"""Inbound events (webhooks, PR poll findings, developer actions on local PRs) routed to jobs.

::

    router = InboundRouter(store=store, runner=runner, wake=engine_wake, owner="runner-1")
    await router.submit(event)          # durable first, then routed

Every event goes into the durable inbox before anything acts on it, under a dedupe key (a
replayed webhook delivery is dropped there). Then it is routed to the job that owns the pull
request it is about:

- a **running** job gets it at its next turn boundary, batched with any others into one
  ``[WEBHOOK EVENTS: N]`` message (the runner claims the job's pending events when a phase
  starts, and the router pushes new ones into the phase's steering channel);
- a **parked** job whose awaited name the event matches (:func:`engine.scm.awaited_matches`)
  is woken: it is queued again and its next phase starts with the events;
- any other job keeps it pending until it next runs.

Events are acknowledged when the phase that received them ends, so a crash delivers them
again rather than losing them (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.scm import PR_MERGED, awaited_matches
from state import EventKind, ExternalRef, InboundEvent, InboxItem, Job

if TYPE_CHECKING:
    from engine.runner import JobRunner
    from state import StateBackend

__all__ = ["InboundRouter", "dedupe_key_for", "merged_prs", "render_events", "stamp_merged"]

log = logging.getLogger(__name__)

#: How long a claim holds before a crash makes the event claimable again.
LEASE_SECONDS = 300.0
_BODY_CHARS = 2_000


def dedupe_key_for(event: InboundEvent) -> str:
    """The inbox key of an event: one delivery of one event about one pull request.

    Without a delivery id (polls, developer actions) the key is unique, so nothing is dropped;
    callers with a better identity (a comment id, a state change) pass their own.
    """
    if event.delivery_id:
        pr = event.payload.get("prId", "")
        return f"{event.plugin_id}:{event.delivery_id}:{event.event_key}:{pr}"
    return f"{event.source}:{uuid.uuid4().hex}"


def normal_ref(ref: ExternalRef) -> ExternalRef:
    """A reference with its repository key in lower case, as mappings are stored."""
    return ref.model_copy(update={"repo_key": ref.repo_key.lower()})


def merged_prs(items: Sequence[InboxItem]) -> list[tuple[str, datetime]]:
    """The pull requests the events say were merged, with when."""
    found = []
    for item in items:
        event = item.event
        if event.event_key != PR_MERGED:
            continue
        pr = event.payload.get("prId") or (event.ref.external_id if event.ref else None)
        if pr is None:
            continue
        when = event.received_at
        raw = event.payload.get("mergedAt")
        if isinstance(raw, str):
            with contextlib.suppress(ValueError):
                when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        found.append((str(pr), when))
    return found


def stamp_merged(job: Job, merges: Sequence[tuple[str, datetime]]) -> bool:
    """Set ``mergedAt`` on the job's mappings of merged pull requests; True if any changed."""
    changed = False
    for pr, when in merges:
        mapping = job.pr_mapping(pr)
        if mapping is not None and mapping.merged_at is None:
            mapping.merged_at = when
            changed = True
    return changed


def _describe(event: InboundEvent) -> str:
    payload = event.payload
    repo = payload.get("repo") or (event.ref.repo_key if event.ref else "")
    pr = payload.get("prId") or (event.ref.external_id if event.ref else None)
    where = f"{repo} PR #{pr}" if pr is not None else str(repo)
    parts = [f"{event.event_key} on {where}".strip()]
    for key in ("state", "conclusion", "action"):
        if payload.get(key) and str(payload[key]) not in event.event_key:
            parts.append(f"{key} {payload[key]}")
    if payload.get("author"):
        parts.append(f"by {payload['author']}")
    line = ", ".join(parts)
    body = payload.get("body")
    if isinstance(body, str) and body.strip():
        text = body.strip()
        if len(text) > _BODY_CHARS:
            text = text[:_BODY_CHARS] + " …(clipped)"
        line += "\n   " + "\n   ".join(text.splitlines())
    return line


def render_events(items: Sequence[InboxItem]) -> str:
    """The message that hands a batch of events to the model, oldest first."""
    lines = [
        f"[WEBHOOK EVENTS: {len(items)}] Things that happened on your pull requests since your "
        "last turn, oldest first:"
    ]
    lines += [f"{n}. {_describe(item.event)}" for n, item in enumerate(items, 1)]
    return "\n".join(lines)


class InboundRouter:
    """Routes inbox events to jobs (see the module docstring).

    Args:
        store: the state backend holding the inbox.
        runner: the job runner (which phase is running, and its steering channel).
        wake: queues a parked job again; called with the job and a reason.
        owner: who claims inbox items (the runner id).
    """

    def __init__(
        self,
        *,
        store: StateBackend,
        runner: JobRunner,
        wake: Callable[[Job, str], Awaitable[None]],
        owner: str,
    ) -> None:
        self._store = store
        self._runner = runner
        self._wake = wake
        self.owner = owner
        self._locks: dict[str, asyncio.Lock] = {}
        # Jobs that may have pending events. Every inbox write of this runner goes through
        # here, so a phase of any other job starts without touching the inbox.
        self._waiting: set[str] = set()

    async def job_for(self, event: InboundEvent) -> Job | None:
        """The job a pull-request event belongs to, if any."""
        if event.ref is None:
            return None
        job = await self._store.get_job_by_external_ref(normal_ref(event.ref))
        if job is None and event.ref.repo_key != event.ref.repo_key.lower():
            job = await self._store.get_job_by_external_ref(event.ref)
        return job

    async def submit(
        self,
        event: InboundEvent,
        *,
        dedupe_key: str | None = None,
        job_id: str | None = None,
        route: bool = True,
    ) -> InboxItem | None:
        """Store ``event`` durably, then route it. ``None``: a duplicate, dropped.

        ``job_id`` names the job when the caller knows it (the poller); otherwise the job is
        found from the event's pull request. With ``route=False`` the caller routes later
        (:meth:`route_soon`), so a webhook can be acknowledged as soon as it is stored.
        """
        job = await self._store.get_job(job_id) if job_id else await self.job_for(event)
        item = await self._store.enqueue(
            event, dedupe_key or dedupe_key_for(event), job_id=job.id if job else None
        )
        if item is None:
            log.info("dropped a replayed event %s (%s)", event.event_key, dedupe_key)
            return None
        if job is None:
            await self._store.ack([item.id])  # nobody waits on this pull request
            log.debug("event %s concerns no job", event.event_key)
            return item
        self._waiting.add(job.id)
        if route:
            await self.route(job.id)
        return item

    def route_soon(self, job_id: str) -> None:
        """Route a job's pending events in the background."""
        task = asyncio.ensure_future(self.route(job_id))
        task.add_done_callback(_report)

    async def route(self, job_id: str) -> None:
        """Deliver, wake or keep the job's pending events, as its state says."""
        lock = self._locks.setdefault(job_id, asyncio.Lock())
        async with lock:
            await self._route(job_id)

    async def _route(self, job_id: str) -> None:
        job = await self._store.get_job(job_id)
        items = await self._store.claim(self.owner, job_id=job_id, lease_seconds=LEASE_SECONDS)
        if not items:
            self._waiting.discard(job_id)
            return
        if job is None or job.status.is_terminal:
            await self._store.ack(item.id for item in items)
            self._waiting.discard(job_id)
            return
        steering = self._runner.steering(job_id)
        if steering is not None:
            self._waiting.discard(job_id)
            steering.push_events(render_events(items), [item.id for item in items])
            steering.merged_prs.extend(merged_prs(items))
            await self._log(job_id, f"[events] {len(items)} event(s) for the running phase")
            return
        if job.status.is_parked and any(
            awaited_matches(job.awaiting_event, item.event.event_key, item.event.payload,
                            awaiting_pr_id=job.awaiting_pr_id)
            for item in items
        ):  # fmt: skip
            await self._store.release(item.id for item in items)
            if stamp_merged(job, merged_prs(items)):
                await self._store.save_job(job, durable=True)
            keys = ", ".join(dict.fromkeys(item.event.event_key for item in items))
            await self._log(job_id, f"[events] woken from {job.awaiting_event} by {keys}")
            await self._wake(job, f"{job.awaiting_event} arrived")
            return
        await self._store.release(item.id for item in items)

    async def claim_for_phase(self, job_id: str) -> list[InboxItem]:
        """The job's pending events, claimed for the phase about to start."""
        if job_id not in self._waiting:
            return []
        limit = 100
        items = await self._store.claim(
            self.owner, job_id=job_id, limit=limit, lease_seconds=LEASE_SECONDS
        )
        if len(items) < limit:
            self._waiting.discard(job_id)
        return items

    async def release(self, job_id: str, item_ids: Sequence[int]) -> None:
        """Give claimed events back: they wait for the job's next phase."""
        await self._store.release(item_ids)
        self._waiting.add(job_id)

    async def sweep(self) -> None:
        """Route every job that has pending events (at start, and after a crash's leases)."""
        items = await self._store.claim(self.owner, limit=1000, lease_seconds=1.0)
        if not items:
            return
        await self._store.release(item.id for item in items)
        orphans = [item.id for item in items if item.job_id is None]
        if orphans:
            await self._store.ack(orphans)
        jobs = list(dict.fromkeys(item.job_id for item in items if item.job_id))
        self._waiting.update(jobs)
        for job_id in jobs:
            await self.route(job_id)

    async def _log(self, job_id: str, line: str) -> None:
        await self._store.append_event(job_id, EventKind.LOG, {"line": line})


def _report(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("routing inbound events failed", exc_info=task.exception())
