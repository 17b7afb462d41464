"""coro's persistence: the job model, the ``StateBackend`` protocol and its implementations.

Importing ``state`` is cheap and never imports the engine, the TUI, ``anthropic`` or ``mcp``.
"""

from __future__ import annotations

from state.backend import EventInput, StateBackend
from state.errors import (
    DuplicateJobError,
    JobNotFoundError,
    StaleJobError,
    StateCorruptError,
    StateError,
    StateVersionError,
)
from state.memory import InMemoryStateBackend
from state.models import (
    PAUSED_AWAITING_EVENT,
    Artifact,
    CampaignChild,
    CheckpointApproval,
    ConversationMessage,
    EventKind,
    ExternalRef,
    InboundEvent,
    InboxItem,
    Insight,
    Investigation,
    Job,
    JobEvent,
    JobStatus,
    JobType,
    PhaseModelOverride,
    PhaseUsage,
    PrMapping,
    Proposal,
    ProposalFile,
    RateLimitInfo,
    TokenUsage,
    WireModel,
    WorkflowPhaseInfo,
    WorkflowSwitch,
    WorkItem,
    WorkItemStatus,
    utcnow,
)
from state.sqlite import SqliteStateBackend

__all__ = [
    "PAUSED_AWAITING_EVENT",
    "Artifact",
    "CampaignChild",
    "CheckpointApproval",
    "ConversationMessage",
    "DuplicateJobError",
    "EventInput",
    "EventKind",
    "ExternalRef",
    "InMemoryStateBackend",
    "InboundEvent",
    "InboxItem",
    "Insight",
    "Investigation",
    "Job",
    "JobEvent",
    "JobNotFoundError",
    "JobStatus",
    "JobType",
    "PhaseModelOverride",
    "PhaseUsage",
    "PrMapping",
    "Proposal",
    "ProposalFile",
    "RateLimitInfo",
    "SqliteStateBackend",
    "StaleJobError",
    "StateBackend",
    "StateCorruptError",
    "StateError",
    "StateVersionError",
    "TokenUsage",
    "WireModel",
    "WorkItem",
    "WorkItemStatus",
    "WorkflowPhaseInfo",
    "WorkflowSwitch",
    "utcnow",
]
