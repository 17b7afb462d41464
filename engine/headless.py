"""The headless runner: the engine and its HTTP API, no screen (``coro start --headless``).

::

    code = asyncio.run(run_headless(HeadlessOptions(port=7337)))

It prints where it listens, logs structured lines to stderr, records its address in
``$CORO_HOME/runner.json`` for the CLI, and on SIGINT/SIGTERM stops taking jobs, lets running
phases reach their boundary for ``grace`` seconds, saves and returns 0. A second signal cuts
the wait short; jobs cut mid-phase resume at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from engine._fs import atomic_write_text
from engine._version import __version__
from engine.config import LocalConfig, redact_text
from engine.errors import CoroError
from engine.gcpolicy import settle_after_start
from engine.paths import CoroPaths

if TYPE_CHECKING:
    from engine.api import ApiServer
    from engine.runtime import Engine
    from state import JobEvent

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "HeadlessOptions",
    "PortTaken",
    "StructuredFormatter",
    "run_headless",
]

EXIT_OK = 0
EXIT_FAILED = 1
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

log = logging.getLogger("coro.runner")


@dataclass(frozen=True, slots=True)
class HeadlessOptions:
    """How ``coro start --headless`` was asked to run.

    ``host``/``port`` of ``None`` take ``server.host``/``server.port`` from the config.
    """

    home: Path | None = None
    host: str | None = None
    port: int | None = None
    grace: float = 30.0
    log_format: str = "text"
    verbose: bool = False


class PortTaken(CoroError):
    """The address is in use; the message says whether a coro runner answers there."""

    title = "Port taken"


# -- structured logs ------------------------------------------------------------------------------
class StructuredFormatter(logging.Formatter):
    """One line per record: ``key=value`` pairs (``text``) or one JSON object (``json``).

    Extra fields passed as ``extra={"fields": {...}}`` become keys of their own. Every secret
    of the current config is masked.
    """

    def __init__(self, style: str, config: Callable[[], LocalConfig]) -> None:
        super().__init__()
        self._json = style == "json"
        self._config = config

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            fields.update(extra)
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self._json:
            line = json.dumps(fields, ensure_ascii=False, default=str)
        else:
            line = " ".join(f"{key}={_logfmt(value)}" for key, value in fields.items())
        return redact_text(line, self._config())


def _logfmt(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n\t\\'):
        return text
    return json.dumps(text, ensure_ascii=False)


def _install_logging(options: HeadlessOptions, config: Callable[[], LocalConfig]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StructuredFormatter(options.log_format, config))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if options.verbose else logging.INFO)
    for noisy in ("uvicorn", "uvicorn.error", "httpx", "httpx2", "httpcore", "anthropic", "mcp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# -- the runner file ------------------------------------------------------------------------------
def write_runner_file(paths: CoroPaths, api: ApiServer) -> None:
    """Record where this runner listens, for the CLI (``$CORO_HOME/runner.json``, mode 0600)."""
    data = {
        "url": api.url,
        "pid": os.getpid(),
        "runnerId": api.runner_id,
        "mode": api.mode,
        "version": __version__,
        "startedAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write_text(paths.runner_file, json.dumps(data, indent=2) + "\n", mode=0o600)


def remove_runner_file(paths: CoroPaths, runner_id: str) -> None:
    """Remove ``runner.json`` if it still describes this runner (another may have replaced it)."""
    try:
        data = json.loads(paths.runner_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(data, dict) and data.get("runnerId") == runner_id:
        with contextlib.suppress(FileNotFoundError):
            paths.runner_file.unlink()


# -- a taken port ---------------------------------------------------------------------------------
async def describe_port_owner(host: str, port: int) -> dict[str, Any] | None:
    """``/health`` of whatever listens on ``host:port`` if it is a coro runner, else ``None``."""
    name = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    url = f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"
    return await probe_runner(url)


async def probe_runner(url: str, *, patience: float = 2.0) -> dict[str, Any] | None:
    """``/health`` of the coro runner at ``url``, or ``None`` if no coro runner answers there
    (the TUI asks this before starting an engine of its own)."""
    import httpx2

    try:
        async with httpx2.AsyncClient(timeout=patience) as client:
            response = await client.get(f"{url.rstrip('/')}/health")
        data = response.json()
    except (httpx2.HTTPError, ValueError):
        return None
    if isinstance(data, dict) and "runnerId" in data and "mode" in data:
        return data
    return None


async def _port_taken(host: str, port: int) -> PortTaken:
    owner = await describe_port_owner(host, port)
    if owner is None:
        return PortTaken(
            f"port {port} on {host} is taken by another program (not a coro runner); "
            "choose another with --port, or set server.port in config.json"
        )
    return PortTaken(
        f"a coro runner is already listening on {host}:{port} "
        f"({owner.get('runnerId')}, {owner.get('mode')}, version {owner.get('version')}); "
        "use `coro attach` to watch it, or `coro jobs` / `coro runner status` to talk to it, "
        "or start another one with --port"
    )


# -- the run --------------------------------------------------------------------------------------
def _describe(event: JobEvent) -> tuple[int, str, dict[str, Any]] | None:
    """How a job event shows in the runner's log, if it does."""
    data = event.data
    fields: dict[str, Any] = {"job": event.job_id}
    if event.kind == "status":
        fields.update({"from": data.get("from"), "to": data.get("to")})
        if data.get("reason"):
            fields["reason"] = data["reason"]
        return logging.INFO, "job status", fields
    if event.kind == "phase":
        fields.update({"from": data.get("from"), "to": data.get("to")})
        return logging.INFO, "job phase", fields
    if event.kind == "job_created":
        return logging.INFO, "job created", fields
    if event.kind == "log":
        fields["line"] = data.get("line", "")
        return logging.DEBUG, "job log", fields
    return None


async def _log_job_events(engine: Engine) -> None:
    """Mirror job status and phase changes (and, verbose, log lines) into the runner's log."""
    store = engine.store
    stream = store.subscribe(None, after=await store.last_global_seq())
    try:
        async for batch in stream:
            for event in batch:
                described = _describe(event)
                if described is not None and log.isEnabledFor(described[0]):
                    level, message, fields = described
                    log.log(level, message, extra={"fields": fields})
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def run_headless(
    options: HeadlessOptions, *, ready: Callable[[str, Path], None] | None = None
) -> int:
    """Run the engine and its API until SIGINT/SIGTERM; return the exit code.

    Args:
        options: where to listen and how to log.
        ready: called with the URL and the token file once the API accepts connections.

    Raises:
        PortTaken: the address is in use (the message says by what).
        CoroError: the engine cannot start (a broken state database, …).
    """
    from engine.api import ApiServer
    from engine.runtime import Engine

    engine = Engine(options.home)
    _install_logging(options, lambda: engine.config)
    stop = asyncio.Event()
    signals_seen = 0
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info(
                "stopping: no new jobs; running phases get up to %gs to reach a boundary",
                options.grace, extra={"fields": {"signal": signal.Signals(signum).name}},
            )  # fmt: skip
            stop.set()
        else:
            log.warning("second signal: cutting running phases now; they resume at next start")
            engine.cut_running()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        started = time.monotonic()
        await engine.start()
        settle_after_start()
        if engine.config_error:
            log.warning("config.json has problems; running on defaults",
                        extra={"fields": {"error": engine.config_error}})  # fmt: skip
        host = options.host or engine.config.server.host
        port = engine.config.server.port if options.port is None else options.port
        if host not in _LOOPBACK:
            log.warning(
                "the API listens on %s, which other machines may reach; only the token "
                "protects it", host,
            )  # fmt: skip
        api = ApiServer(engine, host=host, port=port, mode="headless")
        try:
            await api.start()
        except OSError as exc:
            await engine.stop(grace=0)
            if exc.errno == errno.EADDRINUSE:
                raise await _port_taken(host, port) from None
            raise CoroError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        watcher = asyncio.create_task(_log_job_events(engine), name="coro-runner-log")
        try:
            await asyncio.to_thread(write_runner_file, engine.paths, api)
            log.info(
                "runner ready",
                extra={"fields": {"url": api.url, "runnerId": api.runner_id,
                                  "home": str(engine.paths.home),
                                  "startup_ms": round((time.monotonic() - started) * 1000)}},
            )  # fmt: skip
            if ready is not None:
                ready(api.url, engine.paths.token_file)
            await stop.wait()
        finally:
            await api.stop()
            await engine.stop(grace=options.grace)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            remove_runner_file(engine.paths, api.runner_id)
        log.info("runner stopped")
        return EXIT_OK
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def print_ready(out: IO[str]) -> Callable[[str, Path], None]:
    """A ``ready`` callback printing the URL (first line) and the token file."""

    def ready(url: str, token_file: Path) -> None:
        out.write(f"{url}\n")
        out.write(f"token: {token_file}\n")
        out.flush()

    return ready
