"""The client side of ``benches/bench_scm.py``: a GitHub sender, run in a process of its own.

It sends signed webhook deliveries to ``POST /webhook/github`` over raw HTTP/1.1 keep-alive
connections, each at its scheduled moment, and times each request to its response. It imports
nothing from coro.

    python benches/_webhook_client.py '<json spec>'

Spec: ``port``; ``secret`` (what deliveries are signed with); ``fixtures`` (the directory of
real GitHub payloads); ``repo`` (the ``repository.full_name`` every delivery carries); ``conns``
(keep-alive connections; delivery ``i`` goes on connection ``i % conns``); ``deliveries``, a
list of ``[delivery id, kind, PR number, seconds after the start]``, ``kind`` one of
:data:`KINDS`.

Every request is built and signed before the client prints ``ready``; then it starts the clock
at once. A request's latency runs from the moment it is written to its response's last byte;
when its connection was still busy with the one before at the scheduled moment, from the
scheduled moment instead (what a sender keeping to the schedule would have seen).

The result is one JSON line on stdout: per delivery its id, HTTP status, response body,
``sent`` (``time.time()`` just before the write: comparable with the server's wall clock on
the same host) and ``latency`` in seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

#: kind -> (fixture file, X-GitHub-Event, the keys leading to each PR number in the payload).
KINDS: dict[str, tuple[str, str, tuple[tuple[str, ...], ...]]] = {
    "merged": ("pull_request.closed.json", "pull_request",
               (("number",), ("pull_request", "number"))),
    "comment": ("issue_comment.created.json", "issue_comment", (("issue", "number"),)),
    "review": ("pull_request_review.submitted.json", "pull_request_review",
               (("pull_request", "number"),)),
}  # fmt: skip
_LENGTH = re.compile(rb"content-length: *(\d+)", re.I)


def _requests(spec: dict[str, Any]) -> list[bytes]:
    fixtures = Path(spec["fixtures"])
    payloads = {k: json.loads((fixtures / f).read_bytes()) for k, (f, _, _) in KINDS.items()}
    built = []
    for delivery, kind, number, _ in spec["deliveries"]:
        data = payloads[kind]
        data["repository"]["full_name"] = spec["repo"]
        for path in KINDS[kind][2]:
            node = data
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = number
        body = json.dumps(data).encode()
        signature = hmac.new(spec["secret"].encode(), body, hashlib.sha256).hexdigest()
        head = (
            "POST /webhook/github HTTP/1.1\r\n"
            "Host: coro-tunnel.example.net\r\n"
            "User-Agent: GitHub-Hookshot/bench\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"X-GitHub-Event: {KINDS[kind][1]}\r\n"
            f"X-GitHub-Delivery: {delivery}\r\n"
            f"X-Hub-Signature-256: sha256={signature}\r\n\r\n"
        )
        built.append(head.encode() + body)
    return built


async def deliver(spec: dict[str, Any]) -> dict[str, Any]:
    requests = _requests(spec)
    deliveries = spec["deliveries"]
    conns = spec["conns"]
    streams = [await asyncio.open_connection("127.0.0.1", spec["port"]) for _ in range(conns)]
    results: list[dict[str, Any]] = [{} for _ in deliveries]
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def worker(n: int) -> None:
        reader, writer = streams[n]
        for i in range(n, len(deliveries), conns):
            due = start + deliveries[i][3]
            late = loop.time() >= due
            if not late:
                await asyncio.sleep(due - loop.time())
            sent = time.time()
            began = due if late else loop.time()
            writer.write(requests[i])
            head = await reader.readuntil(b"\r\n\r\n")
            length = _LENGTH.search(head)
            body = await reader.readexactly(int(length.group(1)) if length else 0)
            results[i] = {
                "id": deliveries[i][0],
                "status": int(head.split(b" ", 2)[1]),
                "body": body.decode(errors="replace"),
                "sent": sent,
                "latency": loop.time() - began,
            }
        writer.close()

    await asyncio.gather(*(worker(n) for n in range(conns)))
    return {"results": results, "seconds": loop.time() - start}


def main() -> None:
    spec = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(deliver(spec))), flush=True)


if __name__ == "__main__":
    main()
