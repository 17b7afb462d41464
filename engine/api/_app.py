"""The API's routes: a Starlette app over an :class:`~engine.runtime.Engine`.

Starlette is imported inside :func:`build_app` (and the responses inside the helpers that make
them), so importing ``engine.api`` stays cheap. Every handler runs inside :func:`_guarded`,
which turns the engine's refusals into 4xx answers naming the problem and anything unexpected
into a JSON 500 without internals (the exception is logged).
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from engine._fs import atomic_write_bytes
from engine._version import __version__
from engine.api._schemas import (
    MAX_ARTIFACT_BYTES,
    ApproveBody,
    ArtifactContentBody,
    InteractiveBody,
    MessageBody,
    ReasonBody,
    ResumeBody,
)
from engine.api._sse import SseResponse, all_jobs_frames, job_frames
from engine.catalogue import list_workflows, workflow_problem
from engine.config import (
    ConfigError,
    ConfigValidationError,
    redact,
    save_config,
    unredact,
)
from engine.errors import CoroError, WorkflowError
from engine.intake import DispatchBody, IntakeRefused, IntakeRequest
from engine.runtime import ActionRefused
from state import (
    DuplicateJobError,
    EventKind,
    Investigation,
    Job,
    JobInput,
    JobNotFoundError,
    StaleJobError,
    StateError,
    utcnow,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from engine.runtime import Engine

__all__ = ["ApiSettings", "build_app"]

log = logging.getLogger(__name__)

_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_EDITABLE_SUFFIXES = frozenset({".md", ".txt", ".yaml", ".yml", ".json"})
_DEFAULT_PAGE = 50
_MAX_PAGE = 500
_Body = TypeVar("_Body", bound=BaseModel)
Handler = Callable[["Request"], Awaitable[Any]]


class ApiError(Exception):
    """A request the API refuses, with the status and the JSON body to answer with."""

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


class ApiSettings:
    """What the routes need besides the engine."""

    def __init__(
        self, *, mode: str, runner_id: str, heartbeat: float, closing: asyncio.Event
    ) -> None:
        self.mode = mode
        self.runner_id = runner_id
        self.heartbeat = heartbeat
        self.closing = closing


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    from starlette.responses import Response

    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def error_response(
    status: int,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return _json(body, status, headers)


def _guarded(handler: Handler, *, takes_body: bool) -> Handler:
    async def run(request: Request) -> Any:
        try:
            if takes_body:
                _require_json(request)
            return await handler(request)
        except (ApiError, IntakeRefused) as exc:
            return error_response(exc.status, exc.message, exc.field)
        except JobNotFoundError as exc:
            return error_response(404, exc.message)
        except (ActionRefused, StaleJobError, DuplicateJobError) as exc:
            return error_response(409, exc.message)
        except WorkflowError as exc:
            return error_response(400, exc.message)
        except (CoroError, StateError) as exc:
            log.warning("%s %s refused: %s", request.method, request.url.path, exc.message)
            return error_response(400, exc.message)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return error_response(500, "internal error; the runner's log has the details")

    return run


def _require_json(request: Request) -> None:
    """Refuse a state-changing request whose body is not declared as JSON (even an empty one).

    Checked here, after routing, so that an undeclared method gets its 405 first; the security
    middleware has already bounded the body's size by then.
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "send the request body as Content-Type: application/json")


#: What JSON counts as whitespace (RFC 8259): a body of only these is no body at all.
_JSON_SPACE = b" \t\n\r"


async def _body_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip(_JSON_SPACE):  # an empty body; bytes.strip() would also eat \f and \v
        return {}
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None


def _validate(model: type[_Body], data: Any) -> _Body:
    if not isinstance(data, dict):
        raise ApiError(422, "the request body must be a JSON object", field="(body)")
    try:
        # Strict JSON validation: what the OpenAPI document promises, no more. Lax mode would
        # take 0 for a date-time, or "5" for an integer.
        return model.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in error["loc"]) or "(body)"
        raise ApiError(422, f"{field}: {error['msg']}", field=field) from None


async def _body(request: Request, model: type[_Body]) -> _Body:
    return _validate(model, await _body_json(request))


def _int_param(request: Request, name: str, default: int, *, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        if not _WHOLE_NUMBER.fullmatch(raw):  # int() takes " 5", "+5", "1_0", other digits
            raise ValueError(raw)
        value = int(raw)
    except ValueError:
        raise ApiError(422, f"{name} must be a whole number", field=name) from None
    if not lo <= value <= hi:
        raise ApiError(422, f"{name} must be between {lo} and {hi}", field=name)
    return value


def _cursor(request: Request) -> int:
    """The resume cursor: ``Last-Event-ID`` if sent, else ``?after=``, else 0."""
    raw = request.headers.get("last-event-id")
    name = "Last-Event-ID"
    if raw is None:
        raw, name = request.query_params.get("after"), "after"
    if raw is None or raw.strip() == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, f"{name} must be a whole number", field=name) from None
    if value < 0:
        raise ApiError(422, f"{name} must not be negative", field=name)
    return value


_PLAN_STATUSES = ("open", "dispatched", "abandoned", "expired")


def _plan_summary(plan: Investigation) -> dict[str, Any]:
    """A plan session without its conversation (``GET /intake/sessions``)."""
    data = plan.to_wire()
    data.pop("messages", None)
    data["messageCount"] = len(plan.messages)
    return data


def _job_summary(job: Job) -> dict[str, Any]:
    data = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    data.pop("conversationHistory", None)
    return data


class _Routes:
    """The handlers, bound to one engine."""

    def __init__(self, engine: Engine, settings: ApiSettings) -> None:
        self.engine = engine
        self.settings = settings

    async def _job(self, request: Request) -> Job:
        job_id = request.path_params["job_id"]
        job = await self.engine.store.get_job(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    # -- runner ---------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return _json(
            {
                "ok": True,
                "status": "ok",
                "mode": self.settings.mode,
                "version": __version__,
                "runnerId": self.settings.runner_id,
            }
        )

    # -- jobs -----------------------------------------------------------------------------------
    async def create_job(self, request: Request) -> Response:
        data = await _body_json(request)
        if isinstance(data, dict) and "jobId" in data:
            job_id = data.pop("jobId")
            if not isinstance(job_id, str) or not job_id:
                raise ApiError(422, "jobId must be a non-empty string", field="jobId")
        else:
            job_id = None
        spec = _validate(JobInput, data)
        self._check_workflow(spec.workflow_path)
        if job_id is not None:
            try:
                self.engine.paths.job_dir(job_id)
            except ValueError as exc:
                raise ApiError(422, str(exc), field="jobId") from None
        job = await self.engine.create_job(spec, job_id=job_id)
        body = job.to_wire()
        body["jobId"] = job.id
        body["streamUrl"] = f"/jobs/{job.id}/stream"
        return _json(body, 201)

    def _check_workflow(self, workflow_path: str) -> None:
        problem = workflow_problem(self.engine, workflow_path)
        if problem is not None:
            raise ApiError(400, problem, field="workflowPath")

    async def list_jobs(self, request: Request) -> Response:
        params = request.query_params
        statuses = [s for v in params.getlist("status") for s in v.split(",") if s] or None
        workflow = params.get("workflow") or params.get("workflowPath") or None
        limit = _int_param(request, "limit", _DEFAULT_PAGE, lo=1, hi=_MAX_PAGE)
        offset = _int_param(request, "offset", 0, lo=0, hi=10**9)
        store = self.engine.store
        # Read before the page: a client following /events from here misses nothing.
        last_global_seq = await store.last_global_seq()
        jobs = await store.list_jobs(
            status=statuses, workflow_path=workflow, limit=limit, offset=offset
        )
        if workflow is None:
            total = await store.count_jobs(status=statuses)
        else:
            total = len(await store.list_jobs(status=statuses, workflow_path=workflow))
        body: dict[str, Any] = {"jobs": [_job_summary(j) for j in jobs], "total": total,
                                "lastGlobalSeq": last_global_seq}  # fmt: skip
        body["next"] = offset + len(jobs) if offset + len(jobs) < total else None
        return _json(body)

    async def get_job(self, request: Request) -> Response:
        return _json((await self._job(request)).to_wire())

    async def resume(self, request: Request) -> Response:
        body = await _body(request, ResumeBody)
        try:
            job = await self.engine.resume(
                request.path_params["job_id"],
                from_phase=body.from_phase,
                clear_session=body.clear_session,
                message=body.message,
            )
        except WorkflowError as exc:
            if body.from_phase is not None and not await self._has_phase(request, body.from_phase):
                raise ApiError(400, exc.message, field="fromPhase") from None
            raise
        return _json(await self._fresh(job))

    async def _has_phase(self, request: Request, phase: str) -> bool:
        """Whether the job's workflow has ``phase`` (an unreadable workflow counts as yes)."""
        job = await self._job(request)
        try:
            workflow = self.engine.overlays.load_workflow(job.id, job.workflow_path)
        except WorkflowError:
            return True
        return workflow.has_phase(phase)

    async def message(self, request: Request) -> Response:
        body = await _body(request, MessageBody)
        if not body.text.strip():
            raise ApiError(422, "text: the message is empty", field="text")
        message_id = await self.engine.message(
            request.path_params["job_id"], body.text, mode=body.mode
        )
        return _json({"messageId": message_id, "mode": body.mode}, 202)

    async def pause(self, request: Request) -> Response:
        await _body(request, ReasonBody)
        job = await self.engine.pause(request.path_params["job_id"])
        return _json(await self._fresh(job))

    async def cancel(self, request: Request) -> Response:
        body = await _body(request, ReasonBody)
        kwargs = {"reason": body.reason} if body.reason else {}
        job = await self.engine.cancel(request.path_params["job_id"], **kwargs)
        return _json(await self._fresh(job))

    async def approve(self, request: Request) -> Response:
        body = await _body(request, ApproveBody)
        job = await self.engine.approve(
            request.path_params["job_id"], by=body.by, message=body.message
        )
        return _json(await self._fresh(job))

    async def interactive(self, request: Request) -> Response:
        body = await _body(request, InteractiveBody)
        job = await self.engine.set_interactive(request.path_params["job_id"], body.interactive)
        return _json(await self._fresh(job))

    async def _fresh(self, job: Job) -> dict[str, Any]:
        newest = await self.engine.store.get_job(job.id)
        return (newest or job).to_wire()

    async def job_log(self, request: Request) -> Response:
        job = await self._job(request)
        store = self.engine.store
        after = _int_param(request, "after", 0, lo=0, hi=2**62)
        limit = _int_param(request, "limit", 1000, lo=1, hi=5000)
        if "tail" in request.query_params:
            # The last lines, and the seq to follow the stream from. The cursor is read first:
            # a line committed in between shows twice rather than never.
            tail = _int_param(request, "tail", 0, lo=0, hi=100_000)
            last = await store.last_seq(job.id)
            length = await store.log_length(job.id)
            text = await store.get_log(job.id, max(0, length - tail), length) if tail else []
            return _json({"lines": [{"line": line} for line in text], "lastSeq": last,
                          "next": None})  # fmt: skip
        events = await store.read_events(
            job.id, after_seq=after, limit=limit, kinds=(EventKind.LOG,)
        )
        lines = [
            {"seq": e.seq, "at": e.ts.isoformat(), "line": str(e.data.get("line", ""))}
            for e in events
        ]
        nxt = events[-1].seq if len(events) == limit else None
        return _json({"lines": lines, "lastSeq": await store.last_seq(job.id), "next": nxt})

    # -- streams --------------------------------------------------------------------------------
    async def job_events(self, request: Request) -> SseResponse:
        return await self._job_stream(request, logs_only=False)

    async def job_stream(self, request: Request) -> SseResponse:
        return await self._job_stream(request, logs_only=True)

    async def _job_stream(self, request: Request, *, logs_only: bool) -> SseResponse:
        job = await self._job(request)
        frames = job_frames(self.engine.store, job.id, _cursor(request), logs_only=logs_only)
        return SseResponse(frames, heartbeat=self.settings.heartbeat, closing=self.settings.closing)

    async def all_events(self, request: Request) -> SseResponse:
        frames = all_jobs_frames(self.engine.store, _cursor(request))
        return SseResponse(frames, heartbeat=self.settings.heartbeat, closing=self.settings.closing)

    # -- artefacts ------------------------------------------------------------------------------
    def _artifact_file(self, job: Job, artifact_id: str) -> tuple[int, Path]:
        index = next((i for i, a in enumerate(job.artifacts) if a.id == artifact_id), None)
        if index is None:
            raise ApiError(404, f"job {job.id} has no artifact {artifact_id!r}")
        raw = job.artifacts[index].data.get("path")
        if not isinstance(raw, str) or not raw.strip():
            raise ApiError(404, f"artifact {artifact_id!r} has no file (data.path)")
        if PurePosixPath(raw).is_absolute() or PureWindowsPath(raw).is_absolute():
            raise ApiError(403, f"artifact {artifact_id!r} points outside the job directory")
        root = self.engine.paths.job_dir(job.id).resolve()
        try:
            target = (root / raw).resolve()
        except (OSError, RuntimeError):
            target = None
        if target is None or not target.is_relative_to(root):
            raise ApiError(403, f"artifact {artifact_id!r} points outside the job directory")
        return index, target

    async def artifact_content(self, request: Request) -> Response:
        from starlette.responses import Response

        job = await self._job(request)
        _, file = self._artifact_file(job, request.path_params["artifact_id"])
        try:
            data = await asyncio.to_thread(file.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ApiError(404, "the artifact's file does not exist (yet)") from None
        media = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix.lower() in _EDITABLE_SUFFIXES:
            media = {".md": "text/markdown", ".json": "application/json"}.get(
                file.suffix.lower(), "text/plain"
            )
        return Response(data, media_type=media)

    async def put_artifact_content(self, request: Request) -> Response:
        body = await _body(request, ArtifactContentBody)
        job = await self._job(request)
        artifact_id = request.path_params["artifact_id"]
        index, file = self._artifact_file(job, artifact_id)
        if file.suffix.lower() not in _EDITABLE_SUFFIXES:
            raise ApiError(
                400,
                f"only {', '.join(sorted(_EDITABLE_SUFFIXES))} artifacts can be edited",
                field="artifactId",
            )
        data = body.content.encode("utf-8")
        if len(data) > MAX_ARTIFACT_BYTES:
            raise ApiError(413, f"an artifact may hold at most {MAX_ARTIFACT_BYTES} bytes")
        mode = file.stat().st_mode & 0o777 if file.exists() else 0o644
        await asyncio.to_thread(atomic_write_bytes, file, data, mode=mode)
        artifact = job.artifacts[index]
        artifact.edited_at = utcnow()
        artifact.edited_by = body.edited_by or "api"
        await self.engine.store.save_job(job, durable=True)
        await self.engine.store.append_event(
            job.id,
            EventKind.LOG,
            {"line": f"[artifact-edit] {artifact.id} by {artifact.edited_by} ({len(data)} bytes)"},
        )
        return _json(artifact.to_wire())

    # -- workflows and config -------------------------------------------------------------------
    async def workflows(self, request: Request) -> Response:
        return _json({"workflows": await list_workflows(self.engine)})

    # -- plan mode ------------------------------------------------------------------------------
    async def intake_stream(self, request: Request) -> SseResponse:
        body = await _body(request, IntakeRequest)
        intake = self.engine.intake
        turn = await intake.begin(body)

        async def frames() -> AsyncIterator[bytes]:
            async for event in intake.run(turn):
                data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
                yield f"event: {event.kind}\ndata: {data}\n\n".encode()

        return SseResponse(frames(), heartbeat=self.settings.heartbeat,
                           closing=self.settings.closing)  # fmt: skip

    async def list_plans(self, request: Request) -> Response:
        status = request.query_params.get("status")
        if status is not None and status not in _PLAN_STATUSES:
            raise ApiError(422, f"status must be one of {', '.join(_PLAN_STATUSES)}",
                           field="status")  # fmt: skip
        limit = _int_param(request, "limit", 100, lo=1, hi=_MAX_PAGE)
        plans = await self.engine.intake.list(status, limit)
        return _json({"sessions": [_plan_summary(p) for p in plans]})

    async def get_plan(self, request: Request) -> Response:
        plan = await self.engine.intake.get(request.path_params["session_id"])
        return _json(plan.to_wire())

    async def abandon_plan(self, request: Request) -> Response:
        await _body(request, ReasonBody)
        plan = await self.engine.intake.abandon(request.path_params["session_id"])
        return _json(plan.to_wire())

    async def dispatch_plan(self, request: Request) -> Response:
        body = await _body(request, DispatchBody)
        job = await self.engine.intake.dispatch(request.path_params["session_id"], body.brief)
        data = job.to_wire()
        data["jobId"] = job.id
        data["streamUrl"] = f"/jobs/{job.id}/stream"
        return _json(data, 201)

    async def get_config(self, request: Request) -> Response:
        body: dict[str, Any] = {"config": redact(self.engine.config)}
        if self.engine.config_error:
            body["configError"] = self.engine.config_error
        return _json(body)

    async def put_config(self, request: Request) -> Response:
        data = await _body_json(request)
        if isinstance(data, dict) and set(data) == {"config"} and isinstance(data["config"], dict):
            data = data["config"]  # the shape GET /config answers with
        if not isinstance(data, dict):
            raise ApiError(422, "the configuration must be a JSON object", field="(body)")
        try:
            config = unredact(data, self.engine.config)
        except ConfigValidationError as exc:
            issue = exc.issues[0] if exc.issues else None
            field = issue.path if issue is not None else None
            text = f"{issue.path}: {issue.message}" if issue is not None else exc.message
            raise ApiError(422, text, field=field) from None
        except ConfigError as exc:
            raise ApiError(422, exc.message) from None
        await asyncio.to_thread(save_config, self.engine.paths.config_file, config)
        applied = self.engine.reload_config()
        body: dict[str, Any] = {"config": redact(self.engine.config), "applied": applied}
        if self.engine.config_error:
            body["configError"] = self.engine.config_error
        return _json(body)

    async def openapi(self, request: Request) -> Response:
        from engine.api._openapi import openapi_document

        return _json(openapi_document())


def build_app(engine: Engine, settings: ApiSettings) -> Starlette:
    """The API as an ASGI app (without the security guard: see :class:`ApiServer`)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    from engine.api._scm import ScmRoutes

    r = _Routes(engine, settings)
    scm = ScmRoutes(engine)

    def route(path: str, handlers: dict[str, Handler]) -> Route:
        """One route per path, so a 405 lists every method the path has in ``Allow``."""
        guarded = {
            method: _guarded(handler, takes_body=method in _WRITE_METHODS)
            for method, handler in handlers.items()
        }

        async def dispatch(request: Request) -> Any:
            method = "GET" if request.method == "HEAD" else request.method
            return await guarded[method](request)

        return Route(path, dispatch, methods=list(handlers))

    async def http_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, HTTPException):
            return error_response(500, f"{request.method} {request.url.path}: internal error")
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return error_response(exc.status_code, message, headers=exc.headers)

    job = "/jobs/{job_id}"
    paths: dict[str, dict[str, Handler]] = {
        "/health": {"GET": r.health},
        "/openapi.json": {"GET": r.openapi},
        "/jobs": {"GET": r.list_jobs, "POST": r.create_job},
        job: {"GET": r.get_job},
        f"{job}/log": {"GET": r.job_log},
        f"{job}/events": {"GET": r.job_events},
        f"{job}/stream": {"GET": r.job_stream},
        f"{job}/resume": {"POST": r.resume},
        f"{job}/message": {"POST": r.message},
        f"{job}/pause": {"POST": r.pause},
        f"{job}/cancel": {"POST": r.cancel},
        f"{job}/approve": {"POST": r.approve},
        f"{job}/interactive": {"PATCH": r.interactive},
        f"{job}/artifacts/{{artifact_id}}/content": {
            "GET": r.artifact_content,
            "PUT": r.put_artifact_content,
        },
        "/events": {"GET": r.all_events},
        "/workflows": {"GET": r.workflows},
        "/config": {"GET": r.get_config, "PUT": r.put_config},
        "/intake/stream": {"POST": r.intake_stream},
        "/intake/sessions": {"GET": r.list_plans},
        "/intake/sessions/{session_id}": {"GET": r.get_plan, "DELETE": r.abandon_plan},
        "/intake/sessions/{session_id}/dispatch": {"POST": r.dispatch_plan},
        "/webhook/{plugin_id}": {"POST": scm.webhook},
        "/scm/local/prs": {"GET": scm.list_prs},
        "/scm/local/prs/{pr_id}": {"GET": scm.show_pr},
        "/scm/local/prs/{pr_id}/diff": {"GET": scm.diff_pr},
        "/scm/local/prs/{pr_id}/comment": {"POST": scm.comment_pr},
        "/scm/local/prs/{pr_id}/approve": {"POST": scm.approve_pr},
        "/scm/local/prs/{pr_id}/merge": {"POST": scm.merge_pr},
        "/scm/local/prs/{pr_id}/decline": {"POST": scm.decline_pr},
    }
    return Starlette(
        routes=[route(path, handlers) for path, handlers in paths.items()],
        exception_handlers={HTTPException: http_error, Exception: http_error},
    )
