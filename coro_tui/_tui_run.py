"""Running the TUI app to its end, shared by a bare ``coro`` and ``coro attach``; no typer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coro_tui._startup import Launch

__all__ = ["NO_TERMINAL", "run_tui"]

#: The grace running phases get if the TUI ends without its quit flow (a crash, a signal).
_EXIT_GRACE_SECONDS = 5.0

NO_TERMINAL = (
    "the TUI needs a terminal (stdin and stdout are not one); use `coro start "
    "--headless` to run the runner, and `coro jobs` / `coro job` … to script it"
)


async def run_tui(launch: Launch) -> int:
    """Run the app until it quits; its exit code. An engine it owns is stopped on the way out."""
    from coro_tui.app import CoroApp

    app = CoroApp(launch)
    try:
        await app.run_async()
    finally:
        if app.session is not None:
            await app.session.aclose(grace=_EXIT_GRACE_SECONDS)
    return app.return_code or 0
