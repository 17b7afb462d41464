"""The ``coro`` command line.

A bare ``coro`` will open the full-screen TUI once it is built; subcommands are thin and import
only what they use, so ``coro --help`` and ``coro --version`` answer instantly.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from engine._version import __version__

app = typer.Typer(
    name="coro",
    help=(
        "coro runs AI coding-agent jobs from a brief to merged pull requests.\n\n"
        "Run `coro COMMAND --help` for the options of a command."
    ),
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_USAGE = 2


def _version(value: bool) -> None:
    if value:
        typer.echo(f"coro {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """coro runs AI coding-agent jobs from a brief to merged pull requests."""
    if ctx.invoked_subcommand is None:
        typer.echo(
            "coro: the full-screen TUI is not built yet, so a bare `coro` has nothing to open.\n"
            "What works today: `coro doctor` (checks CORO_HOME, the config and the state "
            "database). See `coro --help`.",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check CORO_HOME, config.json and state.db, and say what is wrong and how to fix it."""
    from coro_tui._doctor import run_doctor

    raise typer.Exit(asyncio.run(run_doctor(as_json=as_json)))


@app.command()
def demo() -> None:
    """Run coro end to end on a sample project with a scripted model (not built yet)."""
    typer.echo(
        "coro demo: not built yet. It needs the executor, the local SCM and the TUI, which are "
        "still open issues; this command fails until they land.",
        err=True,
    )
    raise typer.Exit(EXIT_USAGE)


def main() -> None:
    """Entry point of the ``coro`` console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
