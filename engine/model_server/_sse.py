"""The Messages API's response shapes: the Message JSON, its SSE events, and error bodies.

The event sequence copies the recorded streams in ``shared/fixtures/anthropic/*.sse``:
``message_start``, then per content block ``content_block_start`` / deltas /
``content_block_stop`` (a ``ping`` after the first start), then ``message_delta`` and
``message_stop``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from engine.model_server._cache import CacheUsage, estimate_tokens
from engine.model_server._script import Answer

__all__ = [
    "Event",
    "build_message",
    "error_body",
    "frame",
    "message_events",
    "stable_id",
]

Event = tuple[str, dict[str, Any]]
"""An SSE event: its name and its JSON data."""


def stable_id(prefix: str, *parts: object) -> str:
    """``prefix`` + 24 hex digits derived from ``parts``: the same parts give the same id."""
    key = "\0".join(str(part) for part in parts)
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:24]


def build_message(
    answer: Answer, *, message_id: str, model: str, usage: CacheUsage, tool_key: tuple[object, ...]
) -> dict[str, Any]:
    """The non-streaming Message for ``answer``; tool ids derive from ``tool_key``."""
    content: list[dict[str, Any]] = []
    if answer.text is not None:
        content.append({"type": "text", "text": answer.text})
    for index, call in enumerate(answer.tool_calls):
        content.append(
            {
                "type": "tool_use",
                "id": stable_id("toolu_", *tool_key, index),
                "name": call.name,
                "caller": {"type": "direct"},
                "input": call.input,
            }
        )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": answer.stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "output_tokens": estimate_tokens(content),
            "service_tier": "standard",
        },
    }


def message_events(message: dict[str, Any], *, chunk_chars: int) -> list[Event]:
    """The SSE events that stream ``message`` (as :func:`build_message` makes it)."""
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**message["usage"], "output_tokens": 1},
    }
    events: list[Event] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [
                {"type": "text_delta", "text": part} for part in _chunks(block["text"], chunk_chars)
            ]
        else:
            opening = {**block, "input": {}}
            encoded = json.dumps(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [
                {"type": "input_json_delta", "partial_json": part}
                for part in _chunks(encoded, chunk_chars)
            ]
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            )
        )
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        events += [
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            for delta in deltas
        ]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    if not message["content"]:
        events.append(("ping", {"type": "ping"}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def frame(event: Event) -> bytes:
    """One SSE frame: ``event: <name>\\ndata: <json>\\n\\n``."""
    name, data = event
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def error_body(error_type: str, message: str) -> dict[str, Any]:
    """The API's error body: ``{"type": "error", "error": {"type": ..., "message": ...}}``."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]
