"""The ``StateBackend`` protocol: everything the engine, the API and the TUI persist.

Two implementations pass one contract test suite: :class:`state.sqlite.SqliteStateBackend`
(the runner's ``$CORO_HOME/state.db``) and :class:`state.memory.InMemoryStateBackend` (tests).

Durability contract:

- ``create_job``, ``append_event`` / ``append_events`` / ``append_log``, the mapping,
  proposal, investigation, inbox and local pull request methods return only after their
  write is committed.
- ``save_job`` is write-behind: the newest state of each job is kept and committed at least
  every 50 ms, with any event appended after it, and before ``flush()`` returns. Pass
  ``durable=True`` (as the phase loop does at a phase boundary) to wait for the commit.
- Saves are checked against ``Job.version``: saving a copy that is not the newest raises
  :class:`state.errors.StaleJobError` rather than losing another writer's change. Local pull
  requests are checked the same way against ``LocalPullRequest.version``
  (:class:`StalePullRequestError`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from state.errors import StateError
from state.models import (
    ExternalRef,
    InboundEvent,
    InboxItem,
    Investigation,
    Job,
    JobEvent,
    LocalPullRequest,
    PrMapping,
    Proposal,
)

__all__ = ["EventInput", "StalePullRequestError", "StateBackend"]

#: One event to append: ``(kind, data)``.
EventInput = tuple[str, Mapping[str, Any]]


class StalePullRequestError(StateError):
    """A local pull request was saved from an out-of-date copy (or was never created)."""

    title = "Pull request changed underneath"

    def __init__(self, repo: str, pr_id: int, expected: int, actual: int | None) -> None:
        now = "does not exist" if actual is None else f"is at version {actual}"
        super().__init__(
            f"pull request {repo}#{pr_id} was saved from version {expected} but it {now}: "
            "another writer changed it first. Reload it and apply the change again."
        )
        self.repo = repo
        self.pr_id = pr_id
        self.expected = expected
        self.actual = actual


@runtime_checkable
class StateBackend(Protocol):
    """Persistence for jobs, their event logs, mappings, proposals, plans and the inbox."""

    async def open(self) -> None:
        """Open (and migrate) the store. Idempotent."""

    async def close(self) -> None:
        """Flush pending saves and close. Idempotent."""

    async def flush(self) -> None:
        """Return once every save and append made so far is committed."""

    # -- jobs ---------------------------------------------------------------------------------
    async def create_job(self, job: Job) -> Job:
        """Insert a new job (``version`` becomes 1). Raises DuplicateJobError."""

    async def get_job(self, job_id: str) -> Job | None:
        """The newest state of a job (including saves not yet committed), as a fresh copy."""

    async def save_job(self, job: Job, *, durable: bool = False, ack: Iterable[int] = ()) -> Job:
        """Save ``job`` (its ``version`` must be the newest) and bump its version in place.

        ``ack`` names inbox items this save acted on: they are marked done in the same
        transaction, so after a crash either both happened or neither did.
        """

    async def update_job(self, job_id: str, patch: Mapping[str, Any]) -> Job:
        """Apply a shallow patch (Python or camelCase field names) to the newest state."""

    async def list_jobs(
        self,
        *,
        status: str | Iterable[str] | None = None,
        type: str | None = None,
        workflow_path: str | None = None,
        parent_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs, newest first, optionally filtered."""

    async def count_jobs(self, *, status: str | Iterable[str] | None = None) -> int: ...

    async def list_jobs_by_type(self, type: str) -> list[Job]: ...

    async def list_child_jobs(self, parent_job_id: str) -> list[Job]: ...

    async def delete_job(self, job_id: str) -> bool:
        """Delete a job with its events, logs and mappings. False if there was none."""

    # -- event log ----------------------------------------------------------------------------
    async def append_event(self, job_id: str, kind: str, data: Mapping[str, Any]) -> int:
        """Append one event; returns its ``seq`` once committed."""

    async def append_events(self, job_id: str, events: Sequence[EventInput]) -> list[int]:
        """Append several events of one job in one commit; returns their ``seq`` values."""

    async def read_events(
        self, job_id: str, *, after_seq: int = 0, limit: int = 1000, kinds: Iterable[str] = ()
    ) -> list[JobEvent]:
        """Events of one job with ``seq > after_seq``, oldest first."""

    async def read_last_events(self, job_id: str, limit: int = 1000) -> list[JobEvent]:
        """The newest ``limit`` events of a job, oldest first."""

    async def read_all_events(
        self, *, after_global_seq: int = 0, limit: int = 1000
    ) -> list[JobEvent]:
        """Events of every job with ``global_seq > after_global_seq``, in commit order."""

    async def last_seq(self, job_id: str) -> int: ...

    async def last_global_seq(self) -> int: ...

    def subscribe(
        self, job_id: str | None = None, *, after: int = 0
    ) -> AsyncIterator[list[JobEvent]]:
        """Batches of events as they are committed, after a backlog from ``after``.

        ``after`` is a ``seq`` when ``job_id`` is given, else a ``global_seq``. A subscriber
        that falls behind is not buffered without bound: it re-reads from the store, so it
        misses nothing and sees nothing twice.
        """

    # -- logs (log lines are events of kind ``log``) ------------------------------------------
    async def append_log(self, job_id: str, line: str) -> int: ...

    async def append_logs(self, job_id: str, lines: Sequence[str]) -> list[int]: ...

    async def get_log(self, job_id: str, start: int = 0, end: int | None = None) -> list[str]:
        """Log lines ``start`` (inclusive) to ``end`` (exclusive), 0-based."""

    async def log_length(self, job_id: str) -> int: ...

    # -- external references and legacy mappings ----------------------------------------------
    async def map_external_ref(self, ref: ExternalRef, job_id: str) -> None: ...

    async def get_job_by_external_ref(self, ref: ExternalRef) -> Job | None: ...

    async def list_external_refs(self, job_id: str) -> list[ExternalRef]: ...

    async def map_pr_to_job(self, pr_id: int | str, job_id: str) -> None: ...

    async def get_job_by_pr(self, pr_id: int | str) -> Job | None: ...

    async def add_pr_mapping(self, job_id: str, mapping: PrMapping) -> Job:
        """Add (or replace, by PR id) a PR mapping on the job, durably."""

    async def mark_pr_merged(self, job_id: str, pr_id: int | str, merged_at: datetime) -> Job:
        """Stamp ``merged_at`` on the job's mapping for that PR, durably."""

    async def map_jira_ticket_to_job(self, ticket_id: str, job_id: str) -> None: ...

    async def get_job_by_jira_ticket(self, ticket_id: str) -> Job | None: ...

    async def map_repo_to_job(self, repo_slug: str, job_id: str) -> None: ...

    async def get_job_by_repo(self, repo_slug: str) -> Job | None: ...

    # -- proposals ----------------------------------------------------------------------------
    async def create_proposal(self, proposal: Proposal) -> Proposal: ...

    async def list_proposals(self, tenant_id: str, status: str | None = None) -> list[Proposal]: ...

    async def get_proposal(self, tenant_id: str, proposal_id: str) -> Proposal | None: ...

    async def update_proposal(
        self, tenant_id: str, proposal_id: str, updates: Mapping[str, Any]
    ) -> Proposal: ...

    # -- plan-mode investigations -------------------------------------------------------------
    async def upsert_investigation(self, investigation: Investigation) -> Investigation: ...

    async def get_investigation(self, investigation_id: str) -> Investigation | None: ...

    async def list_investigations(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[Investigation]: ...

    async def delete_investigation(self, investigation_id: str) -> bool: ...

    # -- durable inbox ------------------------------------------------------------------------
    async def enqueue(
        self, event: InboundEvent, dedupe_key: str, *, job_id: str | None = None
    ) -> InboxItem | None:
        """Store an inbound event; ``None`` if an event with that key was ever enqueued."""

    async def claim(
        self,
        owner: str,
        *,
        job_id: str | None = None,
        limit: int = 100,
        lease_seconds: float = 300.0,
    ) -> list[InboxItem]:
        """Take pending events (oldest first). A claim not acked within the lease (a crash)
        makes the event claimable again."""

    async def ack(self, item_ids: Iterable[int]) -> None:
        """Mark claimed events done; they are never claimed again."""

    async def release(self, item_ids: Iterable[int]) -> None:
        """Give claimed events back without acting on them."""

    async def pending_inbox(self, job_id: str | None = None) -> int:
        """How many events are waiting (pending or claimed, not done)."""

    # -- local pull requests (the local SCM's review records) ---------------------------------
    async def create_local_pr(self, pr: LocalPullRequest) -> LocalPullRequest:
        """Store a new pull request, giving it the next ``id`` of its repository (1, 2, …;
        atomically, so concurrent creators never share one) and ``version`` 1, in place."""

    async def get_local_pr(self, repo: str, pr_id: int) -> LocalPullRequest | None:
        """A fresh copy of the pull request, or ``None``."""

    async def save_local_pr(self, pr: LocalPullRequest) -> LocalPullRequest:
        """Save ``pr`` (its ``version`` must be the stored one) and bump its version in place.

        Raises:
            StalePullRequestError: another writer saved it first, or it was never created.
        """

    async def list_local_prs(
        self, *, repo: str | None = None, state: str | None = None
    ) -> list[LocalPullRequest]:
        """Pull requests, newest first, optionally of one repository and in one state."""
