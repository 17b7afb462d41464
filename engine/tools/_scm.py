"""Source-control tools: clone, open pull requests, read and answer reviews, merge.

Every tool takes an optional ``pluginId``; without it the plugin is resolved as the original
did: the repository's remote URL (of the job's checkout) > ``params.scm`` > the default. PRs
opened here are recorded on the job (``prMappings``) and as external references, so webhooks
and the poller find the job again. Credentials never reach the model: checkouts get coro's
git credential helper, which answers git from the config.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import Field

from engine.scm import ScmError
from engine.tools._base import DomainTool, ToolArgs, ToolError, ToolResult
from state import ExternalRef, PrMapping, utcnow

if TYPE_CHECKING:
    from engine.guardrails import DiffStats, GuardrailPoint
    from engine.phase import ToolContext
    from engine.scm import PrStatus, PullRequest, ScmPlugin

__all__ = ["TOOLS", "credential_helper_command"]

PrId = int | str
T = TypeVar("T")


def credential_helper_command() -> str:
    """The ``credential.helper`` value set in checkouts: coro answering git for credentials."""
    return f"!{sys.executable} -m coro_tui git-credential"


class _ScmArgs(ToolArgs):
    plugin_id: str | None = Field(
        None, description="The SCM plugin (github, bitbucket, local); normally left out."
    )


class _RepoArgs(_ScmArgs):
    repo: str = Field(min_length=1, description="The repository slug, e.g. acme/my-service.")


class _PrArgs(_RepoArgs):
    pr_id: PrId = Field(description="The pull request's number.")


def _checkout(ctx: ToolContext, repo: str) -> Path:
    name = repo.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    if not name or name in (".", "..") or name.startswith((".", "-")):
        raise ToolError(f"repo {repo!r} is not a repository slug such as acme/my-service")
    return ctx.job_dir / name


async def _plugin(ctx: ToolContext, plugin_id: str | None, repo: str | None) -> ScmPlugin:
    if ctx.scm is None:
        raise ToolError("source control is not available in this runner")
    remote = None
    if plugin_id is None and repo:
        checkout = _checkout(ctx, repo)
        if (checkout / ".git").exists():
            from engine.scm.git import GitError, run_git

            try:
                remote = (await run_git("remote", "get-url", "origin", cwd=checkout)).strip()
            except GitError:
                remote = None
    try:
        return ctx.scm.resolve(plugin_id=plugin_id, remote_url=remote, job=ctx.job)
    except ScmError as exc:
        raise ToolError(exc.message) from None


def _pr_data(pr: PullRequest, plugin: ScmPlugin) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pluginId": plugin.id,
        "prId": pr.id,
        "externalId": str(pr.id),
        "url": pr.url,
        "title": pr.title,
        "state": pr.state,
        "sourceBranch": pr.source_branch,
        "targetBranch": pr.target_branch,
    }
    if pr.reviewers:
        data["reviewers"] = list(pr.reviewers)
    if pr.merged_at is not None:
        data["mergedAt"] = pr.merged_at.isoformat()
    if pr.merge_commit:
        data["mergeCommit"] = pr.merge_commit
    return data


async def _guard(
    ctx: ToolContext,
    on: GuardrailPoint,
    tool: str,
    args: ToolArgs,
    *,
    diff: DiffStats | None = None,
    pr_status: PrStatus | None = None,
) -> None:
    """Run the guardrails for ``on``; a denial is recorded and refuses the call."""
    from engine.guardrails import GuardrailContext, Guardrails, denial_event, log_line
    from engine.paths import CoroPaths

    scripts = ctx.guardrails_dir or CoroPaths.from_home().guardrails_dir
    guard = Guardrails(ctx.config.guardrails, scripts)
    check = GuardrailContext.for_job(
        on,
        tool,
        args.model_dump(mode="json", by_alias=True, exclude_none=True),
        ctx.job,
        phase=ctx.phase.name,
        working_dir=ctx.job_dir,
        pr_status=pr_status,
        diff=diff,
    )
    decision = await guard.check(check)
    if decision.allow:
        if decision.reason:
            await ctx.log(log_line(decision))
        return
    kind, data = denial_event(decision, check)
    await ctx.emit(kind, data)
    await ctx.log(log_line(decision))
    raise ToolError(f"guardrail {decision.rule_id} refused {tool}: {decision.reason}")


async def _ask(call: Awaitable[T]) -> T:
    """The SCM's answer; a refusal or failure becomes the tool's error, which the model reads."""
    try:
        return await call
    except ScmError as exc:
        raise ToolError(exc.message) from None


# -- clone ----------------------------------------------------------------------------------------
async def scm_clone_repo(ctx: ToolContext, args: _RepoArgs) -> ToolResult:
    from engine.scm.git import clone_or_reuse, env_secrets, run_git, run_git_result

    plugin = await _plugin(ctx, args.plugin_id, None)
    dest = _checkout(ctx, args.repo)
    try:
        info = await plugin.clone_info(args.repo)
        reused = (dest / ".git").exists()
        await clone_or_reuse(info, dest, secrets=env_secrets(info.env))
        await run_git("config", "credential.helper", credential_helper_command(), cwd=dest)
        for key, value in (("user.name", "coro"), ("user.email", "coro@localhost")):
            current = await run_git_result("config", "--get", key, cwd=dest)
            if not current.stdout.strip():
                await run_git("config", key, value, cwd=dest)
    except ScmError as exc:
        raise ToolError(exc.message) from None
    job = ctx.job
    job.params["repoCheckoutDir"] = dest.name
    job.params["repoCheckoutAbsDir"] = str(dest)
    job.params.setdefault("scm", plugin.id)
    await ctx.save(durable=True)
    slug = args.repo.lower()
    await ctx.store.map_repo_to_job(slug, job.id)
    await ctx.store.map_external_ref(
        ExternalRef(kind="repo", plugin_id=plugin.id, repo_key=slug, external_id=slug), job.id
    )
    await ctx.log(f"[repo-cloned] {args.repo} → {dest.name} ({'reused' if reused else 'cloned'})")
    return {"pluginId": plugin.id, "repo": args.repo, "dir": dest.name, "absDir": str(dest),
            "defaultBranch": info.default_branch, "reused": reused}  # fmt: skip


async def scm_get_clone_info(ctx: ToolContext, args: _RepoArgs) -> ToolResult:
    plugin = await _plugin(ctx, args.plugin_id, args.repo)
    info = await _ask(plugin.clone_info(args.repo))
    return {
        "pluginId": plugin.id,
        "repo": args.repo,
        "url": info.url,
        "defaultBranch": info.default_branch,
        "auth": "Checkouts made by scm_clone_repo authenticate through coro's git credential "
        "helper: git clone/fetch/push there need no token.",
    }


# -- pull requests --------------------------------------------------------------------------------
class CreatePrArgs(_RepoArgs):
    title: str = Field(min_length=1, description="The pull request's title.")
    description: str | None = Field(None, description="The pull request's description.")
    source_branch: str = Field(min_length=1, description="The branch with the changes (pushed).")
    source_owner: str | None = Field(None, description="The fork owning the branch, if any.")
    target_branch: str = Field("main", min_length=1, description="The branch to merge into.")
    reviewers: list[str] | None = Field(
        None, description="Reviewers to request (default: the job's params.reviewers)."
    )


async def _diff(ctx: ToolContext, args: CreatePrArgs) -> DiffStats | None:
    checkout = _checkout(ctx, args.repo)
    if not (checkout / ".git").exists():
        return None
    from engine.scm.git import GitError, diff_stats

    try:
        files, added, removed = await diff_stats(
            checkout, f"origin/{args.target_branch}", args.source_branch
        )
    except GitError:
        return None
    from engine.guardrails import DiffStats

    return DiffStats(files=files, added=added, removed=removed)


async def scm_create_pr(ctx: ToolContext, args: CreatePrArgs) -> ToolResult:
    plugin = await _plugin(ctx, args.plugin_id, args.repo)
    await _guard(ctx, "scm.create_pr", "scm_create_pr", args, diff=await _diff(ctx, args))
    reviewers = args.reviewers
    if reviewers is None:
        configured = ctx.job.params.get("reviewers") or []
        reviewers = [configured] if isinstance(configured, str) else list(configured)
    source = f"{args.source_owner}:{args.source_branch}" if args.source_owner else None
    pr = await _ask(
        plugin.create_pr(
            args.repo,
            title=args.title,
            description=args.description or "",
            source_branch=source or args.source_branch,
            target_branch=args.target_branch,
            reviewers=tuple(str(r) for r in reviewers),
        )
    )
    job = ctx.job
    if job.pr_mapping(pr.id) is None:  # a second call returns the same PR: already recorded
        job.pr_mappings.append(
            PrMapping(pr_id=pr.id, work_item=job.current_work_item or ctx.phase.name,
                      repo_slug=args.repo, plugin_id=plugin.id, url=pr.url)
        )  # fmt: skip
        await ctx.save(durable=True)
    ref = ExternalRef(kind="pull_request", plugin_id=plugin.id, repo_key=args.repo.lower(),
                      external_id=str(pr.id), url=pr.url)  # fmt: skip
    await ctx.store.map_external_ref(ref, job.id)
    await ctx.log(f"[pr-opened] {args.repo} #{pr.id} {pr.url}")
    return _pr_data(pr, plugin)


async def scm_get_pr_status(ctx: ToolContext, args: _PrArgs) -> ToolResult:
    plugin = await _plugin(ctx, args.plugin_id, args.repo)
    status = await _ask(plugin.pr_status(args.repo, args.pr_id))
    return _status_data(status, plugin)


def _status_data(status: PrStatus, plugin: ScmPlugin) -> dict[str, Any]:
    data = _pr_data(status.pr, plugin)
    data.update({
        "approvals": len(status.approvals),
        "approvedBy": list(status.approvals),
        "changesRequestedBy": list(status.changes_requested),
        "ci": status.ci,
        "mergeable": status.mergeable,
        "commentCount": status.comment_count,
    })  # fmt: skip
    return data


async def scm_list_pr_comments(ctx: ToolContext, args: _PrArgs) -> ToolResult:
    plugin = await _plugin(ctx, args.plugin_id, args.repo)
    comments = await _ask(plugin.list_comments(args.repo, args.pr_id))
    return {
        "comments": [
            {k: v for k, v in {
                "id": c.id, "author": c.author, "body": c.body,
                "createdAt": c.created_at.isoformat() if c.created_at else None,
                "parentId": c.parent_id, "path": c.path, "line": c.line,
            }.items() if v is not None}
            for c in comments
        ],
        "total": len(comments),
    }  # fmt: skip


class CommentArgs(_PrArgs):
    body: str = Field(min_length=1, description="The comment (markdown).")


async def scm_post_pr_comment(ctx: ToolContext, args: CommentArgs) -> ToolResult:
    plugin = await _plugin(ctx, args.plugin_id, args.repo)
    comment = await _ask(plugin.post_comment(args.repo, args.pr_id, args.body))
    return {"pluginId": plugin.id, "commentId": comment.id, "url": comment.url}


class ReplyArgs(_PrArgs):
    parent_comment_id: PrId = Field(description="The comment to answer.")
    body: str = Field(min_length=1, description="The reply (markdown).")


async def scm_reply_to_comment(ctx: ToolContext, args: ReplyArgs) -> ToolResult:
    plugin = await _plugin(ctx, args.plugin_id, args.repo)
    comment = await _ask(
        plugin.reply_to_comment(args.repo, args.pr_id, args.parent_comment_id, args.body)
    )
    return {"pluginId": plugin.id, "commentId": comment.id, "parentId": comment.parent_id,
            "url": comment.url}  # fmt: skip


class ReviewersArgs(_PrArgs):
    reviewers: list[str] = Field(min_length=1, description="Reviewers to add.")


async def scm_add_pr_reviewers(ctx: ToolContext, args: ReviewersArgs) -> ToolResult:
    plugin = await _plugin(ctx, args.plugin_id, args.repo)
    pr = await _ask(plugin.add_reviewers(args.repo, args.pr_id, tuple(args.reviewers)))
    return _pr_data(pr, plugin)


class MergeArgs(_PrArgs):
    message: str | None = Field(None, description="The merge commit's message.")
    strategy: Literal["merge", "squash", "rebase"] | None = Field(
        None, description="How to merge (default: merge)."
    )


async def scm_merge_pr(ctx: ToolContext, args: MergeArgs) -> ToolResult:
    plugin = await _plugin(ctx, args.plugin_id, args.repo)
    status = await _ask(plugin.pr_status(args.repo, args.pr_id))
    await _guard(ctx, "scm.merge_pr", "scm_merge_pr", args, pr_status=status)
    pr = await _ask(
        plugin.merge(args.repo, args.pr_id, strategy=args.strategy or "merge", message=args.message)
    )
    mapping = ctx.job.pr_mapping(pr.id)
    if mapping is not None and mapping.merged_at is None:
        mapping.merged_at = pr.merged_at or utcnow()
        await ctx.save(durable=True)
    await ctx.log(f"[pr-merged] {args.repo} #{pr.id} ({args.strategy or 'merge'})")
    return _pr_data(pr, plugin)


class ResolveUserArgs(_ScmArgs):
    repo: str | None = Field(None, description="A repository, to search its members.")
    query: str = Field(min_length=1, description="A username, display name, id or e-mail.")


async def scm_resolve_user(ctx: ToolContext, args: ResolveUserArgs) -> ToolResult:
    plugin = await _plugin(ctx, args.plugin_id, args.repo)
    user = await _ask(plugin.resolve_user(args.query, repo=args.repo))
    if user is None:
        return {"found": False, "query": args.query}
    return {"found": True, "id": user.id, "username": user.username,
            "displayName": user.display_name}  # fmt: skip


TOOLS: tuple[DomainTool[Any], ...] = (
    DomainTool(
        "scm_clone_repo",
        "Clone the repository into the job's directory (or fetch an existing checkout) and "
        "record it in params.repoCheckoutDir. git push/fetch there authenticate by themselves.",
        _RepoArgs,
        scm_clone_repo,
    ),
    DomainTool(
        "scm_get_clone_info",
        "The repository's clone URL and default branch (credentials are never shown).",
        _RepoArgs,
        scm_get_clone_info,
    ),
    DomainTool(
        "scm_create_pr",
        "Open a pull request from a pushed branch (returns the open one if it already exists). "
        "Guardrails check the description and the diff size first.",
        CreatePrArgs,
        scm_create_pr,
    ),
    DomainTool(
        "scm_get_pr_status",
        "A pull request's state, approvals (and by whom), requested changes and CI state.",
        _PrArgs,
        scm_get_pr_status,
    ),
    DomainTool(
        "scm_list_pr_comments",
        "Every comment on a pull request, oldest first.",
        _PrArgs,
        scm_list_pr_comments,
    ),
    DomainTool(
        "scm_post_pr_comment",
        "Post a top-level comment on a pull request.",
        CommentArgs,
        scm_post_pr_comment,
    ),
    DomainTool(
        "scm_reply_to_comment",
        "Reply to a comment on a pull request.",
        ReplyArgs,
        scm_reply_to_comment,
    ),
    DomainTool(
        "scm_add_pr_reviewers",
        "Request more reviewers (existing ones are kept).",
        ReviewersArgs,
        scm_add_pr_reviewers,
    ),
    DomainTool(
        "scm_merge_pr",
        "Merge a pull request (merge, squash or rebase). Guardrails require a human approval "
        "during review phases; a conflict is reported, never forced.",
        MergeArgs,
        scm_merge_pr,
    ),
    DomainTool(
        "scm_resolve_user",
        "Find a person on the SCM by name, username, id or e-mail.",
        ResolveUserArgs,
        scm_resolve_user,
    ),
)
