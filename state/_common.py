"""Logic both backends share: patching jobs, PR mappings, and checking arguments."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from state._broker import EventBroker
from state.backend import EventInput
from state.errors import JobNotFoundError
from state.models import EventKind, Job, JobEvent, PrMapping, utcnow

__all__ = ["BackendBase", "apply_patch", "set_merged", "status_filter", "upsert_pr_mapping"]

M = TypeVar("M", bound=BaseModel)

_JOB_READ_ONLY = frozenset({"id", "version", "created_at"})


def apply_patch(
    model: M, patch: Mapping[str, Any], *, read_only: Collection[str] = _JOB_READ_ONLY
) -> M:
    """A validated copy of ``model`` with the patch's fields replaced.

    Keys may be Python names (``awaiting_event``) or wire names (``awaitingEvent``); an unknown
    key or one in ``read_only`` raises ``KeyError`` naming it. ``updated_at`` is stamped now.
    """
    fields = type(model).model_fields
    by_alias = {(f.alias or name): name for name, f in fields.items()}
    data = model.model_dump(mode="python", by_alias=False)
    for key, value in patch.items():
        name = key if key in fields else by_alias.get(key)
        if name is None:
            raise KeyError(f"unknown field {key!r}")
        if name in read_only:
            raise KeyError(f"field {key!r} cannot be changed")
        data[name] = value
    if "updated_at" in fields:
        data["updated_at"] = utcnow()
    return type(model).model_validate(data, by_name=True)


def upsert_pr_mapping(job: Job, mapping: PrMapping) -> None:
    """Add the mapping, replacing an existing one for the same PR id."""
    key = str(mapping.pr_id)
    job.pr_mappings = [m for m in job.pr_mappings if str(m.pr_id) != key] + [mapping]
    job.updated_at = utcnow()


def set_merged(job: Job, pr_id: int | str, merged_at: datetime) -> bool:
    """Stamp ``merged_at`` on the job's mapping for the PR; False if the job has no such PR."""
    mapping = job.pr_mapping(pr_id)
    if mapping is None:
        return False
    mapping.merged_at = merged_at
    job.updated_at = utcnow()
    return True


def status_filter(status: str | Iterable[str] | None) -> set[str] | None:
    if status is None:
        return None
    if isinstance(status, str):
        return {status}
    return {str(s) for s in status}


class BackendBase:
    """What both backends implement the same way, on top of their own primitives."""

    _broker: EventBroker

    @property
    def _is_open(self) -> bool:
        raise NotImplementedError

    async def get_job(self, job_id: str) -> Job | None:
        raise NotImplementedError

    async def save_job(self, job: Job, *, durable: bool = False, ack: Iterable[int] = ()) -> Job:
        raise NotImplementedError

    async def list_jobs(
        self, *, type: str | None = None, parent_id: str | None = None
    ) -> list[Job]:
        raise NotImplementedError

    async def append_events(self, job_id: str, events: Sequence[EventInput]) -> list[int]:
        raise NotImplementedError

    async def read_events(
        self, job_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[JobEvent]:
        raise NotImplementedError

    async def read_all_events(
        self, *, after_global_seq: int = 0, limit: int = 1000
    ) -> list[JobEvent]:
        raise NotImplementedError

    async def list_jobs_by_type(self, type: str) -> list[Job]:
        return await self.list_jobs(type=type)

    async def list_child_jobs(self, parent_job_id: str) -> list[Job]:
        return await self.list_jobs(parent_id=parent_job_id)

    async def append_event(self, job_id: str, kind: str, data: Mapping[str, Any]) -> int:
        return (await self.append_events(job_id, [(kind, data)]))[0]

    async def append_log(self, job_id: str, line: str) -> int:
        return (await self.append_logs(job_id, [line]))[0]

    async def append_logs(self, job_id: str, lines: Sequence[str]) -> list[int]:
        return await self.append_events(job_id, [(EventKind.LOG, {"line": s}) for s in lines])

    async def _read_backlog(self, job_id: str | None, after: int, limit: int) -> list[JobEvent]:
        if job_id is None:
            return await self.read_all_events(after_global_seq=after, limit=limit)
        return await self.read_events(job_id, after_seq=after, limit=limit)

    def subscribe(
        self, job_id: str | None = None, *, after: int = 0
    ) -> AsyncIterator[list[JobEvent]]:
        return self._broker.subscribe(job_id, after, is_open=lambda: self._is_open)

    async def _fresh(self, job_id: str) -> Job:
        job = await self.get_job(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    async def add_pr_mapping(self, job_id: str, mapping: PrMapping) -> Job:
        job = await self._fresh(job_id)
        upsert_pr_mapping(job, mapping)
        return await self.save_job(job, durable=True)

    async def mark_pr_merged(self, job_id: str, pr_id: int | str, merged_at: datetime) -> Job:
        job = await self._fresh(job_id)
        if set_merged(job, pr_id, merged_at):
            await self.save_job(job, durable=True)
        return job
