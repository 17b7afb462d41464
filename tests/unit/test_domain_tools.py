"""The domain tool handlers, called as the MCP bridge calls them but without MCP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from engine.config import LocalConfig
from engine.errors import WorkflowError
from engine.phase import PhaseSignals, ToolContext
from engine.tools import DOMAIN_TOOLS, DomainTool, ToolArgs, ToolError, domain_tool_names
from engine.tools.domain import register
from engine.workflow import parse_workflow
from state import EventKind, InMemoryStateBackend, Job, Proposal, WorkItem

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_PATH = "workflows/job/workflow.md"
WORKFLOW = """\
---
display_name: Test job
phases:
  - name: planning
    agent: agents/planner.md
  - name: coding
    agent: agents/coder.md
  - name: reviewing
    agent: agents/pr-reviewer.md
---
# A job in three phases
"""
KNOWN_WORKFLOWS = {WORKFLOW_PATH, "workflows/job-fast/workflow.md"}
TENANT = "solo-test"

# Reference §3: every tool with its arguments; a trailing '?' marks an optional one.
REFERENCE_TOOLS = {
    "log": "message",
    "set_work_items": "workItems",
    "update_work_item": "name status? incrementLoop?",
    "get_work_items": "",
    "request_new_session": "reason",
    "set_job_params": "params",
    "goto_phase": "phase",
    "await_event": "eventName prId?",
    "escalate": "reason",
    "switch_workflow": "workflowPath paramsPatch? reason toPhase?",
    "post_artifact": "phase? kind title data?",
    "get_artifacts": "phase?",
    "add_insight": "category summary detail suggestion? suggestedLayer?",
    "read_memory": "file?",
    "list_proposals": "limit? type? status?",
    "propose_change": "type title rationale description files? entries? targetFile? "
    "proposedContent? targetLayer?",
    "scm_clone_repo": "pluginId? repo",
    "scm_get_clone_info": "pluginId? repo",
    "scm_create_pr": "pluginId? repo title description? sourceBranch sourceOwner? "
    "targetBranch? reviewers?",
    "scm_get_pr_status": "pluginId? repo prId",
    "scm_list_pr_comments": "pluginId? repo prId",
    "scm_post_pr_comment": "pluginId? repo prId body",
    "scm_reply_to_comment": "pluginId? repo prId parentCommentId body",
    "scm_add_pr_reviewers": "pluginId? repo prId reviewers",
    "scm_merge_pr": "pluginId? repo prId message? strategy?",
    "scm_resolve_user": "pluginId? repo? query",
}


async def make_context(
    tmp_path: Path, store: InMemoryStateBackend, *, phase: str = "planning", **job: Any
) -> ToolContext:
    """A tool context over a fresh job in ``store``, with its directories under ``tmp_path``."""
    workflow = parse_workflow(WORKFLOW, path=WORKFLOW_PATH, known_tools=domain_tool_names())
    created = await store.create_job(
        Job(id="job-1", tenant_id=TENANT, workflow_path=WORKFLOW_PATH, phase=phase, **job)
    )
    job_dir = tmp_path / "working" / created.id
    (job_dir / "_intelligence" / "memory").mkdir(parents=True)
    return ToolContext(
        job=created,
        workflow=workflow,
        phase=workflow.phase(phase),
        signals=PhaseSignals(),
        store=store,
        config=LocalConfig(),
        job_dir=job_dir,
        intelligence_dir=job_dir / "_intelligence",
        proposals_dir=tmp_path / "intelligence" / "proposals",
        tenant_id=TENANT,
        known_workflows=KNOWN_WORKFLOWS.__contains__,
    )


@pytest.fixture
async def store() -> Any:
    async with InMemoryStateBackend() as backend:
        yield backend


@pytest.fixture
async def ctx(tmp_path: Path, store: InMemoryStateBackend) -> ToolContext:
    return await make_context(tmp_path, store)


async def call(ctx: ToolContext, tool: str, **arguments: Any) -> Any:
    return await DOMAIN_TOOLS[tool].invoke(ctx, arguments)


async def refused(ctx: ToolContext, tool: str, **arguments: Any) -> str:
    with pytest.raises(ToolError) as info:
        await DOMAIN_TOOLS[tool].invoke(ctx, arguments)
    assert info.value.message.startswith(f"{tool}: ")
    return info.value.message


async def stored(ctx: ToolContext) -> Job:
    job = await ctx.store.get_job(ctx.job.id)
    assert job is not None
    return job


def item(job: Job, name: str) -> WorkItem:
    found = job.work_item(name)
    assert found is not None, f"no work item {name!r}"
    return found


async def log_lines(ctx: ToolContext) -> list[str]:
    return await ctx.store.get_log(ctx.job.id)


# -- the registry -----------------------------------------------------------------------------
def test_the_registry_has_exactly_the_reference_tools_and_argument_names() -> None:
    assert set(DOMAIN_TOOLS) == set(REFERENCE_TOOLS)
    for name, spec in REFERENCE_TOOLS.items():
        schema = DOMAIN_TOOLS[name].input_schema
        expected = spec.split()
        assert list(schema["properties"]) == [a.rstrip("?") for a in expected], name
        required = [a for a in expected if not a.endswith("?")]
        assert schema.get("required", []) == required, name


def test_domain_tool_names_are_fully_qualified_and_accepted_by_the_workflow_parser() -> None:
    names = domain_tool_names()
    assert names == {f"mcp__coro__{name}" for name in REFERENCE_TOOLS}
    front = "phases:\n  - name: coding\n    agent: agents/coder.md\n    tools: [Read, {}]\n"
    good = parse_workflow(
        f"---\n{front.format('mcp__coro__goto_phase')}---\n", path="w.md", known_tools=names
    )
    assert good.phases[0].tools == ("Read", "mcp__coro__goto_phase")
    with pytest.raises(WorkflowError, match="mcp__coro__goto_phas"):
        parse_workflow(
            f"---\n{front.format('mcp__coro__goto_phas')}---\n", path="w.md", known_tools=names
        )


def test_schemas_are_plain_json_schema_a_model_can_read() -> None:
    schema = DOMAIN_TOOLS["update_work_item"].input_schema
    assert schema["properties"]["status"] == {
        "enum": ["pending", "in-progress", "complete", "escalated"],
        "type": "string",
        "description": schema["properties"]["status"]["description"],
    }
    text = json.dumps([tool.input_schema for tool in DOMAIN_TOOLS.values()])
    assert "$ref" not in text and '"title": "' not in text and '"null"' not in text
    assert all(tool.description for tool in DOMAIN_TOOLS.values())
    for signal in ("goto_phase", "await_event", "escalate", "switch_workflow"):
        assert "phase ends" in DOMAIN_TOOLS[signal].description


def test_register_refuses_a_second_tool_with_the_same_name() -> None:
    async def handler(ctx: ToolContext, args: ToolArgs) -> str:
        return "x"

    with pytest.raises(ValueError, match=r"mcp__coro__log.*already registered"):
        register(DomainTool("log", "another log", ToolArgs, handler))
    assert DOMAIN_TOOLS["log"].description.startswith("Append a line")


def test_importing_the_tools_does_not_import_mcp() -> None:
    code = "import sys, engine.tools, engine.tools.mcp_bridge; print('mcp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# -- argument validation ----------------------------------------------------------------------
async def test_a_missing_argument_is_named(ctx: ToolContext) -> None:
    message = await refused(ctx, "update_work_item", status="complete")
    assert "update_work_item: argument 'name' is required" in message
    assert "usage: update_work_item(name, status?, incrementLoop?)" in message


async def test_a_wrong_value_names_the_argument_and_the_allowed_values(ctx: ToolContext) -> None:
    message = await refused(ctx, "update_work_item", name="a", status="done")
    assert "argument 'status'" in message and "'in-progress'" in message and '"done"' in message


async def test_an_unknown_argument_is_refused_with_a_suggestion(ctx: ToolContext) -> None:
    message = await refused(ctx, "set_work_items", workitems=["a"])
    assert "unknown argument 'workitems' (did you mean 'workItems'?)" in message


async def test_a_nested_argument_is_located(ctx: ToolContext) -> None:
    message = await refused(
        ctx,
        "propose_change",
        type="memory-update",
        title="t",
        rationale="r",
        description="d",
        entries=[{"file": "pitfalls.md", "kind": "gotcha", "title": "x"}],
    )
    assert "argument 'entries[0].kind'" in message


async def test_a_list_sent_as_a_json_string_is_decoded(ctx: ToolContext) -> None:
    await call(ctx, "set_work_items", workItems='["api", "ui"]')
    assert [w.name for w in ctx.job.work_items] == ["api", "ui"]


# -- log and work items -----------------------------------------------------------------------
async def test_log_appends_a_line_to_the_job_log(ctx: ToolContext) -> None:
    assert await call(ctx, "log", message="cloning the repository") == "logged"
    assert await log_lines(ctx) == ["cloning the repository"]


async def test_set_work_items_replaces_the_list_with_fresh_pending_items(
    tmp_path: Path, store: InMemoryStateBackend
) -> None:
    old = [WorkItem(name="old", status="complete", loop_count=3)]
    ctx = await make_context(
        tmp_path, store, work_items=old, current_work_item="old", work_item_loop_count=3
    )
    result = await call(ctx, "set_work_items", workItems=["api", " ui "])
    expected = [
        {"name": "api", "status": "pending", "loopCount": 0},
        {"name": "ui", "status": "pending", "loopCount": 0},
    ]
    assert result == {"workItems": expected, "currentWorkItem": None}
    job = await stored(ctx)
    assert [w.to_wire() for w in job.work_items] == expected
    assert job.current_work_item is None and job.work_item_loop_count == 0
    assert await log_lines(ctx) == ["[work-items] 2 set: api, ui"]


async def test_set_work_items_refuses_duplicate_and_empty_names(ctx: ToolContext) -> None:
    assert "repeated: api" in await refused(ctx, "set_work_items", workItems=["api", "api"])
    assert "must not be empty" in await refused(ctx, "set_work_items", workItems=["api", " "])
    assert ctx.job.work_items == [] and (await stored(ctx)).work_items == []


async def test_update_work_item_in_progress_makes_it_current(ctx: ToolContext) -> None:
    await call(ctx, "set_work_items", workItems=["api", "ui"])
    result = await call(ctx, "update_work_item", name="ui", status="in-progress")
    assert result["currentWorkItem"] == "ui"
    assert result["workItem"] == {"name": "ui", "status": "in-progress", "loopCount": 0}
    job = await stored(ctx)
    assert job.current_work_item == "ui" and item(job, "ui").status == "in-progress"
    assert (await log_lines(ctx))[-1] == "[work-item] ui: pending → in-progress"


async def test_increment_loop_counts_on_the_item_and_the_job(ctx: ToolContext) -> None:
    await call(ctx, "set_work_items", workItems=["api", "ui"])
    await call(ctx, "update_work_item", name="api", incrementLoop=True)
    result = await call(ctx, "update_work_item", name="api", incrementLoop=True, status="pending")
    assert result["workItem"]["loopCount"] == 2 and result["workItemLoopCount"] == 2
    job = await stored(ctx)
    assert item(job, "api").loop_count == 2 and job.work_item_loop_count == 2
    assert item(job, "ui").loop_count == 0
    assert job.current_work_item is None


async def test_update_work_item_lists_the_known_names_for_an_unknown_one(
    ctx: ToolContext,
) -> None:
    assert "set_work_items first" in await refused(ctx, "update_work_item", name="api")
    await call(ctx, "set_work_items", workItems=["api", "ui"])
    message = await refused(ctx, "update_work_item", name="web", status="complete")
    assert "unknown work item 'web'; known work items: 'api', 'ui'" in message
    assert "nothing to update" in await refused(ctx, "update_work_item", name="api")


async def test_get_work_items_returns_the_items_and_the_current_one(ctx: ToolContext) -> None:
    assert await call(ctx, "get_work_items") == {"workItems": [], "currentWorkItem": None}
    await call(ctx, "set_work_items", workItems=["api"])
    await call(ctx, "update_work_item", name="api", status="in-progress")
    assert await call(ctx, "get_work_items") == {
        "workItems": [{"name": "api", "status": "in-progress", "loopCount": 0}],
        "currentWorkItem": "api",
    }


# -- session and params -----------------------------------------------------------------------
async def test_request_new_session_forgets_the_conversation(
    tmp_path: Path, store: InMemoryStateBackend
) -> None:
    ctx = await make_context(
        tmp_path,
        store,
        session_id="sess-1",
        conversation_history=[{"role": "user", "content": "hello"}],
    )
    await call(ctx, "request_new_session", reason="next work item: ui")
    job = await stored(ctx)
    assert job.session_id is None and job.conversation_history == []
    assert ctx.signals.new_session_reason == "next work item: ui"
    assert not ctx.signals.ends_phase
    assert await log_lines(ctx) == ["[session-reset] next work item: ui"]


async def test_set_job_params_merges_shallowly(tmp_path: Path, store: InMemoryStateBackend) -> None:
    ctx = await make_context(tmp_path, store, params={"repo": "svc", "scm": {"plugin": "github"}})
    result = await call(ctx, "set_job_params", params={"language": "go", "scm": {"x": 1}})
    expected = {"repo": "svc", "scm": {"x": 1}, "language": "go"}
    assert result == {"params": expected}
    assert (await stored(ctx)).params == expected
    assert "params is empty" in await refused(ctx, "set_job_params", params={})
    assert "argument 'params'" in await refused(ctx, "set_job_params", params=["lane"])


# -- signals ----------------------------------------------------------------------------------
async def test_goto_phase_sets_the_next_phase_and_ends_the_phase(ctx: ToolContext) -> None:
    text = await call(ctx, "goto_phase", phase="coding")
    assert ctx.signals.next_phase == "coding" and ctx.signals.ends_phase
    assert "finish your turn" in text


async def test_goto_phase_refuses_an_undeclared_phase_naming_the_declared_ones(
    ctx: ToolContext,
) -> None:
    message = await refused(ctx, "goto_phase", phase="qa")
    assert "unknown phase 'qa'" in message and "planning, coding, reviewing" in message
    assert ctx.signals.next_phase is None and not ctx.signals.ends_phase


async def test_await_event_parks_with_the_pr_as_a_hint(ctx: ToolContext) -> None:
    await call(ctx, "await_event", eventName="pr:approved", prId="42")
    assert ctx.signals.awaiting_event == "pr:approved" and ctx.signals.awaiting_pr_id == 42
    assert ctx.signals.ends_phase
    assert "argument 'prId'" in await refused(ctx, "await_event", eventName="x", prId="PR-4")
    assert "argument 'eventName'" in await refused(ctx, "await_event", eventName="")


async def test_escalate_sets_the_reason(ctx: ToolContext) -> None:
    await call(ctx, "escalate", reason="no access to the repository")
    assert ctx.signals.escalated and ctx.signals.escalation_reason == "no access to the repository"
    assert (await log_lines(ctx))[-1] == "[escalate] no access to the repository"


async def test_switch_workflow_needs_a_workflow_that_exists(ctx: ToolContext) -> None:
    message = await refused(ctx, "switch_workflow", workflowPath="workflows/nope.md", reason="r")
    assert "'workflows/nope.md' does not exist" in message
    assert "already runs" in await refused(
        ctx, "switch_workflow", workflowPath=WORKFLOW_PATH, reason="r"
    )
    assert ctx.signals.switch_workflow is None
    await call(
        ctx,
        "switch_workflow",
        workflowPath="workflows/job-fast/workflow.md",
        paramsPatch={"lane": "fast"},
        reason="one small change",
        toPhase="coding",
    )
    switch = ctx.signals.switch_workflow
    assert switch is not None and ctx.signals.ends_phase
    assert (switch.workflow_path, switch.to_phase) == ("workflows/job-fast/workflow.md", "coding")
    assert switch.params_patch == {"lane": "fast"} and switch.reason == "one small change"


# -- artefacts and insights -------------------------------------------------------------------
async def test_post_artifact_records_who_made_it_and_announces_it(
    tmp_path: Path, store: InMemoryStateBackend
) -> None:
    ctx = await make_context(tmp_path, store, phase="coding", current_work_item="api")
    wire = await call(
        ctx,
        "post_artifact",
        kind="pr-link",
        title="PR #7",
        data={"url": "https://example.test/pr/7", "prId": 7},
    )
    assert re.fullmatch(r"art-\d{13}-[0-9a-f]{4}", wire["id"])
    assert (wire["phase"], wire["createdBy"], wire["data"]["prId"]) == ("coding", "coding:api", 7)
    job = await stored(ctx)
    assert [a.id for a in job.artifacts] == [wire["id"]]
    events = await store.read_events(ctx.job.id, kinds=[EventKind.ARTIFACT])
    assert [e.data["id"] for e in events] == [wire["id"]]
    assert (await log_lines(ctx))[-1] == f"[artifact] pr-link: PR #7 ({wire['id']})"


async def test_post_artifact_keeps_file_paths_inside_the_job_dir(ctx: ToolContext) -> None:
    wire = await call(ctx, "post_artifact", kind="plan-md", title="Plan", data={"path": "plan.md"})
    assert wire["data"] == {"path": "plan.md"} and wire["createdBy"] == "planning"
    outside = ctx.job_dir.parent / "elsewhere"
    outside.mkdir()
    (ctx.job_dir / "link").symlink_to(outside)
    for bad in ("/etc/passwd", "../job-2/plan.md", "link/plan.md", 3):
        message = await refused(ctx, "post_artifact", kind="x", title="t", data={"path": bad})
        assert "data.path" in message
    assert len((await stored(ctx)).artifacts) == 1


async def test_get_artifacts_filters_by_phase(ctx: ToolContext) -> None:
    await call(ctx, "post_artifact", kind="plan-md", title="Plan")
    await call(ctx, "post_artifact", phase="coding", kind="pr-link", title="PR")
    everything = await call(ctx, "get_artifacts")
    assert everything["total"] == 2 and [a["title"] for a in everything["artifacts"]] == [
        "Plan",
        "PR",
    ]
    coding = await call(ctx, "get_artifacts", phase="coding")
    assert coding["total"] == 1 and coding["artifacts"][0]["kind"] == "pr-link"


async def test_add_insight_records_a_pending_insight(ctx: ToolContext) -> None:
    wire = await call(
        ctx,
        "add_insight",
        category="toolchain-pitfall",
        summary="go 1.22 needs GOFLAGS",
        detail="the build failed 3 times",
        suggestedLayer="repo",
    )
    assert re.fullmatch(r"ins-\d{13}-[0-9a-f]{4}", wire["id"])
    assert (wire["status"], wire["phase"], wire["suggestedLayer"]) == (
        "pending",
        "planning",
        "repo",
    )
    assert [i.summary for i in (await stored(ctx)).insights] == ["go 1.22 needs GOFLAGS"]
    assert (await log_lines(ctx))[-1] == "[insight] toolchain-pitfall: go 1.22 needs GOFLAGS"
    message = await refused(
        ctx, "add_insight", category="c", summary="s", detail="d", suggestedLayer="team"
    )
    assert "argument 'suggestedLayer'" in message


# -- memory -----------------------------------------------------------------------------------
def write_memory(ctx: ToolContext, files: dict[str, str]) -> Path:
    memory = ctx.intelligence_dir / "memory"
    for name, text in files.items():
        (memory / name).parent.mkdir(parents=True, exist_ok=True)
        (memory / name).write_text(textwrap.dedent(text))
    return memory


async def test_read_memory_returns_the_index_its_links_and_pending_proposals(
    ctx: ToolContext,
) -> None:
    write_memory(
        ctx,
        {
            "MEMORY.md": """\
                # Memory
                - [Pitfalls](pitfalls.md) and [go](./snippets/go.md#build)
                - [site](https://example.test/x.md), [gone](missing.md), [out](../secret.md)
            """,
            "pitfalls.md": "PITFALLS BODY\n",
            "snippets/go.md": "GO SNIPPET\n",
            "unlinked.md": "NOT LINKED\n",
        },
    )
    (ctx.intelligence_dir / "secret.md").write_text("SECRET\n")
    await ctx.store.create_proposal(
        Proposal(id="prop-1", tenant_id=TENANT, job_id="job-0", type="memory-update", title="A")
    )
    await ctx.store.create_proposal(
        Proposal(id="prop-2", tenant_id="other", job_id="job-9", type="skill-create", title="B")
    )
    text = await call(ctx, "read_memory")
    assert text.index("# memory/MEMORY.md") < text.index("PITFALLS BODY")
    assert "# memory/snippets/go.md\n\nGO SNIPPET" in text
    assert "# memory/missing.md\n\n(linked from MEMORY.md, but missing)" in text
    assert "NOT LINKED" not in text and "SECRET" not in text
    assert "- prop-1 [memory-update → tenant] 'A' (job job-0; no files)" in text
    assert "prop-2" not in text


async def test_read_memory_without_an_index_says_so(ctx: ToolContext) -> None:
    write_memory(ctx, {"pitfalls.md": "x"})
    text = await call(ctx, "read_memory")
    assert "no MEMORY.md" in text and "pitfalls.md" in text and "(none)" in text


async def test_read_memory_reads_one_file_under_memory(ctx: ToolContext) -> None:
    write_memory(ctx, {"pitfalls.md": "P\n", "snippets/abc.md": "S\n"})
    assert await call(ctx, "read_memory", file="pitfalls.md") == "P\n"
    assert await call(ctx, "read_memory", file="memory/pitfalls.md") == "P\n"
    assert await call(ctx, "read_memory", file="snippets/abc.md") == "S\n"
    message = await refused(ctx, "read_memory", file="nope.md")
    assert "does not exist; memory files: pitfalls.md, snippets/abc.md" in message


async def test_read_memory_refuses_paths_that_leave_memory(ctx: ToolContext) -> None:
    memory = write_memory(ctx, {"pitfalls.md": "P\n"})
    (ctx.job_dir / "secret.md").write_text("SECRET\n")
    (memory / "sneaky.md").symlink_to(ctx.job_dir / "secret.md")
    for bad in ("../../secret.md", "/etc/passwd", str(ctx.job_dir / "secret.md"), "sneaky.md"):
        message = await refused(ctx, "read_memory", file=bad)
        assert "SECRET" not in message and ("leaves" in message or "no absolute" in message)


# -- proposals --------------------------------------------------------------------------------
def proposal(**fields: Any) -> dict[str, Any]:
    return {
        "type": "memory-update",
        "title": "Remember the GOFLAGS pitfall",
        "rationale": "the build failed three times",
        "description": "adds one pitfall",
        **fields,
    }


PITFALL = {
    "file": "pitfalls.md",
    "kind": "pitfall",
    "title": "Go builds need GOFLAGS=-mod=mod",
    "symptom": "go build fails with 'missing go.sum entry'",
    "rootCause": "vendoring is off in the sandbox",
    "recipe": "export GOFLAGS=-mod=mod\nthen go build ./...",
}


async def test_propose_change_writes_the_files_and_records_the_proposal(
    ctx: ToolContext,
) -> None:
    result = await call(
        ctx,
        "propose_change",
        **proposal(files=[{"path": "agents/coder.md", "content": "# Coder\n"}]),
    )
    assert re.fullmatch(r"prop-\d{13}-[0-9a-f]{4}", result["proposalId"])
    assert result["files"] == ["agents/coder.md"]
    directory = ctx.proposals_dir / result["proposalId"]
    assert result["path"] == str(directory)
    assert (directory / "agents" / "coder.md").read_text() == "# Coder\n"
    [recorded] = await ctx.store.list_proposals(TENANT)
    assert (recorded.id, recorded.job_id, recorded.status) == (
        result["proposalId"],
        "job-1",
        "pending",
    )
    assert recorded.target_layer == "tenant" and recorded.files[0].content == "# Coder\n"
    assert (await log_lines(ctx))[-1].startswith(f"[proposal] {result['proposalId']} ")
    assert [p.name for p in ctx.proposals_dir.iterdir()] == [result["proposalId"]]


async def test_memory_entries_are_appended_to_the_target_layers_part_of_the_file(
    ctx: ToolContext,
) -> None:
    merged = (
        "<!-- coro layer: base -->\nBASE PITFALLS\n\n"
        "<!-- coro layer: tenant:solo-test -->\n# Team pitfalls\n\n### Old one\n- x\n"
    )
    write_memory(ctx, {"pitfalls.md": merged})
    result = await call(ctx, "propose_change", **proposal(entries=[PITFALL]))
    assert result["files"] == ["memory/pitfalls.md"]
    content = (ctx.proposals_dir / result["proposalId"] / "memory" / "pitfalls.md").read_text()
    assert content == textwrap.dedent("""\
        # Team pitfalls

        ### Old one
        - x

        ### Pitfall: Go builds need GOFLAGS=-mod=mod

        - **Symptom:** go build fails with 'missing go.sum entry'
        - **Root cause:** vendoring is off in the sandbox
        - **Recipe:** export GOFLAGS=-mod=mod
          then go build ./...
        """)


async def test_a_memory_entry_over_its_line_budget_is_refused(ctx: ToolContext) -> None:
    long = {**PITFALL, "recipe": "\n".join(f"step {n}" for n in range(7))}  # 9 body lines
    message = await refused(ctx, "propose_change", **proposal(entries=[long]))
    assert "a pitfall may take at most 8 lines, this one takes 9" in message
    pattern = {"file": "patterns.md", "kind": "pattern", "title": "t", "recipe": long["recipe"]}
    await call(ctx, "propose_change", **proposal(entries=[pattern]))  # 7 lines: within 10
    assert not any(ctx.proposals_dir.glob("*/memory/pitfalls.md"))


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"files": [{"path": "scripts/run.sh", "content": "x"}]}, "only markdown (.md)"),
        ({"files": [{"path": "../escape.md", "content": "x"}]}, "without '..'"),
        ({"files": [{"path": "/abs/agent.md", "content": "x"}]}, "without '..'"),
        ({"entries": [{**PITFALL, "file": "../../x.md"}]}, "entries[0].file"),
        ({"targetFile": "memory/x.md"}, "targetFile needs proposedContent"),
        ({}, "nothing to propose"),
        ({"type": "new-memory", "files": []}, "argument 'type'"),
        (
            {
                "files": [{"path": "memory/pitfalls.md", "content": "x"}],
                "entries": [PITFALL],
            },
            "also given whole",
        ),
    ],
)
async def test_propose_change_refuses_bad_changes(
    ctx: ToolContext, fields: dict[str, Any], problem: str
) -> None:
    assert problem in await refused(ctx, "propose_change", **proposal(**fields))
    assert await ctx.store.list_proposals(TENANT) == []
    assert not ctx.proposals_dir.exists() or not any(ctx.proposals_dir.iterdir())


async def test_a_job_makes_one_proposal_per_layer(ctx: ToolContext) -> None:
    first = await call(ctx, "propose_change", **proposal(entries=[PITFALL]))
    message = await refused(
        ctx, "propose_change", **proposal(targetFile="agents/a.md", proposedContent="A")
    )
    assert f"already proposed a change to the tenant layer ({first['proposalId']}" in message
    await call(
        ctx,
        "propose_change",
        **proposal(targetFile="agents/a.md", proposedContent="A", targetLayer="repo"),
    )
    layers = sorted(p.target_layer or "" for p in await ctx.store.list_proposals(TENANT))
    assert layers == ["repo", "tenant"]
    assert len(os.listdir(ctx.proposals_dir)) == 2


async def test_list_proposals_filters_and_limits(ctx: ToolContext) -> None:
    for number, (kind, status) in enumerate(
        [("memory-update", "pending"), ("skill-create", "pending"), ("memory-update", "approved")]
    ):
        await ctx.store.create_proposal(
            Proposal(
                id=f"prop-{number}",
                tenant_id=TENANT,
                job_id=f"job-{number}",
                type=kind,
                title=f"P{number}",
                status=status,
            )
        )
    await ctx.store.create_proposal(
        Proposal(id="prop-x", tenant_id="other", job_id="job-x", type="memory-update", title="X")
    )
    everything = await call(ctx, "list_proposals")
    assert everything["total"] == 3 and {p["id"] for p in everything["proposals"]} == {
        "prop-0",
        "prop-1",
        "prop-2",
    }
    memory = await call(ctx, "list_proposals", type="memory-update", status="pending")
    assert [p["id"] for p in memory["proposals"]] == ["prop-0"]
    limited = await call(ctx, "list_proposals", limit=1)
    assert limited["total"] == 3 and len(limited["proposals"]) == 1
    assert "argument 'limit'" in await refused(ctx, "list_proposals", limit=0)


def test_the_in_process_server_skips_the_sdk_tracing_span() -> None:
    """coro installs no tracer; the span the SDK wraps every call in would be pure overhead.
    If the SDK renames its middleware this fails instead of quietly paying for it again."""
    from engine.tools.mcp_bridge import _new_server

    names = [type(m).__name__ for m in _new_server([]).middleware]
    assert names and "OpenTelemetryMiddleware" not in names
    from mcp.server.lowlevel import Server

    assert "OpenTelemetryMiddleware" in [type(m).__name__ for m in Server("probe").middleware]
