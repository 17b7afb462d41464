"""The job screen's ``g``: approve and merge the job's open pull request on the local SCM, after a
confirmation naming it; through both client kinds, against a real local SCM repository."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from textual.widgets import Static

from coro_tui.screens import JobScreen
from coro_tui.widgets import ConfirmDialog
from engine.scm.local import LocalScmPlugin
from state import JobStatus
from tests.support.tui import TuiRig
from tests.tui._jobs import Host, until

GIT = ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com"]
DESCRIPTION = (
    "## What\n\nRaises the limit to twenty requests a minute, so that batch clients stop "
    "hitting it.\n"
)


class Recorder(Host):
    """The host, also keeping every notification's message."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.notes: list[str] = []

    def notify(self, message: str, **kwargs: Any) -> None:
        self.notes.append(message)
        super().notify(message, **kwargs)


async def repository_with_a_branch(rig: TuiRig) -> LocalScmPlugin:
    """``svc`` on the local SCM: ``main``, and ``feature`` one commit ahead of it."""
    local = rig.engine.scm.plugin("local")
    assert isinstance(local, LocalScmPlugin)
    bare = await local.create_repo("svc")
    seed = rig.home.parent / "seed"
    seed.mkdir()
    (seed / "limits.py").write_text("LIMIT = 10\n")
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["commit", "-qm", "init"],
        ["checkout", "-q", "-b", "feature"],
        ["commit", "-q", "--allow-empty", "-m", "Raise the limit"],
        ["push", "-q", str(bare), "main", "feature"],
    ):
        subprocess.run([*GIT, *args], cwd=seed, check=True, capture_output=True)
    return local


def alert(app: Recorder) -> str:
    return str(app.screen.query_one("#job-alert", Static).render())


async def test_g_asks_then_approves_and_merges_the_local_pull_request(
    tui_rig: TuiRig, tmp_path: Path
) -> None:
    local = await repository_with_a_branch(tui_rig)
    pr = {"repo": "svc", "title": "Raise the limit", "sourceBranch": "feature",
          "description": DESCRIPTION}  # fmt: skip
    open_pr = ("scm_create_pr", pr)
    wait = ("await_event", {"eventName": "pr:merged", "prId": 1})
    tui_rig.executor.script = {"build": [[open_pr, wait], []]}
    await tui_rig.start_job("pr-1")
    parked = await tui_rig.wait("pr-1", lambda j: j.status is JobStatus.AWAITING_PR_MERGE)
    assert [(p.pr_id, p.plugin_id) for p in parked.pr_mappings] == [(1, "local")]

    app = Recorder(lambda: JobScreen(tui_rig.client, "pr-1"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.loaded)
        screen = app.screen
        assert isinstance(screen, JobScreen)
        assert "pull request #1 on svc (local SCM) waits for your approval" in alert(app)
        assert "g approve and merge it" in alert(app)
        assert screen.check_action("merge_pr", ()) is True

        await pilot.press("g")  # asked first: no leaves the pull request open
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        question = str(app.screen.query_one("#confirm-question", Static).render())
        assert "pull request #1 on svc" in question
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen)
        assert (await local.local_pr("svc", 1)).state == "open"

        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        job = await tui_rig.wait("pr-1", lambda j: j.status.is_terminal)
        assert job.status is JobStatus.COMPLETE
        merged = await local.local_pr("svc", 1)
        assert merged.state == "merged" and len(merged.approvals) == 1
        await until(pilot, lambda: any("approved and merged svc#1" in n for n in app.notes))
        # merged: the key is gone, and the alert with it
        await until(pilot, lambda: screen.job is not None and screen.job.status.is_terminal)
        assert screen.check_action("merge_pr", ()) is False
        assert "waits for your approval" not in alert(app)
