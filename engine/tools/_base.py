"""What every domain tool is made of: an argument model, a handler, and errors a model can read.

A :class:`DomainTool` validates the raw arguments a model sent against its pydantic model and
calls its handler with the :class:`~engine.phase.ToolContext` of the phase. Validation problems
and refusals are raised as :class:`ToolError` with a message that names the tool and the
argument, so that the model can correct its call.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from engine.workflow import DOMAIN_TOOL_PREFIX

if TYPE_CHECKING:
    from engine.phase import ToolContext

__all__ = [
    "DomainTool",
    "ToolArgs",
    "ToolError",
    "ToolResult",
    "new_id",
    "render_result",
]

ToolResult: TypeAlias = str | dict[str, Any] | list[Any]
"""What a handler returns: text, or JSON-serialisable data."""

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_MAX_SHOWN = 60


class ToolError(Exception):
    """A tool refused a call or could not do it; ``message`` is shown to the model as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ToolArgs(BaseModel):
    """Base of the argument models: camelCase on the wire, unknown arguments refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


A = TypeVar("A", bound=ToolArgs)
Handler: TypeAlias = Callable[["ToolContext", A], Awaitable[ToolResult]]


@dataclass(frozen=True)
class DomainTool(Generic[A]):
    """One tool of coro's MCP server (``mcp__coro__<name>``).

    Args:
        name: the short name (``set_work_items``).
        description: what the tool does and when to call it, written for the model.
        args: the argument model; its camelCase aliases are the argument names.
        handler: ``async (ctx, args) -> str | dict | list``; raises :class:`ToolError`.
    """

    name: str
    description: str
    args: type[A]
    handler: Handler[A]
    input_schema: dict[str, Any] = field(init=False, repr=False, compare=False)
    _array_args: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"tool name {self.name!r} must be lowercase snake_case")
        schema = tool_schema(self.args)
        object.__setattr__(self, "input_schema", schema)
        structured = {
            name
            for name, prop in schema.get("properties", {}).items()
            if prop.get("type") in ("array", "object")
        }
        object.__setattr__(self, "_array_args", frozenset(structured))

    @property
    def qualified_name(self) -> str:
        """The name a model sees: ``mcp__coro__<name>``."""
        return DOMAIN_TOOL_PREFIX + self.name

    @property
    def usage(self) -> str:
        """The call shape, e.g. ``update_work_item(name, status?, incrementLoop?)``."""
        required = set(self.input_schema.get("required", ()))
        names = [n if n in required else f"{n}?" for n in self.input_schema.get("properties", {})]
        return f"{self.name}({', '.join(names)})"

    def parse(self, arguments: Mapping[str, Any] | None) -> A:
        """Validate raw arguments.

        A list or object argument sent as a JSON string (some models do that) is decoded first.

        Raises:
            ToolError: naming each wrong, missing or unknown argument, and the call shape.
        """
        raw = dict(arguments or {})
        for key in self._array_args.intersection(raw):
            if isinstance(raw[key], str):
                with contextlib.suppress(ValueError):  # else validation reports the type
                    raw[key] = json.loads(raw[key])
        try:
            return self.args.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(self._describe(error) for error in exc.errors())
            raise ToolError(f"{self.name}: {problems} (usage: {self.usage})") from None

    async def invoke(self, ctx: ToolContext, arguments: Mapping[str, Any] | None) -> ToolResult:
        """Validate ``arguments`` and run the handler.

        Raises:
            ToolError: the arguments are wrong or the handler refused; the message starts with
                the tool's name. Any other exception is a bug and propagates unchanged.
        """
        args = self.parse(arguments)
        try:
            return await self.handler(ctx, args)
        except ToolError as exc:
            raise ToolError(f"{self.name}: {exc.message}") from None

    def _describe(self, error: Mapping[str, Any]) -> str:
        loc = _format_loc(error["loc"])
        kind = error["type"]
        if kind == "missing":
            return f"argument {loc!r} is required"
        if kind == "extra_forbidden":
            known = list(self.input_schema.get("properties", {}))
            match = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
            hint = f" (did you mean {match[0]!r}?)" if match else ""
            return f"unknown argument {loc!r}{hint}"
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"argument {loc!r}: {message} (got {_shown(error.get('input'))})"


def _format_loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def tool_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema as a model should see it.

    ``$ref`` targets are inlined, ``title`` keywords dropped, and an optional ``X | None`` shown
    as plain ``X`` (leaving it out of ``required`` already says it is optional).
    """
    schema = model.model_json_schema(by_alias=True)
    definitions: dict[str, Any] = schema.pop("$defs", {})
    cleaned: dict[str, Any] = _clean(schema, definitions)
    return cleaned


def _clean(node: Any, definitions: Mapping[str, Any]) -> Any:
    if isinstance(node, list):
        return [_clean(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _clean({**target, **rest}, definitions)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title":
            continue
        if key == "properties":
            out[key] = {name: _clean(prop, definitions) for name, prop in value.items()}
        else:
            out[key] = _clean(value, definitions)
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        others = [option for option in options if option != {"type": "null"}]
        if len(others) == 1:
            del out["anyOf"]
            out = {**others[0], **out}
        else:
            out["anyOf"] = others
        if out.get("default", ...) is None:
            del out["default"]
    return out


def render_result(value: ToolResult) -> str:
    """The text of a tool result: strings as they are, data as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def new_id(prefix: str) -> str:
    """An id such as ``art-1712123456789-3f9a``: epoch milliseconds and 4 random hex digits."""
    return f"{prefix}-{time.time_ns() // 1_000_000}-{secrets.token_hex(2)}"
