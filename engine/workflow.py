"""Workflow markdown: YAML front matter that declares the phases, and a body every agent reads.

:func:`parse_workflow` turns one into a frozen :class:`Workflow`. Keys are snake_case as in the
original's files (camelCase spellings are accepted too). Every problem raises
:class:`~engine.errors.WorkflowError` with a message naming the file, the phase and the field,
so that an author can fix the file without reading this module.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeAlias, TypedDict, TypeVar, Unpack, cast, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.errors import WorkflowError

__all__ = [
    "BUILTIN_TOOL_NAMES",
    "DEFAULT_TIER",
    "DOMAIN_TOOL_PREFIX",
    "TIERS",
    "KnownTools",
    "PhaseConfig",
    "SubagentConfig",
    "Workflow",
    "WorkflowKind",
    "WorkflowOverride",
    "load_workflow",
    "parse_workflow",
    "split_front_matter",
]

BUILTIN_TOOL_NAMES = frozenset({"Read", "Write", "Edit", "Bash", "Glob", "Grep", "Skill", "Task"})
"""Tools the executor provides itself; always valid in a ``tools:`` list."""

DOMAIN_TOOL_PREFIX = "mcp__coro__"
"""How agents see coro's own MCP tools: ``mcp__coro__<name>``."""

TIERS: tuple[str, ...] = ("mini", "planning", "coding")
DEFAULT_TIER = "planning"
DEFAULT_INITIAL_STATUS = "queued"

WorkflowKind: TypeAlias = Literal["job", "campaign", "internal"]
KnownTools: TypeAlias = Callable[[str], bool] | Collection[str] | None
"""Which tool names exist: a predicate, a set of full names, or ``None`` to skip the check."""

_KINDS: tuple[str, ...] = get_args(WorkflowKind)
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_MCP_TOOL = re.compile(r"mcp__([A-Za-z0-9_-]+?)__(.+)")
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _ModelChoice(_Frozen):
    """A ``tier`` (newer files) or a ``model`` (older files); planning tier when neither is set."""

    tier: str | None = None
    model: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_tier(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("tier") is None and data.get("model") is None:
            return {**data, "tier": DEFAULT_TIER}
        return data


class SubagentConfig(_ModelChoice):
    """A subagent the phase's agent may delegate to (e.g. ``code-reviewer`` during coding)."""

    name: str
    agent: str
    provider: str | None = None
    tools: tuple[str, ...] | None = None


class PhaseConfig(_ModelChoice):
    """One phase of a workflow, as declared in its front matter.

    ``agent`` is ``None`` for a runner-managed phase (e.g. ``coordinating``). ``status`` is the
    job's status while in the phase and defaults to the phase name. ``tools`` is ``None`` for the
    default tool set; a list replaces the defaults entirely.
    """

    name: str
    agent: str | None = None
    provider: str | None = None
    status: str = ""
    interactive_checkpoint: bool = False
    tools: tuple[str, ...] | None = None
    subagents: tuple[SubagentConfig, ...] = ()
    obligations: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _default_status(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("status"):
            return {**data, "status": data.get("name")}
        return data


class WorkflowOverride(_Frozen):
    """Where a job starts when it comes from one trigger source (e.g. ``jira``)."""

    initial_phase: str | None = None
    initial_status: str | None = None


class Workflow(_Frozen):
    """A parsed workflow: its phases in declared order, start rules and markdown body."""

    path: str
    display_name: str
    description: str = ""
    kind: WorkflowKind = "job"
    initial_phase: str
    initial_status: str = DEFAULT_INITIAL_STATUS
    phases: tuple[PhaseConfig, ...]
    overrides: dict[str, WorkflowOverride] = Field(default_factory=dict)
    body: str = ""

    @property
    def phase_names(self) -> tuple[str, ...]:
        """The phase names in declared order."""
        return tuple(phase.name for phase in self.phases)

    def has_phase(self, name: str) -> bool:
        return any(phase.name == name for phase in self.phases)

    def phase(self, name: str) -> PhaseConfig:
        """The phase called ``name``; a :class:`WorkflowError` naming this workflow if none."""
        for phase in self.phases:
            if phase.name == name:
                return phase
        names = self.phase_names
        raise WorkflowError(
            f"{self.path}: no phase named {name!r} (phases: {', '.join(names)})"
            f"{_did_you_mean(name, names)}"
        )

    def next_phase(self, name: str) -> str | None:
        """The phase declared after ``name``, or ``None`` when ``name`` is the last one."""
        self.phase(name)
        names = self.phase_names
        index = names.index(name) + 1
        return names[index] if index < len(names) else None

    def start_for(self, trigger_source: str | None) -> tuple[str, str]:
        """The ``(phase, status)`` a new job starts in, after the trigger source's override."""
        override = self.overrides.get(trigger_source) if trigger_source else None
        if override is None:
            return self.initial_phase, self.initial_status
        return (
            override.initial_phase or self.initial_phase,
            override.initial_status or self.initial_status,
        )


def split_front_matter(text: str, *, source: str | None = None) -> tuple[dict[str, Any], str]:
    """Split markdown into its YAML front matter and its body.

    A byte-order mark is dropped and line endings become ``\\n``. Text that does not start with
    a ``---`` line has no front matter: the result is ``({}, text)``.

    Args:
        text: the whole file.
        source: the file's name, used as the prefix of error messages.

    Raises:
        WorkflowError: the front matter is not closed, is not valid YAML, or is not a mapping.
    """
    data, body = _split(text, f"{source}: " if source else "")
    return (data or {}), body


def _split(text: str, prefix: str) -> tuple[dict[str, Any] | None, str]:
    """Like :func:`split_front_matter`, but ``None`` when there is no front matter at all."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        return None, text
    closing = next((i for i in range(1, len(lines)) if lines[i].rstrip() == "---"), None)
    if closing is None:
        raise WorkflowError(
            f"{prefix}front matter opened with '---' on line 1 is never closed: "
            "add a '---' line after the last YAML line"
        )
    try:
        data = yaml.safe_load("\n".join(lines[1:closing]))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # The YAML starts on the file's line 2, after the opening '---'.
        at = f"line {mark.line + 2}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise WorkflowError(
            f"{prefix}{at}invalid YAML in front matter: {problem} "
            "(check the indentation and quoting)"
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise WorkflowError(
            f"{prefix}front matter must be a YAML mapping of 'key: value' lines, "
            f"got {_describe(data)}"
        )
    return data, "\n".join(lines[closing + 1 :])


_TOP_KEYS = tuple(name for name in Workflow.model_fields if name not in ("path", "body"))
_PHASE_KEYS = tuple(PhaseConfig.model_fields)
_SUBAGENT_KEYS = tuple(SubagentConfig.model_fields)
_OVERRIDE_KEYS = tuple(WorkflowOverride.model_fields)


def parse_workflow(
    text: str,
    *,
    path: str,
    known_tools: KnownTools = None,
    known_servers: Collection[str] = (),
    tier_aliases: Collection[str] = (),
) -> Workflow:
    """Parse a workflow file's text.

    Args:
        text: the whole file (front matter and body).
        path: the workflow's path as jobs refer to it (``workflows/job/workflow.md``); it
            prefixes every error message.
        known_tools: the registered tool names (full names such as ``mcp__coro__log``) or a
            predicate over them; ``None`` skips the check. Built-in tools are always known.
        known_servers: external MCP servers; ``mcp__<server>__<tool>`` and
            ``mcp__<server>__*`` are accepted for these.
        tier_aliases: model alias keys from the configuration, accepted in ``tier:``.

    Raises:
        WorkflowError: the file is malformed or names a phase or tool that does not exist.
    """
    raw, body = _split(text, f"{path}: ")
    if raw is None:
        raise _error(
            path,
            None,
            "no front matter: a workflow starts with a '---' line, then YAML declaring its "
            "phases, then another '---' line",
        )
    data = _fields(raw, _TOP_KEYS, path)
    if not data.get("phases"):
        raise _error(path, "phases", "is required: declare at least one phase ('- name: …')")
    reader = _Reader(known_tools, known_servers, tier_aliases)
    phases = _unique(data["phases"], "phase", path, reader.phase)
    names = [phase.name for phase in phases]
    overrides: dict[str, WorkflowOverride] = {}
    for source, entry in _mapping(data.get("overrides"), "overrides", path).items():
        if not isinstance(source, str):
            raise _error(path, "overrides", f"a trigger source must be a name, got {source!r}")
        scope = f"{path}: override {source!r}"
        fields = _fields(entry, _OVERRIDE_KEYS, scope)
        overrides[source] = WorkflowOverride(
            initial_phase=_one_of(fields, "initial_phase", names, scope),
            initial_status=_slug(fields, "initial_status", scope),
        )
    return Workflow(
        path=path,
        display_name=_text(data, "display_name", path) or _default_name(path),
        description=_text(data, "description", path) or "",
        kind=cast(WorkflowKind, _one_of(data, "kind", _KINDS, path) or "job"),
        initial_phase=_one_of(data, "initial_phase", names, path) or names[0],
        initial_status=_slug(data, "initial_status", path) or DEFAULT_INITIAL_STATUS,
        phases=phases,
        overrides=overrides,
        body=body.lstrip("\n"),
    )


class _Registry(TypedDict, total=False):
    known_tools: KnownTools
    known_servers: Collection[str]
    tier_aliases: Collection[str]


def load_workflow(
    file: Path, *, path: str | None = None, **registry: Unpack[_Registry]
) -> Workflow:
    """Read and parse a workflow file (UTF-8); ``path`` defaults to the file's own path.

    The keyword arguments are those of :func:`parse_workflow`.
    """
    name = file.as_posix() if path is None else path
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.reason if isinstance(exc, UnicodeDecodeError) else exc.strerror or exc
        where = name if path is None else f"{path} ({file})"
        raise WorkflowError(f"{where}: cannot read the workflow file: {reason}") from exc
    return parse_workflow(text, path=name, **registry)


def _error(where: str, field: str | None, problem: str) -> WorkflowError:
    """An error located as ``path: phase 'coding': field 'tier': problem``."""
    return WorkflowError(f"{where}: field {field!r}: {problem}" if field else f"{where}: {problem}")


class _Reader:
    """Reads phases and subagents, checking tiers and tools against the caller's registry."""

    def __init__(
        self, known_tools: KnownTools, servers: Collection[str], aliases: Collection[str]
    ) -> None:
        self.known_tools = known_tools
        self.servers = frozenset(servers)
        self.aliases = sorted(aliases)

    def phase(self, entry: object, parent: str, number: int) -> PhaseConfig:
        data, name, where = _named(entry, _PHASE_KEYS, parent, "phase", number)
        if "agent" not in data:
            raise _error(
                where,
                "agent",
                "is required: give the agent's path (e.g. agents/coder.md), "
                "or null for a phase the runner manages itself",
            )
        return PhaseConfig(
            name=name,
            agent=_agent(data, where),
            provider=_text(data, "provider", where),
            status=_slug(data, "status", where) or name,
            interactive_checkpoint=_flag(data, "interactive_checkpoint", where),
            tools=self.tools(data, where),
            subagents=_unique(data.get("subagents", []), "subagent", where, self.subagent),
            obligations=tuple(_strings(data, "obligations", where) or ()),
            **self.tier_or_model(data, where),
        )

    def subagent(self, entry: object, parent: str, number: int) -> SubagentConfig:
        data, name, where = _named(entry, _SUBAGENT_KEYS, parent, "subagent", number)
        agent = _agent(data, where)
        if agent is None:
            raise _error(where, "agent", "is required: give the subagent's agents/<name>.md path")
        return SubagentConfig(
            name=name,
            agent=agent,
            provider=_text(data, "provider", where),
            tools=self.tools(data, where),
            **self.tier_or_model(data, where),
        )

    def tier_or_model(self, data: Mapping[str, Any], where: str) -> dict[str, str | None]:
        tier, model = _text(data, "tier", where), _text(data, "model", where)
        if tier is not None and model is not None:
            raise _error(
                where,
                None,
                "fields 'tier' and 'model' are both set; keep one: 'tier' for "
                f"{', '.join(TIERS)}, or 'model' for a model alias or a concrete model id",
            )
        if tier is not None and tier not in TIERS and tier not in self.aliases:
            aliases = f" or an alias ({', '.join(self.aliases)})" if self.aliases else ""
            hint = _did_you_mean(tier, [*TIERS, *self.aliases])
            raise _error(
                where, "tier", f"expected one of {', '.join(TIERS)}{aliases}, got {tier!r}{hint}"
            )
        return {"tier": tier, "model": model}

    def tools(self, data: Mapping[str, Any], where: str) -> tuple[str, ...] | None:
        names = _strings(data, "tools", where)
        if names is None:
            return None
        for index, name in enumerate(names):
            problem = f"{name!r} is listed twice" if name in names[:index] else self.unknown(name)
            if problem:
                raise _error(where, "tools", problem)
        return tuple(names)

    def knows(self, name: str) -> bool:
        known = self.known_tools
        if known is None or name in BUILTIN_TOOL_NAMES:
            return True
        if known(name) if callable(known) else name in known:
            return True
        match = _MCP_TOOL.fullmatch(name)
        return match is not None and match[1] != "coro" and match[1] in self.servers

    def unknown(self, name: str) -> str | None:
        """Why ``name`` is not a usable tool, or ``None`` when it is."""
        if self.knows(name):
            return None
        match = _MCP_TOOL.fullmatch(name)
        if match and match[1] == "coro" and match[2] == "*":
            return f"{name!r}: list coro's tools by name; wildcards are for external MCP servers"
        if match and match[1] != "coro":
            servers = ", ".join(sorted(self.servers)) or "none"
            return (
                f"unknown tool {name!r}: MCP server {match[1]!r} is not configured "
                f"(configured servers: {servers})"
            )
        if not name.startswith("mcp__") and self.knows(DOMAIN_TOOL_PREFIX + name):
            return f"unknown tool {name!r} (did you mean {DOMAIN_TOOL_PREFIX + name!r}?)"
        known = self.known_tools
        candidates = {*BUILTIN_TOOL_NAMES, *(() if known is None or callable(known) else known)}
        return f"unknown tool {name!r}{_did_you_mean(name, candidates)}"


_Item = TypeVar("_Item", PhaseConfig, SubagentConfig)


def _unique(
    value: object, noun: str, where: str, read: Callable[[object, str, int], _Item]
) -> tuple[_Item, ...]:
    """Read a list of named entries (phases, subagents) whose names must be unique."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise _error(where, f"{noun}s", f"expected a list of {noun}s, got {_describe(value)}")
    first: dict[str, int] = {}
    items: list[_Item] = []
    for number, entry in enumerate(value, start=1):
        item = read(entry, where, number)
        if item.name in first:
            raise _error(
                where,
                f"{noun}s",
                f"{noun} {item.name!r} is declared twice (#{first[item.name]} and #{number}); "
                f"{noun} names must be unique",
            )
        first[item.name] = number
        items.append(item)
    return tuple(items)


def _named(
    entry: object, allowed: Sequence[str], parent: str, noun: str, number: int
) -> tuple[dict[str, Any], str, str]:
    """An entry's fields, its name, and a scope naming it (``phase 'coding'``)."""
    label = f"{noun} #{number}"
    if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"].strip():
        label = f"{noun} {entry['name'].strip()!r}"
    where = f"{parent}: {label}"
    data = _fields(entry, allowed, where)
    name = _slug(data, "name", where)
    if name is None:
        raise _error(where, "name", f"is required: every {noun} needs a name")
    return data, name, where


def _fields(raw: object, allowed: Sequence[str], where: str) -> dict[str, Any]:
    """The mapping with snake_case keys; an unknown key is an error with a suggestion."""
    if not isinstance(raw, dict):
        raise _error(where, None, f"expected a mapping of 'key: value' lines, got {_describe(raw)}")
    fields: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise _error(where, None, f"field names must be text, got {_describe(key)}")
        snake = _CAMEL_HUMP.sub(r"_\1", key).lower()
        name = snake if key[:1].islower() else key
        if name not in allowed:
            hint = _did_you_mean(snake, allowed) or f"; known fields: {', '.join(allowed)}"
            raise _error(where, None, f"unknown field {key!r}{hint}")
        if name in fields:
            raise _error(where, name, f"is given twice (as {spelled[name]!r} and {key!r})")
        fields[name], spelled[name] = value, key
    return fields


def _mapping(value: object, key: str, where: str) -> dict[Any, Any]:
    if value is not None and not isinstance(value, dict):
        raise _error(
            where, key, f"expected a mapping of 'key: value' lines, got {_describe(value)}"
        )
    return value or {}


def _text(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _error(where, key, f"expected text, got {_describe(value)}")
    if not value.strip():
        raise _error(where, key, "is empty; remove the line or give a value")
    return value.strip()


def _slug(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = _text(data, key, where)
    if value is not None and not _SLUG.fullmatch(value):
        raise _error(
            where, key, f"expected a slug (lowercase letters, digits and hyphens), got {value!r}"
        )
    return value


def _one_of(data: Mapping[str, Any], key: str, options: Sequence[str], where: str) -> str | None:
    value = _text(data, key, where)
    if value is not None and value not in options:
        hint = _did_you_mean(value, options)
        raise _error(where, key, f"expected one of {', '.join(options)}, got {value!r}{hint}")
    return value


def _agent(data: Mapping[str, Any], where: str) -> str | None:
    agent = _text(data, "agent", where)
    if agent is not None and (
        agent.startswith("/")
        or "\\" in agent
        or ".." in agent.split("/")
        or not agent.endswith(".md")
    ):
        raise _error(
            where,
            "agent",
            f"expected a relative path to a markdown file (agents/<name>.md), got {agent!r}",
        )
    return agent


def _flag(data: Mapping[str, Any], key: str, where: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise _error(where, key, f"expected true or false, got {_describe(value)}")
    return value


def _strings(data: Mapping[str, Any], key: str, where: str) -> list[str] | None:
    values = data.get(key)
    if values is None:
        return None
    if not isinstance(values, list):
        raise _error(where, key, f"expected a list, got {_describe(values)}")
    for number, value in enumerate(values, start=1):
        if not isinstance(value, str) or not value.strip():
            raise _error(where, key, f"entry #{number}: expected text, got {_describe(value)}")
    return [value.strip() for value in values]


def _describe(value: object) -> str:
    """A value as the author wrote it in YAML: ``'huge'``, ``3``, ``true``, ``null``, a list."""
    if isinstance(value, list | dict):
        return "a list" if isinstance(value, list) else "a mapping"
    return repr(value) if isinstance(value, str) else yaml.safe_dump(value).split("\n")[0]


def _default_name(path: str) -> str:
    """``workflows/job/workflow.md`` is called ``job``; ``lanes/fast.md`` is called ``fast``."""
    file = PurePosixPath(path)
    return file.parent.name if file.stem == "workflow" and file.parent.name else file.stem


def _did_you_mean(word: str, candidates: Collection[str]) -> str:
    match = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""
