"""The ``coro`` command line.

A bare ``coro`` will open the full-screen TUI once it is built; subcommands are thin and import
only what they use, so ``coro --help`` and ``coro --version`` answer instantly.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from engine._version import __version__

if TYPE_CHECKING:
    from engine.model_server import RecordedRequest

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


@app.command("model-server")
def model_server(
    script: Annotated[
        Path,
        typer.Option("--script", help="The YAML script to answer from (see docs/model-server.md)."),
    ],
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="The port to listen on; 0 picks a free one.")
    ] = 7338,
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
) -> None:
    """Serve Anthropic's Messages API from a script: the scripted model endpoint.

    Prints the base URL on the first line of stdout once listening, logs each request to
    stderr, and serves until Ctrl-C.
    """
    from engine.model_server import ScriptError, load_script, serve

    try:
        loaded = load_script(script)
    except ScriptError as exc:
        typer.echo(f"coro model-server: {exc.message}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc

    def ready(url: str) -> None:
        typer.echo(url)
        typer.echo(f"coro model-server: answering from {script} at {url}; Ctrl-C stops", err=True)

    try:
        asyncio.run(serve(loaded, host, port, ready=ready, on_request=_log_request))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        typer.echo(f"coro model-server: cannot listen on {host}:{port}: {exc.strerror}", err=True)
        raise typer.Exit(1) from exc


def _log_request(request: RecordedRequest) -> None:
    who = "chat" if request.job_id is None else f"{request.job_id} {request.phase}"
    if request.subagent:
        who += f" subagent {request.subagent}"
    notes = [f"step {request.step}"] if request.step is not None else []
    notes += [f"fault {request.fault}"] if request.fault else []
    notes += ["replayed"] if request.replayed else []
    typer.echo(f"{request.status} {who} {' '.join(notes)}".rstrip(), err=True)


def main() -> None:
    """Entry point of the ``coro`` console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
