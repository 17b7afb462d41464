"""Logic both backends share: patching jobs, PR mappings, and checking arguments."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from state.models import Job, PrMapping, utcnow

__all__ = ["apply_patch", "set_merged", "status_filter", "upsert_pr_mapping"]

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
