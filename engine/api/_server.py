"""``ApiServer``: the API served by uvicorn inside the engine's event loop.

::

    async with ApiServer(engine, port=0) as api:
        api.url      # "http://127.0.0.1:54321"
        api.token    # what clients send as "Authorization: Bearer <token>"
"""

from __future__ import annotations

import asyncio
import uuid
from types import TracebackType
from typing import TYPE_CHECKING

from engine._serving import InLoopServer, bind_tcp
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
        self._server: InLoopServer | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Create the token if needed, bind, and return once connections are accepted.

        Raises:
            OSError: the address cannot be bound (e.g. the port is taken).
        """
        self.token = await asyncio.to_thread(ensure_token, self.engine.paths)
        sock = bind_tcp(self.host, self.port)
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
        server = InLoopServer(
            app, sock, name="coro-api", server_header=False,
            timeout_graceful_shutdown=_SHUTDOWN_GRACE_SECONDS,
        )  # fmt: skip
        await server.start()
        self._server = server

    async def stop(self) -> None:
        """End the SSE streams, close connections, and wait for uvicorn to exit."""
        if self._server is None:
            return
        self._closing.set()
        server, self._server = self._server, None
        await server.stop()

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
