"""``coro`` commands about jobs: submit (``job``), list (``jobs``), inspect (``status``,
``logs``) and control them (``message``, ``pause``, ``resume``, ``cancel``, ``approve``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from coro_tui._cli_common import EXIT_USAGE, JsonFlag, _fail, _print_json, _runner, _stderr

if TYPE_CHECKING:
    from coro_tui._client import RunnerClient

__all__ = [
    "DEFAULT_WORKFLOW",
    "JobId",
    "approve",
    "cancel",
    "job",
    "list_jobs",
    "logs",
    "message",
    "pause",
    "resume",
    "status",
]

DEFAULT_WORKFLOW = "workflows/job/workflow.md"

JobId = Annotated[str, typer.Argument(help="The job's id (see `coro jobs`).", show_default=False)]


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


def pause(ctx: typer.Context, job_id: JobId, as_json: JsonFlag = False) -> None:
    """Park a job at the next safe point until you resume it or send a message."""
    _act(ctx, job_id, "pause", {}, as_json)


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


def cancel(
    ctx: typer.Context,
    job_id: JobId,
    reason: Annotated[str | None, typer.Option(help="Why; kept in the job's log.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a job for good."""
    _act(ctx, job_id, "cancel", {"reason": reason} if reason else {}, as_json)


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
