"""``coro`` commands that run or set up things on this machine: ``start``, ``runner status``,
``init``, ``doctor``, ``model-server``, ``demo`` and git's credential helper."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coro_tui._cli_common import EXIT_FAILED, EXIT_USAGE, JsonFlag, _fail, _print_json, _runner

if TYPE_CHECKING:
    from engine.model_server import RecordedRequest

__all__ = [
    "demo",
    "doctor",
    "git_credential",
    "init",
    "model_server",
    "runner_app",
    "runner_status",
    "start",
]

runner_app = typer.Typer(
    name="runner",
    help="Inspect the runner this CORO_HOME talks to.",
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
)


def start(
    headless: Annotated[
        bool, typer.Option("--headless", help="Run without a screen, behind the HTTP API.")
    ] = False,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="The API's port (default: server.port, 7337)."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help="The address to bind (default 127.0.0.1; others reach it too)."),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(min=0, help="Seconds running phases get to reach a boundary at shutdown."),
    ] = 30.0,
    log_format: Annotated[
        str, typer.Option("--log-format", help="Log lines on stderr: text (key=value) or json.")
    ] = "text",
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also log every job's log lines.")
    ] = False,
) -> None:
    """Start the runner: the engine that runs jobs, and its HTTP API.

    With --headless it prints the API's URL (first line of stdout) and the token file, logs to
    stderr, and runs until SIGINT/SIGTERM: then it stops taking jobs, gives running phases up
    to --grace seconds to reach a boundary, saves and exits 0. A second signal cuts the wait;
    jobs cut mid-phase resume at the next start.
    """
    if not headless:
        _fail(
            "the full-screen TUI is not built yet: run `coro start --headless` for now",
            EXIT_USAGE,
        )
    if log_format not in ("text", "json"):
        _fail(f"--log-format must be text or json, not {log_format!r}", EXIT_USAGE)
    from engine.errors import CoroError
    from engine.headless import HeadlessOptions, PortTaken, print_ready, run_headless

    options = HeadlessOptions(
        host=host, port=port, grace=grace, log_format=log_format, verbose=verbose
    )
    try:
        code = asyncio.run(run_headless(options, ready=print_ready(sys.stdout)))
    except PortTaken as exc:
        _fail(exc.message, EXIT_FAILED)
    except CoroError as exc:
        _fail(exc.message, EXIT_FAILED)
    # Everything is saved and closed by now. Tearing down the interpreter's modules (anthropic,
    # mcp, pydantic…) would add a second or two to every Ctrl-C, so leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@runner_app.command("status")
def runner_status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Say whether the runner answers: URL, mode, version, runner id and jobs by status."""
    with _runner(ctx) as runner:
        health = runner.get("/health")
        jobs = runner.get("/jobs", limit=500)
    counts: dict[str, int] = {}
    for job in jobs.get("jobs", []):
        counts[job.get("status", "?")] = counts.get(job.get("status", "?"), 0) + 1
    report = {
        "url": runner.url,
        "mode": health.get("mode"),
        "version": health.get("version"),
        "runnerId": health.get("runnerId"),
        "jobs": jobs.get("total", 0),
        "byStatus": counts,
    }
    if as_json:
        _print_json(report)
        return
    typer.echo(f"runner   {report['runnerId']} ({report['mode']}, coro {report['version']})")
    typer.echo(f"url      {report['url']}")
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
    typer.echo(f"jobs     {report['jobs']} ({by_status})")


def init(
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="server.port: the runner's API port.")
    ] = None,
    anthropic_api_key: Annotated[
        str | None, typer.Option("--anthropic-api-key", help="llm.apiKey (stored 0600).")
    ] = None,
    git_provider: Annotated[
        str | None, typer.Option(help="git.provider: github, bitbucket, gitlab or local.")
    ] = None,
    git_token: Annotated[str | None, typer.Option(help="git.token (stored 0600).")] = None,
    intelligence_dir: Annotated[
        Path | None,
        typer.Option(help="A directory holding your team's intelligence layer (tenant overlay)."),
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(min=1, help="jobs.maxConcurrent: jobs that run at once.")
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Local mode (SQLite, no cloud); the default.")
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Start from defaults even if config.json is broken.")
    ] = False,
) -> None:
    """Write $CORO_HOME/config.json without questions: the flags given, everything else kept.

    An existing config keeps every value no flag changes. Secrets are stored with mode 0600
    and never printed.
    """
    from engine.config import ConfigError, load_config, parse_config, save_config
    from engine.paths import CoroPaths

    paths = CoroPaths.from_home()
    try:
        current = load_config(paths.config_file)
    except ConfigError as exc:
        if not force:
            _fail(f"{exc.message}\n(use --force to start over from defaults)", EXIT_USAGE)
        from engine.config import LocalConfig

        current = LocalConfig()
    data = current.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    changes: list[str] = []

    def put(path: str, value: Any, shown: str | None = None) -> None:
        node = data
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        changes.append(f"{path} = {shown if shown is not None else json.dumps(value)}")

    if port is not None:
        put("server.port", port)
    if anthropic_api_key is not None:
        put("llm.apiKey", anthropic_api_key, "(secret)")
    if git_provider is not None:
        put("git.provider", git_provider)
    if git_token is not None:
        put("git.token", git_token, "(secret)")
    if intelligence_dir is not None:
        folder = intelligence_dir.expanduser().resolve()
        if not folder.is_dir():
            _fail(f"--intelligence-dir {folder}: no such directory", EXIT_USAGE)
        put("tenant.overlay", {"kind": "localDir", "path": str(folder)}, str(folder))
    if max_concurrent is not None:
        put("jobs.maxConcurrent", max_concurrent)
    if local and data.get("cloud", {}).get("url"):
        typer.echo("note: cloud.url is set, so the runner pairs with the cloud when it has a token")
    try:
        config = parse_config(data, source="the flags")
    except ConfigError as exc:
        _fail(exc.message, EXIT_USAGE)
    paths.ensure()
    save_config(paths.config_file, config)
    typer.echo(f"wrote {paths.config_file}")
    for line in changes:
        typer.echo(f"  {line}")


def git_credential(
    operation: Annotated[str, typer.Argument(help="get, store or erase (git's protocol).")],
) -> None:
    """git's credential helper for checkouts coro made: answers from config.json."""
    if operation != "get":
        return  # coro keeps no credentials of its own to store or erase
    from engine.config import ConfigError, load_config
    from engine.paths import CoroPaths
    from engine.scm.credentials import git_credentials, parse_request

    request = parse_request(sys.stdin)
    try:
        config = load_config(CoroPaths.from_home().config_file)
    except ConfigError:
        return  # git then says authentication failed; `coro doctor` explains the config
    found = git_credentials(config, request.get("host", ""))
    if found is not None:
        sys.stdout.write(f"username={found[0]}\npassword={found[1]}\n")


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check CORO_HOME, config.json and state.db, and say what is wrong and how to fix it."""
    from coro_tui._doctor import run_doctor

    raise typer.Exit(asyncio.run(run_doctor(as_json=as_json)))


def demo(
    home: Annotated[
        Path | None,
        typer.Option(help="Keep the demo's CORO_HOME here (a new or empty directory)."),
    ] = None,
    headless: Annotated[
        bool,
        typer.Option(
            "--headless", help="No screen: merge the pull request itself and print the events."
        ),
    ] = False,
) -> None:
    """Run one whole job on a sample project, with a scripted model: no API key, no setup.

    A local endpoint plays the model from a script; the rest is real: the standard workflow,
    files, git, tests, and a pull request on the local SCM that the job waits for until you
    approve and merge it (g on the job screen). The CORO_HOME is a temporary directory removed
    at exit, unless --home. Without a terminal, it runs --headless.
    """
    from coro_tui._demo import DemoError, DemoOptions, run_demo

    if not headless and not (sys.stdin.isatty() and sys.stdout.isatty()):
        typer.echo("coro demo: no terminal, so it runs --headless")
        headless = True
    try:
        code = run_demo(DemoOptions(home=home, headless=headless))
    except DemoError as exc:
        _fail(f"demo: {exc.message}", EXIT_FAILED)
    except KeyboardInterrupt:
        typer.echo("coro demo: interrupted; everything it started is stopped", err=True)
        raise typer.Exit(130) from None
    raise typer.Exit(code)


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
