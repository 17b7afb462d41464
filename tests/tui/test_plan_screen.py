"""The plan screen against a real engine (its plan service on the real Anthropic executor, the
scripted model endpoint and a git repository on the local SCM), through both client kinds, and
its snapshots over a fixed client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Markdown, Static, TextArea

from coro_tui.client import EngineClient
from coro_tui.screens._plan_parts import StreamingReply
from coro_tui.screens.job import JobScreen
from coro_tui.screens.new_job import NewJobScreen
from coro_tui.screens.plan import PlanScreen, new_session_id
from engine.runtime import Engine
from tests.integration.test_intake import PLAN_SCRIPT, READY_BRIEF, plan_rig, readiness
from tests.tui._doubles import FixedClient, FixedPlanClient, ScreenHost
from tests.tui._jobs import Host, until


@dataclass
class PlanRig:
    kind: str
    engine: Engine
    client: EngineClient


@pytest.fixture(params=["local", "remote"])
async def plan_tui(request: pytest.FixtureRequest, coro_home: Path) -> AsyncIterator[PlanRig]:
    from coro_tui.client import LocalClient, RemoteClient

    async with plan_rig(coro_home, PLAN_SCRIPT) as make:
        plan = make()
        client: EngineClient
        if request.param == "local":
            client = LocalClient(plan.engine)
        else:
            client = RemoteClient(plan.server.url, plan.server.token)
        try:
            yield PlanRig(request.param, plan.engine, client)
        finally:
            await client.aclose()


def text_of(screen: PlanScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def transcript(screen: PlanScreen) -> str:
    """The transcript as a reader sees it: messages, replies, tool rows and lines."""
    parts: list[str] = []
    for child in screen.transcript.children:
        if isinstance(child, (Markdown, StreamingReply)):
            parts.append(child.source)
        elif isinstance(child, Static):
            parts.append(str(child.render()))
    return "\n".join(parts)


async def send(pilot: Pilot[Any], screen: PlanScreen, text: str, turns: int) -> None:
    """Type ``text`` into the message line, ``enter``, and wait for turn ``turns`` to end."""
    line = screen.query_one("#plan-input", Input)
    line.focus()
    line.value = ""
    await pilot.press(*text, "enter")
    await until(pilot, lambda: screen.turns == turns and not screen.streaming)
    await pilot.pause()


# -- the whole way ---------------------------------------------------------------------------------
async def test_a_plan_streams_reaches_a_brief_and_ctrl_d_opens_the_job(plan_tui: PlanRig) -> None:
    app = Host(lambda: PlanScreen(plan_tui.client, repo="svc"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, PlanScreen))
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        assert "· new" in text_of(screen, "#plan-header")

        await send(pilot, screen, "Rate-limit /api/users", turns=1)
        shown = transcript(screen)
        assert "Rate-limit /api/users" in shown
        assert "▸ scm_list_files … ok" in shown
        assert "▸ scm_read_file limits.py … ok" in shown
        assert "How many requests a minute?" in shown and "<readiness>" not in shown
        header = text_of(screen, "#plan-header")
        assert "investigating (1 open question)" in header
        assert "turn 1/8" in header and "/30,000 tokens" in header
        assert not screen.query_one("#plan-cards").display

        await send(pilot, screen, "60", turns=2)
        assert "✓ ready" in text_of(screen, "#plan-header")
        findings = screen.query_one("#findings", Markdown)
        assert "RATE_PER_MINUTE" in findings.source and findings.display
        assert not screen.query_one("#brief-card").display

        await send(pilot, screen, "Yes, write it", turns=3)
        assert screen.query_one("#brief-card").display
        title = screen.query_one("#brief-title", Input)
        assert title.value == READY_BRIEF["title"]
        assert screen.query_one("#brief-description", TextArea).text == READY_BRIEF["description"]
        assert screen.query_one("#brief-reviewers", Input).value == "alice"
        assert [m["role"] for m in screen.messages] == ["user", "assistant"] * 3

        title.focus()
        title.value = ""
        await pilot.press(*"Users API: 60 a minute")
        await pilot.press("ctrl+d")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job_screen = app.screen
        assert isinstance(job_screen, JobScreen)

    job = await plan_tui.engine.store.get_job(job_screen.job_id)
    assert job is not None and job.trigger_source == "plan"
    assert job.params["title"] == "Users API: 60 a minute"
    assert job.params["repo"] == "svc" and job.params["reviewers"] == ["alice"]
    saved = await plan_tui.client.get_plan(screen.session_id)
    assert saved["status"] == "dispatched" and saved["jobId"] == job.id


async def test_a_saved_plan_reopens_where_it_was(plan_tui: PlanRig) -> None:
    session = new_session_id()
    app = Host(lambda: PlanScreen(plan_tui.client, repo="svc"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, PlanScreen))
        first = app.screen
        assert isinstance(first, PlanScreen)
        session = first.session_id
        await send(pilot, first, "Rate-limit /api/users", turns=1)
        await send(pilot, first, "60", turns=2)

    app = Host(lambda: PlanScreen(plan_tui.client, session))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, PlanScreen) and app.screen.loaded)
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        # A reply's Markdown takes its text when it mounts, a refresh or so after loading.
        await until(pilot, lambda: "Sixty it is." in transcript(screen))
        shown = transcript(screen)
        assert "Rate-limit /api/users" in shown and "Sixty it is." in shown
        assert "<findings>" not in shown
        header = text_of(screen, "#plan-header")
        assert "✓ ready" in header and "svc" in header and "turn 2" in header
        assert "RATE_PER_MINUTE" in screen.query_one("#findings", Markdown).source
        assert len(screen.messages) == 4

        await send(pilot, screen, "Yes, write it", turns=3)  # it goes on where it was
        assert screen.query_one("#brief-card").display


async def test_a_refused_turn_says_why_and_gives_the_message_back(plan_tui: PlanRig) -> None:
    plan_tui.engine.config.intake.max_turns = 1
    app = Host(lambda: PlanScreen(plan_tui.client, repo="svc"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, PlanScreen))
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        await send(pilot, screen, "Rate-limit /api/users", turns=1)
        line = screen.query_one("#plan-input", Input)
        await pilot.press(*"60", "enter")
        await until(pilot, lambda: not screen.streaming and "all 1 turns" in transcript(screen))
        assert line.value == "60"  # not lost: it can go to a new plan
        assert len(screen.messages) == 2
        await pilot.press("ctrl+d")
        await pilot.pause()
        assert isinstance(app.screen, PlanScreen)  # no brief: nothing dispatched


# -- reaching it ---------------------------------------------------------------------------------
async def test_ctrl_o_on_the_new_job_dialog_plans_it_first() -> None:
    app = ScreenHost(lambda: NewJobScreen(FixedClient()))
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press(*"acme/svc", "tab", *"Add a health check")
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, PlanScreen))
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        assert screen.repo == "acme/svc" and screen.repo_path is None
        assert screen.query_one("#plan-input", Input).value == "Add a health check"
        assert screen.messages == []  # the developer sends it


def test_session_ids_are_dated_and_distinct() -> None:
    ids = {new_session_id() for _ in range(20)}
    assert len(ids) == 20
    assert all(i.startswith("plan-") and len(i) == len("plan-20260314-120000-ab12") for i in ids)


# -- snapshots -------------------------------------------------------------------------------------
SESSION = "plan-20260314-120000-ab12"
LIMITS = {"maxTurns": 8, "maxSessionTokens": 30000}
FINDINGS = "## Findings\n- `limits.py` has `RATE_PER_MINUTE = None`.\n- Nothing enforces it."
SAVED = {"id": SESSION, "status": "open", "repo": "acme/svc", "messages": [], "turns": 0}


def _mid_stream() -> FixedPlanClient:
    reply = "`limits.py` declares `RATE_PER_MINUTE` but nothing reads it.\n\n- the middle"
    return FixedPlanClient(
        SAVED,
        [
            ("session", {"sessionId": SESSION, "turn": 1, "limits": LIMITS}),
            ("tool_start", {"id": "t1", "name": "scm_list_files", "input": {}}),
            ("tool_end", {"id": "t1", "name": "scm_list_files", "durationMs": 4, "ok": True}),
            ("tool_start", {"id": "t2", "name": "scm_read_file", "input": {"path": "limits.py"}}),
            ("tool_end", {"id": "t2", "name": "scm_read_file", "durationMs": 12, "ok": True}),
            *(("token", {"text": reply[i : i + 7]}) for i in range(0, len(reply), 7)),
        ],
        hold=True,
    )


def _with_brief() -> FixedPlanClient:
    brief = {**READY_BRIEF, "repo": "acme/svc", "workflowPath": "workflows/job/workflow.md"}
    messages = [
        {"role": "user", "content": "Rate-limit /api/users"},
        {"role": "assistant", "content": "How many a minute?" + readiness("investigating")},
        {"role": "user", "content": "60, and write the brief"},
        {
            "role": "assistant",
            "content": f"Sixty it is.<findings>{FINDINGS}</findings>"
            f"<brief>{json.dumps(brief)}</brief>" + readiness("ready"),
        },
    ]
    plan = {**SAVED, "messages": messages, "turns": 2, "sessionTokens": 6120,
            "readiness": {"state": "ready", "openQuestions": [], "note": ""},
            "findings": FINDINGS, "brief": brief,
            "briefErrors": ["brief.reviewers: alice is not a reviewer of acme/svc"]}  # fmt: skip
    return FixedPlanClient(plan)


def test_snapshot_mid_stream(snap_compare: Any) -> None:
    client = _mid_stream()

    async def streaming(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, PlanScreen))
        screen = pilot.app.screen
        assert isinstance(screen, PlanScreen)
        await until(pilot, lambda: screen.loaded)
        await pilot.press(*"Rate-limit /api/users", "enter")
        await until(pilot, lambda: client.held.is_set())
        await until(pilot, lambda: "the middle" in (screen.reply.source if screen.reply else ""))
        await pilot.pause(0.1)

    app = Host(lambda: PlanScreen(client, SESSION))
    assert snap_compare(app, terminal_size=(100, 30), run_before=streaming)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_snapshot_with_a_brief_card(snap_compare: Any, size: tuple[int, int]) -> None:
    async def loaded(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, PlanScreen))
        screen = pilot.app.screen
        assert isinstance(screen, PlanScreen)
        await until(pilot, lambda: screen.loaded)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.1)

    app = Host(lambda: PlanScreen(_with_brief(), SESSION))
    assert snap_compare(app, terminal_size=size, run_before=loaded)
