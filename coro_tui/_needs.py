"""Whether a job needs the developer, and why: the Runs screen's marker and the notifications.

Imports nothing from ``engine`` or ``state`` at run time, so screens painted before the engine
loads can use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from state import Job

__all__ = ["CHECKPOINT_AWAITING", "PAUSED_AWAITING", "needs_developer"]

#: ``awaiting_event`` of a job parked at an interactive checkpoint (``engine.runner``'s
#: ``CHECKPOINT_PREFIX``, repeated so this module stays free of the engine; a test keeps them
#: equal). The phase name follows it.
CHECKPOINT_AWAITING = "developer-input: approval after "
#: ``awaiting_event`` of a job the developer paused themselves.
PAUSED_AWAITING = "developer-input: paused by developer"


def needs_developer(job: Job) -> str | None:
    """Why ``job`` waits for the developer (one short line), or ``None`` when it does not."""
    status = str(job.status.value)
    awaiting = job.awaiting_event or ""
    if awaiting.startswith("checkpoint:"):
        return awaiting
    if status == "awaiting-developer-input":
        if awaiting.startswith(CHECKPOINT_AWAITING):
            return f"checkpoint: approve to continue after {awaiting[len(CHECKPOINT_AWAITING) :]}"
        if awaiting == PAUSED_AWAITING:
            return "paused: resume when ready"
        detail = awaiting.removeprefix("developer-input:").strip()
        return f"waiting for you: {detail}" if detail else "waiting for your input"
    if status == "awaiting-plan-approval":
        return "the plan awaits your approval"
    if status in ("escalated", "failed"):
        message = (job.escalation_message or "").strip().splitlines()
        return f"{status}: {message[0]}" if message else status
    return None
