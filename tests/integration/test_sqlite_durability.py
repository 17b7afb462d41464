"""The SQLite backend against real files, real crashes and a second process."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from state import (
    Job,
    JobStatus,
    SqliteStateBackend,
    StateCorruptError,
    StateVersionError,
)
from state.sqlite import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration._state_worker", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_pragmas_and_schema_version(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with SqliteStateBackend(db, synchronous="full"):
        pass
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()
    store = SqliteStateBackend(db, synchronous="full")
    await store.open()
    assert store._db is not None
    rows = await store._db.execute_fetchall("PRAGMA synchronous")
    assert next(iter(rows))[0] == 2  # FULL
    rows = await store._db.execute_fetchall("PRAGMA foreign_keys")
    assert next(iter(rows))[0] == 1
    await store.close()


async def test_write_behind_saves_survive_a_clean_close(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with SqliteStateBackend(db, flush_interval=60) as store:
        job = await store.create_job(Job(id="j"))
        for n in range(100):
            job.params["n"] = n
            await store.save_job(job)
    async with SqliteStateBackend(db) as store:
        again = await store.get_job("j")
        assert again is not None and again.params["n"] == 99 and again.version == 101


async def test_saves_are_coalesced_but_flushed_within_the_interval(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with SqliteStateBackend(db, flush_interval=0.05) as store:
        job = await store.create_job(Job(id="j"))
        for n in range(500):
            job.params["n"] = n
            await store.save_job(job)
        deadline = time.monotonic() + 5
        seen = None
        while time.monotonic() < deadline:
            # What another process would see: the committed row.
            con = sqlite3.connect(db)
            seen = con.execute("SELECT version FROM jobs WHERE id = 'j'").fetchone()[0]
            con.close()
            if seen == 501:
                break
            await asyncio.sleep(0.01)
        assert seen == 501


async def test_a_database_from_a_newer_coro_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with SqliteStateBackend(db):
        pass
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(StateVersionError, match="newer coro") as info:
        await SqliteStateBackend(db).open()
    assert str(db) in info.value.message
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


async def test_an_old_empty_database_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    sqlite3.connect(db).close()  # a file at user_version 0 with no tables
    async with SqliteStateBackend(db) as store:
        await store.create_job(Job(id="j"))
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


def test_a_file_that_is_not_a_database_gets_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"this is not sqlite at all\n" * 100)
    with pytest.raises(StateCorruptError) as info:
        asyncio.run(SqliteStateBackend(db).open())
    message = info.value.message
    assert str(db) in message and "mv " in message and "broken" in message
    assert db.read_bytes().startswith(b"this is not sqlite")


async def test_a_truncated_database_gets_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with SqliteStateBackend(db) as store:
        await store.create_job(Job(id="j"))
        for n in range(200):
            await store.append_logs("j", [f"line {n} " + "x" * 500] * 10)
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = db.stat().st_size
    with db.open("r+b") as fh:
        fh.truncate(size // 3)
    with pytest.raises(StateCorruptError) as info:
        store = SqliteStateBackend(db)
        await store.open()
        await store.read_events("j", limit=10_000)
    assert str(db) in info.value.message and "mv " in info.value.message


async def test_kill_9_loses_no_acknowledged_append(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    acknowledged = 0
    with _worker("loop", str(db)) as child:
        assert child.stdout is not None and child.stderr is not None
        try:
            deadline = time.monotonic() + 30
            while acknowledged < 600 and time.monotonic() < deadline:
                line = child.stdout.readline()
                if not line:
                    break
                acknowledged = int(line.split()[1])
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        # Lines printed before the kill landed may still be in the pipe: they count too.
        for line in child.stdout.read().splitlines():
            if line.startswith("appended "):
                acknowledged = int(line.split()[1])
        errors = child.stderr.read()
    assert acknowledged >= 600, errors

    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    async with SqliteStateBackend(db) as store:
        seqs = [e.seq for e in await store.read_events("crash-job", limit=100_000)]
        assert seqs[:acknowledged] == list(range(1, acknowledged + 1))
        job = await store.get_job("crash-job")
        assert job is not None and job.params["n"] >= 1
        # The store is usable after the crash.
        assert await store.append_log("crash-job", "after restart") == len(seqs) + 1


async def test_two_processes_cannot_lose_each_others_update(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with SqliteStateBackend(db) as store:
        await store.create_job(Job(id="race-job", status=JobStatus.PLANNING))
    outcomes = {}
    with _worker("race", str(db), "first") as first, _worker("race", str(db), "second") as second:
        for child in (first, second):
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "loaded"
        for name, child in (("first", first), ("second", second)):
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write("go\n")
            child.stdin.flush()
            outcomes[name] = child.stdout.readline().strip()
    assert outcomes["first"] == "saved"
    assert outcomes["second"].startswith("stale")
    assert "another writer changed it first" in outcomes["second"]
    async with SqliteStateBackend(db) as store:
        job = await store.get_job("race-job")
        assert job is not None and job.params["winner"] == "first" and job.version == 2
