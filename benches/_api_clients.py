"""The client side of ``benches/bench_api.py``, run in a process of its own.

Raw asyncio streams speaking HTTP/1.1 keep the client's own cost small, and a separate process
keeps it off the server's event loop. It imports nothing from coro.

    python benches/_api_clients.py '<json spec>'

Modes (``spec["mode"]``):

- ``requests``: ``conns`` keep-alive connections each sending ``GET path`` and reading the
  whole response, again and again; after a warm-up it counts responses for ``seconds``.
- ``sse``: ``streams`` SSE streams on ``path``; prints ``ready`` once every response head is
  in, then reads each stream until the frame whose ``id`` is ``last`` arrives. It checks that
  each stream got every id from ``first`` to ``last`` exactly once, in order, and with
  ``latency`` reads the ``"t"`` (a ``time.time()`` stamped at append) in each event's data.

The result is one JSON line on stdout.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from typing import Any

_ID = re.compile(rb"^id: (\d+)$", re.M)
_STAMP = re.compile(rb'"t":([0-9.e+-]+)')
_LENGTH = re.compile(rb"content-length: *(\d+)", re.I)


def _request(spec: dict[str, Any]) -> bytes:
    lines = [f"GET {spec['path']} HTTP/1.1", f"Host: 127.0.0.1:{spec['port']}"]
    lines += [f"{k}: {v}" for k, v in spec.get("headers", {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def requests(spec: dict[str, Any]) -> dict[str, Any]:
    request = _request(spec)
    counting = False
    stop = False
    counts = [0] * spec["conns"]

    async def worker(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", spec["port"])
        while not stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            length = _LENGTH.search(head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            if counting:
                counts[n] += 1
        writer.close()

    workers = [asyncio.create_task(worker(n)) for n in range(spec["conns"])]
    await asyncio.sleep(spec.get("warmup", 0.3))
    counting = True
    start = time.perf_counter()
    await asyncio.sleep(spec["seconds"])
    counting = False
    elapsed = time.perf_counter() - start
    stop = True
    await asyncio.gather(*workers)
    return {"requests": sum(counts), "seconds": elapsed}


class _Stream:
    """One SSE response read chunk by chunk (h11 sends each ASGI body message as one chunk)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.expect = spec["first"]
        self.count = 0
        self.in_order = True
        self.done_at = 0.0
        self.latencies: list[float] = []

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.spec["port"], limit=1 << 20
        )
        self.writer.write(_request(self.spec))
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
            raise RuntimeError(head.decode(errors="replace"))

    async def read(self) -> None:
        last, latency = self.spec["last"], self.spec.get("latency", False)
        buf = bytearray()
        while self.expect <= last:
            data = await self.reader.read(1 << 18)
            if not data:
                break
            now = time.time()
            buf += data
            pos = 0
            while (end := buf.find(b"\r\n", pos)) >= 0:
                size = int(buf[pos:end], 16)
                if len(buf) < end + 4 + size:
                    break
                chunk = bytes(buf[end + 2 : end + 2 + size])
                pos = end + 4 + size
                ids = [int(i) for i in _ID.findall(chunk)]
                if ids:
                    self.in_order &= ids == list(range(self.expect, self.expect + len(ids)))
                    self.expect = ids[-1] + 1
                    self.count += len(ids)
                if latency:
                    self.latencies += [now - float(t) for t in _STAMP.findall(chunk)]
            del buf[:pos]
        self.done_at = time.time()
        self.writer.close()

    def result(self) -> dict[str, Any]:
        total = self.spec["last"] - self.spec["first"] + 1
        exact = self.in_order and self.count == total
        return {"exact": exact, "count": self.count, "done_at": self.done_at}


async def sse(spec: dict[str, Any]) -> dict[str, Any]:
    streams = [_Stream(spec) for _ in range(spec["streams"])]
    await asyncio.gather(*(s.open() for s in streams))
    print("ready", flush=True)
    await asyncio.gather(*(s.read() for s in streams))
    latencies = sorted(x for s in streams for x in s.latencies)
    return {"streams": [s.result() for s in streams], "latencies": latencies}


def main() -> None:
    spec = json.loads(sys.argv[1])
    run = {"requests": requests, "sse": sse}[spec["mode"]]
    print(json.dumps(asyncio.run(run(spec))), flush=True)


if __name__ == "__main__":
    main()
