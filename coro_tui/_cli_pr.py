"""``coro pr``: review the local SCM's pull requests from the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from coro_tui._cli_common import EXIT_FAILED, EXIT_USAGE, JsonFlag, _fail, _print_json, _runner

if TYPE_CHECKING:
    from coro_tui._client import RunnerClient

__all__ = ["pr_app"]

pr_app = typer.Typer(
    name="pr",
    help="Review the local SCM's pull requests: list, show, diff, comment, approve, merge.",
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
)
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
