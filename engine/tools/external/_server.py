"""One external MCP server for the length of a job run: started, listed, called and closed.

An :class:`ExternalServer` runs in its own task (:meth:`ExternalServer.run`): it opens the
transport, lets ``mcp.Client`` negotiate the protocol (``auto``: the server may be old), lists the
tools, and keeps the connection until :meth:`~ExternalServer.stop`. Whatever goes wrong is turned
into a status and a line in the job log, never an exception out of the task.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

import anyio

from engine._version import __version__
from engine.config import HttpMcpServer, SseMcpServer, StdioMcpServer
from engine.phase import ToolOutcome, ToolSpec
from engine.tools.external._render import render_result
from engine.tools.external._stderr import StderrTail

if TYPE_CHECKING:
    import httpx2
    from mcp import Client
    from mcp.client._transport import Transport
    from mcp_types import Tool

__all__ = ["ExternalServer", "ExternalTool", "LogLine", "McpServerConfig"]

logger = logging.getLogger(__name__)

McpServerConfig: TypeAlias = StdioMcpServer | HttpMcpServer | SseMcpServer
LogLine: TypeAlias = Callable[[str], Awaitable[None]]

TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""The model's rule for a tool name; ``mcp__<id>__<tool>`` must match it in full."""

_INHERITED_ENV = (
    *("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TMPDIR", "TZ"),
    *("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES"),
    *("SYSTEMROOT", "SYSTEMDRIVE", "COMSPEC", "PATHEXT", "TEMP", "TMP", "USERPROFILE", "APPDATA"),
)
"""What a stdio server inherits from coro's environment; nothing else (no API keys)."""

_HTTP_TIMEOUT = 30.0
_SSE_READ_TIMEOUT = 300.0
_CALL_GRACE = 5.0
"""Beyond ``call_timeout``, how long a call may take to come back with the SDK's own timeout."""
_LAST_WORDS_SECONDS = 1.0
"""How long a call that found its server dead waits for the server's last stderr lines."""
_LIST_PAGES = 100
_LOGGED_NAMES = 20


@dataclass(frozen=True, slots=True)
class ExternalTool:
    """A tool as the model sees it, and where to call it."""

    spec: ToolSpec
    short_name: str
    server: ExternalServer


class ExternalServer:
    """One configured server: its connection, its tools and its status.

    ``status`` is ``"starting"``, ``"ready"``, ``"disabled"`` or ``"failed: <reason>"``.
    """

    def __init__(
        self,
        server_id: str,
        config: McpServerConfig,
        *,
        cwd: Path,
        log: LogLine,
        call_timeout: float,
    ) -> None:
        self.id = server_id
        self.config = config
        self.status = "starting"
        self.tools: dict[str, ExternalTool] = {}
        self.settled = anyio.Event()
        """Set once the server is ready or has failed."""
        self.finished = anyio.Event()
        """Set once the connection is closed and a stdio process is gone."""
        self._cwd = cwd
        self._log = log
        self._call_timeout = call_timeout
        self._stop = anyio.Event()
        self._scope = anyio.CancelScope()
        self._client: Client | None = None
        self._stderr: StderrTail | None = None
        self._http_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def skip(self, status: str) -> None:
        """Never start this server (``disabled``, or refused with ``failed: <reason>``)."""
        self.status = status
        self.settled.set()
        self.finished.set()

    def stop(self) -> None:
        self._stop.set()

    async def give_up(self, reason: str) -> None:
        """Stop waiting for a server that has not started; it is closed in the background."""
        await self._fail_start(reason)
        self._scope.cancel()

    # ── the server's task ───────────────────────────────────────────────────────────────────

    async def run(self) -> None:
        """Start, serve until :meth:`stop`, close. Raises nothing but cancellation."""
        try:
            with self._scope:
                await self._serve()
        except Exception as exc:
            reason = self._describe(exc)
            if self.status == "starting":
                await self._fail_start(reason)
            elif self.ready and not self._stop.is_set():
                await self._lose(f"its connection failed ({reason})")
            else:
                logger.debug("mcp server %r closed with an error: %s", self.id, reason)
        finally:
            self._client = None
            self.settled.set()
            self.finished.set()

    async def _serve(self) -> None:
        from mcp import Client
        from mcp_types import Implementation

        async with AsyncExitStack() as stack:
            transport = await self._open_transport(stack)
            client = Client(
                transport, cache=None, client_info=Implementation(name="coro", version=__version__)
            )
            await stack.enter_async_context(client)
            if self._stderr is not None:
                self._stderr.close_writer()
            await self._offer(await _list_tools(client))
            self._client = client
            self.status = "ready"
            self.settled.set()
            await self._stop.wait()

    async def _open_transport(self, stack: AsyncExitStack) -> Transport:
        config = self.config
        if isinstance(config, StdioMcpServer):
            return await self._stdio(config, stack)
        if isinstance(config, HttpMcpServer):
            from mcp.client.streamable_http import streamable_http_client

            headers = {name: _plain(value) for name, value in config.headers.items()}
            http = await stack.enter_async_context(self._http_client(headers=headers))
            return streamable_http_client(config.url, http_client=http)
        try:
            from mcp.client.sse import sse_client
        except ImportError:
            raise _StartError("the sse transport is not supported by this coro version") from None
        transport: Transport = sse_client(
            config.url,
            headers={name: _plain(value) for name, value in config.headers.items()},
            timeout=_HTTP_TIMEOUT,
            sse_read_timeout=max(_SSE_READ_TIMEOUT, self._call_timeout),
            httpx_client_factory=self._http_client,
        )
        return transport

    async def _stdio(self, config: StdioMcpServer, stack: AsyncExitStack) -> Transport:
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        if sys.platform == "win32":  # no pipe reader on the proactor loop
            # Opening the null device does not block the loop.
            errlog = stack.enter_context(open(os.devnull, "w"))  # noqa: ASYNC230, SIM115
        else:
            tail = self._stderr = StderrTail(self.id)
            stack.callback(tail.close)
            drains = await stack.enter_async_context(anyio.create_task_group())
            drains.start_soon(tail.drain)
            stack.push_async_callback(tail.settle, drains.cancel_scope)
            errlog = tail.writer
        params = StdioServerParameters(
            command=config.command,
            args=list(config.args),
            env=_server_env(config.env),
            cwd=self._cwd,
        )
        return stdio_client(params, errlog=errlog)

    def _http_client(
        self,
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        """The SDK's default HTTP client, plus a hook that remembers the last error status."""
        import httpx2

        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout or httpx2.Timeout(_HTTP_TIMEOUT, read=_SSE_READ_TIMEOUT),
            auth=auth,
            event_hooks={"response": [self._note_response]},
        )

    async def _note_response(self, response: httpx2.Response) -> None:
        # Only the POSTs carry requests; a refused GET stream (405) is normal for many servers.
        if response.status_code >= 400 and response.request.method == "POST":
            self._http_error = f"HTTP {response.status_code} {response.reason_phrase}".strip()

    async def _offer(self, listed: list[Tool]) -> None:
        """Keep the tools the config allows and the model can name; log the rest."""
        allowed = self.config.allowed_tools
        denied = set(self.config.disallowed_tools)
        unnamable: list[str] = []
        for tool in listed:
            if (allowed is not None and tool.name not in allowed) or tool.name in denied:
                continue
            name = f"mcp__{self.id}__{tool.name}"
            if not TOOL_NAME.fullmatch(name):
                unnamable.append(tool.name)
                continue
            spec = ToolSpec(name, tool.description or "", dict(tool.input_schema))
            self.tools[name] = ExternalTool(spec, tool.name, self)
        if unnamable:
            await self._log(
                f"mcp server {self.id!r}: skipped {len(unnamable)} tool(s) whose full name "
                f"mcp__{self.id}__<tool> would break the model's tool-name rule (letters, digits, "
                f"'_' and '-', at most 64 characters): {', '.join(unnamable)}"
            )
        missing = sorted(set(allowed or ()) - {tool.name for tool in listed})
        if missing:
            await self._log(
                f"mcp server {self.id!r}: allowedTools names tools the server does not have: "
                + ", ".join(missing)
            )
        shown = [tool.short_name for tool in self.tools.values()]
        if len(shown) > _LOGGED_NAMES:
            shown[_LOGGED_NAMES:] = [f"and {len(shown) - _LOGGED_NAMES} more"]
        await self._log(
            f"mcp server {self.id!r} is ready with {len(self.tools)} tool(s)"
            + (f": {', '.join(shown)}" if shown else "")
        )

    # ── calls ───────────────────────────────────────────────────────────────────────────────

    async def call(self, tool: ExternalTool, arguments: Mapping[str, Any]) -> ToolOutcome:
        """Call ``tool``; every failure is an error outcome, never an exception."""
        name = tool.spec.name
        client = self._client
        if client is None or not self.ready:
            state = "its connection is closed" if self.ready else self.status
            return ToolOutcome(
                f"{name}: mcp server {self.id!r} is not available ({state}); none of its "
                "tools can be called for the rest of this job",
                is_error=True,
            )
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        self._http_error = None
        try:
            with anyio.fail_after(self._call_timeout + _CALL_GRACE):
                result = await client.call_tool(
                    tool.short_name, dict(arguments), read_timeout_seconds=self._call_timeout
                )
        except TimeoutError:
            return self._timed_out(name)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                return self._timed_out(name)
            if exc.code == CONNECTION_CLOSED:
                if self._stderr is not None:  # its last words explain the exit
                    with anyio.move_on_after(_LAST_WORDS_SECONDS):
                        await self._stderr.eof.wait()
                gone = self._gone()
                await self._lose(gone)
                return ToolOutcome(
                    f"{name}: mcp server {self.id!r} stopped ({gone}); none of its tools "
                    "can be called for the rest of this job",
                    is_error=True,
                )
            return ToolOutcome(f"{name}: the MCP call failed: {self._describe(exc)}", is_error=True)
        except Exception as exc:
            logger.warning("mcp server %r: calling %s failed", self.id, name, exc_info=True)
            return ToolOutcome(f"{name}: the MCP call failed: {self._describe(exc)}", is_error=True)
        return ToolOutcome(render_result(result), is_error=bool(result.is_error))

    def _timed_out(self, name: str) -> ToolOutcome:
        return ToolOutcome(
            f"{name}: mcp server {self.id!r} did not answer within {self._call_timeout:g}s; "
            "the call was abandoned",
            is_error=True,
        )

    # ── failures ────────────────────────────────────────────────────────────────────────────

    async def _fail_start(self, reason: str) -> None:
        if self.status != "starting":
            return
        self.status = f"failed: {reason}"
        self.settled.set()
        await self._log(
            f"mcp server {self.id!r} failed to start: {reason}; the job goes on without its tools"
        )

    async def _lose(self, reason: str) -> None:
        if not self.ready:
            return
        self.status = f"failed: {reason}"
        await self._log(
            f"mcp server {self.id!r} stopped during the job: {reason}; its tools fail from now on"
        )

    def _gone(self) -> str:
        if isinstance(self.config, StdioMcpServer):
            return self._with_stderr("the server process exited")
        return "the server closed the connection"

    def _describe(self, exc: BaseException) -> str:
        """A short, secret-free reason for a failure, as a user reads it in the job log."""
        import httpx2
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR

        leaf = _leaf(exc)
        config = self.config
        if isinstance(leaf, _StartError):
            return str(leaf)
        if isinstance(config, StdioMcpServer) and isinstance(leaf, OSError):
            if isinstance(leaf, FileNotFoundError) and leaf.filename == str(self._cwd):
                return f"its working directory {str(self._cwd)!r} does not exist"
            if isinstance(leaf, FileNotFoundError):
                return f"command not found: {config.command!r}"
            if isinstance(leaf, PermissionError):
                return f"cannot run {config.command!r}: permission denied"
        if isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED:
            return self._gone()
        if isinstance(leaf, MCPError) and leaf.code == INTERNAL_ERROR and self._http_error:
            return f"the server answered {self._http_error}"
        if isinstance(leaf, httpx2.HTTPStatusError):
            status = leaf.response
            return f"the server answered HTTP {status.status_code} {status.reason_phrase}".strip()
        if isinstance(leaf, httpx2.ConnectError | httpx2.ConnectTimeout):
            return f"cannot connect to {_safe_url(self.config)}"
        if isinstance(leaf, httpx2.TimeoutException):
            return f"{_safe_url(self.config)} did not answer in time"
        if isinstance(leaf, MCPError):
            return self._with_stderr(f"MCP error {leaf.code}: {leaf.error.message}")
        text = str(leaf).strip()
        return self._with_stderr(f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__)

    def _with_stderr(self, reason: str) -> str:
        tail = self._stderr.tail() if self._stderr is not None else ""
        return f"{reason}; its stderr ended with: {tail}" if tail else reason


class _StartError(Exception):
    """A server that cannot be started for a reason coro knows in advance."""


async def _list_tools(client: Client) -> list[Tool]:
    tools: list[Tool] = []
    cursor: str | None = None
    for _ in range(_LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner: tuple[BaseException, ...] = exc.exceptions
        exc = next((e for e in inner if isinstance(e, Exception)), inner[0])
    return exc


def _plain(value: object) -> str:
    """A config value as a string, whether it is stored plain or as a pydantic secret."""
    reveal = getattr(value, "get_secret_value", None)
    return str(reveal() if callable(reveal) else value)


def _server_env(extra: Mapping[str, object]) -> dict[str, str]:
    """A minimal environment (PATH, HOME, locale…) with the server's configured ``env`` on top."""
    env = {
        key: value
        for key in _INHERITED_ENV
        if (value := os.environ.get(key)) is not None and not value.startswith("()")
    }
    env.update({key: _plain(value) for key, value in extra.items()})
    return env


def _safe_url(config: McpServerConfig) -> str:
    """The configured URL without credentials or query (which may hold a token)."""
    url = getattr(config, "url", "")
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is not a number
        return "the configured URL"
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
