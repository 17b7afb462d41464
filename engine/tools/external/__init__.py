"""The user's own MCP servers (``mcpServers`` in ``config.json``) as a tool box for a job.

::

    async with open_external_toolbox(config.mcp_servers, cwd=job_dir, log=ctx.log) as box:
        phase_tools = box.restrict(phase.tools)   # per phase: exact names or mcp__<id>__*
        await phase_tools.call("mcp__github__search", {"query": "..."})

The box is opened once around a job's run: servers start concurrently, and one that cannot
start is logged and left out. The model sees each tool as ``mcp__<id>__<tool>``. Importing this
package does not import ``mcp``; opening a box with at least one server does.
See ``docs/mcp-servers.md``.
"""

from __future__ import annotations

from engine.tools.external._box import ExternalToolBox, open_external_toolbox
from engine.tools.external._server import McpServerConfig

__all__ = ["ExternalToolBox", "McpServerConfig", "open_external_toolbox"]
