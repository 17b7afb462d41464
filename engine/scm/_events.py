"""The event keys plugins normalise webhooks (and the poller its findings) into, and which
awaited names each one wakes.

Keys follow the original's Bitbucket-style names, whatever the service: a GitHub
``pull_request`` ``closed`` with ``merged: true`` becomes ``pullrequest:fulfilled``. The
service's own name stays in the payload as ``nativeEvent``.

Awaited names are what an agent passes to ``await_event``:

========================  ==============================================================
awaited name              woken by
========================  ==============================================================
``pr:merged``             ``pullrequest:fulfilled``
``pr:approved``           ``pullrequest:approved``
``pr:updated``            ``pullrequest:updated``, ``pullrequest:changes_requested``
``pr:comment``            ``pullrequest:comment_created``
``ci-status:<prId>``      ``ci:completed`` for that pull request
any ``pr:*``              ``pullrequest:rejected`` (declined or gone: the agent must know)
========================  ==============================================================

A ``pr:*`` name matches only events of the pull request the job waits on
(``awaitingPrId``) when the job names one, else any pull request mapped to the job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "CI_COMPLETED",
    "PR_APPROVED",
    "PR_CHANGES_REQUESTED",
    "PR_COMMENT",
    "PR_DECLINED",
    "PR_MERGED",
    "PR_UPDATED",
    "awaited_matches",
]

PR_MERGED = "pullrequest:fulfilled"
PR_DECLINED = "pullrequest:rejected"
PR_UPDATED = "pullrequest:updated"
PR_APPROVED = "pullrequest:approved"
PR_CHANGES_REQUESTED = "pullrequest:changes_requested"
PR_COMMENT = "pullrequest:comment_created"
CI_COMPLETED = "ci:completed"

_WAKES: dict[str, frozenset[str]] = {
    "pr:merged": frozenset({PR_MERGED}),
    "pr:approved": frozenset({PR_APPROVED}),
    "pr:updated": frozenset({PR_UPDATED, PR_CHANGES_REQUESTED}),
    "pr:comment": frozenset({PR_COMMENT}),
}


def _same_pr(a: object, b: object) -> bool:
    return a is not None and b is not None and str(a) == str(b)


def awaited_matches(
    awaited: str | None,
    event_key: str,
    payload: Mapping[str, Any],
    *,
    awaiting_pr_id: int | str | None = None,
) -> bool:
    """Whether an event with ``event_key`` and ``payload`` wakes a job awaiting ``awaited``.

    ``developer-input: …`` names are woken by the developer, never by an SCM event.
    """
    if not awaited:
        return False
    awaited = awaited.strip()
    pr_id = payload.get("prId")
    if awaited.startswith("ci-status:"):
        wanted = awaited.split(":", 1)[1].strip()
        return event_key == CI_COMPLETED and (not wanted or _same_pr(pr_id, wanted))
    if not awaited.startswith("pr:"):
        return False
    if awaiting_pr_id is not None and not _same_pr(pr_id, awaiting_pr_id):
        return False
    return event_key == PR_DECLINED or event_key in _WAKES.get(awaited, frozenset())
