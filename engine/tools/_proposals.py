"""Proposals: changes to an intelligence layer that an agent suggests and a human reviews.

The ``propose_change`` guardrails (:mod:`engine.guardrails`, e.g. markdown-only) run before
anything else; a denial is logged, recorded as a ``guardrail_denied`` event and returned to the
model as the tool's error. In local mode ``propose_change`` then validates the change, writes
the proposed files under ``<proposals_dir>/<proposal id>/`` (paths relative to the layer root)
and records a :class:`~state.Proposal`. A job makes at most one proposal per layer (tenant or
repo). Memory ``entries`` are rendered as markdown sections appended to the target layer's copy
of the memory file, within the line budgets of reference §10: a pitfall ≤ 8 lines, a pattern
≤ 10.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import weakref
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import Field

from engine.guardrails import GuardrailContext, Guardrails, denial_event, log_line
from engine.paths import CoroPaths
from engine.tools._base import DomainTool, ToolArgs, ToolError, ToolResult, new_id
from engine.tools._memory import memory_file
from state import Proposal
from state.models import ProposalFile

if TYPE_CHECKING:
    from engine.phase import ToolContext

__all__ = ["ENTRY_LINE_BUDGETS", "PROPOSAL_TYPES", "TOOLS", "render_entry"]

ProposalType = Literal[
    "new-tool",
    "modify-tool",
    "new-workflow",
    "modify-workflow",
    "new-agent",
    "modify-agent",
    "memory-update",
    "skill-create",
    "skill-update",
    "claude-md-update",
]
PROPOSAL_TYPES: tuple[str, ...] = get_args(ProposalType)
ENTRY_LINE_BUDGETS = {"pitfall": 8, "pattern": 10}
"""Most lines an entry's body may take (its heading not counted)."""

_MAX_FILE_CHARS = 200_000
_BANNER = re.compile(r"^<!-- coro layer: (\S+) -->$", re.MULTILINE)
_LABELS = {
    "symptom": "Symptom",
    "root_cause": "Root cause",
    "recipe": "Recipe",
    "anti_pattern": "Anti-pattern",
    "when_to_use": "When to use",
}
_ORDER = {
    "pitfall": ("symptom", "root_cause", "recipe", "anti_pattern", "when_to_use"),
    "pattern": ("when_to_use", "recipe", "anti_pattern", "symptom", "root_cause"),
}
# One proposal per (job, layer) must hold even when a model calls the tool twice in parallel.
_job_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


class FileArg(ToolArgs):
    path: str = Field(description="Relative to the layer root, e.g. agents/coder.md.")
    content: str = Field(description="The file's whole new content.")


class EntryArg(ToolArgs):
    file: str = Field(description="The memory file, e.g. pitfalls.md (under memory/).")
    kind: Literal["pitfall", "pattern"]
    title: str = Field(min_length=1)
    symptom: str | None = None
    root_cause: str | None = None
    recipe: str | None = None
    anti_pattern: str | None = None
    when_to_use: str | None = None


class ProposeChangeArgs(ToolArgs):
    type: ProposalType
    title: str = Field(min_length=1, description="One line, as for a pull request.")
    rationale: str = Field(min_length=1, description="Why: the evidence from this job.")
    description: str = Field(min_length=1, description="What changes, for the reviewer.")
    files: list[FileArg] | None = Field(None, description="Whole files to add or replace.")
    entries: list[EntryArg] | None = Field(
        None,
        description="Memory entries to append. Body budget (title not counted): pitfall ≤ 8 "
        "lines, pattern ≤ 10.",
    )
    target_file: str | None = Field(None, description="Shorthand for one file: its path.")
    proposed_content: str | None = Field(None, description="The content for targetFile.")
    target_layer: Literal["tenant", "repo"] | None = Field(
        None, description="The layer to change (default tenant). One proposal per layer."
    )


def _layer_path(value: str, what: str) -> str:
    """``value`` as a normal relative POSIX path to a ``.md`` file in a layer."""
    text = value.strip()
    if (
        not text
        or "\\" in text
        or PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).is_absolute()
        or ".." in PurePosixPath(text).parts
    ):
        raise ToolError(
            f"{what} {value!r} must be a path relative to the layer root, without '..' "
            "(e.g. memory/pitfalls.md)"
        )
    path = PurePosixPath(text).as_posix()
    if not path.endswith(".md"):
        raise ToolError(f"{what} {value!r}: only markdown (.md) files can be proposed")
    return path


def render_entry(entry: EntryArg) -> tuple[str, int]:
    """The entry as a markdown section, and how many body lines it takes."""
    body: list[str] = []
    for attr in _ORDER[entry.kind]:
        value = (getattr(entry, attr) or "").strip()
        if value:
            first, *rest = value.splitlines()
            body.append(f"- **{_LABELS[attr]}:** {first}")
            body.extend(f"  {line}" if line.strip() else "" for line in rest)
    heading = f"### {entry.kind.capitalize()}: {entry.title.strip()}"
    return "\n".join([heading, "", *body]), sum(1 for line in body if line)


def _layer_part(text: str, layer: str) -> str:
    """The part of a merged memory file that came from ``layer`` (all of it without banners)."""
    banners = list(_BANNER.finditer(text))
    if not banners:
        return text.strip("\n")
    for number, banner in enumerate(banners):
        if banner[1] == layer or banner[1].startswith(f"{layer}:"):
            end = banners[number + 1].start() if number + 1 < len(banners) else len(text)
            return text[banner.end() : end].strip("\n")
    return ""


def _proposed_files(ctx: ToolContext, args: ProposeChangeArgs, layer: str) -> dict[str, str]:
    files: dict[str, str] = {}

    def add(path: str, content: str, what: str) -> None:
        if path in files:
            raise ToolError(f"{what}: {path} is proposed twice; give each file once")
        if len(content) > _MAX_FILE_CHARS:
            raise ToolError(f"{what}: {path} is over {_MAX_FILE_CHARS:,} characters")
        files[path] = content

    for number, file in enumerate(args.files or ()):
        add(_layer_path(file.path, f"files[{number}].path"), file.content, f"files[{number}]")
    if args.target_file is not None:
        if args.proposed_content is None:
            raise ToolError("targetFile needs proposedContent (the file's whole new content)")
        add(_layer_path(args.target_file, "targetFile"), args.proposed_content, "targetFile")
    elif args.proposed_content is not None:
        raise ToolError("proposedContent needs targetFile (the path it is for)")

    sections: dict[str, list[str]] = {}
    for number, entry in enumerate(args.entries or ()):
        what = f"entries[{number}] ({entry.title!r})"
        path = _layer_path(entry.file, f"entries[{number}].file")
        if not path.startswith("memory/"):
            path = f"memory/{path}"
        text, lines = render_entry(entry)
        budget = ENTRY_LINE_BUDGETS[entry.kind]
        if lines == 0:
            raise ToolError(f"{what} is empty: give its symptom, rootCause, recipe, …")
        if lines > budget:
            raise ToolError(
                f"{what}: a {entry.kind} may take at most {budget} lines, this one takes "
                f"{lines}; shorten it or split it into separate entries"
            )
        if path in files:
            raise ToolError(f"{what}: {path} is also given whole in files/targetFile")
        sections.setdefault(path, []).append(text)
    memory_dir = ctx.intelligence_dir / "memory"
    for path, texts in sections.items():
        current = memory_file(memory_dir, path)
        existing = current.read_text(encoding="utf-8") if current.is_file() else ""
        base = _layer_part(existing, layer)
        files[path] = "\n\n".join([*([base] if base else []), *texts]) + "\n"

    if not files:
        raise ToolError("nothing to propose: give files, entries, or targetFile")
    return files


async def _guard(ctx: ToolContext, args: ProposeChangeArgs) -> None:
    """Run the ``propose_change`` guardrails; a denial is logged, recorded and raised."""
    scripts = ctx.guardrails_dir or CoroPaths.from_home().guardrails_dir
    guardrails = Guardrails(ctx.config.guardrails, scripts)
    call = GuardrailContext.for_job(
        "propose_change",
        "propose_change",
        args.model_dump(mode="json", by_alias=True, exclude_none=True),
        ctx.job,
        phase=ctx.phase.name,
        working_dir=ctx.job_dir,
    )
    decision = await guardrails.check(call)
    if decision.reason is not None:
        await ctx.log(log_line(decision))
    if not decision.allow:
        await ctx.emit(*denial_event(decision, call))
        raise ToolError(f"denied by guardrail {decision.rule_id!r}: {decision.reason}")


async def propose_change(ctx: ToolContext, args: ProposeChangeArgs) -> ToolResult:
    await _guard(ctx, args)
    layer = args.target_layer or "tenant"
    files = _proposed_files(ctx, args, layer)
    job = ctx.job
    lock = _job_locks.setdefault(job.id, asyncio.Lock())
    async with lock:
        for earlier in await ctx.store.list_proposals(ctx.tenant_id):
            if earlier.job_id == job.id and (earlier.target_layer or "tenant") == layer:
                raise ToolError(
                    f"this job already proposed a change to the {layer} layer "
                    f"({earlier.id}, {earlier.title!r}); a job makes exactly one proposal per "
                    "layer, so every change for a layer belongs in that single call"
                )
        proposal_id = new_id("prop")
        directory = ctx.proposals_dir / proposal_id
        staging = ctx.proposals_dir / f".{proposal_id}.tmp"
        for path, content in files.items():
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        staging.rename(directory)
        try:
            await ctx.store.create_proposal(
                Proposal(
                    id=proposal_id,
                    tenant_id=ctx.tenant_id,
                    job_id=job.id,
                    type=args.type,
                    title=args.title,
                    rationale=args.rationale,
                    description=args.description,
                    files=[ProposalFile(path=p, content=c) for p, c in files.items()],
                    target_layer=layer,
                )
            )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
    await ctx.log(
        f"[proposal] {proposal_id} {args.type} → {layer}: {args.title} ({', '.join(files)})"
    )
    return {"proposalId": proposal_id, "path": str(directory), "files": list(files)}


class ListProposalsArgs(ToolArgs):
    limit: int | None = Field(None, ge=1, le=100, description="At most this many (default 20).")
    type: str | None = Field(None, description="Only proposals of this type.")
    status: Literal["pending", "approved", "rejected"] | None = None


async def list_proposals(ctx: ToolContext, args: ListProposalsArgs) -> ToolResult:
    found = [
        p
        for p in await ctx.store.list_proposals(ctx.tenant_id, status=args.status)
        if args.type is None or p.type == args.type
    ]
    found.sort(key=lambda p: p.created_at, reverse=True)
    shown = [
        {
            "id": p.id,
            "type": p.type,
            "title": p.title,
            "status": p.status,
            "targetLayer": p.target_layer or "tenant",
            "jobId": p.job_id,
            "createdAt": p.created_at.isoformat(),
            "files": [f.path for f in p.files],
            "rationale": p.rationale,
        }
        for p in found[: args.limit or 20]
    ]
    return {"proposals": shown, "total": len(found)}


TOOLS: tuple[DomainTool[Any], ...] = (
    DomainTool(
        "list_proposals",
        "Proposals already made to this tenant's intelligence (newest first). Call it before "
        "propose_change so you do not propose something already waiting for review.",
        ListProposalsArgs,
        list_proposals,
    ),
    DomainTool(
        "propose_change",
        "Propose a change to the team's intelligence (memory, skills, agents, workflows, "
        "CLAUDE.md) for a human to review; nothing changes until they approve it. Markdown "
        "files only. Memory lessons go in entries (pitfall ≤ 8 lines, pattern ≤ 10); whole "
        "files in files or targetFile+proposedContent. Exactly one proposal per job and layer "
        "(targetLayer tenant, the default, or repo): put every change for a layer in one call.",
        ProposeChangeArgs,
        propose_change,
    ),
)
