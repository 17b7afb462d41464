"""Skill: the skills of the job's intelligence overlay, listed or loaded by name.

A skill is a directory ``<overlay>/.claude/skills/<dir>/`` holding a ``SKILL.md`` whose YAML
front matter gives its ``name`` and ``description`` (Claude Code's layout). Without arguments
the tool lists them; with ``skill`` it returns that SKILL.md's instructions and the other files
of the skill, which the model can then Read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import Field

from engine.errors import WorkflowError
from engine.tools._base import ToolError
from engine.tools.builtin._args import BuiltinArgs
from engine.tools.builtin._search import walk_files
from engine.tools.builtin._workspace import Workspace, is_within
from engine.workflow import split_front_matter

__all__ = ["SKILLS_DIR", "SkillArgs", "SkillInfo", "find_skills", "run_skill"]

SKILLS_DIR = os.path.join(".claude", "skills")
"""Where skills live, relative to the overlay."""
SKILL_FILE = "SKILL.md"
_MAX_FILES = 50
_MAX_DESCRIPTION = 300


class SkillArgs(BuiltinArgs):
    skill: str | None = Field(
        default=None,
        description="The name of the skill to load; leave it out to list the available skills.",
    )


@dataclass(frozen=True, slots=True)
class SkillInfo:
    """One skill found in the overlay."""

    name: str
    directory: str
    """The skill directory's name (``name`` defaults to it)."""
    description: str
    path: str
    """The real path of its SKILL.md."""
    body: str
    problem: str | None = None
    """Why its front matter could not be read, if it could not."""


def find_skills(ws: Workspace) -> list[SkillInfo]:
    """Every skill in the overlay whose SKILL.md resolves inside the confinement root."""
    if ws.overlay is None:
        return []
    base = os.path.join(ws.overlay, SKILLS_DIR)
    if not is_within(os.path.realpath(base), ws.root) or not os.path.isdir(base):
        return []
    skills: list[SkillInfo] = []
    for entry in sorted(os.listdir(base)):
        path = os.path.realpath(os.path.join(base, entry, SKILL_FILE))
        if not is_within(path, ws.root) or not os.path.isfile(path):
            continue
        skills.append(_load(ws, entry, path))
    return skills


def _load(ws: Workspace, directory: str, path: str) -> SkillInfo:
    shown = ws.display(path)
    fd = ws.open_regular(path, shown, argument="skill")
    with os.fdopen(fd, "rb") as file:
        text = file.read().decode("utf-8", "replace")
    try:
        meta, body = split_front_matter(text, source=shown)
    except WorkflowError as exc:
        return SkillInfo(directory, directory, "", path, text, problem=exc.message)
    name = meta.get("name")
    description = meta.get("description")
    return SkillInfo(
        name=name.strip() if isinstance(name, str) and name.strip() else directory,
        directory=directory,
        description=" ".join(str(description).split()) if description else "",
        path=path,
        body=body,
    )


def run_skill(ws: Workspace, args: SkillArgs, output_cap: int) -> str:
    """The list of skills, or one skill's instructions and files."""
    skills = find_skills(ws)
    if args.skill is None or not args.skill.strip():
        return _listing(skills)
    wanted = args.skill.strip()
    chosen = next((s for s in skills if wanted in (s.name, s.directory)), None)
    if chosen is None:
        folded = wanted.casefold()
        chosen = next(
            (s for s in skills if folded in (s.name.casefold(), s.directory.casefold())), None
        )
    if chosen is None:
        available = ", ".join(s.name for s in skills) or "none — this job has no skills"
        raise ToolError(
            f"argument 'skill': unknown skill {wanted!r}; available skills: {available}"
        )
    return _loaded(ws, chosen, output_cap)


def _listing(skills: list[SkillInfo]) -> str:
    if not skills:
        return "This job has no skills."
    lines = ["Available skills (load one with Skill and skill=<name>):"]
    for skill in skills:
        description = skill.description or "(no description)"
        if len(description) > _MAX_DESCRIPTION:
            description = description[: _MAX_DESCRIPTION - 1] + "…"
        if skill.problem:
            description = f"(its front matter cannot be read: {skill.problem})"
        lines.append(f"- {skill.name}: {description}")
    return "\n".join(lines)


def _loaded(ws: Workspace, skill: SkillInfo, output_cap: int) -> str:
    directory = os.path.dirname(skill.path)
    header = [f"Skill: {skill.name}"]
    if skill.description:
        header.append(skill.description)
    header.append(f"Base directory: {ws.display(directory)}")
    others = [
        ws.display(path)
        for path in walk_files(ws, directory)
        if os.path.realpath(path) != skill.path
    ]
    footer: list[str] = []
    if others:
        footer.append("Other files in this skill (read them with Read):")
        footer.extend(f"- {path}" for path in others[:_MAX_FILES])
        if len(others) > _MAX_FILES:
            footer.append(f"[and {len(others) - _MAX_FILES} more; list them with Glob]")
    body = skill.body.strip("\n")
    budget = output_cap - sum(len(line) + 1 for line in (*header, *footer)) - 200
    encoded = body.encode("utf-8")
    if len(encoded) > max(budget, 0):
        body = encoded[: max(budget, 0)].decode("utf-8", "ignore")
        body += f"\n[SKILL.md truncated; Read {ws.display(skill.path)} with an offset for the rest]"
    return "\n".join([*header, "", body, "", *footer]).rstrip("\n")
