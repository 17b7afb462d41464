"""The YAML script a scripted model endpoint answers from, and the choice of one answer.

A script lists, per workflow phase (and per subagent, and for plan-mode chat), the steps a model
would take: text, tool calls, or cases that look at the last tool results. :func:`load_script`
and :meth:`ModelScript.from_yaml` read one and raise :class:`ScriptError` with a message naming
the file and the field (``script.yaml: phases.code[1].when[0].if_result_matches: ...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import CoroError

__all__ = [
    "Answer",
    "FaultKind",
    "FaultSpec",
    "ModelScript",
    "ScriptCase",
    "ScriptError",
    "ScriptStep",
    "ScriptToolCall",
    "load_script",
]

FaultKind = Literal[
    "rate_limit",
    "overloaded",
    "server_error",
    "auth",
    "permission",
    "billing",
    "stall",
    "drop",
    "stream_error",
]

_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ScriptError(CoroError):
    """A model script cannot be read, parsed or validated; the message names file and field."""

    title = "Invalid model script"


@dataclass(frozen=True)
class Answer:
    """What the scripted model says in one turn: optional text, then tool calls."""

    text: str | None
    tool_calls: tuple[ScriptToolCall, ...] = ()

    @property
    def stop_reason(self) -> str:
        return "tool_use" if self.tool_calls else "end_turn"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScriptToolCall(_Strict):
    """One ``tool_use`` block the model emits."""

    name: str
    input: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _TOOL_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a tool name: use 1-64 of A-Z a-z 0-9 _ -")
        return name


class _Says(_Strict):
    text: str | None = None
    tool_calls: tuple[ScriptToolCall, ...] = ()

    def says_something(self) -> bool:
        return self.text is not None or bool(self.tool_calls)

    def answer(self) -> Answer:
        return Answer(self.text, self.tool_calls)


class ScriptCase(_Says):
    """One case of a step's ``when``: taken when its condition holds (no condition: always)."""

    if_result_contains: str | None = None
    if_result_matches: str | None = None

    @field_validator("if_result_matches")
    @classmethod
    def _valid_regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern, re.MULTILINE)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from exc
        return pattern

    @model_validator(mode="after")
    def _complete(self) -> ScriptCase:
        if self.if_result_contains is not None and self.if_result_matches is not None:
            raise ValueError("set one of if_result_contains and if_result_matches, not both")
        if not self.says_something():
            raise ValueError("a case needs text or tool_calls")
        return self

    def holds(self, result_text: str) -> bool:
        if self.if_result_contains is not None:
            return self.if_result_contains in result_text
        if self.if_result_matches is not None:
            return re.search(self.if_result_matches, result_text, re.MULTILINE) is not None
        return True


class ScriptStep(_Says):
    """One model turn: text and/or tool calls, or cases chosen by the last tool results.

    With ``when``, the first case whose condition holds answers; when none does, the step's own
    ``text``/``tool_calls`` answer if it has any, else the script's fallback.
    """

    when: tuple[ScriptCase, ...] = ()

    @model_validator(mode="after")
    def _complete(self) -> ScriptStep:
        if not self.says_something() and not self.when:
            raise ValueError("a step needs text, tool_calls or when")
        return self

    def choose(self, result_text: str) -> Answer | None:
        """The answer for a request whose last tool results read ``result_text``, if any."""
        for case in self.when:
            if case.holds(result_text):
                return case.answer()
        return self.answer() if self.says_something() else None


class FaultSpec(_Strict):
    """A failure to inject instead of (or in the middle of) an answer."""

    kind: FaultKind
    phase: str | None = None
    step: int | None = Field(default=None, ge=0)
    subagent: str | None = None
    retry_after: float | None = Field(default=None, ge=0)
    times: int = 1
    stall_seconds: float = Field(default=30.0, gt=0)
    after_events: int = Field(default=3, ge=0)
    message: str | None = None

    @field_validator("times")
    @classmethod
    def _valid_times(cls, times: int) -> int:
        if times < 1 and times != -1:
            raise ValueError("must be at least 1, or -1 for every matching request")
        return times

    @model_validator(mode="after")
    def _fields_fit_the_kind(self) -> FaultSpec:
        only = {
            "retry_after": ("rate_limit", "overloaded"),
            "stall_seconds": ("stall",),
            "after_events": ("drop",),
        }
        for field, kinds in only.items():
            if field in self.model_fields_set and self.kind not in kinds:
                raise ValueError(f"{field} applies to kind {' and '.join(kinds)} only")
        return self

    def matches(self, phase: str | None, subagent: str | None, step: int) -> bool:
        return (
            self.phase in (None, "*", phase)
            and self.subagent in (None, "*", subagent)
            and self.step in (None, step)
        )


class ModelScript(_Strict):
    """A whole script: see ``docs/model-server.md`` for the format."""

    model: str | None = None
    delay_ms: int = Field(default=0, ge=0)
    chunk_chars: int = Field(default=40, ge=1)
    chunk_delay_ms: float = Field(default=0, ge=0)
    phases: dict[str, tuple[ScriptStep, ...]] = Field(default_factory=dict)
    subagents: dict[str, tuple[ScriptStep, ...]] = Field(default_factory=dict)
    chat: tuple[ScriptStep, ...] = ()
    chat_turns: tuple[tuple[ScriptStep, ...], ...] = ()
    fallback: ScriptStep | None = None
    faults: tuple[FaultSpec, ...] = ()

    @model_validator(mode="after")
    def _one_chat_form(self) -> ModelScript:
        if self.chat and self.chat_turns:
            raise ValueError("set one of chat and chat_turns, not both")
        return self

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<inline>") -> ModelScript:
        """Parse and validate a script; :class:`ScriptError` names ``source`` and the field."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ScriptError(f"{source}: not valid YAML: {exc}") from exc
        if data is None:
            raise ScriptError(f"{source}: the script is empty; it needs at least 'phases'")
        if not isinstance(data, dict):
            raise ScriptError(f"{source}: the script must be a mapping, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ScriptError(_describe(exc, source)) from exc


def load_script(path: Path | str) -> ModelScript:
    """Read and validate a script file (UTF-8)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.reason if isinstance(exc, UnicodeDecodeError) else exc.strerror or exc
        raise ScriptError(f"{file}: cannot read the model script: {reason}") from exc
    return ModelScript.from_yaml(text, source=str(file))


def _describe(exc: ValidationError, source: str) -> str:
    """One line per problem: ``source: phases.code[0].tool_calls[1].name: problem``."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        if error["type"] == "extra_forbidden":
            key = loc.pop()
            where = _path(loc) or "the top level"
            lines.append(f"{source}: {where}: unknown key {key!r}")
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{source}: {_path(loc) or 'the top level'}: {message}")
    return "\n".join(lines)


def _path(loc: list[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out
