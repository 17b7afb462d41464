"""The tools of one phase in one box: built-in, domain and external, each already filtered.

The executor sees one :class:`~engine.phase.ToolBox`; a call goes to the box that offers the
name. A name no box offers gets an error result listing what the phase has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.phase import ToolBox, ToolOutcome, ToolSpec

__all__ = ["CompositeToolBox"]


class CompositeToolBox:
    """Several tool boxes as one; the first box to offer a name wins it."""

    def __init__(self, boxes: Sequence[ToolBox], *, phase: str) -> None:
        self._phase = phase
        self._specs: list[ToolSpec] = []
        self._route: dict[str, ToolBox] = {}
        for box in boxes:
            for spec in box.specs():
                if spec.name not in self._route:
                    self._route[spec.name] = box
                    self._specs.append(spec)

    def specs(self) -> list[ToolSpec]:
        return list(self._specs)

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        box = self._route.get(name)
        if box is None:
            available = ", ".join(sorted(self._route)) or "none"
            return ToolOutcome(
                f"tool {name!r} is not available in phase {self._phase!r}; the tools of this "
                f"phase are: {available}",
                is_error=True,
            )
        return await box.call(name, arguments)
