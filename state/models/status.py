"""Job statuses and job types, with the predicates the engine and the clients decide on."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

__all__ = ["PAUSED_AWAITING_EVENT", "JobStatus", "JobType"]

#: The ``awaitingEvent`` a job carries while it is paused by the developer.
PAUSED_AWAITING_EVENT = "developer-input: paused by developer"

_SLUG = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")


class _OpenEnum(StrEnum):
    """A string enum that also accepts well-formed values it does not list.

    Workflows declare their own phase statuses (``status:`` defaults to the phase name), so a
    tenant's workflow may put a job in ``security-audit``. Such a value becomes a member on first
    use, compares equal to its string and serialises as itself; a malformed value is refused.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str) and _SLUG.fullmatch(value):
            member = str.__new__(cls, value)
            member._name_ = value.upper().replace("-", "_")
            member._value_ = value
            return cls._value2member_map_.setdefault(value, member)
        return None


class JobStatus(_OpenEnum):
    """Where a job is. Phase statuses come from workflows; the rest belong to the runner."""

    QUEUED = "queued"
    COMPLETE = "complete"
    CANCELLED = "cancelled"
    ESCALATED = "escalated"
    FAILED = "failed"
    AWAITING_PLAN_APPROVAL = "awaiting-plan-approval"
    AWAITING_PR_MERGE = "awaiting-pr-merge"
    AWAITING_DEVELOPER_INPUT = "awaiting-developer-input"
    AWAITING_CHILDREN = "awaiting-children"
    AWAITING_RATE_LIMIT = "awaiting-rate-limit"
    # Phase statuses declared by the bundled workflows.
    SPEC_WRITING = "spec-writing"
    PLANNING = "planning"
    ANALYZING = "analyzing"
    CODING = "coding"
    REVIEWING = "reviewing"
    QA = "qa"
    EVALUATING = "evaluating"
    CAMPAIGN_PLANNING = "campaign-planning"
    AGGREGATING = "aggregating"
    CURATING = "curating"
    SHIPPING = "shipping"

    @property
    def is_terminal(self) -> bool:
        """The job is over for good: nothing will run it again."""
        return self in _TERMINAL

    @property
    def is_parked(self) -> bool:
        """The job is waiting for something outside (an event, a developer, a clock)."""
        return self.value.startswith("awaiting-")

    @property
    def is_stopped(self) -> bool:
        """No phase is running and none will start by itself (terminal or escalated)."""
        return self.is_terminal or self is JobStatus.ESCALATED

    @property
    def is_resumable(self) -> bool:
        """A developer (or an event) may start the job again: parked, escalated or failed."""
        return self.is_parked or self in (JobStatus.ESCALATED, JobStatus.FAILED)

    @property
    def is_cancellable(self) -> bool:
        """Anything that is not over yet can be cancelled."""
        return not self.is_terminal

    @property
    def is_running(self) -> bool:
        """A phase is (or should be) executing: neither queued, parked nor stopped."""
        return not (self.is_parked or self.is_stopped or self is JobStatus.QUEUED)


_TERMINAL = frozenset({JobStatus.COMPLETE, JobStatus.CANCELLED, JobStatus.FAILED})


class JobType(_OpenEnum):
    """What kind of job a record is; decides defaults such as the workflow."""

    JOB = "job"
    SELF_UPDATE = "self-update"
    RETROSPECTIVE = "retrospective"
    CAMPAIGN = "campaign"
