"""Polling parked jobs' pull requests (local mode): what webhooks would have said, found by
asking.

Every ``polling.intervalSeconds`` (default 60 s, and once right after start) the poller reads
the status of every unmerged pull request mapped to a parked job and turns what changed into
inbound events: a merge (``pullrequest:fulfilled``), a decline (``pullrequest:rejected``), a
new approval, a new request for changes, each new comment, and CI finishing. They go through
the durable inbox like webhooks, so they wake the jobs that await them.

- **Cold start.** The first poll of a pull request has nothing to compare with; it reports
  only what the job awaits (a job awaiting ``pr:merged`` on a PR merged while coro was down
  wakes; old comments are not replayed).
- **Failures.** A pull request whose status cannot be read five polls in a row is reported as
  ``pullrequest:rejected`` with ``state: NOT_FOUND``, so its job does not wait for ever.
- Polls never overlap; :meth:`PrPoller.poll_now` runs one at once. (What a developer does
  with ``coro pr`` reaches the job directly, without waiting for a poll.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.scm import (
    CI_COMPLETED,
    PR_APPROVED,
    PR_CHANGES_REQUESTED,
    PR_COMMENT,
    PR_DECLINED,
    PR_MERGED,
    ScmError,
    awaited_matches,
)
from state import ExternalRef, InboundEvent, JobStatus

if TYPE_CHECKING:
    from engine.inbound import InboundRouter
    from engine.scm import PrStatus, ScmPlugin
    from engine.scm.registry import ScmRegistry
    from state import Job, PrMapping, StateBackend

__all__ = ["FAILURES_BEFORE_NOT_FOUND", "PrPoller", "poll_dedupe_key"]

log = logging.getLogger(__name__)

FAILURES_BEFORE_NOT_FOUND = 5
#: Only parked jobs wait on their pull requests; the store filters, so a poll does not load
#: every job (with its conversation) each interval.
_PARKED = [status.value for status in JobStatus if status.is_parked]


def poll_dedupe_key(plugin_id: str, repo: str, pr_id: int | str, what: str) -> str:
    """The inbox key of one change to a pull request (``merged``, ``approved:alice``,
    ``comment:12``…), shared by the poller and the developer's own actions on local pull
    requests, so one change is delivered once whoever sees it first."""
    return f"poll:{plugin_id}:{repo.lower()}:{pr_id}:{what}"


@dataclass
class _Seen:
    """What the last poll saw of one pull request."""

    state: str = "open"
    approvals: set[str] = field(default_factory=set)
    changes_requested: set[str] = field(default_factory=set)
    comment_ids: set[str] = field(default_factory=set)
    comment_count: int = 0
    ci: str = "none"
    failures: int = 0
    gone: bool = False


@dataclass(frozen=True, slots=True)
class _Finding:
    key: str
    dedupe: str
    payload: dict[str, Any]


class PrPoller:
    """Polls parked jobs' pull requests (see the module docstring)."""

    def __init__(
        self,
        *,
        store: StateBackend,
        scm: ScmRegistry,
        inbound: InboundRouter,
        interval: Callable[[], float],
    ) -> None:
        self._store = store
        self._scm = scm
        self._inbound = inbound
        self._interval = interval
        self._seen: dict[tuple[str, str, str, str], _Seen] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="coro-pr-poller")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                await self._inbound.sweep()  # events a crashed runner had claimed, once due
                await self.poll_now()
            except Exception:
                log.exception("polling pull requests failed; trying again next interval")
            await asyncio.sleep(self._interval())

    async def poll_now(self) -> int:
        """Poll every parked job's open pull requests once; returns the events found."""
        async with self._lock:
            found = 0
            for job in await self._store.list_jobs(status=_PARKED):
                for mapping in job.pr_mappings:
                    if mapping.merged_at is None:
                        found += await self._poll_pr(job, mapping)
            return found

    async def _poll_pr(self, job: Job, mapping: PrMapping) -> int:
        plugin_id = mapping.plugin_id or self._scm.default_id()
        repo = mapping.repo_slug
        if plugin_id is None or not repo:
            return 0
        key = (job.id, plugin_id, repo.lower(), str(mapping.pr_id))
        seen = self._seen.get(key)
        cold = seen is None
        if seen is None:
            seen = self._seen[key] = _Seen()
        if seen.gone:
            return 0
        try:
            plugin = self._scm.plugin(plugin_id)
            status = await plugin.pr_status(repo, mapping.pr_id)
            comments = await self._new_comments(plugin, repo, mapping, status, seen)
        except ScmError as exc:
            seen.failures += 1
            log.info("polling %s PR %s of job %s failed (%d in a row): %s",
                     repo, mapping.pr_id, job.id, seen.failures, exc.message)  # fmt: skip
            if seen.failures < FAILURES_BEFORE_NOT_FOUND:
                return 0
            seen.gone = True
            findings = [_Finding(PR_DECLINED, "not-found",
                                 {"state": "NOT_FOUND", "error": exc.message})]  # fmt: skip
        else:
            seen.failures = 0
            findings = self._diff(status, comments, seen)
        return await self._report(job, plugin_id, repo, mapping, findings, cold=cold)

    async def _new_comments(
        self, plugin: ScmPlugin, repo: str, mapping: PrMapping, status: PrStatus, seen: _Seen
    ) -> list[dict[str, Any]]:
        if status.comment_count == seen.comment_count and seen.comment_ids:
            return []
        fresh = []
        for comment in await plugin.list_comments(repo, mapping.pr_id):
            if str(comment.id) not in seen.comment_ids:
                fresh.append({"id": str(comment.id), "author": comment.author,
                              "body": comment.body, "path": comment.path})  # fmt: skip
        seen.comment_count = status.comment_count
        return fresh

    def _diff(
        self, status: PrStatus, comments: list[dict[str, Any]], seen: _Seen
    ) -> list[_Finding]:
        findings: list[_Finding] = []
        state = status.state
        if state != seen.state:
            if state == "merged":
                merged = status.pr.merged_at.isoformat() if status.pr.merged_at else None
                findings.append(_Finding(PR_MERGED, "merged", {"merged": True, "state": "MERGED",
                                                                "mergedAt": merged}))  # fmt: skip
            elif state == "declined":
                findings.append(_Finding(PR_DECLINED, "declined", {"state": "DECLINED"}))
            seen.state = state
        for user in status.approvals:
            if user not in seen.approvals:
                findings.append(_Finding(PR_APPROVED, f"approved:{user}", {"author": user}))
        seen.approvals = set(status.approvals)
        for user in status.changes_requested:
            if user not in seen.changes_requested:
                stamp = f"changes:{user}:{time.time_ns()}"
                findings.append(_Finding(PR_CHANGES_REQUESTED, stamp, {"author": user}))
        seen.changes_requested = set(status.changes_requested)
        for comment in comments:
            seen.comment_ids.add(comment["id"])
            data = {"author": comment["author"], "body": comment["body"],
                    "commentId": comment["id"], "path": comment["path"]}  # fmt: skip
            findings.append(_Finding(PR_COMMENT, f"comment:{comment['id']}", data))
        if status.ci != seen.ci:
            if status.ci in ("success", "failure"):
                stamp = f"ci:{status.ci}:{time.time_ns()}"
                findings.append(_Finding(CI_COMPLETED, stamp, {"conclusion": status.ci}))
            seen.ci = status.ci
        return findings

    async def _report(
        self,
        job: Job,
        plugin_id: str,
        repo: str,
        mapping: PrMapping,
        findings: list[_Finding],
        *,
        cold: bool,
    ) -> int:
        ref = ExternalRef(kind="pull_request", plugin_id=plugin_id, repo_key=repo.lower(),
                          external_id=str(mapping.pr_id), url=mapping.url)  # fmt: skip
        sent = 0
        for finding in findings:
            payload = {"repo": repo, "prId": mapping.pr_id, "action": finding.key.split(":")[-1],
                       **finding.payload}  # fmt: skip
            if cold and not awaited_matches(
                job.awaiting_event, finding.key, payload, awaiting_pr_id=job.awaiting_pr_id
            ):
                continue
            event = InboundEvent(source="poll", event_key=finding.key, payload=payload,
                                 plugin_id=plugin_id, ref=ref)  # fmt: skip
            dedupe = poll_dedupe_key(plugin_id, repo, mapping.pr_id, finding.dedupe)
            if await self._inbound.submit(event, dedupe_key=dedupe, job_id=job.id) is not None:
                sent += 1
        return sent
