"""The scripted model itself: one request in, one :class:`Reply` out, with no HTTP in sight.

:class:`ScriptedModel` keeps the state that spans requests: a cursor per (job, phase[,
subagent]), the answers already given (by digest of the canonical body, so a retried request
gets the same answer without advancing), the prompt cache, the faults left to inject, and the
record of every request.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.model_server._cache import PromptCache
from engine.model_server._request import (
    RequestContext,
    RequestError,
    chat_position,
    last_tool_results,
    request_context,
    validate_request,
)
from engine.model_server._script import Answer, FaultSpec, ModelScript
from engine.model_server._sse import Event, build_message, error_body, message_events, stable_id

__all__ = ["RecordedRequest", "Reply", "ScriptedModel"]

_Ending = Literal["complete", "drop", "stall"]
"""How a reply ends: complete, the connection closed mid-way, or stalled then closed."""

SECRET_HEADERS = frozenset({"x-api-key", "authorization"})

_ERROR_FAULTS: dict[str, tuple[int, str, str]] = {
    "rate_limit": (
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit (scripted fault).",
    ),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "server_error": (500, "api_error", "Internal server error"),
    "auth": (401, "authentication_error", "invalid x-api-key"),
    "permission": (
        403,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    "billing": (
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
        "Billing to upgrade or purchase credits.",
    ),
}


@dataclass(frozen=True)
class RecordedRequest:
    """One ``POST /v1/messages`` as the server saw and answered it."""

    body: dict[str, Any]
    """The parsed JSON body (``{}`` when it was not a JSON object)."""
    headers: dict[str, str]
    """Lower-cased headers; ``x-api-key`` and ``authorization`` values are ``"***"``."""
    status: int
    request_id: str
    job_id: str | None = None
    phase: str | None = None
    subagent: str | None = None
    step: int | None = None
    """The cursor position (chat: the turn index) the request was answered at."""
    fault: str | None = None
    """The fault kind injected, if any."""
    replayed: bool = False
    """True when the body was answered before and the same answer was sent again."""


@dataclass(frozen=True)
class Reply:
    """What to send back: a JSON body, or SSE events and how the stream ends."""

    status: int
    headers: dict[str, str]
    json_body: dict[str, Any] | None = None
    events: tuple[Event, ...] = ()
    ending: _Ending = "complete"
    stall_seconds: float = 0.0


@dataclass
class _Given:
    step: int
    message: dict[str, Any]


@dataclass(frozen=True)
class _Outcome:
    reply: Reply
    context: RequestContext = field(default_factory=RequestContext)
    step: int | None = None
    fault: str | None = None
    replayed: bool = False


class ScriptedModel:
    """Answers Messages API requests from a :class:`ModelScript`."""

    def __init__(
        self,
        script: ModelScript,
        *,
        on_request: Callable[[RecordedRequest], None] | None = None,
    ) -> None:
        self.script = script
        self.requests: list[RecordedRequest] = []
        self._on_request = on_request
        self._cursors: dict[tuple[str, str, str | None], int] = {}
        self._given: dict[str, _Given] = {}
        self._cache = PromptCache()
        self._faults_left = [fault.times for fault in script.faults]
        #: Called with each stream event (name, data) right after it is written: a benchmark
        #: hook, to time what a client sees against when it was sent.
        self.on_event: Callable[[str, dict[str, Any]], None] | None = None

    def clear(self) -> None:
        """Forget the recorded requests; cursors, answers given and the cache stay."""
        self.requests.clear()

    def respond(self, raw: bytes, headers: Mapping[str, str]) -> Reply:
        """Answer one ``POST /v1/messages`` with body ``raw`` and lower-cased ``headers``."""
        request_id = "req_" + secrets.token_hex(12)
        try:
            body: object = json.loads(raw)
        except ValueError:
            body = None
        outcome = self._decide(body, headers)
        reply = outcome.reply
        reply.headers["request-id"] = request_id
        recorded = RecordedRequest(
            body=body if isinstance(body, dict) else {},
            headers={k: "***" if k in SECRET_HEADERS else v for k, v in headers.items()},
            status=reply.status,
            request_id=request_id,
            job_id=outcome.context.job_id,
            phase=outcome.context.phase,
            subagent=outcome.context.subagent,
            step=outcome.step,
            fault=outcome.fault,
            replayed=outcome.replayed,
        )
        self.requests.append(recorded)
        if self._on_request is not None:
            self._on_request(recorded)
        return reply

    def _decide(self, body: object, headers: Mapping[str, str]) -> _Outcome:
        if not _has_credentials(headers):
            return _Outcome(_error(401, "authentication_error", "x-api-key header is required"))
        if body is None:
            return _Outcome(
                _error(400, "invalid_request_error", "The request body is not valid JSON")
            )
        problem = validate_request(body)
        if problem is not None or not isinstance(body, dict):
            return _Outcome(_error(400, "invalid_request_error", problem or "invalid request"))
        try:
            context = request_context(body)
        except RequestError as exc:
            return _Outcome(_error(400, "invalid_request_error", f"scripted model: {exc}"))
        return self._answer(body, context)

    def _answer(self, body: dict[str, Any], context: RequestContext) -> _Outcome:
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        given = self._given.get(digest)
        key = (context.job_id or "", context.phase or "", context.subagent)
        if context.is_chat:
            step = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        else:
            step = given.step if given is not None else self._cursors.get(key, 0)
        stream = body.get("stream") is True
        fault = self._take_fault(context, step)
        if fault is not None:
            if fault.kind in _ERROR_FAULTS:
                reply = _fault_error(fault)
            else:
                message = given.message if given else self._message(body, context, step, digest)
                reply = self._broken(fault, message, stream)
            return _Outcome(reply, context, step, fault=fault.kind)
        replayed = given is not None
        if given is None:
            given = _Given(step, self._message(body, context, step, digest, commit=True))
            self._given[digest] = given
            if not context.is_chat:
                self._cursors[key] = step + 1
        if stream:
            events = message_events(given.message, chunk_chars=self.script.chunk_chars)
            reply = _stream(tuple(events))
        else:
            reply = Reply(200, {}, json_body=given.message)
        return _Outcome(reply, context, step, replayed=replayed)

    def _message(
        self,
        body: dict[str, Any],
        context: RequestContext,
        step: int,
        digest: str,
        *,
        commit: bool = False,
    ) -> dict[str, Any]:
        """The answer at ``step``; ``commit`` records its prompt-cache writes."""
        script = self.script
        if context.is_chat and script.chat_turns:
            turn, step = chat_position(body)
            steps = script.chat_turns[turn] if turn < len(script.chat_turns) else ()
            what = f"chat turn {turn} round {step}"
            tool_key: tuple[object, ...] = ("chat", turn, step)
        elif context.is_chat:
            steps, what = script.chat, f"chat turn {step}"
            tool_key = ("chat", step)
        elif context.subagent is not None:
            steps = script.subagents.get(context.subagent, ())
            what = f"subagent {context.subagent} in phase {context.phase}"
            tool_key = (context.job_id, context.phase, context.subagent, step)
        else:
            steps, what = script.phases.get(context.phase or "", ()), f"phase {context.phase}"
            tool_key = (context.job_id, context.phase, "", step)
        results = last_tool_results(body)
        answer = steps[step].choose(results) if step < len(steps) else None
        if answer is None and script.fallback is not None:
            answer = script.fallback.choose(results)
        if answer is None:
            answer = Answer(f"(scripted model: no step left for {what})")
        return build_message(
            answer,
            message_id=stable_id("msg_", digest),
            model=script.model or body["model"],
            usage=self._cache.measure(body, commit=commit),
            tool_key=tool_key,
        )

    def _take_fault(self, context: RequestContext, step: int) -> FaultSpec | None:
        for index, fault in enumerate(self.script.faults):
            left = self._faults_left[index]
            if left != 0 and fault.matches(context.phase, context.subagent, step):
                if left > 0:
                    self._faults_left[index] = left - 1
                return fault
        return None

    def _broken(self, fault: FaultSpec, message: dict[str, Any], stream: bool) -> Reply:
        """The reply of a ``stall``, ``drop`` or ``stream_error`` fault on ``message``."""
        if fault.kind == "stream_error" and not stream:
            return _error(529, "overloaded_error", fault.message or "Overloaded")
        if not stream:
            ending: _Ending = "drop" if fault.kind == "drop" else "stall"
            headers = {"content-type": "application/json"}
            return Reply(200, headers, ending=ending, stall_seconds=fault.stall_seconds)
        events = message_events(message, chunk_chars=self.script.chunk_chars)
        if fault.kind == "stall":
            return _stream((events[0], ("ping", {"type": "ping"})), "stall", fault.stall_seconds)
        if fault.kind == "drop":
            return _stream(tuple(events[: fault.after_events]), "drop")
        error = ("error", error_body("overloaded_error", fault.message or "Overloaded"))
        return _stream((events[0], error))


def _has_credentials(headers: Mapping[str, str]) -> bool:
    if headers.get("x-api-key"):
        return True
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _error(status: int, error_type: str, message: str) -> Reply:
    return Reply(status, {}, json_body=error_body(error_type, message))


def _fault_error(fault: FaultSpec) -> Reply:
    status, error_type, message = _ERROR_FAULTS[fault.kind]
    reply = _error(status, error_type, fault.message or message)
    if fault.retry_after is not None:
        seconds = fault.retry_after
        reply.headers["retry-after"] = str(int(seconds)) if seconds.is_integer() else str(seconds)
    return reply


def _stream(
    events: tuple[Event, ...],
    ending: _Ending = "complete",
    stall_seconds: float = 0.0,
) -> Reply:
    headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
    return Reply(200, headers, events=events, ending=ending, stall_seconds=stall_seconds)
