"""A phase's conversation in the shape of Anthropic's Messages API, and the cache breakpoints.

The job keeps its conversation as :class:`~state.models.ConversationMessage` records whose
``content`` is the API's list of content blocks (``text``, ``tool_use``, ``tool_result``), so a
session resumes exactly where it stopped. Cache breakpoints are added per request and never
stored.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from state.models import ConversationMessage

__all__ = [
    "DEVELOPER_MESSAGE",
    "add_user_blocks",
    "add_user_text",
    "open_session",
    "stored",
    "text_of",
    "tool_input",
    "tool_result",
    "tool_uses",
    "with_breakpoints",
]

DEVELOPER_MESSAGE = "[DEVELOPER MESSAGE]"
_EPHEMERAL = {"type": "ephemeral"}
_NOT_RUN = (
    "not run: the phase stopped before this tool ran (coro was restarted, or the phase was "
    "paused or interrupted). Check the state of the work before you repeat it."
)

Message = dict[str, Any]


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [dict(block) for block in content]


def open_session(history: Sequence[ConversationMessage], kickoff: str) -> list[Message]:
    """The messages a phase starts from: the stored conversation, repaired, plus the kickoff.

    A conversation that stopped after the model asked for tools (a crash, a pause) gets a
    result for each of them saying they did not run, since the API refuses a ``tool_use``
    without its ``tool_result``.
    """
    messages: list[Message] = []
    for message in history:
        if message.role not in ("user", "assistant"):
            continue
        blocks = _blocks(message.content)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == message.role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": message.role, "content": blocks})
    while messages and messages[0]["role"] != "user":
        messages.pop(0)
    if messages and messages[-1]["role"] == "assistant":
        dangling = tool_uses(messages[-1])
        if dangling:
            add_user_blocks(
                messages,
                [tool_result(use["id"], _NOT_RUN, is_error=True) for use in dangling],
            )
    add_user_text(messages, kickoff)
    return messages


def tool_result(tool_use_id: str, text: str, *, is_error: bool = False) -> dict[str, Any]:
    """A ``tool_result`` block (an empty result is sent as a short note: the API wants text)."""
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": tool_use_id,
        "content": text or "(no output)",
    }
    if is_error:
        block["is_error"] = True
    return block


def add_user_blocks(messages: list[Message], blocks: Iterable[dict[str, Any]]) -> None:
    """Append blocks to the last user message, or start one after an assistant message.

    Tool results go first in a user message, as the API requires.
    """
    new = list(blocks)
    if not new:
        return
    if messages and messages[-1]["role"] == "user":
        content = messages[-1]["content"]
        results = [b for b in (*content, *new) if b.get("type") == "tool_result"]
        others = [b for b in (*content, *new) if b.get("type") != "tool_result"]
        messages[-1]["content"] = [*results, *others]
    else:
        messages.append({"role": "user", "content": new})


def add_user_text(messages: list[Message], text: str) -> None:
    if text:
        add_user_blocks(messages, [{"type": "text", "text": text}])


def tool_uses(message: Message) -> list[dict[str, Any]]:
    return [b for b in message.get("content", ()) if b.get("type") == "tool_use"]


def tool_input(use: dict[str, Any]) -> dict[str, Any]:
    """A ``tool_use`` block's arguments (an object, as the API guarantees; ``{}`` otherwise)."""
    value = use.get("input")
    return value if isinstance(value, dict) else {}


def text_of(message: Message) -> str:
    return "".join(b.get("text", "") for b in message.get("content", ()) if b["type"] == "text")


def with_breakpoints(messages: Sequence[Message]) -> list[Message]:
    """A copy of ``messages`` with cache breakpoints on the last two user messages.

    The breakpoint on the latest user message writes the conversation so far to the cache; the
    one on the user message before it sits where the previous request put its own, so each
    request reads everything up to there from the cache. With the ones on the tools and the
    system prompt that makes the API's limit of four.
    """
    out = [{"role": m["role"], "content": list(m["content"])} for m in messages]
    marked = 0
    for message in reversed(out):
        if marked == 2:
            break
        if message["role"] != "user" or not message["content"]:
            continue
        last = dict(message["content"][-1])
        last["cache_control"] = _EPHEMERAL
        message["content"][-1] = last
        marked += 1
    return out


def stored(messages: Sequence[Message]) -> list[ConversationMessage]:
    """The conversation as the job keeps it (deep-copied, no cache breakpoints)."""
    kept: list[ConversationMessage] = []
    for message in messages:
        blocks = []
        for block in message["content"]:
            clean = copy.deepcopy(block)
            clean.pop("cache_control", None)
            blocks.append(clean)
        kept.append(ConversationMessage(role=message["role"], content=blocks))
    return kept
