"""``ApiServer``: the API served by uvicorn inside the engine's event loop.

::

    async with ApiServer(engine, port=0) as api:
        api.url      # "http://127.0.0.1:54321"
        api.token    # what clients send as "Authorization: Bearer <token>"
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any

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

__all__ = ["DEFAULT_HEARTBEAT_SECONDS", "DEFAULT_STALL_SECONDS", "ApiServer"]

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_SECONDS = 15.0
DEFAULT_STALL_SECONDS = 30.0
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_SHUTDOWN_GRACE_SECONDS = 2
#: An artefact edit carries up to 2 MiB of text, which JSON escaping may grow.
_ARTIFACT_BODY_BYTES = 6 * 1024 * 1024


#: Webhook deliveries can be large (a push with many commits); GitHub caps them at 25 MB.
_WEBHOOK_BODY_BYTES = 25 * 1024 * 1024
WEBHOOK_PREFIX = "/webhook/"


def _body_limit(method: str, path: str) -> int | None:
    if method == "PUT" and path.endswith("/content") and "/artifacts/" in path:
        return _ARTIFACT_BODY_BYTES
    if method == "POST" and path.startswith(WEBHOOK_PREFIX):
        return _WEBHOOK_BODY_BYTES
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
        stall_seconds: how long a write may wait for a client that takes no bytes before
            the connection is closed (an SSE client then resumes with ``Last-Event-ID``).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "headless",
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
    ) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self.mode = mode
        self.heartbeat_seconds = heartbeat_seconds
        self.stall_seconds = stall_seconds
        self.runner_id = engine.runner_id
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
            signed_prefix=WEBHOOK_PREFIX,
        )
        server = InLoopServer(
            app, sock, name="coro-api", server_header=False,
            timeout_graceful_shutdown=_SHUTDOWN_GRACE_SECONDS,
            http=_stall_guarded_protocol(self.stall_seconds),
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


def _stall_guarded_protocol(stall_seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, aborting a connection whose writes stay blocked too long.

    uvicorn stops an app's ``send`` while the transport's buffer is above its high-water mark
    (between ``pause_writing`` and ``resume_writing``), so a client that stops reading would
    hold the response, an SSE stream's subscription and the socket forever. A stream cannot
    end that itself: ``transport.close()`` (all uvicorn does when an app gives up mid-response)
    waits for the buffer to drain first. Aborting drops what is buffered and reports the
    disconnect to the app at once; an SSE client resumes from the last ``id:`` it received
    whole, so nothing is lost or repeated.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class StallGuard(asyncio.Protocol):
        _stall_transport: asyncio.Transport | None = None
        _stall_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            self._stall_transport = transport
            super().connection_made(transport)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._stall_timer is None:
                loop = asyncio.get_running_loop()
                self._stall_timer = loop.call_later(stall_seconds, self._stalled)

        def resume_writing(self) -> None:
            self._cancel_stall_timer()
            super().resume_writing()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_stall_timer()
            super().connection_lost(exc)

        def _cancel_stall_timer(self) -> None:
            if self._stall_timer is not None:
                self._stall_timer.cancel()
                self._stall_timer = None

        def _stalled(self) -> None:
            self._stall_timer = None
            if self._stall_transport is not None:
                peer = self._stall_transport.get_extra_info("peername")
                log.info(
                    "closing the connection of %s: no bytes taken for %g s", peer, stall_seconds
                )
                self._stall_transport.abort()

    return type("StallGuardedHTTPProtocol", (StallGuard, AutoHTTPProtocol), {})
