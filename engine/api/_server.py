"""``ApiServer``: the API served by uvicorn inside the engine's event loop.

::

    async with ApiServer(engine, port=0) as api:
        api.url      # "http://127.0.0.1:54321"
        api.token    # what clients send as "Authorization: Bearer <token>"
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any

from engine.api._app import ApiSettings, build_app
from engine.api._security import (
    MAX_BODY_BYTES,
    SecurityMiddleware,
    allowed_hosts,
    allowed_origins,
    ensure_token,
)

if TYPE_CHECKING:
    from engine.runtime import Engine

__all__ = ["DEFAULT_HEARTBEAT_SECONDS", "ApiServer"]

DEFAULT_HEARTBEAT_SECONDS = 15.0
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_SHUTDOWN_GRACE_SECONDS = 2
#: An artefact edit carries up to 2 MiB of text, which JSON escaping may grow.
_ARTIFACT_BODY_BYTES = 6 * 1024 * 1024


def _body_limit(method: str, path: str) -> int | None:
    if method == "PUT" and path.endswith("/content") and "/artifacts/" in path:
        return _ARTIFACT_BODY_BYTES
    return None


class ApiServer:
    """Serves the HTTP API for ``engine`` until stopped.

    Args:
        engine: a started engine.
        host: the address to bind; anything but a loopback address is also accepted as
            ``Host`` (the caller should warn the user that the API is then reachable).
        port: the port (0 picks a free one; :attr:`port` says which).
        mode: what ``/health`` reports: ``headless`` or ``tui``.
        heartbeat_seconds: the quiet time after which an SSE stream sends a comment line.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "headless",
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    ) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self.mode = mode
        self.heartbeat_seconds = heartbeat_seconds
        self.runner_id = f"runner-{uuid.uuid4().hex[:12]}"
        self.token = ""
        self._closing = asyncio.Event()
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Create the token if needed, bind, and return once connections are accepted.

        Raises:
            OSError: the address cannot be bound (e.g. the port is taken).
        """
        import uvicorn

        class InProcessServer(uvicorn.Server):
            """Leaves signal handling to the host program and says when it is listening."""

            def __init__(self, config: uvicorn.Config) -> None:
                super().__init__(config)
                self.listening = asyncio.Event()

            def capture_signals(self) -> contextlib.nullcontext[None]:  # type: ignore[override]
                return contextlib.nullcontext()

            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                self.listening.set()

        self.token = await asyncio.to_thread(ensure_token, self.engine.paths)
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        extra = () if self.host in _LOOPBACK else (self.host,)
        settings = ApiSettings(
            mode=self.mode,
            runner_id=self.runner_id,
            heartbeat=self.heartbeat_seconds,
            closing=self._closing,
        )
        app = SecurityMiddleware(
            build_app(self.engine, settings),
            token=self.token,
            hosts=allowed_hosts(self.port, extra),
            origins=allowed_origins(self.port, extra),
            max_body=MAX_BODY_BYTES,
            body_limit=_body_limit,
        )
        config = uvicorn.Config(
            app,
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=_SHUTDOWN_GRACE_SECONDS,
        )
        server = InProcessServer(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="coro-api")
        listening = asyncio.ensure_future(server.listening.wait())
        await asyncio.wait({self._task, listening}, return_when=asyncio.FIRST_COMPLETED)
        if not listening.done():
            listening.cancel()
            sock.close()
            self._task.result()
            raise RuntimeError("the API server stopped while starting")

    async def stop(self) -> None:
        """End the SSE streams, close connections, and wait for uvicorn to exit."""
        if self._task is None:
            return
        self._closing.set()
        self._server.should_exit = True
        task, self._task = self._task, None
        await task

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    # proto=IPPROTO_TCP: asyncio turns Nagle off only on accepted sockets whose proto says
    # TCP; with Nagle on, every reused-connection request waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
