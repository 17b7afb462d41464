"""The HTTP side: a Starlette app around :class:`ScriptedModel`, served by uvicorn in-process.

Starlette and uvicorn are imported inside the functions that use them, so importing
``engine.model_server`` stays cheap (the architecture test holds every engine module to that).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from engine._serving import InLoopServer, bind_tcp
from engine.model_server._model import RecordedRequest, Reply, ScriptedModel
from engine.model_server._script import ModelScript
from engine.model_server._sse import error_body, frame

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.types import Receive, Send

__all__ = ["DEFAULT_PORT", "ScriptedModelServer", "build_app", "serve"]

DEFAULT_PORT = 7338
_SHUTDOWN_GRACE_SECONDS = 2


def build_app(model: ScriptedModel, closing: asyncio.Event) -> Starlette:
    """The ASGI app: ``POST /v1/messages`` plus ``GET /_script/requests`` and ``/_script/health``.

    Args:
        model: answers the requests and records them.
        closing: set when the server shuts down; ends stalled responses early.
    """
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    class ReplyResponse(Response):
        """Sends a :class:`Reply`, leaving the response unfinished for ``drop`` and ``stall``."""

        def __init__(self, reply: Reply) -> None:
            super().__init__(status_code=reply.status)
            self.reply = reply

        async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
            reply = self.reply
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
            body = b"" if reply.json_body is None else json.dumps(reply.json_body).encode()
            if reply.json_body is not None:
                headers += [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            # Paced by a schedule rather than a sleep per event: a busy loop wakes a sleeper
            # late, and sleeping only when ahead keeps the rate the script asks for.
            pause = model.script.chunk_delay_ms / 1000
            loop = asyncio.get_running_loop()
            started = loop.time()
            for index, event in enumerate(reply.events):
                if pause and index:
                    ahead = started + index * pause - loop.time()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                await send({"type": "http.response.body", "body": frame(event), "more_body": True})
                if model.on_event is not None:
                    model.on_event(event[0], event[1])
            if reply.ending == "stall":
                await _stall(receive, closing, reply.stall_seconds)
            if reply.ending == "complete":
                await send({"type": "http.response.body", "body": body, "more_body": False})
            # drop / stall: return mid-response; uvicorn then closes the connection.

    async def messages(request: Request) -> Response:
        raw = await request.body()
        reply = model.respond(raw, dict(request.headers.items()))
        if model.script.delay_ms:
            await asyncio.sleep(model.script.delay_ms / 1000)
        return ReplyResponse(reply)

    async def recorded(request: Request) -> Response:
        return JSONResponse([dataclasses.asdict(r) for r in model.requests])

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        kind, problem = (
            ("not_found_error", "not found")
            if status == 404
            else ("invalid_request_error", "method not allowed")
        )
        message = f"{request.method} {request.url.path}: {problem}"
        return JSONResponse(error_body(kind, message), status_code=status)

    return Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/_script/requests", recorded, methods=["GET"]),
            Route("/_script/health", health, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )


async def _stall(receive: Receive, closing: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if the client goes away or the server shuts down."""

    async def client_gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    waits = [asyncio.ensure_future(client_gone()), asyncio.ensure_future(closing.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


class ScriptedModelServer:
    """A real HTTP server answering ``POST /v1/messages`` from a script, in this event loop.

    ``async with ScriptedModelServer(script) as server:`` listens on a free port (``port=0``)
    and ``server.base_url`` is what to give the SDK as ``base_url``.
    """

    def __init__(
        self,
        script: ModelScript,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: Callable[[RecordedRequest], None] | None = None,
    ) -> None:
        self.model = ScriptedModel(script, on_request=on_request)
        self.host = host
        self.port = port
        self._closing: asyncio.Event | None = None
        self._server: InLoopServer | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, in arrival order."""
        return self.model.requests

    def clear(self) -> None:
        """Forget the recorded requests (cursors and answers given are kept)."""
        self.model.clear()

    async def start(self) -> None:
        """Listen and serve; returns once the server accepts connections.

        Raises:
            OSError: the address cannot be bound (e.g. the port is taken).
        """
        sock = bind_tcp(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._closing = asyncio.Event()
        server = InLoopServer(
            build_app(self.model, self._closing), sock, name="coro-model-server", http="h11",
            timeout_graceful_shutdown=_SHUTDOWN_GRACE_SECONDS,
        )  # fmt: skip
        await server.start()
        self._server = server

    async def stop(self) -> None:
        """Stop serving: end stalled responses, close connections, wait for uvicorn to exit."""
        if self._server is None:
            return
        assert self._closing is not None
        self._closing.set()
        server, self._server = self._server, None
        await server.stop()

    async def __aenter__(self) -> ScriptedModelServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve(
    script: ModelScript,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    ready: Callable[[str], None] | None = None,
    on_request: Callable[[RecordedRequest], None] | None = None,
) -> None:
    """Serve ``script`` until cancelled; ``ready`` gets the base URL once listening."""
    async with ScriptedModelServer(script, host=host, port=port, on_request=on_request) as server:
        if ready is not None:
            ready(server.base_url)
        await asyncio.Event().wait()
