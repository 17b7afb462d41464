"""The API's SSE streams: resume with Last-Event-ID, close at the end, the all-jobs feed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from engine.runtime import Engine
from state import JobStatus
from tests.integration.test_api import Api, running_api


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
