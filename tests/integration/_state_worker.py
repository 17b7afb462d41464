"""Child processes for the SQLite durability tests (run as ``python -m``).

``loop DB``: saves a job and appends events forever, printing ``appended <seq>`` after each
append returns, so the parent knows exactly which appends were acknowledged.
``race DB NAME``: loads the job, says ``loaded``, waits for a line on stdin, saves a change
durably and prints ``saved`` or ``stale``.
"""

from __future__ import annotations

import asyncio
import sys

from state import Job, SqliteStateBackend, StaleJobError


async def loop(path: str) -> None:
    store = SqliteStateBackend(path)
    await store.open()
    job = await store.get_job("crash-job")
    if job is None:
        job = await store.create_job(Job(id="crash-job"))
    n = 0
    while True:
        n += 1
        job.params["n"] = n
        job.params["blob"] = "x" * 4000
        await store.save_job(job)
        seqs = await store.append_events(
            "crash-job", [("log", {"line": f"line {n}.{i}"}) for i in range(3)]
        )
        print(f"appended {seqs[-1]}", flush=True)


async def race(path: str, name: str) -> None:
    store = SqliteStateBackend(path)
    await store.open()
    job = await store.get_job("race-job")
    assert job is not None
    print("loaded", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    job.params["winner"] = name
    try:
        await store.save_job(job, durable=True)
        print("saved", flush=True)
    except StaleJobError as exc:
        print(f"stale {exc.message}", flush=True)
    await store.close()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    asyncio.run(loop(*args) if command == "loop" else race(*args))
