"""Plan mode end to end: ``POST /intake/stream`` on a real API server, the real Anthropic
executor against the scripted model endpoint, a real git repository on the local SCM, and a
real SQLite file that outlives the engine."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from coro_tui._sse import parse_frames
from engine.api import ApiServer
from engine.intake import parse_turn, visible_text
from engine.intake._tools import IntakeToolBox
from engine.model_server import ModelScript, ScriptedModelServer
from engine.runtime import Engine
from engine.scm.local import LocalScmPlugin
from state import JobStatus
from tests.support.engine import write_config

LIMITS = '"""Request limits for the users API."""\n\nRATE_PER_MINUTE = None  # not enforced yet\n'

READY_BRIEF = {
    "repo": "svc",
    "title": "Rate limit /api/users",
    "description": "Enforce RATE_PER_MINUTE in limits.py for /api/users, with a test.",
    "reviewers": ["alice"],
    "lane": "standard",
    "interactive": False,
}


def readiness(state: str, *questions: str) -> str:
    data = {"state": state, "openQuestions": list(questions), "note": ""}
    return f"<readiness>{json.dumps(data)}</readiness>"


#: Turn 0 reads limits.py and asks; turn 1 writes findings and says ready; turn 2 gives the
#: brief the developer agreed to.
PLAN_SCRIPT: dict[str, Any] = {
    "chat_turns": [
        [
            {
                "text": "Let me look.",
                "tool_calls": [
                    {"name": "scm_list_files", "input": {}},
                    {"name": "scm_read_file", "input": {"path": "limits.py"}},
                ],
            },
            {
                "when": [
                    {
                        "if_result_contains": "RATE_PER_MINUTE = None",
                        "text": "limits.py declares RATE_PER_MINUTE but nothing enforces it. "
                        "How many requests a minute?" + readiness("investigating", "the limit"),
                    },
                    {"text": "I could not read limits.py." + readiness("investigating")},
                ]
            },
        ],
        [
            {
                "text": "Sixty it is.\n<findings>\n## Findings\n- `limits.py` has "
                "`RATE_PER_MINUTE = None`.\n</findings>\nShall I write the brief?"
                + readiness("ready")
            }
        ],
        [{"text": f"Here it is.<brief>{json.dumps(READY_BRIEF)}</brief>" + readiness("ready")}],
    ],
    "fallback": {"text": "Nothing more to say." + readiness("ready")},
}


@dataclass
class Plan:
    engine: Engine
    server: ApiServer
    model: ScriptedModelServer
    client: httpx2.AsyncClient
    home: Path

    async def turn(
        self, session: str, messages: list[dict[str, str]], **extra: Any
    ) -> list[tuple[str, dict[str, Any]]]:
        body = {"sessionId": session, "messages": messages, **extra}
        async with self.client.stream("POST", "/intake/stream", json=body) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line async for line in response.aiter_lines()]
        return [(f.event or "message", f.json()) for f in parse_frames(lines) if f.data]

    def chat_requests(self) -> list[Any]:
        return [r for r in self.model.requests if r.job_id is None]


def seed(local_root: Path, work: Path) -> None:
    work.mkdir(parents=True)
    (work / "limits.py").write_text(LIMITS)
    (work / "README.md").write_text("# svc\n")
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-qm", "init"],
    ):
        subprocess.run(["git", *args], cwd=work, check=True, capture_output=True)


@contextlib.asynccontextmanager
async def plan_rig(
    home: Path, script: dict[str, Any], **config: Any
) -> AsyncIterator[Callable[[], Plan]]:
    async with ScriptedModelServer(ModelScript.model_validate(script)) as model:
        write_config(
            home,
            llm={
                "defaultProvider": "anthropic",
                "apiKey": "sk-test-plan",
                "baseUrl": model.base_url,
            },
            jobs={"idleWatchdog": {"enabled": False}},
            **config,
        )
        engine = Engine(home, watch_config=False)
        await engine.start()
        try:
            local = engine.scm.plugin("local")
            assert isinstance(local, LocalScmPlugin)
            bare = await local.create_repo("svc")
            work = home.parent / "svc-work"
            if not work.exists():
                seed(local.root, work)
            subprocess.run(["git", "push", "-q", str(bare), "main"], cwd=work, check=True)
            async with ApiServer(engine, port=0, heartbeat_seconds=0.5) as server:
                headers = {"Authorization": f"Bearer {server.token}"}
                async with httpx2.AsyncClient(
                    base_url=server.url, headers=headers, timeout=30
                ) as client:
                    yield lambda: Plan(engine, server, model, client, home)
        finally:
            await engine.stop(grace=1)


@pytest.fixture
async def plan(coro_home: Path) -> AsyncIterator[Plan]:
    async with plan_rig(coro_home, PLAN_SCRIPT) as make:
        yield make()


def kinds(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [kind for kind, _ in events]


def reply(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(data["text"] for kind, data in events if kind == "token")


# -- the whole way: investigate, ready, brief, dispatch ------------------------------------------
async def test_a_plan_reads_the_repository_reaches_ready_and_dispatches_a_job(plan: Plan) -> None:
    history: list[dict[str, str]] = [{"role": "user", "content": "Rate-limit /api/users in svc"}]
    first = await plan.turn("p1", history, context={"repo": "svc"})
    assert kinds(first)[0] == "session"
    starts = [d for k, d in first if k == "tool_start"]
    ends = [d for k, d in first if k == "tool_end"]
    assert [d["name"] for d in starts] == ["scm_list_files", "scm_read_file"]
    assert all(d["ok"] for d in ends), ends
    assert "limits.py" in ends[0]["summary"] and "RATE_PER_MINUTE" in ends[1]["summary"]
    done = first[-1][1]
    assert first[-1][0] == "done"
    assert done["readiness"]["state"] == "investigating"
    assert done["readiness"]["openQuestions"] == ["the limit"]
    assert done["turns"] == 1 and done["toolRounds"] == 1
    assert done["usage"]["outputTokens"] > 0 and done["sessionTokens"] > 0
    text = reply(first)
    assert text.startswith("Let me look.\n\nlimits.py declares")
    assert visible_text(text).endswith("How many requests a minute?")

    # The tools read the SCM's copy: the model saw the file's numbered lines.
    follow_up = plan.chat_requests()[1].body
    results = follow_up["messages"][-1]["content"]
    assert "RATE_PER_MINUTE = None" in results[1]["content"]

    history += [{"role": "assistant", "content": text}, {"role": "user", "content": "60"}]
    second = await plan.turn("p1", history, context={"repo": "svc"})
    done = second[-1][1]
    assert done["readiness"]["state"] == "ready" and "RATE_PER_MINUTE" in done["findings"]
    assert done["brief"] is None

    history += [{"role": "assistant", "content": reply(second)},
                {"role": "user", "content": "Yes, write it"}]  # fmt: skip
    third = await plan.turn("p1", history, context={"repo": "svc"})
    done = third[-1][1]
    assert done["brief"]["repo"] == "svc" and done["briefErrors"] == []
    assert done["brief"]["workflowPath"] == "workflows/job/workflow.md"

    saved = (await plan.client.get("/intake/sessions/p1")).json()
    assert saved["status"] == "open" and saved["turns"] == 3 and len(saved["messages"]) == 6

    response = await plan.client.post("/intake/sessions/p1/dispatch", json={})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["triggerSource"] == "plan"
    assert job["params"]["repo"] == "svc" and job["params"]["reviewers"] == ["alice"]
    assert "RATE_PER_MINUTE" in job["params"]["planFindings"]
    findings = Path(job["params"]["planContextDir"]) / "findings.md"
    assert "RATE_PER_MINUTE" in findings.read_text()
    with anyio.fail_after(20):
        started = await plan.engine.wait_until(job["jobId"], lambda j: j.status != JobStatus.QUEUED)
    assert started.phase is not None
    saved = (await plan.client.get("/intake/sessions/p1")).json()
    assert saved["status"] == "dispatched" and saved["jobId"] == job["jobId"]
    again = await plan.client.post("/intake/sessions/p1/dispatch", json={})
    assert again.status_code == 409 and job["jobId"] in again.json()["error"]
    listed = (await plan.client.get("/intake/sessions")).json()["sessions"]
    assert [s["id"] for s in listed] == ["p1"] and "messages" not in listed[0]


async def test_a_local_checkout_is_read_in_place(plan: Plan) -> None:
    work = plan.home.parent / "svc-work"
    (work / "notes.txt").write_text("uncommitted\n")
    events = await plan.turn(
        "p2", [{"role": "user", "content": "look"}], context={"repoPath": str(work)}
    )
    ends = [d for k, d in events if k == "tool_end"]
    assert "notes.txt" in ends[0]["summary"]  # the working tree, not a commit


async def test_an_edited_brief_is_checked_field_by_field(plan: Plan) -> None:
    await plan.turn("p3", [{"role": "user", "content": "hi"}], context={"repo": "svc"})
    no_brief = await plan.client.post("/intake/sessions/p3/dispatch", json={})
    assert no_brief.status_code == 409 and "no brief" in no_brief.json()["error"]
    bad = await plan.client.post(
        "/intake/sessions/p3/dispatch", json={"brief": {"repo": "svc", "description": " "}}
    )
    assert bad.status_code == 422 and bad.json()["field"] == "description"
    lane = await plan.client.post(
        "/intake/sessions/p3/dispatch",
        json={"brief": {**READY_BRIEF, "workflowPath": "workflows/nope/workflow.md"}},
    )
    assert lane.status_code == 422 and lane.json()["field"] == "workflowPath"
    ok = await plan.client.post(
        "/intake/sessions/p3/dispatch", json={"brief": {**READY_BRIEF, "lane": "fast"}}
    )
    assert ok.status_code == 201 and ok.json()["workflowPath"] == "workflows/job-fast/workflow.md"


# -- budgets -------------------------------------------------------------------------------------
async def test_the_turn_cap_is_told_and_no_model_call_is_made(coro_home: Path) -> None:
    async with plan_rig(coro_home, PLAN_SCRIPT, intake={"maxTurns": 2}) as make:
        plan = make()
        history = [{"role": "user", "content": "start"}]
        first = await plan.turn("cap", history, context={"repo": "svc"})
        assert first[-1][1]["wrapUp"] is None
        history += [{"role": "assistant", "content": reply(first)},
                    {"role": "user", "content": "more"}]  # fmt: skip
        second = await plan.turn("cap", history, context={"repo": "svc"})
        notices = [d for k, d in second if k == "notice" and d["kind"] == "budget"]
        assert notices and "last turn" in notices[0]["message"]
        assert second[-1][1]["exhausted"] is not None
        # The model was told to wrap up on the last turn.
        last_system = plan.chat_requests()[-1].body["system"]
        assert "Wrap up now" in json.dumps(last_system)
        calls = len(plan.chat_requests())
        history += [{"role": "assistant", "content": reply(second)},
                    {"role": "user", "content": "and more"}]  # fmt: skip
        third = await plan.turn("cap", history, context={"repo": "svc"})
        assert kinds(third) == ["session", "error"]
        assert third[-1][1]["reason"] == "budget" and third[-1][1]["budget"] == "turns"
        assert "2 turns" in third[-1][1]["message"]
        assert len(plan.chat_requests()) == calls


async def test_the_tool_round_cap_makes_the_model_answer(coro_home: Path) -> None:
    looping = {
        "chat_turns": [[{"tool_calls": [{"name": "list_past_jobs", "input": {}}]}] * 5
                       + [{"text": "Answering now." + readiness("investigating")}]],
    }  # fmt: skip
    async with plan_rig(coro_home, looping, intake={"toolRoundsPerTurn": 2}) as make:
        plan = make()
        events = await plan.turn("loop", [{"role": "user", "content": "go"}])
        assert len([k for k in kinds(events) if k == "tool_start"]) == 2
        done = events[-1][1]
        assert done["toolRounds"] == 2 and "2 tool rounds" in done["stopped"]
        last = plan.chat_requests()[-1].body
        assert last["tool_choice"] == {"type": "none"}
        assert "not run" in json.dumps(last["messages"][-1])


async def test_without_credentials_the_client_hears_no_llm(
    coro_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    async with plan_rig(coro_home, PLAN_SCRIPT) as make:
        plan = make()
        plan.engine.config.llm.api_key = None
        events = await plan.turn("nollm", [{"role": "user", "content": "hi"}])
        assert events[-1][0] == "error" and events[-1][1]["reason"] == "no-llm"
        assert plan.chat_requests() == []


# -- persistence -----------------------------------------------------------------------------------
async def test_a_plan_survives_a_restart_and_goes_on(coro_home: Path) -> None:
    history = [{"role": "user", "content": "Rate-limit /api/users"}]
    async with plan_rig(coro_home, PLAN_SCRIPT) as make:
        first = await make().turn("keep", history, context={"repo": "svc"})
    async with plan_rig(coro_home, PLAN_SCRIPT) as make:
        plan = make()
        saved = (await plan.client.get("/intake/sessions/keep")).json()
        assert saved["messages"] == [*history, {"role": "assistant", "content": reply(first)}]
        assert saved["readiness"]["state"] == "investigating" and saved["turns"] == 1
        goes_on = await plan.turn(
            "keep", [*saved["messages"], {"role": "user", "content": "60"}], context={"repo": "svc"}
        )
        assert goes_on[-1][1]["turns"] == 2 and goes_on[-1][1]["readiness"]["state"] == "ready"


async def test_sessions_expire_and_cannot_go_on(coro_home: Path) -> None:
    async with plan_rig(coro_home, PLAN_SCRIPT, intake={"sessionExpiryHours": 0.0001}) as make:
        plan = make()
        await plan.turn("old", [{"role": "user", "content": "hi"}])
        await anyio.sleep(0.5)
        body = {"sessionId": "old", "messages": [{"role": "user", "content": "again"}]}
        refused = await plan.client.post("/intake/stream", json=body)
        assert refused.status_code == 409 and "expired" in refused.json()["error"]
        assert (await plan.client.get("/intake/sessions/old")).json()["status"] == "expired"


async def test_bad_requests_name_the_field(plan: Plan) -> None:
    cases = [
        ({"sessionId": "a b", "messages": [{"role": "user", "content": "x"}]}, "sessionId"),
        ({"sessionId": "ok", "messages": []}, "messages"),
        ({"sessionId": "ok", "messages": [{"role": "assistant", "content": "x"}]}, "messages"),
        ({"sessionId": "ok", "messages": [{"role": "bot", "content": "x"}]}, "messages.0.role"),
    ]
    for body, field in cases:
        response = await plan.client.post("/intake/stream", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["field"] == field
    abandon = await plan.client.request("DELETE", "/intake/sessions/nope", json={})
    assert abandon.status_code == 404


# -- the tools' bounds -----------------------------------------------------------------------------
async def test_tools_stay_inside_the_repository(plan: Plan, tmp_path: Path) -> None:
    from engine.intake._tools import RepoView

    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "a.py").write_text("x = 1\n" * 3)
    (tmp_path / "secret.txt").write_text("top secret\n")
    (repo / "link.txt").symlink_to(tmp_path / "secret.txt")
    (repo / ".git").mkdir()
    tools = IntakeToolBox(
        config=plan.engine.config, store=plan.engine.store, repo=RepoView(repo, "repo")
    )
    for path in ("../secret.txt", "/etc/passwd", "link.txt", ".git/config"):
        outcome = await tools.call("scm_read_file", {"path": path})
        assert outcome.is_error and "top secret" not in outcome.text, path
    read = await tools.call("scm_read_file", {"path": "src/a.py", "startLine": 2, "maxLines": 1})
    assert read.text.splitlines()[0] == "    2  x = 1" and "startLine=3" in read.text
    found = await tools.call("scm_search_code", {"query": "secret"})
    assert found.text == "no matches"  # the symlink is not followed
    wrong = await tools.call("scm_read_file", {"file": "a.py"})
    assert wrong.is_error and "path" in wrong.text


def test_tags_are_read_and_hidden() -> None:
    text = 'Hi.\n<findings>\n## F\n</findings>\n<readiness>{"state": "ready"}</readiness>'
    tags = parse_turn(text)
    assert tags.readiness is not None and tags.readiness.state == "ready"
    assert tags.findings == "## F" and tags.problems == []
    assert visible_text(text) == "Hi."
    assert visible_text('Hi. <readiness>{"sta') == "Hi."
    assert visible_text("Hi. <rea") == "Hi."
    assert visible_text("a < b") == "a < b"
    broken = parse_turn('<brief>{"repo": ""}</brief>')
    assert "the reply has no <readiness> tag" in broken.problems
    assert any(p.startswith("brief.repo") for p in broken.problems)
    assert any(p.startswith("brief.description") for p in broken.problems)
