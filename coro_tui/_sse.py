"""Reading server-sent events: one frame parser for the CLI's and the TUI's clients."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Frame", "FrameParser", "parse_frames"]


@dataclass
class Frame:
    """One server-sent event."""

    id: str | None = None
    event: str = "message"
    data: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.data)

    def json(self) -> Any:
        return json.loads(self.text)


class FrameParser:
    """Frames from a stream's lines, fed one at a time. A frame counts only once its blank line
    came, so a frame cut by a dropped connection is never yielded (it comes again on resume);
    comment lines (heartbeats) are skipped."""

    def __init__(self) -> None:
        self._frame = Frame()

    def feed(self, line: str) -> Frame | None:
        """The frame ``line`` completes, if it completes one."""
        line = line.removesuffix("\r")
        if line == "":
            frame, self._frame = self._frame, Frame()
            return frame if frame.data or frame.id is not None else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            self._frame.id = value
        elif name == "event":
            self._frame.event = value
        elif name == "data":
            self._frame.data.append(value)
        return None


def parse_frames(lines: Iterable[str]) -> Iterator[Frame]:
    """The complete frames among ``lines``."""
    parser = FrameParser()
    for line in lines:
        frame = parser.feed(line)
        if frame is not None:
            yield frame
