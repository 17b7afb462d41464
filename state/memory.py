"""An in-memory ``StateBackend`` for tests and throwaway runs; same contract, no durability."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from state._broker import EventBroker
from state._common import BackendBase, apply_patch, status_filter
from state.backend import EventInput, StalePullRequestError
from state.errors import DuplicateJobError, JobNotFoundError, StaleJobError, StateError
from state.models import (
    EventKind,
    ExternalRef,
    InboundEvent,
    InboxItem,
    Investigation,
    Job,
    JobEvent,
    LocalPullRequest,
    Proposal,
    utcnow,
)

__all__ = ["InMemoryStateBackend"]


class InMemoryStateBackend(BackendBase):
    """Keeps everything in dicts. Objects handed out are copies, as with a real store."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._events: dict[str, list[JobEvent]] = defaultdict(list)
        self._all_events: list[JobEvent] = []
        self._global_seq = 0
        self._refs: dict[tuple[str, str, str, str], tuple[ExternalRef, str]] = {}
        self._prs: dict[str, str] = {}
        self._tickets: dict[str, str] = {}
        self._repos: dict[str, str] = {}
        self._proposals: dict[tuple[str, str], Proposal] = {}
        self._investigations: dict[str, Investigation] = {}
        self._inbox: dict[int, InboxItem] = {}
        self._inbox_keys: set[str] = set()
        self._inbox_leases: dict[int, float] = {}
        self._inbox_ids = itertools.count(1)
        self._local_prs: dict[tuple[str, int], LocalPullRequest] = {}
        self._open = False
        self._broker = EventBroker(self._read_backlog)

    @property
    def _is_open(self) -> bool:
        return self._open

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False
        self._broker.close_all()

    async def flush(self) -> None:
        return None

    async def __aenter__(self) -> InMemoryStateBackend:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- jobs ---------------------------------------------------------------------------------
    def _require(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFoundError(job_id) from None

    async def create_job(self, job: Job) -> Job:
        if job.id in self._jobs:
            raise DuplicateJobError(job.id)
        job.version = 1
        self._jobs[job.id] = job.model_copy(deep=True)
        return job

    async def get_job(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return job.model_copy(deep=True) if job is not None else None

    async def save_job(self, job: Job, *, durable: bool = False, ack: Iterable[int] = ()) -> Job:
        current = self._jobs.get(job.id)
        if current is None or current.version != job.version:
            raise StaleJobError(job.id, job.version, current.version if current else None)
        job.version += 1
        job.updated_at = utcnow()
        self._jobs[job.id] = job.model_copy(deep=True)
        await self.ack(ack)
        return job

    async def update_job(self, job_id: str, patch: Mapping[str, Any]) -> Job:
        job = apply_patch(self._require(job_id), patch)
        return await self.save_job(job)

    async def list_jobs(
        self,
        *,
        status: str | Iterable[str] | None = None,
        type: str | None = None,
        workflow_path: str | None = None,
        parent_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Job]:
        wanted = status_filter(status)
        jobs = [
            j
            for j in self._jobs.values()
            if (wanted is None or j.status.value in wanted)
            and (type is None or j.type == type)
            and (workflow_path is None or j.workflow_path == workflow_path)
            and (parent_id is None or j.campaign_parent_id == parent_id)
        ]
        jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        end = None if limit is None else offset + limit
        return [j.model_copy(deep=True) for j in jobs[offset:end]]

    async def count_jobs(self, *, status: str | Iterable[str] | None = None) -> int:
        return len(await self.list_jobs(status=status))

    async def delete_job(self, job_id: str) -> bool:
        if self._jobs.pop(job_id, None) is None:
            return False
        self._events.pop(job_id, None)
        self._all_events = [e for e in self._all_events if e.job_id != job_id]
        for table in (self._prs, self._tickets, self._repos):
            for key in [k for k, v in table.items() if v == job_id]:
                del table[key]
        for ref_key in [k for k, (_, j) in self._refs.items() if j == job_id]:
            del self._refs[ref_key]
        return True

    # -- event log ----------------------------------------------------------------------------
    async def append_events(self, job_id: str, events: Sequence[EventInput]) -> list[int]:
        if not self._open:
            raise StateError("the state backend is closed")
        self._require(job_id)
        log = self._events[job_id]
        now = datetime.now(UTC)
        fresh = []
        for kind, data in events:
            self._global_seq += 1
            event = JobEvent(
                job_id=job_id,
                seq=len(log) + 1,
                global_seq=self._global_seq,
                ts=now,
                kind=str(kind),
                data=dict(data),
            )
            log.append(event)
            fresh.append(event)
        self._all_events.extend(fresh)
        self._broker.publish(fresh)
        return [e.seq for e in fresh]

    async def read_events(
        self, job_id: str, *, after_seq: int = 0, limit: int = 1000, kinds: Iterable[str] = ()
    ) -> list[JobEvent]:
        wanted = set(kinds)
        log = self._events.get(job_id, [])
        picked = [e for e in log[after_seq:] if not wanted or e.kind in wanted]
        return picked[:limit]

    async def read_last_events(self, job_id: str, limit: int = 1000) -> list[JobEvent]:
        return list(self._events.get(job_id, [])[-limit:]) if limit > 0 else []

    async def read_all_events(
        self, *, after_global_seq: int = 0, limit: int = 1000
    ) -> list[JobEvent]:
        return [e for e in self._all_events if e.global_seq > after_global_seq][:limit]

    async def last_seq(self, job_id: str) -> int:
        return len(self._events.get(job_id, []))

    async def last_global_seq(self) -> int:
        return self._global_seq

    # -- logs ---------------------------------------------------------------------------------
    async def get_log(self, job_id: str, start: int = 0, end: int | None = None) -> list[str]:
        lines = [e.data["line"] for e in self._events.get(job_id, []) if e.kind == EventKind.LOG]
        return lines[start:end]

    async def log_length(self, job_id: str) -> int:
        return sum(1 for e in self._events.get(job_id, []) if e.kind == EventKind.LOG)

    # -- mappings -----------------------------------------------------------------------------
    async def map_external_ref(self, ref: ExternalRef, job_id: str) -> None:
        self._require(job_id)
        self._refs[ref.key] = (ref.model_copy(), job_id)

    async def get_job_by_external_ref(self, ref: ExternalRef) -> Job | None:
        hit = self._refs.get(ref.key)
        return await self.get_job(hit[1]) if hit else None

    async def list_external_refs(self, job_id: str) -> list[ExternalRef]:
        return [r.model_copy() for r, j in self._refs.values() if j == job_id]

    async def map_pr_to_job(self, pr_id: int | str, job_id: str) -> None:
        self._require(job_id)
        self._prs[str(pr_id)] = job_id

    async def get_job_by_pr(self, pr_id: int | str) -> Job | None:
        job_id = self._prs.get(str(pr_id))
        return await self.get_job(job_id) if job_id else None

    async def map_jira_ticket_to_job(self, ticket_id: str, job_id: str) -> None:
        self._require(job_id)
        self._tickets[ticket_id] = job_id

    async def get_job_by_jira_ticket(self, ticket_id: str) -> Job | None:
        job_id = self._tickets.get(ticket_id)
        return await self.get_job(job_id) if job_id else None

    async def map_repo_to_job(self, repo_slug: str, job_id: str) -> None:
        self._require(job_id)
        self._repos[repo_slug] = job_id

    async def get_job_by_repo(self, repo_slug: str) -> Job | None:
        job_id = self._repos.get(repo_slug)
        return await self.get_job(job_id) if job_id else None

    # -- proposals ----------------------------------------------------------------------------
    async def create_proposal(self, proposal: Proposal) -> Proposal:
        key = (proposal.tenant_id, proposal.id)
        if key in self._proposals:
            raise StateError(f"a proposal with id {proposal.id!r} already exists")
        self._proposals[key] = proposal.model_copy(deep=True)
        return proposal

    async def list_proposals(self, tenant_id: str, status: str | None = None) -> list[Proposal]:
        found = [
            p.model_copy(deep=True)
            for (tenant, _), p in self._proposals.items()
            if tenant == tenant_id and (status is None or p.status == status)
        ]
        return sorted(found, key=lambda p: p.created_at, reverse=True)

    async def get_proposal(self, tenant_id: str, proposal_id: str) -> Proposal | None:
        p = self._proposals.get((tenant_id, proposal_id))
        return p.model_copy(deep=True) if p else None

    async def update_proposal(
        self, tenant_id: str, proposal_id: str, updates: Mapping[str, Any]
    ) -> Proposal:
        current = self._proposals.get((tenant_id, proposal_id))
        if current is None:
            raise StateError(f"no proposal {proposal_id!r} for tenant {tenant_id!r}")
        updated = apply_patch(current, updates, read_only={"id", "tenant_id", "created_at"})
        self._proposals[(tenant_id, proposal_id)] = updated
        return updated.model_copy(deep=True)

    # -- investigations -----------------------------------------------------------------------
    async def upsert_investigation(self, investigation: Investigation) -> Investigation:
        investigation.updated_at = utcnow()
        self._investigations[investigation.id] = investigation.model_copy(deep=True)
        return investigation

    async def get_investigation(self, investigation_id: str) -> Investigation | None:
        inv = self._investigations.get(investigation_id)
        return inv.model_copy(deep=True) if inv else None

    async def list_investigations(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[Investigation]:
        found = [
            i.model_copy(deep=True)
            for i in self._investigations.values()
            if status is None or i.status == status
        ]
        return sorted(found, key=lambda i: i.updated_at, reverse=True)[:limit]

    async def delete_investigation(self, investigation_id: str) -> bool:
        return self._investigations.pop(investigation_id, None) is not None

    # -- inbox --------------------------------------------------------------------------------
    async def enqueue(
        self, event: InboundEvent, dedupe_key: str, *, job_id: str | None = None
    ) -> InboxItem | None:
        if dedupe_key in self._inbox_keys:
            return None
        self._inbox_keys.add(dedupe_key)
        item = InboxItem(
            id=next(self._inbox_ids), dedupe_key=dedupe_key, job_id=job_id, event=event
        )
        self._inbox[item.id] = item
        return item.model_copy(deep=True)

    async def claim(
        self,
        owner: str,
        *,
        job_id: str | None = None,
        limit: int = 100,
        lease_seconds: float = 300.0,
    ) -> list[InboxItem]:
        now = time.monotonic()
        taken: list[InboxItem] = []
        for item in sorted(self._inbox.values(), key=lambda i: i.id):
            if len(taken) >= limit:
                break
            if job_id is not None and item.job_id != job_id:
                continue
            expired = item.state == "claimed" and self._inbox_leases.get(item.id, 0) <= now
            if item.state == "pending" or expired:
                item.state = "claimed"
                item.claimed_by = owner
                item.attempts += 1
                self._inbox_leases[item.id] = now + lease_seconds
                taken.append(item.model_copy(deep=True))
        return taken

    async def ack(self, item_ids: Iterable[int]) -> None:
        for item_id in item_ids:
            item = self._inbox.get(item_id)
            if item is not None:
                item.state = "done"
                self._inbox_leases.pop(item_id, None)

    async def release(self, item_ids: Iterable[int]) -> None:
        for item_id in item_ids:
            item = self._inbox.get(item_id)
            if item is not None and item.state == "claimed":
                item.state = "pending"
                item.claimed_by = None
                self._inbox_leases.pop(item_id, None)

    async def pending_inbox(self, job_id: str | None = None) -> int:
        return sum(
            1
            for i in self._inbox.values()
            if i.state != "done" and (job_id is None or i.job_id == job_id)
        )

    # -- local pull requests ------------------------------------------------------------------
    async def create_local_pr(self, pr: LocalPullRequest) -> LocalPullRequest:
        pr.id = 1 + max((i for repo, i in self._local_prs if repo == pr.repo), default=0)
        pr.version = 1
        pr.updated_at = utcnow()
        self._local_prs[(pr.repo, pr.id)] = pr.model_copy(deep=True)
        return pr

    async def get_local_pr(self, repo: str, pr_id: int) -> LocalPullRequest | None:
        pr = self._local_prs.get((repo, pr_id))
        return pr.model_copy(deep=True) if pr else None

    async def save_local_pr(self, pr: LocalPullRequest) -> LocalPullRequest:
        stored = self._local_prs.get((pr.repo, pr.id))
        if stored is None or stored.version != pr.version:
            actual = stored.version if stored else None
            raise StalePullRequestError(pr.repo, pr.id, pr.version, actual)
        pr.version += 1
        pr.updated_at = utcnow()
        self._local_prs[(pr.repo, pr.id)] = pr.model_copy(deep=True)
        return pr

    async def list_local_prs(
        self, *, repo: str | None = None, state: str | None = None
    ) -> list[LocalPullRequest]:
        found = [
            pr.model_copy(deep=True)
            for pr in self._local_prs.values()
            if (repo is None or pr.repo == repo) and (state is None or pr.state == state)
        ]
        return sorted(found, key=lambda pr: (pr.created_at, pr.id), reverse=True)
