"""``SqliteStateBackend``: the runner's durable store in ``$CORO_HOME/state.db``.

One writer connection takes every write in short explicit transactions. Appends are
group-committed: callers queue their events and wait, and one transaction commits everything
queued so far, so many concurrent producers share a commit. Job saves are write-behind: the
newest snapshot of each job is kept and committed with the next transaction, at the latest
``flush_interval`` after the first save, so a job saved a thousand times a second is written a
few dozen times. Reads use a second connection (WAL lets them run beside the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from state._broker import EventBroker
from state._common import apply_patch, status_filter
from state.backend import EventInput
from state.errors import DuplicateJobError, JobNotFoundError, StaleJobError, StateError
from state.models import (
    Job,
    JobEvent,
    utcnow,
)
from state.sqlite._local_prs import SqliteLocalPrs
from state.sqlite._records import SqliteRecords
from state.sqlite._schema import connect, corrupt_error

__all__ = ["SqliteStateBackend"]

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

_JOB_COLUMNS = "id, version, status, type, tenant_id, workflow_path, parent_id, created_at, "
_JOB_COLUMNS += "updated_at, data"


@dataclass(slots=True)
class _Save:
    """The newest unsaved snapshot of one job."""

    row: tuple[Any, ...]  # (data, status, type, tenant_id, workflow_path, parent_id, updated_at)
    version: int
    base_version: int  # the stored version this save may overwrite
    ack_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Append:
    job_id: str
    kinds: list[str]
    payloads: list[str]  # JSON text
    datas: list[Mapping[str, Any]]
    done: asyncio.Future[list[int]]


#: An append as written: the append, its seqs, its global seqs and its timestamp.
_Written = tuple[_Append, list[int], range, datetime]


@dataclass(slots=True)
class _Batch:
    appends: list[_Append]
    saves: dict[str, _Save]
    waiters: list[asyncio.Future[dict[str, StaleJobError]]]


def _job_row(job: Job) -> tuple[Any, ...]:
    return (
        job.model_dump_json(),
        job.status.value,
        job.type.value,
        job.tenant_id,
        job.workflow_path,
        job.campaign_parent_id,
        job.updated_at.isoformat(),
    )


def _event(row: Sequence[Any]) -> JobEvent:
    global_seq, job_id, seq, ts, kind, data = row
    return JobEvent.from_store(
        job_id, seq, global_seq, datetime.fromtimestamp(ts, UTC), kind, json.loads(data)
    )


class SqliteStateBackend(SqliteLocalPrs, SqliteRecords):
    """The SQLite implementation of :class:`state.backend.StateBackend`.

    Args:
        path: the database file (``$CORO_HOME/state.db``); created if missing.
        synchronous: ``"normal"`` (durable against a crashed process; the default) or
            ``"full"`` (also against a power cut, at some speed).
        flush_interval: the longest a job save waits before it is committed, in seconds.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: Literal["normal", "full"] = "normal",
        flush_interval: float = 0.05,
    ) -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._flush_interval = flush_interval
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._writer_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._appends: list[_Append] = []
        self._saves: dict[str, _Save] = {}
        self._inflight: dict[str, _Save] = {}
        self._first_save_at: float | None = None
        self._waiters: list[asyncio.Future[dict[str, StaleJobError]]] = []
        # Optimistic concurrency: the newest version this process knows of each job, and an
        # epoch bumped when another process wins a race, so copies made before it are refused.
        self._versions: dict[str, int] = {}
        self._epochs: dict[str, int] = {}
        self._broker = EventBroker(self._read_backlog)

    # -- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        if self._db is not None:
            return
        self._db = await connect(self.path, synchronous=self._synchronous)
        try:
            self._reader = await connect(self.path, synchronous=self._synchronous, readonly=True)
        except BaseException:
            await self._db.close()
            self._db = None
            raise
        self._closing = False
        self._writer_task = asyncio.create_task(self._write_loop(), name="coro-state-writer")

    async def close(self) -> None:
        if self._db is None:
            return
        self._closing = True
        self._wake.set()
        if self._writer_task is not None:
            await self._writer_task
        self._broker.close_all()
        assert self._reader is not None
        await self._reader.close()
        await self._db.close()
        self._db = self._reader = None

    async def __aenter__(self) -> SqliteStateBackend:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def _is_open(self) -> bool:
        return self._db is not None and not self._closing

    def _writer(self) -> aiosqlite.Connection:
        if self._db is None or self._closing:
            raise StateError(f"the state database {self.path} is not open")
        return self._db

    def _read_conn(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StateError(f"the state database {self.path} is not open")
        return self._reader

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return list(await self._read_conn().execute_fetchall(sql, params))
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: sqlite3.DatabaseError) -> StateError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return StateError(f"{self.path} stayed locked by another process: {exc}")
        if isinstance(exc, sqlite3.IntegrityError):
            return StateError(f"{self.path}: {exc}")
        return corrupt_error(self.path, str(exc))

    # -- the write path -----------------------------------------------------------------------
    async def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run statements in one immediate transaction; returns each one's rowcount."""
        db = self._writer()
        async with self._write_lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                counts = []
                for sql, params in statements:
                    cursor = await db.execute(sql, params)
                    counts.append(cursor.rowcount)
                await db.execute("COMMIT")
            except BaseException as exc:
                await self._rollback(db)
                if isinstance(exc, sqlite3.DatabaseError):
                    raise self._translate(exc) from exc
                raise
        return counts

    @staticmethod
    async def _rollback(db: aiosqlite.Connection) -> None:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")

    async def _write_loop(self) -> None:
        while True:
            if not self._appends and not self._waiters:
                if self._saves and self._first_save_at is not None:
                    delay = self._first_save_at + self._flush_interval - time.monotonic()
                    if delay > 0 and not self._closing:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), delay)
                elif self._closing:
                    return
                else:
                    await self._wake.wait()
            self._wake.clear()
            if not (self._appends or self._saves or self._waiters):
                continue
            if self._saves and not (self._appends or self._waiters or self._closing):
                assert self._first_save_at is not None
                if time.monotonic() < self._first_save_at + self._flush_interval:
                    continue
            # Let the tasks already ready to run (woken by the last commit) queue their next
            # writes first: one pass of the event loop, and they share this commit.
            await asyncio.sleep(0)
            batch = _Batch(self._appends, self._saves, self._waiters)
            self._appends, self._saves, self._waiters = [], {}, []
            self._first_save_at = None
            await self._commit_batch(batch)

    async def _commit_batch(self, batch: _Batch) -> None:
        db = self._db
        assert db is not None
        self._inflight = batch.saves
        try:
            async with self._write_lock:
                await db.execute("BEGIN IMMEDIATE")
                try:
                    conflicts = await self._write_saves(db, batch.saves)
                    results, published = await self._write_appends(db, batch.appends)
                    await db.execute("COMMIT")
                except BaseException:
                    await self._rollback(db)
                    raise
        except BaseException as exc:
            self._inflight = {}
            self._requeue(batch.saves)
            error: BaseException = exc
            if isinstance(exc, sqlite3.DatabaseError):
                error = self._translate(exc)
            for append in batch.appends:
                if not append.done.done():
                    append.done.set_exception(error)
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(error)
            if isinstance(exc, asyncio.CancelledError):
                raise
            await asyncio.sleep(0.2)  # a failing disk is not retried in a tight loop
            return
        self._inflight = {}
        # Only now, with the transaction committed, may any caller learn its write happened.
        for append, outcome in results:
            if not append.done.done():
                if isinstance(outcome, BaseException):
                    append.done.set_exception(outcome)
                else:
                    append.done.set_result(outcome)
        # Who listens is asked only now: a subscriber that joined while this batch was being
        # written read its backlog before the commit, so it must get these events live.
        if published and self._broker.has_subscribers:
            self._broker.publish(
                [
                    JobEvent.from_store(append.job_id, seq, g, ts, kind, dict(data))
                    for append, seqs, globals_, ts in published
                    if self._broker.wants(append.job_id)
                    for seq, g, kind, data in zip(
                        seqs, globals_, append.kinds, append.datas, strict=True
                    )
                ]
            )
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(conflicts)

    def _requeue(self, saves: dict[str, _Save]) -> None:
        """Put saves from a failed commit back, unless a newer save of the job came since."""
        for job_id, save in saves.items():
            newer = self._saves.get(job_id)
            if newer is None:
                self._saves[job_id] = save
            else:
                newer.base_version = save.base_version
                newer.ack_ids[:0] = save.ack_ids
        if saves and self._first_save_at is None:
            self._first_save_at = time.monotonic()

    async def _write_saves(
        self, db: aiosqlite.Connection, saves: dict[str, _Save]
    ) -> dict[str, StaleJobError]:
        if not saves:
            return {}
        # Each save is written only over the version it was made from; a row that another
        # process has moved on since is left alone and reported as a conflict. One statement
        # writes every save (each trip to the database thread costs the event loop a wake-up);
        # only when fewer rows changed than were saved is each row read back to find the losers.
        conflicts: dict[str, StaleJobError] = {}
        cursor = await db.executemany(
            "UPDATE jobs SET data = ?, status = ?, type = ?, tenant_id = ?, "
            "workflow_path = ?, parent_id = ?, updated_at = ?, version = ? "
            "WHERE id = ? AND version = ?",
            [
                (*save.row, save.version, job_id, save.base_version)
                for job_id, save in saves.items()
            ],
        )
        lost: list[tuple[str, int | None]] = []
        if cursor.rowcount != len(saves):
            for job_id, save in saves.items():
                rows = list(
                    await db.execute_fetchall(
                        "SELECT version, data FROM jobs WHERE id = ?", (job_id,)
                    )
                )
                # Written by this statement: our version and our bytes (another writer that
                # started from the same version would have the same number, not the same data).
                if not rows or tuple(rows[0]) != (save.version, save.row[0]):
                    lost.append((job_id, rows[0][0] if rows else None))
        for job_id, actual in lost:
            save = saves[job_id]
            conflicts[job_id] = StaleJobError(job_id, save.base_version, actual)
            self._epochs[job_id] = self._epochs.get(job_id, 0) + 1
            if actual is None:
                self._versions.pop(job_id, None)
            else:
                self._versions[job_id] = actual
        acks = [i for job_id, s in saves.items() if job_id not in conflicts for i in s.ack_ids]
        if acks:
            await db.executemany(
                "UPDATE inbox SET state = 'done', lease_until = NULL WHERE id = ?",
                [(i,) for i in acks],
            )
        return conflicts

    async def _write_appends(
        self, db: aiosqlite.Connection, appends: list[_Append]
    ) -> tuple[list[tuple[_Append, list[int] | BaseException]], list[_Written]]:
        """Insert the queued events; returns each append's outcome, to hand out after COMMIT,
        and what was written, to publish then."""
        if not appends:
            return [], []
        job_ids = list({a.job_id for a in appends})
        marks = ",".join("?" * len(job_ids))
        # Each job's last seq, and (the row with a NULL id) the last global seq: one query.
        bases: dict[str, int] = {}
        global_seq = 0
        for job_id, last in await db.execute_fetchall(
            f"SELECT j.id, (SELECT MAX(seq) FROM events e WHERE e.job_id = j.id) "
            f"FROM jobs j WHERE j.id IN ({marks}) "
            "UNION ALL SELECT NULL, seq FROM sqlite_sequence WHERE name = 'events'",
            job_ids,
        ):
            if job_id is None:
                global_seq = last or 0
            else:
                bases[job_id] = last or 0
        missing = set(job_ids) - set(bases)
        now = time.time()
        params: list[tuple[Any, ...]] = []
        published: list[_Written] = []
        results: list[tuple[_Append, list[int] | BaseException]] = []
        ts = datetime.fromtimestamp(now, UTC)
        for append in appends:
            job_id = append.job_id
            if job_id in missing:
                results.append((append, JobNotFoundError(job_id)))
                continue
            count = len(append.kinds)
            first = bases[job_id] + 1
            bases[job_id] += count
            seqs = list(range(first, first + count))
            globals_ = range(global_seq + 1, global_seq + count + 1)
            global_seq += count
            params.extend(
                zip(globals_, repeat(job_id), seqs, repeat(now), append.kinds, append.payloads)
            )
            results.append((append, seqs))
            published.append((append, seqs, globals_, ts))
        if params:
            await db.executemany(
                "INSERT INTO events (global_seq, job_id, seq, ts, kind, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                params,
            )
        return results, published

    async def flush(self) -> None:
        await self._flush()

    async def _flush(self) -> dict[str, StaleJobError]:
        if self._db is None:
            return {}
        waiter: asyncio.Future[dict[str, StaleJobError]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.append(waiter)
        self._wake.set()
        return await waiter

    # -- jobs ---------------------------------------------------------------------------------
    async def create_job(self, job: Job) -> Job:
        job.version = 1
        job.updated_at = utcnow()
        data, status, type_, tenant, workflow, parent, updated = _job_row(job)
        try:
            await self._transaction(
                [
                    (
                        f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (
                            job.id,
                            1,
                            status,
                            type_,
                            tenant,
                            workflow,
                            parent,
                            job.created_at.isoformat(),
                            updated,
                            data,
                        ),
                    )
                ]
            )
        except StateError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise DuplicateJobError(job.id) from exc.__cause__
            raise
        self._versions[job.id] = 1
        self._stamp(job)
        return job

    def _stamp(self, job: Job) -> Job:
        job._epoch = self._epochs.get(job.id, 0)
        return job

    def _unsaved(self, job_id: str) -> _Save | None:
        """A save of the job that is queued or being committed right now, if any."""
        return self._saves.get(job_id) or self._inflight.get(job_id)

    async def get_job(self, job_id: str) -> Job | None:
        pending = self._unsaved(job_id)
        if pending is not None:
            return self._stamp(Job.model_validate_json(pending.row[0]))
        rows = await self._read("SELECT version, data FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            return None
        version, data = rows[0]
        job = Job.model_validate_json(data)
        job.version = version
        pending = self._unsaved(job_id)  # a save may have been queued while we read
        if pending is not None:
            return self._stamp(Job.model_validate_json(pending.row[0]))
        if self._versions.get(job_id, 0) < version:
            self._versions[job_id] = version  # another process saved it since we last looked
        return self._stamp(job)

    async def save_job(self, job: Job, *, durable: bool = False, ack: Iterable[int] = ()) -> Job:
        known = self._versions.get(job.id)
        if known is None:
            rows = await self._read("SELECT version FROM jobs WHERE id = ?", (job.id,))
            if not rows:
                raise StaleJobError(job.id, job.version, None)
            known = self._versions.setdefault(job.id, rows[0][0])
        epoch = getattr(job, "_epoch", None)
        if job.version != known or (epoch is not None and epoch != self._epochs.get(job.id, 0)):
            raise StaleJobError(job.id, job.version, known)
        self._writer()
        job.version += 1
        job.updated_at = utcnow()
        self._versions[job.id] = job.version
        previous = self._saves.get(job.id)
        save = _Save(
            _job_row(job),
            job.version,
            base_version=previous.base_version if previous else known,
            ack_ids=[*(previous.ack_ids if previous else ()), *ack],
        )
        self._saves[job.id] = save
        self._stamp(job)
        if self._first_save_at is None:
            self._first_save_at = time.monotonic()
            self._wake.set()
        if durable or save.ack_ids:
            conflicts = await self._flush()
            if job.id in conflicts:
                raise conflicts[job.id]
        return job

    async def update_job(self, job_id: str, patch: Mapping[str, Any]) -> Job:
        current = await self.get_job(job_id)
        if current is None:
            raise JobNotFoundError(job_id)
        job = apply_patch(current, patch)
        job.version = current.version
        self._stamp(job)
        return await self.save_job(job, durable=True)

    async def _flush_pending_saves(self) -> None:
        if self._saves:
            await self._flush()

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
        await self._flush_pending_saves()
        where, params = self._job_filter(status, type, workflow_path, parent_id)
        sql = f"SELECT version, data FROM jobs{where} ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        elif offset:
            sql += " LIMIT -1 OFFSET ?"
            params.append(offset)
        jobs = []
        for version, data in await self._read(sql, params):
            job = Job.model_validate_json(data)
            job.version = version
            jobs.append(self._stamp(job))
        return jobs

    @staticmethod
    def _job_filter(
        status: str | Iterable[str] | None,
        type: str | None,
        workflow_path: str | None,
        parent_id: str | None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        statuses = status_filter(status)
        if statuses is not None:
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
            params += sorted(statuses)
        for column, value in (
            ("type", type),
            ("workflow_path", workflow_path),
            ("parent_id", parent_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(str(value))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    async def count_jobs(self, *, status: str | Iterable[str] | None = None) -> int:
        await self._flush_pending_saves()
        where, params = self._job_filter(status, None, None, None)
        rows = await self._read(f"SELECT COUNT(*) FROM jobs{where}", params)
        return int(rows[0][0])

    async def delete_job(self, job_id: str) -> bool:
        await self._flush_pending_saves()
        counts = await self._transaction(
            [
                ("DELETE FROM events WHERE job_id = ?", (job_id,)),
                ("DELETE FROM jobs WHERE id = ?", (job_id,)),
            ]
        )
        self._versions.pop(job_id, None)
        self._epochs[job_id] = self._epochs.get(job_id, 0) + 1
        return counts[1] > 0

    # -- event log ----------------------------------------------------------------------------
    async def append_events(self, job_id: str, events: Sequence[EventInput]) -> list[int]:
        self._writer()
        if not events:
            return []
        kinds = [str(kind) for kind, _ in events]
        datas = [data for _, data in events]
        payloads = [_encode(d) for d in datas]  # fails here, in the caller, if not JSON-able
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._appends.append(_Append(job_id, kinds, payloads, datas, done))
        self._wake.set()
        return await done

    async def read_events(
        self, job_id: str, *, after_seq: int = 0, limit: int = 1000, kinds: Iterable[str] = ()
    ) -> list[JobEvent]:
        wanted = sorted({str(k) for k in kinds})
        sql = "SELECT global_seq, job_id, seq, ts, kind, data FROM events WHERE job_id = ? "
        params: list[Any] = [job_id]
        if wanted:
            sql += f"AND kind IN ({','.join('?' * len(wanted))}) "
            params += wanted
        sql += "AND seq > ? ORDER BY seq LIMIT ?"
        params += [after_seq, limit]
        return [_event(row) for row in await self._read(sql, params)]

    async def read_last_events(self, job_id: str, limit: int = 1000) -> list[JobEvent]:
        rows = await self._read(
            "SELECT global_seq, job_id, seq, ts, kind, data FROM events WHERE job_id = ? "
            "ORDER BY seq DESC LIMIT ?",
            (job_id, limit),
        )
        return [_event(row) for row in reversed(rows)]

    async def read_all_events(
        self, *, after_global_seq: int = 0, limit: int = 1000
    ) -> list[JobEvent]:
        rows = await self._read(
            "SELECT global_seq, job_id, seq, ts, kind, data FROM events WHERE global_seq > ? "
            "ORDER BY global_seq LIMIT ?",
            (after_global_seq, limit),
        )
        return [_event(row) for row in rows]

    async def last_seq(self, job_id: str) -> int:
        rows = await self._read("SELECT MAX(seq) FROM events WHERE job_id = ?", (job_id,))
        return int(rows[0][0] or 0)

    async def last_global_seq(self) -> int:
        rows = await self._read("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        return int(rows[0][0]) if rows else 0

    # -- logs ---------------------------------------------------------------------------------
    async def get_log(self, job_id: str, start: int = 0, end: int | None = None) -> list[str]:
        limit = -1 if end is None else max(0, end - start)
        rows = await self._read(
            "SELECT data FROM events WHERE job_id = ? AND kind = 'log' ORDER BY seq "
            "LIMIT ? OFFSET ?",
            (job_id, limit, start),
        )
        return [json.loads(data)["line"] for (data,) in rows]

    async def log_length(self, job_id: str) -> int:
        rows = await self._read(
            "SELECT COUNT(*) FROM events WHERE job_id = ? AND kind = 'log'", (job_id,)
        )
        return int(rows[0][0])
