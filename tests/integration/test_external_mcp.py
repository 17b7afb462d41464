"""The user's MCP servers as a job's tool box: real stdio processes and real loopback HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.config import HttpMcpServer, SseMcpServer, StdioMcpServer
from engine.phase import ToolOutcome
from engine.tools.external import ExternalToolBox, McpServerConfig, open_external_toolbox

pytestmark = pytest.mark.slow

SERVER = Path(__file__).resolve().parents[1] / "data" / "mcp_servers" / "tools_server.py"
TOOLS = ("echo", "add", "fail", "env", "whoami", "picture", "nap", "die")
TOKEN = "s3cret-token"


def stdio(mode: str = "stdio", **fields: Any) -> StdioMcpServer:
    return StdioMcpServer(type="stdio", command=sys.executable, args=[str(SERVER), mode], **fields)


class JobLog:
    """Collects the lines the tool box writes to the job log."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, line: str) -> None:
        self.lines.append(line)

    def about(self, server_id: str) -> list[str]:
        return [line for line in self.lines if f"mcp server {server_id!r}" in line]


@pytest.fixture
def log() -> JobLog:
    return JobLog()


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    work = tmp_path / "job" / "work"
    work.mkdir(parents=True)
    return work


@asynccontextmanager
async def opened(
    servers: Mapping[str, McpServerConfig], cwd: Path, log: JobLog, **options: float
) -> AsyncIterator[ExternalToolBox]:
    """The box, with every wait bounded. Not a fixture: it must close in the task that opened it."""
    with anyio.fail_after(30):
        async with open_external_toolbox(servers, cwd=cwd, log=log, **options) as box:
            yield box


async def call(box: ExternalToolBox, name: str, **arguments: Any) -> ToolOutcome:
    with anyio.fail_after(15):
        return await box.call(name, arguments)


async def text(box: ExternalToolBox, name: str, **arguments: Any) -> str:
    outcome = await call(box, name, **arguments)
    assert not outcome.is_error, outcome.text
    return outcome.text


def names(box: ExternalToolBox) -> list[str]:
    return sorted(spec.name for spec in box.specs())


def full(server_id: str, *tools: str) -> list[str]:
    return sorted(f"mcp__{server_id}__{tool}" for tool in tools)


@asynccontextmanager
async def http_server(kind: str) -> AsyncIterator[str]:
    """``tools_server.py`` over streamable HTTP or SSE on a loopback port; yields its URL."""
    process = await anyio.open_process(
        [sys.executable, str(SERVER), kind, "--token", TOKEN], stderr=subprocess.DEVNULL
    )
    try:
        assert process.stdout is not None
        announced = b""
        with anyio.fail_after(20):
            while b"\n" not in announced:
                announced += await process.stdout.receive()
        port = int(announced.split()[1])
        yield f"http://127.0.0.1:{port}/{'sse' if kind == 'sse' else 'mcp'}"
    finally:
        process.terminate()
        with anyio.fail_after(10):
            await process.aclose()


# ── stdio ───────────────────────────────────────────────────────────────────────────────────


async def test_a_stdio_server_offers_its_tools_and_answers_calls(cwd: Path, log: JobLog) -> None:
    async with opened({"t": stdio()}, cwd, log) as box:
        assert box.servers == {"t": "ready"}
        assert names(box) == full("t", *TOOLS)
        echo = next(spec for spec in box.specs() if spec.name == "mcp__t__echo")
        assert echo.description == "Say the text back."
        assert echo.input_schema["properties"]["text"]["type"] == "string"

        assert await text(box, "mcp__t__echo", text="hello") == "hello"
        assert await text(box, "mcp__t__add", a=2, b=3) == "5"
        assert await text(box, "mcp__t__picture") == "a red dot\n[image/png, 14 bytes]"

        failed = await call(box, "mcp__t__fail", message="the disk is on fire")
        assert failed.is_error and "the disk is on fire" in failed.text
        bad_arguments = await call(box, "mcp__t__add", a="two")
        assert bad_arguments.is_error and "add" in bad_arguments.text

        unknown = await call(box, "mcp__t__nope")
        assert unknown.is_error
        assert "unknown tool 'mcp__t__nope'" in unknown.text and "mcp__t__echo" in unknown.text

    ready = log.about("t")
    assert any("is ready with 8 tool(s)" in line for line in ready), log.lines
    # A tool whose full name breaks the model's rule is left out, and the job log says so.
    assert any("skipped 1 tool(s)" in line and "has.a.dot" in line for line in ready)


async def test_allowed_and_disallowed_tools_filter_by_short_name_and_deny_wins(
    cwd: Path, log: JobLog
) -> None:
    server = stdio(allowed_tools=["echo", "add", "search"], disallowed_tools=["add", "die"])
    async with opened({"t": server, "all": stdio(disallowed_tools=["die"])}, cwd, log) as box:
        assert names(box) == sorted(full("t", "echo") + full("all", *TOOLS[:-1]))
        denied = await call(box, "mcp__t__add", a=1, b=2)
        assert denied.is_error and "unknown tool" in denied.text
    assert any(
        "allowedTools names tools the server does not have: search" in line for line in log.lines
    )


async def test_restrict_takes_exact_names_and_server_wildcards(cwd: Path, log: JobLog) -> None:
    async with opened({"a": stdio(), "b": stdio()}, cwd, log) as box:
        only_echo = box.restrict({"mcp__a__echo", "Read", "mcp__coro__log"})
        assert names(only_echo) == full("a", "echo")
        assert await text(only_echo, "mcp__a__echo", text="hi") == "hi"
        refused = await call(only_echo, "mcp__a__add", a=1, b=2)
        assert refused.is_error
        assert "not allowed in this phase" in refused.text and "mcp__a__echo" in refused.text

        mixed = box.restrict(["mcp__a__*", "mcp__b__add"])
        assert names(mixed) == sorted(full("a", *TOOLS) + full("b", "add"))
        assert await text(mixed, "mcp__b__add", a=20, b=22) == "42"
        assert names(mixed.restrict({"mcp__b__*"})) == full("b", "add")

        assert box.restrict(None) is box
        assert box.restrict(set()).specs() == []


async def test_the_server_gets_a_minimal_environment_without_coros_secrets(
    cwd: Path, log: JobLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-do-not-leak")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-do-not-leak")
    server = stdio(env={"GREETING": "hello", "TOKEN_FOR_SERVER": "given-on-purpose"})
    async with opened({"t": server}, cwd, log) as box:
        env = json.loads(await text(box, "mcp__t__env"))
        where = json.loads(await text(box, "mcp__t__whoami"))
    assert "ANTHROPIC_API_KEY" not in env and "GITHUB_TOKEN" not in env
    assert env["GREETING"] == "hello" and env["TOKEN_FOR_SERVER"] == "given-on-purpose"
    assert env["PATH"] == os.environ["PATH"]
    assert Path(where["cwd"]).resolve() == cwd.resolve()


async def test_stdio_server_processes_are_gone_when_the_box_closes(cwd: Path, log: JobLog) -> None:
    async with opened({"a": stdio(), "b": stdio()}, cwd, log) as box:
        pids = [json.loads(await text(box, f"mcp__{sid}__whoami"))["pid"] for sid in ("a", "b")]
        for pid in pids:
            os.kill(pid, 0)  # alive while the box is open
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_an_error_in_the_job_closes_the_servers_and_reaches_the_caller_as_is(
    cwd: Path, log: JobLog
) -> None:
    with pytest.raises(KeyError, match="the phase broke"):
        async with opened({"t": stdio()}, cwd, log) as box:
            pid = json.loads(await text(box, "mcp__t__whoami"))["pid"]
            raise KeyError("the phase broke")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_calls_may_run_concurrently_from_other_tasks(cwd: Path, log: JobLog) -> None:
    answers: dict[int, str] = {}

    async def ask(box: ExternalToolBox, n: int) -> None:
        await text(box, "mcp__t__nap", seconds=0.2)
        answers[n] = await text(box, "mcp__t__add", a=n, b=n)

    async with opened({"t": stdio()}, cwd, log) as box:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as calls:
                for n in range(6):
                    calls.start_soon(ask, box, n)
    assert answers == {n: str(2 * n) for n in range(6)}


async def test_servers_that_cannot_start_are_logged_and_skipped(
    cwd: Path, log: JobLog, capfd: pytest.CaptureFixture[str]
) -> None:
    servers: dict[str, McpServerConfig] = {
        "good": stdio(),
        "missing": StdioMcpServer(type="stdio", command="coro-test-no-such-command"),
        "crash": stdio("crash"),
    }
    async with opened(servers, cwd, log) as box:
        assert box.servers["good"] == "ready"
        assert box.servers["missing"] == "failed: command not found: 'coro-test-no-such-command'"
        assert box.servers["crash"].startswith("failed: the server process exited")
        assert names(box) == full("good", *TOOLS)
        assert await text(box, "mcp__good__echo", text="still here") == "still here"
        unavailable = await call(box, "mcp__crash__echo", text="x")
        assert (
            unavailable.is_error
            and "mcp server 'crash' failed: the server process exited" in unavailable.text
        )

    assert log.about("missing") == [
        "mcp server 'missing' failed to start: command not found: 'coro-test-no-such-command'; "
        "the job goes on without its tools"
    ]
    (crashed,) = log.about("crash")
    assert crashed.startswith("mcp server 'crash' failed to start: the server process exited")
    assert "boom: no configuration found" in crashed  # the server's own words, from its stderr
    assert crashed.endswith("the job goes on without its tools")
    assert "boom" not in capfd.readouterr().err  # and none of it on coro's terminal


async def test_a_server_that_hangs_on_start_is_given_up_after_the_start_timeout(
    cwd: Path, log: JobLog
) -> None:
    started = anyio.current_time()
    async with opened({"slow": stdio("hang"), "good": stdio()}, cwd, log, start_timeout=3) as box:
        waited = anyio.current_time() - started
        assert box.servers == {"slow": "failed: it was not ready within 3s", "good": "ready"}
        assert names(box) == full("good", *TOOLS)
        assert await text(box, "mcp__good__echo", text="ok") == "ok"
    assert 3 <= waited < 6
    assert log.about("slow") == [
        "mcp server 'slow' failed to start: it was not ready within 3s; "
        "the job goes on without its tools"
    ]


async def test_disabled_servers_are_skipped_and_the_reserved_id_is_refused(
    cwd: Path, log: JobLog
) -> None:
    servers = {"off": stdio(enabled=False), "coro": stdio(), "a__b": stdio()}
    async with opened(servers, cwd, log) as box:
        assert box.servers["off"] == "disabled"
        assert "reserved for coro's own tools" in box.servers["coro"]
        assert box.servers["a__b"].startswith("failed: the id 'a__b' must be")
        assert box.specs() == []
    assert log.about("off") == []
    assert log.about("coro")[0].startswith(
        "mcp server 'coro' is refused: the id 'coro' is reserved"
    )


async def test_a_slow_call_times_out_and_a_dead_server_is_reported_without_hanging(
    cwd: Path, log: JobLog
) -> None:
    async with opened({"t": stdio()}, cwd, log, call_timeout=0.5) as box:
        slow = await call(box, "mcp__t__nap", seconds=30)
        assert slow.is_error and "did not answer within 0.5s" in slow.text
        assert await text(box, "mcp__t__echo", text="after the timeout") == "after the timeout"

        died = await call(box, "mcp__t__die")
        assert died.is_error and "stopped (the server process exited" in died.text
        after = await call(box, "mcp__t__echo", text="anyone?")
        assert after.is_error and "not available" in after.text
        assert box.servers["t"].startswith("failed: the server process exited")
    assert any(line.startswith("mcp server 't' stopped during the job") for line in log.lines)


# ── remote ──────────────────────────────────────────────────────────────────────────────────


async def test_a_streamable_http_server_gets_its_headers(cwd: Path, log: JobLog) -> None:
    async with http_server("http") as url:
        servers: dict[str, McpServerConfig] = {
            "web": HttpMcpServer(type="http", url=url, headers={"X-Test-Token": TOKEN}),
            "locked": HttpMcpServer(type="http", url=url, headers={"X-Test-Token": "wrong"}),
        }
        async with opened(servers, cwd, log) as box:
            assert box.servers["web"] == "ready"
            assert box.servers["locked"] == "failed: the server answered HTTP 401 Unauthorized"
            assert names(box) == full("web", *TOOLS)
            assert await text(box, "mcp__web__echo", text="over http") == "over http"
            assert await text(box, "mcp__web__add", a=40, b=2) == "42"
            failed = await call(box, "mcp__web__fail", message="remote trouble")
            assert failed.is_error and "remote trouble" in failed.text
    assert log.about("locked") == [
        "mcp server 'locked' failed to start: the server answered HTTP 401 Unauthorized; "
        "the job goes on without its tools"
    ]
    assert not any(TOKEN in line or "wrong" in line for line in log.lines)


async def test_a_legacy_sse_server_works_the_same_way(cwd: Path, log: JobLog) -> None:
    async with http_server("sse") as url:
        servers: dict[str, McpServerConfig] = {
            "legacy": SseMcpServer(type="sse", url=url, headers={"X-Test-Token": TOKEN}),
            "locked": SseMcpServer(type="sse", url=url),
        }
        async with opened(servers, cwd, log) as box:
            assert box.servers["legacy"] == "ready"
            assert box.servers["locked"] == "failed: the server answered HTTP 401 Unauthorized"
            assert await text(box, "mcp__legacy__echo", text="over sse") == "over sse"


async def test_an_unreachable_server_is_logged_and_skipped(cwd: Path, log: JobLog) -> None:
    with anyio.fail_after(5):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()  # nothing listens on this port any more
    url = f"http://user:pw@127.0.0.1:{port}/mcp?key=abc"
    async with opened({"gone": HttpMcpServer(type="http", url=url)}, cwd, log) as box:
        assert box.servers["gone"] == f"failed: cannot connect to http://127.0.0.1:{port}/mcp"


async def test_cancelling_the_job_while_servers_start_leaves_no_process_behind(
    cwd: Path, tmp_path: Path
) -> None:
    pid_files = {sid: tmp_path / f"{sid}.pid" for sid in ("slow", "good")}
    servers = {
        "slow": stdio("hang", env={"PID_FILE": str(pid_files["slow"])}),
        "good": stdio(env={"PID_FILE": str(pid_files["good"])}),
    }
    with anyio.fail_after(30), anyio.CancelScope() as job:

        async def log(line: str) -> None:
            if line.startswith("mcp server 'good' is ready"):
                job.cancel()  # the job is cancelled while 'slow' is still starting

        async with open_external_toolbox(servers, cwd=cwd, log=log):
            pytest.fail("the box should not open once the job is cancelled")  # pragma: no cover
    assert job.cancelled_caught
    for pid_file in pid_files.values():
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid_file.read_text()), 0)


def test_results_render_as_text_with_placeholders_for_everything_else() -> None:
    from mcp_types import (
        AudioContent,
        BlobResourceContents,
        CallToolResult,
        EmbeddedResource,
        ResourceLink,
        TextContent,
        TextResourceContents,
    )

    from engine.tools.external._render import render_result

    result = CallToolResult(
        content=[
            TextContent(text="first"),
            AudioContent(data="AAAA", mime_type="audio/wav"),
            EmbeddedResource(resource=TextResourceContents(uri="file:///a.txt", text="inside")),
            EmbeddedResource(
                resource=BlobResourceContents(uri="file:///b.bin", blob="AAE=", mime_type="x/y")
            ),
            ResourceLink(uri="file:///c.md", name="c"),
        ]
    )
    assert render_result(result).splitlines() == [
        "first",
        "[audio/wav, 3 bytes]",
        "inside",
        "[resource file:///b.bin, x/y, 2 bytes]",
        "[resource link: file:///c.md]",
    ]
    structured = CallToolResult(content=[], structured_content={"answer": 42})
    assert render_result(structured) == '{"answer": 42}'
