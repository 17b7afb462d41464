"""A live log: lines batched into a plain ``Log`` at most 30 times a second, bounded, following
the tail until the developer scrolls up."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Log, Static

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.timer import Timer

__all__ = ["LogPane"]

#: At most this many ``write_lines`` calls a second (DESIGN.md §11: ≤ 30 Hz, one per flush).
FLUSH_HZ = 30
FOLLOWING = "following"
PAUSED = "paused — End to follow"


class LogPane(Vertical):
    """A bounded, batched log view with a "following" / "paused" line under it."""

    DEFAULT_CSS = """
    LogPane {
        height: 1fr;
    }
    LogPane > Log {
        height: 1fr;
        overflow-x: auto;
        overflow-y: scroll;
    }
    LogPane > #log-state {
        height: 1;
        padding: 0 1;
        color: $text-muted;
    }
    LogPane.-paused > #log-state {
        color: $warning;
        text-style: bold;
    }
    """

    following: reactive[bool] = reactive(True)
    """Whether new lines scroll the view (the developer has not scrolled up)."""

    def __init__(self, max_lines: int = 5000, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_lines = max_lines
        self._pending: deque[str] = deque(maxlen=max_lines)
        self._timer: Timer | None = None
        self._last_flush = 0.0
        self.flushes = 0
        """How many ``write_lines`` calls the pane has made (for tests and benchmarks)."""

    def compose(self) -> ComposeResult:
        yield Log(max_lines=self.max_lines, id="log")
        yield Static(FOLLOWING, id="log-state")

    def on_mount(self) -> None:
        self.watch(self.log_widget, "scroll_y", self._scrolled, init=False)

    @property
    def log_widget(self) -> Log:
        return self.query_one("#log", Log)

    @property
    def lines(self) -> list[str]:
        """What the log shows, oldest first (pending lines not included)."""
        return list(self.log_widget.lines)

    def write(self, lines: Iterable[str]) -> None:
        """Queue ``lines``; they are drawn with the next flush (within 1/30 s)."""
        self._pending.extend(lines)
        if self._pending and self._timer is None:
            delay = max(0.001, self._last_flush + 1 / FLUSH_HZ - time.monotonic())
            self._timer = self.set_timer(delay, self.flush)

    def flush(self) -> None:
        """Draw every queued line now, with one ``write_lines`` call."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if not self._pending:
            return
        batch = list(self._pending)
        self._pending.clear()
        self._last_flush = time.monotonic()
        self.flushes += 1
        self.log_widget.write_lines(batch)

    def follow(self) -> None:
        """Jump to the end and follow new lines again."""
        self.log_widget.scroll_end(animate=False, immediate=True, x_axis=False)
        self.following = True

    def selected_text(self) -> str:
        """The developer's selection in the log, else the lines in view."""
        log = self.log_widget
        selected = self.screen.get_selected_text()
        if selected:
            return selected
        top = round(log.scroll_y)
        return "\n".join(log.lines[top : top + log.scrollable_content_region.height])

    def _scrolled(self, _old: float, new: float) -> None:
        log = self.log_widget
        self.following = round(new) >= log.max_scroll_y

    def watch_following(self, following: bool) -> None:
        self.set_class(not following, "-paused")
        if self.is_mounted:
            self.query_one("#log-state", Static).update(FOLLOWING if following else PAUSED)
