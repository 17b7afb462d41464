"""The tool box of a job's external MCP servers, opened once around the job's run."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from engine.config import RESERVED_MCP_ID
from engine.phase import ToolOutcome, ToolSpec
from engine.tools.external._server import ExternalServer, ExternalTool, LogLine, McpServerConfig

__all__ = ["ExternalToolBox", "open_external_toolbox"]

logger = logging.getLogger(__name__)

_SERVER_ID = re.compile(r"[A-Za-z0-9_-]+")
_MCP_TOOL = re.compile(r"mcp__([A-Za-z0-9_-]+?)__(.+)")
_CLOSE_SECONDS = 10.0
"""The most closing the box may take; stdio shutdown (stdin closed, SIGTERM, SIGKILL) fits."""


class ExternalToolBox:
    """The tools of the job's external MCP servers, as ``mcp__<id>__<tool>``.

    A :class:`~engine.phase.ToolBox`. :meth:`restrict` gives the view a phase may use; views
    share the box's connections. Calls may come from any task, concurrently.
    """

    def __init__(
        self,
        servers: Mapping[str, ExternalServer],
        tools: Mapping[str, ExternalTool],
        *,
        every_tool: Mapping[str, ExternalTool] | None = None,
    ) -> None:
        self._servers = servers
        self._tools = dict(tools)
        self._every_tool = self._tools if every_tool is None else every_tool

    @property
    def servers(self) -> dict[str, str]:
        """Each configured server's status: ``ready``, ``disabled`` or ``failed: <reason>``."""
        return {server_id: server.status for server_id, server in self._servers.items()}

    def specs(self) -> list[ToolSpec]:
        return [tool.spec for tool in self._tools.values()]

    def restrict(self, allowed: Collection[str] | None) -> ExternalToolBox:
        """The tools a phase's allow-list names, exactly or as ``mcp__<id>__*``.

        Other entries (built-in tools, ``mcp__coro__*`` names) are ignored; ``None`` keeps all.
        """
        if allowed is None:
            return self
        wildcards = {
            match[1]
            for entry in allowed
            if (match := _MCP_TOOL.fullmatch(entry)) is not None and match[2] == "*"
        }
        tools = {
            name: tool
            for name, tool in self._tools.items()
            if name in allowed or tool.server.id in wildcards
        }
        return ExternalToolBox(self._servers, tools, every_tool=self._every_tool)

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        """Call a tool by its full name; every failure is an error outcome, never an exception."""
        tool = self._tools.get(name)
        if tool is None:
            return ToolOutcome(self._unavailable(name), is_error=True)
        return await tool.server.call(tool, arguments)

    def _unavailable(self, name: str) -> str:
        available = ", ".join(self._tools) or "none"
        if name in self._every_tool:
            return (
                f"tool {name!r} is not allowed in this phase; "
                f"the external MCP tools of this phase are: {available}"
            )
        match = _MCP_TOOL.fullmatch(name)
        server = self._servers.get(match[1]) if match else None
        if server is not None and not server.ready:
            state = server.status if server.status.startswith("failed") else f"is {server.status}"
            return f"tool {name!r} is unavailable: mcp server {server.id!r} {state}"
        return f"unknown tool {name!r}; the external MCP tools of this phase are: {available}"


@asynccontextmanager
async def open_external_toolbox(
    servers: Mapping[str, McpServerConfig],
    *,
    cwd: Path,
    log: LogLine,
    start_timeout: float = 30.0,
    call_timeout: float = 600.0,
) -> AsyncIterator[ExternalToolBox]:
    """Start the configured MCP servers and yield a tool box over the ones that came up.

    Servers start concurrently; one that is not ready within ``start_timeout`` (or cannot
    start at all) is logged and left out. On exit every connection is closed and every stdio
    server process is stopped. Enter and leave it in the same task.

    Args:
        servers: ``config.mcp_servers``: server id → server.
        cwd: the working directory of stdio servers (the job's working directory).
        log: writes one line to the job's log (e.g. :meth:`ToolContext.log`).
        start_timeout: seconds for a server to spawn or connect, initialize and list its tools.
        call_timeout: seconds a tool call may take before it is abandoned as an error.
    """
    write = _never_raising(log)
    entries = {
        server_id: ExternalServer(server_id, config, cwd=cwd, log=write, call_timeout=call_timeout)
        for server_id, config in servers.items()
    }
    starting: list[ExternalServer] = []
    for server in entries.values():
        refusal = _refusal(server.id)
        if refusal is not None:
            server.skip(f"failed: {refusal}")
            await write(
                f"mcp server {server.id!r} is refused: {refusal}; the job goes on without it"
            )
        elif not server.config.enabled:
            server.skip("disabled")
        else:
            starting.append(server)
    if not starting:
        yield ExternalToolBox(entries, {})
        return

    failure: Exception | None = None
    async with anyio.create_task_group() as tasks:
        for server in starting:
            tasks.start_soon(server.run, name=f"mcp server {server.id}")
        with anyio.move_on_after(start_timeout):
            for server in starting:
                await server.settled.wait()
        for server in starting:
            if not server.settled.is_set():
                await server.give_up(f"it was not ready within {start_timeout:g}s")
        tools = {
            name: tool for server in starting if server.ready for name, tool in server.tools.items()
        }
        try:
            yield ExternalToolBox(entries, tools)
        except Exception as exc:
            # Raised again below, so that the caller sees its own error and not a task group's.
            failure = exc
        finally:
            for server in starting:
                server.stop()
            with anyio.move_on_after(_CLOSE_SECONDS, shield=True):
                for server in starting:
                    await server.finished.wait()
            if not all(server.finished.is_set() for server in starting):
                logger.warning("mcp servers did not close within %ss; cancelling", _CLOSE_SECONDS)
                tasks.cancel_scope.cancel()
    if failure is not None:
        raise failure


def _refusal(server_id: str) -> str | None:
    """Why a server id cannot be used (configuration validation refuses these too)."""
    if server_id.casefold() == RESERVED_MCP_ID:
        return f"the id {server_id!r} is reserved for coro's own tools (mcp__coro__*)"
    if not _SERVER_ID.fullmatch(server_id) or "__" in server_id:
        return f"the id {server_id!r} must be letters, digits, '-' or '_' without '__'"
    return None


def _never_raising(log: LogLine) -> LogLine:
    """``log``, but a failure to write the job log never breaks the tool box."""

    async def write(line: str) -> None:
        try:
            await log(line)
        except Exception:
            logger.warning("could not write to the job log: %s", line, exc_info=True)

    return write
