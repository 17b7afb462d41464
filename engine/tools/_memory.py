"""``read_memory``: the job's memory files, read on demand from its intelligence overlay.

Memory is not in the system prompt; agents load it with this tool. Without arguments it returns
``memory/MEMORY.md``, every memory file MEMORY.md links to, and the tenant's pending proposals
(so an agent does not propose what is already waiting for review).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from pydantic import Field

from engine.tools._base import DomainTool, ToolArgs, ToolError, ToolResult
from state import Proposal

if TYPE_CHECKING:
    from engine.phase import ToolContext

__all__ = ["MEMORY_INDEX", "TOOLS", "memory_file"]

MEMORY_INDEX = "MEMORY.md"
_MAX_CHARS = 100_000
_MAX_LISTED = 50
# [text](target) or [text](<target> "title"); the target is group 1.
_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def memory_file(memory_dir: Path, name: str) -> Path:
    """The file ``name`` (``pitfalls.md``, ``snippets/<id>.md``) under ``memory_dir``.

    ``memory/pitfalls.md`` is accepted for ``pitfalls.md``. The file need not exist.

    Raises:
        ToolError: ``name`` is absolute, has a ``..`` part, or (through a symlink) leaves
            ``memory_dir``.
    """
    text = name.strip()
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if (
        not parts
        or PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).is_absolute()
        or ".." in parts
    ):
        raise ToolError(
            f"file {name!r} must be a path inside memory/ such as 'pitfalls.md' or "
            "'snippets/<id>.md' (no absolute paths, no '..')"
        )
    root = memory_dir.resolve()
    relative = PurePosixPath(*parts)
    if relative.parts[0] == "memory" and len(relative.parts) > 1 and not (root / relative).exists():
        relative = PurePosixPath(*relative.parts[1:])
    try:
        path = (root / relative).resolve()
        inside = path.is_relative_to(root)
    except (OSError, ValueError):
        inside = False
    if not inside:
        raise ToolError(f"file {name!r} leaves the memory directory")
    return path


def _read(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    if len(text) > _MAX_CHARS:
        return text[:_MAX_CHARS] + f"\n… (truncated: the file has {len(text):,} characters)"
    return text


def _available(memory_dir: Path) -> str:
    if not memory_dir.is_dir():
        return "the overlay has no memory/ directory"
    names = sorted(p.relative_to(memory_dir).as_posix() for p in memory_dir.rglob("*.md"))
    if not names:
        return "memory/ holds no .md files"
    more = f", … ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else ""
    return "memory files: " + ", ".join(names[:_MAX_LISTED]) + more


def _linked(index: str) -> list[str]:
    """The relative ``.md`` targets of the links in ``index``, in order, once each."""
    seen: dict[str, None] = {}
    for match in _LINK.finditer(index):
        target = match[1].split("#", 1)[0]
        if target.endswith(".md") and "://" not in target and not target.startswith("mailto:"):
            seen.setdefault(target.removeprefix("./"), None)
    return list(seen)


def _proposal_line(proposal: Proposal) -> str:
    files = ", ".join(f.path for f in proposal.files) or "no files"
    layer = proposal.target_layer or "tenant"
    return (
        f"- {proposal.id} [{proposal.type} → {layer}] {proposal.title!r} "
        f"(job {proposal.job_id}; {files})"
    )


class ReadMemoryArgs(ToolArgs):
    file: str | None = Field(
        None,
        description="One file under memory/ (e.g. 'pitfalls.md' or 'snippets/<id>.md'). "
        "Leave it out for MEMORY.md, the files it links to, and pending proposals.",
    )


async def read_memory(ctx: ToolContext, args: ReadMemoryArgs) -> ToolResult:
    memory_dir = ctx.intelligence_dir / "memory"
    if args.file is not None:
        path = memory_file(memory_dir, args.file)
        if not path.is_file():
            raise ToolError(f"memory file {args.file!r} does not exist; {_available(memory_dir)}")
        return _read(path)

    sections: list[str] = []
    index = memory_dir / MEMORY_INDEX
    if index.is_file():
        text = _read(index)
        sections.append(f"# memory/{MEMORY_INDEX}\n\n{text}")
        for target in _linked(text):
            try:
                path = memory_file(memory_dir, target)
            except ToolError:
                continue  # a link out of memory/ is not memory
            body = _read(path) if path.is_file() else "(linked from MEMORY.md, but missing)"
            relative = path.relative_to(memory_dir.resolve()).as_posix()
            sections.append(f"# memory/{relative}\n\n{body}")
    else:
        sections.append(
            f"# memory/{MEMORY_INDEX}\n\n(no MEMORY.md in this job's overlay; "
            f"{_available(memory_dir)})"
        )

    pending = await ctx.store.list_proposals(ctx.tenant_id, status="pending")
    pending.sort(key=lambda p: p.created_at, reverse=True)
    lines = [_proposal_line(p) for p in pending] or ["(none)"]
    sections.append(f"# Pending proposals (tenant {ctx.tenant_id})\n\n" + "\n".join(lines))
    return "\n\n".join(section.rstrip("\n") for section in sections) + "\n"


TOOLS: tuple[DomainTool[Any], ...] = (
    DomainTool(
        "read_memory",
        "Read the team's memory (pitfalls, patterns, conventions learned on earlier jobs). "
        "Call it with no arguments at the start of planning or coding; pass file to read one "
        "memory file, such as a snippet MEMORY.md refers to.",
        ReadMemoryArgs,
        read_memory,
    ),
)
