"""The runner's local HTTP API: jobs, their event streams, artefacts, workflows and config.

::

    token = ensure_token(paths)          # $CORO_HOME/runner.token, created at first start
    async with ApiServer(engine, port=0, mode="headless") as api:
        print(api.url, api.token)

Routes, authentication, errors and the SSE format are described in ``docs/http-api.md``.
Starlette and uvicorn are imported only when a server starts.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from engine.api._security import MAX_BODY_BYTES, ensure_token, read_token
from engine.api._server import DEFAULT_HEARTBEAT_SECONDS, ApiServer

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from engine.runtime import Engine

__all__ = [
    "DEFAULT_HEARTBEAT_SECONDS",
    "MAX_BODY_BYTES",
    "ApiServer",
    "ensure_token",
    "in_process_app",
    "read_token",
]


def in_process_app(engine: Engine, *, mode: str = "tui") -> Starlette:
    """The API's routes as an ASGI app for a client in this process (the TUI's), without the
    token and Host/Origin guard that :class:`ApiServer` puts in front of the network."""
    from engine.api._app import ApiSettings, build_app

    settings = ApiSettings(
        mode=mode, runner_id=engine.runner_id, heartbeat=DEFAULT_HEARTBEAT_SECONDS,
        closing=asyncio.Event(),
    )  # fmt: skip
    return build_app(engine, settings)
