"""Guardrails: the bundled rules, overrides by id, filters, script and decision rules, and the
``propose_change`` tool refusing what they deny."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from engine.config import GuardrailsConfig, LocalConfig
from engine.guardrails import (
    GUARDRAIL_DENIED,
    Decision,
    DiffStats,
    GuardrailContext,
    GuardrailPoint,
    Guardrails,
    denial_event,
    effective_rules,
    log_line,
)
from engine.scm import PrStatus, PullRequest
from engine.tools import DOMAIN_TOOLS, ToolError
from state import InMemoryStateBackend, Job
from tests.unit.test_domain_tools import TENANT, make_context, proposal

GOOD_DESCRIPTION = (
    "## What\n\nAdds retries to the webhook client so that a flaky network does not fail the job."
)


def guardrails(
    rules: list[dict[str, Any]] | None = None,
    *,
    scripts_dir: Path | None = None,
    enabled: bool = True,
    script_timeout: float = 30.0,
) -> Guardrails:
    config = GuardrailsConfig.model_validate({"enabled": enabled, "rules": rules or []})
    return Guardrails(
        config, scripts_dir or Path("/nonexistent/guardrails"), script_timeout=script_timeout
    )


def context(
    on: GuardrailPoint,
    tool_input: dict[str, Any] | None = None,
    *,
    phase: str = "coding",
    working_dir: Path = Path("/"),
    params: dict[str, Any] | None = None,
    workflow_path: str = "workflows/job/workflow.md",
    **facts: Any,
) -> GuardrailContext:
    job = Job(id="job-1", workflow_path=workflow_path, phase=phase, params=params or {})
    tool = {"scm.create_pr": "scm_create_pr", "scm.merge_pr": "scm_merge_pr"}.get(on, on)
    return GuardrailContext.for_job(
        on, tool, tool_input or {}, job, phase=phase, working_dir=working_dir, **facts
    )


def create_pr(description: str = GOOD_DESCRIPTION, **facts: Any) -> GuardrailContext:
    facts.setdefault("diff", DiffStats(files=3, added=120, removed=30))
    return context("scm.create_pr", {"repo": "acme/svc", "description": description}, **facts)


def pr_status(*approvals: str, author: str = "coro-bot") -> PrStatus:
    pr = PullRequest(
        id=7,
        repo="acme/svc",
        title="Add retries",
        url="https://scm.example/acme/svc/pull/7",
        state="open",
        source_branch="feat/retries",
        target_branch="main",
        author=author,
    )
    return PrStatus(pr=pr, approvals=approvals)


def merge(*approvals: str, phase: str = "review", **facts: Any) -> GuardrailContext:
    facts.setdefault("pr_status", pr_status(*approvals))
    return context("scm.merge_pr", {"repo": "acme/svc", "prId": 7}, phase=phase, **facts)


def denied(decision: Decision, rule_id: str) -> str:
    assert not decision.allow, decision
    assert decision.rule_id == rule_id
    assert decision.reason
    return decision.reason


# -- the bundled rules -------------------------------------------------------------------------
async def test_pr_description_allows_a_long_enough_description_with_the_heading() -> None:
    assert await guardrails().check(create_pr()) == Decision(allow=True)


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("## What\nfix", "description has 11 characters; at least 80 are required. Write"),
        ("x" * 90, "description lacks a '## What' section. Write"),
        ("", "is empty; at least 80 are required, and lacks a '## What' section."),
    ],
)
async def test_pr_description_denies_with_the_numbers(description: str, expected: str) -> None:
    reason = denied(await guardrails().check(create_pr(description)), "pr-description")
    assert expected in reason
    assert "at least 80 characters with a '## What' section" in reason
    assert reason.endswith("then call scm_create_pr again.")


async def test_pr_diff_size_denies_too_many_lines_or_files_while_coding() -> None:
    rules = guardrails()
    assert (await rules.check(create_pr(diff=DiffStats(files=40, added=400, removed=100)))).allow
    reason = denied(
        await rules.check(create_pr(diff=DiffStats(files=41, added=450, removed=51))),
        "pr-diff-size",
    )
    assert (
        "501 changed lines (+450 -51; the limit is 500) and 41 changed files (the limit is 40)"
        in reason
    )
    assert "Split the work" in reason


async def test_pr_diff_size_fails_closed_without_a_measured_diff() -> None:
    reason = denied(await guardrails().check(create_pr(diff=None)), "pr-diff-size")
    assert "could not be checked" in reason


async def test_pr_diff_size_only_applies_while_coding() -> None:
    big = DiffStats(files=100, added=5000, removed=0)
    assert (await guardrails().check(create_pr(diff=big, phase="fixing"))).allow


async def test_proposal_markdown_only() -> None:
    rules = guardrails()
    ok = {"files": [{"path": "agents/coder.md", "content": "x"}], "targetFile": "CLAUDE.md"}
    assert (await rules.check(context("propose_change", ok))).allow
    bad = {
        "files": [
            {"path": "agents/coder.md", "content": "x"},
            {"path": "scripts/run.sh", "content": "x"},
        ],
        "targetFile": "tools/x.py",
    }
    reason = denied(await rules.check(context("propose_change", bad)), "proposal-markdown-only")
    assert "only markdown (.md) files" in reason
    assert "files[1].path 'scripts/run.sh', targetFile 'tools/x.py' are not" in reason
    assert "agents/coder.md" not in reason


async def test_merge_requires_a_human_approval_other_than_the_author() -> None:
    rules = guardrails()
    assert (await rules.check(merge("alice"))).allow
    assert (await rules.check(merge("alice", phase="review-and-verify"))).allow
    reason = denied(
        await rules.check(merge("coro-bot", "dependabot[bot]", scm_identity="coro-bot")),
        "merge-requires-approval",
    )
    assert "pull request 7 has 0 human approvals" in reason
    assert "coro-bot (the author), dependabot[bot] (a bot)" in reason
    assert "at least 1 approval is required from someone other than its author" in reason


async def test_merge_ignores_configured_logins_and_coros_identity() -> None:
    rules = guardrails([{"id": "merge-requires-approval", "config": {"ignore": ["Renovate"]}}])
    status = pr_status("renovate", "coro", author="alice")
    reason = denied(
        await rules.check(merge(pr_status=status, scm_identity="coro")),
        "merge-requires-approval",
    )
    assert "renovate (ignored), coro (coro itself)" in reason


async def test_merge_fails_closed_without_the_pr_status() -> None:
    reason = denied(await guardrails().check(merge(pr_status=None)), "merge-requires-approval")
    assert "approvals could not be checked" in reason


async def test_merge_outside_the_review_phases_is_not_checked() -> None:
    assert (await guardrails().check(merge(phase="coding"))).allow


# -- overrides and custom rules ----------------------------------------------------------------
def test_effective_rules_merge_overrides_by_id(tmp_path: Path) -> None:
    (tmp_path / "ticket.py").write_text("")
    config = GuardrailsConfig.model_validate(
        {
            "rules": [
                {"id": "pr-diff-size", "config": {"maxLines": 2000}},
                {"id": "pr-description", "enabled": False},
                {"id": "ticket", "on": "scm.create_pr", "check": "script", "script": "ticket.py"},
                {"id": "other", "on": "tool.before", "check": "script", "script": "gone.py"},
            ]
        }
    )
    rules = {rule.id: rule for rule in effective_rules(config, tmp_path)}
    assert list(rules) == [
        "pr-description",
        "pr-diff-size",
        "proposal-markdown-only",
        "merge-requires-approval",
        "ticket",
        "other",
    ]
    diff = rules["pr-diff-size"]
    assert (diff.source, diff.config, diff.during, diff.on, diff.enabled) == (
        "override",
        {"maxLines": 2000, "maxFiles": 40},
        ("coding",),
        "scm.create_pr",
        True,
    )
    description = rules["pr-description"]
    assert (description.source, description.enabled) == ("override", False)
    assert description.config == {"minLength": 80, "requiredHeadings": ["## What"]}
    assert rules["proposal-markdown-only"].source == "bundled"
    assert (rules["ticket"].source, rules["ticket"].script_file_exists) == ("custom", True)
    assert rules["other"].script_file_exists is False


async def test_an_override_raises_a_limit_and_a_disabled_rule_stops_denying() -> None:
    big = create_pr("short", diff=DiffStats(files=10, added=900, removed=0))
    assert denied(await guardrails().check(big), "pr-description")
    rules = guardrails(
        [
            {"id": "pr-description", "enabled": False},
            {"id": "pr-diff-size", "config": {"maxLines": 1000}},
        ]
    )
    assert (await rules.check(big)).allow
    bigger = create_pr(diff=DiffStats(files=10, added=900, removed=101))
    assert "1001 changed lines (+900 -101; the limit is 1000)" in denied(
        await rules.check(bigger), "pr-diff-size"
    )


async def test_an_override_can_move_a_rule_to_other_phases() -> None:
    rules = guardrails([{"id": "pr-diff-size", "during": ["fixing"]}])
    big = DiffStats(files=100, added=1, removed=0)
    assert (await rules.check(create_pr(diff=big, phase="coding"))).allow
    assert not (await rules.check(create_pr(diff=big, phase="fixing"))).allow


async def test_a_misconfigured_rule_denies_and_says_what_is_wrong() -> None:
    rules = guardrails([{"id": "pr-diff-size", "config": {"maxLines": "lots"}}])
    reason = denied(await rules.check(create_pr()), "pr-diff-size")
    assert "config.maxLines must be a number" in reason


async def test_guardrails_disabled_allow_everything() -> None:
    rules = guardrails(enabled=False)
    assert await rules.check(create_pr("", diff=None)) == Decision(allow=True)
    assert await rules.check(merge()) == Decision(allow=True)


def write_script(directory: Path, name: str, body: str, *, executable: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755 if executable else 0o644)
    return path


ECHO_DENY = """\
    import json, os, sys
    ctx = json.load(sys.stdin)
    ctx["cwd"] = os.getcwd()
    with open("seen.json", "w") as out:
        json.dump(ctx, out)
    print(json.dumps({"allow": False, "reason": "no " + ctx["toolInput"]["title"]}))
"""


def script_rule(name: str, **fields: Any) -> dict[str, Any]:
    return {"id": name, "on": "propose_change", "check": "script", "script": name, **fields}


async def test_filters_match_phase_workflow_and_lane(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    write_script(scripts, "deny.py", 'print(\'{"allow": false, "reason": "filtered in"}\')\n')
    rules = guardrails(
        [script_rule("deny.py", during=["coding"], workflows=["wf/a.md"], lanes=["fast"])],
        scripts_dir=scripts,
    )
    args = {"title": "t"}
    matching = {"phase": "coding", "workflow_path": "wf/a.md", "params": {"lane": "fast"}}
    assert not (await rules.check(context("propose_change", args, **matching))).allow
    for change in (
        {"phase": "planning"},
        {"workflow_path": "wf/b.md"},
        {"params": {"lane": "slow"}},
        {"params": {}},
    ):
        decision = await rules.check(context("propose_change", args, **{**matching, **change}))
        assert decision == Decision(allow=True), change


# -- script rules ------------------------------------------------------------------------------
async def test_a_script_rule_gets_the_context_and_can_deny(tmp_path: Path) -> None:
    scripts, work = tmp_path / "guardrails", tmp_path / "work"
    work.mkdir()
    write_script(scripts, "policy", ECHO_DENY)
    rules = guardrails([script_rule("policy")], scripts_dir=scripts)
    ctx = context(
        "propose_change",
        {"title": "secrets", "files": [{"path": "a.md", "content": "x"}]},
        working_dir=work,
        params={"lane": "fast"},
    )
    assert await rules.check(ctx) == Decision(allow=False, rule_id="policy", reason="no secrets")
    seen = json.loads((work / "seen.json").read_text())
    assert seen == {
        "on": "propose_change",
        "toolName": "propose_change",
        "toolInput": {"title": "secrets", "files": [{"path": "a.md", "content": "x"}]},
        "job": {
            "id": "job-1",
            "workflowPath": "workflows/job/workflow.md",
            "phase": "coding",
            "params": {"lane": "fast"},
        },
        "workingDir": str(work),
        "cwd": str(work),
    }


async def test_a_script_rule_sees_the_pr_facts_and_can_allow(tmp_path: Path) -> None:
    write_script(
        tmp_path,
        "facts",
        """\
        import json, sys
        ctx = json.load(sys.stdin)
        ok = ctx["prStatus"]["approvals"] == ["alice"] and ctx["diff"]["added"] == 120
        print(json.dumps({"allow": ok, "reason": json.dumps(ctx.get("prStatus"))}))
        """,
    )
    rule = {**script_rule("facts"), "on": "scm.create_pr"}
    rules = guardrails([rule], scripts_dir=tmp_path)
    assert (await rules.check(create_pr(pr_status=pr_status("alice"), working_dir=tmp_path))).allow


@pytest.mark.parametrize(
    ("body", "executable", "expected"),
    [
        (None, True, "guardrail script 'policy' was not found in"),
        ("print('{}')\n", False, "guardrail script 'policy' is not executable (chmod +x"),
        (
            "import sys\nsys.stderr.write('boom')\nsys.exit(3)\n",
            True,
            "guardrail script 'policy' exited with status 3: boom",
        ),
        ("print('yes please')\n", True, "guardrail script 'policy' printed 'yes please' instead"),
        ('print(\'{"allow": "yes"}\')\n', True, "instead of a JSON object"),
        ("print('{\"allow\": false}')\n", True, "'policy' denied the call without a reason"),
    ],
)
async def test_a_broken_script_rule_fails_closed(
    tmp_path: Path, body: str | None, executable: bool, expected: str
) -> None:
    if body is not None:
        write_script(tmp_path, "policy", body, executable=executable)
    rules = guardrails([script_rule("policy")], scripts_dir=tmp_path)
    reason = denied(await rules.check(context("propose_change", working_dir=tmp_path)), "policy")
    assert expected in reason


async def test_a_script_that_overruns_is_killed_and_denies(tmp_path: Path) -> None:
    write_script(
        tmp_path,
        "slow",
        """\
        import os, time
        with open("pid", "w") as out:
            out.write(str(os.getpid()))
        time.sleep(60)
        """,
    )
    rules = guardrails([script_rule("slow")], scripts_dir=tmp_path, script_timeout=0.5)
    started = time.monotonic()
    decision = await rules.check(context("propose_change", working_dir=tmp_path))
    assert time.monotonic() - started < 10
    assert denied(decision, "slow") == "guardrail script 'slow' did not answer within 0.5 s"
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)


async def test_the_first_denial_wins_in_rule_order(tmp_path: Path) -> None:
    write_script(tmp_path, "never", "open('ran', 'w')\nprint('{\"allow\": true}')\n")
    rules = guardrails([script_rule("never")], scripts_dir=tmp_path)
    bad = {"files": [{"path": "x.sh", "content": ""}]}
    decision = await rules.check(context("propose_change", bad, working_dir=tmp_path))
    denied(decision, "proposal-markdown-only")
    assert not (tmp_path / "ran").exists()


# -- decision rules ----------------------------------------------------------------------------
async def test_a_decision_rule_allows_with_a_note() -> None:
    rules = guardrails([{"id": "overseer", "on": "scm.merge_pr", "check": "decision"}])
    decision = await rules.check(merge("alice"))
    assert decision == Decision(
        allow=True,
        rule_id="overseer",
        reason="decision rule overseer skipped: no overseer provider configured",
    )
    assert log_line(decision) == (
        "[guardrail] overseer: decision rule overseer skipped: no overseer provider configured"
    )
    assert denied(await rules.check(merge()), "merge-requires-approval")


def test_denial_event_shape() -> None:
    decision = Decision(allow=False, rule_id="pr-description", reason="too short")
    assert denial_event(decision, create_pr()) == (
        GUARDRAIL_DENIED,
        {"ruleId": "pr-description", "on": "scm.create_pr", "toolName": "scm_create_pr",
         "reason": "too short"},
    )  # fmt: skip
    assert log_line(decision) == "[guardrail] pr-description: too short"


# -- through the propose_change tool -----------------------------------------------------------
@pytest.fixture
async def store() -> Any:
    async with InMemoryStateBackend() as backend:
        yield backend


async def test_propose_change_refuses_a_non_markdown_file_and_records_the_denial(
    tmp_path: Path, coro_home: Path, store: InMemoryStateBackend
) -> None:
    ctx = await make_context(tmp_path, store)
    with pytest.raises(ToolError) as info:
        await DOMAIN_TOOLS["propose_change"].invoke(
            ctx, proposal(files=[{"path": "tools/run.sh", "content": "echo"}])
        )
    message = info.value.message
    assert message.startswith("propose_change: denied by guardrail 'proposal-markdown-only': ")
    assert "files[0].path 'tools/run.sh' is not" in message
    [event] = await store.read_events(ctx.job.id, kinds=[GUARDRAIL_DENIED])
    assert event.data["ruleId"] == "proposal-markdown-only"
    assert event.data["on"] == "propose_change" and event.data["toolName"] == "propose_change"
    assert "tools/run.sh" in event.data["reason"]
    [line] = await store.get_log(ctx.job.id)
    assert line.startswith("[guardrail] proposal-markdown-only: only markdown (.md) files")
    assert await store.list_proposals(TENANT) == []


async def test_propose_change_runs_script_rules_from_coro_home(
    tmp_path: Path, coro_home: Path, store: InMemoryStateBackend
) -> None:
    write_script(coro_home / "guardrails", "no-claude-md", ECHO_DENY)
    ctx = await make_context(tmp_path, store)
    config = LocalConfig.model_validate({"guardrails": {"rules": [script_rule("no-claude-md")]}})
    ctx = dataclasses.replace(ctx, config=config)
    with pytest.raises(ToolError, match="denied by guardrail 'no-claude-md': no Remember"):
        await DOMAIN_TOOLS["propose_change"].invoke(
            ctx, proposal(targetFile="CLAUDE.md", proposedContent="# x\n")
        )
    assert json.loads((ctx.job_dir / "seen.json").read_text())["toolInput"]["targetFile"] == (
        "CLAUDE.md"
    )
    allowed = LocalConfig.model_validate({"guardrails": {"enabled": False}})
    ctx = dataclasses.replace(ctx, config=allowed)
    result = await DOMAIN_TOOLS["propose_change"].invoke(
        ctx, proposal(targetFile="CLAUDE.md", proposedContent="# x\n")
    )
    assert isinstance(result, dict) and result["files"] == ["CLAUDE.md"]
