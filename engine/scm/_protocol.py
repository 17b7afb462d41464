"""What every source-control plugin does, and the shapes it answers with.

A plugin speaks to one hosting service (GitHub, Bitbucket Cloud) or to bare repositories on
disk (``local``). The engine's ``scm_*`` tools, the PR poller and the webhook route use only
this protocol, so they work the same against each.

Repositories are named by a *slug*: ``owner/name`` on GitHub, ``workspace/slug`` on Bitbucket,
``name`` (or ``group/name``) for local repositories. Pull request ids are what the service
shows people (GitHub and Bitbucket numbers; local ids count from 1 per repository).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from engine.errors import CoroError
from state import InboundEvent

__all__ = [
    "CiState",
    "CloneInfo",
    "MergeStrategy",
    "PrComment",
    "PrState",
    "PrStatus",
    "PullRequest",
    "ScmAuthError",
    "ScmConflict",
    "ScmError",
    "ScmNotFound",
    "ScmPlugin",
    "ScmRateLimited",
    "ScmUser",
    "WebhookRejected",
]

PrState = Literal["open", "merged", "declined"]
CiState = Literal["none", "pending", "success", "failure"]
MergeStrategy = Literal["merge", "squash", "rebase"]


# -- errors ---------------------------------------------------------------------------------------
class ScmError(CoroError):
    """The SCM refused or failed a request. Messages never contain credentials."""

    title = "Source control error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ScmAuthError(ScmError):
    """The credentials are missing, wrong, or lack a permission (401/403)."""


class ScmNotFound(ScmError):
    """The repository, pull request, comment or user does not exist (404)."""


class ScmConflict(ScmError):
    """The request conflicts with the current state: a merge conflict, a PR that is not open."""


class ScmRateLimited(ScmError):
    """The service asks us to slow down; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class WebhookRejected(ScmError):
    """An inbound webhook failed verification (bad or missing signature, no secret set)."""


# -- shapes ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CloneInfo:
    """How to clone a repository.

    ``url`` never holds credentials. ``env`` is the environment ``git`` needs to authenticate
    (for example ``GIT_CONFIG_*`` entries adding an ``http.extraHeader``, or an askpass
    helper); it holds secrets, so it is passed per command and never logged or stored.
    """

    repo: str
    url: str
    default_branch: str = "main"
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScmUser:
    """A person (or bot) on the service."""

    id: str
    username: str
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class PullRequest:
    id: int | str
    repo: str
    title: str
    url: str
    state: PrState
    source_branch: str
    target_branch: str
    author: str | None = None
    description: str = ""
    reviewers: tuple[str, ...] = ()
    created_at: datetime | None = None
    merged_at: datetime | None = None
    merge_commit: str | None = None


@dataclass(frozen=True, slots=True)
class PrStatus:
    """Where a pull request stands: its state, who approved, and CI where the service says."""

    pr: PullRequest
    approvals: tuple[str, ...] = ()
    changes_requested: tuple[str, ...] = ()
    ci: CiState = "none"
    mergeable: bool | None = None
    comment_count: int = 0

    @property
    def state(self) -> PrState:
        return self.pr.state


@dataclass(frozen=True, slots=True)
class PrComment:
    id: int | str
    author: str
    body: str
    created_at: datetime | None = None
    parent_id: int | str | None = None
    path: str | None = None
    line: int | None = None
    url: str | None = None


# -- the protocol ---------------------------------------------------------------------------------
@runtime_checkable
class ScmPlugin(Protocol):
    """One source-control back end.

    Every method raises :class:`ScmError` (or a subclass) on failure, with a message a developer
    can act on and without credentials in it. Methods are safe to call concurrently.
    """

    @property
    def id(self) -> str:
        """The plugin id jobs and the config name it by: ``github``, ``bitbucket``, ``local``."""
        ...

    def matches_remote(self, url: str) -> bool:
        """Whether a git remote URL belongs to this plugin's service (for plugin resolution)."""
        ...

    def repo_of_remote(self, url: str) -> str | None:
        """The slug a git remote URL points at, if it is this service's."""
        ...

    async def clone_info(self, repo: str) -> CloneInfo:
        """How to clone ``repo``; raises :class:`ScmNotFound` if it does not exist."""
        ...

    async def create_pr(
        self,
        repo: str,
        *,
        title: str,
        description: str,
        source_branch: str,
        target_branch: str = "main",
        reviewers: tuple[str, ...] = (),
    ) -> PullRequest:
        """Open a pull request; if one is already open from ``source_branch`` to
        ``target_branch``, return it (with the reviewers added) instead of opening another."""
        ...

    async def get_pr(self, repo: str, pr_id: int | str) -> PullRequest: ...

    async def pr_status(self, repo: str, pr_id: int | str) -> PrStatus: ...

    async def list_comments(self, repo: str, pr_id: int | str) -> list[PrComment]:
        """Every comment (top-level and inline, replies included), oldest first."""
        ...

    async def post_comment(self, repo: str, pr_id: int | str, body: str) -> PrComment: ...

    async def reply_to_comment(
        self, repo: str, pr_id: int | str, parent_id: int | str, body: str
    ) -> PrComment: ...

    async def add_reviewers(
        self, repo: str, pr_id: int | str, reviewers: tuple[str, ...]
    ) -> PullRequest:
        """Add reviewers to those already requested (never removes one)."""
        ...

    async def merge(
        self,
        repo: str,
        pr_id: int | str,
        *,
        strategy: MergeStrategy = "merge",
        message: str | None = None,
    ) -> PullRequest:
        """Merge; raises :class:`ScmConflict` if it cannot be merged (conflict, not open)."""
        ...

    async def resolve_user(self, query: str, *, repo: str | None = None) -> ScmUser | None:
        """Find a person by username, display name, id or e-mail; ``None`` if nobody matches."""
        ...

    def normalize_inbound(self, headers: Mapping[str, str], body: bytes) -> list[InboundEvent]:
        """Verify a webhook delivery and turn it into events (none if it concerns no PR).

        ``headers`` are matched case-insensitively. Each event carries ``event_key`` (the
        provider's name: ``pullrequest:fulfilled``, ``pull_request:closed``…), ``ref`` (the
        pull request as an :class:`~state.ExternalRef`), ``delivery_id`` and a ``payload``
        with at least ``action``, ``repo``, ``prId`` and, where they apply, ``merged``,
        ``author``, ``body``, ``state``, ``conclusion``.

        Raises:
            WebhookRejected: the signature is missing or wrong, or no secret is configured.
            ScmError: the body is not a payload this plugin understands.
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
