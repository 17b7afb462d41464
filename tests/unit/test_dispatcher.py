"""The dispatcher: bounded concurrency, FIFO order, deferred re-dispatch, idle wait."""

from __future__ import annotations

import asyncio

from engine.dispatcher import Dispatcher


async def test_runs_in_order_within_the_limit_and_reports_idle() -> None:
    started: list[str] = []
    running = 0
    peak = 0

    async def run(job_id: str) -> None:
        nonlocal running, peak
        started.append(job_id)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    dispatcher = Dispatcher(run, max_concurrent=2)
    for job_id in ("a", "b", "c", "d"):
        dispatcher.dispatch(job_id)
    async with asyncio.timeout(5):
        await dispatcher.wait_idle()
    assert started == ["a", "b", "c", "d"]
    assert peak == 2


async def test_dispatch_while_running_runs_once_more() -> None:
    runs: list[str] = []
    release = asyncio.Event()

    async def run(job_id: str) -> None:
        runs.append(job_id)
        if len(runs) == 1:
            await release.wait()

    dispatcher = Dispatcher(run, max_concurrent=1)
    dispatcher.dispatch("a")
    await asyncio.sleep(0)
    dispatcher.dispatch("a")
    dispatcher.dispatch("a")  # folded into the one deferred run
    release.set()
    async with asyncio.timeout(5):
        await dispatcher.wait_idle()
    assert runs == ["a", "a"]
