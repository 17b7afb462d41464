"""coro's domain tools (``mcp__coro__*``): the registry, and the job-control, artefact, memory
and proposal tools of reference §3 registered in it.

Handlers are plain async functions over a :class:`~engine.phase.ToolContext`, so they can be
tested without MCP; :mod:`engine.tools.mcp_bridge` serves them through an in-process MCP
server. Other tool groups (``scm_*``, ``tracker_*``) add themselves with :func:`register`.
"""

from __future__ import annotations

from typing import Any

from engine.tools import _artifacts, _jobctl, _memory, _proposals, _scm
from engine.tools._base import DomainTool, ToolArgs, ToolError, ToolResult, render_result
from engine.workflow import DOMAIN_TOOL_PREFIX

__all__ = [
    "DOMAIN_TOOLS",
    "DomainTool",
    "ToolArgs",
    "ToolError",
    "ToolResult",
    "domain_tool_names",
    "register",
    "render_result",
]

DOMAIN_TOOLS: dict[str, DomainTool[Any]] = {}
"""Every registered domain tool, by short name (``set_work_items``)."""


def register(tool: DomainTool[Any]) -> DomainTool[Any]:
    """Add a tool to :data:`DOMAIN_TOOLS`, so every later phase can be offered it.

    Raises:
        ValueError: a tool of that name is already registered.
    """
    existing = DOMAIN_TOOLS.get(tool.name)
    if existing is not None and existing is not tool:
        raise ValueError(
            f"domain tool {tool.qualified_name!r} is already registered; pick another name"
        )
    DOMAIN_TOOLS[tool.name] = tool
    return tool


def domain_tool_names() -> frozenset[str]:
    """The full names (``mcp__coro__log``) of every registered tool, for ``tools:`` lists."""
    return frozenset(DOMAIN_TOOL_PREFIX + name for name in DOMAIN_TOOLS)


for _group in (_jobctl.TOOLS, _artifacts.TOOLS, _memory.TOOLS, _proposals.TOOLS, _scm.TOOLS):
    for _tool in _group:
        register(_tool)
