"""The API's SSE streams: resume with Last-Event-ID, close at the end, the all-jobs feed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from engine.api import ApiServer
from engine.runtime import Engine
from state import JobStatus
from tests.integration.test_api import Api, running_api
from tests.support.engine import ScriptedExecutor, write_config, write_intelligence


@pytest.fixture
async def api(coro_home: Path) -> AsyncIterator[Api]:
    async with running_api(coro_home) as running:
        yield running


@dataclass
class Frame:
    id: str | None = None
    event: str = "message"
    data: list[str] = field(default_factory=list)
    comment: bool = False

    def json(self) -> Any:
        return json.loads("\n".join(self.data))


async def frames(response: httpx2.Response) -> AsyncIterator[Frame]:
    """Parse an SSE body into frames; a comment line (heartbeat) is a frame of its own."""
    frame = Frame()
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield Frame(comment=True)
        elif line == "":
            if frame.data or frame.id is not None:
                yield frame
            frame = Frame()
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                frame.id = value
            elif name == "event":
                frame.event = value
            elif name == "data":
                frame.data.append(value)


async def job_seqs(engine: Engine, job_id: str) -> list[int]:
    return [e.seq for e in await engine.store.read_events(job_id, limit=10_000)]


async def test_a_cut_stream_resumes_with_last_event_id_without_gap_or_duplicate(api: Api) -> None:
    await api.create(jobId="sse-job", interactive=True)
    assert await api.settle("sse-job") is JobStatus.AWAITING_DEVELOPER_INPUT
    received: list[int] = []
    with anyio.fail_after(10):
        async with api.client.stream("GET", "/jobs/sse-job/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for frame in frames(response):
                if frame.id is not None:
                    assert int(frame.id) == frame.json()["seq"]
                    received.append(int(frame.id))
                if len(received) == 3:
                    break  # the connection is dropped mid-stream
    assert received == [1, 2, 3]

    ended = False
    with anyio.fail_after(20):
        headers = {"Last-Event-ID": str(received[-1])}
        async with api.client.stream("GET", "/jobs/sse-job/events", headers=headers) as response:
            approved = False
            async for frame in frames(response):
                if frame.comment:
                    if not approved:  # the backlog is sent; now the job moves on, live
                        approved = True
                        reply = await api.client.post("/jobs/sse-job/approve", json={})
                        assert reply.status_code == 200
                    continue
                if frame.event == "done":
                    assert frame.json() == {"status": "complete"}
                    ended = True
                    continue
                assert frame.id is not None
                received.append(int(frame.id))
    assert ended  # ... and the server closed the stream after the done frame
    assert received == await job_seqs(api.engine, "sse-job")
    assert received == list(range(1, len(received) + 1))


async def test_the_log_stream_sends_lines_and_ends_with_the_status(api: Api) -> None:
    api.executor.script["spec"] = [[("log", {"message": "first"}), ("log", {"message": "a\nb"})]]
    await api.create(jobId="log-job")
    assert await api.settle("log-job") is JobStatus.COMPLETE
    lines: list[str] = []
    done: Any = None
    with anyio.fail_after(10):
        async with api.client.stream("GET", "/jobs/log-job/stream") as response:
            async for frame in frames(response):
                if frame.event == "done":
                    done = frame.json()
                elif not frame.comment:
                    lines.append("\n".join(frame.data))
    assert done == {"status": "complete"}
    assert lines == await api.engine.store.get_log("log-job")
    assert "first" in lines and "a\nb" in lines


async def test_a_finished_job_stream_from_its_end_closes_at_once(api: Api) -> None:
    await api.create(jobId="end-job")
    assert await api.settle("end-job") is JobStatus.COMPLETE
    last = (await job_seqs(api.engine, "end-job"))[-1]
    with anyio.fail_after(10):
        async with api.client.stream(
            "GET", "/jobs/end-job/events", params={"after": last}
        ) as response:
            got = [f async for f in frames(response) if not f.comment]
    assert [(f.event, f.json()) for f in got] == [("done", {"status": "complete"})]


async def test_stream_errors(api: Api) -> None:
    assert (await api.client.get("/jobs/ghost-job/events")).status_code == 404
    assert (await api.client.get("/jobs/ghost-job/stream")).status_code == 404
    await api.create(jobId="err-job")
    bad = await api.client.get("/jobs/err-job/events", headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 422 and bad.json()["field"] == "Last-Event-ID"
    negative = await api.client.get("/events", params={"after": "-1"})
    assert negative.status_code == 422


async def test_the_all_jobs_feed_carries_every_job_with_heartbeats(api: Api) -> None:
    await api.create(jobId="feed-a")
    assert await api.settle("feed-a") is JobStatus.COMPLETE
    start = await api.engine.store.last_global_seq()
    ids: list[int] = []
    jobs: set[str] = set()
    with anyio.fail_after(20):
        async with api.client.stream("GET", "/events", params={"after": start}) as response:
            created = False
            async for frame in frames(response):
                if frame.comment:
                    if not created:  # nothing after the cursor yet: a heartbeat, then news
                        created = True
                        await api.create(jobId="feed-b")
                    continue
                event = frame.json()
                assert int(frame.id or 0) == event["globalSeq"]
                ids.append(event["globalSeq"])
                jobs.add(event["jobId"])
                if event["kind"] == "status" and event["data"]["to"] == "complete":
                    break
    assert jobs == {"feed-b"}
    assert ids == sorted(set(ids)) and ids[0] == start + 1


# -- a client that stops reading ------------------------------------------------------------------
STALL_SECONDS = 0.5


@contextlib.asynccontextmanager
async def stalling_api(home: Path) -> AsyncIterator[Api]:
    """``running_api``, with writes to a client that takes no bytes given up after 0.5 s."""
    write_intelligence(home)
    write_config(home)
    executor = ScriptedExecutor()
    engine = Engine(home, executors=executor.registry(), watch_config=False)
    await engine.start()
    try:
        async with ApiServer(
            engine, port=0, heartbeat_seconds=0.2, stall_seconds=STALL_SECONDS
        ) as server:
            headers = {"Authorization": f"Bearer {server.token}"}
            async with httpx2.AsyncClient(base_url=server.url, headers=headers) as client:
                yield Api(engine, server, client, executor)
    finally:
        await engine.stop(grace=1)


async def open_raw_stream(api: Api, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain socket with a 4 KB receive buffer, past the response head of ``GET path``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", api.server.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=16 * 1024)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{api.server.port}\r\n"
        f"Authorization: Bearer {api.server.token}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    return reader, writer


def dechunk(raw: bytes) -> bytes:
    """A chunked body as far as it goes (a cut last chunk gives what arrived of it)."""
    body, pos = bytearray(), 0
    while (end := raw.find(b"\r\n", pos)) >= 0:
        size = int(raw[pos:end], 16)
        if size == 0:
            break
        body += raw[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(body)


def complete_ids(body: bytes) -> list[int]:
    """The ``id`` of every frame received whole; a frame cut by the close is not one."""
    *whole, _cut = body.split(b"\n\n")
    return [int(f.split(b"\n", 1)[0][4:]) for f in whole if f.startswith(b"id: ")]


async def test_a_client_that_stops_reading_is_closed_and_resumes_without_gap(
    coro_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="engine.api._server")
    async with stalling_api(coro_home) as api:
        await api.create(jobId="flood-job")
        assert await api.settle("flood-job") is JobStatus.COMPLETE
        store = api.engine.store
        start = await store.last_global_seq()
        with anyio.fail_after(10):
            reader, writer = await open_raw_stream(api, f"/events?after={start}")
            await store.append_event("flood-job", "log", {"line": "subscribed"})
            first = b""
            while not complete_ids(dechunk(first)):
                first += await reader.read(4096)
        assert complete_ids(dechunk(first)) == [start + 1]

        # The client reads nothing more while 8 MB of events, far more than the socket
        # buffers hold, are committed.
        line = "x" * 16_000
        for _ in range(25):
            await store.append_events("flood-job", [("log", {"line": line})] * 20)
        last = await store.last_global_seq()
        await asyncio.sleep(4 * STALL_SECONDS)  # the client stays silent past the bound

        with anyio.fail_after(10):
            rest = await reader.read()  # what the kernels still held, then the server's close
        writer.close()
        got = complete_ids(dechunk(first + rest))
        assert "no bytes taken" in caplog.text
        assert got == list(range(start + 1, got[-1] + 1)) and got[-1] < last

        resumed: list[int] = []
        with anyio.fail_after(10):
            headers = {"Last-Event-ID": str(got[-1])}
            async with api.client.stream("GET", "/events", headers=headers) as response:
                async for frame in frames(response):
                    if frame.id is not None:
                        resumed.append(int(frame.id))
                        if resumed[-1] == last:
                            break
        assert resumed == list(range(got[-1] + 1, last + 1))
