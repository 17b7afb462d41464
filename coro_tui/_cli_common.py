"""What every ``coro`` command shares: exit codes, the ``--json`` flag, failing with a message,
and the runner's API client with its failures turned into exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from coro_tui._client import RunnerClient

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"coro: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _runner(ctx: typer.Context) -> Iterator[RunnerClient]:
    """The API client; its failures become messages and exit codes."""
    from coro_tui._client import ApiRefused, RunnerClient, RunnerUnreachable

    url = (ctx.obj or {}).get("url") if ctx is not None else None
    try:
        with RunnerClient.locate(url=url) as client:
            yield client
    except RunnerUnreachable as exc:
        _fail(exc.message, EXIT_UNREACHABLE)
    except ApiRefused as exc:
        code = EXIT_USAGE if exc.status in (400, 413, 415, 422) else EXIT_FAILED
        _fail(f"the runner refused ({exc.status}): {exc.message}", code)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _stderr(line: str) -> None:
    typer.echo(line, err=True)
