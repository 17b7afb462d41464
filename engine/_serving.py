"""Serving an ASGI app with uvicorn inside the engine's own event loop.

Used by the HTTP API and the scripted model endpoint. uvicorn is imported when a server
starts, never when this module is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

__all__ = ["InLoopServer", "bind_tcp"]


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening, non-blocking TCP socket on ``host:port`` (port 0: any free port).

    Raises:
        OSError: the address cannot be bound (e.g. the port is taken).
    """
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    # proto=IPPROTO_TCP matters: asyncio turns Nagle off (TCP_NODELAY) only on accepted
    # sockets whose proto says TCP, and with Nagle on, a response written in two parts
    # waits ~40 ms for the client's delayed ACK on every reused connection.
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


class InLoopServer:
    """uvicorn serving ``app`` on ``sock`` as a task of the running loop.

    Signal handling is left to the host program (the TUI or the headless runner).
    """

    def __init__(self, app: Any, sock: socket.socket, *, name: str, **options: Any) -> None:
        self._app = app
        self._sock = sock
        self._name = name
        self._options = options
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Return once the server accepts connections.

        Raises:
            RuntimeError: uvicorn stopped while starting.
        """
        import uvicorn

        class Server(uvicorn.Server):
            def __init__(self, config: uvicorn.Config) -> None:
                super().__init__(config)
                self.listening = asyncio.Event()

            def capture_signals(self) -> contextlib.nullcontext[None]:  # type: ignore[override]
                return contextlib.nullcontext()

            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                self.listening.set()

        config = uvicorn.Config(
            self._app, ws="none", lifespan="off", log_config=None, access_log=False,
            **self._options,
        )  # fmt: skip
        server = Server(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[self._sock]), name=self._name)
        listening = asyncio.ensure_future(server.listening.wait())
        await asyncio.wait({self._task, listening}, return_when=asyncio.FIRST_COMPLETED)
        if not listening.done():
            listening.cancel()
            self._sock.close()
            self._task.result()
            raise RuntimeError(f"{self._name} stopped while starting")

    async def stop(self) -> None:
        """Ask uvicorn to exit and wait for it (idempotent)."""
        if self._task is None or self._server is None:
            return
        self._server.should_exit = True
        task, self._task = self._task, None
        await task
