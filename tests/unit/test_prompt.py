"""The phase system prompt, the kickoff and the pending prompts, read as a model would."""

from __future__ import annotations

import json
import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.errors import WorkflowError
from engine.prompt import (
    MASK,
    SECTION_SEPARATOR,
    PromptBuilder,
    ScmAvailability,
    TrackerAvailability,
    WorkspaceLayout,
    batched_events_prompt,
    build_kickoff,
    completion_gate_pr_prompt,
    completion_gate_prompt,
    developer_message_prompt,
    format_age,
    select_kickoff,
)
from engine.workflow import parse_workflow
from state.models import (
    CheckpointApproval,
    ExternalRef,
    InboundEvent,
    Insight,
    Job,
    PrMapping,
    WorkItem,
    WorkItemStatus,
)
from tests.conftest import SHARED

NOW = datetime(2026, 5, 21, 12, 0, tzinfo=UTC)
WEBHOOKS = SHARED / "fixtures" / "webhooks"

WORKFLOW = parse_workflow(
    textwrap.dedent(
        """\
        ---
        phases:
          - name: planning
            agent: agents/planner.md
          - name: coding
            agent: agents/coder.md
          - name: review
            agent: agents/pr-reviewer.md
            status: reviewing
          - name: coordinating
            agent: null
        ---
        # Implementation job

        Plan, then code each work item, then review it.
        """
    ),
    path="workflows/job/workflow.md",
)


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    """A job directory whose ``_intelligence`` overlay has the agents the workflow names."""
    intelligence = tmp_path / "job-1" / "_intelligence"
    (intelligence / "agents").mkdir(parents=True)
    (intelligence / ".claude").mkdir()
    (intelligence / ".claude" / "CLAUDE.md").write_text("# Runtime rules\nCall log often.\n")
    (intelligence / "agents" / "coder.md").write_text(
        "---\nname: coder\ndescription: writes the code\n---\n# Coder\nImplement the work item.\n"
    )
    (intelligence / "agents" / "planner.md").write_text("# Planner\nWrite the plan.\n")
    return intelligence


def make_job(**fields: Any) -> Job:
    base: dict[str, Any] = {"id": "svc-job-1", "phase": "coding", "status": "coding"}
    return Job(**(base | fields))


def build(job: Job, overlay: Path, phase: str = "coding", **kwargs: Any) -> str:
    return PromptBuilder().build(
        job,
        WORKFLOW,
        WORKFLOW.phase(phase),
        intelligence_dir=overlay,
        scm=kwargs.pop("scm", ScmAvailability()),
        tracker=kwargs.pop("tracker", TrackerAvailability()),
        **kwargs,
    )


def job_json(prompt: str) -> dict[str, Any]:
    match = re.search(r"# Current Job\n.*?```json\n(.*?)\n```", prompt, re.S)
    assert match, "no JSON block under # Current Job"
    data: dict[str, Any] = json.loads(match[1])
    return data


def headings(prompt: str) -> list[str]:
    return [section.split("\n", 1)[0] for section in prompt.split(SECTION_SEPARATOR)]


def pr(
    pr_id: int, item: str | None, *, opened: timedelta, merged: timedelta | None = None
) -> PrMapping:
    return PrMapping(
        pr_id=pr_id,
        work_item=item,
        repo_slug="acme/svc",
        opened_at=NOW - opened,
        merged_at=None if merged is None else NOW - merged,
    )


# -- the system prompt -----------------------------------------------------------------------


def test_sections_come_in_order_separated_by_rules(overlay: Path) -> None:
    prompt = build(make_job(insights=[Insight(category="c", summary="s", detail="d")]), overlay)

    assert headings(prompt) == [
        "# Current Workflow",
        "# Your Role This Phase",
        "# Current Job",
        "# Insights from Upstream Agents",
    ]
    assert "\n\n---\n\n" in prompt
    assert "Plan, then code each work item" in prompt
    role = prompt.split(SECTION_SEPARATOR)[1]
    assert "*Source: agents/coder.md*" in role
    assert "Implement the work item." in role
    assert "description: writes the code" not in prompt, "agent front matter must be stripped"


def test_claude_md_comes_first_only_when_asked(overlay: Path) -> None:
    job = make_job()

    with_it = build(job, overlay, include_claude_md=True)
    without = build(job, overlay)

    assert headings(with_it)[0] == "# Runtime Instructions"
    assert "Call log often." in with_it.split(SECTION_SEPARATOR)[0]
    assert "Call log often." not in without
    assert with_it.endswith(without.split(SECTION_SEPARATOR, 1)[1])


def test_job_json_is_camel_case_with_every_field_the_agents_read(overlay: Path) -> None:
    job = make_job(
        current_work_item="wi-1",
        work_items=[WorkItem(name="wi-1", status=WorkItemStatus.IN_PROGRESS, loop_count=2)],
        work_item_loop_count=2,
        pr_mappings=[pr(12, "wi-1", opened=timedelta(hours=1))],
        awaiting_pr_id=12,
        trigger_source="jira",
    )

    data = job_json(build(job, overlay))

    assert list(data) == [
        "jobId",
        "type",
        "workflowPath",
        "interactive",
        "params",
        "triggerSource",
        "status",
        "phase",
        "currentWorkItem",
        "workItems",
        "workItemLoopCount",
        "prMappings",
        "awaitingEvent",
        "awaitingPrId",
        "awaitingNextPhase",
        "approvedAdvanceFromPhase",
        "escalationMessage",
        "tracker",
        "scm",
    ]
    assert data["jobId"] == "svc-job-1"
    assert data["status"] == "coding"
    assert data["triggerSource"] == "jira"
    assert data["workItems"] == [{"name": "wi-1", "status": "in-progress", "loopCount": 2}]
    assert data["prMappings"][0]["prId"] == 12
    assert data["prMappings"][0]["workItem"] == "wi-1"
    assert data["awaitingPrId"] == 12
    assert data["awaitingEvent"] is None


def test_secret_params_are_masked_everywhere(overlay: Path) -> None:
    job = make_job(
        params={
            "repo": "acme/svc",
            "apiKey": "sk-live-123",
            "githubToken": "tok-abc",
            "db": {"password": "hunter2", "projectKey": "PROJ"},
            "mirrors": [{"client_secret": "shh"}],
            "cloneUrl": "https://x-access-token:ghs_abc@github.com/acme/svc.git",
            "note": "use ghp_" + "a" * 36 + " for now",
            "teamKey": "ENG",
            "emptyToken": "",
        }
    )

    prompt = build(job, overlay)
    params = job_json(prompt)["params"]

    for secret in ("sk-live-123", "tok-abc", "hunter2", "shh", "ghs_abc", "ghp_aaaa"):
        assert secret not in prompt
    assert params["apiKey"] == params["githubToken"] == MASK
    assert params["db"] == {"password": MASK, "projectKey": "PROJ"}
    assert params["mirrors"] == [{"client_secret": MASK}]
    assert params["cloneUrl"] == f"https://{MASK}@github.com/acme/svc.git"
    assert params["note"] == f"use {MASK} for now"
    assert params["teamKey"] == "ENG", "keys that merely end in 'key' are not secrets"
    assert params["repo"] == "acme/svc"
    assert params["emptyToken"] == ""
    assert job.params["apiKey"] == "sk-live-123", "the job itself is left untouched"


def test_scm_and_tracker_blocks_default_to_none_configured(overlay: Path) -> None:
    data = job_json(build(make_job(), overlay))

    assert data["scm"] == {
        "available": False,
        "resolved": "none",
        "requested": None,
        "default": None,
        "installed": [],
    }
    assert data["tracker"] == {"provider": "none", "available": False, "defaults": {}}


def test_scm_and_tracker_blocks_say_what_is_configured(overlay: Path) -> None:
    scm = ScmAvailability(
        available=True,
        resolved="github",
        requested="github",
        default="local",
        installed=("local", "github"),
    )
    tracker = TrackerAvailability(provider="linear", available=True, defaults={"teamKey": "ENG"})

    data = job_json(build(make_job(), overlay, scm=scm, tracker=tracker))

    assert data["scm"] == {
        "available": True,
        "resolved": "github",
        "requested": "github",
        "default": "local",
        "installed": ["github", "local"],
    }
    assert data["tracker"] == {
        "provider": "linear",
        "available": True,
        "defaults": {"teamKey": "ENG"},
    }


def test_missing_agent_file_names_workflow_phase_and_path(overlay: Path) -> None:
    with pytest.raises(WorkflowError) as caught:
        build(make_job(phase="review"), overlay, phase="review")

    message = caught.value.message
    assert "workflows/job/workflow.md" in message
    assert "phase 'review'" in message
    assert "agents/pr-reviewer.md" in message
    assert str(overlay / "agents" / "pr-reviewer.md") in message


def test_runner_managed_phase_gets_a_note_instead_of_an_agent(overlay: Path) -> None:
    prompt = build(make_job(phase="coordinating"), overlay, phase="coordinating")

    role = prompt.split(SECTION_SEPARATOR)[1]
    assert role.startswith("# Your Role This Phase")
    assert "Phase `coordinating` is managed by the runner" in role
    assert "Do not start new work" in role


def test_insights_section_is_absent_without_insights(overlay: Path) -> None:
    prompt = build(make_job(), overlay)

    assert "Insights from Upstream Agents" not in prompt
    assert headings(prompt)[-1] == "# Current Job"


def test_insights_carry_phase_category_summary_suggestion_and_sibling_origin(
    overlay: Path,
) -> None:
    job = make_job(
        insights=[
            Insight(
                phase="planning",
                category="sandbox-quirk",
                summary="go 1.20 only",
                detail="the sandbox image is old",
                suggestion="pin the toolchain",
            ),
            Insight(
                phase="coding",
                category="toolchain-pitfall",
                summary="tests need -race off",
                detail="flaky",
                source_child_name="child-api",
            ),
        ]
    )

    section = build(job, overlay).split(SECTION_SEPARATOR)[-1]

    assert section.startswith("# Insights from Upstream Agents")
    assert "### 1. [planning] sandbox-quirk" in section
    assert "**Summary:** go 1.20 only" in section
    assert "**Suggestion:** pin the toolchain" in section
    assert "### 2. [campaign sibling: child-api · coding] toolchain-pitfall" in section
    assert section.index("### 1.") < section.index("### 2.")


def test_workspace_layout_shows_job_root_checkout_and_overlay(overlay: Path) -> None:
    job_dir = overlay.parent
    before_clone = WorkspaceLayout(job_dir, None, overlay)

    fresh = build(make_job(), overlay, workspace=before_clone)
    cloned = build(make_job(params={"repoCheckoutDir": "svc"}), overlay, workspace=before_clone)

    assert "## Workspace layout" in fresh
    assert f"Job root: `{job_dir}`" in fresh
    assert f"Intelligence overlay: `{overlay}`" in fresh
    assert "Repository checkout: none yet" in fresh
    assert "mcp__coro__scm_clone_repo" in fresh
    assert f"Repository checkout: `{job_dir / 'svc'}` (`svc` under the job root)" in cloned
    assert "`Bash` commands and relative paths start in this tree" in cloned
    assert "## Workspace layout" not in build(make_job(), overlay)


def test_same_inputs_build_the_same_prompt(overlay: Path) -> None:
    def job(params: dict[str, Any]) -> Job:
        insight = Insight(phase="planning", category="c", summary="s", detail="d")
        return make_job(
            params=params, insights=[insight], pr_mappings=[pr(1, "wi", opened=timedelta(1))]
        )

    layout = WorkspaceLayout(overlay.parent, None, overlay)
    first = build(job({"b": 1, "a": {"y": 2, "x": 1}}), overlay, workspace=layout)
    second = build(job({"a": {"x": 1, "y": 2}, "b": 1}), overlay, workspace=layout)

    assert first == second, "same job, params inserted in another order"
    assert '"a": {\n      "x": 1,\n      "y": 2\n    },\n    "b": 1' in first


# -- the kickoff -----------------------------------------------------------------------------


def kickoff(job: Job, phase: str = "coding", *, resumed: bool = False) -> str:
    return build_kickoff(job, WORKFLOW, WORKFLOW.phase(phase), resumed=resumed, now=NOW)


def test_fresh_and_resumed_sessions_are_told_different_things() -> None:
    job = make_job(current_work_item="wi-1")

    fresh = kickoff(job)
    resumed = kickoff(job, resumed=True)

    assert fresh.startswith("Begin phase **coding** of job `svc-job-1` (work item `wi-1`)")
    assert "Continue where you left off" not in fresh
    assert resumed.startswith("Continue where you left off: you are in phase **coding**")
    assert "mcp__coro__get_work_items" in resumed
    assert "Open PRs on this job" not in fresh, "no PRs, no block"


def test_open_prs_table_lists_unmerged_prs_with_ages() -> None:
    job = make_job(
        current_work_item="wi-2",
        awaiting_pr_id=14,
        awaiting_event="pr:approved",
        pr_mappings=[
            pr(14, "wi-2", opened=timedelta(hours=3, minutes=20)),
            pr(11, "wi-1", opened=timedelta(days=2, hours=5)),
            pr(9, None, opened=timedelta(minutes=42)),
            pr(8, "wi-0", opened=timedelta(days=4), merged=timedelta(days=3)),
        ],
    )

    text = kickoff(job, "review")
    rows = [line for line in text.splitlines() if line.startswith("| #")]

    assert "## Open PRs on this job" in text
    assert "| PR | Work item | Repo | Age | Notes |" in text
    assert rows == [
        "| #11 | wi-1 | acme/svc | 2d | open |",
        "| #14 | wi-2 | acme/svc | 3h | open; job parked on it (pr:approved); current work item |",
        "| #9 | (unattributed) | acme/svc | 42m | open |",
    ]
    assert "- PR #8 (wi-0, acme/svc) merged 3d ago" in text


def test_recently_merged_list_keeps_the_five_latest() -> None:
    merged = [
        pr(n, f"wi-{n}", opened=timedelta(days=9), merged=timedelta(hours=n)) for n in range(1, 8)
    ]

    text = kickoff(make_job(pr_mappings=merged), "review")
    listed = re.findall(r"- PR #(\d+) ", text)

    assert listed == ["1", "2", "3", "4", "5"], "newest first, capped at five"
    assert "and 2 merged earlier" in text
    assert "No open PRs: every PR on this job is merged." in text


@pytest.mark.parametrize(
    ("phase", "item", "prs", "expected"),
    [
        ("coding", "wi-1", [pr(12, "wi-1", opened=timedelta(hours=1))], True),
        ("coding", "wi-1", [pr(12, "wi-1", opened=timedelta(hours=1), merged=timedelta(0))], False),
        ("coding", "wi-1", [pr(12, "wi-2", opened=timedelta(hours=1))], False),
        ("coding", None, [pr(12, "wi-1", opened=timedelta(hours=1))], False),
        ("review", "wi-1", [pr(12, "wi-1", opened=timedelta(hours=1))], False),
    ],
    ids=["open-pr", "merged-pr", "other-item", "no-current-item", "review-phase"],
)
def test_coding_preflight_only_when_current_item_has_open_prs(
    phase: str, item: str | None, prs: list[PrMapping], expected: bool
) -> None:
    text = kickoff(make_job(phase=phase, current_work_item=item, pr_mappings=prs), phase)

    assert ("[coding-preflight]" in text) is expected
    if expected:
        assert text.startswith("[coding-preflight] Work item `wi-1` already has 1 open PR(s): #12.")
        assert "moves on to `review`" in text


def test_approval_block_leads_the_kickoff_after_the_approved_checkpoint() -> None:
    approval = CheckpointApproval(
        for_phase="planning", approved_by="alice", message="Ship it.\nKeep PRs small."
    )

    text = kickoff(make_job(checkpoint_approval=approval))

    assert text.startswith(
        "[DEVELOPER APPROVAL]\n"
        "The developer (alice) approved the checkpoint after phase `planning`.\n"
        "Their message:\n> Ship it.\n> Keep PRs small.\n"
    )
    assert kickoff(make_job(checkpoint_approval=approval), "review").count("APPROVAL") == 0


def test_approval_block_follows_approved_advance_from_phase() -> None:
    approval = CheckpointApproval(for_phase="review")
    job = make_job(checkpoint_approval=approval, approved_advance_from_phase="review")

    text = kickoff(job)

    assert text.startswith(
        "[DEVELOPER APPROVAL]\nThe developer approved the checkpoint after phase `review`."
    )
    assert "They left no message." in text


def test_kickoff_reminds_where_the_checkout_is() -> None:
    reminder = kickoff(make_job(params={"repoCheckoutDir": "svc"}))
    assert "`svc` (under the job root). `Bash` commands and relative paths start in it" in reminder
    assert "## Workspace" not in kickoff(make_job())


def test_pending_prompt_takes_precedence_over_the_kickoff() -> None:
    pending = "[WEBHOOK EVENTS: 1 received since you parked]\n\n1. …"
    job = make_job(pending_prompt=pending, pr_mappings=[pr(3, "wi-1", opened=timedelta(hours=1))])

    chosen = select_kickoff(job, WORKFLOW, WORKFLOW.phase("coding"), resumed=True, now=NOW)

    assert chosen == pending
    no_pending = make_job(pr_mappings=job.pr_mappings)
    assert select_kickoff(
        no_pending, WORKFLOW, WORKFLOW.phase("coding"), resumed=True, now=NOW
    ) == kickoff(no_pending, resumed=True)


def test_pending_prompt_still_gets_a_due_approval_block() -> None:
    job = make_job(
        pending_prompt="[DEVELOPER MESSAGE]\nUse tabs.",
        checkpoint_approval=CheckpointApproval(for_phase="planning", approved_by="bob"),
    )

    chosen = select_kickoff(job, WORKFLOW, WORKFLOW.phase("coding"), resumed=False, now=NOW)

    assert chosen.startswith("[DEVELOPER APPROVAL]\nThe developer (bob) approved")
    assert chosen.endswith("\n\n[DEVELOPER MESSAGE]\nUse tabs.")
    assert "Begin phase" not in chosen


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(seconds=30), "<1m"),
        (timedelta(minutes=59), "59m"),
        (timedelta(hours=3, minutes=59), "3h"),
        (timedelta(hours=47), "47h"),
        (timedelta(days=2), "2d"),
        (timedelta(minutes=-5), "<1m"),
    ],
)
def test_format_age(age: timedelta, expected: str) -> None:
    assert format_age(NOW - age, NOW) == expected


# -- pending prompts ---------------------------------------------------------------------------


def fixture_event(name: str, key: str, at: datetime) -> InboundEvent:
    payload = json.loads((WEBHOOKS / name).read_text())
    return InboundEvent(event_key=key, payload=payload, received_at=at)


def test_batched_events_are_counted_and_listed_oldest_first() -> None:
    comment = fixture_event(
        "bitbucket/pullrequest.comment_created.json",
        "pullrequest:comment_created",
        NOW + timedelta(minutes=1),
    )
    merged = fixture_event(
        "github/pull_request.closed.json", "pull_request:closed", NOW + timedelta(minutes=3)
    )
    review = fixture_event(
        "github/pull_request_review.submitted.json",
        "pull_request_review:submitted",
        NOW + timedelta(minutes=2),
    )
    approved = InboundEvent(
        event_key="pullrequest:approved",
        payload={"approvalCount": 1, "body": "x" * 5000},
        ref=ExternalRef(
            kind="pull_request", plugin_id="local", repo_key="acme/svc", external_id="7"
        ),
        received_at=NOW,
    )

    text = batched_events_prompt([comment, merged, review, approved])
    lines = text.splitlines()

    assert lines[0] == "[WEBHOOK EVENTS: 4 received since you parked]"
    assert lines[2:6] == [
        "1. 2026-05-21T12:00:00Z pullrequest:approved on PR #7 (acme/svc) — approvals: 1",
        "2. 2026-05-21T12:01:00Z pullrequest:comment_created on PR #1 "
        '(rutvijmehta-harness/spring-cloud-alibaba) — "Update pom.xml"; state open; '
        'comment by Rutvij Mehta: "test comment"',
        "3. 2026-05-21T12:02:00Z pull_request_review:submitted on PR #2 (Codertocat/Hello-World) "
        '— "Update the README with new information."; submitted; state open; '
        "review commented by Codertocat",
        "4. 2026-05-21T12:03:00Z pull_request:closed on PR #117 "
        '(robvanderleek/create-issue-branch) — "Revert "Update README.md""; merged',
    ]
    assert len(text) < 2000, "payloads are summarised, never dumped"
    assert "mcp__coro__scm_get_pr_status" in text


def test_batched_events_need_at_least_one_event() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        batched_events_prompt([])


def test_developer_message_is_framed() -> None:
    text = developer_message_prompt("  Please rename the flag.  ", sender="alice")

    assert text.startswith("[DEVELOPER MESSAGE] from alice\nPlease rename the flag.\n\n")
    assert "mcp__coro__await_event" in text
    assert developer_message_prompt("hi").startswith("[DEVELOPER MESSAGE]\nhi\n")


def test_completion_gate_lists_blocking_items_and_prs_by_work_item() -> None:
    job = make_job(
        work_items=[
            WorkItem(name="wi-1", status=WorkItemStatus.COMPLETE),
            WorkItem(name="wi-2", status=WorkItemStatus.IN_PROGRESS, loop_count=3),
            WorkItem(name="wi-3"),
            WorkItem(name="wi-4", status=WorkItemStatus.ESCALATED),
        ],
        pr_mappings=[
            pr(1, "wi-1", opened=timedelta(days=2), merged=timedelta(days=1)),
            pr(2, "wi-2", opened=timedelta(days=1)),
            pr(3, "wi-2", opened=timedelta(hours=5), merged=timedelta(hours=1)),
            pr(4, None, opened=timedelta(hours=2)),
        ],
    )

    text = completion_gate_prompt(job, attempt=2, max_attempts=5)

    assert text.startswith("[completion-gate] This job cannot complete yet: 2 work item(s)")
    assert "- `wi-2` — status: in-progress, loop count: 3" in text
    assert "- `wi-3` — status: pending, loop count: 0" in text
    assert "`wi-1` —" not in text and "`wi-4` —" not in text
    assert "- `wi-1`: open none; merged #1" in text
    assert "- `wi-2`: open #2; merged #3" in text
    assert "- (unattributed): open #4; merged none" in text
    for name in ("get_work_items", "update_work_item", "goto_phase"):
        assert f"`mcp__coro__{name}`" in text
    assert "(Attempt 2 of 5: after the last one the runner fails the job.)" in text
    assert "Attempt" not in completion_gate_prompt(job)


def test_completion_gate_refuses_a_job_it_does_not_block() -> None:
    done = make_job(work_items=[WorkItem(name="wi-1", status=WorkItemStatus.COMPLETE)])

    with pytest.raises(ValueError, match="no unfinished work item"):
        completion_gate_prompt(done)


def test_pr_gate_lists_open_prs_of_a_job_without_work_items() -> None:
    job = make_job(
        pr_mappings=[
            pr(5, None, opened=timedelta(hours=2)),
            pr(6, "fix", opened=timedelta(hours=1), merged=timedelta(minutes=5)),
        ]
    )

    text = completion_gate_pr_prompt(job)

    assert text.startswith("[completion-gate] This job cannot complete yet: 1 PR(s)")
    assert "- #5 in acme/svc, opened 2026-05-21T10:00:00Z" in text
    assert "#6" not in text
    assert "`mcp__coro__scm_merge_pr`" in text
    with pytest.raises(ValueError, match="no open PR"):
        completion_gate_pr_prompt(make_job())
