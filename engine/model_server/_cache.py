"""Prompt-cache emulation: which part of a request the real API would read from its cache.

The request is laid out in prefix order (tool definitions, system blocks, message blocks); a
block with ``cache_control`` is a breakpoint. Like the real API, a request reads the longest
prefix that an earlier request wrote, looking at every block boundary up to
:data:`LOOKBACK_BLOCKS` blocks before each breakpoint, and writes the prefix at each breakpoint.
Where a breakpoint sits does not change a prefix's identity: ``cache_control`` is left out of
the digests, so moving the breakpoint to the newest message still reads the older one.

Tokens are estimated as ``ceil(len(json.dumps(fragment)) / 4)`` per fragment as sent.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.model_server._request import content_blocks, system_blocks

__all__ = ["LOOKBACK_BLOCKS", "CacheUsage", "PromptCache", "estimate_tokens"]

LOOKBACK_BLOCKS = 20
"""How many block boundaries before a breakpoint (itself included) are checked for a hit."""


def estimate_tokens(fragment: object) -> int:
    """``ceil(len(json.dumps(fragment)) / 4)``: a stable, cheap stand-in for a tokenizer."""
    return math.ceil(len(json.dumps(fragment)) / 4)


@dataclass(frozen=True)
class CacheUsage:
    """The input side of a response's ``usage``."""

    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int


@dataclass(frozen=True)
class _Layout:
    digests: tuple[str, ...]
    """Digest of the prefix ending at each block."""
    tokens: tuple[int, ...]
    """Tokens of each block."""
    breakpoints: tuple[int, ...]
    """Indexes of the blocks that carry ``cache_control``."""


def _layout(body: Mapping[str, Any]) -> _Layout:
    pieces: list[tuple[str, Any]] = [("tool", tool) for tool in body.get("tools") or []]
    pieces += [("system", block) for block in system_blocks(body.get("system"))]
    for number, message in enumerate(body.get("messages") or []):
        role = f"{number}:{message.get('role')}"
        pieces += [(role, block) for block in content_blocks(message)]
    running = hashlib.sha256()
    digests, tokens, breakpoints = [], [], []
    for index, (section, block) in enumerate(pieces):
        bare = block
        if isinstance(block, dict) and "cache_control" in block:
            if block["cache_control"] is not None:
                breakpoints.append(index)
            bare = {k: v for k, v in block.items() if k != "cache_control"}
        running.update(json.dumps([section, bare], sort_keys=True).encode())
        digests.append(running.copy().hexdigest())
        tokens.append(estimate_tokens(block))
    return _Layout(tuple(digests), tuple(tokens), tuple(breakpoints))


class PromptCache:
    """The prefixes earlier requests wrote, per server."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def measure(self, body: Mapping[str, Any], *, commit: bool = True) -> CacheUsage:
        """The usage of ``body``; with ``commit``, remember the prefixes it writes."""
        layout = _layout(body)
        total = sum(layout.tokens)
        if not layout.breakpoints:
            return CacheUsage(total, 0, 0)
        last = layout.breakpoints[-1]
        candidates = {
            position
            for point in layout.breakpoints
            for position in range(max(0, point - LOOKBACK_BLOCKS + 1), point + 1)
        }
        hits = [p for p in candidates if layout.digests[p] in self._seen]
        read_end = max(hits) + 1 if hits else 0
        write_end = last + 1
        if commit:
            self._seen.update(layout.digests[point] for point in layout.breakpoints)
        return CacheUsage(
            input_tokens=sum(layout.tokens[write_end:]),
            cache_creation_input_tokens=sum(layout.tokens[read_end:write_end]),
            cache_read_input_tokens=sum(layout.tokens[:read_end]),
        )
