"""The workflow parser: real-shaped workflows, defaults, and the errors a workflow author sees."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from engine.errors import WorkflowError
from engine.workflow import (
    BUILTIN_TOOL_NAMES,
    PhaseConfig,
    Workflow,
    load_workflow,
    parse_workflow,
    split_front_matter,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "workflows"
PATH = "workflows/job/workflow.md"

# A slice of the domain tools of the reference's §3, as agents see them.
DOMAIN_TOOLS = frozenset(
    f"mcp__coro__{name}"
    for name in (
        "log",
        "goto_phase",
        "await_event",
        "escalate",
        "set_work_items",
        "update_work_item",
        "get_work_items",
        "post_artifact",
        "read_memory",
        "scm_create_pr",
        "scm_get_pr_status",
        "scm_list_pr_comments",
        "scm_post_pr_comment",
        "scm_merge_pr",
        "tracker_get_issue",
        "tracker_comment_issue",
    )
)


def load(name: str) -> Workflow:
    stem = name.removesuffix(".md")
    return load_workflow(
        DATA / name, path=f"workflows/{stem}/workflow.md", known_tools=DOMAIN_TOOLS
    )


def parse(front_matter: str, body: str = "# Body\n", **kwargs: Any) -> Workflow:
    text = f"---\n{textwrap.dedent(front_matter).strip()}\n---\n{body}"
    return parse_workflow(text, path=PATH, **kwargs)


def error_of(front_matter: str, **kwargs: Any) -> str:
    with pytest.raises(WorkflowError) as caught:
        parse(front_matter, **kwargs)
    return caught.value.message


def row(phase: PhaseConfig) -> tuple[str, str | None, str | None, str, bool]:
    return (phase.name, phase.agent, phase.tier, phase.status, phase.interactive_checkpoint)


# --- the workflows of the reference, §2.3 ----------------------------------------------------


def test_standard_job_has_the_reference_phases_in_order() -> None:
    workflow = load("job.md")

    assert workflow.display_name == "Implementation Job"
    assert workflow.kind == "job"
    assert (workflow.initial_phase, workflow.initial_status) == ("spec-writing", "queued")
    assert [row(phase) for phase in workflow.phases] == [
        ("spec-writing", "agents/spec-writer.md", "mini", "spec-writing", True),
        ("planning", "agents/planner.md", "planning", "planning", True),
        ("coding", "agents/coder.md", "coding", "coding", True),
        ("review", "agents/pr-reviewer.md", "mini", "reviewing", True),
        ("evaluation", "agents/evaluator.md", "planning", "evaluating", True),
    ]
    assert all(phase.tools is None and phase.model is None for phase in workflow.phases)


def test_standard_job_coding_phase_has_the_code_reviewer_subagent() -> None:
    (reviewer,) = load("job.md").phase("coding").subagents

    assert (reviewer.name, reviewer.agent, reviewer.tier) == (
        "code-reviewer",
        "agents/code-reviewer.md",
        "mini",
    )
    assert reviewer.tools == (
        "Read",
        "Glob",
        "Grep",
        "Bash",
        "mcp__coro__scm_list_pr_comments",
        "mcp__coro__scm_post_pr_comment",
        "mcp__coro__log",
    )


def test_fast_lane_starts_at_planning_and_checkpoints_only_coding_and_review() -> None:
    workflow = load("job-fast.md")

    assert workflow.start_for(None) == ("planning", "queued")
    assert [row(phase) for phase in workflow.phases] == [
        ("planning", "agents/planner.md", "planning", "planning", False),
        ("coding", "agents/coder.md", "coding", "coding", True),
        ("review-and-verify", "agents/pr-reviewer.md", "mini", "reviewing", True),
    ]
    assert [s.name for s in workflow.phase("coding").subagents] == ["code-reviewer"]


def test_deep_lane_adds_analysis_and_qa_and_checkpoints_every_phase() -> None:
    workflow = load("job-deep.md")

    assert workflow.phase_names == (
        "spec-writing",
        "analysis",
        "planning",
        "coding",
        "review",
        "qa",
        "evaluation",
    )
    assert all(phase.interactive_checkpoint for phase in workflow.phases)
    assert workflow.phase("spec-writing").tier == "coding"
    assert row(workflow.phase("analysis")) == (
        "analysis",
        "agents/analyzer.md",
        "planning",
        "analyzing",
        True,
    )
    assert row(workflow.phase("qa")) == ("qa", "agents/qa.md", "planning", "qa", True)


def test_self_update_is_one_agentless_tracking_phase() -> None:
    workflow = load("self-update.md")

    assert workflow.kind == "internal"
    (tracking,) = workflow.phases
    assert (tracking.name, tracking.agent, tracking.status) == (
        "tracking",
        None,
        "awaiting-pr-merge",
    )
    assert tracking.interactive_checkpoint is False
    assert workflow.next_phase("tracking") is None


def test_campaign_uses_the_older_model_field() -> None:
    workflow = load("campaign.md")

    assert workflow.kind == "campaign"
    planning, coordinating, aggregation = workflow.phases
    assert (planning.model, planning.tier) == ("planning", None)
    assert (aggregation.model, aggregation.tier) == ("claude-sonnet-4-5", None)
    assert (aggregation.status, aggregation.interactive_checkpoint) == ("aggregating", True)
    assert (coordinating.agent, coordinating.status) == (None, "awaiting-children")
    assert (coordinating.model, coordinating.tier) == (None, "planning")


def test_body_is_the_markdown_after_the_front_matter() -> None:
    body = load("job.md").body

    assert body.startswith("# Implementation Job\n")
    assert "display_name" not in body
    assert "---" not in body
    assert body.rstrip().endswith("move the tracker ticket to Done.")


# --- navigation and start rules --------------------------------------------------------------


def test_next_phase_follows_declared_order_and_ends_with_none() -> None:
    workflow = load("job.md")

    chain = [workflow.initial_phase]
    while (following := workflow.next_phase(chain[-1])) is not None:
        chain.append(following)
    assert chain == ["spec-writing", "planning", "coding", "review", "evaluation"]


def test_asking_for_an_undeclared_phase_names_the_workflow_and_its_phases() -> None:
    workflow = load("job.md")

    assert workflow.has_phase("review")
    assert not workflow.has_phase("reviewing")
    with pytest.raises(WorkflowError, match=r"workflows/job/workflow.md: no phase named 'revew'"):
        workflow.phase("revew")
    with pytest.raises(WorkflowError) as caught:
        workflow.next_phase("qa")
    assert "(phases: spec-writing, planning, coding, review, evaluation)" in caught.value.message


def test_overrides_change_where_a_trigger_source_starts() -> None:
    workflow = parse(
        """
        initial_phase: spec-writing
        overrides:
          jira: {initial_phase: planning}
          internal: {initial_phase: coding, initial_status: awaiting-developer-input}
        phases:
          - {name: spec-writing, agent: agents/spec-writer.md}
          - {name: planning, agent: agents/planner.md}
          - {name: coding, agent: agents/coder.md}
        """
    )

    assert workflow.start_for("jira") == ("planning", "queued")
    assert workflow.start_for("internal") == ("coding", "awaiting-developer-input")
    assert workflow.start_for("cli") == ("spec-writing", "queued")
    assert workflow.start_for(None) == ("spec-writing", "queued")


def test_defaults_for_a_minimal_workflow() -> None:
    workflow = parse("phases: [{name: only, agent: agents/a.md}]")

    assert workflow.display_name == "job"  # the folder of workflows/job/workflow.md
    assert (workflow.kind, workflow.description, workflow.overrides) == ("job", "", {})
    only = workflow.phase("only")
    assert (only.tier, only.model, only.status, only.provider) == ("planning", None, "only", None)
    assert (only.tools, only.subagents, only.obligations) == (None, (), ())


def test_phase_fields_that_are_rarely_set() -> None:
    workflow = parse(
        """
        phases:
          - name: coding
            agent: agents/coder.md
            provider: openai
            tools: []
            subagents:
            obligations: [every PR has a test, no TODOs left behind]
        """
    )

    coding = workflow.phase("coding")
    assert coding.provider == "openai"
    assert coding.tools == ()  # an empty allow-list means no tools, not the defaults
    assert coding.subagents == ()
    assert coding.obligations == ("every PR has a test", "no TODOs left behind")


def test_a_tier_may_name_a_configured_alias() -> None:
    workflow = parse("phases: [{name: a, agent: agents/a.md, tier: fast}]", tier_aliases={"fast"})

    assert workflow.phase("a").tier == "fast"


def test_camel_case_keys_are_read_as_their_snake_case_fields() -> None:
    workflow = parse(
        """
        displayName: Camel
        initialPhase: b
        phases:
          - {name: a, agent: agents/a.md}
          - {name: b, agent: agents/b.md, interactiveCheckpoint: true}
        """
    )

    assert (workflow.display_name, workflow.initial_phase) == ("Camel", "b")
    assert workflow.phase("b").interactive_checkpoint is True


def test_windows_line_endings_and_a_byte_order_mark_parse_like_the_original() -> None:
    original = (DATA / "job.md").read_text(encoding="utf-8")
    windows = "\ufeff" + original.replace("\n", "\r\n")

    parsed = parse_workflow(windows, path=PATH, known_tools=DOMAIN_TOOLS)

    assert parsed == parse_workflow(original, path=PATH, known_tools=DOMAIN_TOOLS)
    assert "\r" not in parsed.body


def test_parsed_workflows_are_immutable() -> None:
    workflow = load("job.md")

    with pytest.raises(ValidationError):
        workflow.initial_phase = "coding"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        workflow.phases[0].tier = "coding"  # type: ignore[misc]


# --- tools -----------------------------------------------------------------------------------


def test_builtin_tools_are_always_known() -> None:
    assert {"Read", "Write", "Edit", "Bash", "Glob", "Grep", "Skill", "Task"} == BUILTIN_TOOL_NAMES
    tools = "[Read, Write, Edit, Bash, Glob, Grep, Skill, Task]"

    workflow = parse(f"phases: [{{name: a, agent: agents/a.md, tools: {tools}}}]", known_tools=())

    assert workflow.phase("a").tools == tuple(sorted(BUILTIN_TOOL_NAMES, key=tools.index))


def test_an_unregistered_domain_tool_is_an_error_with_a_suggestion() -> None:
    message = error_of(
        """
        phases:
          - name: review
            agent: agents/pr-reviewer.md
            tools: [Read, mcp__coro__scm_merge, mcp__coro__log]
        """,
        known_tools=DOMAIN_TOOLS,
    )

    assert message == (
        f"{PATH}: phase 'review': field 'tools': unknown tool 'mcp__coro__scm_merge' "
        "(did you mean 'mcp__coro__scm_merge_pr'?)"
    )


def test_an_unregistered_tool_in_a_subagent_names_the_subagent() -> None:
    # The original's job workflow lists scm_get_pr_comments, which was never registered.
    message = error_of(
        """
        phases:
          - name: coding
            agent: agents/coder.md
            subagents:
              - name: code-reviewer
                agent: agents/code-reviewer.md
                tools: [Read, mcp__coro__scm_get_pr_comments]
        """,
        known_tools=DOMAIN_TOOLS,
    )

    assert message.startswith(
        f"{PATH}: phase 'coding': subagent 'code-reviewer': field 'tools': "
        "unknown tool 'mcp__coro__scm_get_pr_comments'"
    )
    assert "did you mean 'mcp__coro__scm_list_pr_comments'?" in message


def test_a_bare_domain_tool_name_suggests_the_prefixed_spelling() -> None:
    message = error_of(
        "phases: [{name: a, agent: agents/a.md, tools: [log]}]", known_tools=DOMAIN_TOOLS
    )

    assert message.endswith("unknown tool 'log' (did you mean 'mcp__coro__log'?)")


def test_known_tools_may_be_a_predicate() -> None:
    asked: list[str] = []

    def registered(name: str) -> bool:
        asked.append(name)
        return name == "mcp__coro__log"

    workflow = parse(
        "phases: [{name: a, agent: agents/a.md, tools: [Read, mcp__coro__log]}]",
        known_tools=registered,
    )
    assert workflow.phase("a").tools == ("Read", "mcp__coro__log")
    assert asked == ["mcp__coro__log"]
    message = error_of(
        "phases: [{name: a, agent: agents/a.md, tools: [mcp__coro__nope]}]", known_tools=registered
    )
    assert message.endswith("field 'tools': unknown tool 'mcp__coro__nope'")


def test_external_server_tools_need_the_server_to_be_configured() -> None:
    front = "phases: [{name: a, agent: agents/a.md, tools: ['mcp__github__*', mcp__jira__get]}]"

    workflow = parse(front, known_tools=DOMAIN_TOOLS, known_servers={"github", "jira"})
    assert workflow.phase("a").tools == ("mcp__github__*", "mcp__jira__get")

    message = error_of(front, known_tools=DOMAIN_TOOLS, known_servers={"jira"})
    assert message.endswith(
        "unknown tool 'mcp__github__*': MCP server 'github' is not configured "
        "(configured servers: jira)"
    )


def test_coro_tools_cannot_be_granted_by_wildcard_even_with_a_server_named_coro() -> None:
    message = error_of(
        "phases: [{name: a, agent: agents/a.md, tools: ['mcp__coro__*']}]",
        known_tools=DOMAIN_TOOLS,
        known_servers={"coro"},
    )

    assert "list coro's tools by name" in message


def test_without_a_registry_tool_names_are_not_checked() -> None:
    workflow = parse("phases: [{name: a, agent: agents/a.md, tools: [mcp__coro__anything]}]")

    assert workflow.phase("a").tools == ("mcp__coro__anything",)


def test_a_tool_listed_twice_is_an_error() -> None:
    message = error_of("phases: [{name: a, agent: agents/a.md, tools: [Read, Bash, Read]}]")

    assert message == f"{PATH}: phase 'a': field 'tools': 'Read' is listed twice"


# --- errors an author sees -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("front_matter", "expected"),
    [
        pytest.param(
            "phases: [{name: coding, agent: agents/coder.md, tier: huge}]",
            f"{PATH}: phase 'coding': field 'tier': expected one of mini, planning, coding, "
            "got 'huge'",
            id="unknown-tier",
        ),
        pytest.param(
            "phases: [{name: coding, agent: agents/coder.md, tier: coding, model: opus}]",
            f"{PATH}: phase 'coding': fields 'tier' and 'model' are both set; keep one",
            id="tier-and-model",
        ),
        pytest.param(
            "phases: [{name: coding, agent: agents/coder.md, model: ''}]",
            f"{PATH}: phase 'coding': field 'model': is empty",
            id="empty-model",
        ),
        pytest.param(
            "phases: [{name: coding, agent: agents/coder.md, interactive_checkpiont: true}]",
            f"{PATH}: phase 'coding': unknown field 'interactive_checkpiont' "
            "(did you mean 'interactive_checkpoint'?)",
            id="misspelt-phase-field",
        ),
        pytest.param(
            "initial_phse: a\nphases: [{name: a, agent: agents/a.md}]",
            f"{PATH}: unknown field 'initial_phse' (did you mean 'initial_phase'?)",
            id="misspelt-top-level-field",
        ),
        pytest.param(
            "colour: blue\nphases: [{name: a, agent: agents/a.md}]",
            f"{PATH}: unknown field 'colour'; known fields: display_name, description, kind,",
            id="unknown-field-without-a-near-match",
        ),
        pytest.param(
            "initial_phase: plan\nphases: [{name: planning, agent: agents/p.md}]",
            f"{PATH}: field 'initial_phase': expected one of planning, got 'plan' "
            "(did you mean 'planning'?)",
            id="initial-phase-undeclared",
        ),
        pytest.param(
            "overrides: {jira: {initial_phase: codng}}\nphases: [{name: coding, agent: a/c.md}]",
            f"{PATH}: override 'jira': field 'initial_phase': expected one of coding, "
            "got 'codng' (did you mean 'coding'?)",
            id="override-phase-undeclared",
        ),
        pytest.param(
            "overrides: {jira: {start: coding}}\nphases: [{name: coding, agent: a/c.md}]",
            f"{PATH}: override 'jira': unknown field 'start'; known fields: initial_phase, "
            "initial_status",
            id="override-unknown-field",
        ),
        pytest.param(
            "overrides: [jira]\nphases: [{name: coding, agent: a/c.md}]",
            f"{PATH}: field 'overrides': expected a mapping of 'key: value' lines, got a list",
            id="overrides-not-a-mapping",
        ),
        pytest.param(
            "display_name: Nothing to do",
            f"{PATH}: field 'phases': is required: declare at least one phase",
            id="no-phases",
        ),
        pytest.param(
            "phases: []",
            f"{PATH}: field 'phases': is required",
            id="empty-phases",
        ),
        pytest.param(
            "phases: coding",
            f"{PATH}: field 'phases': expected a list of phases, got 'coding'",
            id="phases-not-a-list",
        ),
        pytest.param(
            "phases: [coding, review]",
            f"{PATH}: phase #1: expected a mapping of 'key: value' lines, got 'coding'",
            id="phase-not-a-mapping",
        ),
        pytest.param(
            "phases:\n  - {name: a, agent: agents/a.md}\n  - {agent: agents/b.md}",
            f"{PATH}: phase #2: field 'name': is required",
            id="phase-without-name",
        ),
        pytest.param(
            "phases: [{name: Code Review, agent: agents/a.md}]",
            f"{PATH}: phase 'Code Review': field 'name': expected a slug (lowercase letters, "
            "digits and hyphens), got 'Code Review'",
            id="name-not-a-slug",
        ),
        pytest.param(
            "phases:\n"
            "  - {name: coding, agent: agents/coder.md}\n"
            "  - {name: review, agent: agents/pr-reviewer.md}\n"
            "  - {name: coding, agent: agents/coder.md}",
            f"{PATH}: field 'phases': phase 'coding' is declared twice (#1 and #3); "
            "phase names must be unique",
            id="duplicate-phase",
        ),
        pytest.param(
            "phases:\n"
            "  - name: coding\n"
            "    agent: agents/coder.md\n"
            "    subagents:\n"
            "      - {name: code-reviewer, agent: agents/code-reviewer.md}\n"
            "      - {name: code-reviewer, agent: agents/other.md}",
            f"{PATH}: phase 'coding': field 'subagents': subagent 'code-reviewer' is declared "
            "twice (#1 and #2)",
            id="duplicate-subagent",
        ),
        pytest.param(
            "phases: [{name: coding}]",
            f"{PATH}: phase 'coding': field 'agent': is required: give the agent's path "
            "(e.g. agents/coder.md), or null for a phase the runner manages itself",
            id="agent-missing",
        ),
        pytest.param(
            "phases: [{name: coding, agent: ../../etc/coder.md}]",
            f"{PATH}: phase 'coding': field 'agent': expected a relative path to a markdown "
            "file (agents/<name>.md), got '../../etc/coder.md'",
            id="agent-escapes",
        ),
        pytest.param(
            "phases: [{name: coding, agent: agents/a.md, subagents: [{name: r, agent: null}]}]",
            f"{PATH}: phase 'coding': subagent 'r': field 'agent': is required",
            id="subagent-without-agent",
        ),
        pytest.param(
            "phases: [{name: coding, agent: agents/a.md, subagents: [{name: r, agent: a/r.md, "
            "tier: giant}]}]",
            f"{PATH}: phase 'coding': subagent 'r': field 'tier': expected one of mini, "
            "planning, coding, got 'giant'",
            id="subagent-bad-tier",
        ),
        pytest.param(
            "phases: [{name: coding, agent: agents/a.md, interactive_checkpoint: sometimes}]",
            f"{PATH}: phase 'coding': field 'interactive_checkpoint': expected true or false, "
            "got 'sometimes'",
            id="checkpoint-not-a-bool",
        ),
        pytest.param(
            "phases: [{name: coding, agent: agents/a.md, tools: Read}]",
            f"{PATH}: phase 'coding': field 'tools': expected a list, got 'Read'",
            id="tools-not-a-list",
        ),
        pytest.param(
            "phases: [{name: coding, agent: agents/a.md, obligations: [ok, 3]}]",
            f"{PATH}: phase 'coding': field 'obligations': entry #2: expected text, got 3",
            id="obligation-not-text",
        ),
        pytest.param(
            "phases: [{name: coding, agent: 42}]",
            f"{PATH}: phase 'coding': field 'agent': expected text, got 42",
            id="agent-not-text",
        ),
        pytest.param(
            "phases: [{name: coding, agent: agents/a.md, status: In Review}]",
            f"{PATH}: phase 'coding': field 'status': expected a slug",
            id="status-not-a-slug",
        ),
        pytest.param(
            "kind: batch\nphases: [{name: a, agent: agents/a.md}]",
            f"{PATH}: field 'kind': expected one of job, campaign, internal, got 'batch'",
            id="unknown-kind",
        ),
        pytest.param(
            "display_name: [a, b]\nphases: [{name: a, agent: agents/a.md}]",
            f"{PATH}: field 'display_name': expected text, got a list",
            id="display-name-not-text",
        ),
        pytest.param(
            "initial_phase: a\ninitialPhase: a\nphases: [{name: a, agent: agents/a.md}]",
            f"{PATH}: field 'initial_phase': is given twice (as 'initial_phase' and "
            "'initialPhase')",
            id="both-spellings",
        ),
        pytest.param(
            "phases: [{Name: a, agent: agents/a.md}]",
            f"{PATH}: phase #1: unknown field 'Name' (did you mean 'name'?)",
            id="capitalised-key",
        ),
    ],
)
def test_invalid_front_matter_is_reported_in_the_authors_terms(
    front_matter: str, expected: str
) -> None:
    assert error_of(front_matter).startswith(expected)


def test_every_problem_is_a_workflow_error_with_a_title() -> None:
    with pytest.raises(WorkflowError) as caught:
        parse("phases: []")

    assert caught.value.title == "Invalid workflow"


def test_a_file_without_front_matter_is_an_error() -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow("# Implementation Job\n\nNo front matter here.\n", path=PATH)

    assert caught.value.message.startswith(
        f"{PATH}: no front matter: a workflow starts with a '---' line"
    )


def test_unterminated_front_matter_is_an_error() -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow("---\nphases: []\n# Body\n", path=PATH)

    assert caught.value.message.startswith(
        f"{PATH}: front matter opened with '---' on line 1 is never closed"
    )


def test_yaml_syntax_errors_give_the_line_in_the_file() -> None:
    text = "---\ndisplay_name: Job\nphases:\n  - name: a\n   agent: agents/a.md\n---\n"

    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text, path=PATH)

    assert caught.value.message.startswith(f"{PATH}: line 5, column 4: invalid YAML")
    assert caught.value.message.endswith("(check the indentation and quoting)")
    assert isinstance(caught.value.__cause__, Exception)


def test_front_matter_that_is_not_a_mapping_is_an_error() -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow("---\n- planning\n- coding\n---\n", path=PATH)

    assert caught.value.message == (
        f"{PATH}: front matter must be a YAML mapping of 'key: value' lines, got a list"
    )


# --- split_front_matter and load_workflow ----------------------------------------------------


def test_split_front_matter_without_front_matter_returns_the_text() -> None:
    text = "# A skill\n\n---\n\nA horizontal rule is not front matter.\n"

    assert split_front_matter(text) == ({}, text)


def test_split_front_matter_returns_the_mapping_and_the_body() -> None:
    text = "\ufeff---\r\nname: python-conventions\r\ndescription: How we write Python\r\n---\r\n"
    text += "Body\r\n"

    assert split_front_matter(text) == (
        {"name": "python-conventions", "description": "How we write Python"},
        "Body\n",
    )
    assert split_front_matter("---\n---\nBody") == ({}, "Body")


def test_split_front_matter_errors_name_the_source_when_given() -> None:
    with pytest.raises(WorkflowError, match=r"^skills/x/SKILL.md: front matter must be"):
        split_front_matter("---\njust text\n---\n", source="skills/x/SKILL.md")


def test_load_workflow_defaults_the_path_to_the_file(tmp_path: Path) -> None:
    file = tmp_path / "workflow.md"
    file.write_text("---\nphases: [{name: a, agent: agents/a.md}]\n---\nBody\n", encoding="utf-8")

    assert load_workflow(file).path == file.as_posix()
    assert load_workflow(file, path="workflows/x/workflow.md").path == "workflows/x/workflow.md"


def test_load_workflow_reports_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.md"

    with pytest.raises(WorkflowError) as caught:
        load_workflow(missing, path="workflows/nope/workflow.md")

    assert caught.value.message == (
        f"workflows/nope/workflow.md ({missing}): cannot read the workflow file: "
        "No such file or directory"
    )


def test_load_workflow_reports_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    file = tmp_path / "latin1.md"
    file.write_bytes("---\ndisplay_name: Café\n---\n".encode("latin-1"))

    with pytest.raises(WorkflowError, match=r"latin1.md: cannot read the workflow file: invalid"):
        load_workflow(file)
