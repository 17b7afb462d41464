"""Server-sent events from the event log: one job's events, its log lines, or every job's.

A stream subscribes to the store from the client's cursor (``Last-Event-ID`` or ``?after=``),
so it sends the backlog and then live events with nothing missed or repeated across a
reconnect. Each batch the store hands over becomes one write. While nothing happens a comment
line is sent every ``heartbeat`` seconds. A job stream ends after the job reaches a terminal
status, with a final ``done`` event carrying that status. A client that stops reading is
disconnected by the server (``ApiServer(stall_seconds=...)``) and resumes from its last ``id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from state import EventKind, JobEvent, JobStatus

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from state import StateBackend

__all__ = ["SseResponse", "all_jobs_frames", "job_frames"]

_PING = b": ping\n\n"
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]


def event_frame(event: JobEvent, cursor: int) -> bytes:
    """One event as an SSE frame: ``id`` is the cursor, ``data`` the event's JSON."""
    kind = event.kind
    if "\n" in kind or "\r" in kind:
        kind = kind.replace("\n", " ").replace("\r", " ")
    # The model's serializer directly: what model_dump_json() returns, as bytes, in 60% of the time.
    data = JobEvent.__pydantic_serializer__.to_json(event)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (cursor, kind.encode(), data)


def log_frame(event: JobEvent) -> bytes:
    """A ``log`` event as an SSE frame whose ``data`` is the line itself."""
    line = str(event.data.get("line", ""))
    data = "".join(f"data: {part}\n" for part in line.replace("\r\n", "\n").split("\n"))
    return f"id: {event.seq}\n{data}\n".encode()


def done_frame(status: str) -> bytes:
    return f"event: done\ndata: {json.dumps({'status': status})}\n\n".encode()


def _terminal(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return JobStatus(value).is_terminal
    except ValueError:
        return False


async def job_frames(
    store: StateBackend, job_id: str, after: int, *, logs_only: bool = False
) -> AsyncIterator[bytes]:
    """One job's events after ``after`` (a ``seq``), until it ends; one chunk per batch.

    A terminal status event met in the backlog of a job that has since been resumed does not
    end the stream: the job's current status decides.
    """
    stream = store.subscribe(job_id, after=after)
    try:
        job = await store.get_job(job_id)
        if job is None:
            return
        end_at: int | None = None
        if job.status.is_terminal:
            end_at = await store.last_seq(job_id)
            if after >= end_at:
                yield done_frame(job.status.value)
                return
        async for batch in stream:
            if logs_only:
                parts = [log_frame(e) for e in batch if e.kind == EventKind.LOG]
            else:
                parts = [event_frame(e, e.seq) for e in batch]
            final: str | None = None
            for event in batch:
                if event.kind == EventKind.STATUS and _terminal(event.data.get("to")):
                    current = await store.get_job(job_id)
                    if current is None or current.status.is_terminal:
                        final = str(event.data["to"]) if current is None else current.status
            if end_at is not None and batch[-1].seq >= end_at:
                final = final or job.status.value
            if final is not None:
                parts.append(done_frame(str(final)))
                yield b"".join(parts)
                return
            if parts:
                yield b"".join(parts)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def all_jobs_frames(store: StateBackend, after: int) -> AsyncIterator[bytes]:
    """Every job's events after ``after`` (a ``global_seq``); ``id`` is the ``global_seq``."""
    stream = store.subscribe(None, after=after)
    try:
        async for batch in stream:
            yield b"".join(event_frame(event, event.global_seq) for event in batch)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


class SseResponse:
    """An ASGI response sending ``frames`` as they come, with heartbeats between them.

    It ends when the frames end, when the client disconnects, or when ``closing`` is set
    (the server is shutting down). One task sends the frames and another the heartbeats, so
    a batch costs one write and no task or timer of its own.
    """

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        heartbeat: float,
        closing: asyncio.Event,
        retry_ms: int = 1000,
    ) -> None:
        self.frames = frames
        self.heartbeat = heartbeat
        self.closing = closing
        self.retry_ms = retry_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        first = f"retry: {self.retry_ms}\n\n".encode()
        await send({"type": "http.response.body", "body": first, "more_body": True})
        loop = asyncio.get_running_loop()
        writing = asyncio.Lock()
        last_write = loop.time()

        async def write(body: bytes) -> None:
            nonlocal last_write
            async with writing:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            last_write = loop.time()

        async def pump() -> None:
            async for chunk in self.frames:
                await write(chunk)

        async def beat() -> None:
            while True:
                quiet = loop.time() - last_write
                if quiet < self.heartbeat:
                    await asyncio.sleep(self.heartbeat - quiet)
                else:
                    await write(_PING)

        sending = asyncio.ensure_future(pump())
        tasks = [sending, asyncio.ensure_future(beat())]
        stop = asyncio.ensure_future(_until_gone(receive, self.closing))
        try:
            await asyncio.wait({sending, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*tasks, stop]:
                task.cancel()
            await asyncio.gather(*tasks, stop, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.frames.aclose()  # type: ignore[attr-defined]
        if sending.done() and not sending.cancelled():
            sending.result()  # the frames failed: let the server log it and drop the connection
        ended = sending.done() and not sending.cancelled()
        if ended or self.closing.is_set():  # a disconnected client has nothing more to hear
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_gone(receive: Receive, closing: asyncio.Event) -> None:
    """Return when the client disconnects or the server starts closing."""

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    waits = [asyncio.ensure_future(gone()), asyncio.ensure_future(closing.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
