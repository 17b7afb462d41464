"""The SQLite schema, its forward migrations, and opening a database file safely."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path
from typing import Literal

import aiosqlite

from state.errors import StateCorruptError, StateError, StateVersionError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "connect", "corrupt_error"]

_HEADER = b"SQLite format 3\x00"

#: Forward migrations; ``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1``.
#: Never edit a released entry: add a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id            TEXT PRIMARY KEY,
        version       INTEGER NOT NULL,
        status        TEXT NOT NULL,
        type          TEXT NOT NULL,
        tenant_id     TEXT,
        workflow_path TEXT,
        parent_id     TEXT,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        data          TEXT NOT NULL
    );
    CREATE INDEX jobs_status ON jobs(status);
    CREATE INDEX jobs_type ON jobs(type);
    CREATE INDEX jobs_parent ON jobs(parent_id) WHERE parent_id IS NOT NULL;
    CREATE INDEX jobs_created ON jobs(created_at);

    CREATE TABLE events (
        global_seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id     TEXT NOT NULL,  -- no FOREIGN KEY: checked once per batch, not per row
        seq        INTEGER NOT NULL,
        ts         REAL NOT NULL,
        kind       TEXT NOT NULL,
        data       TEXT NOT NULL,
        UNIQUE (job_id, seq)
    );
    CREATE INDEX events_job_kind ON events(job_id, kind, seq);

    CREATE TABLE external_refs (
        plugin_id   TEXT NOT NULL,
        kind        TEXT NOT NULL,
        repo_key    TEXT NOT NULL DEFAULT '',
        external_id TEXT NOT NULL,
        url         TEXT,
        job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        PRIMARY KEY (plugin_id, kind, repo_key, external_id)
    );
    CREATE INDEX external_refs_job ON external_refs(job_id);

    CREATE TABLE pr_jobs (
        pr_id  TEXT PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE
    );
    CREATE TABLE ticket_jobs (
        ticket_id TEXT PRIMARY KEY,
        job_id    TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE
    );
    CREATE TABLE repo_jobs (
        repo_slug TEXT PRIMARY KEY,
        job_id    TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE
    );

    CREATE TABLE proposals (
        tenant_id  TEXT NOT NULL,
        id         TEXT NOT NULL,
        job_id     TEXT NOT NULL,
        status     TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        data       TEXT NOT NULL,
        PRIMARY KEY (tenant_id, id)
    );
    CREATE INDEX proposals_status ON proposals(tenant_id, status);

    CREATE TABLE investigations (
        id         TEXT PRIMARY KEY,
        status     TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        data       TEXT NOT NULL
    );
    CREATE INDEX investigations_updated ON investigations(updated_at);

    CREATE TABLE inbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        dedupe_key  TEXT NOT NULL UNIQUE,
        job_id      TEXT,
        state       TEXT NOT NULL DEFAULT 'pending',
        attempts    INTEGER NOT NULL DEFAULT 0,
        claimed_by  TEXT,
        lease_until REAL,
        received_at REAL NOT NULL,
        data        TEXT NOT NULL
    );
    CREATE INDEX inbox_open ON inbox(state, job_id, id) WHERE state != 'done';
    """,
    # 1 -> 2: pull requests of the local SCM (ids count from 1 per repository).
    """
    CREATE TABLE local_prs (
        repo       TEXT NOT NULL,
        id         INTEGER NOT NULL,
        version    INTEGER NOT NULL,
        state      TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        data       TEXT NOT NULL,
        PRIMARY KEY (repo, id)
    );
    CREATE INDEX local_prs_state ON local_prs(state, created_at);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

#: Files up to this size get a full ``PRAGMA quick_check`` when they are opened.
QUICK_CHECK_MAX_BYTES = 256 * 1024 * 1024


def corrupt_error(path: Path, detail: str) -> StateCorruptError:
    """The error a damaged database file gets: what is wrong and how to move it aside."""
    aside = path.with_name(f"{path.name}.broken-{date.today().isoformat()}")
    return StateCorruptError(
        f"{path} is damaged or is not a coro database ({detail}).\n"
        "Move it aside (with its -wal and -shm files, if any) and coro will start with an "
        f"empty one:\n    mv {path} {aside}\n"
        "Jobs and logs in the old file are not carried over; `sqlite3 OLD .recover` may "
        "salvage some of them."
    )


def _check_header(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from exc
    if head and head != _HEADER:
        raise corrupt_error(path, "the file does not start with the SQLite header")


async def connect(
    path: Path,
    *,
    synchronous: Literal["normal", "full"] = "normal",
    busy_timeout_ms: int = 10_000,
    readonly: bool = False,
) -> aiosqlite.Connection:
    """Open ``path`` with coro's pragmas, migrating a writer connection to the current schema.

    Raises:
        StateCorruptError: the file is damaged or is not a SQLite database.
        StateVersionError: the file was written by a newer coro (it is left untouched).
    """
    _check_header(path)
    try:
        if readonly:
            db = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        else:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            db = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise StateError(f"cannot open {path}: {exc}") from exc
    try:
        await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await db.execute("PRAGMA foreign_keys = ON")
        await db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        if not readonly:
            await _check_version(db, path)
            await db.execute("PRAGMA journal_mode = WAL")
            await _integrity(db, path)
            await _migrate(db)
    except sqlite3.DatabaseError as exc:
        await db.close()
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise StateError(f"{path} is locked by another process: {exc}") from exc
        raise corrupt_error(path, str(exc)) from exc
    except BaseException:
        await db.close()
        raise
    return db


async def _check_version(db: aiosqlite.Connection, path: Path) -> None:
    rows = await db.execute_fetchall("PRAGMA user_version")
    found = int(next(iter(rows))[0])
    if found > SCHEMA_VERSION:
        raise StateVersionError(
            f"{path} uses schema version {found}, but this coro only knows versions up to "
            f"{SCHEMA_VERSION}: it was written by a newer coro. Upgrade coro, or point "
            "CORO_HOME at another directory. The file has not been changed."
        )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def _integrity(db: aiosqlite.Connection, path: Path) -> None:
    size = _file_size(path)
    if size == 0 or size > QUICK_CHECK_MAX_BYTES:
        return
    rows = list(await db.execute_fetchall("PRAGMA quick_check(5)"))
    problems = [str(r[0]) for r in rows if r[0] != "ok"]
    if problems:
        raise corrupt_error(path, "; ".join(problems))


async def _migrate(db: aiosqlite.Connection) -> None:
    rows = await db.execute_fetchall("PRAGMA user_version")
    current = int(next(iter(rows))[0])
    for version in range(current, SCHEMA_VERSION):
        await db.execute("BEGIN IMMEDIATE")
        try:
            # The version is re-read under the write lock: another process may have migrated.
            rows = await db.execute_fetchall("PRAGMA user_version")
            if int(next(iter(rows))[0]) != version:
                await db.execute("ROLLBACK")
                continue
            for statement in _statements(MIGRATIONS[version]):
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {version + 1}")
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (migrations hold no ``;`` inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]
