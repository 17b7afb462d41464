"""Tools the engine serves to agents: coro's domain tools, over an in-process MCP server.

Importing this package does not import ``mcp``; :func:`open_domain_toolbox` does, when the
first phase opens its tool box.
"""

from __future__ import annotations

from engine.tools.domain import (
    DOMAIN_TOOLS,
    DomainTool,
    ToolArgs,
    ToolError,
    ToolResult,
    domain_tool_names,
    register,
)
from engine.tools.mcp_bridge import DomainToolBox, open_domain_toolbox

__all__ = [
    "DOMAIN_TOOLS",
    "DomainTool",
    "DomainToolBox",
    "ToolArgs",
    "ToolError",
    "ToolResult",
    "domain_tool_names",
    "open_domain_toolbox",
    "register",
]
