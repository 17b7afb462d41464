"""Building blocks shared by the config models: the block base class, secret markers, paths.

Secret fields carry a marker in their ``Annotated`` metadata (:data:`SECRET`,
:data:`SECRET_VALUES`, :data:`FREEFORM`) that :mod:`engine.config._secrets` reads to mask them.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

__all__ = [
    "FREEFORM",
    "SECRET",
    "SECRET_VALUES",
    "ConfigBlock",
    "FreeDict",
    "JsonPath",
    "SecretMap",
    "SecretValue",
    "format_path",
    "has_marker",
    "is_secret_key",
    "unknown_keys",
]

JsonPath = tuple[str | int, ...]
"""A location in the camelCase JSON: keys and list indices."""


class _Marker:
    """A tag put in a field's ``Annotated`` metadata; compared by identity."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


SECRET = _Marker("SECRET")
"""The field's value is a secret."""
SECRET_VALUES = _Marker("SECRET_VALUES")
"""Every value of this ``str → str`` mapping is a secret (MCP ``env`` and ``headers``)."""
FREEFORM = _Marker("FREEFORM")
"""A free-form mapping: entries whose key looks secret (``token``, ``apiKey``…) are secrets."""


SecretValue = Annotated[str | None, SECRET]
"""An optional secret string (a token, an API key)."""
SecretMap = Annotated[dict[str, str], SECRET_VALUES]
"""A mapping whose every value is secret."""
FreeDict = Annotated[dict[str, Any], FREEFORM]
"""A free-form mapping searched for secret-looking keys."""


class ConfigBlock(BaseModel):
    """Base of every block: camelCase in JSON, snake_case in Python, unknown keys kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        validate_assignment=True,
    )


_SECRET_SUFFIXES = (
    "token",
    "tokens",
    "secret",
    "secrets",
    "password",
    "passwd",
    "apikey",
    "privatekey",
    "accesskey",
    "secretkey",
    "signingkey",
    "credential",
    "credentials",
)
_SECRET_NAMES = frozenset({"key", "auth", "authorization", "cookie", "pat", "pwd", "pass"})


@lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """Whether a free-form key names a secret: ``token``, ``apiKey``, ``client_secret``…

    Keys that merely end in "key" (``projectKey``, ``teamKey``) are not secrets.
    """
    folded = re.sub(r"[^a-z0-9]", "", name.lower())
    return folded in _SECRET_NAMES or folded.endswith(_SECRET_SUFFIXES)


def has_marker(info: FieldInfo, marker: _Marker) -> bool:
    """Whether a field carries ``marker`` in its ``Annotated`` metadata."""
    return any(item is marker for item in info.metadata)


def format_path(parts: JsonPath) -> str:
    """A JSON location as users read it: ``llm.aliases.coding.reasoningEffort``, ``rules[0]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "(top level)"


def unknown_keys(config: BaseModel) -> list[str]:
    """The paths of keys in ``config`` that no model declares (kept, but perhaps typos)."""
    found: list[str] = []

    def walk(node: object, path: JsonPath) -> None:
        if isinstance(node, BaseModel):
            for name, info in type(node).model_fields.items():
                if not has_marker(info, FREEFORM):
                    walk(getattr(node, name), (*path, info.alias or name))
            found.extend(format_path((*path, key)) for key in node.model_extra or {})
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*path, index))

    walk(config, ())
    return found
