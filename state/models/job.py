"""The job record and everything it carries: work items, PRs, artefacts, insights, usage."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, PrivateAttr

from state.models._base import WireModel, utcnow
from state.models.status import JobStatus, JobType

__all__ = [
    "Artifact",
    "CampaignChild",
    "CheckpointApproval",
    "ConversationMessage",
    "Insight",
    "Job",
    "JobInput",
    "PhaseModelOverride",
    "PhaseUsage",
    "PrMapping",
    "RateLimitInfo",
    "TokenUsage",
    "WorkItem",
    "WorkItemStatus",
    "WorkflowPhaseInfo",
    "WorkflowSwitch",
]


class WorkItemStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in-progress"
    COMPLETE = "complete"
    ESCALATED = "escalated"

    @property
    def is_closed(self) -> bool:
        """Closed items no longer block completion."""
        return self in (WorkItemStatus.COMPLETE, WorkItemStatus.ESCALATED)


class WorkItem(WireModel):
    """One unit of work the planner declared; the coder and reviewer move it along."""

    name: str
    status: WorkItemStatus = WorkItemStatus.PENDING
    loop_count: int = 0


class PrMapping(WireModel):
    """A pull request this job opened, and whether it has been merged."""

    pr_id: int | str
    work_item: str | None = None
    repo_slug: str | None = None
    plugin_id: str | None = None
    url: str | None = None
    opened_at: datetime = Field(default_factory=utcnow)
    merged_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.merged_at is None


class Artifact(WireModel):
    """Something a phase produced for people to read: a plan, a PR link, test results."""

    id: str
    phase: str | None = None
    kind: str
    title: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    edited_at: datetime | None = None
    edited_by: str | None = None


class Insight(WireModel):
    """A learning an agent recorded, curated by the developer before the evaluator ships it."""

    id: str | None = None
    phase: str | None = None
    category: str
    summary: str
    detail: str
    suggestion: str | None = None
    source_child_name: str | None = None
    status: Literal["pending", "approved", "rejected"] = "pending"
    suggested_layer: Literal["tenant", "repo"] | None = None
    user_layer: Literal["tenant", "repo"] | None = None
    edited_summary: str | None = None
    edited_detail: str | None = None
    edited_suggestion: str | None = None
    edited_by: str | None = None
    edited_at: datetime | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None


class TokenUsage(WireModel):
    """Tokens and cost, summed over every model call counted in it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    total_cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_input_tokens
            + self.cache_creation_input_tokens
        )

    def add(self, other: TokenUsage | PhaseUsage) -> None:
        """Add another usage record's tokens and cost into this one."""
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_input_tokens += other.cache_read_input_tokens
        self.cache_creation_input_tokens += other.cache_creation_input_tokens
        cost = other.total_cost_usd if isinstance(other, TokenUsage) else other.cost_usd
        self.total_cost_usd += cost


class PhaseUsage(WireModel):
    """What one run of one phase cost."""

    phase: str
    work_item: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cost_usd: float = 0.0
    duration_ms: int = 0
    duration_api_ms: int = 0
    num_turns: int = 0
    model: str | None = None
    model_usage: dict[str, Any] | None = None


class WorkflowPhaseInfo(WireModel):
    """A phase of the job's workflow as the clients draw it in the phase strip."""

    name: str
    status: str
    interactive_checkpoint: bool | None = None
    agent: str | None = None


class ConversationMessage(WireModel):
    """One message of a phase's conversation with the model, kept so a session can resume."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]]
    tool_calls: list[dict[str, Any]] | None = None
    tool_results: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None


class RateLimitInfo(WireModel):
    """Why a job is parked on a provider's limit, and when it resumes."""

    provider: str
    kind: Literal["rate-limit", "overloaded"] = "rate-limit"
    resume_at: int  # epoch milliseconds, as the original stores it
    retry_attempt: int = 0
    source: str | None = None
    last_error_message: str | None = None


class CheckpointApproval(WireModel):
    """A developer's approval at a checkpoint, handed to the next phase's kickoff."""

    for_phase: str
    approved_by: str | None = None
    approved_at: datetime = Field(default_factory=utcnow)
    message: str | None = None


class WorkflowSwitch(WireModel):
    """One entry of the lane-switch audit trail (``switch_workflow``)."""

    at: datetime = Field(default_factory=utcnow)
    from_: str = Field(alias="from")
    to: str
    from_phase: str | None = None
    to_phase: str | None = None
    reason: str | None = None
    by: str | None = None


class PhaseModelOverride(WireModel):
    model: str
    provider: str | None = None


class CampaignChild(WireModel):
    name: str
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    tracker_ref: dict[str, Any] | None = None
    job_id: str | None = None
    status: str = "pending"
    started_at: datetime | None = None
    completed_at: datetime | None = None


class Job(WireModel):
    """A job: one brief carried through the phases of its workflow.

    The whole record is stored as one JSON document, with a few fields copied into indexed
    columns. ``version`` counts saves; a save made from a stale copy is refused.
    """

    id: str
    type: JobType = JobType.JOB
    tenant_id: str | None = None
    workflow_path: str = "workflows/job/workflow.md"
    params: dict[str, Any] = Field(default_factory=dict)
    trigger_source: str = "cli"
    status: JobStatus = JobStatus.QUEUED
    phase: str | None = None
    interactive: bool = False

    current_work_item: str | None = None
    work_items: list[WorkItem] = Field(default_factory=list)
    work_item_loop_count: int = 0

    pr_mappings: list[PrMapping] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    insights: list[Insight] = Field(default_factory=list)

    awaiting_event: str | None = None
    awaiting_pr_id: int | str | None = None
    awaiting_next_phase: str | None = None
    approved_advance_from_phase: str | None = None
    checkpoint_approval: CheckpointApproval | None = None
    escalation_message: str | None = None
    pending_prompt: str | None = None
    pending_message_ids: list[str] | None = None
    """The developer messages folded into ``pending_prompt`` (delivered with its kickoff)."""
    rate_limit_info: RateLimitInfo | None = None
    completion_gate_blocks: int = 0

    token_usage: TokenUsage = Field(default_factory=TokenUsage)
    phase_usage: list[PhaseUsage] = Field(default_factory=list)
    workflow_phases: list[WorkflowPhaseInfo] = Field(default_factory=list)
    workflow_path_history: list[WorkflowSwitch] = Field(default_factory=list)
    phase_model_overrides: dict[str, PhaseModelOverride] = Field(default_factory=dict)

    session_id: str | None = None
    conversation_history: list[ConversationMessage] = Field(default_factory=list)

    campaign_children: list[CampaignChild] | None = None
    campaign_parent_id: str | None = None
    campaign_aggregated_insights: list[Insight] | None = None

    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    version: int = 0

    # Which generation of the stored record this copy descends from; a backend bumps it when
    # another writer wins a race, so a copy made earlier cannot be saved over the winner.
    _epoch: int | None = PrivateAttr(default=None)

    def work_item(self, name: str) -> WorkItem | None:
        return next((w for w in self.work_items if w.name == name), None)

    def open_work_items(self) -> list[WorkItem]:
        """Work items that still block completion (pending or in progress)."""
        return [w for w in self.work_items if not w.status.is_closed]

    def open_pr_mappings(self) -> list[PrMapping]:
        return [p for p in self.pr_mappings if p.is_open]

    def pr_mapping(self, pr_id: int | str) -> PrMapping | None:
        key = str(pr_id)
        return next((p for p in self.pr_mappings if str(p.pr_id) == key), None)


class JobInput(WireModel):
    """What a client sends to create a job (``POST /jobs``)."""

    type: JobType = JobType.JOB
    workflow_path: str = "workflows/job/workflow.md"
    trigger_source: str = "cli"
    params: dict[str, Any] = Field(default_factory=dict)
    interactive: bool = False
    initial_insights: list[Insight] = Field(default_factory=list)
