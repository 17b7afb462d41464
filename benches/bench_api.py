"""Benchmark: the HTTP API (uvicorn + Starlette on h11) against bare apps served the same way.

Figures (issue "HTTP API"), each against a baseline measured in the same run where one exists:

a. ``GET /health`` requests/s through :class:`ApiServer` (security middleware, a real engine on
   a temporary ``CORO_HOME``): >= 0.7x a bare Starlette app with one route returning a small
   JSON body.
b. SSE events/s to one client on ``/jobs/{id}/events`` while 200,000 log events are appended in
   batches of 500, from the first append to the last frame received: >= 100,000/s; and the same
   200,000 events replayed from the store to a client that connects far behind. The baseline
   is a bare Starlette ``StreamingResponse`` sending the same frames, pre-built, 500 per write.
   The live figure includes the appends, which run in the same process (as in the runner); the
   rate of appending alone is measured in the same run and given in the note.
c. 100 SSE clients on ``/events`` while events are appended at 100/s (10,000 deliveries/s): every
   client gets every event exactly once, and p99 from the append call (a ``time.time()`` in the
   event's data) to receipt is <= 50 ms.
d. A client that stops reading is disconnected within its bound (``stall_seconds``, 3 s here),
   and the server's RSS stays bounded while 100,000 events pass it.

How: every server runs as the runner runs it, uvicorn in this process's event loop through
``bind_tcp`` + ``InLoopServer``. Every client runs in a process of its own
(``benches/_api_clients.py``: raw asyncio streams speaking HTTP/1.1, 8 keep-alive connections
for a.), so its parsing does not share the server's loop; on 2 cores it still competes for CPU,
and the baselines pay the same client.

Run: ``.venv/bin/python benches/bench_api.py`` (or ``benches/run.py`` for every benchmark).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benches._harness import Figure, p
from engine._serving import InLoopServer, bind_tcp
from engine.api import ApiServer
from engine.api._sse import event_frame
from engine.runtime import Engine
from state import Job
from tests.support.engine import ScriptedExecutor, write_config, write_intelligence

CLIENTS = Path(__file__).resolve().parent / "_api_clients.py"
JOB = "bench-job"
CONNS = 8
SECONDS = 1.5
EVENTS = 200_000
BATCH = 500
FAN_OUT = 100
RATE = 100
FAN_SECONDS = 5
STALL = 3.0
SLOW_EVENTS = 100_000
#: What 100,000 events of ~200 bytes would cost if the server kept them for the slow client.
RSS_BOUND_MB = 20.0


@contextlib.asynccontextmanager
async def _api(home: Path, **options: Any) -> AsyncIterator[tuple[Engine, ApiServer]]:
    write_intelligence(home)
    write_config(home)
    engine = Engine(home, executors=ScriptedExecutor().registry(), watch_config=False)
    await engine.start()
    gc.freeze()  # as `coro start --headless` does once started (engine/headless.py)
    try:
        await engine.store.create_job(Job(id=JOB))
        async with ApiServer(engine, port=0, **options) as api:
            yield engine, api
    finally:
        await engine.stop(grace=1)


@contextlib.asynccontextmanager
async def _bare(app: Any) -> AsyncIterator[int]:
    """``app`` served as the API is; yields the port."""
    sock = bind_tcp("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    server = InLoopServer(app, sock, name="bench-bare", server_header=False)
    await server.start()
    try:
        yield port
    finally:
        await server.stop()


class _Client:
    """A client process from ``_api_clients.py``."""

    def __init__(self, **spec: Any) -> None:
        self.spec = spec

    async def __aenter__(self) -> _Client:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(CLIENTS), json.dumps(self.spec),
            stdout=asyncio.subprocess.PIPE, limit=1 << 26,
        )  # fmt: skip
        return self

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"client did not start: {line!r}")

    async def result(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        await self.proc.wait()
        if not line:
            raise RuntimeError(f"client failed (exit {self.proc.returncode})")
        return dict(json.loads(line))

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


# -- a. requests/s --------------------------------------------------------------------------------
async def _rate(port: int) -> float:
    async with _Client(mode="requests", port=port, path="/health", conns=CONNS,
                       seconds=SECONDS) as client:  # fmt: skip
        got = await client.result()
    return float(got["requests"] / got["seconds"])


def _bare_health_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    body = {"ok": True, "status": "ok", "mode": "headless", "version": "0", "runnerId": "r"}

    async def health(request: Any) -> JSONResponse:
        return JSONResponse(body)

    return Starlette(routes=[Route("/health", health)])


async def bench_requests(home: Path) -> list[Figure]:
    ours: list[float] = []
    bare: list[float] = []
    async with _api(home) as (_, api), _bare(_bare_health_app()) as bare_port:
        for _ in range(3):  # interleaved, best of three: the machine is shared
            bare.append(await _rate(bare_port))
            ours.append(await _rate(api.port))
    value, base = max(ours), max(bare)
    return [
        Figure("GET /health, 8 keep-alive connections", value, "req/s", ">= 0.7x bare",
               value >= 0.7 * base, baseline=base,
               note="bare: one Starlette route, same server and client"),
    ]  # fmt: skip


# -- b. one SSE client ----------------------------------------------------------------------------
def _batch(start: int, count: int = BATCH) -> list[tuple[str, dict[str, Any]]]:
    """Log events as the engine appends them (made as needed, as the engine makes them)."""
    return [("log", {"line": f"[coding] running pytest -q tests/test_rate_limit.py ... {i}"})
            for i in range(start, start + count)]  # fmt: skip


def _bare_stream_app(chunks: list[bytes], go: asyncio.Event) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def frames() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        await go.wait()
        for chunk in chunks:
            yield chunk

    async def stream(request: Any) -> StreamingResponse:
        return StreamingResponse(frames(), media_type="text/event-stream")

    return Starlette(routes=[Route("/stream", stream)])


def _setter(event: asyncio.Event) -> Callable[[], Awaitable[None]]:
    async def set_it() -> None:
        event.set()

    return set_it


async def _one_stream(port: int, path: str, headers: dict[str, str], first: int,
                      feed: Callable[[], Awaitable[None]]) -> tuple[float, bool]:  # fmt: skip
    """Events/s from ``feed()`` starting to the last frame arriving; and whether all came once."""
    async with _Client(mode="sse", port=port, path=path, headers=headers, streams=1,
                       first=first, last=first + EVENTS - 1) as client:  # fmt: skip
        await client.ready()
        start = time.time()
        await feed()
        got = await client.result()
    stream = got["streams"][0]
    return EVENTS / (stream["done_at"] - start), bool(stream["exact"])


async def bench_one_stream(home: Path) -> list[Figure]:
    live: list[float] = []
    replay: list[float] = []
    alone: list[float] = []
    exact = True
    async with _api(home) as (engine, api):
        auth = {"Authorization": f"Bearer {api.token}"}

        async def append() -> None:
            for i in range(0, EVENTS, BATCH):
                await engine.store.append_events(JOB, _batch(i))

        async def nothing() -> None:
            pass

        for _ in range(2):  # best of two: the machine is shared
            after = await engine.store.last_seq(JOB)
            path = f"/jobs/{JOB}/events?after={after}"
            rate, ok = await _one_stream(api.port, path, auth, after + 1, append)
            live.append(rate)
            rate, ok2 = await _one_stream(api.port, path, auth, after + 1, nothing)
            replay.append(rate)
            exact &= ok and ok2
            start = time.perf_counter()
            await append()
            alone.append(EVENTS / (time.perf_counter() - start))
        events = await engine.store.read_events(JOB, after_seq=after, limit=EVENTS)
    frames = [event_frame(e, e.seq) for e in events]
    chunks = [b"".join(frames[i : i + BATCH]) for i in range(0, EVENTS, BATCH)]
    del events, frames
    bare: list[float] = []
    for _ in range(2):
        go = asyncio.Event()
        async with _bare(_bare_stream_app(chunks, go)) as port:
            rate, ok = await _one_stream(port, "/stream", {}, after + 1, _setter(go))
        bare.append(rate)
        exact &= ok
    base = max(bare)
    once = "every event once" if exact else "EVENTS LOST OR REPEATED"
    return [
        Figure(f"SSE to one client while {EVENTS:,} events are appended, {BATCH} a batch",
               max(live), "events/s", ">= 100,000/s", max(live) >= 100_000 and exact,
               baseline=base, note=f"first append to last frame; {once}; the same process "
               f"appending with no client: {max(alone):,.0f} events/s; bare: the same frames "
               "pre-built, one write per batch"),
        Figure(f"SSE to one client replaying {EVENTS:,} committed events", max(replay),
               "events/s", ">= 100,000/s", max(replay) >= 100_000 and exact, baseline=base,
               note="a reconnect far behind: read from SQLite, 1,000 a write"),
    ]  # fmt: skip


# -- c. 100 clients -------------------------------------------------------------------------------
async def bench_fan_out(home: Path) -> list[Figure]:
    count = RATE * FAN_SECONDS
    async with _api(home) as (engine, api):
        after = await engine.store.last_global_seq()
        spec = {"port": api.port, "path": f"/events?after={after}", "streams": FAN_OUT,
                "headers": {"Authorization": f"Bearer {api.token}"},
                "first": after + 1, "last": after + count, "latency": True}  # fmt: skip
        async with _Client(mode="sse", **spec) as client:
            await client.ready()
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(count):
                await asyncio.sleep(max(0.0, start + i / RATE - loop.time()))
                await engine.store.append_event(JOB, "log", {"line": f"{i}", "t": time.time()})
            got = await client.result()
    latencies = [x * 1000 for x in got["latencies"]]
    exact = all(s["exact"] for s in got["streams"]) and len(latencies) == count * FAN_OUT
    p99 = p(latencies, 0.99)
    return [
        Figure(f"SSE to {FAN_OUT} clients at {RATE * FAN_OUT:,} deliveries/s, p99 latency",
               p99, "ms", "<= 50 ms, each event to each client once", p99 <= 50 and exact,
               note=f"p50 {p(latencies, 0.5):.1f} ms, max {max(latencies):.1f} ms, "
               f"{'every client got every event once' if exact else 'EVENTS LOST OR REPEATED'}"),
    ]  # fmt: skip


# -- d. a client that stops reading ---------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Closed(logging.Handler):
    """Notes when the API disconnects a stalled client."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.at: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if "no bytes taken" in record.getMessage():
            self.at = time.monotonic()


async def bench_slow_client(home: Path) -> list[Figure]:
    closed = _Closed()
    logger = logging.getLogger("engine.api._server")
    logger.addHandler(closed)
    logger.setLevel(logging.INFO)
    try:
        async with _api(home, stall_seconds=STALL) as (engine, api):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, ("127.0.0.1", api.port))
            request = (f"GET /jobs/{JOB}/events HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n"
                       f"Authorization: Bearer {api.token}\r\n\r\n")  # fmt: skip
            await loop.sock_sendall(sock, request.encode())
            await engine.store.append_event(JOB, "log", {"line": "warm-up"})
            await asyncio.sleep(0.2)
            before = _rss_mb()
            start = time.monotonic()
            peak = before
            for i in range(0, SLOW_EVENTS, BATCH):
                await engine.store.append_events(JOB, _batch(i))
                peak = max(peak, _rss_mb())
            passed = time.monotonic() - start
            while closed.at is None and time.monotonic() - start < STALL + 10:
                await asyncio.sleep(0.05)
                peak = max(peak, _rss_mb())
            sock.close()
    finally:
        logger.removeHandler(closed)
    after_s = None if closed.at is None else closed.at - start
    in_bound = after_s is not None and after_s <= STALL + 1.0
    growth = peak - before
    ok = in_bound and growth <= RSS_BOUND_MB
    when = "never" if after_s is None else f"{after_s:.2f} s after the flood began"
    when += f"; the events had passed in {passed:.2f} s"
    return [
        Figure(f"client that stops reading, {SLOW_EVENTS:,} events passing: RSS growth", growth,
               "MB", f"closed within {STALL:g} s + 1 s; <= {RSS_BOUND_MB:g} MB", ok,
               note=f"closed {when}"),
    ]  # fmt: skip


async def main() -> list[Figure]:
    figures: list[Figure] = []
    for bench in (bench_requests, bench_one_stream, bench_fan_out, bench_slow_client):
        with tempfile.TemporaryDirectory(prefix="coro-bench-api-") as tmp:
            home = Path(tmp) / "home"
            home.mkdir(mode=0o700)
            figures += await bench(home)
    return figures


if __name__ == "__main__":
    for figure in asyncio.run(main()):
        print(figure.line() + (f"\n     ({figure.note})" if figure.note else ""))
