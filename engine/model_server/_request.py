"""Reading a Messages API request: validation like the real API, and whose turn it is.

:func:`validate_request` returns the ``invalid_request_error`` message the real API would give
(or ``None``); :func:`request_context` finds the job, phase and subagent in coro's system prompt;
:func:`last_tool_results` is the text a step's ``when`` cases look at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_CACHE_BREAKPOINTS",
    "RequestContext",
    "RequestError",
    "content_blocks",
    "last_tool_results",
    "request_context",
    "system_blocks",
    "validate_request",
]

MAX_CACHE_BREAKPOINTS = 4

_CURRENT_JOB = re.compile(r"^# Current Job[ \t]*$", re.MULTILINE)
_JSON_FENCE = re.compile(r"^```json[ \t]*\n(.*?)\n```", re.MULTILINE | re.DOTALL)
_SUBAGENT = re.compile(r"^# Subagent:[ \t]*(\S.*?)[ \t]*$", re.MULTILINE)


class RequestError(ValueError):
    """A request the scripted model cannot place (its ``# Current Job`` block is malformed)."""


@dataclass(frozen=True)
class RequestContext:
    """Whose turn a request is: a job's phase (maybe a subagent), or a plan-mode chat."""

    job_id: str | None = None
    phase: str | None = None
    subagent: str | None = None

    @property
    def is_chat(self) -> bool:
        return self.job_id is None


def system_blocks(system: object) -> list[Any]:
    """The ``system`` field as a list of blocks (a string is one block)."""
    if system is None:
        return []
    if isinstance(system, list):
        return system
    return [system]


def content_blocks(message: Mapping[str, Any]) -> list[Any]:
    """A message's content as a list of blocks (a string is one block)."""
    content = message.get("content")
    if isinstance(content, list):
        return content
    return [content]


def _system_text(system: object) -> str:
    parts = []
    for block in system_blocks(system):
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "\n".join(parts)


def request_context(body: Mapping[str, Any]) -> RequestContext:
    """Find ``jobId``/``phase`` in the ``# Current Job`` JSON and the ``# Subagent:`` line.

    Raises:
        RequestError: the block is there but its JSON is missing, invalid or incomplete.
    """
    text = _system_text(body.get("system"))
    heading = _CURRENT_JOB.search(text)
    if heading is None:
        return RequestContext()
    fence = _JSON_FENCE.search(text, heading.end())
    if fence is None:
        raise RequestError("the '# Current Job' section has no ```json block")
    try:
        job = json.loads(fence[1])
    except json.JSONDecodeError as exc:
        raise RequestError(f"the '# Current Job' JSON is invalid: {exc}") from exc
    if not isinstance(job, dict):
        raise RequestError("the '# Current Job' JSON is not an object")
    job_id, phase = job.get("jobId"), job.get("phase")
    for name, value in (("jobId", job_id), ("phase", phase)):
        if not isinstance(value, str) or not value:
            raise RequestError(f"the '# Current Job' JSON has no {name!r} string")
    subagent = _SUBAGENT.search(text)
    return RequestContext(job_id, phase, subagent[1] if subagent else None)


def _is_user_text(message: Mapping[str, Any]) -> bool:
    """A user message the developer wrote (not only tool results)."""
    if message.get("role") != "user":
        return False
    return any(
        isinstance(block, str) or (isinstance(block, dict) and block.get("type") == "text")
        for block in content_blocks(message)
    )


def chat_position(body: Mapping[str, Any]) -> tuple[int, int]:
    """A chat request's (turn, round): the developer messages before the last one, and the
    assistant messages (tool rounds) since it."""
    messages = list(body.get("messages") or [])
    texts = [i for i, m in enumerate(messages) if _is_user_text(m)]
    if not texts:
        return 0, sum(1 for m in messages if m.get("role") == "assistant")
    last = texts[-1]
    rounds = sum(1 for m in messages[last:] if m.get("role") == "assistant")
    return len(texts) - 1, rounds


def last_tool_results(body: Mapping[str, Any]) -> str:
    """The text of the ``tool_result`` blocks in the last user message, joined by newlines."""
    messages = body.get("messages") or []
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if last_user is None:
        return ""
    parts: list[str] = []
    for block in content_blocks(last_user):
        if isinstance(block, dict) and block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, str):
                parts.append(inner)
            elif isinstance(inner, list):
                parts.extend(
                    part["text"]
                    for part in inner
                    if isinstance(part, dict) and isinstance(part.get("text"), str)
                )
    return "\n".join(parts)


def validate_request(body: object) -> str | None:
    """The message of the 400 the real API would answer ``body`` with, or ``None``."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object"
    for field, kind, noun in (
        ("model", str, "a string"),
        ("max_tokens", int, "an integer"),
        ("messages", list, "a list"),
    ):
        if field not in body:
            return f"{field}: Field required"
        value = body[field]
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{field}: Input should be {noun}"
    messages: list[Any] = body["messages"]
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{index}: each message needs a role of 'user' or 'assistant'"
        if "content" not in message:
            return f"messages.{index}.content: Field required"
    return _check_tool_pairs(messages) or _check_breakpoints(body)


def _check_tool_pairs(messages: list[dict[str, Any]]) -> str | None:
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        uses = [
            block.get("id")
            for block in content_blocks(message)
            if isinstance(block, dict) and block.get("type") == "tool_use"
        ]
        if not uses:
            continue
        follower = messages[index + 1] if index + 1 < len(messages) else None
        answered = set()
        if follower is not None and follower["role"] == "user":
            answered = {
                block.get("tool_use_id")
                for block in content_blocks(follower)
                if isinstance(block, dict) and block.get("type") == "tool_result"
            }
        missing = [str(use) for use in uses if use not in answered]
        if missing:
            return (
                f"messages.{index + 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
    for index, message in enumerate(messages):
        if message["role"] != "user":
            continue
        previous = messages[index - 1] if index > 0 else None
        offered = set()
        if previous is not None and previous["role"] == "assistant":
            offered = {
                block.get("id")
                for block in content_blocks(previous)
                if isinstance(block, dict) and block.get("type") == "tool_use"
            }
        for number, block in enumerate(content_blocks(message)):
            if (
                isinstance(block, dict)
                and block.get("type") == "tool_result"
                and block.get("tool_use_id") not in offered
            ):
                return (
                    f"messages.{index}.content.{number}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` "
                    "block must have a corresponding `tool_use` block in the previous message."
                )
    return None


def _prefix_blocks(body: Mapping[str, Any]) -> Iterator[Any]:
    """Every tool definition, system block and message block, in prefix order."""
    yield from body.get("tools") or []
    yield from system_blocks(body.get("system"))
    for message in body.get("messages") or []:
        yield from content_blocks(message)


def _check_breakpoints(body: Mapping[str, Any]) -> str | None:
    found = sum(
        1
        for block in _prefix_blocks(body)
        if isinstance(block, dict) and block.get("cache_control") is not None
    )
    if found > MAX_CACHE_BREAKPOINTS:
        return (
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}."
        )
    return None
