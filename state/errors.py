"""Errors raised by the state layer.

::

    StateError                 root; carries a ``title`` and a user-facing ``message``
    ├── JobNotFoundError       no job with that id
    ├── DuplicateJobError      a job with that id already exists
    ├── StaleJobError          a save was made from an out-of-date copy (optimistic concurrency)
    ├── StateCorruptError      the database file is damaged or is not a database
    └── StateVersionError      the database was written by a newer coro

``sqlite3`` and ``aiosqlite`` errors are translated at the boundary and chained.
"""

from __future__ import annotations

__all__ = [
    "DuplicateJobError",
    "JobNotFoundError",
    "StaleJobError",
    "StateCorruptError",
    "StateError",
    "StateVersionError",
]


class StateError(Exception):
    """Root of the state layer's errors."""

    title = "State error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class JobNotFoundError(StateError, LookupError):
    title = "No such job"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class DuplicateJobError(StateError):
    title = "Job already exists"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"a job with id {job_id!r} already exists")
        self.job_id = job_id


class StaleJobError(StateError):
    """Raised instead of overwriting a change another writer made first."""

    title = "Job changed underneath"

    def __init__(self, job_id: str, expected: int, actual: int | None) -> None:
        now = "was deleted" if actual is None else f"is at version {actual}"
        super().__init__(
            f"job {job_id!r} was saved from version {expected} but it {now}: another writer "
            "changed it first. Reload the job and apply the change again."
        )
        self.job_id = job_id
        self.expected = expected
        self.actual = actual


class StateCorruptError(StateError):
    title = "State database is damaged"


class StateVersionError(StateError):
    title = "State database is from a newer coro"
