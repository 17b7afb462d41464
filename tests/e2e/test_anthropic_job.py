"""A whole job on the real executor: the anthropic SDK → the scripted model endpoint over
loopback HTTP → real built-in and domain tools in a real git repository → ``complete``.

Also the faults a real provider throws (429 with retry-after, repeated 529s, a stalled stream,
an auth error) and a developer interrupt killing a running ``Bash`` with its children.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.model_server import ModelScript, RecordedRequest, ScriptedModelServer
from engine.runtime import Engine
from state import Job, JobInput, JobStatus
from tests.support.engine import write_config, write_intelligence

WORKFLOW_PATH = "workflows/test/workflow.md"
CODE_TOOLS = "[Read, Write, Edit, Bash, mcp__coro__update_work_item, mcp__coro__log]"
WORKFLOW = f"""---
display_name: Rate limiter lane
description: Spec, code and review a small change.
phases:
  - name: spec
    agent: agents/spec.md
    tier: mini
    tools: [Write, Read, mcp__coro__set_work_items, mcp__coro__log]
  - name: code
    agent: agents/build.md
    tier: coding
    tools: {CODE_TOOLS}
  - name: review
    agent: agents/review.md
    tier: mini
    status: reviewing
    tools: [Read, Bash, Task, mcp__coro__update_work_item]
    subagents:
      - name: checker
        agent: agents/other.md
        tier: mini
        tools: [Read]
---
# Rate limiter lane

Write a spec, change the code, review it.
"""

SCRIPT = r"""
phases:
  spec:
    - text: "I'll write the spec."
      tool_calls:
        - name: Write
          input: {file_path: SPEC.md, content: "# Rate limiter\n\nLimit /api/users to 10 req/s.\n"}
        - name: mcp__coro__set_work_items
          input: {workItems: [limiter]}
    - text: "Spec written."
  code:
    - tool_calls:
        - name: Bash
          input:
            command: >-
              git init -q app && cd app && git config user.email dev@example.com &&
              git config user.name Dev && printf 'LIMIT = 5\n' > limiter.py &&
              git add . && git commit -qm 'add limiter' && echo committed
        - name: mcp__coro__update_work_item
          input: {name: limiter, status: in-progress}
    - when:
        - if_result_contains: committed
          tool_calls:
            - name: Edit
              input: {file_path: app/limiter.py, old_string: "LIMIT = 5", new_string: "LIMIT = 10"}
        - text: "The commit failed."
    - tool_calls:
        - name: Bash
          input:
            command: "cd app && git commit -qam 'raise the limit' && git log --oneline | wc -l"
    - text: "Code done."
  review:
    - tool_calls:
        - name: Task
          input:
            {subagent_type: checker, description: check the limit, prompt: Check app/limiter.py}
    - when:
        - if_result_contains: "limit is 10"
          tool_calls:
            - name: mcp__coro__update_work_item
              input: {name: limiter, status: complete}
    - text: "Approved."
subagents:
  checker:
    - tool_calls:
        - name: Read
          input: {file_path: app/limiter.py}
    - when:
        - if_result_contains: "LIMIT = 10"
          text: "limit is 10: OK"
        - text: "the limit is wrong"
"""


def configure(
    home: Path,
    base_url: str,
    mcp_servers: dict[str, Any] | None = None,
    workflow: str = WORKFLOW,
    **retry: Any,
) -> None:
    write_intelligence(home, workflow)
    write_config(
        home,
        mcpServers=mcp_servers or {},
        llm={"defaultProvider": "anthropic", "apiKey": "sk-test-e2e", "baseUrl": base_url,
             "retry": {"initialDelaySeconds": 0.05, **retry}},
        jobs={"idleWatchdog": {"enabled": False}},
    )  # fmt: skip


@pytest.fixture
async def engine_for(coro_home: Path) -> AsyncIterator[Any]:
    engines: list[Engine] = []

    async def make(
        server: ScriptedModelServer,
        mcp_servers: dict[str, Any] | None = None,
        workflow: str = WORKFLOW,
        **retry: Any,
    ) -> Engine:
        configure(coro_home, server.base_url, mcp_servers, workflow, **retry)
        engine = Engine(coro_home, watch_config=False)  # executors from the entry points
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.stop(grace=1)


def script(text: str = SCRIPT, *, faults: list[dict[str, Any]] | None = None) -> ModelScript:
    if faults:
        text += "\n" + yaml.safe_dump({"faults": faults})
    return ModelScript.from_yaml(text, source="test")


async def run_job(engine: Engine) -> Job:
    job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH, params={"repo": "a/b"}))
    async with asyncio.timeout(30):
        return await engine.wait_until(job.id, lambda j: j.status.is_terminal or j.status in (
            JobStatus.ESCALATED, JobStatus.AWAITING_DEVELOPER_INPUT))  # fmt: skip


def phase_requests(server: ScriptedModelServer, phase: str) -> list[RecordedRequest]:
    return [r for r in server.requests if r.phase == phase and r.subagent is None]


async def test_a_job_runs_on_the_real_executor_to_complete(engine_for: Any) -> None:
    async with ScriptedModelServer(script(SCRIPT)) as server:
        engine = await engine_for(server)
        job = await run_job(engine)
        assert job.status is JobStatus.COMPLETE, job.escalation_message

        job_dir = engine.paths.job_dir(job.id)
        assert (job_dir / "SPEC.md").read_text().startswith("# Rate limiter")
        assert (job_dir / "app" / "limiter.py").read_text() == "LIMIT = 10\n"
        commits = subprocess.run(
            ["git", "-C", str(job_dir / "app"), "log", "--format=%s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        assert commits[:2] == ["raise the limit", "add limiter"]

        # usage per phase, from the endpoint's own usage reports
        by_phase = {u.phase: u for u in job.phase_usage}
        assert list(by_phase) == ["spec", "code", "review"]
        for used in by_phase.values():
            prompt = used.input_tokens + used.cache_read_input_tokens
            assert prompt + used.cache_creation_input_tokens > 0 and used.output_tokens > 0
        assert by_phase["code"].num_turns == 4
        assert by_phase["review"].num_turns == 3 + 2  # its own and the subagent's
        assert job.token_usage.total_cost_usd > 0

        # what the executor sent: tool results, the subagent's own prompt, cache breakpoints
        code = phase_requests(server, "code")
        results = [b for b in code[1].body["messages"][-1]["content"] if b["type"] == "tool_result"]
        assert "committed" in results[0]["content"] and not results[0].get("is_error")
        sub = [r for r in server.requests if r.subagent == "checker"]
        assert len(sub) == 2 and [t["name"] for t in sub[0].body["tools"]] == ["Read"]
        review = phase_requests(server, "review")
        task_result = review[1].body["messages"][-1]["content"][0]
        assert task_result["content"] == "limit is 10: OK"
        for request in code[1:]:
            assert request.body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
            assert request.body["system"][-1]["cache_control"] == {"type": "ephemeral"}
        calls = await engine.store.read_events(job.id, kinds=["model_call"], limit=1_000)
        code_calls = [e.data for e in calls if e.data.get("turn", 0) > 1
                      and not e.data.get("subagent")]  # fmt: skip
        assert code_calls and all(c["cacheReadInputTokens"] > 0 for c in code_calls)
        # the key never reaches the log or the recorded headers
        events = await engine.store.read_events(job.id, limit=10_000)
        assert "sk-test-e2e" not in str([e.data for e in events])
        assert all(r.headers.get("authorization") in (None, "***") for r in server.requests)


async def test_a_429_is_retried_after_its_retry_after(engine_for: Any) -> None:
    seen: list[float] = []
    model = script(faults=[{"phase": "spec", "step": 0, "kind": "rate_limit", "retry_after": 2}])
    async with ScriptedModelServer(model, on_request=lambda r: seen.append(time.monotonic())) \
            as server:  # fmt: skip
        engine = await engine_for(server)
        job = await run_job(engine)
        assert job.status is JobStatus.COMPLETE, job.escalation_message
        first = server.requests[0]
        assert first.status == 429
        assert seen[1] - seen[0] >= 2.0
        log = await engine.store.get_log(job.id)
        assert any("rate limited" in line and "retrying in 2.0 s" in line for line in log)


async def test_repeated_overloads_park_the_job_and_it_resumes_by_itself(engine_for: Any) -> None:
    model = script(faults=[{"phase": "code", "step": 0, "kind": "overloaded", "times": 3}])
    async with ScriptedModelServer(model) as server:
        engine = await engine_for(server, maxAttempts=2, rateLimitParkSeconds=1)
        job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH))
        async with asyncio.timeout(30):
            parked = await engine.wait_until(
                job.id, lambda j: j.status is JobStatus.AWAITING_RATE_LIMIT
            )
            assert parked.rate_limit_info is not None
            assert parked.rate_limit_info.kind == "overloaded"
            done = await engine.wait_until(job.id, lambda j: j.status.is_terminal)
        assert done.status is JobStatus.COMPLETE, done.escalation_message
        assert [r.fault for r in phase_requests(server, "code")].count("overloaded") == 3
        statuses = await engine.store.read_events(job.id, kinds=["status"], limit=1_000)
        assert [e.data["to"] for e in statuses].count("awaiting-rate-limit") == 1


async def test_a_stalled_stream_is_abandoned_and_retried(engine_for: Any) -> None:
    model = script(faults=[{"phase": "spec", "step": 1, "kind": "stall", "stall_seconds": 20}])
    async with ScriptedModelServer(model) as server:
        engine = await engine_for(server, stallSeconds=0.5)
        job = await run_job(engine)
        assert job.status is JobStatus.COMPLETE, job.escalation_message
        assert [r.fault for r in phase_requests(server, "spec")].count("stall") == 1
        log = await engine.store.get_log(job.id)
        assert any("stalled" in line and "retrying" in line for line in log)


async def test_an_auth_error_escalates_with_the_providers_message(engine_for: Any) -> None:
    model = script(faults=[{"kind": "auth", "times": -1, "message": "invalid x-api-key"}])
    async with ScriptedModelServer(model) as server:
        engine = await engine_for(server)
        job = await run_job(engine)
        assert job.status is JobStatus.ESCALATED
        assert job.escalation_message is not None
        assert "invalid x-api-key" in job.escalation_message
        assert len(server.requests) == 1  # a refusal is not retried


SLEEPERS = ({b"sleep", b"601.5"}, {b"sleep", b"602.5"})


def _sleepers() -> list[int]:
    """The pids of the two ``sleep`` processes the scripted ``Bash`` call starts."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if set(f.read().split(b"\0")) - {b""} in SLEEPERS:
                    found.append(int(entry))
        except OSError:
            continue
    return found


INTERRUPT_SCRIPT = """
phases:
  spec:
    - text: "Nothing to specify."
  code:
    - tool_calls:
        - name: Bash
          input: {command: "sleep 601.5 & sleep 602.5; wait"}
    - when:
        - if_result_contains: interrupted
          text: "Stopped as asked."
  review:
    - text: "Nothing to review."
"""


async def test_an_interrupt_kills_a_running_bash_and_its_children(engine_for: Any) -> None:
    async with ScriptedModelServer(script(INTERRUPT_SCRIPT)) as server:
        engine = await engine_for(server)
        job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH))
        async with asyncio.timeout(20):
            while len(_sleepers()) < 2:  # both sleeps are running
                await asyncio.sleep(0.02)
        assert engine.runner is not None
        steering = engine.runner.steering(job.id)
        assert steering is not None
        interrupted_at = time.monotonic()
        steering.interrupt("stop: wrong approach")
        async with asyncio.timeout(1):
            while _sleepers():
                await asyncio.sleep(0.01)
        assert time.monotonic() - interrupted_at < 1
        async with asyncio.timeout(20):
            done = await engine.wait_until(job.id, lambda j: j.status.is_terminal)
        assert done.status is JobStatus.COMPLETE
        after = phase_requests(server, "code")[1].body["messages"][-1]["content"]
        assert after[0]["type"] == "tool_result" and after[0]["is_error"] is True
        assert after[-1]["text"] == "[DEVELOPER MESSAGE] stop: wrong approach"


MCP_SCRIPT = """
phases:
  spec:
    - tool_calls:
        - name: mcp__ext__add
          input: {a: 2, b: 40}
        - name: mcp__broken__anything
          input: {}
    - when:
        - if_result_contains: "42"
          text: "The external server answered."
  code:
    - text: "Nothing to code."
  review:
    - text: "Nothing to review."
"""


async def test_external_mcp_servers_start_per_run_and_serve_the_phase(engine_for: Any) -> None:
    tools_server = Path(__file__).resolve().parents[1] / "data" / "mcp_servers" / "tools_server.py"
    servers = {
        "ext": {"type": "stdio", "command": sys.executable, "args": [str(tools_server), "stdio"]},
        "broken": {"type": "stdio", "command": "coro-test-no-such-command"},
    }
    async with ScriptedModelServer(script(MCP_SCRIPT)) as server:
        workflow = WORKFLOW.replace(
            "mcp__coro__log]\n  - name: code",
            "mcp__coro__log, mcp__ext__*, mcp__broken__*]\n  - name: code",
        )
        assert workflow != WORKFLOW
        engine = await engine_for(server, servers, workflow)
        job = await run_job(engine)
        assert job.status is JobStatus.COMPLETE, job.escalation_message
        spec = phase_requests(server, "spec")
        offered = [t["name"] for t in spec[0].body["tools"]]
        assert "mcp__ext__add" in offered and "mcp__ext__echo" in offered
        assert not any(name.startswith("mcp__broken__") for name in offered)
        results = spec[1].body["messages"][-1]["content"]
        assert results[0]["content"] == "42" and not results[0].get("is_error")
        assert results[1]["is_error"] is True
        log = await engine.store.get_log(job.id)
        assert any("mcp server 'broken' failed to start" in line for line in log)


PAUSE_SCRIPT = """
phases:
  spec:
    - text: "Nothing to specify."
  code:
    - tool_calls:
        - name: Bash
          input: {command: "sleep 0.5 && echo slept"}
    - text: "Paused? Fine."
    - text: "Back at it, as asked."
  review:
    - text: "Nothing to review."
"""


async def test_pause_parks_at_a_safe_boundary_and_a_message_resumes(engine_for: Any) -> None:
    async with ScriptedModelServer(script(PAUSE_SCRIPT)) as server:
        engine = await engine_for(server)
        job = await engine.create_job(JobInput(workflow_path=WORKFLOW_PATH))
        async with asyncio.timeout(20):
            while not _has_tool_call(await engine.store.read_events(job.id, kinds=["tool_call"])):
                await asyncio.sleep(0.02)
            await engine.pause(job.id)
            parked = await engine.wait_until(job.id)
        assert parked.status is JobStatus.AWAITING_DEVELOPER_INPUT
        # the tool finished before the pause took effect: its result is in the session
        results = [b for m in parked.conversation_history for b in m.content
                   if isinstance(b, dict) and b.get("type") == "tool_result"]  # fmt: skip
        assert results and "slept" in results[0]["content"]
        message_id = await engine.message(job.id, "carry on with the tests", mode="steer")
        assert message_id.startswith("msg-")
        async with asyncio.timeout(20):
            done = await engine.wait_until(job.id, lambda j: j.status.is_terminal)
        assert done.status is JobStatus.COMPLETE
        resumed = phase_requests(server, "code")[1].body["messages"]
        assert "carry on with the tests" in json.dumps(resumed[-1])
        # the paused session continued: the tool call and its result are still there
        assert any(b.get("type") == "tool_result" for m in resumed for b in m["content"]
                   if isinstance(b, dict))  # fmt: skip


def _has_tool_call(events: list[Any]) -> bool:
    return any(e.data.get("name") == "Bash" for e in events)
