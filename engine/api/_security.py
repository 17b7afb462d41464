"""The runner's bearer token, and the ASGI middleware that guards every request.

The guard runs before any route and before the body is read, in this order: ``Host`` (a
loopback name with the runner's port: DNS-rebinding defence), ``Origin`` (when present, the
runner's own origin), a token in the query string (always refused), the bearer token (every
route but ``/health``), and the body size. The body is then read here, at most ``max_body``
bytes, and handed on to the app. The app refuses a state-changing request whose body is not
declared ``application/json`` (415) after routing, so an undeclared method gets its 405.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from engine._fs import atomic_write_text, ensure_private_dir

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from engine.paths import CoroPaths

__all__ = ["MAX_BODY_BYTES", "SecurityMiddleware", "ensure_token", "read_token"]

#: The largest request body any route takes (an artefact edit may be larger: see the app).
MAX_BODY_BYTES = 1024 * 1024
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_QUERY_TOKEN_NAMES = frozenset({"token", "access_token", "bearer", "auth", "authorization"})
_OPEN_PATHS = frozenset({"/health"})
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def read_token(paths: CoroPaths) -> str | None:
    """The token in ``$CORO_HOME/runner.token``, or ``None`` if there is none yet."""
    try:
        token = paths.token_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return token or None


def ensure_token(paths: CoroPaths) -> str:
    """The runner's token, generated (256 bits) at first start into ``runner.token``.

    The home directory is made with mode 0700 and the file is written atomically with mode
    0600; an existing token is reused, so clients keep working across restarts.
    """
    ensure_private_dir(paths.home)
    token = read_token(paths)
    if token is None:
        token = secrets.token_urlsafe(32)
        atomic_write_text(paths.token_file, token + "\n", mode=0o600)
    return token


def allowed_hosts(port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """``Host`` header values the runner answers: loopback names (and ``extra``) with its port."""
    names = [*_LOOPBACK_NAMES, *(_bracket(h) for h in extra)]
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts.update(names)
    return frozenset(h.lower() for h in hosts)


def allowed_origins(port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """``Origin`` values accepted: the runner's own ``http://`` origins."""
    return frozenset(f"http://{host}" for host in allowed_hosts(port, extra))


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _reject(status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    body = json.dumps({"error": message}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class SecurityMiddleware:
    """Pure ASGI guard in front of the API app (see the module docstring for the order).

    Args:
        app: the API app.
        token: the bearer token every route but ``/health`` requires.
        hosts: accepted ``Host`` values (lower case, ``name:port``).
        origins: accepted ``Origin`` values.
        max_body: the body limit in bytes.
        body_limit: ``(method, path) -> limit`` for routes that take more (``None``: default).
        signed_prefix: paths under it (``/webhook/``) are authenticated by the request's
            signature, which the route checks, instead of the token; they come from outside
            (a tunnel, a forwarder), so their ``Host`` is not checked either.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str,
        hosts: frozenset[str],
        origins: frozenset[str],
        max_body: int = MAX_BODY_BYTES,
        body_limit: Callable[[str, str], int | None] | None = None,
        signed_prefix: str | None = None,
    ) -> None:
        self.app = app
        self._token = token.encode()
        self._hosts = hosts
        self._origins = origins
        self._max_body = max_body
        self._body_limit = body_limit
        self._signed_prefix = signed_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self._check(scope)
        if problem is not None:
            for message in _reject(*problem):
                await send(message)
            return
        if scope["method"] in _WRITE_METHODS:
            limit = self._max_body
            if self._body_limit is not None:
                limit = self._body_limit(scope["method"], scope["path"]) or limit
            body = await _read_body(receive, limit)
            if body is None:
                message = f"the request body is larger than {limit} bytes"
                for part in _reject(413, message):
                    await send(part)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)
        signed = self._signed_prefix is not None and scope["path"].startswith(self._signed_prefix)
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if host not in self._hosts and not signed:
            return 403, "this Host is not allowed (only the runner's loopback address)", []
        origin = headers.get(b"origin")
        if origin is not None and origin.decode("latin-1").lower() not in self._origins:
            return 403, "cross-origin requests are not allowed", []
        query = scope.get("query_string", b"").decode("latin-1")
        if query and any(k.lower() in _QUERY_TOKEN_NAMES for k, _ in parse_qsl(query, True)):
            return (
                401,
                "a token in the query string is never accepted; send Authorization: Bearer",
                [(b"www-authenticate", b"Bearer")],
            )
        if scope["path"] not in _OPEN_PATHS and not signed:
            auth = headers.get(b"authorization", b"")
            scheme, _, given = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self._token):
                return (
                    401,
                    "missing or wrong bearer token (see $CORO_HOME/runner.token)",
                    [(b"www-authenticate", b"Bearer")],
                )
        if scope["method"] in _WRITE_METHODS:
            length = headers.get(b"content-length")
            if length is not None:
                if not length.isdigit():
                    return 400, "invalid Content-Length", []
                limit = self._max_body
                if self._body_limit is not None:
                    limit = self._body_limit(scope["method"], scope["path"]) or limit
                if int(length) > limit:
                    return 413, f"the request body is larger than {limit} bytes", []
        return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or ``None`` as soon as it grows past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the app sees an empty body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then the real channel."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
