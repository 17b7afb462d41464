"""Keeping secrets out of API answers, screens and logs.

Which values are secret is declared on the models (:data:`~engine.config._base.SECRET` and
friends) and found by walking a :class:`LocalConfig`; free-form blocks (plugin configs,
``upstream``, unknown keys) are searched by key name. :func:`redact` replaces every non-empty
secret with :data:`MASK`; :func:`unredact` puts the saved values back when a redacted copy
comes back with the mask still in place.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from pydantic import BaseModel

from engine.config._base import (
    FREEFORM,
    SECRET,
    SECRET_VALUES,
    JsonPath,
    format_path,
    has_marker,
    is_secret_key,
)
from engine.config._io import parse_config
from engine.config._models import LocalConfig
from engine.errors import ConfigError

__all__ = ["MASK", "iter_secrets", "redact", "redact_text", "unredact"]

MASK = "********"
"""What a secret looks like in a redacted config; submitting it back means "unchanged"."""

_MIN_TEXT_SECRET = 6
_MISSING = object()


def iter_secrets(config: LocalConfig) -> Iterator[tuple[JsonPath, str]]:
    """Every non-empty secret in ``config`` with its path in the camelCase JSON."""
    return _walk_model(config, ())


def redact(config: LocalConfig) -> dict[str, Any]:
    """The whole config as camelCase JSON data, every non-empty secret replaced by :data:`MASK`."""
    data: dict[str, Any] = config.model_dump(mode="json", by_alias=True)
    for path, _ in iter_secrets(config):
        node: Any = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = MASK
    return data


def unredact(submitted: dict[str, Any], current: LocalConfig) -> LocalConfig:
    """Validate a redacted config sent back by a client, restoring the masked secrets.

    ``submitted`` is the whole config as the client wants it. Where a value is still
    :data:`MASK`, the value saved at the same place in ``current`` is kept; a new value replaces
    it; ``null`` clears it. Entries of ``guardrails.rules`` are matched by ``id``.

    Raises:
        ConfigError: a masked value has nothing saved at its place (say, a renamed MCP server),
            or the result does not validate.
    """
    current_data = current.model_dump(mode="json", by_alias=True)
    restored = _restore(submitted, current_data, ())
    return parse_config(restored, source="the submitted configuration")


def redact_text(text: str, config: LocalConfig) -> str:
    """Replace every secret of ``config`` (6 characters or longer) that occurs in ``text``."""
    values = {value for _, value in iter_secrets(config) if len(value) >= _MIN_TEXT_SECRET}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def _walk_model(model: BaseModel, path: JsonPath) -> Iterator[tuple[JsonPath, str]]:
    for name, key, kind in _fields(type(model)):
        value = getattr(model, name)
        if kind is SECRET:
            if isinstance(value, str) and value:
                yield (*path, key), value
        elif kind is SECRET_VALUES:
            for item_key, item in value.items():
                if isinstance(item, str) and item:
                    yield (*path, key, item_key), item
        elif kind is FREEFORM:
            yield from _walk_free(value, (*path, key))
        elif isinstance(value, BaseModel | dict | list):
            yield from _walk_typed(value, (*path, key))
    if model.model_extra:
        yield from _walk_free(model.model_extra, path)


@cache
def _fields(model: type[BaseModel]) -> tuple[tuple[str, str, object], ...]:
    """Each field of ``model`` with its JSON key and its secret marker (``None`` if none):
    reading the markers once per class rather than once per walk makes a walk ~4x cheaper."""
    out = []
    for name, info in model.model_fields.items():
        marker = next((m for m in (SECRET, SECRET_VALUES, FREEFORM) if has_marker(info, m)), None)
        out.append((name, info.alias or name, marker))
    return tuple(out)


def _walk_typed(value: object, path: JsonPath) -> Iterator[tuple[JsonPath, str]]:
    if isinstance(value, BaseModel):
        yield from _walk_model(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_typed(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_typed(item, (*path, index))


def _walk_free(value: object, path: JsonPath) -> Iterator[tuple[JsonPath, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and item and is_secret_key(str(key)):
                yield (*path, key), item
            else:
                yield from _walk_free(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_free(item, (*path, index))
    elif isinstance(value, BaseModel):
        yield from _walk_model(value, path)


def _restore(node: object, current: object, path: JsonPath) -> object:
    if node == MASK:
        if isinstance(current, str):
            return current
        raise ConfigError(
            f"{format_path(path)} still holds the mask {MASK}, but no value is saved there to "
            "keep; enter the value itself."
        )
    if isinstance(node, dict):
        return {
            key: _restore(
                item,
                current.get(key, _MISSING) if isinstance(current, dict) else _MISSING,
                (*path, key),
            )
            for key, item in node.items()
        }
    if isinstance(node, list):
        old = current if isinstance(current, list) else []
        by_id = {item["id"]: item for item in old if _rule_id(item) is not None}
        out: list[object] = []
        for index, item in enumerate(node):
            if (rule_id := _rule_id(item)) is not None:
                match = by_id.get(rule_id, _MISSING)
            else:
                match = old[index] if index < len(old) else _MISSING
            out.append(_restore(item, match, (*path, index)))
        return out
    return node


def _rule_id(item: object) -> str | None:
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        return str(item["id"])
    return None
