"""The stderr of a stdio MCP server: drained from a pipe, never shown on coro's terminal.

The TUI owns the terminal, so a server's stderr goes to a pipe that coro reads. Every line is
logged at DEBUG on this module's logger, and the last few are kept to explain a failure
("failed to start: ...; its stderr ended with: ModuleNotFoundError: ...").
"""

from __future__ import annotations

import codecs
import logging
import os
from collections import deque
from typing import TextIO

import anyio

__all__ = ["StderrTail"]

logger = logging.getLogger(__name__)

_KEPT_LINES = 20
_LINE_CHARS = 300
_READ_SIZE = 65536
_SETTLE_SECONDS = 1.0
"""How long a stopped server's stderr may take to reach end-of-file before the drain stops."""


class StderrTail:
    """A pipe for a server's stderr and the last lines read from it.

    Lifecycle: pass :attr:`writer` as the child's stderr, run :meth:`drain` in a task, call
    :meth:`close_writer` once the child is spawned, :meth:`settle` when the child is gone, and
    :meth:`close` after the drain task ended.
    """

    def __init__(self, server_id: str) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        self._server_id = server_id
        self._read_fd: int | None = read_fd
        self.writer: TextIO = os.fdopen(write_fd, "w")
        self._lines: deque[str] = deque(maxlen=_KEPT_LINES)
        self._partial = ""
        self.eof = anyio.Event()

    async def drain(self) -> None:
        """Read the pipe until every writer closed it."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        fd = self._read_fd
        assert fd is not None
        while True:
            await anyio.wait_readable(fd)
            try:
                chunk = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                continue
            if not chunk:
                break
            self._feed(decoder.decode(chunk))
        self._feed(decoder.decode(b"", final=True) + "\n")
        self.eof.set()

    def _feed(self, text: str) -> None:
        *complete, self._partial = (self._partial + text).split("\n")
        for raw in complete:
            line = raw.rstrip()
            if line:
                logger.debug("mcp server %r stderr: %s", self._server_id, line)
                self._lines.append(line[:_LINE_CHARS])

    def close_writer(self) -> None:
        """Drop coro's copy of the write end, so the pipe ends when the server does."""
        self.writer.close()

    async def settle(self, drain_scope: anyio.CancelScope) -> None:
        """Let the drain read what a stopped server wrote last, then stop it."""
        self.close_writer()
        with anyio.move_on_after(_SETTLE_SECONDS, shield=True):
            await self.eof.wait()
        drain_scope.cancel()

    def close(self) -> None:
        self.close_writer()
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None

    def tail(self, lines: int = 3) -> str:
        """The last ``lines`` lines, joined with `` | ``; empty when the server wrote nothing."""
        return " | ".join(list(self._lines)[-lines:])
