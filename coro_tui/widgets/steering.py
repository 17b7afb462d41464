"""Steering a running job: the message line, the messages sent and their receipts, and what the
job is doing right now (what an urgent interrupt would stop)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input, Static

if TYPE_CHECKING:
    from coro_tui.client import MessageMode
    from state import JobEvent

__all__ = ["ActivityLine", "MessageInput", "MessageList", "SentMessage"]

#: What each mode tells the developer about when the job sees the message.
MODE_HINTS = {
    "steer": "steer: the job sees it at its next tool boundary",
    "queue": "queue: the job sees it when the model ends its turn",
    "urgent": "urgent: stops the model call or tool in flight, then sends it",
}
#: The most messages the list keeps (the log keeps every receipt).
MAX_MESSAGES = 3
_CLIP = 60
#: Marks the developer's messages in the log.
MARK = "\u203a"


def clip(text: str, width: int = _CLIP) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


class MessageInput(Input):
    """The line at the bottom where a message to the job is typed; ``enter`` sends it in
    :attr:`mode`, ``escape`` closes it unsent."""

    BINDINGS = [
        Binding("escape", "close", "Cancel", id="job.message.cancel",
                tooltip="Close the message line without sending"),
    ]  # fmt: skip

    class Closed(Message):
        """The developer closed the line without sending."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.mode: MessageMode = "steer"

    def open(self, mode: MessageMode) -> None:
        self.mode = mode
        self.placeholder = f"{MODE_HINTS[mode]} · enter sends · escape cancels"
        self.border_title = f"message ({mode})"
        self.value = ""
        self.add_class("-shown")
        self.focus()

    def close(self) -> None:
        self.remove_class("-shown")
        self.value = ""

    def action_close(self) -> None:
        self.close()
        self.post_message(self.Closed())


@dataclass
class SentMessage:
    id: str
    mode: str
    text: str
    state: str = "accepted"


class MessageList(Static):
    """The last few messages sent to the job, each with its receipt."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.messages: dict[str, SentMessage] = {}

    def take(self, event: JobEvent) -> str | None:
        """Follow a ``message_*`` event; returns the log line that tells of it, if any."""
        data = event.data
        message_id = str(data.get("messageId", ""))
        if event.kind == "message_accepted":
            sent = SentMessage(message_id, str(data.get("mode", "")), str(data.get("text", "")))
            self.messages[message_id] = sent
            while len(self.messages) > MAX_MESSAGES:
                del self.messages[next(iter(self.messages))]
            line = f"{MARK} you ({sent.mode}): {sent.text}  [accepted]"
        elif event.kind == "message_delivered":
            turn = data.get("turn")
            state = "delivered" if turn is None else f"delivered at turn {turn}"
            line = self._receipt(message_id, state)
        elif event.kind == "message_dropped":
            state = f"dropped: {data.get('reason') or 'no reason given'}"
            line = self._receipt(message_id, state)
        else:
            return None
        self._draw()
        return line

    def _receipt(self, message_id: str, state: str) -> str:
        sent = self.messages.get(message_id)
        if sent is None:
            return f"{MARK} message {message_id}  [{state}]"
        sent.state = state
        return f"{MARK} you ({sent.mode}): {clip(sent.text)}  [{state}]"

    def _draw(self) -> None:
        text = Text()
        for sent in self.messages.values():
            if text:
                text.append("\n")
            text.append(f"{MARK} {sent.mode} ", style="bold").append(clip(sent.text))
            text.append(f"  [{sent.state}]", style="dim")
        self.update(text)
        self.set_class(bool(self.messages), "-shown")


@dataclass
class _Tool:
    name: str
    summary: str
    since: datetime


class ActivityLine(Static):
    """What a running job is doing now, from its events: the tool in flight (the latest
    ``tool_call`` without its ``tool_result``) and for how long, else the model's turn.

    Shown only while the job runs and once an event has said what it does; a 1 Hz timer keeps
    the seconds current.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.running = False
        self.tools: dict[str, _Tool] = {}
        self.model_since: datetime | None = None

    def on_mount(self) -> None:
        self.set_interval(1.0, self.draw)

    def take(self, event: JobEvent) -> None:
        data: dict[str, Any] = event.data
        kind = event.kind
        if kind == "tool_call":
            summary = _summary(data.get("input"))
            self.tools[str(data.get("id", ""))] = _Tool(str(data.get("name", "?")), summary,
                                                        event.ts)  # fmt: skip
        elif kind == "tool_result":
            self.tools.pop(str(data.get("id", "")), None)
            self.model_since = event.ts
        elif kind in ("model_call", "phase", "message_delivered"):
            if kind == "phase":
                self.tools.clear()
            self.model_since = event.ts
        elif kind == "status":
            self.tools.clear()
            self.model_since = event.ts if _runs(str(data.get("to", ""))) else None
        else:
            return
        self.draw()

    def set_running(self, running: bool) -> None:
        if running != self.running:
            self.running = running
            if not running:
                self.tools.clear()
                self.model_since = None
            self.draw()

    def describe(self) -> str:
        """The line as plain text (empty when there is nothing to say)."""
        if not self.running:
            return ""
        now = datetime.now(UTC)
        if self.tools:
            tool = list(self.tools.values())[-1]
            what = f"tool {tool.name}: {tool.summary}" if tool.summary else f"tool {tool.name}"
            return f"{what} — {_seconds(now, tool.since)}"
        if self.model_since is not None:
            return f"model streaming… — {_seconds(now, self.model_since)}"
        return ""

    def draw(self) -> None:
        line = self.describe()
        self.set_class(bool(line), "-shown")
        self.update(Text("now: ", style="bold").append(line) if line else "")


def _runs(status: str) -> bool:
    """Whether a job in ``status`` runs a phase (``JobStatus.is_running``, without ``state``)."""
    stopped = ("queued", "complete", "cancelled", "failed", "escalated")
    return bool(status) and status not in stopped and not status.startswith("awaiting-")


def _seconds(now: datetime, since: datetime) -> str:
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return f"{max(0, int((now - since).total_seconds()))} s"


def _summary(arguments: Any) -> str:
    """A tool call's input in one short line: its command, path or first string."""
    if not isinstance(arguments, dict):
        return ""
    for key in ("command", "file_path", "path", "pattern", "message", "description"):
        value = arguments.get(key)
        if isinstance(value, str) and value:
            return clip(value)
    first = next((v for v in arguments.values() if isinstance(v, str) and v), "")
    return clip(first)
