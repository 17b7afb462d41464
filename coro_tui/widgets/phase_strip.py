"""One line of a job's workflow phases: done ✓, the current one ●, not yet run ○."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

if TYPE_CHECKING:
    from state import Job

__all__ = ["PhaseStrip", "phase_marks"]

DONE, CURRENT, PENDING, STOPPED = "✓", "●", "○", "✗"


def phase_marks(job: Job) -> list[tuple[str, str]]:
    """``(mark, phase name)`` for each phase of the job's workflow, in order."""
    from state import JobStatus

    names = [p.name for p in job.workflow_phases]
    if job.status is JobStatus.COMPLETE:
        return [(DONE, name) for name in names]
    current = names.index(job.phase) if job.phase in names else None
    marks: list[tuple[str, str]] = []
    for index, name in enumerate(names):
        if current is None or index > current:
            marks.append((PENDING, name))
        elif index < current:
            marks.append((DONE, name))
        elif job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            marks.append((STOPPED, name))
        else:
            marks.append((CURRENT, name))
    return marks


class PhaseStrip(Static):
    """The phases of a job's workflow; the marks carry the meaning, colour only helps."""

    DEFAULT_CSS = """
    PhaseStrip {
        height: auto;
        max-height: 2;
        padding: 0 1;
    }
    """

    _STYLES = {DONE: "green", CURRENT: "bold reverse", PENDING: "dim", STOPPED: "bold red"}

    def show_job(self, job: Job) -> None:
        """Draw ``job``'s phases."""
        marks = phase_marks(job)
        if not marks:
            self.update(Text("phases: not started", style="dim"))
            return
        text = Text()
        for index, (mark, name) in enumerate(marks):
            if index:
                text.append(" → ", style="dim")
            style = self._STYLES[mark]
            text.append(f"{mark} {name}" if mark != CURRENT else f" {mark} {name} ", style=style)
        self.update(text)
