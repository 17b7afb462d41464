"""The job screen: every key against a real engine through both client kinds, and snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import MarkdownViewer, Static

from coro_tui.screens import JobScreen
from coro_tui.screens.job import RESERVED_KEYS
from coro_tui.widgets import ConfirmDialog, LogPane
from coro_tui.widgets.log_pane import FOLLOWING, PAUSED
from state import JobStatus, PrMapping
from tests.support.tui import TuiRig
from tests.tui._jobs import FixedJobsClient, Host, until

SPEC = "# Spec\n\nLimit `/v1/*` to 100 requests a minute.\n"


class Recorder(Host):
    """The host, also keeping every notification as ``(severity, message)``."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.notes: list[tuple[str, str]] = []

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = True) -> None:  # fmt: skip
        self.notes.append((severity, message))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def said(self, text: str, severity: str | None = None) -> bool:
        return any(text in m and severity in (None, s) for s, m in self.notes)


def job_app(rig: TuiRig, job_id: str, **kwargs: Any) -> Recorder:
    return Recorder(lambda: JobScreen(rig.client, job_id, **kwargs))


def screen_of(app: Recorder) -> JobScreen:
    screen = app.screen
    assert isinstance(screen, JobScreen)
    return screen


def text_of(app: Recorder, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def opened(pilot: Any) -> JobScreen:
    await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen) and pilot.app.screen.job)
    screen = screen_of(pilot.app)
    await until(pilot, lambda: screen.loaded)
    return screen


# -- actions -------------------------------------------------------------------------------------
async def test_a_approves_the_checkpoint_and_the_job_moves_on(tui_rig: TuiRig) -> None:
    await tui_rig.job_at_checkpoint("ck-1")
    app = job_app(tui_rig, "ck-1")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await opened(pilot)
        assert "Checkpoint" in text_of(app, "#job-alert")
        assert "after build" in text_of(app, "#job-alert")
        await pilot.press("a")
        job = await tui_rig.wait("ck-1", lambda j: j.status.is_terminal)
        assert job.status is JobStatus.COMPLETE
        await until(pilot, lambda: app.said("approved ck-1"))
        await until(pilot, lambda: screen.job is not None and screen.job.status.is_terminal)
        assert "complete" in text_of(app, "#job-title")
        assert not app.screen.query_one("#job-alert").has_class("-shown")
        assert text_of(app, "#job-phases").count("✓") == 3


async def test_c_asks_first_and_cancels_only_on_yes(tui_rig: TuiRig) -> None:
    await tui_rig.job_at_checkpoint("ck-2")
    app = job_app(tui_rig, "ck-2")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen)
        assert (await tui_rig.client.get_job("ck-2")).status is JobStatus.AWAITING_DEVELOPER_INPUT

        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        job = await tui_rig.wait("ck-2", lambda j: j.status is JobStatus.CANCELLED)
        assert job.status is JobStatus.CANCELLED
        await until(pilot, lambda: app.said("cancelled ck-2"))
        await until(pilot, lambda: "cancelled" in text_of(app, "#job-title"))


async def test_r_resumes_an_escalated_job(tui_rig: TuiRig) -> None:
    tui_rig.executor.script = {"build": [[("escalate", {"reason": "no credentials"})], []]}
    await tui_rig.start_job("esc-1")
    await tui_rig.wait("esc-1", lambda j: j.status is JobStatus.ESCALATED)
    app = job_app(tui_rig, "esc-1")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        alert = text_of(app, "#job-alert")
        assert "Escalated: no credentials" in alert
        await pilot.press("r")
        job = await tui_rig.wait("esc-1", lambda j: j.status.is_terminal)
        assert job.status is JobStatus.COMPLETE
        await until(pilot, lambda: app.said("resumed esc-1"))
        await until(pilot, lambda: "complete" in text_of(app, "#job-title"))


async def test_a_refused_action_shows_the_runners_reason(tui_rig: TuiRig) -> None:
    await tui_rig.finished_job("done-1")
    app = job_app(tui_rig, "done-1")
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot)
        await pilot.press("a")
        await until(pilot, lambda: app.said("nothing to approve", "error"))
        await pilot.press("r")
        await until(pilot, lambda: app.said("can be resumed", "error"))
    assert (await tui_rig.client.get_job("done-1")).status is JobStatus.COMPLETE


# -- the log -------------------------------------------------------------------------------------
async def test_the_log_follows_new_lines_until_scrolled_up(tui_rig: TuiRig) -> None:
    # A parked job: a finished one's stream ends (over HTTP) once the backlog is sent.
    tui_rig.executor.script = {"spec": [[("log", {"message": "spec written"})]]}
    await tui_rig.job_at_checkpoint("log-1")
    store = tui_rig.engine.store
    app = job_app(tui_rig, "log-1")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        pane = screen.query_one(LogPane)
        assert "spec written" in pane.lines
        assert pane.lines == await store.get_log("log-1")

        await store.append_logs("log-1", [f"more {n}" for n in range(100)])
        await until(pilot, lambda: pane.lines and pane.lines[-1] == "more 99")
        log = pane.log_widget
        assert pane.following and log.scroll_y == log.max_scroll_y
        assert str(pane.query_one("#log-state", Static).render()) == FOLLOWING

        await pilot.press("home")
        await until(pilot, lambda: not pane.following)
        assert str(pane.query_one("#log-state", Static).render()) == PAUSED
        await store.append_logs("log-1", [f"later {n}" for n in range(30)])
        await until(pilot, lambda: pane.lines and pane.lines[-1] == "later 29")
        assert log.scroll_y == 0  # the view stays where the developer put it

        await pilot.press("end")
        await until(pilot, lambda: pane.following and log.scroll_y == log.max_scroll_y)
        assert str(pane.query_one("#log-state", Static).render()) == FOLLOWING


async def test_the_log_is_bounded_and_drawn_in_batches(tui_rig: TuiRig) -> None:
    await tui_rig.job_at_checkpoint("log-2")
    store = tui_rig.engine.store
    app = job_app(tui_rig, "log-2", log_max_lines=50)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        pane = screen.query_one(LogPane)
        before = pane.flushes
        for chunk in range(10):
            await store.append_logs("log-2", [f"burst {chunk}.{n}" for n in range(100)])
        await until(pilot, lambda: pane.lines and pane.lines[-1] == "burst 9.99")
        assert len(pane.lines) == 50
        assert pane.lines[0] == "burst 9.50"
        # 1,000 lines in ten commits: one write_lines per flush, far fewer flushes than lines.
        assert 1 <= pane.flushes - before <= 10


async def test_e_exports_the_whole_log_and_says_where(tui_rig: TuiRig, tmp_path: Path) -> None:
    await tui_rig.finished_job("exp-1")
    store = tui_rig.engine.store
    await store.append_logs("exp-1", [f"line {n}" for n in range(300)])
    app = job_app(tui_rig, "exp-1", log_max_lines=20, export_dir=tmp_path)
    target = tmp_path / "exp-1.log"
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot)
        await pilot.press("e")
        await until(pilot, lambda: app.said(str(target)))
    whole = await store.get_log("exp-1")
    assert len(whole) == 300  # more than the 20 the view keeps
    assert target.read_text().splitlines() == whole


async def test_y_copies_the_log_lines_in_view(tui_rig: TuiRig) -> None:
    await tui_rig.finished_job("cp-1")
    await tui_rig.engine.store.append_logs("cp-1", [f"step {n}" for n in range(60)])
    app = job_app(tui_rig, "cp-1")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        pane = screen.query_one(LogPane)
        await pilot.press("y")
        await until(pilot, lambda: app.said("copied"))
        copied = app.clipboard.splitlines()
        assert copied[-1] == "step 59" and 10 < len(copied) < 24  # what the view shows
        assert copied == pane.lines[-len(copied) :]


# -- panels --------------------------------------------------------------------------------------
async def test_artefacts_render_as_markdown_and_y_copies_the_source(tui_rig: TuiRig) -> None:
    job_dir = tui_rig.engine.paths.job_dir("art-1")
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "spec.md").write_text(SPEC)
    tui_rig.executor.script = {
        "spec": [[("post_artifact", {"kind": "spec-md", "title": "The spec",
                                     "data": {"path": "spec.md"}})]],
    }  # fmt: skip
    await tui_rig.finished_job("art-1")
    app = job_app(tui_rig, "art-1")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await opened(pilot)
        await pilot.press("3")
        viewer = screen.query_one("#artifact-view", MarkdownViewer)
        await until(pilot, lambda: "Limit" in (viewer.document.source or ""))
        await pilot.press("y")
        await until(pilot, lambda: app.said("copied the artefact"))
        assert app.clipboard == SPEC


async def test_work_items_prs_and_usage_show(tui_rig: TuiRig) -> None:
    tui_rig.executor.script = {
        "spec": [[("set_work_items", {"workItems": ["limiter", "metrics"]})]],
        "review": [
            [
                ("update_work_item", {"name": "limiter", "status": "complete"}),
                ("update_work_item", {"name": "metrics", "status": "escalated"}),
            ]
        ],
    }
    await tui_rig.finished_job("wk-1")
    await tui_rig.engine.store.add_pr_mapping("wk-1", PrMapping(pr_id=5, repo_slug="acme/svc"))
    app = job_app(tui_rig, "wk-1")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await opened(pilot)
        await pilot.press("2")
        work = text_of(app, "#work-items")
        assert "✓ limiter" in work and "! metrics" in work
        assert "#5 open" in text_of(app, "#work-prs")
        await pilot.press("4")
        usage = screen.query_one("#usage-table")
        assert usage.row_count == 4  # spec, build, review and the total


async def test_escape_goes_back(tui_rig: TuiRig) -> None:
    await tui_rig.finished_job("esc-back")
    app = job_app(tui_rig, "esc-back")
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, JobScreen))


async def test_an_unknown_job_says_so(tui_rig: TuiRig) -> None:
    app = job_app(tui_rig, "no-such-job")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.said("no-such-job", "error"))


async def test_no_color_keeps_marks_and_words(
    tui_rig: TuiRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    await tui_rig.job_at_checkpoint("nc-1")
    app = job_app(tui_rig, "nc-1")
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot)
        assert app.no_color
        assert text_of(app, "#job-phases").startswith("✓ spec →  ● build")
        assert text_of(app, "#job-alert").startswith("Checkpoint:")


# -- keys ----------------------------------------------------------------------------------------
def test_bindings_have_stable_ids_and_leave_the_reserved_keys_free() -> None:
    bindings = JobScreen.BINDINGS
    ids = {b.id for b in bindings}  # type: ignore[union-attr]
    assert {"job.approve", "job.cancel", "job.resume", "job.copy", "job.export",
            "job.back"} <= ids  # fmt: skip
    keys = {k for b in bindings for k in b.key.split(",")}  # type: ignore[union-attr]
    assert not keys & set(RESERVED_KEYS)
    assert not ids & set(RESERVED_KEYS.values())


# -- snapshots -----------------------------------------------------------------------------------
def still(job_id: str) -> Host:
    client = FixedJobsClient()
    return Host(lambda: JobScreen(client, job_id, live=False))


async def _loaded(pilot: Any) -> None:
    await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen) and pilot.app.screen.loaded)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_running_job(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(still("acme-api-job-1001"), terminal_size=size, run_before=_loaded)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_checkpoint_job(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(still("billing-job-1002"), terminal_size=size, run_before=_loaded)


def test_snapshot_escalated_job(snap_compare: Any) -> None:
    assert snap_compare(still("web-job-1003"), terminal_size=(80, 24), run_before=_loaded)


@pytest.mark.parametrize("tab", ["tab-work", "tab-artifacts", "tab-usage"])
def test_snapshot_panels(snap_compare: Any, tab: str) -> None:
    async def ready(pilot: Any) -> None:
        await _loaded(pilot)
        await pilot.pause()  # the log's first focus has settled
        screen = pilot.app.screen
        screen.action_tab(tab)
        if tab == "tab-artifacts":
            viewer = screen.query_one("#artifact-view", MarkdownViewer)
            await until(pilot, lambda: "token bucket" in (viewer.document.source or ""))

    assert snap_compare(still("acme-api-job-1001"), terminal_size=(120, 40), run_before=ready)
