"""Argument models of the built-in tools, and errors that name the argument at fault.

The argument names are Claude Code's (``file_path``, ``old_string``, ``-i``), so agent markdown
written for Claude Code works unchanged. Unknown arguments are refused with a suggestion.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from engine.tools._base import ToolError, tool_schema

__all__ = ["BuiltinArgs", "parse_args", "usage"]

_MAX_SHOWN = 60


class BuiltinArgs(BaseModel):
    """Base of the built-in tools' argument models: names as sent, unknown ones refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


A = TypeVar("A", bound=BuiltinArgs)


def usage(tool: str, model: type[BaseModel]) -> str:
    """The call shape, e.g. ``Read(file_path, offset?, limit?)``."""
    schema = tool_schema(model)
    required = set(schema.get("required", ()))
    names = [n if n in required else f"{n}?" for n in schema.get("properties", {})]
    return f"{tool}({', '.join(names)})"


def parse_args(tool: str, model: type[A], arguments: Mapping[str, Any] | None) -> A:
    """Validate raw arguments against ``model``.

    Raises:
        ToolError: naming each wrong, missing or unknown argument, and the call shape.
    """
    try:
        return model.model_validate(dict(arguments or {}))
    except ValidationError as exc:
        known = list(tool_schema(model).get("properties", {}))
        problems = "; ".join(_describe(error, known) for error in exc.errors())
        raise ToolError(f"{problems} (usage: {usage(tool, model)})") from None


def _describe(error: Mapping[str, Any], known: list[str]) -> str:
    name = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "missing":
        return f"argument {name!r} is required"
    if kind == "extra_forbidden":
        match = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
        hint = f" (did you mean {match[0]!r}?)" if match else ""
        return f"unknown argument {name!r}{hint}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"argument {name!r}: {message} (got {_shown(error.get('input'))})"


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"
