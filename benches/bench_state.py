"""Benchmark: the SQLite state backend against bare aiosqlite loops measured in the same run.

Figures (issue "Foundation"):
- job saves of a 5 KB job: >= 0.8x a bare aiosqlite UPDATE+COMMIT loop for one job;
- >= 10,000 saves/s across 50 jobs saved concurrently;
- events in short batched transactions: >= 100,000/s and >= 0.6x a bare executemany of the
  same rows in transactions of the same size;
- reading the last 1,000 events of a job that has 100,000: under 20 ms.

Run: ``.venv/bin/python benches/bench_state.py`` (or ``benches/run.py`` for every benchmark).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiosqlite

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benches._harness import Figure, median, p
from state import Job, SqliteStateBackend

SAVES = 2_000
EVENTS = 200_000
BATCH = 500


def _job(job_id: str) -> Job:
    job = Job(id=job_id, params={"repo": "acme/svc", "blob": "x" * 4_600})
    return job


async def _bare_updates(path: Path, row: str, count: int) -> float:
    db = await aiosqlite.connect(path, isolation_level=None)
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = NORMAL")
    await db.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, v INT, data TEXT)")
    await db.execute("INSERT OR REPLACE INTO t VALUES ('j', 0, ?)", (row,))
    start = time.perf_counter()
    for i in range(count):
        await db.execute("BEGIN")
        await db.execute("UPDATE t SET v = ?, data = ? WHERE id = 'j'", (i, row))
        await db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    await db.close()
    return count / elapsed


async def _bare_executemany(path: Path, rows: list[tuple[str, int, float, str, str]]) -> float:
    db = await aiosqlite.connect(path, isolation_level=None)
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = NORMAL")
    await db.execute(
        "CREATE TABLE IF NOT EXISTS e (g INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT, "
        "seq INT, ts REAL, kind TEXT, data TEXT, UNIQUE (job_id, seq))"
    )
    await db.execute("CREATE INDEX IF NOT EXISTS e_k ON e(job_id, kind, seq)")
    start = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        await db.execute("BEGIN")
        await db.executemany(
            "INSERT INTO e (job_id, seq, ts, kind, data) VALUES (?, ?, ?, ?, ?)",
            rows[i : i + BATCH],
        )
        await db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    await db.close()
    return len(rows) / elapsed


async def bench_saves(tmp: Path) -> list[Figure]:
    row = _job("j").model_dump_json()
    bare = await _bare_updates(tmp / "bare-saves.db", row, SAVES)
    async with SqliteStateBackend(tmp / "saves.db") as store:
        job = await store.create_job(_job("one"))
        start = time.perf_counter()
        for i in range(SAVES):
            job.params["n"] = i
            await store.save_job(job)
        await store.flush()
        one = SAVES / (time.perf_counter() - start)

        jobs = [await store.create_job(_job(f"job-{i}")) for i in range(50)]

        async def saver(j: Job, count: int) -> None:
            for i in range(count):
                j.params["n"] = i
                await store.save_job(j)
                if i % 20 == 0:
                    await asyncio.sleep(0)  # a real runner yields between saves

        per_job = 400
        start = time.perf_counter()
        await asyncio.gather(*(saver(j, per_job) for j in jobs))
        await store.flush()
        many = 50 * per_job / (time.perf_counter() - start)
    return [
        Figure("job saves, one 5 KB job", one, "saves/s", ">= 0.8x bare", one >= 0.8 * bare,
               baseline=bare, note="bare: aiosqlite UPDATE + COMMIT per save"),
        Figure("job saves, 50 jobs concurrently", many, "saves/s", ">= 10,000/s",
               many >= 10_000),
    ]  # fmt: skip


def _event_rows(job_id: str, count: int) -> list[dict[str, str]]:
    return [{"line": f"[coding] running pytest -q tests/test_rate_limit.py ... {i}"}
            for i in range(count)]  # fmt: skip


async def bench_events(tmp: Path) -> list[Figure]:
    datas = _event_rows("j", EVENTS)
    now = time.time()
    bare_rows = [
        ("j", i + 1, now, "log", json.dumps(d, separators=(",", ":"))) for i, d in enumerate(datas)
    ]
    bare = await _bare_executemany(tmp / "bare-events.db", bare_rows)
    async with SqliteStateBackend(tmp / "events.db") as store:
        await store.create_job(Job(id="j"))
        start = time.perf_counter()
        for i in range(0, EVENTS, BATCH):
            await store.append_events("j", [("log", d) for d in datas[i : i + BATCH]])
        batched = EVENTS / (time.perf_counter() - start)

        await store.create_job(Job(id="k"))
        producers, each = 50, 400

        async def producer(n: int) -> None:
            for i in range(each):
                await store.append_event("k", "log", {"line": f"producer {n} line {i}"})

        start = time.perf_counter()
        await asyncio.gather(*(producer(n) for n in range(producers)))
        concurrent = producers * each / (time.perf_counter() - start)

        samples = []
        for _ in range(30):
            t0 = time.perf_counter()
            tail = await store.read_last_events("j", 1000)
            samples.append((time.perf_counter() - t0) * 1000)
        assert len(tail) == 1000 and tail[-1].seq == EVENTS
    return [
        Figure(f"events, batches of {BATCH}", batched, "events/s",
               ">= 100,000/s and >= 0.6x bare", batched >= 100_000 and batched >= 0.6 * bare,
               baseline=bare, note="bare: aiosqlite executemany, same rows and batch size"),
        Figure("events, 50 producers appending one at a time", concurrent, "events/s",
               "(informational: group commit)", True),
        Figure("read last 1,000 of 100,000+ events (median)", median(samples), "ms", "< 20 ms",
               median(samples) < 20, note=f"p95 {p(samples, 0.95):.1f} ms"),
    ]  # fmt: skip


async def main() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="coro-bench-state-") as tmp:
        figures = await bench_saves(Path(tmp))
        figures += await bench_events(Path(tmp))
    return figures


if __name__ == "__main__":
    for figure in asyncio.run(main()):
        print(figure.line())
