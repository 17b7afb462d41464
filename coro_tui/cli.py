"""The ``coro`` command line.

A bare ``coro`` will open the full-screen TUI once it is built. ``coro start --headless`` runs
the engine behind its HTTP API; the job commands (``job``, ``jobs``, ``status``, ``logs``,
``message``, ``pause``, ``resume``, ``cancel``, ``approve``, ``runner status``) talk to that
runner through the API, with the token from ``$CORO_HOME/runner.token``.

Exit codes a script can rely on: 0 done, 1 the job failed, escalated or was cancelled (or the
runner refused the action), 2 usage, 3 the runner cannot be reached. Subcommands import only
what they use, so ``coro --help`` and ``coro --version`` answer instantly.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from engine._version import __version__

if TYPE_CHECKING:
    from coro_tui._client import RunnerClient
    from engine.model_server import RecordedRequest

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
runner_app = typer.Typer(
    name="runner",
    help="Inspect the runner this CORO_HOME talks to.",
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
)
app.add_typer(runner_app)
pr_app = typer.Typer(
    name="pr",
    help="Review the local SCM's pull requests: list, show, diff, comment, approve, merge.",
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
)
app.add_typer(pr_app)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
DEFAULT_WORKFLOW = "workflows/job/workflow.md"

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
JobId = Annotated[str, typer.Argument(help="The job's id (see `coro jobs`).", show_default=False)]


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
        typer.echo(
            "coro: the full-screen TUI is not built yet, so a bare `coro` has nothing to open.\n"
            "What works today: `coro start --headless` runs the runner, and `coro job`, "
            "`coro jobs`, `coro logs` … talk to it. See `coro --help`.",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)


# -- helpers --------------------------------------------------------------------------------------
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


# -- the runner -----------------------------------------------------------------------------------
@app.command()
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


@app.command()
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


# -- jobs -----------------------------------------------------------------------------------------
def _split_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _fail(f"--param {pair!r}: expected KEY=VALUE", EXIT_USAGE)
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return params


def _watch(
    runner: RunnerClient, job_id: str, *, as_json: bool, verbose: bool, after: int = 0
) -> dict[str, Any]:
    """Print the job's events until it parks, escalates or ends; the job as it then is."""
    from coro_tui._render import describe_event, stops_watching

    for frame in runner.follow(f"/jobs/{job_id}/events", after=after, on_reconnect=_stderr):
        if frame.event == "done":
            break
        event = frame.json()
        if as_json:
            typer.echo(json.dumps(event, ensure_ascii=False))
        else:
            line = describe_event(event, verbose=verbose)
            if line is not None:
                typer.echo(line)
        if event.get("kind") == "status" and stops_watching(str(event["data"].get("to", ""))):
            break
    job: dict[str, Any] = runner.get(f"/jobs/{job_id}")
    return job


def _finish(job: dict[str, Any], *, as_json: bool) -> NoReturn:
    from coro_tui._render import exit_code_for, outcome_line

    status = str(job.get("status", ""))
    if not as_json:
        typer.echo(outcome_line(job), err=True)
    raise typer.Exit(exit_code_for(status))


@app.command()
def job(
    ctx: typer.Context,
    repo: Annotated[str | None, typer.Option(help="The repository (owner/name or URL).")] = None,
    reviewers: Annotated[
        str | None, typer.Option(help="Comma-separated reviewers for the pull requests.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="The brief: what to build.")] = None,
    service_name: Annotated[str | None, typer.Option(help="The service's name.")] = None,
    git_provider: Annotated[
        str | None, typer.Option(help="The SCM to use for this job: github or bitbucket.")
    ] = None,
    jira_ticket: Annotated[
        str | None,
        typer.Option(help="A Jira ticket to work from (then --repo etc. are optional)."),
    ] = None,
    workflow: Annotated[
        str, typer.Option(help="The workflow, a path inside the intelligence layers.")
    ] = DEFAULT_WORKFLOW,
    interactive: Annotated[
        bool, typer.Option("--interactive", help="Stop at each phase's checkpoint for approval.")
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            help="An extra job parameter (repeatable; JSON values are parsed).",
        ),
    ] = None,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Print the job id and return at once.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every event.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Submit a job, then stream its events until it parks, escalates or ends.

    --repo, --reviewers and --description are required unless --jira-ticket is given. Exits 0
    when the job completes or parks (waiting for you or for a merge), 1 when it fails,
    escalates or is cancelled.
    """
    if jira_ticket is None:
        missing = [name for name, value in
                   (("--repo", repo), ("--reviewers", reviewers), ("--description", description))
                   if not value]  # fmt: skip
        if missing:
            _fail(f"missing {', '.join(missing)} (or give --jira-ticket)", EXIT_USAGE)
    params: dict[str, Any] = {}
    if repo:
        params["repo"] = repo
    if reviewers:
        params["reviewers"] = [r.strip() for r in reviewers.split(",") if r.strip()]
    if description:
        params["description"] = description
    if service_name:
        params["serviceName"] = service_name
    if git_provider:
        if git_provider not in ("github", "bitbucket"):
            _fail(f"--git-provider must be github or bitbucket, not {git_provider!r}", EXIT_USAGE)
        params["scm"] = git_provider
    if jira_ticket:
        params["trackerRef"] = {"kind": "ticket", "pluginId": "jira", "externalId": jira_ticket}
    params.update(_split_params(param or []))
    body = {"workflowPath": workflow, "params": params, "interactive": interactive,
            "triggerSource": "cli"}  # fmt: skip
    with _runner(ctx) as runner:
        created = runner.post("/jobs", body)
        job_id = str(created["jobId"])
        if as_json:
            typer.echo(json.dumps(created, ensure_ascii=False))
        else:
            typer.echo(f"job {job_id} queued ({workflow})", err=True)
        if no_stream:
            if not as_json:
                typer.echo(job_id)
            return
        final = _watch(runner, job_id, as_json=as_json, verbose=verbose)
    _finish(final, as_json=as_json)


@app.command("jobs")
def list_jobs(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", "-s", help="Only jobs in this status (repeat for several)."),
    ] = None,
    workflow: Annotated[str | None, typer.Option(help="Only jobs of this workflow.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many jobs.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List jobs, newest first."""
    from coro_tui._render import jobs_table

    with _runner(ctx) as runner:
        answer = runner.get("/jobs", status=",".join(status) if status else None,
                            workflow=workflow, limit=limit)  # fmt: skip
    if as_json:
        _print_json(answer)
        return
    jobs = answer.get("jobs", [])
    if not jobs:
        typer.echo("no jobs" + (f" with status {', '.join(status)}" if status else ""))
        return
    typer.echo(jobs_table(jobs))
    total = answer.get("total", len(jobs))
    if total > len(jobs):
        typer.echo(f"({len(jobs)} of {total}; use --limit to see more)")


@app.command()
def status(ctx: typer.Context, job_id: JobId, as_json: JsonFlag = False) -> None:
    """Show a job: status, phase, what it waits for, work items, pull requests, usage.

    Exits 1 when the job failed, escalated or was cancelled, so scripts can test it.
    """
    from coro_tui._render import exit_code_for, job_details

    with _runner(ctx) as runner:
        found: dict[str, Any] = runner.get(f"/jobs/{job_id}")
    if as_json:
        _print_json(found)
    else:
        typer.echo(job_details(found))
    raise typer.Exit(exit_code_for(str(found.get("status", ""))))


@app.command()
def logs(
    ctx: typer.Context,
    job_id: JobId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the job ends.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Print a job's log lines; with --follow, stream them until the job ends.

    A dropped connection is resumed where it stopped (Last-Event-ID): no line is printed twice
    and none is skipped.
    """
    from coro_tui._render import exit_code_for

    with _runner(ctx) as runner:
        if not follow:
            after = 0
            while True:
                page = runner.get(f"/jobs/{job_id}/log", after=after, limit=1000)
                for entry in page.get("lines", []):
                    _print_line(entry["seq"], entry["line"], as_json=as_json)
                if page.get("next") is None:
                    break
                after = int(page["next"])
            current = runner.get(f"/jobs/{job_id}")
        else:
            final = "unknown"
            for frame in runner.follow(f"/jobs/{job_id}/stream", on_reconnect=_stderr):
                if frame.event == "done":
                    final = str(frame.json().get("status", final))
                    break
                _print_line(int(frame.id or 0), frame.text, as_json=as_json)
            current = {"status": final}
    raise typer.Exit(exit_code_for(str(current.get("status", ""))))


def _print_line(seq: int, line: str, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"seq": seq, "line": line}, ensure_ascii=False))
    else:
        typer.echo(line)


# -- job control ----------------------------------------------------------------------------------
def _act(ctx: typer.Context, job_id: str, action: str, body: dict[str, Any], as_json: bool) -> None:
    from coro_tui._render import outcome_line

    with _runner(ctx) as runner:
        answer = runner.post(f"/jobs/{job_id}/{action}", body)
    if as_json:
        _print_json(answer)
    else:
        typer.echo(outcome_line(answer))


@app.command()
def message(
    ctx: typer.Context,
    job_id: JobId,
    text: Annotated[str, typer.Argument(help="What to tell the job's agent.", show_default=False)],
    mode: Annotated[
        str,
        typer.Option(
            help="queue: after the current turn; steer: at the next tool boundary; "
            "urgent: interrupt now."
        ),
    ] = "steer",
    as_json: JsonFlag = False,
) -> None:
    """Send a message to a job: steers a running phase, or resumes a parked job with it."""
    if mode not in ("queue", "steer", "urgent"):
        _fail(f"--mode must be queue, steer or urgent, not {mode!r}", EXIT_USAGE)
    with _runner(ctx) as runner:
        answer = runner.post(f"/jobs/{job_id}/message", {"text": text, "mode": mode})
    if as_json:
        _print_json(answer)
    else:
        typer.echo(f"message {answer.get('messageId')} accepted ({mode})")


@app.command()
def pause(ctx: typer.Context, job_id: JobId, as_json: JsonFlag = False) -> None:
    """Park a job at the next safe point until you resume it or send a message."""
    _act(ctx, job_id, "pause", {}, as_json)


@app.command()
def resume(
    ctx: typer.Context,
    job_id: JobId,
    from_phase: Annotated[
        str | None, typer.Option(help="Start again from this phase instead of the current one.")
    ] = None,
    clear_session: Annotated[
        bool, typer.Option("--clear-session", help="Forget the phase's conversation.")
    ] = False,
    text: Annotated[
        str | None, typer.Option("--message", "-m", help="Something to tell the agent.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Resume a parked, escalated or failed job."""
    body: dict[str, Any] = {"clearSession": clear_session}
    if from_phase:
        body["fromPhase"] = from_phase
    if text:
        body["message"] = text
    _act(ctx, job_id, "resume", body, as_json)


@app.command()
def cancel(
    ctx: typer.Context,
    job_id: JobId,
    reason: Annotated[str | None, typer.Option(help="Why; kept in the job's log.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a job for good."""
    _act(ctx, job_id, "cancel", {"reason": reason} if reason else {}, as_json)


@app.command()
def approve(
    ctx: typer.Context,
    job_id: JobId,
    text: Annotated[
        str | None, typer.Option("--message", "-m", help="A note for the next phase.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Approve a job waiting at a checkpoint, so it goes on to the next phase."""
    _act(ctx, job_id, "approve", {"message": text} if text else {}, as_json)


# -- local pull requests ------------------------------------------------------------------------
PrNumber = Annotated[int, typer.Argument(min=1, help="The pull request's number.")]
RepoOption = Annotated[
    str | None,
    typer.Option("--repo", "-r", help="The local repository (needed when there are several)."),
]


def _me() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "developer"


def _pick_repo(runner: RunnerClient, repo: str | None, pr: int) -> str:
    """The repository a PR number refers to: ``--repo``, or the only one that has it."""
    if repo:
        return repo
    listing = runner.get("/scm/local/prs")
    owners = sorted({p["repo"] for p in listing.get("pullRequests", []) if p["id"] == pr})
    if len(owners) == 1:
        return str(owners[0])
    if not owners:
        _fail(f"no local pull request #{pr}; see `coro pr list`", EXIT_FAILED)
    _fail(f"#{pr} exists in {', '.join(owners)}: say which with --repo", EXIT_USAGE)


@pr_app.command("list")
def pr_list(
    ctx: typer.Context,
    repo: RepoOption = None,
    state: Annotated[
        str | None, typer.Option(help="open, merged or declined (default: all).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List local pull requests, newest first."""
    with _runner(ctx) as runner:
        answer = runner.get("/scm/local/prs", repo=repo, state=state)
    if as_json:
        _print_json(answer)
        return
    prs = answer.get("pullRequests", [])
    if not prs:
        typer.echo("no pull requests" + (f" in {repo}" if repo else ""))
        return
    for pr in prs:
        approved = f" approved by {', '.join(pr['approvedBy'])}" if pr["approvedBy"] else ""
        typer.echo(
            f"{pr['repo']}#{pr['id']}  {pr['state']:<8}  {pr['sourceBranch']} → "
            f"{pr['targetBranch']}  {pr['title']}  ({pr['comments']} comments{approved})"
        )


@pr_app.command("show")
def pr_show(
    ctx: typer.Context, pr: PrNumber, repo: RepoOption = None, as_json: JsonFlag = False
) -> None:
    """Show a pull request: description, approvals and the comment thread."""
    with _runner(ctx) as runner:
        slug = _pick_repo(runner, repo, pr)
        data = runner.get(f"/scm/local/prs/{pr}", repo=slug)
    if as_json:
        _print_json(data)
        return
    typer.echo(f"{data['repo']}#{data['id']}: {data['title']} [{data['state']}]")
    typer.echo(f"{data['sourceBranch']} → {data['targetBranch']}, by {data['author']}"
               + (f", job {data['jobId']}" if data.get("jobId") else ""))  # fmt: skip
    if data.get("approvals"):
        typer.echo("approved by " + ", ".join(a["user"] for a in data["approvals"]))
    if data.get("description"):
        typer.echo("\n" + data["description"].rstrip())
    for comment in data.get("comments", []):
        reply = f" (reply to {comment['parentId']})" if comment.get("parentId") else ""
        where = f" on {comment['path']}:{comment.get('line')}" if comment.get("path") else ""
        typer.echo(f"\n[{comment['id']}] {comment['author']}{where}{reply}:")
        typer.echo("  " + "\n  ".join(comment["body"].splitlines()))


@pr_app.command("diff")
def pr_diff(ctx: typer.Context, pr: PrNumber, repo: RepoOption = None) -> None:
    """Print the pull request's diff (target...source)."""
    with _runner(ctx) as runner:
        slug = _pick_repo(runner, repo, pr)
        typer.echo(runner.text(f"/scm/local/prs/{pr}/diff", repo=slug), nl=False)


@pr_app.command("comment")
def pr_comment(
    ctx: typer.Context,
    pr: PrNumber,
    text: Annotated[str, typer.Argument(help="The comment (markdown).", show_default=False)],
    repo: RepoOption = None,
    reply_to: Annotated[int | None, typer.Option(help="Answer this comment.")] = None,
) -> None:
    """Comment on a pull request (the job that opened it sees the comment)."""
    with _runner(ctx) as runner:
        slug = _pick_repo(runner, repo, pr)
        body: dict[str, Any] = {"body": text, "author": _me()}
        if reply_to is not None:
            body["parentId"] = reply_to
        answer = runner.post(f"/scm/local/prs/{pr}/comment", repo=slug, body=body)
    typer.echo(f"comment {answer['commentId']} posted on {slug}#{pr}")


@pr_app.command("approve")
def pr_approve(ctx: typer.Context, pr: PrNumber, repo: RepoOption = None) -> None:
    """Approve a pull request as you."""
    with _runner(ctx) as runner:
        slug = _pick_repo(runner, repo, pr)
        runner.post(f"/scm/local/prs/{pr}/approve", repo=slug, body={"user": _me()})
    typer.echo(f"{slug}#{pr} approved by {_me()}")


@pr_app.command("merge")
def pr_merge(
    ctx: typer.Context,
    pr: PrNumber,
    repo: RepoOption = None,
    strategy: Annotated[str, typer.Option(help="merge, squash or rebase.")] = "merge",
    text: Annotated[str | None, typer.Option("--message", "-m", help="The commit message.")] = None,
) -> None:
    """Merge a pull request into its target branch (refused on a conflict)."""
    if strategy not in ("merge", "squash", "rebase"):
        _fail(f"--strategy must be merge, squash or rebase, not {strategy!r}", EXIT_USAGE)
    with _runner(ctx) as runner:
        slug = _pick_repo(runner, repo, pr)
        body: dict[str, Any] = {"strategy": strategy}
        if text:
            body["message"] = text
        answer = runner.post(f"/scm/local/prs/{pr}/merge", repo=slug, body=body)
    typer.echo(f"{slug}#{pr} merged ({strategy}) as {str(answer.get('mergeCommit'))[:12]}")


@pr_app.command("decline")
def pr_decline(ctx: typer.Context, pr: PrNumber, repo: RepoOption = None) -> None:
    """Close a pull request without merging it."""
    with _runner(ctx) as runner:
        slug = _pick_repo(runner, repo, pr)
        runner.post(f"/scm/local/prs/{pr}/decline", repo=slug, body={})
    typer.echo(f"{slug}#{pr} declined")


@app.command("git-credential", hidden=True)
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


# -- other ----------------------------------------------------------------------------------------
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
