"""Source control: the plugin protocol, its shapes and errors, and the event keys.

::

    plugin: ScmPlugin = ...               # github, bitbucket or local
    pr = await plugin.create_pr("acme/svc", title=..., description=..., source_branch="feat/x")
    status = await plugin.pr_status("acme/svc", pr.id)
    events = plugin.normalize_inbound(headers, body)   # a verified webhook → InboundEvents

Plugins import their HTTP client lazily; importing this package is cheap.
"""

from __future__ import annotations

from engine.scm._events import (
    CI_COMPLETED,
    PR_APPROVED,
    PR_CHANGES_REQUESTED,
    PR_COMMENT,
    PR_DECLINED,
    PR_MERGED,
    PR_UPDATED,
    awaited_matches,
)
from engine.scm._protocol import (
    CiState,
    CloneInfo,
    MergeStrategy,
    PrComment,
    PrState,
    PrStatus,
    PullRequest,
    ScmAuthError,
    ScmConflict,
    ScmError,
    ScmNotFound,
    ScmPlugin,
    ScmRateLimited,
    ScmUser,
    WebhookRejected,
)

__all__ = [
    "CI_COMPLETED",
    "PR_APPROVED",
    "PR_CHANGES_REQUESTED",
    "PR_COMMENT",
    "PR_DECLINED",
    "PR_MERGED",
    "PR_UPDATED",
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
    "awaited_matches",
]
