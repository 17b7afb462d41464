"""Artefact and insight tools: what a phase produced for people, and what an agent learned."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from engine.tools._base import DomainTool, ToolArgs, ToolError, ToolResult, new_id
from state import Artifact, EventKind, Insight

if TYPE_CHECKING:
    from engine.phase import ToolContext

__all__ = ["TOOLS", "job_relative_path"]


def job_relative_path(job_dir: Path, value: object, *, what: str) -> str:
    """Check that ``value`` is a relative path that stays inside ``job_dir``; return it.

    Symlinks are followed, so a link inside the job directory cannot point outside it.

    Raises:
        ToolError: the path is not text, is absolute, or leaves the job directory.
    """
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"{what} must be a non-empty path relative to the job directory")
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute():
        raise ToolError(f"{what} must be relative to the job directory, got {value!r}")
    root = job_dir.resolve()
    try:
        inside = (root / value).resolve().is_relative_to(root)
    except (OSError, ValueError):
        inside = False
    if not inside:
        raise ToolError(f"{what} {value!r} leaves the job directory")
    return value


def _created_by(ctx: ToolContext) -> str:
    item = ctx.job.current_work_item
    return f"{ctx.phase.name}:{item}" if item else ctx.phase.name


class PostArtifactArgs(ToolArgs):
    phase: str | None = Field(None, description="The phase it belongs to (default: this one).")
    kind: str = Field(
        min_length=1,
        description="What it is: plan-md, implementation-plan-md, spec-md, pr-link, "
        "review-summary, test-results, evaluation-md, report-md, url, json, …",
    )
    title: str = Field(min_length=1, description="A short human-readable title.")
    data: dict[str, Any] | None = Field(
        None,
        description="The payload, e.g. {path} for a file (relative to the job directory) or "
        "{url, prId, repoSlug, title, pluginId} for a pr-link.",
    )


async def post_artifact(ctx: ToolContext, args: PostArtifactArgs) -> ToolResult:
    data = dict(args.data or {})
    if "path" in data:
        job_relative_path(ctx.job_dir, data["path"], what="data.path")
    artifact = Artifact(
        id=new_id("art"),
        phase=args.phase or ctx.phase.name,
        kind=args.kind,
        title=args.title,
        data=data,
        created_by=_created_by(ctx),
    )
    ctx.job.artifacts.append(artifact)
    await ctx.save()
    wire = artifact.to_wire()
    await ctx.emit(EventKind.ARTIFACT, wire)
    await ctx.log(f"[artifact] {artifact.kind}: {artifact.title} ({artifact.id})")
    return wire


class GetArtifactsArgs(ToolArgs):
    phase: str | None = Field(None, description="Only the artefacts of this phase.")


async def get_artifacts(ctx: ToolContext, args: GetArtifactsArgs) -> ToolResult:
    artifacts = [
        a.to_wire() for a in ctx.job.artifacts if args.phase is None or a.phase == args.phase
    ]
    return {"artifacts": artifacts, "total": len(artifacts)}


class AddInsightArgs(ToolArgs):
    category: str = Field(
        min_length=1,
        description="sandbox-quirk, toolchain-pitfall, auth-friction, provider-bug, "
        "intelligence-gap, workaround, spec-ambiguity or contract-drift.",
    )
    summary: str = Field(min_length=1, description="One line: what you learned.")
    detail: str = Field(min_length=1, description="What happened, with the evidence.")
    suggestion: str | None = Field(
        None, description="What to change (memory, a skill, an agent) so it does not recur."
    )
    suggested_layer: Literal["tenant", "repo"] | None = Field(
        None,
        description="Where the lesson belongs: 'repo' for this repository, 'tenant' for all.",
    )


async def add_insight(ctx: ToolContext, args: AddInsightArgs) -> ToolResult:
    insight = Insight(
        id=new_id("ins"),
        phase=ctx.phase.name,
        category=args.category,
        summary=args.summary,
        detail=args.detail,
        suggestion=args.suggestion,
        suggested_layer=args.suggested_layer,
    )
    ctx.job.insights.append(insight)
    await ctx.save()
    wire = insight.to_wire()
    await ctx.emit(EventKind.INSIGHT, wire)
    await ctx.log(f"[insight] {insight.category}: {insight.summary}")
    return wire


TOOLS: tuple[DomainTool[Any], ...] = (
    DomainTool(
        "post_artifact",
        "Publish something this phase produced for the developer to read: a plan, a spec, a "
        "PR link, test results, a report. Files are referred to by data.path, relative to the "
        "job directory.",
        PostArtifactArgs,
        post_artifact,
    ),
    DomainTool(
        "get_artifacts",
        "The artefacts posted on this job so far (optionally of one phase), with the total.",
        GetArtifactsArgs,
        get_artifacts,
    ),
    DomainTool(
        "add_insight",
        "Record a lesson for the developer to curate: after 3+ retries, a quirk of the "
        "sandbox or toolchain, a workaround, a gap in the intelligence, or a guess held for "
        "more than 2 turns. Approved insights become memory through propose_change.",
        AddInsightArgs,
        add_insight,
    ),
)
