"""The ``coro`` command line: the app, its global options, and which commands it has.

A bare ``coro`` opens the full-screen TUI (``coro attach``: on a runner elsewhere).
``coro start --headless`` runs the engine behind its HTTP API; the job commands (``job``,
``jobs``, ``status``, ``logs``, ``message``, ``pause``, ``resume``, ``cancel``, ``approve``,
``runner status``) talk to that runner through the API, with the token from
``$CORO_HOME/runner.token``.

The commands live by area in ``_cli_runner`` (the runner and this machine), ``_cli_jobs``,
``_cli_pr`` and ``_cli_intel`` (``workflows`` and ``intelligence show``, read from
``CORO_HOME`` without a runner), and share ``_cli_common``; this module registers them, in the
order ``coro --help`` lists them.

Exit codes a script can rely on: 0 done, 1 the job failed, escalated or was cancelled (or the
runner refused the action), 2 usage, 3 the runner cannot be reached. Subcommands import only
what they use, so ``coro --help`` and ``coro --version`` answer instantly.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from coro_tui._cli_common import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, JsonFlag
from coro_tui._cli_intel import intelligence_app, workflows
from coro_tui._cli_jobs import (
    DEFAULT_WORKFLOW,
    JobId,
    approve,
    cancel,
    job,
    list_jobs,
    logs,
    message,
    pause,
    resume,
    status,
)
from coro_tui._cli_plan import plan
from coro_tui._cli_pr import pr_app
from coro_tui._cli_runner import (
    demo,
    doctor,
    git_credential,
    init,
    model_server,
    runner_app,
    runner_status,
    start,
)
from coro_tui._cli_tui import attach
from engine._version import __version__

__all__ = [
    "DEFAULT_WORKFLOW",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "JobId",
    "JsonFlag",
    "app",
    "approve",
    "attach",
    "cancel",
    "demo",
    "doctor",
    "git_credential",
    "init",
    "intelligence_app",
    "job",
    "list_jobs",
    "logs",
    "main",
    "message",
    "model_server",
    "pause",
    "plan",
    "pr_app",
    "resume",
    "runner_app",
    "runner_status",
    "start",
    "status",
    "workflows",
]

app = typer.Typer(
    name="coro",
    help=(
        "coro runs AI coding-agent jobs from a brief to merged pull requests.\n\n"
        "Run `coro COMMAND --help` for the options of a command. Exit codes: 0 done, "
        "1 the job failed/escalated (or the runner refused), 2 usage, 3 runner unreachable."
    ),
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="CORO_URL",
            show_envvar=True,
            help="The runner's URL (default: from $CORO_HOME/runner.json, else config.json).",
        ),
    ] = None,
) -> None:
    """coro runs AI coding-agent jobs from a brief to merged pull requests."""
    ctx.obj = {"url": url}
    if ctx.invoked_subcommand is None:
        from coro_tui._cli_tui import open_tui

        raise typer.Exit(open_tui(url))


# `coro --help` lists the commands in this order, then the groups (runner, pr, intelligence).
app.command()(start)
app.command()(attach)
app.command()(init)
app.command()(job)
app.command("jobs")(list_jobs)
app.command()(status)
app.command()(logs)
app.command()(message)
app.command()(pause)
app.command()(resume)
app.command()(cancel)
app.command()(approve)
app.command()(plan)
app.command("git-credential", hidden=True)(git_credential)
app.command()(workflows)
app.command()(doctor)
app.command()(demo)
app.command("model-server")(model_server)
app.add_typer(runner_app)
app.add_typer(pr_app)
app.add_typer(intelligence_app)


def main() -> None:
    """Entry point of the ``coro`` console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
