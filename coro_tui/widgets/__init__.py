"""Reusable widgets of the TUI: the phase strip, the live log pane and a confirmation dialog."""

from coro_tui.widgets.confirm import ConfirmDialog
from coro_tui.widgets.log_pane import LogPane
from coro_tui.widgets.phase_strip import PhaseStrip, phase_marks

__all__ = ["ConfirmDialog", "LogPane", "PhaseStrip", "phase_marks"]
