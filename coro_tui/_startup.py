"""How the TUI reaches a runner: attach to one that answers, or own the engine in this process.

::

    launch = Launch.auto()                       # bare `coro`
    launch = Launch.attach(url, token)           # `coro attach [URL] [--token T]`
    session = await open_session(launch, status=print)
    session.client                               # an EngineClient for the screens
    await session.aclose(grace=30)               # stops the engine if this process owns it

A bare ``coro`` first asks ``/health`` at the address in ``$CORO_HOME/runner.json`` and at
``server.host``/``server.port`` of ``config.json``; if a coro runner answers, the TUI attaches
to it. Otherwise it starts the engine and the HTTP API on the configured address in this event
loop, writes ``runner.json`` for the CLI, and removes it at exit.

The app calls :func:`open_session` after its first frame is painted: this module imports only
the standard library at load time, and the engine, its HTTP server and ``httpx2`` inside the
functions that need them.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coro_tui.client import EngineClient
    from engine.api import ApiServer
    from engine.paths import CoroPaths
    from engine.runtime import Engine

__all__ = [
    "TOKEN_ENV",
    "Launch",
    "Session",
    "StartupFailed",
    "TuiPrefs",
    "open_session",
    "probe_runner",
    "read_prefs",
    "resolve_token",
    "runner_urls",
]

log = logging.getLogger("coro.tui")

TOKEN_ENV = "CORO_TOKEN"
_DEFAULT_HOST = "127.0.0.1"
_DEFAULT_PORT = 7337
#: Modules the owned engine needs, imported in a thread so the painted screen keeps answering.
#: Loaded in a worker thread after the first frame, before the app freezes what it has loaded
#: (``gc.freeze``): an engine in this process calls the model (the SDK), and a plan reply
#: renders Markdown, so they load here rather than in the middle of the first turn.
_PRELOAD = (
    "engine.runtime",
    "engine.api",
    "engine.headless",
    "uvicorn",
    "starlette",
    "engine.providers.anthropic._executor",
    "anthropic",
    "engine.intake",
    "rich.markdown",
)


class StartupFailed(Exception):
    """The TUI could not reach or start a runner; ``message`` is for the screen."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- what to read before the first paint ----------------------------------------------------------
def _home(home: Path | None) -> Path:
    from engine.paths import coro_home  # standard library only

    return coro_home() if home is None else Path(os.path.abspath(os.path.expanduser(home)))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True, slots=True)
class TuiPrefs:
    """The ``tui`` block of ``config.json``, read as plain JSON before the engine loads."""

    keymap: dict[str, str] = field(default_factory=dict)
    notify: bool = True
    log_max_lines: int = 5000

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TuiPrefs:
        """From a whole config document (camelCase, as ``config.json`` and ``GET /config``)."""
        tui = config.get("tui")
        if not isinstance(tui, dict):
            return cls()
        keymap = tui.get("keymap")
        lines = tui.get("logMaxLines", tui.get("log_max_lines"))
        return cls(
            keymap={str(k): str(v) for k, v in keymap.items()} if isinstance(keymap, dict) else {},
            notify=tui.get("notify") is not False,
            log_max_lines=lines if isinstance(lines, int) and lines > 0 else 5000,
        )


def read_prefs(home: Path | None = None) -> TuiPrefs:
    """The TUI preferences in ``$CORO_HOME/config.json`` (defaults if missing or unreadable)."""
    return TuiPrefs.from_config(_read_json(_home(home) / "config.json"))


@dataclass(frozen=True, slots=True)
class Launch:
    """How the TUI was asked to reach a runner.

    ``url`` set: attach to it (``coro attach``, or ``coro --url``). ``None``: attach to a runner
    that answers at the configured address, else own the engine.
    """

    home: Path | None = None
    url: str | None = None
    token: str | None = None

    @classmethod
    def auto(cls, home: Path | None = None) -> Launch:
        return cls(home=home)

    @classmethod
    def attach(cls, url: str | None, token: str | None = None, home: Path | None = None) -> Launch:
        """Attach to ``url`` (default: ``runner.json``, else the configured address)."""
        return cls(home=home, url=url or runner_urls(home)[0], token=token)


def _url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = _DEFAULT_HOST
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _configured_address(home: Path) -> tuple[str, int]:
    server = _read_json(home / "config.json").get("server")
    host, port = _DEFAULT_HOST, _DEFAULT_PORT
    if isinstance(server, dict):
        if isinstance(server.get("host"), str) and server["host"]:
            host = server["host"]
        if isinstance(server.get("port"), int):
            port = server["port"]
    return host, port


def runner_urls(home: Path | None = None) -> list[str]:
    """Where a runner for ``home`` may listen: ``runner.json``'s URL first, then the configured
    ``server.host``/``server.port``; never empty."""
    root = _home(home)
    urls: list[str] = []
    recorded = _read_json(root / "runner.json").get("url")
    if isinstance(recorded, str) and recorded:
        urls.append(recorded.rstrip("/"))
    configured = _url(*_configured_address(root))
    if configured not in urls:
        urls.append(configured)
    return urls


def resolve_token(token: str | None, home: Path | None = None) -> str | None:
    """The bearer token: ``token`` (``--token``), else ``CORO_TOKEN``, else ``runner.token``."""
    if token:
        return token
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    try:
        text = (_home(home) / "runner.token").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


# -- after the first paint ------------------------------------------------------------------------
async def probe_runner(url: str, *, patience: float = 2.0) -> dict[str, Any] | None:
    """``/health`` of the coro runner at ``url``, or ``None`` if no coro runner answers there
    (the same test as ``coro start --headless`` makes of a taken port)."""
    from engine.headless import probe_runner as probe

    return await probe(url, patience=patience)


@dataclass
class Session:
    """The runner the TUI talks to, and what this process must stop when the TUI quits."""

    client: EngineClient
    engine: Engine | None = None
    api: ApiServer | None = None
    paths: CoroPaths | None = None
    warning: str | None = None
    """Something the developer should know about how the session started (shown as a toast)."""
    _closed: bool = False

    @property
    def owns_engine(self) -> bool:
        return self.engine is not None

    def cut_running(self) -> None:
        """While :meth:`aclose` waits for running phases, cut them now (they resume later)."""
        if self.engine is not None:
            self.engine.cut_running()

    async def aclose(self, *, grace: float = 30.0) -> None:
        """Close the client; stop the API and the engine (running phases get ``grace`` seconds
        to reach a boundary) if this process owns them. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.client.aclose()
        finally:
            if self.api is not None:
                await self.api.stop()
            if self.engine is not None:
                await self.engine.stop(grace=grace)
            if self.api is not None and self.paths is not None:
                from engine.headless import remove_runner_file

                await asyncio.to_thread(remove_runner_file, self.paths, self.api.runner_id)


async def open_session(
    launch: Launch,
    status: Callable[[str], None] = lambda _: None,
    *,
    make_engine: Callable[[Path | None], Engine] | None = None,
) -> Session:
    """Reach the runner ``launch`` asks for; ``status`` hears what is happening, for the screen.

    Args:
        launch: attach where, or choose.
        status: told each step ("starting engine…"), for the screen.
        make_engine: builds the engine to own from ``launch.home`` (tests pass one with a
            scripted executor); default :class:`~engine.runtime.Engine`.

    Raises:
        StartupFailed: the engine cannot start (a broken state database, …).
    """
    if launch.url is not None:
        return await _attach(launch.url, launch.token, launch.home, status)
    for url in runner_urls(launch.home):
        status(f"looking for a runner at {url}…")
        if await probe_runner(url) is not None:
            return await _attach(url, launch.token, launch.home, status)
    return await _own(launch, status, make_engine)


async def _attach(
    url: str, token: str | None, home: Path | None, status: Callable[[str], None]
) -> Session:
    from coro_tui.client import RemoteClient

    secret = resolve_token(token, home)
    if secret is None:
        raise StartupFailed(
            f"no token for {url}: pass --token, set {TOKEN_ENV}, or start the runner with this "
            "CORO_HOME (it writes runner.token)"
        )
    delay = 0.5
    while await probe_runner(url) is None:
        status(f"no runner answers at {url}; retrying…")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
    status(f"attached to {url}")
    client: EngineClient = RemoteClient(url, secret)
    return Session(client)


async def _preload() -> None:
    import importlib

    for name in _PRELOAD:
        await asyncio.to_thread(importlib.import_module, name)


async def _own(
    launch: Launch,
    status: Callable[[str], None],
    make_engine: Callable[[Path | None], Engine] | None,
) -> Session:
    status("starting engine…")
    await _preload()
    from coro_tui.client import LocalClient
    from engine.api import ApiServer
    from engine.errors import CoroError
    from engine.headless import write_runner_file
    from engine.runtime import Engine

    engine = (make_engine or Engine)(launch.home)
    try:
        await engine.start()
    except CoroError as exc:
        raise StartupFailed(f"the engine cannot start: {exc}") from exc
    host, port = engine.config.server.host, engine.config.server.port
    api: ApiServer | None = ApiServer(engine, host=host, port=port, mode="tui")
    warning = engine.config_error and f"config.json has problems; running on defaults: " \
        f"{engine.config_error}"  # fmt: skip
    try:
        assert api is not None
        await api.start()
    except OSError as exc:
        api = None
        url = _url(host, port)
        if exc.errno == errno.EADDRINUSE and await probe_runner(url) is not None:
            await engine.stop(grace=0)  # another runner started meanwhile: use that one
            return await _attach(url, launch.token, launch.home, status)
        warning = (
            f"cannot listen on {host}:{port} ({exc.strerror}): the engine runs, but the HTTP "
            "API (coro jobs, coro attach) is off; set server.port in config.json"
        )
    if api is not None:
        await asyncio.to_thread(write_runner_file, engine.paths, api)
    status(f"engine running{f' at {api.url}' if api is not None else ''}")
    client: EngineClient = LocalClient(engine, url=None if api is None else api.url)
    return Session(client, engine=engine, api=api, paths=engine.paths, warning=warning or None)
