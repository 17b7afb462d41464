"""The runner's local HTTP API: jobs, their event streams, artefacts, workflows and config.

::

    token = ensure_token(paths)          # $CORO_HOME/runner.token, created at first start
    async with ApiServer(engine, port=0, mode="headless") as api:
        print(api.url, api.token)

Routes, authentication, errors and the SSE format are described in ``docs/http-api.md``.
Starlette and uvicorn are imported only when a server starts.
"""

from __future__ import annotations

from engine.api._security import MAX_BODY_BYTES, ensure_token, read_token
from engine.api._server import DEFAULT_HEARTBEAT_SECONDS, ApiServer

__all__ = [
    "DEFAULT_HEARTBEAT_SECONDS",
    "MAX_BODY_BYTES",
    "ApiServer",
    "ensure_token",
    "read_token",
]
