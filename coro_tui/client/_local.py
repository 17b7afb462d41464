"""An :class:`~coro_tui.client.EngineClient` for an engine running in this process.

Requests go through the HTTP API's own routes over an in-process ASGI transport, so the TUI
validates, refuses and saves exactly as ``coro attach`` and the CLI do (``PUT /config`` is
the one path that writes the config); event streams come straight from the store, without
SSE framing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from coro_tui.client._protocol import RunnerInfo
from coro_tui.client._remote import RemoteClient

if TYPE_CHECKING:
    from engine.runtime import Engine
    from state import JobEvent

__all__ = ["LocalClient"]

_IN_PROCESS = "http://127.0.0.1"


class LocalClient(RemoteClient):
    """The started ``engine`` of this process.

    Args:
        engine: a started engine.
        url: where this process's HTTP shim listens, for :attr:`info` (``None`` if none).
    """

    def __init__(self, engine: Engine, *, url: str | None = None) -> None:
        import httpx2

        from engine.api import in_process_app

        transport = httpx2.ASGITransport(app=in_process_app(engine))
        super().__init__(
            _IN_PROCESS, "in-process", transport=transport, info=RunnerInfo("local", url)
        )
        self.engine = engine

    async def last_global_seq(self) -> int:
        return await self.engine.store.last_global_seq()

    def all_events(self, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        return self._subscribe(None, after)

    def job_events(self, job_id: str, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        return self._subscribe(job_id, after)

    async def _subscribe(self, job_id: str | None, after: int) -> AsyncIterator[list[JobEvent]]:
        stream = self.engine.store.subscribe(job_id, after=after)
        try:
            async for batch in stream:
                yield batch
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
