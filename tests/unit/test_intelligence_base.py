"""The base intelligence layer is checked, not trusted.

Every workflow goes through the real parser against the live tool registry; every agent a
workflow names exists; every tool any markdown of the layer mentions exists (the original's
agents named tools that did not); every skill has a name and a description.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

from engine.tools import DOMAIN_TOOLS
from engine.workflow import BUILTIN_TOOL_NAMES, DOMAIN_TOOL_PREFIX, Workflow, load_workflow
from intelligence_base import layer_path

LAYER = layer_path()

WORKFLOWS = ("job", "job-fast", "job-deep", "self-update")
AGENTS = ("spec-writer", "planner", "coder", "code-reviewer", "pr-reviewer", "evaluator",
          "analyzer", "qa")  # fmt: skip
SKILLS = ("python-conventions", "typescript-conventions", "go-conventions", "rust-conventions",
          "java-conventions", "spec-quality", "feature-planning", "feature-testing",
          "self-improvement-guide", "sandbox-recovery")  # fmt: skip
MEMORY = ("MEMORY.md", "known-pitfalls.md", "successful-patterns.md",
          "architecture-decisions.md", "library-choices.md", "pr-feedback.md")  # fmt: skip

#: Tool names of agent hosts (Claude Code and others) that a markdown author might reach for;
#: any of them mentioned in backticks must be one coro's executor really provides.
HOST_TOOL_NAMES = frozenset({
    "Read", "Write", "Edit", "MultiEdit", "Bash", "BashOutput", "KillBash", "KillShell", "Glob",
    "Grep", "LS", "Skill", "Task", "Agent", "WebFetch", "WebSearch", "TodoWrite", "NotebookEdit",
    "NotebookRead", "SlashCommand", "ExitPlanMode",
})  # fmt: skip
#: A bare snake_case word in backticks with one of these prefixes reads as a tool name; the
#: original's tool families are here too, so naming one of its tools we lack is caught.
TOOLISH_PREFIXES = (
    "scm_", "tracker_", "campaign_", "upstream_", "loki_", "tempo_", "file_", "run_",
    "dispatch_", "convert_", "list_", "get_", "set_", "update_", "read_", "request_", "goto_",
    "await_", "switch_", "post_", "add_", "propose_", "start_", "stop_", "compare_",
)  # fmt: skip
_MCP_NAME = re.compile(r"mcp__([A-Za-z0-9_-]+?)__([A-Za-z0-9_]+)")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_CALL = re.compile(r"(?<![A-Za-z0-9_.])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\(")
_SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
_EXAMPLE = re.compile(r"^([a-z][a-z0-9_]*)\((\{.*\})\)$")
_GOTO = re.compile(r'goto_phase\(\{"phase": "([^"]+)"')
_SWITCH = re.compile(r'"workflowPath": "([^"]+)"')
_SKILL_REF = re.compile(
    r"`([a-z]+(?:-[a-z]+)*-(?:conventions|guide|quality|planning|testing|recovery))`"
)


def known_tool(name: str) -> bool:
    return name in BUILTIN_TOOL_NAMES or name.removeprefix(DOMAIN_TOOL_PREFIX) in DOMAIN_TOOLS


def markdown_files() -> list[Path]:
    return sorted(p for p in LAYER.rglob("*.md") if p.is_file())


@cache
def workflows() -> dict[str, Workflow]:
    return {
        name: load_workflow(
            LAYER / "workflows" / name / "workflow.md",
            path=f"workflows/{name}/workflow.md",
            known_tools=known_tool,
        )
        for name in WORKFLOWS
    }


def unknown_tools(text: str) -> list[str]:
    """Every tool-looking name in ``text`` that no registry has, with why it looks like one."""
    problems: list[str] = []
    for server, name in _MCP_NAME.findall(text):
        if server != "coro":
            problems.append(f"mcp__{server}__{name}: the base layer may only use coro's tools")
        elif name not in DOMAIN_TOOLS:
            problems.append(f"mcp__coro__{name}: no such coro tool")
    for span in _CODE_SPAN.findall(text):
        for name in _CALL.findall(span):
            if name not in DOMAIN_TOOLS:
                problems.append(f"{name}(...): called like a tool, but no such coro tool")
        word = span.strip()
        toolish = _SNAKE.fullmatch(word) and word.startswith(TOOLISH_PREFIXES)
        if toolish and word not in DOMAIN_TOOLS:
            problems.append(f"`{word}`: named like a tool, but no such coro tool")
        if word in HOST_TOOL_NAMES and word not in BUILTIN_TOOL_NAMES:
            problems.append(f"`{word}`: coro's executor has no such built-in tool")
        problems += wrong_arguments(word)
    return problems


def wrong_arguments(span: str) -> list[str]:
    """For an example call whose arguments are JSON (``log({"message": "..."})``): the
    argument names the tool's schema does not know, and the required ones it lacks."""
    match = _EXAMPLE.match(span)
    if match is None or match.group(1) not in DOMAIN_TOOLS:
        return []
    try:
        arguments = json.loads(match.group(2))
    except ValueError:
        return []  # an elided example such as {...} or {"prId": N}
    schema = DOMAIN_TOOLS[match.group(1)].input_schema
    known, required = set(schema.get("properties", {})), set(schema.get("required", []))
    problems = [f"{span}: no argument {key!r}" for key in sorted(set(arguments) - known)]
    problems += [f"{span}: lacks {key!r}" for key in sorted(required - set(arguments))]
    return problems


# -- the checker itself can fail -------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "Fetch the ticket with `tracker_get_issue({'key': 'X-1'})`.",
        "Call mcp__coro__loki_query for the logs.",
        "Use mcp__github__create_pull_request.",
        "Keep a list with `TodoWrite`.",
        "Read a file with `file_read`.",
        'Record it: `set_job_params({"language": "go"})`.',
        'Park: `await_event({"event": "pr:merged"})`.',
    ],
)
def test_the_tool_check_catches_a_tool_that_does_not_exist(text: str) -> None:
    assert unknown_tools(text)


def test_the_tool_check_passes_real_tools_and_ordinary_code() -> None:
    text = (
        "Call `scm_create_pr({...})`, then mcp__coro__log; use `Bash` to run "
        "`pytest -q tests/test_x.py`, a `tmp_path` fixture and `__init__.py`."
    )
    assert unknown_tools(text) == []


# -- inventory -------------------------------------------------------------------------------------
def test_the_layer_holds_every_file_the_runtime_and_the_agents_rely_on() -> None:
    expected = (
        [f"workflows/{w}/workflow.md" for w in WORKFLOWS]
        + [f"agents/{a}.md" for a in AGENTS]
        + [f".claude/skills/{s}/SKILL.md" for s in SKILLS]
        + [f"memory/{m}" for m in MEMORY]
        + [".claude/CLAUDE.md"]
    )
    missing = [path for path in expected if not (LAYER / path).is_file()]
    assert missing == []


# -- workflows -------------------------------------------------------------------------------------
def test_every_workflow_parses_against_the_live_tool_registry() -> None:
    assert set(workflows()) == set(WORKFLOWS)
    for workflow in workflows().values():
        assert workflow.display_name and workflow.description, workflow.path


def test_every_agent_a_workflow_names_exists_and_every_agent_is_used() -> None:
    named: set[str] = set()
    for workflow in workflows().values():
        for phase in workflow.phases:
            agents = [phase.agent] if phase.agent else []
            agents += [sub.agent for sub in phase.subagents]
            for agent in agents:
                assert (LAYER / agent).is_file(), f"{workflow.path}: {phase.name}: {agent}"
                named.add(agent)
    on_disk = {p.relative_to(LAYER).as_posix() for p in (LAYER / "agents").glob("*.md")}
    assert on_disk == named


def test_the_lanes_have_the_phases_the_reference_gives_them() -> None:
    phases = {name: [p.name for p in wf.phases] for name, wf in workflows().items()}
    assert phases == {
        "job": ["spec-writing", "planning", "coding", "review", "evaluation"],
        "job-fast": ["planning", "coding", "review-and-verify"],
        "job-deep": ["spec-writing", "analysis", "planning", "coding", "review", "qa",
                     "evaluation"],
        "self-update": ["tracking"],
    }  # fmt: skip
    job = workflows()["job"]
    assert all(p.interactive_checkpoint for p in job.phases)
    assert [s.name for s in job.phase("coding").subagents] == ["code-reviewer"]
    assert workflows()["self-update"].phases[0].agent is None


def test_every_phase_a_goto_names_and_every_workflow_a_switch_names_exists() -> None:
    all_phases = {p.name for wf in workflows().values() for p in wf.phases}
    for file in markdown_files():
        text = file.read_text(encoding="utf-8")
        for phase in _GOTO.findall(text):
            assert phase in all_phases, f"{file.relative_to(LAYER)}: goto_phase {phase!r}"
        for path in _SWITCH.findall(text):
            assert (LAYER / path).is_file(), f"{file.relative_to(LAYER)}: workflow {path!r}"


# -- tools mentioned anywhere ----------------------------------------------------------------------
@pytest.mark.parametrize("file", markdown_files(), ids=lambda p: p.relative_to(LAYER).as_posix())
def test_every_tool_a_markdown_file_mentions_exists(file: Path) -> None:
    assert unknown_tools(file.read_text(encoding="utf-8")) == []


def test_every_skill_an_agent_or_the_runtime_rules_name_exists() -> None:
    skills = {p.parent.name for p in (LAYER / ".claude" / "skills").glob("*/SKILL.md")}
    for file in [*sorted((LAYER / "agents").glob("*.md")), LAYER / ".claude" / "CLAUDE.md"]:
        for name in _SKILL_REF.findall(file.read_text(encoding="utf-8")):
            assert name in skills, f"{file.relative_to(LAYER)} names skill {name!r}"


# -- skills and memory -----------------------------------------------------------------------------
@pytest.mark.parametrize("skill", SKILLS)
def test_every_skill_has_a_name_and_a_description(skill: str) -> None:
    text = (LAYER / ".claude" / "skills" / skill / "SKILL.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "a SKILL.md starts with YAML front matter"
    meta = yaml.safe_load(text.split("---\n", 2)[1])
    assert meta["name"] == skill
    assert isinstance(meta.get("description"), str) and len(meta["description"].split()) >= 5


def test_memory_index_links_every_memory_file() -> None:
    index = (LAYER / "memory" / "MEMORY.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)#\s]+\.md)\)", index))
    assert linked == set(MEMORY) - {"MEMORY.md"}
