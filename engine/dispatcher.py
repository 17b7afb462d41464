"""The dispatcher: one active run per job, bounded concurrency across jobs, FIFO order.

A job dispatched while it is already running is remembered and run once more when the current
run ends (the original's "deferred dispatch"), so an event that arrives at the very end of a
run is never stranded.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)


class Dispatcher:
    """Starts job runs as slots free up.

    Args:
        run: runs one job until it parks or ends.
        max_concurrent: how many jobs may run at once (``jobs.maxConcurrent``).
    """

    def __init__(self, run: Callable[[str], Awaitable[object]], *, max_concurrent: int) -> None:
        self._run = run
        self.max_concurrent = max_concurrent
        self._queue: deque[str] = deque()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._closed = False
        self._cut = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def dispatch(self, job_id: str) -> None:
        """Run the job as soon as a slot is free (once more, if it is running now)."""
        if self._closed:
            return
        if job_id in self._running:
            self._again.add(job_id)
        elif job_id not in self._queue:
            self._queue.append(job_id)
        self._pump()

    def set_max_concurrent(self, value: int) -> None:
        self.max_concurrent = value
        self._pump()

    def _pump(self) -> None:
        while self._queue and len(self._running) < self.max_concurrent and not self._closed:
            job_id = self._queue.popleft()
            self._idle.clear()
            task = asyncio.create_task(self._guarded(job_id), name=f"coro-job-{job_id}")
            self._running[job_id] = task

    async def _guarded(self, job_id: str) -> None:
        try:
            await self._run(job_id)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("run of job %s failed", job_id)
        finally:
            self._running.pop(job_id, None)
            if job_id in self._again:
                self._again.discard(job_id)
                if not self._closed:
                    self._queue.appendleft(job_id)
            self._pump()
            if not self._running and not self._queue:
                self._idle.set()

    def cut(self) -> None:
        """End the grace period of a :meth:`close` in progress: cancel the runs now."""
        self._cut.set()

    async def cancel(self, job_id: str) -> bool:
        """Stop the job's run (or take it off the queue). True if there was one."""
        self._again.discard(job_id)
        if job_id in self._queue:
            self._queue.remove(job_id)
            return True
        task = self._running.get(job_id)
        if task is None:
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True

    async def wait_idle(self) -> None:
        """Return when nothing runs and nothing waits to run (benchmarks, headless scripts)."""
        await self._idle.wait()

    async def close(self, *, grace: float) -> list[str]:
        """Stop taking jobs; let running ones finish for ``grace`` s, then cancel them.

        Returns the ids of the jobs that had to be cancelled.
        """
        self._closed = True
        self._queue.clear()
        tasks = dict(self._running)
        if not tasks:
            return []
        finished = asyncio.ensure_future(asyncio.wait(tasks.values()))
        cut = asyncio.ensure_future(self._cut.wait())
        try:
            await asyncio.wait({finished, cut}, timeout=grace, return_when="FIRST_COMPLETED")
        finally:
            finished.cancel()  # cancels the wait, not the runs
            cut.cancel()
        pending = {task for task in tasks.values() if not task.done()}
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return [job_id for job_id, task in tasks.items() if task in pending]
