"""The ``coro`` console script: a bare ``coro`` opens the TUI without loading the command line.

Every millisecond before the first frame counts (the TUI issue: first paint within 1.3x a bare
Textual app's). The full command line (typer and every command module) costs ~110 ms to
import, so a bare ``coro`` goes straight to the TUI; anything else goes to
:func:`coro_tui.cli.main`.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

_EXIT_USAGE = 2


def main() -> None:
    if len(sys.argv) > 1:
        from coro_tui.cli import main as cli_main

        cli_main()
        return
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        from coro_tui._tui_run import NO_TERMINAL

        print(f"coro: {NO_TERMINAL}", file=sys.stderr)
        sys.exit(_EXIT_USAGE)
    import asyncio

    from coro_tui._startup import Launch
    from coro_tui._tui_run import run_tui

    try:
        code = asyncio.run(run_tui(Launch.auto()))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
