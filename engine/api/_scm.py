"""Source-control routes: webhooks from hosting services, and the local SCM's pull requests.

``POST /webhook/{plugin_id}`` is the one route that takes no bearer token: the delivery is
verified by its signature (the plugin checks it against the configured secret). It stores the
events in the durable inbox, answers 202 at once, and routes them to their jobs afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.scm import ScmError, WebhookRejected

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from engine.runtime import Engine

__all__ = ["ScmRoutes"]


class ScmRoutes:
    """The handlers, bound to one engine (errors are raised as ``ApiError``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def webhook(self, request: Request) -> Response:
        from engine.api._app import ApiError, _json

        plugin_id = request.path_params["plugin_id"]
        try:
            plugin = self.engine.scm.plugin(plugin_id)
        except ScmError as exc:
            raise ApiError(404, exc.message) from None
        body = await request.body()
        try:
            events = plugin.normalize_inbound(request.headers, body)
        except WebhookRejected as exc:
            raise ApiError(401, exc.message) from None
        except ScmError as exc:
            raise ApiError(400, exc.message) from None
        inbound = self.engine.inbound
        assert inbound is not None
        accepted, duplicates = 0, 0
        jobs: dict[str, None] = {}
        for event in events:
            item = await inbound.submit(event, route=False)
            if item is None:
                duplicates += 1
                continue
            accepted += 1
            if item.job_id is not None:
                jobs[item.job_id] = None
        for job_id in jobs:
            inbound.route_soon(job_id)
        answer: dict[str, Any] = {"accepted": accepted, "duplicates": duplicates}
        return _json(answer, 202)
