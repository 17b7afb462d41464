"""The scripted model endpoint over real loopback HTTP, driven by the real ``anthropic`` SDK."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from typer.testing import CliRunner

from coro_tui.cli import app
from engine.model_server import ModelScript, ScriptedModelServer
from tests.conftest import SHARED
from tests.unit.test_model_script import system_for

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = SHARED / "fixtures" / "anthropic"

SCRIPT = """\
chunk_chars: 7
phases:
  code:
    - text: "I'll run the tests."
      tool_calls:
        - name: Bash
          input: {command: "pytest -q", note: "héllo \\"quoted\\"\\n"}
    - when:
        - if_result_contains: failed
          text: Fixing it.
        - text: All green.
"""

EPHEMERAL = {"type": "ephemeral"}
BASH_TOOL = {
    "name": "Bash",
    "description": "Run a command.",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
}


@asynccontextmanager
async def serving(
    yaml_text: str = SCRIPT,
) -> AsyncIterator[tuple[ScriptedModelServer, anthropic.AsyncAnthropic]]:
    async with (
        asyncio.timeout(20),
        ScriptedModelServer(ModelScript.from_yaml(yaml_text)) as server,
        anthropic.AsyncAnthropic(
            api_key="test-key", base_url=server.base_url, max_retries=0
        ) as client,
    ):
        yield server, client


def request(phase: str = "code", **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-test",
        "max_tokens": 512,
        "system": system_for("job-1", phase),
        "messages": [{"role": "user", "content": "Implement the feature."}],
        "tools": [BASH_TOOL],
        **extra,
    }


def follow_up(params: dict[str, Any], message: anthropic.types.Message, result: str) -> Any:
    results = [
        {"type": "tool_result", "tool_use_id": block.id, "content": result}
        for block in message.content
        if block.type == "tool_use"
    ]
    assistant = {
        "role": "assistant",
        "content": [b.model_dump(exclude_none=True) for b in message.content],
    }
    return {
        **params,
        "messages": [*params["messages"], assistant, {"role": "user", "content": results}],
    }


async def test_a_streamed_answer_reads_like_the_real_api() -> None:
    async with serving() as (server, client), client.messages.stream(**request()) as stream:
        texts = [event.text async for event in stream if event.type == "text"]
        message = await stream.get_final_message()
    assert len(texts) > 1 and "".join(texts) == "I'll run the tests."
    text, tool = message.content
    assert text.type == "text" and text.text == "I'll run the tests."
    assert tool.type == "tool_use" and tool.name == "Bash" and tool.id.startswith("toolu_")
    assert tool.input == {"command": "pytest -q", "note": 'héllo "quoted"\n'}
    assert message.stop_reason == "tool_use" and message.model == "claude-test"
    assert message.id.startswith("msg_")
    usage = message.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 1
    assert usage.cache_read_input_tokens == 0 and usage.cache_creation_input_tokens == 0
    assert server.requests[0].step == 0 and server.requests[0].phase == "code"


def _events(sse: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in sse.strip().split("\n\n"):
        name_line, data_line = frame.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        events.append((name_line.removeprefix("event: "), json.loads(data_line[6:])))
    return events


def _shape(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Event names with runs of deltas collapsed: the shape of a stream, not its chunking."""
    shape: list[str] = []
    for name, data in events:
        label = f"{name}:{data.get('delta', data.get('content_block', {})).get('type', '')}"
        if not shape or shape[-1] != label or name != "content_block_delta":
            shape.append(label)
    return shape


async def test_the_raw_stream_has_the_recorded_shape() -> None:
    async with serving() as (server, _client), httpx2.AsyncClient() as http:
        response = await http.post(
            f"{server.base_url}/v1/messages",
            json=request(stream=True),
            headers={"x-api-key": "k"},
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    ours = _events(response.text)
    recorded = _events((FIXTURES / "messages-stream-tool_use.sse").read_text())
    assert _shape(ours) == _shape(recorded)
    assert all(data["type"] == name for name, data in ours)
    start = ours[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert set(start["usage"]) >= {
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
    }
    json_deltas = [
        d["delta"]["partial_json"] for n, d in ours if d.get("index") == 1 and n.endswith("delta")
    ]
    assert json_deltas[0] == "" and all(len(part) <= 7 for part in json_deltas)


async def test_a_non_streaming_answer() -> None:
    async with serving() as (_server, client):
        message = await client.messages.create(**request())
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.stop_reason == "tool_use" and message.usage.output_tokens > 0


async def test_a_repeated_request_gets_the_same_answer_and_does_not_advance() -> None:
    async with serving() as (server, client):
        first = await client.messages.create(**request())
        again = await client.messages.create(**request())
        assert again.model_dump() == first.model_dump()
        params = follow_up(request(), first, "3 failed")
        nxt = await client.messages.create(**params)
    assert nxt.content[0].type == "text" and nxt.content[0].text == "Fixing it."
    assert [(r.step, r.replayed) for r in server.requests] == [(0, False), (0, True), (1, False)]


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        ("{kind: rate_limit, retry_after: 2}", anthropic.RateLimitError, 429),
        ("{kind: overloaded}", anthropic.OverloadedError, 529),
        ("{kind: server_error}", anthropic.InternalServerError, 500),
        ("{kind: auth}", anthropic.AuthenticationError, 401),
        ("{kind: permission}", anthropic.PermissionDeniedError, 403),
        ("{kind: billing}", anthropic.BadRequestError, 400),
    ],
)
async def test_error_faults_raise_the_sdk_errors(
    fault: str, error: type[anthropic.APIStatusError], status: int
) -> None:
    async with serving(f"{SCRIPT}faults: [{fault}]\n") as (server, client):
        with pytest.raises(error) as caught:
            await client.messages.create(**request())
        answered = await client.messages.create(**request())
    assert caught.value.status_code == status
    assert caught.value.response.headers["request-id"].startswith("req_")
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "2"
    if status == 400:
        assert "credit balance is too low" in caught.value.message
    assert isinstance(caught.value, anthropic.InternalServerError) == (status >= 500)
    assert answered.content[0].type == "text"  # times: 1, and the fault did not advance
    assert [(r.status, r.step) for r in server.requests] == [(status, 0), (200, 0)]


async def test_missing_credentials_are_a_401() -> None:
    async with serving() as (server, _client), httpx2.AsyncClient() as http:
        response = await http.post(f"{server.base_url}/v1/messages", json=request())
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["request-id"].startswith("req_")


async def test_a_dropped_connection_fails_the_stream_mid_way() -> None:
    async with serving(f"{SCRIPT}faults: [{{kind: drop, after_events: 4}}]\n") as (server, client):
        seen: list[str] = []
        # Mid-stream the SDK does not wrap transport errors: httpx2's own error arrives.
        with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
            async with client.messages.stream(**request()) as stream:
                async for event in stream:
                    seen.append(event.type)
        retried = await client.messages.create(**request())
    assert seen[:2] == ["message_start", "content_block_start"] and "message_stop" not in seen
    assert retried.content[0].type == "text"
    assert [(r.fault, r.step) for r in server.requests] == [("drop", 0), (None, 0)]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("{kind: drop}", anthropic.APIConnectionError),
        ("{kind: stall, stall_seconds: 60}", anthropic.APITimeoutError),
        ("{kind: stream_error}", anthropic.OverloadedError),
    ],
)
async def test_stream_faults_on_a_non_streaming_request(
    fault: str, error: type[anthropic.APIError]
) -> None:
    async with serving(f"{SCRIPT}faults: [{fault}]\n") as (_server, client):
        impatient = client.with_options(timeout=httpx2.Timeout(5.0, read=0.5))
        with pytest.raises(error):
            await impatient.messages.create(**request())


async def test_a_stalled_stream_times_out_on_the_client() -> None:
    script = f"{SCRIPT}faults: [{{kind: stall, stall_seconds: 60}}]\n"
    async with serving(script) as (server, client):
        impatient = client.with_options(timeout=httpx2.Timeout(5.0, read=0.5))
        seen: list[str] = []
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(httpx2.ReadTimeout):
            async with impatient.messages.stream(**request()) as stream:
                async for event in stream:
                    seen.append(event.type)
        assert loop.time() - began < 5
    assert seen == ["message_start"]
    assert server.requests[0].fault == "stall"


async def test_a_stream_error_event_raises_an_api_error() -> None:
    async with serving(f"{SCRIPT}faults: [{{kind: stream_error}}]\n") as (_server, client):
        with pytest.raises(anthropic.APIStatusError) as caught:
            async with client.messages.stream(**request()) as stream:
                async for _event in stream:
                    pass
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def _cached(params: dict[str, Any]) -> dict[str, Any]:
    """Breakpoints as the executor sets them: tools, system, and the last user message."""
    tools = [*params["tools"][:-1], {**params["tools"][-1], "cache_control": EPHEMERAL}]
    system = [{**params["system"][-1], "cache_control": EPHEMERAL}]
    messages = [dict(m) for m in params["messages"]]
    content = messages[-1]["content"]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    blocks[-1] = {**blocks[-1], "cache_control": EPHEMERAL}
    messages[-1]["content"] = blocks
    return {**params, "tools": tools, "system": system, "messages": messages}


async def test_later_requests_of_a_phase_read_from_the_prompt_cache() -> None:
    async with serving() as (_server, client):
        first_params = _cached(request())
        first = await client.messages.create(**first_params)
        second = await client.messages.create(**_cached(follow_up(first_params, first, "ok")))
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation_input_tokens and first.usage.cache_creation_input_tokens > 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens and second.usage.cache_creation_input_tokens > 0
    assert second.usage.input_tokens == 0  # everything up to the last breakpoint


async def test_the_record_redacts_credentials_and_is_served_as_json() -> None:
    async with serving() as (server, client), httpx2.AsyncClient() as http:
        await client.messages.create(**request())
        health = await http.get(f"{server.base_url}/_script/health")
        recorded = (await http.get(f"{server.base_url}/_script/requests")).json()
        server.clear()
        assert server.requests == []
        await client.messages.create(
            **follow_up(request(), await client.messages.create(**request()), "ok")
        )
    assert health.json() == {"ok": True}
    (entry,) = recorded
    # SDK 2.x sends the key as "authorization: Bearer ..."; either header is redacted.
    credentials = [entry["headers"].get(name) for name in ("x-api-key", "authorization")]
    assert "***" in credentials and "test-key" not in json.dumps(entry)
    assert entry["body"]["messages"] == request()["messages"]
    assert (entry["job_id"], entry["phase"], entry["step"], entry["status"]) == (
        "job-1",
        "code",
        0,
        200,
    )
    assert [r.step for r in server.requests] == [0, 1]  # clear() kept the cursor


async def test_an_invalid_request_is_a_400_the_sdk_raises() -> None:
    async with serving() as (_server, client):
        params = request(
            messages=[
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_x", "name": "Bash", "input": {}}],
                },
                {"role": "user", "content": "no result"},
            ]
        )
        with pytest.raises(anthropic.BadRequestError, match="toolu_x"):
            await client.messages.create(**params)


runner = CliRunner()


def test_the_cli_command_has_help() -> None:
    result = runner.invoke(app, ["model-server", "--help"])
    assert result.exit_code == 0
    assert "--script" in result.output and "--port" in result.output and "7338" in result.output


def test_the_cli_refuses_a_bad_script_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("phases: {code: [{txt: hi}]}\n")
    result = runner.invoke(app, ["model-server", "--script", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}: phases.code[0]: unknown key 'txt'" in result.output


@pytest.mark.slow
async def test_the_cli_serves_until_interrupted(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text(SCRIPT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "coro_tui",
        "model-server",
        "--script",
        str(script),
        "--port",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
            assert proc.stdout is not None and proc.stderr is not None
            url = (await proc.stdout.readline()).decode().strip()
            assert url.startswith("http://127.0.0.1:")
            async with anthropic.AsyncAnthropic(api_key="k", base_url=url, max_retries=0) as client:
                message = await client.messages.create(**request())
            assert message.content[0].type == "text"
            proc.send_signal(signal.SIGINT)
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out == b""  # stdout carries the URL line only
    assert "200 job-1 code step 0" in err.decode()
