"""Git's smart HTTP protocol for test servers: ``git http-backend`` run as CGI from Starlette.

Fake hosting services (the test GitHub and Bitbucket APIs) mount this so that ``git clone``,
``fetch`` and ``push`` against them are real git over real HTTP, with the credentials coro
passes checked like a host would::

    backend = GitHttpBackend(root=tmp_path / "repos", token="s3cret")
    routes = [Mount("/git", app=backend)]        # clone http://127.0.0.1:PORT/git/acme/svc.git

Requests must carry ``Authorization: Bearer <token>`` or HTTP Basic with the token as the
password (any user name); otherwise the answer is 401 with a ``WWW-Authenticate`` challenge.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

from starlette.types import Receive, Scope, Send

__all__ = ["GitHttpBackend"]


class GitHttpBackend:
    """An ASGI app serving the bare repositories under ``root`` (``<root>/<slug>.git``)."""

    def __init__(self, root: Path, *, token: str | None = None) -> None:
        self.root = root
        self.token = token
        self.requests: list[tuple[str, str]] = []  # (method, path) seen, for assertions

    def _authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip() == self.token
        if scheme.lower() == "basic":
            try:
                _, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return password == self.token
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path = scope["path"][len(scope.get("root_path", "")) :] or "/"
        self.requests.append((scope["method"], path))
        if not self._authorized(headers.get("authorization")):
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"www-authenticate", b'Basic realm="git"')]})  # fmt: skip
            await send({"type": "http.response.body", "body": b"authentication required"})
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": scope["method"],
            "PATH_INFO": path,
            "QUERY_STRING": scope.get("query_string", b"").decode(),
            "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "coro-test",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.root),
        }
        if headers.get("content-encoding"):
            env["HTTP_CONTENT_ENCODING"] = headers["content-encoding"]
        if headers.get("git-protocol"):
            env["GIT_PROTOCOL"] = headers["git-protocol"]
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate(bytes(body))
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status = 200
        response_headers: list[tuple[bytes, bytes]] = []
        for line in head.splitlines():
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                response_headers.append((name.strip().lower().encode(), value.strip().encode()))
        if proc.returncode not in (0, None) and status == 200 and not payload:
            status = 500
            payload = err
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})
