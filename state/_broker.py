"""Push delivery of committed events to in-process subscribers, with bounded memory.

A backend publishes each committed batch once. Every subscription has a bounded buffer; a
subscriber that falls behind loses its buffer and re-reads from the store from its cursor, so
it misses nothing, sees nothing twice, and never makes the publisher wait or grow without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from state.models import JobEvent

__all__ = ["EventBroker"]

#: Reads the store for events after a cursor: ``(job_id, cursor, limit) -> events``.
BacklogReader = Callable[[str | None, int, int], Awaitable[list[JobEvent]]]


class _Subscription:
    __slots__ = ("buffer", "job_id", "overflowed", "wake")

    def __init__(self, job_id: str | None) -> None:
        self.job_id = job_id
        self.buffer: deque[JobEvent] = deque()
        self.overflowed = False
        self.wake = asyncio.Event()


class EventBroker:
    """Fans committed events out to subscriptions; one per backend."""

    def __init__(self, reader: BacklogReader, *, buffer_size: int = 10_000) -> None:
        self._reader = reader
        self._buffer_size = buffer_size
        self._by_job: dict[str | None, set[_Subscription]] = {}

    @property
    def has_subscribers(self) -> bool:
        return bool(self._by_job)

    def wants(self, job_id: str) -> bool:
        """Whether anyone listens to this job (or to every job)."""
        return job_id in self._by_job or None in self._by_job

    def publish(self, events: list[JobEvent]) -> None:
        """Hand committed events to subscribers. Never blocks."""
        for event in events:
            for key in (event.job_id, None):
                for sub in self._by_job.get(key, ()):
                    if sub.overflowed:
                        continue
                    if len(sub.buffer) >= self._buffer_size:
                        sub.buffer.clear()
                        sub.overflowed = True
                    else:
                        sub.buffer.append(event)
                    sub.wake.set()

    def close_all(self) -> None:
        """Wake every subscriber so it can notice the backend closed."""
        for subs in self._by_job.values():
            for sub in subs:
                sub.wake.set()

    async def subscribe(
        self, job_id: str | None, after: int, *, is_open: Callable[[], bool]
    ) -> AsyncIterator[list[JobEvent]]:
        """Yield batches: the backlog after ``after``, then live events as they commit."""
        sub = _Subscription(job_id)
        self._by_job.setdefault(job_id, set()).add(sub)

        def cursor_of(event: JobEvent) -> int:
            return event.seq if job_id is not None else event.global_seq

        cursor = after
        try:
            catch_up = True
            while is_open():
                if catch_up:
                    sub.overflowed = False
                    sub.buffer.clear()
                    while True:
                        batch = await self._reader(job_id, cursor, 1000)
                        if not batch:
                            break
                        cursor = cursor_of(batch[-1])
                        yield batch
                    catch_up = False
                if sub.buffer:
                    fresh = [e for e in sub.buffer if cursor_of(e) > cursor]
                    sub.buffer.clear()
                    if fresh:
                        cursor = cursor_of(fresh[-1])
                        yield fresh
                    continue
                if sub.overflowed:
                    catch_up = True
                    continue
                sub.wake.clear()
                await sub.wake.wait()
                if sub.overflowed:
                    catch_up = True
        finally:
            subs = self._by_job.get(job_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_job[job_id]
