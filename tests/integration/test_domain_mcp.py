"""The domain tools through the real in-process MCP server and client, as an executor calls them."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from engine.phase import ToolContext, ToolOutcome
from engine.tools import (
    DOMAIN_TOOLS,
    DomainTool,
    DomainToolBox,
    ToolArgs,
    ToolError,
    open_domain_toolbox,
)
from state import InMemoryStateBackend, Proposal
from tests.unit.test_domain_tools import TENANT, make_context

P = "mcp__coro__"


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[ToolContext]:
    async with InMemoryStateBackend() as store:
        yield await make_context(tmp_path, store)


@asynccontextmanager
async def served(ctx: ToolContext, allowed: set[str] | None = None) -> AsyncIterator[DomainToolBox]:
    """The phase's tool box. Not a fixture: the client must close in the task that opened it."""
    with anyio.fail_after(5):
        async with open_domain_toolbox(ctx, allowed) as box:
            yield box


async def call(box: DomainToolBox, tool: str, **arguments: Any) -> ToolOutcome:
    with anyio.fail_after(5):
        return await box.call(P + tool, arguments)


async def ok(box: DomainToolBox, tool: str, **arguments: Any) -> Any:
    outcome = await call(box, tool, **arguments)
    assert not outcome.is_error, outcome.text
    try:
        return json.loads(outcome.text)
    except ValueError:
        return outcome.text


async def test_every_tool_is_listed_with_its_schema(ctx: ToolContext) -> None:
    async with served(ctx) as toolbox:
        specs = {spec.name: spec for spec in toolbox.specs()}
        assert set(specs) == {P + name for name in DOMAIN_TOOLS}
        update = specs[P + "update_work_item"]
        assert update.description == DOMAIN_TOOLS["update_work_item"].description
        assert update.input_schema["required"] == ["name"]
        assert set(update.input_schema["properties"]) == {"name", "status", "incrementLoop"}


async def test_the_allow_list_filters_the_tools(ctx: ToolContext) -> None:
    allowed = {P + "log", P + "goto_phase", "Read", "mcp__github__create_pr"}
    async with served(ctx, allowed) as box:
        assert [spec.name for spec in box.specs()] == [P + "log", P + "goto_phase"]
        refused = await call(box, "set_work_items", workItems=["a"])
        assert refused.is_error
        assert "'mcp__coro__set_work_items' is not allowed in phase 'planning'" in refused.text
        assert refused.text.endswith(
            "the tools of this phase are: mcp__coro__log, mcp__coro__goto_phase"
        )
        assert ctx.job.work_items == []
        assert not (await call(box, "log", message="still fine")).is_error


async def test_a_phase_without_domain_tools_offers_none(ctx: ToolContext) -> None:
    async with served(ctx, {"Read", "Bash"}) as box:
        assert box.specs() == []
        outcome = await call(box, "log", message="x")
        assert outcome.is_error and "the tools of this phase are: none" in outcome.text
    assert await ctx.store.get_log(ctx.job.id) == []


async def test_an_unknown_tool_lists_the_available_ones(ctx: ToolContext) -> None:
    async with served(ctx) as toolbox:
        outcome = await toolbox.call("mcp__coro__frobnicate", {})
        assert outcome.is_error
        assert outcome.text.startswith("unknown tool 'mcp__coro__frobnicate'; available tools: ")
        assert "mcp__coro__set_work_items" in outcome.text
        short = await toolbox.call("log", {"message": "by its short name"})
        assert short == ToolOutcome("logged")
    assert await ctx.store.get_log(ctx.job.id) == ["by its short name"]


async def test_work_items_round_trip(ctx: ToolContext) -> None:
    async with served(ctx) as toolbox:
        await ok(toolbox, "set_work_items", workItems=["api", "ui"])
        await ok(toolbox, "update_work_item", name="api", status="in-progress")
        await ok(toolbox, "update_work_item", name="api", incrementLoop=True)
        assert await ok(toolbox, "get_work_items") == {
            "workItems": [
                {"name": "api", "status": "in-progress", "loopCount": 1},
                {"name": "ui", "status": "pending", "loopCount": 0},
            ],
            "currentWorkItem": "api",
        }
        saved = await ctx.store.get_job(ctx.job.id)
        assert saved is not None and saved.current_work_item == "api"
        assert saved.work_item_loop_count == 1


async def test_goto_phase_sets_the_signal_the_runner_reads(ctx: ToolContext) -> None:
    async with served(ctx) as toolbox:
        text = await ok(toolbox, "goto_phase", phase="reviewing")
        assert "finish your turn" in text
        assert ctx.signals.next_phase == "reviewing" and ctx.signals.ends_phase
        refused = await call(toolbox, "goto_phase", phase="deploying")
        assert refused.is_error and "planning, coding, reviewing" in refused.text


async def test_bad_arguments_come_back_as_errors_naming_the_argument(
    ctx: ToolContext,
) -> None:
    async with served(ctx) as toolbox:
        missing = await call(toolbox, "update_work_item")
        assert missing.is_error
        assert missing.text.startswith("update_work_item: argument 'name' is required")
        wrong = await call(toolbox, "set_work_items", workItems="api")
        assert wrong.is_error and "argument 'workItems'" in wrong.text
        extra = await call(toolbox, "log", message="x", level="info")
        assert extra.is_error and "unknown argument 'level'" in extra.text


def _crashing_registry() -> dict[str, DomainTool[Any]]:
    async def crash(ctx: ToolContext, args: ToolArgs) -> str:
        raise RuntimeError("disk on fire")

    async def refuse(ctx: ToolContext, args: ToolArgs) -> str:
        raise ToolError("not today")

    return {
        "crash": DomainTool("crash", "Always crashes.", ToolArgs, crash),
        "refuse": DomainTool("refuse", "Always refuses.", ToolArgs, refuse),
        "log": DOMAIN_TOOLS["log"],
    }


async def test_a_crashing_handler_leaves_the_connection_usable(
    ctx: ToolContext, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_domain_toolbox(ctx, None, tools=_crashing_registry()) as box:
        crashed = await call(box, "crash")
        assert crashed.is_error
        assert "crash: internal error in coro (RuntimeError: disk on fire)" in crashed.text
        refused = await call(box, "refuse")
        assert refused == ToolOutcome("refuse: not today", is_error=True)
        after = await call(box, "log", message="after the crash")
        assert after == ToolOutcome("logged", is_error=False)
    assert await ctx.store.get_log(ctx.job.id) == ["after the crash"]
    assert any("domain tool crash failed" in r.getMessage() for r in caplog.records)


async def test_calls_can_run_concurrently(ctx: ToolContext) -> None:
    async with served(ctx) as toolbox:
        outcomes: list[ToolOutcome] = []

        async def log(n: int) -> None:
            outcomes.append(await call(toolbox, "log", message=f"line {n}"))

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(log, n)
        assert all(not o.is_error for o in outcomes) and len(outcomes) == 10
        assert sorted(await ctx.store.get_log(ctx.job.id)) == sorted(f"line {n}" for n in range(10))


PROPOSAL = {
    "type": "memory-update",
    "title": "Note the GOFLAGS pitfall",
    "rationale": "three failed builds",
    "description": "one pitfall",
}


async def test_propose_change_writes_files_once_per_layer(ctx: ToolContext) -> None:
    async with served(ctx) as toolbox:
        entry = {"file": "pitfalls.md", "kind": "pitfall", "title": "GOFLAGS", "recipe": "set it"}
        made = await ok(toolbox, "propose_change", **PROPOSAL, entries=[entry])
        written = Path(made["path"]) / "memory" / "pitfalls.md"
        assert written.read_text() == "### Pitfall: GOFLAGS\n\n- **Recipe:** set it\n"

        again = await call(
            toolbox, "propose_change", **PROPOSAL, targetFile="agents/x.md", proposedContent="x"
        )
        assert again.is_error and "exactly one proposal per layer" in again.text
        script = await call(
            toolbox,
            "propose_change",
            **PROPOSAL,
            targetLayer="repo",
            files=[{"path": "tools/run.py", "content": "print()"}],
        )
        assert script.is_error and "only markdown (.md) files" in script.text
        [recorded] = await ctx.store.list_proposals(TENANT)
        assert recorded.id == made["proposalId"]


class SlowStore(InMemoryStateBackend):
    """Lets other tasks run between reading proposals and returning them, as a database does."""

    async def list_proposals(self, tenant_id: str, status: str | None = None) -> list[Proposal]:
        found = await super().list_proposals(tenant_id, status)
        await anyio.lowlevel.checkpoint()
        return found


async def test_concurrent_proposals_for_one_layer_make_one(tmp_path: Path) -> None:
    async with SlowStore() as store:
        ctx = await make_context(tmp_path, store)
        await _propose_three_times(ctx)


async def _propose_three_times(ctx: ToolContext) -> None:
    async with served(ctx) as toolbox:
        outcomes: list[ToolOutcome] = []

        async def propose(n: int) -> None:
            outcomes.append(
                await call(
                    toolbox,
                    "propose_change",
                    **PROPOSAL,
                    targetFile=f"agents/a{n}.md",
                    proposedContent="x",
                )
            )

        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(propose, n)
        assert sorted(o.is_error for o in outcomes) == [False, True, True]
        assert len(await ctx.store.list_proposals(TENANT)) == 1


async def test_read_memory_refuses_to_escape(ctx: ToolContext) -> None:
    async with served(ctx) as toolbox:
        (ctx.intelligence_dir / "memory" / "MEMORY.md").write_text("# Memory\n")
        (ctx.job_dir / "token.md").write_text("TOKEN\n")
        escaped = await call(toolbox, "read_memory", file="../../token.md")
        assert escaped.is_error and "TOKEN" not in escaped.text
        assert "no absolute paths, no '..'" in escaped.text
        assert (await ok(toolbox, "read_memory")).startswith("# memory/MEMORY.md\n\n# Memory\n")


async def test_building_a_server_leaves_logging_alone(
    ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MCPServer() would otherwise install a rich stderr handler on a bare root logger (the TUI's
    # case), which draws over the screen.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.WARNING)
    async with served(ctx):
        pass
    assert root.handlers == [] and root.level == logging.WARNING


async def test_one_shared_session_serves_each_phase_its_own_job(tmp_path: Path) -> None:
    """The runner's one server: calls from two jobs' phases, in flight at once from their own
    tasks, each run on the phase that made them."""
    from engine.tools.mcp_bridge import DomainServer

    server = DomainServer()
    async with InMemoryStateBackend() as store_a, InMemoryStateBackend() as store_b:
        job_a = await make_context(tmp_path / "a", store_a)
        job_b = await make_context(tmp_path / "b", store_b)
        try:
            with anyio.fail_after(10):
                session = await server.session()
                assert await server.session() is session  # opened once
                box_a = session.for_phase(job_a, None)
                box_b = session.for_phase(job_b, {P + "set_work_items", P + "get_work_items"})

                async def work(box: DomainToolBox, items: list[str]) -> None:
                    for i in range(20):
                        await ok(box, "set_work_items", workItems=[f"{x}{i}" for x in items])
                        await anyio.lowlevel.checkpoint()
                    await ok(box, "get_work_items")

                async with anyio.create_task_group() as group:
                    group.start_soon(work, box_a, ["a"])
                    group.start_soon(work, box_b, ["b", "c"])

                assert [w.name for w in job_a.job.work_items] == ["a19"]
                assert [w.name for w in job_b.job.work_items] == ["b19", "c19"]
                assert (await call(box_b, "log", message="x")).is_error  # not in b's list
        finally:
            await server.aclose()
        closed = await call(box_a, "log", message="after close")
        assert closed.is_error
        try:
            reopened = await server.session()
            assert reopened is not session
            await ok(reopened.for_phase(job_a, None), "log", message="after reopening")
        finally:
            await server.aclose()
