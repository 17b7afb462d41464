"""The base every wire model shares: snake_case in Python, the original's camelCase in JSON."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["WireModel", "utcnow"]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (what every timestamp in coro is)."""
    return datetime.now(UTC)


class WireModel(BaseModel):
    """A model whose JSON uses camelCase names, so the original system's clients parse it.

    Unknown fields are kept (``extra="allow"``) and written back out, so a record written by the
    original, or by a newer coro, survives a round trip through this one unchanged.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="allow",
        validate_assignment=False,
    )

    def to_wire(self) -> dict[str, object]:
        """The JSON-ready dict with camelCase keys, leaving out fields that are ``None``."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
