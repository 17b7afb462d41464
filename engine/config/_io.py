"""Reading, validating and writing ``config.json``, with errors a user can act on.

Loading never writes: a file that does not parse or validate raises :class:`ConfigError` naming
the file, the line and column (bad JSON) or the field in the file's own camelCase spelling,
what was given and what was expected (invalid values). The file is left exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from engine._fs import atomic_write_text
from engine.config._base import JsonPath, format_path, is_secret_key
from engine.config._models import LocalConfig
from engine.errors import ConfigError

__all__ = [
    "ConfigFingerprint",
    "ConfigIssue",
    "ConfigValidationError",
    "config_fingerprint",
    "load_config",
    "parse_config",
    "save_config",
]

_MAX_ISSUES = 12
_MAX_GIVEN = 60
# Discriminator name → the tags it accepts, for "which kind is this entry?" messages.
_TAGS = {
    "type": "'stdio', 'http' or 'sse'",
    "kind": "'none', 'localDir', 'gitRemote' or 'cloudBlob'",
}

# pydantic error type → what the user should have written, in JSON words.
_EXPECTED = {
    "model_type": "an object",
    "model_attributes_type": "an object",
    "dict_type": "an object",
    "list_type": "a list",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
}


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration: where (camelCase JSON path) and what."""

    path: str
    message: str


class ConfigValidationError(ConfigError):
    """The configuration parsed as JSON but does not fit the schema.

    Attributes:
        issues: every problem found, for an API answer that names the fields.
    """

    def __init__(self, message: str, issues: tuple[ConfigIssue, ...]) -> None:
        super().__init__(message)
        self.issues = issues


@dataclass(frozen=True, slots=True)
class ConfigFingerprint:
    """What a file watcher compares: cheap stat fields plus the content hash."""

    mtime_ns: int
    size: int
    sha256: str

    def same_content(self, other: ConfigFingerprint | None) -> bool:
        """True when ``other`` has the same bytes (a touch or an identical save is no change)."""
        return other is not None and other.size == self.size and other.sha256 == self.sha256


def load_config(path: str | os.PathLike[str]) -> LocalConfig:
    """Read ``path``; a missing file gives the defaults.

    Raises:
        ConfigError: the file cannot be read, is not JSON (the message names line and column),
            or does not fit the schema (:class:`ConfigValidationError`).
    """
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        return LocalConfig()
    except OSError as exc:
        raise ConfigError(f"Cannot read {file}: {exc.strerror or exc}.") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{file}: byte {exc.start} is not UTF-8; the file must be UTF-8 JSON. "
            "coro has not changed the file."
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = " (the file is empty; write {} or delete it)" if not text.strip() else ""
        raise ConfigError(
            f"{file}: line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}{hint}. "
            "coro has not changed the file; fix it, or move it away to start from defaults."
        ) from exc
    return parse_config(data, source=str(file))


def parse_config(data: object, *, source: str = "the submitted configuration") -> LocalConfig:
    """Validate already-parsed JSON (a file's content, or a body sent to the API).

    Raises:
        ConfigValidationError: with one line per problem, naming ``source``.
    """
    if not isinstance(data, dict):
        issue = ConfigIssue("(top level)", f"expected a JSON object, got {_describe(data)}")
        raise ConfigValidationError(
            f"Invalid configuration in {source}: {issue.message}.", (issue,)
        )
    try:
        return LocalConfig.model_validate(data)
    except ValidationError as exc:
        issues = tuple(_issue(error, data) for error in exc.errors(include_url=False))
        lines = [f"Invalid configuration in {source}:"]
        lines += [f"  {issue.path}: {issue.message}" for issue in issues[:_MAX_ISSUES]]
        if len(issues) > _MAX_ISSUES:
            lines.append(f"  … and {len(issues) - _MAX_ISSUES} more")
        raise ConfigValidationError("\n".join(lines), issues) from exc


def save_config(path: str | os.PathLike[str], config: LocalConfig) -> None:
    """Write ``config`` atomically with mode 0600: camelCase, 2-space indent, defaults left out.

    Values equal to their default are not written, so the file holds only what differs and a
    later coro with better defaults still applies them. Unknown keys are written back.
    """
    data = config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n", mode=0o600)


def config_fingerprint(path: str | os.PathLike[str]) -> ConfigFingerprint | None:
    """Fingerprint the file at ``path`` (``None`` if it does not exist)."""
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            digest = hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        return None
    return ConfigFingerprint(mtime_ns=stat.st_mtime_ns, size=stat.st_size, sha256=digest)


# ── error messages ──────────────────────────────────────────────────────────────────────────


def _issue(error: ErrorDetails, data: dict[str, Any]) -> ConfigIssue:
    parts, node = _json_location(error["loc"], data)
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field = str(ctx.get("discriminator", "type")).strip("'")
        expected = ctx.get("expected_tags") or _TAGS.get(field, "a known kind")
        path = format_path((*parts, field))
        given = node.get(field) if isinstance(node, dict) else None
        if given is None:
            return ConfigIssue(path, f"missing; expected {expected}")
        return ConfigIssue(path, f"got {_describe(given)}; expected {expected}")
    path = format_path(parts)
    message = error["msg"]
    if kind == "missing":
        return ConfigIssue(path, "missing; a value is required")
    given = "(hidden)" if _is_secret_path(parts) else _describe(error.get("input"))
    if kind in _EXPECTED:
        return ConfigIssue(path, f"got {given}; expected {_EXPECTED[kind]}")
    if message.startswith("Input should be "):
        expected = message.removeprefix("Input should be ")
        if kind.startswith(("greater_", "less_")):
            expected = f"a number {expected}"
        return ConfigIssue(path, f"got {given}; expected {expected}")
    message = message.removeprefix("Value error, ")
    if isinstance(error.get("input"), dict | list):
        return ConfigIssue(path, message)
    return ConfigIssue(path, f"{message} (got {given})")


def _json_location(loc: tuple[int | str, ...], data: dict[str, Any]) -> tuple[JsonPath, object]:
    """Turn pydantic's ``loc`` into the path in the user's JSON, and the node found there.

    pydantic puts the tag of a discriminated union into ``loc`` (``mcpServers.x.stdio.command``);
    the user never wrote that key, so it is dropped.
    """
    parts: list[str | int] = []
    node: object = data
    for index, item in enumerate(loc):
        is_last = index == len(loc) - 1
        if isinstance(node, dict):
            if item in node:
                parts.append(item)
                node = node[item]
                continue
            if not is_last and item in (node.get("type"), node.get("kind")):
                continue
        elif isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
            parts.append(item)
            node = node[item]
            continue
        parts.append(item)
        node = None
    return tuple(parts), node


def _is_secret_path(parts: JsonPath) -> bool:
    return any(
        isinstance(part, str) and (is_secret_key(part) or part in ("env", "headers"))
        for part in parts
    )


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _MAX_GIVEN else text[: _MAX_GIVEN - 1] + "…"
