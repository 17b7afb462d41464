"""The OpenAPI 3.1 document of the API (``GET /openapi.json``), built from the request models."""

from __future__ import annotations

import functools
from typing import Any, get_args

from pydantic import BaseModel

from engine._version import __version__
from engine.api._schemas import (
    ApproveBody,
    ArtifactContentBody,
    InteractiveBody,
    LocalApproveBody,
    LocalCommentBody,
    LocalMergeBody,
    MessageBody,
    ReasonBody,
    ResumeBody,
)
from engine.intake import DispatchBody, IntakeRequest
from engine.workflow import WorkflowKind
from state import Job, JobInput

__all__ = ["openapi_document"]

_MODELS: tuple[type[BaseModel], ...] = (
    JobInput,
    ResumeBody,
    MessageBody,
    ApproveBody,
    ReasonBody,
    InteractiveBody,
    ArtifactContentBody,
    LocalCommentBody,
    LocalApproveBody,
    LocalMergeBody,
    IntakeRequest,
    DispatchBody,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_ERROR = {"description": "error", "content": _json_content(_ref("Error"))}
_SSE = {"text/event-stream": {"schema": {"type": "string"}}}


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    status: str = "200",
    body: str | None = None,
    errors: tuple[int, ...] = (),
    params: tuple[dict[str, Any], ...] = (),
    secured: bool = True,
) -> dict[str, Any]:
    responses: dict[str, Any] = {status: ok}
    codes = (*errors, 401, 403, 500) if secured else (*errors, 403, 500)
    if body is not None:
        codes = (*codes, 400, 413, 415, 422)  # 400: the body is not JSON
    for code in sorted(set(codes)):
        responses[str(code)] = _ERROR
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        # Required: even an empty body (taken as {}) must be sent as application/json (415).
        op["requestBody"] = {"required": True, "content": _json_content(_ref(body))}
    if not secured:
        op["security"] = []
    return op


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": _json_content(schema)}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
_ARTIFACT_ID = {
    "name": "artifact_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}
_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[0-9]*$"},
    "description": "Resume after this event id (wins over ?after=).",
}
_AFTER = _query("after", {"type": "integer", "minimum": 0}, "Resume after this event id.")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document; computed once."""
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    job = Job.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    schemas.update(job.pop("$defs", {}))
    schemas["Job"] = job
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
    }
    job_ref = _ref("Job")
    obj: dict[str, Any] = {"type": "object"}
    job_ops = (_JOB_ID,)
    sse = {"description": "an SSE stream", "content": _SSE}
    paths: dict[str, Any] = {
        "/health": {"get": _op("Liveness, mode, version and runner id", _ok(obj), secured=False)},
        "/openapi.json": {"get": _op("This document", _ok(obj))},
        "/jobs": {
            "get": _op(
                "List jobs, newest first",
                _ok(
                    {
                        "type": "object",
                        "properties": {
                            "jobs": {"type": "array", "items": obj},
                            "total": {"type": "integer"},
                            "next": {"type": ["integer", "null"]},
                            "lastGlobalSeq": {"type": "integer"},
                        },
                    }
                ),
                errors=(422,),
                params=(
                    _query("status", {"type": "string"}, "Comma-separated statuses."),
                    _query("workflow", {"type": "string"}, "A workflowPath."),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Page."),
                    _query(
                        "offset",
                        {"type": "integer", "minimum": 0, "maximum": 1_000_000_000},
                        "Skip this many.",
                    ),
                ),
            ),
            "post": _op(
                "Create a job and queue it",
                _ok(job_ref, "created"),
                status="201",
                body="JobInput",
                errors=(400, 409),
            ),
        },
        "/jobs/{job_id}": {"get": _op("One job", _ok(job_ref), errors=(404,), params=job_ops)},
        "/jobs/{job_id}/log": {
            "get": _op(
                "The job's log lines after a seq, a page at a time; or, with tail, the last"
                " lines and the seq to follow the event stream from",
                _ok(
                    {
                        "type": "object",
                        "required": ["lines", "lastSeq", "next"],
                        "properties": {
                            "lastSeq": {"type": "integer"},
                            "lines": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["line"],
                                    "properties": {
                                        "seq": {"type": "integer"},
                                        "at": {"type": "string"},
                                        "line": {"type": "string"},
                                    },
                                },
                            },
                            "next": {"type": ["integer", "null"]},
                        },
                    }
                ),
                errors=(404, 422),
                params=(
                    _JOB_ID,
                    _query(
                        "after",
                        {"type": "integer", "minimum": 0, "maximum": 2**62},
                        "Lines after this seq.",
                    ),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 5000}, "Page."),
                    _query(
                        "tail",
                        {"type": "integer", "minimum": 0, "maximum": 100000},
                        "The last lines instead of a page (seq and at left out).",
                    ),
                ),
            )
        },
        "/jobs/{job_id}/events": {
            "get": _op(
                "SSE of the job's event log (id = seq); ends after a terminal status",
                sse,
                errors=(404, 422),
                params=(_JOB_ID, _LAST_EVENT_ID, _AFTER),
            )
        },
        "/jobs/{job_id}/stream": {
            "get": _op(
                "SSE of the job's log lines (id = seq); ends after a terminal status",
                sse,
                errors=(404, 422),
                params=(_JOB_ID, _LAST_EVENT_ID, _AFTER),
            )
        },
        "/events": {
            "get": _op(
                "SSE of every job's events (id = global seq)",
                sse,
                errors=(422,),
                params=(_LAST_EVENT_ID, _AFTER),
            )
        },
        "/jobs/{job_id}/artifacts/{artifact_id}/content": {
            "get": _op(
                "The file behind an artefact",
                {"description": "the file", "content": {"*/*": {"schema": {"type": "string"}}}},
                errors=(403, 404),
                params=(_JOB_ID, _ARTIFACT_ID),
            ),
            "put": _op(
                "Replace a text artefact's file (.md .txt .yaml .yml .json, at most 2 MiB)",
                _ok(obj),
                body="ArtifactContentBody",
                errors=(400, 403, 404, 409),
                params=(_JOB_ID, _ARTIFACT_ID),
            ),
        },
        "/jobs/{job_id}/resume": {
            "post": _op(
                "Resume a parked, escalated or failed job",
                _ok(job_ref),
                body="ResumeBody",
                errors=(400, 404, 409),
                params=job_ops,
            )
        },
        "/jobs/{job_id}/message": {
            "post": _op(
                "Send a developer message",
                _ok(obj, "accepted"),
                status="202",
                body="MessageBody",
                errors=(404, 409),
                params=job_ops,
            )
        },
        "/jobs/{job_id}/pause": {
            "post": _op(
                "Park the job at its next safe boundary",
                _ok(job_ref),
                body="ReasonBody",
                errors=(404, 409),
                params=job_ops,
            )
        },
        "/jobs/{job_id}/cancel": {
            "post": _op(
                "Cancel the job",
                _ok(job_ref),
                body="ReasonBody",
                errors=(404, 409),
                params=job_ops,
            )
        },
        "/jobs/{job_id}/approve": {
            "post": _op(
                "Release a checkpoint park",
                _ok(job_ref),
                body="ApproveBody",
                errors=(404, 409),
                params=job_ops,
            )
        },
        "/jobs/{job_id}/interactive": {
            "patch": _op(
                "Turn checkpoints on or off",
                _ok(job_ref),
                body="InteractiveBody",
                errors=(404, 409),
                params=job_ops,
            )
        },
        "/workflows": {
            "get": _op(
                "Workflows of the base and tenant layers, and which layer supplies each",
                _ok(
                    {
                        "type": "object",
                        "required": ["workflows"],
                        "properties": {
                            "workflows": {"type": "array", "items": _ref("WorkflowSummary")}
                        },
                    }
                ),
            )
        },
        "/config": {
            "get": _op("The config, secrets masked", _ok(obj)),
            "put": {
                **_op(
                    "Replace the config (masked values keep the secret)",
                    _ok(obj),
                    body="Config",
                    errors=(400,),
                ),
            },
        },
        **_intake_paths(obj, sse),
        "/webhook/{plugin_id}": {
            "post": _op(
                "A webhook delivery from a hosting service, verified by its signature "
                "(X-Hub-Signature-256 for GitHub, X-Hub-Signature for Bitbucket) instead of "
                "the token; stored, then routed to the jobs it concerns",
                {
                    "description": "accepted",
                    "content": _json_content(
                        {
                            "type": "object",
                            "required": ["accepted", "duplicates"],
                            "properties": {
                                "accepted": {"type": "integer"},
                                "duplicates": {"type": "integer"},
                            },
                        }
                    ),
                },
                status="202",
                body="WebhookPayload",
                errors=(401, 404),
                params=(
                    {
                        "name": "plugin_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ),
                secured=False,
            )
        },
        **_local_scm_paths(obj),
    }
    schemas["WorkflowSummary"] = {
        "type": "object",
        "required": ["path", "displayName", "description", "kind", "phases", "layer"],
        "properties": {
            "path": {"type": "string", "examples": ["workflows/job/workflow.md"]},
            "displayName": {"type": "string"},
            "description": {"type": "string"},
            "kind": {"enum": list(get_args(WorkflowKind))},
            "phases": {"type": "array", "items": {"type": "string"}},
            "layer": {
                "type": "string",
                "description": "The layer that supplies the file: base or tenant:<id>.",
                "examples": ["base", "tenant:solo-laptop"],
            },
        },
    }
    schemas["Config"] = {"type": "object", "description": "LocalConfig as camelCase JSON."}
    schemas["WebhookPayload"] = {"description": "The hosting service's event payload."}
    return {
        "openapi": "3.1.0",
        "info": {"title": "coro runner API", "version": __version__},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


_SESSION_ID = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _intake_paths(obj: dict[str, Any], sse: dict[str, Any]) -> dict[str, Any]:
    """Plan mode: the streamed chat, the saved sessions, and dispatching a brief."""
    session = (_SESSION_ID,)
    status = _query(
        "status",
        {"enum": ["open", "dispatched", "abandoned", "expired"]},
        "Only sessions with this status.",
    )
    limit = _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "At most this many.")
    return {
        "/intake/stream": {
            "post": _op(
                "One plan-mode turn as SSE: session, notice, token, thinking, tool_start, "
                "tool_end, then done or error (reason no-llm, budget or provider)",
                sse,
                body="IntakeRequest",
                errors=(409,),
            )
        },
        "/intake/sessions": {
            "get": _op(
                "Saved plan sessions, newest first (without the conversation)",
                _ok(obj),
                errors=(422,),
                params=(status, limit),
            )
        },
        "/intake/sessions/{session_id}": {
            "get": _op(
                "One plan session with its conversation, readiness, findings and brief",
                _ok(obj),
                errors=(404,),
                params=session,
            ),
            "delete": _op(
                "Abandon a plan session (it is kept, marked abandoned)",
                _ok(obj),
                body="ReasonBody",
                errors=(404, 409),
                params=session,
            ),
        },
        "/intake/sessions/{session_id}/dispatch": {
            "post": _op(
                "Create the job the plan's brief (or an edited brief) describes",
                _ok(_ref("Job")),
                status="201",
                body="DispatchBody",
                errors=(404, 409),
                params=session,
            )
        },
    }


def _local_scm_paths(obj: dict[str, Any]) -> dict[str, Any]:
    """The local SCM's review routes (``coro pr``)."""
    repo = {
        "name": "repo",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
        "description": "The repository slug.",
    }
    number = {"type": "string", "pattern": "^[0-9]{1,18}$"}
    pr = {"name": "pr_id", "in": "path", "required": True, "schema": number}
    both = (pr, repo)
    text = {
        "description": "a unified diff",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }

    def action(summary: str, body: str, status: str = "200") -> dict[str, Any]:
        return {"post": _op(summary, _ok(obj), status=status, body=body, errors=(404, 409),
                            params=both)}  # fmt: skip

    return {
        "/scm/local/prs": {
            "get": _op(
                "The local SCM's pull requests, newest first",
                _ok(obj),
                errors=(404, 422),
                params=(
                    _query("repo", {"type": "string"}, "Only this repository."),
                    _query("state", {"enum": ["open", "merged", "declined"]}, "Only this state."),
                ),
            )
        },
        "/scm/local/prs/{pr_id}": {
            "get": _op(
                "One local pull request, with its comments and approvals",
                _ok(obj),
                errors=(400, 404, 422),
                params=both,
            )
        },
        "/scm/local/prs/{pr_id}/diff": {
            "get": _op("The pull request's diff", text, errors=(400, 404, 422), params=both)
        },
        "/scm/local/prs/{pr_id}/comment": action(
            "Comment, or reply with parentId", "LocalCommentBody", "201"
        ),
        "/scm/local/prs/{pr_id}/approve": action("Approve as a person", "LocalApproveBody"),
        "/scm/local/prs/{pr_id}/merge": action("Merge into the target branch", "LocalMergeBody"),
        "/scm/local/prs/{pr_id}/decline": action("Close without merging", "ReasonBody"),
    }
