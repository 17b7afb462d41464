"""The TUI's screens: the runs list and one job's view."""

from coro_tui.screens.job import JobScreen
from coro_tui.screens.runs import RunsScreen

__all__ = ["JobScreen", "RunsScreen"]
