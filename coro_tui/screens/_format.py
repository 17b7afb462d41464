"""Short text for job fields as the runs and job screens show them (plain, no markup)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from coro_tui._needs import needs_developer

if TYPE_CHECKING:
    from state import Job

__all__ = [
    "age",
    "cost",
    "ellipsis",
    "needs_developer",
    "repo",
    "tokens",
    "work_items_done",
    "workflow_name",
]


def workflow_name(path: str) -> str:
    """``workflows/job-fast/workflow.md`` → ``job-fast``; anything else: the file's stem."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[-1] == "workflow.md":
        return parts[-2]
    return parts[-1].removesuffix(".md") if parts else path


def repo(job: Job) -> str:
    value = job.params.get("repo") or job.params.get("serviceName") or ""
    return str(value)


def tokens(count: int) -> str:
    """``950``, ``12.3k``, ``4.1M``."""
    if count < 1000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1000:.1f}k"
    return f"{count / 1_000_000:.1f}M"


def cost(usd: float) -> str:
    return f"${usd:.2f}"


def age(when: datetime, now: datetime) -> str:
    """Whole units since ``when``: ``42s``, ``5m``, ``3h``, ``2d``."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = max(0, int((now - when).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def work_items_done(job: Job) -> str:
    """``done/total`` (closed items count as done), or ``-`` when the job has none yet."""
    if not job.work_items:
        return "-"
    closed = sum(1 for item in job.work_items if item.status.is_closed)
    return f"{closed}/{len(job.work_items)}"


def ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
