"""A small MCP server for the external tool-box tests, run as a subprocess.

::

    python tools_server.py stdio                          # serve over stdin/stdout
    python tools_server.py http --token T                 # streamable HTTP on a loopback port
    python tools_server.py sse --token T                  # the legacy SSE transport
    python tools_server.py crash                          # say why on stderr and exit 3
    python tools_server.py hang                           # never answer

With ``PID_FILE`` set in its environment, the server first writes its process id there.

The HTTP and SSE modes bind 127.0.0.1 on a free port, print ``PORT <n>`` on stdout once they
listen, and answer 401 to any request without ``X-Test-Token: <token>``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError


def build_server() -> MCPServer:
    server = MCPServer("tools-test")

    @server.tool(description="Say the text back.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> str:
        return str(a + b)

    @server.tool(description="Always fails with the message.")
    def fail(message: str) -> str:
        raise ToolError(message)

    @server.tool(description="The server's environment, as JSON.")
    def env() -> str:
        return json.dumps(dict(os.environ))

    @server.tool(description="The server's working directory and process id, as JSON.")
    def whoami() -> str:
        return json.dumps({"cwd": os.getcwd(), "pid": os.getpid()})

    @server.tool(description="A caption and a tiny image.", structured_output=False)
    def picture() -> list[Any]:
        return ["a red dot", Image(data=b"\x89PNG0123456789", format="png")]

    @server.tool(description="Sleep, then answer.")
    async def nap(seconds: float) -> str:
        import anyio

        await anyio.sleep(seconds)
        return "rested"

    @server.tool(description="Exit the server process at once.")
    def die() -> str:
        os._exit(7)

    @server.tool(name="has.a.dot", description="A name the model's tool-name rule refuses.")
    def dotted() -> str:
        return "unreachable"

    return server


def serve_http(server: MCPServer, kind: str, token: str) -> None:
    import anyio
    import uvicorn
    from starlette.responses import PlainTextResponse
    from starlette.types import ASGIApp, Receive, Scope, Send

    app: ASGIApp = server.sse_app() if kind == "sse" else server.streamable_http_app()
    inner = app

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"x-test-token", b"").decode() != token:
                await PlainTextResponse("bad token", status_code=401)(scope, receive, send)
                return
        await inner(scope, receive, send)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(guarded, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    anyio.run(lambda: uv.serve(sockets=[sock]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["stdio", "http", "sse", "crash", "hang"])
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    if os.environ.get("PID_FILE"):
        Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
    if args.mode == "crash":
        print("boom: no configuration found", file=sys.stderr, flush=True)
        sys.exit(3)
    if args.mode == "hang":
        print("starting up slowly", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)
    server = build_server()
    if args.mode == "stdio":
        print("tools-test server ready", file=sys.stderr, flush=True)
        server.run("stdio")
    else:
        serve_http(server, args.mode, args.token)


if __name__ == "__main__":
    main()
