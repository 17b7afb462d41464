"""Records kept beside jobs: external references, proposals and plan-mode investigations."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from state.models._base import WireModel, utcnow

__all__ = ["ExternalRef", "Investigation", "Proposal", "ProposalFile"]


class ExternalRef(WireModel):
    """A thing outside coro that belongs to a job: a PR, a ticket, a repository."""

    kind: Literal["pull_request", "ticket", "repo", "issue"]
    plugin_id: str
    repo_key: str = ""
    external_id: str
    url: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The identity of the reference (the URL is not part of it)."""
        return (self.plugin_id, self.kind, self.repo_key, self.external_id)


class ProposalFile(WireModel):
    path: str
    content: str


class Proposal(WireModel):
    """A change to an intelligence layer proposed by an agent, for a human to review."""

    id: str
    tenant_id: str
    job_id: str
    type: str
    title: str
    rationale: str = ""
    description: str = ""
    status: Literal["pending", "approved", "rejected"] = "pending"
    files: list[ProposalFile] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    reviewed_by: str | None = None
    review_note: str | None = None
    target_layer: Literal["tenant", "repo"] | None = None
    branch: str | None = None
    pr_url: str | None = None
    pr_id: int | str | None = None


class Investigation(WireModel):
    """A plan-mode conversation, kept so it survives a restart and can be reopened."""

    id: str
    status: Literal["open", "dispatched", "abandoned", "expired"] = "open"
    title: str | None = None
    repo: str | None = None
    #: A local checkout the investigation reads, when it is not read through the SCM.
    repo_path: str | None = None
    #: The visible conversation: ``{"role": "user"|"assistant", "content": str}``.
    messages: list[dict[str, Any]] = Field(default_factory=list)
    readiness: dict[str, Any] | None = None
    findings: str | None = None
    brief: dict[str, Any] | None = None
    brief_errors: list[str] = Field(default_factory=list)
    job_id: str | None = None
    model: str | None = None
    turns: int = 0
    session_tokens: int = 0
    context_tokens: int = 0
    cost_usd: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
