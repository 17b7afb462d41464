"""Plain-text views of jobs and events for the CLI (no colour, no terminal tricks: they are
read by people and by ``grep`` alike)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "describe_event",
    "exit_code_for",
    "job_details",
    "jobs_table",
    "outcome_line",
    "stops_watching",
]

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

_FAILED = frozenset({"failed", "escalated", "cancelled"})
_TERMINAL = frozenset({"complete", "failed", "cancelled"})


def exit_code_for(status: str) -> int:
    """0 unless the job failed, escalated or was cancelled (then 1)."""
    return EXIT_JOB_FAILED if status in _FAILED else EXIT_OK


def stops_watching(status: str) -> bool:
    """Whether ``coro job`` stops streaming: the job parked, escalated or ended."""
    return status in _TERMINAL or status == "escalated" or status.startswith("awaiting-")


def _ago(stamp: object, now: datetime) -> str:
    if not isinstance(stamp, str):
        return ""
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = max(0, int((now - when).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _cost(job: dict[str, Any]) -> str:
    usage = job.get("tokenUsage") or {}
    cost = usage.get("totalCostUsd") if isinstance(usage, dict) else None
    return f"${cost:.2f}" if isinstance(cost, int | float) else ""


def jobs_table(jobs: Sequence[dict[str, Any]], *, now: datetime | None = None) -> str:
    """A fixed-width table: id, status, phase, workflow, last update, cost."""
    now = now or datetime.now(UTC)
    header = ("ID", "STATUS", "PHASE", "WORKFLOW", "UPDATED", "COST")
    rows = [
        (
            str(job.get("id", "")),
            str(job.get("status", "")),
            str(job.get("phase") or "-"),
            str(job.get("workflowPath", "")),
            _ago(job.get("updatedAt"), now),
            _cost(job),
        )
        for job in jobs
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]  # fmt: skip
    return "\n".join(lines)


def outcome_line(job: dict[str, Any]) -> str:
    """What the job's status means for the developer, in one line."""
    status = str(job.get("status", ""))
    job_id = job.get("id", "")
    if status == "complete":
        return f"job {job_id} is complete"
    if status == "escalated":
        return f"job {job_id} escalated: {job.get('escalationMessage') or 'no reason given'}"
    if status in ("failed", "cancelled"):
        return f"job {job_id} {status}"
    if status.startswith("awaiting-"):
        waiting = job.get("awaitingEvent") or status
        hint = ""
        if status == "awaiting-plan-approval" or "approval after" in str(waiting):
            hint = f"; approve with `coro approve {job_id}` (or steer with `coro message`)"
        elif status == "awaiting-developer-input":
            hint = f"; answer with `coro message {job_id} TEXT`"
        return f"job {job_id} is parked ({status}: {waiting}){hint}"
    return f"job {job_id} is {status}" + (f" (phase {job['phase']})" if job.get("phase") else "")


def job_details(job: dict[str, Any]) -> str:
    """``coro status``: the job's state in a few labelled lines."""
    rows: list[tuple[str, object]] = [
        ("job", job.get("id")),
        ("status", job.get("status")),
        ("phase", job.get("phase") or "-"),
        ("workflow", job.get("workflowPath")),
    ]
    params = job.get("params") or {}
    rows += [(k, params[k]) for k in ("repo", "serviceName", "description") if params.get(k)]
    if job.get("awaitingEvent"):
        rows.append(("awaiting", job["awaitingEvent"]))
    if job.get("escalationMessage"):
        rows.append(("escalated", job["escalationMessage"]))
    items = job.get("workItems") or []
    if items:
        done = sum(1 for item in items if item.get("status") == "complete")
        rows.append(("work items", f"{done}/{len(items)} complete"))
    for pr in job.get("prMappings") or []:
        state = "merged" if pr.get("mergedAt") else "open"
        rows.append(("pr", f"{pr.get('url') or pr.get('prId')} ({state})"))
    usage = job.get("tokenUsage") or {}
    if usage.get("inputTokens") or usage.get("outputTokens"):
        tokens = f"{usage.get('inputTokens', 0):,} in, {usage.get('outputTokens', 0):,} out"
        rows.append(("usage", f"{tokens}, {_cost(job)}"))
    rows.append(("updated", job.get("updatedAt")))
    return "\n".join(f"{label:<12}{value}" for label, value in rows)


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_event(event: dict[str, Any], *, verbose: bool = False) -> str | None:
    """One event as a line for ``coro job`` (``None``: not shown)."""
    kind = event.get("kind")
    data = event.get("data") or {}
    if kind == "log":
        return str(data.get("line", ""))
    if kind == "status":
        reason = f" ({data['reason']})" if data.get("reason") else ""
        return f"── status {data.get('from')} → {data.get('to')}{reason}"
    if kind == "phase":
        return f"── phase {data.get('from') or '-'} → {data.get('to')}"
    if kind == "job_created":
        return "── job created"
    if kind == "assistant" and data.get("text"):
        return f"assistant: {_short(data['text'], 300)}"
    if kind == "tool_call":
        return f"→ {data.get('name')} {_short(data.get('input', {}))}"
    if kind == "tool_result" and (verbose or data.get("isError")):
        mark = "error" if data.get("isError") else "ok"
        return f"← {data.get('name')} {mark}: {_short(data.get('summary', ''))}"
    if kind == "message_accepted":
        return f"── message {data.get('mode')}: {_short(data.get('text', ''))}"
    if kind == "recovered":
        return f"── recovered in phase {data.get('phase')}"
    if verbose:
        return f"[{kind}] {_short(data)}"
    return None
