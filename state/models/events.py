"""The job event log entry, and events arriving from outside (webhooks, polls, developers)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field

from state.models._base import WireModel, utcnow
from state.models.records import ExternalRef

__all__ = ["EventKind", "InboundEvent", "InboxItem", "JobEvent"]


class EventKind(StrEnum):
    """The kinds of event the engine writes. The log is open: plugins may add their own."""

    JOB_CREATED = "job_created"
    STATUS = "status"  # {from, to, reason?}
    PHASE = "phase"  # {from, to}
    LOG = "log"  # {line}
    TOOL_CALL = "tool_call"  # {id, name, input}
    TOOL_RESULT = "tool_result"  # {id, name, isError, summary}
    USAGE = "usage"  # a PhaseUsage
    ARTIFACT = "artifact"  # an Artifact
    INSIGHT = "insight"
    MESSAGE_ACCEPTED = "message_accepted"  # {messageId, mode, text}
    MESSAGE_DELIVERED = "message_delivered"  # {messageId, turn}
    MESSAGE_DROPPED = "message_dropped"  # {messageId, reason}
    INBOUND = "inbound"  # an external event reached the job
    RECOVERED = "recovered"  # resumed after a crash
    ERROR = "error"


class JobEvent(WireModel):
    """One entry of a job's append-only event log.

    ``seq`` counts from 1 within a job with no gaps; ``global_seq`` orders events across every
    job (for the all-jobs feed) and only ever grows.
    """

    model_config = ConfigDict(frozen=True)

    job_id: str
    seq: int
    global_seq: int
    ts: datetime
    kind: str
    data: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_store(
        cls, job_id: str, seq: int, global_seq: int, ts: datetime, kind: str, data: dict[str, Any]
    ) -> JobEvent:
        """An event from a store's own checked values: what ``model_construct`` builds.

        A store builds one per event it commits to subscribers and per row it reads;
        ``model_construct`` (its per-field alias lookups) took a third of a live SSE stream's
        time, this a third of that.
        """
        event = cls.__new__(cls)
        _set(event, "__dict__", {
            "job_id": job_id, "seq": seq, "global_seq": global_seq, "ts": ts, "kind": kind,
            "data": data,
        })  # fmt: skip
        _set(event, "__pydantic_fields_set__", set(_EVENT_FIELDS))
        _set(event, "__pydantic_extra__", {})
        _set(event, "__pydantic_private__", None)
        return event


_set = object.__setattr__
_EVENT_FIELDS = frozenset(JobEvent.model_fields)


class InboundEvent(WireModel):
    """Something that happened outside coro and may concern a job.

    ``event_key`` is the provider's name for it (``pullrequest:fulfilled``,
    ``pull_request:closed``); plugins normalise raw webhooks into this shape.
    """

    source: Literal["plugin", "cloud", "poll", "developer"] = "plugin"
    event_key: str
    payload: dict[str, Any] = Field(default_factory=dict)
    received_at: datetime = Field(default_factory=utcnow)
    plugin_id: str | None = None
    ref: ExternalRef | None = None
    delivery_id: str | None = None


class InboxItem(WireModel):
    """An inbound event held in the durable inbox until something has acted on it."""

    id: int
    dedupe_key: str
    job_id: str | None = None
    event: InboundEvent
    state: Literal["pending", "claimed", "done"] = "pending"
    attempts: int = 0
    claimed_by: str | None = None
