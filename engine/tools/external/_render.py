"""A tool result from an external MCP server as the text the model reads."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_types import CallToolResult

__all__ = ["render_result"]


def render_result(result: CallToolResult) -> str:
    """A tool result as text: text blocks as they are, anything else as a short placeholder."""
    parts: list[str] = []
    for block in result.content:
        if block.type == "text":
            parts.append(block.text)
        elif block.type in ("image", "audio"):
            parts.append(f"[{block.mime_type}, {_decoded_size(block.data)} bytes]")
        elif block.type == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            if isinstance(text, str):
                parts.append(text)
            else:
                blob = getattr(resource, "blob", "")
                mime = resource.mime_type or "application/octet-stream"
                parts.append(f"[resource {resource.uri}, {mime}, {_decoded_size(blob)} bytes]")
        elif block.type == "resource_link":
            parts.append(f"[resource link: {block.uri}]")
        else:
            parts.append(f"[{block.type} content]")
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


def _decoded_size(data: str) -> int:
    """The size of base64 ``data`` once decoded, without decoding it."""
    stripped = data.strip()
    return max(0, len(stripped) * 3 // 4 - stripped[-2:].count("="))
