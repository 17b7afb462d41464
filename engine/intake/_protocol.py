"""The plan-mode output protocol: the tags an assistant turn ends with, read and checked.

Every turn ends with ``<readiness>{"state": …, "openQuestions": […], "note": …}</readiness>``.
A turn may carry ``<findings>…markdown…</findings>``, the investigation written up, and, once
the developer agrees, ``<brief>{…}</brief>``: the job to dispatch. :func:`parse_turn` reads them
out of a reply; :func:`visible_text` is the reply as a person reads it, with the tags taken out
(also while it is still streaming, so a half-written tag never flashes on screen).

Imports only the standard library and pydantic: the TUI uses it while a reply streams.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "LANES",
    "READINESS_STATES",
    "Brief",
    "Readiness",
    "TurnTags",
    "brief_problems",
    "parse_turn",
    "visible_text",
]

READINESS_STATES = ("investigating", "ready", "no-run-needed")

#: Lane names a brief may give instead of a workflow path.
LANES = {
    "standard": "workflows/job/workflow.md",
    "fast": "workflows/job-fast/workflow.md",
    "deep": "workflows/job-deep/workflow.md",
}

_TAGS = ("readiness", "findings", "brief")
_TAG = re.compile(r"<(readiness|findings|brief)>(.*?)</\1>", re.DOTALL)
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Readiness(_Wire):
    """Where the investigation stands after a turn."""

    state: Literal["investigating", "ready", "no-run-needed"]
    open_questions: list[str] = Field(default_factory=list)
    note: str = ""


class Brief(_Wire):
    """The job plan mode proposes: what ``POST /jobs`` gets when it is dispatched."""

    repo: str = Field(min_length=1, description="The repository (its slug on the SCM).")
    description: str = Field(min_length=1, description="What the job must do, for the spec.")
    title: str | None = Field(None, description="A short name for the job.")
    service_name: str | None = Field(None, description="The service, in a monorepo.")
    reviewers: list[str] = Field(default_factory=list)
    workflow_path: str | None = Field(None, description="The workflow (lane) to run.")
    lane: Literal["standard", "fast", "deep"] | None = None
    interactive: bool = False

    @field_validator("repo", "description")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    def workflow(self) -> str:
        """The workflow path: given outright, else the lane's, else the standard job."""
        if self.workflow_path:
            return self.workflow_path
        return LANES[self.lane or "standard"]

    def to_wire(self) -> dict[str, Any]:
        data = self.model_dump(by_alias=True, exclude_none=True)
        data["workflowPath"] = self.workflow()
        return data


@dataclass(slots=True)
class TurnTags:
    """What a reply's tags say; a tag that is there but unreadable gets a problem instead."""

    readiness: Readiness | None = None
    findings: str | None = None
    brief: Brief | None = None
    brief_raw: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)


def parse_turn(text: str) -> TurnTags:
    """Read the tags of a finished reply; the last of each kind counts."""
    tags = TurnTags()
    found = {name: body for name, body in ((m[1], m[2]) for m in _TAG.finditer(text))}
    if "readiness" in found:
        data, problem = _json(found["readiness"], "readiness")
        if problem is None:
            try:
                tags.readiness = Readiness.model_validate(data)
            except ValidationError as exc:
                problem = f"readiness: {_first_error(exc)}"
        if problem is not None:
            tags.problems.append(problem)
    else:
        tags.problems.append("the reply has no <readiness> tag")
    findings = found.get("findings", "").strip()
    tags.findings = findings or None
    if "brief" in found:
        data, problem = _json(found["brief"], "brief")
        if problem is None and isinstance(data, dict):
            tags.brief_raw = data
            errors = brief_problems(data)
            if errors:
                tags.problems.extend(errors)
            else:
                tags.brief = Brief.model_validate(data)
        elif problem is not None:
            tags.problems.append(problem)
    return tags


def brief_problems(data: Any) -> list[str]:
    """What is wrong with a brief, one line per field (empty: it is valid)."""
    if not isinstance(data, dict):
        return ["brief: must be a JSON object"]
    try:
        Brief.model_validate(data)
    except ValidationError as exc:
        return [f"brief.{_loc(e['loc'])}: {_message(e)}" for e in exc.errors(include_url=False)]
    return []


def visible_text(text: str) -> str:
    """The reply without its tags; a tag still being written is hidden from its start."""
    out = _TAG.sub("", text)
    cut = _open_tag_start(out)
    if cut is not None:
        out = out[:cut]
    return re.sub(r"\n{3,}", "\n\n", out).strip()


def _open_tag_start(text: str) -> int | None:
    """Where an unfinished tag begins (``<brief>{"re`` or just ``<rea``), if one does."""
    for name in _TAGS:
        at = text.rfind(f"<{name}>")
        if at != -1 and f"</{name}>" not in text[at:]:
            return at
    last = text.rfind("<")
    if last != -1 and ">" not in text[last:]:
        partial = text[last + 1 :]
        if partial and any(name.startswith(partial) for name in _TAGS):
            return last
        if not partial:
            return last
    return None


def _json(body: str, tag: str) -> tuple[Any, str | None]:
    fenced = _FENCE.match(body)
    raw = fenced[1] if fenced else body
    try:
        return json.loads(raw), None
    except json.JSONDecodeError as exc:
        return None, f"{tag}: not valid JSON ({exc.msg} at line {exc.lineno})"


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(object)"


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    return str(error["msg"]).removeprefix("Value error, ")


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    return f"{_loc(error['loc'])}: {_message(error)}"
