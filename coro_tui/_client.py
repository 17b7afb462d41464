"""The CLI's side of the runner's HTTP API: finding the runner, requests, and SSE that resumes.

::

    with RunnerClient.locate() as runner:          # URL and token from CORO_HOME
        job = runner.post("/jobs", {"workflowPath": ..., "params": {...}})
        for frame in runner.follow(f"/jobs/{job['jobId']}/events"):
            ...

Where the runner listens: ``--url`` / ``CORO_URL``, else ``$CORO_HOME/runner.json`` (written
by a running runner), else ``server.host``/``server.port`` from ``config.json``. The token is
read from ``$CORO_HOME/runner.token``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx2

from coro_tui._sse import Frame, parse_frames
from engine.paths import CoroPaths

__all__ = [
    "ApiRefused",
    "Frame",
    "RunnerClient",
    "RunnerUnreachable",
    "parse_frames",
]

URL_ENV = "CORO_URL"
_DEFAULT_HOST = "127.0.0.1"
_DEFAULT_PORT = 7337
#: A stream with no byte (not even a heartbeat, sent every 15 s) for this long is dead.
_READ_TIMEOUT = 45.0
#: Give up reconnecting after this long without a successful connection.
_RECONNECT_FOR = 60.0


class RunnerUnreachable(Exception):
    """No runner answers (or it cannot be found): exit code 3."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiRefused(Exception):
    """The runner answered with an error status."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _runner_url(paths: CoroPaths) -> str:
    try:
        data = json.loads(paths.runner_file.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            return str(data["url"])
    except (OSError, ValueError):
        pass
    host, port = _DEFAULT_HOST, _DEFAULT_PORT
    try:
        config = json.loads(paths.config_file.read_text(encoding="utf-8"))
        server = config.get("server", {}) if isinstance(config, dict) else {}
        host = str(server.get("host") or host)
        port = int(server.get("port") or port)
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    if host in ("0.0.0.0", "::"):
        host = _DEFAULT_HOST
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _error_of(response: httpx2.Response) -> ApiRefused:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        field = body.get("field")
        named = field if isinstance(field, str) else None
        return ApiRefused(response.status_code, body["error"], named)
    return ApiRefused(response.status_code, f"HTTP {response.status_code}: {response.text[:200]}")


class RunnerClient:
    """A synchronous client of one runner's API."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx2.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    @classmethod
    def locate(cls, *, home: Path | None = None, url: str | None = None) -> RunnerClient:
        """The client of the runner for ``home`` (default ``CORO_HOME``).

        Raises:
            RunnerUnreachable: there is no token yet (no runner ever started here).
        """
        paths = CoroPaths.from_home(home)
        url = url or os.environ.get(URL_ENV) or _runner_url(paths)
        try:
            token = paths.token_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            token = ""
        except OSError as exc:
            raise RunnerUnreachable(f"cannot read {paths.token_file}: {exc.strerror}") from None
        if not token:
            raise RunnerUnreachable(
                f"no runner token in {paths.token_file}: start a runner first "
                "(`coro start --headless`), with the same CORO_HOME"
            )
        return cls(url, token)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RunnerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _unreachable(self, exc: Exception) -> RunnerUnreachable:
        return RunnerUnreachable(
            f"no runner answers at {self.url} ({type(exc).__name__}: {exc}); "
            "start one with `coro start --headless`, or point at it with --url / CORO_URL"
        )

    def _send(self, method: str, path: str, body: Any, params: dict[str, Any]) -> httpx2.Response:
        query = {k: v for k, v in params.items() if v is not None}
        try:
            if method in ("POST", "PUT", "PATCH"):
                response = self._http.request(
                    method, path, params=query, json={} if body is None else body
                )
            else:
                response = self._http.request(method, path, params=query)
        except httpx2.TransportError as exc:
            raise self._unreachable(exc) from None
        self._raise_for(response)
        return response

    def _raise_for(self, response: httpx2.Response) -> None:
        """Raise for a refused request (a streamed answer must have been read first)."""
        if response.status_code == 401:
            raise RunnerUnreachable(
                f"the runner at {self.url} refused the token in CORO_HOME (401): it belongs to "
                "another CORO_HOME, or the runner was started with another one"
            )
        if response.status_code >= 400:
            raise _error_of(response)

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """One API call; the decoded JSON answer.

        Raises:
            RunnerUnreachable: nothing answers, or the answer is not the runner's.
            ApiRefused: the runner refused (4xx/5xx) with its message.
        """
        response = self._send(method, path, body, params)
        try:
            return response.json()
        except ValueError:
            raise RunnerUnreachable(
                f"{self.url} answered {path} with something that is not JSON: is it a runner?"
            ) from None

    def text(self, path: str, **params: Any) -> str:
        """A GET whose answer is text (a diff); fails like :meth:`request`."""
        return self._send("GET", path, None, params).text

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, **params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, body, **params)

    def stream_post(self, path: str, body: Any) -> Iterator[Frame]:
        """POST ``body`` and yield the SSE frames of the answer until it ends (no resume: a
        plan-mode turn is not replayable, and the server saves it even if we drop).

        Raises:
            RunnerUnreachable: nothing answers, or the stream broke off.
            ApiRefused: the runner refused the request.
        """
        timeout = httpx2.Timeout(10.0, read=_READ_TIMEOUT)
        try:
            with self._http.stream("POST", path, json=body, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                yield from parse_frames(response.iter_lines())
        except httpx2.TransportError as exc:
            raise RunnerUnreachable(
                f"the stream from {self.url} broke off ({type(exc).__name__}); the runner keeps "
                "the turn: reopen the plan with --session"
            ) from None

    def follow(
        self,
        path: str,
        *,
        after: int | None = None,
        on_reconnect: Callable[[str], None] | None = None,
        reconnect_for: float = _RECONNECT_FOR,
    ) -> Iterator[Frame]:
        """The SSE stream at ``path``, resumed with ``Last-Event-ID`` after each drop, until
        the server ends it with a ``done`` event (which is yielded too).

        Nothing is yielded twice and nothing is skipped: the cursor is the id of the last
        complete frame.

        Raises:
            RunnerUnreachable: reconnecting failed for ``reconnect_for`` seconds.
            ApiRefused: the runner refused the stream (unknown job, …).
        """
        cursor = after
        down_since: float | None = None
        delay = 0.25
        timeout = httpx2.Timeout(10.0, read=_READ_TIMEOUT)
        while True:
            headers = {"Last-Event-ID": str(cursor)} if cursor is not None else {}
            why: str
            try:
                with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                    if response.status_code >= 400:
                        response.read()
                        self._raise_for(response)
                    down_since, delay = None, 0.25
                    for frame in parse_frames(response.iter_lines()):
                        if frame.id is not None and frame.id.isdigit():
                            cursor = int(frame.id)
                        yield frame
                        if frame.event == "done":
                            return
                why = "the runner ended the stream"
            except httpx2.TransportError as exc:
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            now = time.monotonic()
            down_since = down_since or now
            if now - down_since > reconnect_for:
                raise RunnerUnreachable(
                    f"lost the stream from {self.url} and could not reconnect for "
                    f"{reconnect_for:g}s ({why})"
                )
            if on_reconnect is not None:
                on_reconnect(f"{why}; reconnecting from event {cursor or 0}")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
