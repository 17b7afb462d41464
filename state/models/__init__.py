"""The pydantic models that are the single source of truth for jobs and their companions."""

from __future__ import annotations

from state.models._base import WireModel, utcnow
from state.models.events import EventKind, InboundEvent, InboxItem, JobEvent
from state.models.job import (
    Artifact,
    CampaignChild,
    CheckpointApproval,
    ConversationMessage,
    Insight,
    Job,
    JobInput,
    PhaseModelOverride,
    PhaseUsage,
    PrMapping,
    RateLimitInfo,
    TokenUsage,
    WorkflowPhaseInfo,
    WorkflowSwitch,
    WorkItem,
    WorkItemStatus,
)
from state.models.records import ExternalRef, Investigation, Proposal, ProposalFile
from state.models.scm import LocalPrApproval, LocalPrComment, LocalPullRequest
from state.models.status import PAUSED_AWAITING_EVENT, JobStatus, JobType

__all__ = [
    "PAUSED_AWAITING_EVENT",
    "Artifact",
    "CampaignChild",
    "CheckpointApproval",
    "ConversationMessage",
    "EventKind",
    "ExternalRef",
    "InboundEvent",
    "InboxItem",
    "Insight",
    "Investigation",
    "Job",
    "JobEvent",
    "JobInput",
    "JobStatus",
    "JobType",
    "LocalPrApproval",
    "LocalPrComment",
    "LocalPullRequest",
    "PhaseModelOverride",
    "PhaseUsage",
    "PrMapping",
    "Proposal",
    "ProposalFile",
    "RateLimitInfo",
    "TokenUsage",
    "WireModel",
    "WorkItem",
    "WorkItemStatus",
    "WorkflowPhaseInfo",
    "WorkflowSwitch",
    "utcnow",
]
