"""An :class:`~coro_tui.client.EngineClient` for an engine running in this process.

Requests go through the HTTP API's own routes over an in-process ASGI transport, so the TUI
validates, refuses and saves exactly as ``coro attach`` and the CLI do (``PUT /config`` is
the one path that writes the config); event streams come straight from the store, without
SSE framing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from coro_tui.client._protocol import ClientError, PlanEvent, RunnerInfo
from coro_tui.client._remote import RemoteClient, plan_body

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

    async def plan_turn(
        self,
        session_id: str,
        messages: list[dict[str, str]],
        *,
        context: dict[str, Any] | None = None,
        model: str | None = None,
    ) -> AsyncIterator[PlanEvent]:
        """Straight from the engine's plan service (an in-process ASGI response would only
        arrive whole), validated as the route validates it."""
        from pydantic import ValidationError

        from engine.intake import IntakeRefused, IntakeRequest

        try:
            request = IntakeRequest.model_validate(plan_body(session_id, messages, context, model))
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = ".".join(str(part) for part in error["loc"])
            raise ClientError(f"{field}: {error['msg']}", status=422, field=field) from None
        intake = self.engine.intake
        try:
            turn = await intake.begin(request)
        except IntakeRefused as exc:
            raise ClientError(exc.message, status=exc.status, field=exc.field) from None
        async for event in intake.run(turn):
            yield PlanEvent(event.kind, event.data)

    async def _subscribe(self, job_id: str | None, after: int) -> AsyncIterator[list[JobEvent]]:
        stream = self.engine.store.subscribe(job_id, after=after)
        try:
            async for batch in stream:
                yield batch
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
