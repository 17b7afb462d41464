"""The Anthropic executor: recorded streams, error translation, the tool loop, steering.

HTTP goes through ``httpx2.MockTransport``; the bytes are the recorded streams in
``shared/fixtures/anthropic`` or SSE built the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx2
import pytest

from engine.config import LocalConfig
from engine.errors import ProviderRateLimited, ProviderRefused, ProviderUnavailable
from engine.phase import (
    PhaseRequest,
    PhaseSignals,
    SteeringChannel,
    ToolContext,
    ToolOutcome,
    ToolSpec,
)
from engine.providers.anthropic import AnthropicExecutor
from engine.providers.anthropic import _conversation as conv
from engine.providers.anthropic._client import ClientKey, make_client, stream_turn
from engine.workflow import parse_workflow
from state import InMemoryStateBackend, Job
from state.models import ConversationMessage

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "anthropic"
KEY = ClientKey(api_key="sk-test", auth_token=None, base_url="http://model.test", stall_seconds=5)

WORKFLOW = """---
display_name: Test
description: one phase
phases:
  - name: code
    agent: agents/code.md
    tier: coding
    subagents:
      - name: reviewer
        agent: agents/reviewer.md
        tier: mini
        tools: [Echo]
---
Do the work.
"""


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def text_stream(text: str, *, usage: Mapping[str, int] | None = None) -> bytes:
    start_usage = {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 0,
                   "cache_creation_input_tokens": 0, **(usage or {})}  # fmt: skip
    return sse(
        {"type": "message_start", "message": {"id": "msg_1", "type": "message",
         "role": "assistant", "model": "claude-sonnet-4-6", "content": [], "stop_reason": None,
         "stop_sequence": None, "usage": start_usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    )  # fmt: skip


def tool_stream(*calls: tuple[str, str, dict[str, Any]]) -> bytes:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_2", "type": "message",
         "role": "assistant", "model": "claude-sonnet-4-6", "content": [], "stop_reason": None,
         "stop_sequence": None, "usage": {"input_tokens": 20, "output_tokens": 1}}},
    ]  # fmt: skip
    for index, (use_id, name, arguments) in enumerate(calls):
        events += [
            {"type": "content_block_start", "index": index,
             "content_block": {"type": "tool_use", "id": use_id, "name": name, "input": {}}},
            {"type": "content_block_delta", "index": index,
             "delta": {"type": "input_json_delta", "partial_json": json.dumps(arguments)}},
            {"type": "content_block_stop", "index": index},
        ]  # fmt: skip
    events += [
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 12}},
        {"type": "message_stop"},
    ]  # fmt: skip
    return sse(*events)


Answer = httpx2.Response | Callable[[httpx2.Request], Any]


class FakeApi:
    """Answers each POST /v1/messages with the next scripted response; records the bodies."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []

    async def handler(self, request: httpx2.Request) -> httpx2.Response:
        self.bodies.append(json.loads(request.content))
        answer = self.answers.pop(0)
        if callable(answer):
            answer = await answer(request)
        return answer

    def executor(self) -> AnthropicExecutor:
        async def no_sleep(_seconds: float) -> None:
            await asyncio.sleep(0)

        transport = httpx2.MockTransport(self.handler)
        return AnthropicExecutor(
            env={},
            sleep=no_sleep,
            client_factory=lambda key: make_client(key, transport=transport),
        )


def ok(body: bytes) -> httpx2.Response:
    return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})


def error(status: int, kind: str, message: str, **headers: str) -> httpx2.Response:
    return httpx2.Response(
        status, json={"type": "error", "error": {"type": kind, "message": message}},
        headers=headers,
    )  # fmt: skip


async def turn_from(response: httpx2.Response) -> Any:
    api = FakeApi(response)
    client = make_client(KEY, transport=httpx2.MockTransport(api.handler))
    params = {"model": "claude-sonnet-4-6", "max_tokens": 100,
              "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    return await stream_turn(client, params, stall_seconds=5)


# -- the recorded streams ---------------------------------------------------------------------
async def test_the_recorded_tool_use_stream_gives_text_then_the_tool_call() -> None:
    turn = await turn_from(ok(fixture("messages-stream-tool_use.sse")))
    assert turn.stop_reason == "tool_use"
    assert [block["type"] for block in turn.content] == ["text", "tool_use"]
    assert turn.content[0]["text"] == "I'll check the current weather in Paris for you."
    use = turn.content[1]
    assert use["id"] == "toolu_01NRLabsLyVHZPKxbKvkfSMn"
    assert use["name"] == "get_weather"
    assert use["input"] == {"location": "Paris"}
    assert turn.usage.input_tokens == 377
    assert turn.usage.output_tokens == 65


async def test_the_recorded_text_stream_gives_the_whole_text() -> None:
    turn = await turn_from(ok(fixture("messages-stream-text.sse")))
    assert turn.stop_reason == "end_turn"
    assert [block["type"] for block in turn.content] == ["text"]
    assert turn.content[0]["text"].strip()
    assert turn.usage.output_tokens > 0


# -- errors, translated at the boundary -------------------------------------------------------
async def test_429_becomes_rate_limited_with_its_retry_after() -> None:
    with pytest.raises(ProviderRateLimited) as info:
        await turn_from(error(429, "rate_limit_error", "slow down", **{"retry-after": "2"}))
    assert info.value.retry_after == 2
    assert info.value.kind == "rate-limit"
    assert "slow down" in info.value.message


async def test_529_is_overloaded() -> None:
    with pytest.raises(ProviderRateLimited) as info:
        await turn_from(error(529, "overloaded_error", "Overloaded"))
    assert info.value.kind == "overloaded"
    assert info.value.retry_after is None


async def test_an_error_event_in_the_middle_of_a_stream_is_translated() -> None:
    body = sse(
        {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
         "model": "x", "content": [], "stop_reason": None, "stop_sequence": None,
         "usage": {"input_tokens": 1, "output_tokens": 1}}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )  # fmt: skip
    with pytest.raises(ProviderRateLimited) as info:
        await turn_from(ok(body))
    assert info.value.kind == "overloaded"


@pytest.mark.parametrize(
    ("status", "kind", "hint"),
    [(401, "authentication_error", "ANTHROPIC_API_KEY"), (403, "permission_error", "not allowed"),
     (400, "invalid_request_error", "credit balance")],
)  # fmt: skip
async def test_refusals_carry_the_providers_message(status: int, kind: str, hint: str) -> None:
    message = "Your credit balance is too low" if status == 400 else "nope"
    with pytest.raises(ProviderRefused) as info:
        await turn_from(error(status, kind, message))
    assert hint in info.value.message


async def test_5xx_and_a_broken_connection_are_worth_retrying() -> None:
    with pytest.raises(ProviderUnavailable):
        await turn_from(error(500, "api_error", "boom"))

    def broken(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    client = make_client(KEY, transport=httpx2.MockTransport(broken))
    with pytest.raises(ProviderUnavailable, match="could not reach"):
        await stream_turn(client, {"model": "m", "max_tokens": 1,
                                   "messages": [{"role": "user", "content": "x"}]},
                          stall_seconds=5)  # fmt: skip


# -- the conversation -------------------------------------------------------------------------
def test_a_session_cut_after_a_tool_request_gets_results_before_the_kickoff() -> None:
    history = [
        ConversationMessage(role="user", content="do it"),
        ConversationMessage(role="assistant", content=[
            {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]),
    ]  # fmt: skip
    messages = conv.open_session(history, "Resume the phase.")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    last = messages[-1]["content"]
    assert last[0]["type"] == "tool_result" and last[0]["tool_use_id"] == "t1"
    assert last[0]["is_error"] is True
    assert last[-1] == {"type": "text", "text": "Resume the phase."}


def test_breakpoints_sit_on_the_last_two_user_messages_and_are_never_stored() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "a"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
        {"role": "user", "content": [{"type": "text", "text": "c"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "d"}]},
        {"role": "user", "content": [{"type": "text", "text": "e"}]},
    ]
    marked = conv.with_breakpoints(messages)
    flags = ["cache_control" in m["content"][-1] for m in marked]
    assert flags == [False, False, True, False, True]
    assert not any("cache_control" in m["content"][-1] for m in messages)
    assert all(
        "cache_control" not in block
        for message in conv.stored(marked)
        for block in message.content
        if isinstance(block, dict)
    )


# -- the tool loop ----------------------------------------------------------------------------
class EchoTools:
    """A tool box with ``Echo`` (returns its text) and ``Fail`` (an error result)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.gate: asyncio.Event | None = None

    def specs(self) -> list[ToolSpec]:
        schema = {"type": "object", "properties": {"text": {"type": "string"}}}
        return [ToolSpec("Echo", "echo", schema), ToolSpec("Fail", "fail", schema)]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        self.calls.append((name, dict(arguments)))
        if self.gate is not None:
            await self.gate.wait()
        if name == "Echo":
            return ToolOutcome(str(arguments.get("text", "")))
        if name == "Fail":
            return ToolOutcome("it failed", is_error=True)
        return ToolOutcome(f"unknown tool {name!r}", is_error=True)


@pytest.fixture
async def store() -> Any:
    async with InMemoryStateBackend() as backend:
        yield backend


async def phase_request(
    tmp_path: Path, store: InMemoryStateBackend, tools: EchoTools, **config: Any
) -> PhaseRequest:
    workflow = parse_workflow(WORKFLOW, path="workflows/t/workflow.md")
    phase = workflow.phase("code")
    job = await store.create_job(Job(id="job-1", workflow_path=workflow.path, phase="code"))
    overlay = tmp_path / "_intelligence"
    (overlay / "agents").mkdir(parents=True)
    (overlay / "agents" / "reviewer.md").write_text("You review code.\n")
    settings = LocalConfig.model_validate({"llm": {"apiKey": "sk-test", **config}})
    signals = PhaseSignals()
    context = ToolContext(job=job, workflow=workflow, phase=phase, signals=signals, store=store,
                          config=settings, job_dir=tmp_path, intelligence_dir=overlay,
                          proposals_dir=tmp_path / "proposals", tenant_id="t")  # fmt: skip
    return PhaseRequest(
        job=job, workflow=workflow, phase=phase, provider="anthropic", model="claude-sonnet-4-6",
        system_prompt="# Current Job\n\n```json\n{\"jobId\": \"job-1\", \"phase\": \"code\"}\n```",
        kickoff="Start the phase.", cwd=tmp_path, intelligence_dir=overlay, tools=tools,
        signals=signals, context=context, steering=SteeringChannel(),
    )  # fmt: skip


async def test_a_phase_runs_tools_until_the_model_ends_its_turn(
    tmp_path: Path, store: InMemoryStateBackend
) -> None:
    tools = EchoTools()
    api = FakeApi(
        ok(tool_stream(("t1", "Echo", {"text": "hello"}), ("t2", "Fail", {}),
                       ("t3", "Nope", {}))),
        ok(fixture("messages-stream-tool_use.sse")),
        ok(text_stream("All done.", usage={"cache_read_input_tokens": 50})),
    )  # fmt: skip
    request = await phase_request(tmp_path, store, tools)
    result = await api.executor().execute_phase(request)

    assert result.stop_reason == "end_turn", result.error
    assert [name for name, _ in tools.calls] == ["Echo", "Fail", "Nope", "get_weather"]
    second = api.bodies[1]["messages"][-1]["content"]
    assert [(b["tool_use_id"], b.get("is_error", False)) for b in second] == [
        ("t1", False), ("t2", True), ("t3", True)]  # fmt: skip
    assert second[0]["content"] == "hello"
    assert result.usage.num_turns == 3
    assert result.usage.input_tokens == 20 + 377 + 10
    assert result.usage.cache_read_input_tokens == 50
    assert result.usage.cost_usd > 0
    # the stable prefix carries breakpoints: the last tool, the system prompt, the conversation
    body = api.bodies[2]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" in body["messages"][-1]["content"][-1]
    # the conversation is kept on the job as it grows, for a resume
    saved = await store.get_job("job-1")
    assert saved is not None and len(saved.conversation_history) == 6
    events = [e.kind for e in await store.read_events("job-1")]
    assert events.count("model_call") == 3
    assert events.count("tool_call") == 4 and events.count("tool_result") == 4


async def test_the_turn_cap_stops_the_phase(tmp_path: Path, store: InMemoryStateBackend) -> None:
    tools = EchoTools()
    api = FakeApi(*(ok(tool_stream((f"t{i}", "Echo", {"text": "x"}))) for i in range(3)))
    request = await phase_request(tmp_path, store, tools, maxTurnsPerPhase=2)
    result = await api.executor().execute_phase(request)
    assert result.stop_reason == "turn_cap"
    assert len(api.bodies) == 2


async def test_a_rate_limit_is_retried_then_parks(
    tmp_path: Path, store: InMemoryStateBackend
) -> None:
    tools = EchoTools()
    api = FakeApi(
        error(429, "rate_limit_error", "slow", **{"retry-after": "1"}),
        *(error(529, "overloaded_error", "Overloaded") for _ in range(3)),
    )
    request = await phase_request(
        tmp_path, store, tools, retry={"maxAttempts": 3, "rateLimitParkSeconds": 30}
    )
    result = await api.executor().execute_phase(request)
    assert result.stop_reason == "rate_limited"
    assert result.rate_limit is not None and result.rate_limit.kind == "overloaded"
    assert result.rate_limit.retry_attempt == 3
    log = await store.get_log("job-1")
    assert sum("retrying in" in line for line in log) == 2


async def test_a_refusal_ends_the_phase_with_the_providers_message(
    tmp_path: Path, store: InMemoryStateBackend
) -> None:
    api = FakeApi(error(401, "authentication_error", "invalid x-api-key"))
    request = await phase_request(tmp_path, store, EchoTools())
    result = await api.executor().execute_phase(request)
    assert result.stop_reason == "error"
    assert result.error is not None and "invalid x-api-key" in result.error


async def test_no_credentials_is_a_clear_error(tmp_path: Path, store: InMemoryStateBackend) -> None:
    request = await phase_request(tmp_path, store, EchoTools())
    request.context.config.llm.api_key = None
    result = await AnthropicExecutor(env={}).execute_phase(request)
    assert result.stop_reason == "error"
    assert result.error is not None and "ANTHROPIC_API_KEY" in result.error


async def test_a_steer_message_reaches_the_model_at_the_next_tool_boundary(
    tmp_path: Path, store: InMemoryStateBackend
) -> None:
    tools = EchoTools()
    request = await phase_request(tmp_path, store, tools)

    async def steer_then_answer(_request: httpx2.Request) -> httpx2.Response:
        request.steering.push("use the v2 API")
        return ok(tool_stream(("t1", "Echo", {"text": "x"})))

    api = FakeApi(steer_then_answer, ok(text_stream("ok")))
    result = await api.executor().execute_phase(request)
    assert result.stop_reason == "end_turn"
    last = api.bodies[1]["messages"][-1]["content"]
    assert last[0]["type"] == "tool_result"
    assert last[-1]["text"].startswith("[DEVELOPER MESSAGE] use the v2 API")


async def test_an_interrupt_cancels_the_running_tool_and_delivers_the_message(
    tmp_path: Path, store: InMemoryStateBackend
) -> None:
    tools = EchoTools()
    tools.gate = asyncio.Event()  # the tool never finishes by itself
    request = await phase_request(tmp_path, store, tools)

    async def interrupt_later(_request: httpx2.Request) -> httpx2.Response:
        asyncio.get_running_loop().call_soon(request.steering.interrupt, "stop, wrong file")
        return ok(tool_stream(("t1", "Echo", {"text": "x"}), ("t2", "Echo", {"text": "y"})))

    api = FakeApi(interrupt_later, ok(text_stream("ok")))
    async with asyncio.timeout(5):
        result = await api.executor().execute_phase(request)
    assert result.stop_reason == "end_turn"
    last = api.bodies[1]["messages"][-1]["content"]
    assert [b.get("is_error") for b in last if b["type"] == "tool_result"] == [True, True]
    assert "interrupted" in last[0]["content"]
    assert last[-1]["text"] == "[DEVELOPER MESSAGE] stop, wrong file"


async def test_an_urgent_pause_cancels_the_stream_and_stops_the_phase(
    tmp_path: Path, store: InMemoryStateBackend
) -> None:
    request = await phase_request(tmp_path, store, EchoTools())
    started = asyncio.Event()

    async def hang(_request: httpx2.Request) -> httpx2.Response:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    api = FakeApi(hang)
    task = asyncio.create_task(api.executor().execute_phase(request))
    async with asyncio.timeout(5):
        await started.wait()
        request.steering.request_pause(urgent=True)
        result = await task
    assert result.stop_reason == "interrupted"
    assert result.error == "paused by developer"
    # the conversation ends with the kickoff, ready to resume
    assert result.conversation[-1].role == "user"


async def test_a_subagent_runs_its_own_loop_with_narrowed_tools(
    tmp_path: Path, store: InMemoryStateBackend
) -> None:
    tools = EchoTools()
    api = FakeApi(
        ok(tool_stream(("t1", "Task", {"subagent_type": "reviewer", "prompt": "review it"}))),
        ok(tool_stream(("s1", "Fail", {}), ("s2", "Echo", {"text": "looked"}))),
        ok(text_stream("LGTM")),
        ok(text_stream("Reviewed, done.")),
    )
    request = await phase_request(tmp_path, store, tools)
    result = await api.executor().execute_phase(request)
    assert result.stop_reason == "end_turn", result.error
    sub_first = api.bodies[1]
    assert sub_first["system"][0]["text"].startswith("# Subagent: reviewer\n\nYou review code.")
    assert "# Current Job" in sub_first["system"][0]["text"]
    assert [t["name"] for t in sub_first["tools"]] == ["Echo"]  # narrowed, no Task
    assert sub_first["model"] == "claude-haiku-4-5"
    assert tools.calls == [("Echo", {"text": "looked"})]  # Fail is not the subagent's
    final = api.bodies[3]["messages"][-1]["content"][0]
    assert final["tool_use_id"] == "t1" and final["content"] == "LGTM"
    assert result.usage.num_turns == 4  # the subagent's turns count toward the phase


async def test_chat_streams_tokens_and_reports_usage() -> None:
    from engine.phase import ChatRequest

    api = FakeApi(ok(fixture("messages-stream-text.sse")))
    tokens: list[str] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    config = LocalConfig.model_validate({"llm": {"apiKey": "sk-test"}})
    result = await api.executor().chat(
        ChatRequest(system_prompt="You plan jobs.", messages=[{"role": "user", "content": "hi"}],
                    model="claude-haiku-4-5", on_token=on_token),
        config,
    )  # fmt: skip
    assert result.text == "".join(tokens) and result.text.strip()
    assert result.usage.output_tokens > 0
    assert "tools" not in api.bodies[0]


async def test_a_deprecated_model_is_reported_in_the_log_not_printed(
    tmp_path: Path, store: InMemoryStateBackend
) -> None:
    request = await phase_request(tmp_path, store, EchoTools())
    request.model = "claude-sonnet-4-5"  # end-of-life 2026-11-30 in the SDK's table
    api = FakeApi(ok(text_stream("ok")))
    result = await api.executor().execute_phase(request)  # warnings are errors in pytest
    assert result.stop_reason == "end_turn"
    log = await store.get_log("job-1")
    assert any("claude-sonnet-4-5 is deprecated" in line for line in log)
