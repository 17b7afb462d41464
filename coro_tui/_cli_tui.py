"""The full-screen TUI from the command line: a bare ``coro``, and ``coro attach [URL]``.

A bare ``coro`` attaches to a runner that already answers at ``runner.json``'s or the
configured address, else starts the engine and its HTTP API in this process (stopped when the
TUI quits). ``coro attach`` only ever attaches. Nothing heavy is imported before the TUI paints.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from coro_tui._cli_common import EXIT_USAGE, _fail
from coro_tui._tui_run import NO_TERMINAL, run_tui

__all__ = ["attach", "open_tui"]


def _require_terminal() -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        _fail(NO_TERMINAL, EXIT_USAGE)


def open_tui(url: str | None = None) -> int:
    """Run the TUI until it quits; its exit code. ``url``: attach there instead of choosing."""
    from coro_tui._startup import Launch

    _require_terminal()
    launch = Launch.auto() if url is None else Launch.attach(url)
    return asyncio.run(run_tui(launch))


def attach(
    url: Annotated[
        str | None,
        typer.Argument(
            help="The runner's URL (default: from $CORO_HOME/runner.json, else config.json)."
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CORO_TOKEN",
            show_envvar=True,
            help="The runner's bearer token (default: $CORO_HOME/runner.token).",
        ),
    ] = None,
) -> None:
    """Open the TUI on a running runner (this machine's, or one through an SSH tunnel)."""
    from coro_tui._startup import Launch

    _require_terminal()
    raise typer.Exit(asyncio.run(run_tui(Launch.attach(url, token))))
