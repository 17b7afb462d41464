"""Pull requests of the local SCM: review records for bare repositories on this machine.

A hosting service keeps its own pull requests; local repositories have nobody to do that, so
coro keeps them in its state store, one JSON document per pull request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from state.models._base import WireModel, utcnow

__all__ = ["LocalPrApproval", "LocalPrComment", "LocalPullRequest"]


class LocalPrApproval(WireModel):
    """Someone approved the pull request."""

    user: str
    at: datetime = Field(default_factory=utcnow)


class LocalPrComment(WireModel):
    """A comment on a local pull request; ``path``/``line`` place an inline one."""

    id: int
    author: str
    body: str
    created_at: datetime = Field(default_factory=utcnow)
    parent_id: int | None = None
    path: str | None = None
    line: int | None = None


class LocalPullRequest(WireModel):
    """A pull request between two branches of a local bare repository.

    ``id`` counts from 1 per repository and is given by the store on creation (0 before).
    ``version`` counts saves; a save made from a stale copy is refused, like a job's.
    ``base_commit`` is where the target branch stood when the pull request was merged, so
    its changes can still be shown afterwards.
    """

    repo: str
    id: int = 0
    title: str
    description: str = ""
    source_branch: str
    target_branch: str = "main"
    state: Literal["open", "merged", "declined"] = "open"
    author: str
    reviewers: list[str] = Field(default_factory=list)
    approvals: list[LocalPrApproval] = Field(default_factory=list)
    comments: list[LocalPrComment] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    merged_at: datetime | None = None
    merge_commit: str | None = None
    merge_strategy: Literal["merge", "squash", "rebase"] | None = None
    base_commit: str | None = None
    version: int = 0

    def comment(self, comment_id: int) -> LocalPrComment | None:
        return next((c for c in self.comments if c.id == comment_id), None)

    def next_comment_id(self) -> int:
        return max((c.id for c in self.comments), default=0) + 1

    @property
    def approved_by(self) -> list[str]:
        return [a.user for a in self.approvals]
