"""Copying text out of the TUI: OSC 52 always, the system clipboard too when a tool for it exists.

OSC 52 reaches the developer's own terminal, also over SSH and through tmux (with
``set-clipboard on``); ``pbcopy``, ``wl-copy`` or ``xclip`` put the text on this machine's
clipboard as well, for terminals that ignore OSC 52. None of them is required.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.app import App

__all__ = ["copy_text", "system_clipboard_command"]

_TIMEOUT_S = 2.0


def system_clipboard_command() -> list[str] | None:
    """The command that writes stdin to this machine's clipboard, or ``None`` if there is none."""
    if shutil.which("pbcopy"):
        return ["pbcopy"]
    if os.environ.get("WAYLAND_DISPLAY") and shutil.which("wl-copy"):
        return ["wl-copy"]
    if os.environ.get("DISPLAY") and shutil.which("xclip"):
        return ["xclip", "-selection", "clipboard"]
    return None


def _system_copy(command: list[str], text: str) -> bool:
    try:
        done = subprocess.run(
            command, input=text.encode(), timeout=_TIMEOUT_S, check=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


async def copy_text(app: App[Any], text: str) -> str:
    """Copy ``text`` through OSC 52 and, when available, the system clipboard.

    Returns:
        Where it went, for the notification (``"terminal (OSC 52)"`` or ``"… and wl-copy"``).
    """
    app.copy_to_clipboard(text)
    command = system_clipboard_command()
    if command is not None and await asyncio.to_thread(_system_copy, command, text):
        return f"terminal (OSC 52) and {command[0]}"
    return "terminal (OSC 52)"
