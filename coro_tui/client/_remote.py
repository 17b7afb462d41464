"""An :class:`~coro_tui.client.EngineClient` that speaks the runner's HTTP API (REST + SSE).

``coro attach`` uses it for a runner elsewhere; :class:`~coro_tui.client.LocalClient` reuses
it with an in-process transport, so both go through the very same routes, validation and
answers. Streams reconnect with ``Last-Event-ID`` and back off while the runner is away.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from coro_tui._sse import FrameParser
from coro_tui.client._protocol import (
    ClientError,
    MessageMode,
    PlanEvent,
    RunnerInfo,
    WorkflowSummary,
)

if TYPE_CHECKING:
    import httpx2

    from state import Job, JobEvent, JobInput

__all__ = ["RemoteClient"]

#: A stream with no byte for this long (heartbeats come every 15 s) is dead: reconnect.
_READ_TIMEOUT = 45.0
_BACKOFF = (0.25, 0.5, 1.0, 2.0, 5.0)
#: How often a finished job's stream checks whether the job was resumed.
_ENDED_POLL = 1.0
_PAGE = 200


class RemoteClient:
    """The runner at ``url``, reached with ``token``.

    Args:
        url: the runner's base URL (``http://127.0.0.1:7337``).
        token: the bearer token (``$CORO_HOME/runner.token`` of that runner).
        transport: an httpx transport to use instead of the network (in-process ASGI).
        info: what to report as :attr:`info` (default: attached to ``url``).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        info: RunnerInfo | None = None,
    ) -> None:
        import httpx2

        self._url = url.rstrip("/")
        self._info = info or RunnerInfo(mode="attached", url=self._url)
        self._http = httpx2.AsyncClient(
            base_url=self._url,
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
            timeout=httpx2.Timeout(30.0, read=_READ_TIMEOUT),
        )
        self._closed = asyncio.Event()

    @property
    def info(self) -> RunnerInfo:
        return self._info

    # -- plumbing ------------------------------------------------------------------------------
    async def _request(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        import httpx2

        try:
            response = await self._http.request(method, path, json=body, params=params)
        except httpx2.HTTPError as exc:
            raise ClientError(f"the runner at {self._url} cannot be reached: {exc}") from exc
        if response.status_code >= 400:
            raise _refusal(response)
        if not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    @staticmethod
    def _job(data: Any) -> Job:
        from state import Job

        return Job.model_validate(data)

    # -- jobs ----------------------------------------------------------------------------------
    async def list_jobs(self) -> list[Job]:
        jobs: list[Job] = []
        offset: int | None = 0
        while offset is not None:
            page = await self._request("GET", "/jobs", params={"limit": _PAGE, "offset": offset})
            jobs += [self._job(item) for item in page["jobs"]]
            offset = page.get("next")
        return jobs

    async def get_job(self, job_id: str) -> Job:
        return self._job(await self._request("GET", f"/jobs/{job_id}"))

    async def create_job(self, spec: JobInput) -> Job:
        body = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        return self._job(await self._request("POST", "/jobs", body=body))

    async def log_tail(self, job_id: str, lines: int) -> tuple[list[str], int]:
        page = await self._request("GET", f"/jobs/{job_id}/log", params={"tail": lines})
        return [str(item["line"]) for item in page["lines"]], int(page["lastSeq"])

    async def artifact_content(self, job_id: str, artifact_id: str) -> str:
        text = await self._request("GET", f"/jobs/{job_id}/artifacts/{artifact_id}/content")
        return text if isinstance(text, str) else json.dumps(text, indent=2)

    async def last_global_seq(self) -> int:
        page = await self._request("GET", "/jobs", params={"limit": 1})
        return int(page["lastGlobalSeq"])

    # -- streams -------------------------------------------------------------------------------
    async def all_events(self, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        async for batch in self._follow("/events", after, key="global_seq"):
            yield batch

    async def job_events(self, job_id: str, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        path = f"/jobs/{job_id}/events"
        while not self._closed.is_set():
            async for batch in self._follow(path, after, key="seq", ends=True):
                after = batch[-1].seq
                yield batch
            await self._until_resumed(job_id)

    async def _until_resumed(self, job_id: str) -> None:
        """Wait while the job is finished: its stream ended; a resume starts it again."""
        while not self._closed.is_set():
            job = await self.get_job(job_id)
            if not job.status.is_terminal:
                return
            await asyncio.sleep(_ENDED_POLL)

    async def _follow(
        self, path: str, after: int, *, key: str, ends: bool = False
    ) -> AsyncIterator[list[JobEvent]]:
        """Events of an SSE stream, one batch per chunk, resuming after drops; with ``ends``
        it returns when the runner says the stream is done."""
        import httpx2

        from state import JobEvent

        failures = 0
        while not self._closed.is_set():
            headers = {"Last-Event-ID": str(after)}
            try:
                async with self._http.stream("GET", path, headers=headers) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise _refusal(response)
                    failures = 0
                    parser = FrameParser()
                    rest = ""
                    async for chunk in response.aiter_text():  # one batch per chunk
                        *lines, rest = (rest + chunk).split("\n")
                        batch: list[JobEvent] = []
                        for line in lines:
                            frame = parser.feed(line)
                            if frame is None:
                                continue
                            if frame.event == "done":
                                if batch:
                                    yield batch
                                if ends:
                                    return
                                batch = []
                                continue
                            item = JobEvent.model_validate_json(frame.text)
                            after = getattr(item, key)
                            batch.append(item)
                        if batch:
                            yield batch
            except (httpx2.HTTPError, ClientError) as exc:
                if isinstance(exc, ClientError) and exc.status is not None:
                    raise
                failures += 1
            await asyncio.sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])

    # -- actions -------------------------------------------------------------------------------
    async def approve(self, job_id: str, message: str | None = None) -> Job:
        body = {"message": message} if message else {}
        return self._job(await self._request("POST", f"/jobs/{job_id}/approve", body=body))

    async def cancel(self, job_id: str) -> Job:
        return self._job(await self._request("POST", f"/jobs/{job_id}/cancel", body={}))

    async def resume(self, job_id: str, message: str | None = None) -> Job:
        body = {"message": message} if message else {}
        return self._job(await self._request("POST", f"/jobs/{job_id}/resume", body=body))

    async def pause(self, job_id: str) -> Job:
        return self._job(await self._request("POST", f"/jobs/{job_id}/pause", body={}))

    async def send_message(self, job_id: str, text: str, mode: MessageMode = "queue") -> None:
        await self._request("POST", f"/jobs/{job_id}/message", body={"text": text, "mode": mode})

    # -- workflows and config ------------------------------------------------------------------
    async def workflows(self) -> list[WorkflowSummary]:
        answer = await self._request("GET", "/workflows")
        return [
            WorkflowSummary(
                path=w["path"],
                display_name=w.get("displayName") or w["path"],
                description=w.get("description") or "",
                kind=w.get("kind") or "job",
                phases=tuple(w.get("phases") or ()),
                layer=w.get("layer"),
            )
            for w in answer["workflows"]
        ]

    async def get_config(self) -> dict[str, Any]:
        answer = await self._request("GET", "/config")
        config: dict[str, Any] = answer["config"]
        return config

    async def put_config(self, config: dict[str, Any]) -> dict[str, Any]:
        answer = await self._request("PUT", "/config", body={"config": config})
        saved: dict[str, Any] = answer["config"]
        return saved

    # -- plan mode -----------------------------------------------------------------------------
    async def plan_turn(
        self,
        session_id: str,
        messages: list[dict[str, str]],
        *,
        context: dict[str, Any] | None = None,
        model: str | None = None,
    ) -> AsyncIterator[PlanEvent]:
        import httpx2

        body = plan_body(session_id, messages, context, model)
        try:
            async with self._http.stream(
                "POST", "/intake/stream", json=body, timeout=httpx2.Timeout(30.0, read=None)
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _refusal(response)
                parser = FrameParser()
                async for line in response.aiter_lines():
                    frame = parser.feed(line)
                    if frame is not None and frame.data:
                        yield PlanEvent(frame.event or "message", frame.json())
        except httpx2.HTTPError as exc:
            raise ClientError(f"the plan stream from {self._url} broke off: {exc}") from exc

    async def list_plans(self, status: str | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else None
        page = await self._request("GET", "/intake/sessions", params=params)
        return list(page["sessions"])

    async def get_plan(self, session_id: str) -> dict[str, Any]:
        return dict(await self._request("GET", f"/intake/sessions/{session_id}"))

    async def abandon_plan(self, session_id: str) -> None:
        await self._request("DELETE", f"/intake/sessions/{session_id}", body={})

    async def dispatch_plan(self, session_id: str, brief: dict[str, Any] | None = None) -> Job:
        body = {"brief": brief} if brief is not None else {}
        path = f"/intake/sessions/{session_id}/dispatch"
        return self._job(await self._request("POST", path, body=body))

    async def aclose(self) -> None:
        self._closed.set()
        await self._http.aclose()

    # -- local SCM -----------------------------------------------------------------------------
    async def merge_local_pr(self, repo: str, pr_id: int) -> None:
        query = {"repo": repo}
        path = f"/scm/local/prs/{pr_id}"
        await self._request("POST", f"{path}/approve", body={"user": _developer()}, params=query)
        await self._request("POST", f"{path}/merge", body={}, params=query)


def plan_body(
    session_id: str,
    messages: list[dict[str, str]],
    context: dict[str, Any] | None,
    model: str | None,
) -> dict[str, Any]:
    """The ``POST /intake/stream`` body for one plan-mode turn."""
    body: dict[str, Any] = {"sessionId": session_id, "messages": messages}
    if context:
        body["context"] = context
    if model:
        body["model"] = model
    return body


def _developer() -> str:
    """Who approves: the login name, as ``coro pr approve`` records it."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "developer"


def _refusal(response: httpx2.Response) -> ClientError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    message = body.get("error") if isinstance(body, dict) else None
    field = body.get("field") if isinstance(body, dict) else None
    return ClientError(
        str(message or f"the runner answered {response.status_code}"),
        status=response.status_code,
        field=str(field) if field else None,
    )
