"""Tell the developer when a job starts needing them: the terminal bell and an OSC 9 notice.

:class:`DeveloperAlerts` follows every job's events through the client; when a job *moves
into* a state :func:`~coro_tui._needs.needs_developer` names (a checkpoint, a question,
escalated, failed), it alerts once. A job that stays there does not alert again; one that
leaves and comes back does. A job the developer paused themselves does not alert.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from coro_tui._needs import PAUSED_AWAITING, needs_developer

if TYPE_CHECKING:
    from textual.app import App

    from coro_tui.client import EngineClient
    from state import Job

__all__ = ["DeveloperAlerts", "osc9", "terminal_alert"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def osc9(text: str, *, tmux: bool = False) -> str:
    """The OSC 9 desktop-notification sequence for ``text`` (wrapped for tmux passthrough)."""
    body = f"\x1b]9;{_CONTROL.sub(' ', text)[:200]}\x07"
    if tmux:
        return "\x1bPtmux;" + body.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return body


def terminal_alert(app: App[Any]) -> Callable[[str], None]:
    """An alert for ``app``'s terminal: the bell, then an OSC 9 notice through its driver."""

    def alert(text: str) -> None:
        app.bell()
        driver = app._driver
        if driver is not None and not app.is_headless:
            driver.write(osc9(text, tmux=bool(os.environ.get("TMUX"))))

    return alert


class DeveloperAlerts:
    """Alerts once per transition of a job into needing the developer.

    Args:
        client: the runner.
        alert: called with one line (``coro: job-1 needs you: escalated: …``) per transition.
    """

    def __init__(self, client: EngineClient, alert: Callable[[str], None]) -> None:
        self._client = client
        self._alert = alert
        self._reasons: dict[str, str | None] = {}

    def see(self, job: Job) -> str | None:
        """Record ``job``'s latest state; the alert text if it just started needing the
        developer, else ``None``."""
        reason = needs_developer(job)
        before = self._reasons.get(job.id)
        self._reasons[job.id] = reason
        if reason is None or before is not None or job.awaiting_event == PAUSED_AWAITING:
            return None
        return f"coro: {job.id} needs you: {reason}"

    async def run(self) -> None:
        """Follow the runner until the client closes (jobs needing the developer now do not
        alert: the Runs screen shows them)."""
        from coro_tui.client import ClientError

        cursor = await self._client.last_global_seq()
        for job in await self._client.list_jobs():
            self._reasons[job.id] = needs_developer(job)
        async for batch in self._client.all_events(after=cursor):
            changed = dict.fromkeys(e.job_id for e in batch if e.kind in ("status", "job_created"))
            for job_id in changed:
                try:
                    job = await self._client.get_job(job_id)
                except ClientError:
                    continue
                text = self.see(job)
                if text is not None:
                    self._alert(text)
