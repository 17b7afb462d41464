"""Bash: a shell command in the job's working directory, in a process group of its own.

Each command runs as ``/bin/bash -c <command>`` in a new session (so in a new process group),
with stdin from ``/dev/null`` and the environment of :func:`bash_environment`, which leaves out
coro's own secrets. Its stdout and stderr are read concurrently and kept up to a cap; what comes
after the cap is read and discarded, so the command never blocks on a full pipe.

Stopping is by process group, so children and grandchildren go too:

* on timeout the group gets SIGTERM, then SIGKILL after :data:`KILL_GRACE` seconds;
* when the task awaiting the call is cancelled (the developer's interrupt), the group gets
  SIGKILL at once, before the cancellation propagates;
* :meth:`BashRunner.aclose` kills every group still running, including groups whose command
  finished but left background processes behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from pydantic import Field

from engine.config import is_secret_key
from engine.phase import ToolOutcome
from engine.tools.builtin._args import BuiltinArgs
from engine.tools.builtin._workspace import reason

__all__ = ["KILL_GRACE", "BashArgs", "BashRunner", "bash_environment"]

KILL_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL when a command times out."""
DRAIN_GRACE = 0.5
"""Seconds to wait, once the command has exited, for background processes to close its output."""
_REAP_WAIT = 2.0
SHELL = "/bin/bash"

_PROVIDER_VARIABLES = frozenset({"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"})
_FIXED = {"GIT_TERMINAL_PROMPT": "0", "PAGER": "cat", "GIT_PAGER": "cat"}


def bash_environment(secrets: Iterable[str] = ()) -> dict[str, str]:
    """The environment Bash commands run with: this process's, less coro's own secrets.

    Left out: every variable whose name reads as a secret (``GITHUB_TOKEN``, ``DB_PASSWORD``,
    see :func:`engine.config.is_secret_key`), the Anthropic credentials and base URL, every
    ``CORO_*`` variable except ``CORO_HOME``, and any variable whose value is one of
    ``secrets``. Git never prompts for credentials, and pagers are ``cat``.

    Args:
        secrets: values to keep out wherever they appear as a whole value (the config's API
            keys and tokens); empty strings are ignored.
    """
    hidden = {value for value in secrets if value}
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _PROVIDER_VARIABLES
        and not is_secret_key(name)
        and not (name.startswith("CORO_") and name != "CORO_HOME")
        and value not in hidden
    }
    env.update(_FIXED)
    return env


class BashArgs(BuiltinArgs):
    command: str = Field(description="The shell command to run (bash syntax).")
    timeout: float | None = Field(
        default=None, gt=0, description="How long it may run, in milliseconds."
    )
    description: str | None = Field(
        default=None, description="What the command does, in a few words (shown to people)."
    )


class _Capture(asyncio.Protocol):
    """One output pipe: keeps the first ``cap`` bytes, counts and drops the rest."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._chunks: list[bytes] = []
        self._kept = 0
        self.dropped = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        room = self._cap - self._kept
        if room > 0:
            self._chunks.append(data[:room])
            self._kept += min(room, len(data))
        self.dropped += max(len(data) - max(room, 0), 0)

    def eof_received(self) -> bool | None:
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")


class _Command:
    """A running command: its process, its process group and its two captured pipes."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        pipes: list[tuple[asyncio.BaseTransport, _Capture]],
    ) -> None:
        self.process = process
        self.pgid = process.pid  # a new session's leader leads its own process group
        self.stdout = pipes[0][1]
        self.stderr = pipes[1][1]
        self._transports = [transport for transport, _ in pipes]

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signum)

    async def wait_closed(self, seconds: float) -> bool:
        """Wait until both pipes reach EOF (every holder has exited or closed them)."""
        try:
            async with asyncio.timeout(seconds):
                await asyncio.gather(self.stdout.closed, self.stderr.closed)
        except TimeoutError:
            return False
        return True

    async def reap(self) -> None:
        """Wait (briefly) for the leader to be reaped, so no zombie is left behind."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_REAP_WAIT):
                await self.process.wait()

    def close_pipes(self) -> None:
        for transport in self._transports:
            transport.close()

    def group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


class BashRunner:
    """Runs Bash calls for one tool box and stops their process groups when told to.

    Args:
        cwd: where commands start.
        env: their environment (see :func:`bash_environment`), or a function that makes it,
            called when the first command runs (most phases run none).
        default_timeout: seconds a command may run when the call names no timeout.
        max_timeout: the longest a call may ask for; longer requests are clamped.
        output_cap: bytes kept of stdout, and of stderr, per command.
    """

    def __init__(
        self,
        cwd: Path | str,
        env: Mapping[str, str] | Callable[[], Mapping[str, str]],
        *,
        default_timeout: float,
        max_timeout: float,
        output_cap: int,
    ) -> None:
        self._cwd = str(cwd)
        self._env_source = env
        self._env: dict[str, str] | None = None
        self.default_timeout = default_timeout
        self.max_timeout = max(max_timeout, default_timeout)
        self._cap = output_cap
        self._running: dict[int, _Command] = {}
        self._lingering: set[int] = set()
        self._closed = False

    def _environment(self) -> dict[str, str]:
        if self._env is None:
            source = self._env_source
            self._env = dict(source() if callable(source) else source)
        return self._env

    @property
    def running(self) -> int:
        """Commands in flight."""
        return len(self._running)

    async def run(self, args: BashArgs) -> ToolOutcome:
        """Run one command to its end, its timeout, or the cancellation of the calling task."""
        if self._closed:
            return ToolOutcome("Bash: the tool box is closed; no more commands run", is_error=True)
        if not args.command.strip():
            return ToolOutcome("Bash: argument 'command' is empty", is_error=True)
        timeout, notes = self._timeout(args.timeout)
        try:
            command = await self._start(args.command)
        except OSError as exc:
            return ToolOutcome(f"Bash: could not start {SHELL}: {reason(exc)}", is_error=True)
        self._running[command.pgid] = command
        try:
            try:
                async with asyncio.timeout(timeout):
                    code = await command.process.wait()
            except TimeoutError:
                await self._stop(command)
                notes.insert(
                    0,
                    f"[timed out after {timeout:g} s; the command and its process "
                    "group were stopped (SIGTERM, then SIGKILL)]",
                )
                return ToolOutcome(_render(command, None, notes), is_error=True)
            if not await command.wait_closed(DRAIN_GRACE):
                notes.append(
                    "[background processes still hold the command's output; what they print "
                    "from now on is not shown — redirect it to a file (cmd > log 2>&1 &)]"
                )
            if self._closed:
                notes.append("[stopped: the phase ended and its tool box was closed]")
                return ToolOutcome(_render(command, code, notes), is_error=True)
            return ToolOutcome(_render(command, code, notes))
        except BaseException:
            command.signal_group(signal.SIGKILL)  # an interrupt: the whole group, at once
            await asyncio.shield(command.reap())
            raise
        finally:
            command.close_pipes()
            del self._running[command.pgid]
            if command.group_alive():
                self._lingering.add(command.pgid)

    async def aclose(self) -> None:
        """Kill every process group still running, and wait for the leaders to be reaped."""
        self._closed = True
        commands = list(self._running.values())
        for command in commands:
            command.signal_group(signal.SIGKILL)
        for pgid in self._lingering:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        self._lingering.clear()
        await asyncio.gather(*(command.reap() for command in commands))

    def _timeout(self, milliseconds: float | None) -> tuple[float, list[str]]:
        if milliseconds is None:
            return self.default_timeout, []
        seconds = milliseconds / 1000
        if seconds > self.max_timeout:
            return self.max_timeout, [
                f"[a timeout of {seconds:g} s was asked for; the maximum is "
                f"{self.max_timeout:g} s, so the command got {self.max_timeout:g} s]"
            ]
        return seconds, []

    async def _start(self, command: str) -> _Command:
        loop = asyncio.get_running_loop()
        read_out, write_out = os.pipe()
        read_err, write_err = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                SHELL,
                "-c",
                command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_out,
                stderr=write_err,
                cwd=self._cwd,
                env=self._environment(),
                start_new_session=True,
            )
        except BaseException:
            for fd in (read_out, read_err):
                os.close(fd)
            raise
        finally:
            os.close(write_out)
            os.close(write_err)
        files = [os.fdopen(fd, "rb", buffering=0) for fd in (read_out, read_err)]
        pipes: list[tuple[asyncio.BaseTransport, _Capture]] = []
        try:
            for file in files:
                pipes.append(await loop.connect_read_pipe(lambda: _Capture(self._cap), file))
        except BaseException:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            for transport, _ in pipes:
                transport.close()
            for file in files[len(pipes) :]:
                file.close()
            raise
        return _Command(process, pipes)

    async def _stop(self, command: _Command) -> None:
        """SIGTERM the group, give it :data:`KILL_GRACE` seconds, then SIGKILL it."""
        command.signal_group(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KILL_GRACE):
                await command.process.wait()
                await asyncio.gather(command.stdout.closed, command.stderr.closed)
        command.signal_group(signal.SIGKILL)
        await command.reap()


def _render(command: _Command, code: int | None, notes: list[str]) -> str:
    """stdout, then stderr under ``[stderr]``, then the exit code when it is not 0, then notes."""
    parts: list[str] = []
    for label, capture in (("stdout", command.stdout), ("stderr", command.stderr)):
        text = capture.text()
        if label == "stderr" and (text or capture.dropped):
            parts.append("[stderr]")
        if text:
            parts.append(text.removesuffix("\n"))
        if capture.dropped:
            parts.append(f"[{label} truncated: {capture.dropped} more bytes]")
    if code is not None and code != 0:
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else "a signal"
            parts.append(f"[exit code {code}: killed by {name}]")
        else:
            parts.append(f"[exit code {code}]")
    parts.extend(notes)
    return "\n".join(parts) if parts else "(no output)"
