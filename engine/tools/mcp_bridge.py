"""The domain tools of one phase, served by an in-process MCP server and called through a client.

:func:`open_domain_toolbox` builds an ``MCPServer("coro")`` exposing the phase's allowed tools,
connects an in-memory ``mcp.Client`` to it, and yields a :class:`DomainToolBox` (the
:class:`~engine.phase.ToolBox` an executor offers the model). Every failure of a call — wrong
arguments, a refusal, a crash in a handler — comes back as an error result the model can read;
none of them breaks the connection.

``mcp`` is imported when the first tool box opens, never when this module is imported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from functools import cache
from typing import TYPE_CHECKING, Any

from engine.phase import ToolContext, ToolOutcome, ToolSpec
from engine.tools._base import ToolError, render_result
from engine.tools.domain import DOMAIN_TOOLS, DomainTool
from engine.workflow import DOMAIN_TOOL_PREFIX

if TYPE_CHECKING:
    from mcp import Client
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.tools import Tool
    from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
    from mcp.types import CallToolResult

__all__ = [
    "SERVER_NAME",
    "DomainServer",
    "DomainSession",
    "DomainToolBox",
    "open_domain_session",
    "open_domain_toolbox",
]

SERVER_NAME = "coro"

logger = logging.getLogger(__name__)

#: The phase a call through a session belongs to. The tool box sets it around each call; the
#: in-memory client hands the request to the server by awaiting it in the caller's own task,
#: so the handler sees the caller's value, and one session serves every job's phases at once.
_CALLER: ContextVar[ToolContext | None] = ContextVar("coro_domain_caller", default=None)


def _caller() -> ToolContext:
    ctx = _CALLER.get()
    if ctx is None:
        raise ToolError("no phase is running for this call")
    return ctx


class DomainToolBox:
    """The domain tools a phase may call, as ``mcp__coro__<name>``, through an MCP client."""

    def __init__(
        self,
        client: Client | None,
        specs: list[ToolSpec],
        *,
        phase: str,
        registry: Mapping[str, DomainTool[Any]],
        caller: ToolContext | None = None,
    ) -> None:
        self._client = client
        self._specs = specs
        self._phase = phase
        self._registry = registry
        self._caller = caller  # set for a box served by a shared session
        self._short = {spec.name: spec.name.removeprefix(DOMAIN_TOOL_PREFIX) for spec in specs}

    def specs(self) -> list[ToolSpec]:
        return list(self._specs)

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        """Call a tool by its full name; every failure is an error outcome, never an exception."""
        short = self._short.get(name) or self._short.get(DOMAIN_TOOL_PREFIX + name)
        if short is None or self._client is None:
            return ToolOutcome(self._unavailable(name), is_error=True)
        from mcp import MCPError

        token = _CALLER.set(self._caller) if self._caller is not None else None
        try:
            result = await self._client.call_tool(short, dict(arguments))
        # RuntimeError: the client is closed (the runner is stopping), or the SDK refused the
        # result; either way the model gets a result, not a broken phase.
        except (MCPError, RuntimeError) as exc:
            return ToolOutcome(f"{short}: the MCP call failed: {exc}", is_error=True)
        finally:
            if token is not None:
                _CALLER.reset(token)
        text = "\n".join(block.text for block in result.content if block.type == "text")
        return ToolOutcome(text, is_error=bool(result.is_error))

    def _unavailable(self, name: str) -> str:
        available = ", ".join(spec.name for spec in self._specs) or "none"
        short = name.removeprefix(DOMAIN_TOOL_PREFIX)
        if short in self._registry:
            return (
                f"tool {name!r} is not allowed in phase {self._phase!r}; "
                f"the tools of this phase are: {available}"
            )
        return f"unknown tool {name!r}; available tools: {available}"


@asynccontextmanager
async def open_domain_toolbox(
    ctx: ToolContext,
    allowed: Collection[str] | None = None,
    *,
    tools: Mapping[str, DomainTool[Any]] | None = None,
) -> AsyncIterator[DomainToolBox]:
    """Serve the phase's domain tools and yield a tool box that calls them over MCP.

    Enter and leave it in the same task (the client holds an anyio task group); the tool box
    may be called from any task, concurrently.

    Args:
        ctx: the phase's tool context; every handler works on it.
        allowed: the phase's allow-list of full names (``mcp__coro__log``); names of other
            tools in it are ignored. ``None`` offers every tool.
        tools: the registry to serve (default :data:`~engine.tools.domain.DOMAIN_TOOLS`).
    """
    registry = DOMAIN_TOOLS if tools is None else tools
    selected = [
        tool for tool in registry.values() if allowed is None or tool.qualified_name in allowed
    ]
    if not selected:
        yield DomainToolBox(None, [], phase=ctx.phase.name, registry=registry)
        return
    from mcp import Client

    server = _new_server([_mcp_tool(tool, lambda: ctx) for tool in selected])
    # Pinning the protocol version skips the discovery probe: both ends are this process.
    # The server was built from ``selected`` with these very names, descriptions and schemas,
    # so the specs come from the registry rather than a tools/list round trip per phase.
    specs = [ToolSpec(t.qualified_name, t.description, t.input_schema) for t in selected]
    async with Client(server, cache=None, mode=_protocol_version()) as client:
        yield DomainToolBox(client, specs, phase=ctx.phase.name, registry=registry)


class DomainSession:
    """One MCP server and client serving every domain tool, to any number of phases at once.

    Opening a server and a client, and the listing the client asks for before its first
    result, cost ~3 ms. A session pays that once; each phase takes a view with
    :meth:`for_phase`, which offers only the phase's allowed tools and runs their handlers on
    that phase's context, whichever task calls them.
    """

    def __init__(self, client: Client, registry: Mapping[str, DomainTool[Any]]) -> None:
        self._client = client
        self._registry = registry
        self._specs: dict[frozenset[str] | None, list[ToolSpec]] = {}

    def for_phase(self, ctx: ToolContext, allowed: Collection[str] | None) -> DomainToolBox:
        key = None if allowed is None else frozenset(allowed)
        specs = self._specs.get(key)
        if specs is None:
            specs = self._specs[key] = [
                ToolSpec(t.qualified_name, t.description, t.input_schema)
                for t in self._registry.values()
                if allowed is None or t.qualified_name in allowed
            ]
            if len(self._specs) > 64:  # allow-lists come from workflows: a handful
                self._specs = {key: specs}
        client = self._client if specs else None
        return DomainToolBox(
            client, list(specs), phase=ctx.phase.name, registry=self._registry, caller=ctx
        )


@asynccontextmanager
async def open_domain_session(
    tools: Mapping[str, DomainTool[Any]] | None = None,
) -> AsyncIterator[DomainSession]:
    """A :class:`DomainSession` (enter and leave it in the same task; use it from any)."""
    from mcp import Client

    registry = DOMAIN_TOOLS if tools is None else tools
    server = _new_server([_mcp_tool(tool, _caller) for tool in registry.values()])
    async with Client(server, cache=None, mode=_protocol_version()) as client:
        yield DomainSession(client, registry)


class DomainServer:
    """The runner's one :class:`DomainSession`, opened on first use and kept until
    :meth:`aclose`, in a task of its own (the client must be closed by the task that opened
    it). If that task ends (the client broke), the next :meth:`session` opens another."""

    def __init__(self, tools: Mapping[str, DomainTool[Any]] | None = None) -> None:
        self._tools = tools
        self._task: asyncio.Task[None] | None = None
        self._opened: asyncio.Future[DomainSession] | None = None
        self._stop: asyncio.Event | None = None

    async def session(self) -> DomainSession:
        if self._task is None or self._task.done():
            loop = asyncio.get_running_loop()
            self._opened = loop.create_future()
            self._stop = asyncio.Event()
            self._task = loop.create_task(
                self._hold(self._opened, self._stop), name="coro-domain-tools"
            )
        assert self._opened is not None
        return await asyncio.shield(self._opened)

    async def _hold(self, opened: asyncio.Future[DomainSession], stop: asyncio.Event) -> None:
        try:
            async with open_domain_session(self._tools) as session:
                opened.set_result(session)
                await stop.wait()
        except asyncio.CancelledError:
            if not opened.done():
                opened.cancel()
            raise
        except Exception as exc:
            if not opened.done():
                opened.set_exception(exc)
            else:
                logger.exception("the domain tools' MCP session ended; the next phase reopens it")

    async def aclose(self) -> None:
        """Close the session (idempotent); calls still in flight get error results."""
        task, stop = self._task, self._stop
        self._task = self._opened = self._stop = None
        if task is None or stop is None:
            return
        stop.set()
        await asyncio.gather(task, return_exceptions=True)


@cache
def _protocol_version() -> str:
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    return MODERN_PROTOCOL_VERSIONS[-1]


def _new_server(tools: list[Tool]) -> MCPServer:
    from mcp.server.mcpserver import MCPServer

    # MCPServer() calls logging.basicConfig() with a rich handler on stderr, which would draw
    # over the TUI; basicConfig leaves a root logger that already has a handler alone.
    root = logging.getLogger()
    guard = None if root.handlers else logging.NullHandler()
    if guard is not None:
        root.addHandler(guard)
    try:
        server = MCPServer(SERVER_NAME, tools=tools)
    finally:
        if guard is not None:
            root.removeHandler(guard)
    # The SDK wraps every request in an OpenTelemetry span. Both ends of this server are this
    # process and coro installs no tracer, so the span is a no-op that cost ~10% of a call.
    server.middleware[:] = [m for m in server.middleware if not _is_tracing(m)]
    return server


def _is_tracing(middleware: object) -> bool:
    return type(middleware).__name__ == "OpenTelemetryMiddleware"


def _mcp_tool(tool: DomainTool[Any], context: Callable[[], ToolContext]) -> Tool:
    """``tool`` as an MCPServer tool with our own schema, validation and error results;
    ``context`` gives the phase's context when a call comes in."""
    from mcp.server.mcpserver.tools import Tool

    return Tool(
        fn=_runner(tool, context),
        name=tool.name,
        description=tool.description,
        parameters=tool.input_schema,
        fn_metadata=_raw_arguments(),
        is_async=True,
    )


def _runner(
    tool: DomainTool[Any], context: Callable[[], ToolContext]
) -> Callable[[dict[str, Any]], Awaitable[CallToolResult]]:
    from mcp.types import CallToolResult, TextContent

    def result(text: str, *, is_error: bool = False) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=text)], is_error=is_error)

    async def run(arguments: dict[str, Any]) -> CallToolResult:
        try:
            ctx = context()
            value = await tool.invoke(ctx, arguments)
        except ToolError as exc:
            return result(exc.message, is_error=True)
        except Exception as exc:
            logger.exception("domain tool %s failed on job %s", tool.name, context().job.id)
            return result(
                f"{tool.name}: internal error in coro ({type(exc).__name__}: {exc}). This is "
                "not a problem with your arguments; do not repeat the call more than once — "
                "log what you were doing and carry on, or escalate if you cannot.",
                is_error=True,
            )
        return result(render_result(value))

    return run


@cache
def _raw_arguments() -> FuncMetadata:
    """Hands a tool the raw arguments, so that :meth:`DomainTool.parse` validates them and
    names the argument at fault (MCPServer's own message is a pydantic dump)."""
    from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
    from pydantic import ConfigDict

    class RawArguments(ArgModelBase):
        model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

        def model_dump_one_level(self) -> dict[str, Any]:
            return {"arguments": dict(self.model_extra or {})}

    return FuncMetadata(arg_model=RawArguments)
