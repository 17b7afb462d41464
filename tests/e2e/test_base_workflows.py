"""The base layer's lanes, run end to end: the real executor and SDK against the scripted model
endpoint, whose script plays a model that follows the base agents' instructions, in a real git
repository on the local SCM, with a human approving on the SCM side.

The scripts use only what the agents are told to use; if the markdown and the tools drift
apart (a renamed tool, an argument that no longer exists, a phase a goto names that is gone),
these jobs stop completing.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.model_server import ModelScript, ScriptedModelServer
from engine.paths import CoroPaths
from engine.runtime import Engine
from engine.scm.local import LocalScmPlugin
from state import EventKind, Job, JobInput, JobStatus
from tests.support.engine import write_config

POLL_SECONDS = 0.5
PR_DESCRIPTION = (
    "## What\n\nLimits each client to a fixed number of requests a minute, so that one client "
    "cannot starve the others.\n\n## How tested\n\n`python3 -m unittest` passes."
)
REPO_CODER = "# Coder for svc\n\nThis repository's own coder: keep every limit in limits.py.\n"
REPO_PITFALL = "### Pitfall: the limit is per minute\n\n- **Symptom:** tests flake at :59.\n"

Step = dict[str, Any]


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    """One tool call; coro's own tools by their short name, built-ins capitalised."""
    full = tool if tool[0].isupper() else f"mcp__coro__{tool}"
    return {"name": full, "input": arguments}


def when_ok(marker: str, *calls: dict[str, Any]) -> Step:
    """A step taken only if the last tool results contain ``marker``; otherwise the model
    says something went wrong and ends its turn (the job then fails its assertions)."""
    return {
        "when": [
            {"if_result_contains": marker, "tool_calls": list(calls)},
            {"text": f"Expected {marker!r} in the tool results; stopping."},
        ]
    }


def done(text: str) -> Step:
    return {"text": text}


# -- what each base agent does, as a script ------------------------------------------------------
def spec_writer(job_dir: Path) -> list[Step]:
    spec = "# Rate limit\n\n## Acceptance criteria\n\n1. `allowed(n)` is false past the limit.\n"
    return [
        {
            "tool_calls": [
                call("read_memory"),
                call("scm_clone_repo", repo="svc"),
                call("Skill", skill="spec-quality"),
            ]
        },
        when_ok(
            '"absDir"',
            call("Write", file_path=str(job_dir / "feature-spec.md"), content=spec),
            call(
                "post_artifact",
                kind="spec-md",
                title="Feature spec",
                data={"path": "feature-spec.md"},
            ),
        ),
        done("The spec is written."),
    ]


def planner(job_dir: Path, lane: str) -> list[Step]:
    plan = "# Plan\n\n## limiter\n\n- branch: coro/limiter\n- test: python3 -m unittest\n"
    return [
        {
            "tool_calls": [
                call("read_memory"),
                call("Glob", pattern="*.py"),
                call("Skill", skill="python-conventions"),
                call("set_job_params", params={"lane": lane, "language": "python"}),
            ]
        },
        {
            "tool_calls": [
                call("Write", file_path=str(job_dir / "implementation-plan.md"), content=plan),
                call("set_work_items", workItems=["limiter"]),
                call(
                    "post_artifact",
                    kind="implementation-plan-md",
                    title="Implementation plan",
                    data={"path": "implementation-plan.md"},
                ),
            ]
        },
        done("The plan is recorded."),
    ]


CHANGE = (
    '"""Request limits for the users API."""\n\nLIMIT_PER_MINUTE = 100\n\n\n'
    "def allowed(count: int) -> bool:\n    return count <= LIMIT_PER_MINUTE\n"
)
TEST = (
    "import unittest\n\nfrom limits import allowed\n\n\n"
    "class Limits(unittest.TestCase):\n"
    "    def test_past_the_limit(self) -> None:\n"
    "        self.assertTrue(allowed(100))\n        self.assertFalse(allowed(101))\n"
)


def coder(*, open_pr: bool) -> list[Step]:
    branch = "coro/limiter"
    steps: list[Step] = [
        {
            "tool_calls": [
                call("get_work_items"),
                call("update_work_item", name="limiter", status="in-progress"),
            ]
        },
        {
            "tool_calls": [
                call(
                    "Bash",
                    command=f"git fetch -q origin && git checkout -q -B "
                    f"{branch} origin/main && echo on-branch",
                )
            ]
        },
        when_ok(
            "on-branch",
            call("Write", file_path="limits.py", content=CHANGE),
            call("Write", file_path="test_limits.py", content=TEST),
        ),
        {
            "tool_calls": [
                call(
                    "Bash",
                    command="python3 -m unittest -q 2>&1 | tail -1 && "
                    "git add -A && git commit -qm 'Limit requests per client' && "
                    "echo committed",
                )
            ]
        },
        when_ok(
            "committed",
            call(
                "Task",
                subagent_type="code-reviewer",
                description="review",
                prompt="Review limiter on coro/limiter against origin/main.",
            ),
        ),
        when_ok(
            "Verdict: clean", call("Bash", command=f"git push -q -u origin {branch} && echo pushed")
        ),
    ]
    if open_pr:
        steps += [
            when_ok(
                "pushed",
                call(
                    "scm_create_pr",
                    repo="svc",
                    title="Limit requests per client",
                    sourceBranch=branch,
                    description=PR_DESCRIPTION,
                ),
            ),
            when_ok(
                '"prId"',
                call(
                    "post_artifact",
                    kind="pr-link",
                    title="Limit requests",
                    data={"prId": 1, "repoSlug": "svc", "pluginId": "local"},
                ),
            ),
        ]
    else:
        steps.append(
            when_ok(
                "pushed",
                call(
                    "post_artifact",
                    kind="pr-preview",
                    title="Limit requests per client",
                    data={
                        "repo": "svc",
                        "sourceBranch": branch,
                        "targetBranch": "main",
                        "title": "Limit requests per client",
                        "description": PR_DESCRIPTION,
                    },
                ),
            )
        )
    return [*steps, done("Handed over.")]


CODE_REVIEWER = [
    {
        "tool_calls": [
            call(
                "Bash",
                command="git diff --stat origin/main...HEAD && "
                "python3 -m unittest -q 2>&1 | tail -1",
            )
        ]
    },
    {
        "when": [
            {"if_result_contains": "OK", "text": "Verdict: clean\n\nBlocking issues:\n- none"}
        ],
        "text": "Verdict: blocking\n\nBlocking issues:\n- the tests fail",
    },
]


def pr_reviewer(*, open_pr: bool, verify: bool) -> list[Step]:
    first: list[Step] = []
    if open_pr:
        first.append(
            {
                "tool_calls": [
                    call("get_artifacts"),
                    call(
                        "scm_create_pr",
                        repo="svc",
                        title="Limit requests per client",
                        sourceBranch="coro/limiter",
                        targetBranch="main",
                        description=PR_DESCRIPTION,
                    ),
                ]
            }
        )
    steps: list[Step] = [
        *first,
        {"tool_calls": [call("get_work_items"), call("scm_get_pr_status", repo="svc", prId=1)]},
        # the phase ends with the call; the approval wakes the job and this phase goes on from
        # here in the same conversation, the events in its prompt
        when_ok('"approvals": 0', call("await_event", eventName="pr:approved", prId=1)),
        {"tool_calls": [call("scm_get_pr_status", repo="svc", prId=1)]},
        when_ok('"approvals": 1', call("scm_merge_pr", repo="svc", prId=1, strategy="squash")),
    ]
    if verify:
        steps.append(
            when_ok(
                '"state": "merged"',
                call(
                    "Bash",
                    command="git fetch -q origin && git checkout -q origin/main && "
                    "python3 -m unittest -q 2>&1 | tail -1",
                ),
            )
        )
    steps += [
        when_ok(
            "OK" if verify else '"state": "merged"',
            call("update_work_item", name="limiter", status="complete"),
            call(
                "post_artifact",
                kind="review-summary",
                title="Review of limiter",
                data={
                    "prId": 1,
                    "repoSlug": "svc",
                    "verdict": "merged",
                    "summary": "Approved by a human and merged.",
                },
            ),
        ),
        done("Every work item is merged."),
    ]
    return steps


def verifier(job_dir: Path, *, kind: str, report: str) -> list[Step]:
    """The evaluator and QA: check the merged base, write a report, post it."""
    results = {
        "build_status": "pass",
        "existing_tests_status": "pass",
        "passed": 1,
        "failed": 0,
        "skipped": 0,
        "summary": "all criteria hold",
    }
    writes = [call("Write", file_path=str(job_dir / report), content="# Report\n\nAll pass.\n")]
    posts = [call("post_artifact", kind=kind, title="Evaluation", data={"path": report})]
    if kind == "evaluation-md":
        writes.append(
            call(
                "Write",
                file_path=str(job_dir / "test-results-limiter.json"),
                content=json.dumps(results),
            )
        )
        posts.append(
            call(
                "post_artifact",
                kind="test-results",
                title="Test results: limiter",
                data={"path": "test-results-limiter.json", "passed": 1, "failed": 0, "skipped": 0},
            )
        )
    return [
        {
            "tool_calls": [
                call("get_work_items"),
                call("scm_get_pr_status", repo="svc", prId=1),
                call(
                    "Bash",
                    command="git fetch -q origin && git checkout -q "
                    "origin/main && python3 -m unittest -q 2>&1 | "
                    "tail -1",
                ),
            ]
        },
        when_ok("OK", *writes, *posts),
        done("Verified."),
    ]


def analyzer(job_dir: Path) -> list[Step]:
    register = {
        "lane": "deep",
        "decisions": [{"id": "D1", "title": "fixed window"}],
        "contracts": [{"id": "C1", "kind": "python", "summary": "allowed(n) -> bool"}],
        "traceability": [],
        "rollout": "",
    }
    return [
        {"tool_calls": [call("read_memory"), call("Grep", pattern="LIMIT")]},
        {
            "tool_calls": [
                call("Write", file_path=str(job_dir / "design-notes.md"), content="# Design\n"),
                call(
                    "Write", file_path=str(job_dir / "register.json"), content=json.dumps(register)
                ),
                call(
                    "post_artifact",
                    kind="analysis-contract",
                    title="Design notes",
                    data={"path": "design-notes.md", "register": "register.json"},
                ),
            ]
        },
        done("Decisions and contracts are recorded."),
    ]


# -- the rig ---------------------------------------------------------------------------------------
@dataclass
class Rig:
    engine: Engine
    local: LocalScmPlugin
    server: ScriptedModelServer
    home: Path

    async def run(self, job_id: str, workflow: str) -> Job:
        """Start the job, approve its PR once it waits for that, and return it finished."""
        await self.engine.create_job(
            JobInput(workflow_path=workflow, params={"repo": "svc", "description": "Limit"}),
            job_id=job_id,
        )
        async with asyncio.timeout(60):
            parked = await self.engine.wait_until(job_id, _stopped_or_waiting_for_approval)
            assert parked.awaiting_event == "pr:approved", _why(parked)
            await self.local.approve("svc", 1, "alice")  # a human, on the SCM
            return await self.engine.wait_until(job_id, lambda j: j.status.is_stopped)

    def system_prompt(self, phase: str) -> str:
        request = next(r for r in self.server.requests if r.phase == phase and not r.subagent)
        system = request.body["system"]
        return system if isinstance(system, str) else "\n".join(b["text"] for b in system)


def _stopped_or_waiting_for_approval(job: Job) -> bool:
    return job.status.is_stopped or job.awaiting_event == "pr:approved"


def _why(job: Job) -> str:
    return f"{job.status.value} in {job.phase}: {job.escalation_message or job.awaiting_event}"


async def explain(rig: Rig, job: Job) -> str:
    """The job's state and its log, for a failed assertion."""
    lines = await rig.engine.store.get_log(job.id)
    asked = [
        f"{r.phase}[{r.step}] {str(r.body['messages'][-1]['content'])[:300]}"
        for r in rig.server.requests
        if r.phase == "review"
    ]
    return _why(job) + "\n" + "\n".join(lines[-60:]) + "\n" + "\n".join(asked)


@pytest.fixture
async def rig_for(coro_home: Path) -> AsyncIterator[Callable[..., Any]]:
    stack: list[tuple[Engine, ScriptedModelServer]] = []

    async def make(phases: dict[str, list[Step]]) -> Rig:
        script = ModelScript.model_validate(
            {"phases": phases, "subagents": {"code-reviewer": CODE_REVIEWER}}
        )
        server = ScriptedModelServer(script)
        await server.__aenter__()
        write_config(
            coro_home,
            llm={
                "defaultProvider": "anthropic",
                "apiKey": "sk-test-base",
                "baseUrl": server.base_url,
            },
            jobs={"idleWatchdog": {"enabled": False}},
            polling={"intervalSeconds": POLL_SECONDS},
        )
        engine = Engine(coro_home, watch_config=False)  # the real executors
        await engine.start()
        stack.append((engine, server))
        local = engine.scm.plugin("local")
        assert isinstance(local, LocalScmPlugin)
        await seed_repository(local, coro_home.parent / "seed")
        return Rig(engine, local, server, coro_home)

    yield make
    for engine, server in stack:
        await engine.stop(grace=1)
        await server.__aexit__(None, None, None)


async def seed_repository(local: LocalScmPlugin, seed: Path) -> None:
    """The developer's repository: a tiny Python service with its own ``.coro`` layer."""
    bare = await local.create_repo("svc")
    (seed / ".coro" / "agents").mkdir(parents=True)
    (seed / ".coro" / "memory").mkdir()
    (seed / ".coro" / "agents" / "coder.md").write_text(REPO_CODER)
    (seed / ".coro" / "memory" / "known-pitfalls.md").write_text(REPO_PITFALL)
    (seed / "limits.py").write_text('"""Request limits for the users API."""\n')
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-qm", "init"],
        ["push", "-q", str(bare), "main"],
    ):
        subprocess.run(["git", *args], cwd=seed, check=True, capture_output=True)


def job_dir(home: Path, job_id: str) -> Path:
    return CoroPaths.from_home(home).job_dir(job_id)


async def phases_entered(engine: Engine, job_id: str) -> list[str]:
    events = await engine.store.read_events(job_id, kinds=[EventKind.PHASE], limit=1_000)
    return [e.data["to"] for e in events]


async def merged_main(local: LocalScmPlugin) -> str:
    shown = subprocess.run(
        ["git", "--git-dir", str(local.repo_path("svc")), "show", "main:limits.py"],
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout


# -- the lanes -------------------------------------------------------------------------------------
def standard_lane(root: Path) -> dict[str, list[Step]]:
    return {
        "spec-writing": spec_writer(root),
        "planning": planner(root, "standard"),
        "coding": coder(open_pr=True),
        "review": pr_reviewer(open_pr=False, verify=False),
        "evaluation": verifier(root, kind="evaluation-md", report="evaluations/limiter.md"),
    }


async def test_the_standard_lane_takes_a_brief_to_a_merged_evaluated_change(
    rig_for: Any, coro_home: Path
) -> None:
    job_id = "svc-standard"
    root = job_dir(coro_home, job_id)
    rig = await rig_for(standard_lane(root))

    job = await rig.run(job_id, "workflows/job/workflow.md")

    assert job.status is JobStatus.COMPLETE, await explain(rig, job)
    assert await phases_entered(rig.engine, job_id) == [
        "spec-writing",
        "planning",
        "coding",
        "review",
        "evaluation",
    ]
    assert (root / "feature-spec.md").read_text().startswith("# Rate limit")
    assert (root / "implementation-plan.md").is_file()
    assert (root / "evaluations" / "limiter.md").is_file()
    assert json.loads((root / "test-results-limiter.json").read_text())["failed"] == 0
    assert [(w.name, w.status.value) for w in job.work_items] == [("limiter", "complete")]
    assert [a.kind for a in job.artifacts] == [
        "spec-md",
        "implementation-plan-md",
        "pr-link",
        "review-summary",
        "evaluation-md",
        "test-results",
    ]
    [pr] = job.pr_mappings
    assert (str(pr.pr_id), pr.work_item, pr.merged_at is not None) == ("1", "limiter", True)
    assert "def allowed" in await merged_main(rig.local)
    assert job.params["lane"] == "standard" and job.params["language"] == "python"

    # the runtime rules and the job's SCM reach the model; each phase gets its own agent
    coding = rig.system_prompt("coding")
    assert "# Runtime rules for every coro agent" in coding
    assert '"resolved": "local"' in coding and '"available": true' in coding
    assert "# Pull-request reviewer" in rig.system_prompt("review")
    assert "# Spec writer" in rig.system_prompt("spec-writing")


async def test_a_repository_layer_overrides_the_coder_and_extends_memory_for_its_job_only(
    rig_for: Any, coro_home: Path
) -> None:
    job_id = "svc-repo-layer"
    root = job_dir(coro_home, job_id)
    rig = await rig_for(standard_lane(root))

    job = await rig.run(job_id, "workflows/job/workflow.md")
    assert job.status is JobStatus.COMPLETE, await explain(rig, job)

    # spec-writing cloned the repository, so its .coro layer counts from planning on
    coding = rig.system_prompt("coding")
    assert "# Coder for svc" in coding and "# Coder\n\nYou implement" not in coding
    assert "# Coder for svc" not in rig.system_prompt("spec-writing")
    memory = (root / "_intelligence" / "memory" / "known-pitfalls.md").read_text()
    base = (
        Path(__file__).parents[2] / "intelligence_base" / "layer" / "memory" / "known-pitfalls.md"
    ).read_text()
    assert memory.index(base.strip()[:40]) < memory.index("<!-- coro layer: repo:svc -->")
    assert memory.rstrip().endswith(REPO_PITFALL.rstrip())

    # another job, without the repository, sees the base coder
    other = await rig.engine.create_job(
        JobInput(workflow_path="workflows/job/workflow.md", params={"repo": "elsewhere"}),
        job_id="elsewhere-1",
    )
    await rig.engine.cancel(other.id)
    resolved = await rig.engine.overlays.resolve(await rig.engine.store.get_job(other.id))
    assert resolved.winners["agents/coder.md"] == "base"
    overlay = rig.engine.overlays.intelligence_dir(other.id)
    assert (overlay / "agents" / "coder.md").read_text().startswith("# Coder\n")


async def test_the_fast_lane_after_the_planner_switches_to_it(
    rig_for: Any, coro_home: Path
) -> None:
    job_id = "svc-fast"
    root = job_dir(coro_home, job_id)
    switch = call(
        "switch_workflow",
        workflowPath="workflows/job-fast/workflow.md",
        paramsPatch={"lane": "fast"},
        reason="one file, no API change, low risk",
    )
    rig = await rig_for(
        {
            "spec-writing": spec_writer(root),
            # in the standard lane the planner sizes the job and moves it (the call ends the
            # phase); in the fast lane it plans
            "planning": [{"tool_calls": [switch]}, *planner(root, "fast")],
            "coding": coder(open_pr=False),
            "review-and-verify": pr_reviewer(open_pr=True, verify=True),
        }
    )

    job = await rig.run(job_id, "workflows/job/workflow.md")

    assert job.status is JobStatus.COMPLETE, await explain(rig, job)
    assert job.workflow_path == "workflows/job-fast/workflow.md"
    assert await phases_entered(rig.engine, job_id) == [
        "spec-writing",
        "planning",
        "coding",
        "review-and-verify",
    ]
    assert [a.kind for a in job.artifacts] == [
        "spec-md",
        "implementation-plan-md",
        "pr-preview",
        "review-summary",
    ]
    assert job.params["lane"] == "fast"
    assert "def allowed" in await merged_main(rig.local)


async def test_the_deep_lane_adds_analysis_and_qa(rig_for: Any, coro_home: Path) -> None:
    job_id = "svc-deep"
    root = job_dir(coro_home, job_id)
    rig = await rig_for(
        {
            "spec-writing": spec_writer(root),
            "analysis": analyzer(root),
            "planning": planner(root, "deep"),
            "coding": coder(open_pr=True),
            "review": pr_reviewer(open_pr=False, verify=False),
            "qa": verifier(root, kind="report-md", report="qa-report.md"),
            "evaluation": verifier(root, kind="evaluation-md", report="evaluations/limiter.md"),
        }
    )

    job = await rig.run(job_id, "workflows/job-deep/workflow.md")

    assert job.status is JobStatus.COMPLETE, await explain(rig, job)
    assert await phases_entered(rig.engine, job_id) == [
        "spec-writing",
        "analysis",
        "planning",
        "coding",
        "review",
        "qa",
        "evaluation",
    ]
    assert (root / "design-notes.md").is_file() and (root / "qa-report.md").is_file()
    kinds = [a.kind for a in job.artifacts]
    assert kinds[:2] == ["spec-md", "analysis-contract"] and "report-md" in kinds
    assert "def allowed" in await merged_main(rig.local)


@pytest.mark.parametrize("outcome", ["merged", "declined"])
async def test_a_self_update_job_tracks_its_pull_request_without_a_model(
    rig_for: Any, coro_home: Path, outcome: str
) -> None:
    rig = await rig_for({})
    seed = coro_home.parent / "seed"
    for args in (
        ["checkout", "-q", "-b", "coro/proposal"],
        ["commit", "-q", "--allow-empty", "-m", "Add a pitfall"],
        ["push", "-q", str(rig.local.repo_path("svc")), "coro/proposal"],
    ):
        subprocess.run(
            ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", *args],
            cwd=seed,
            check=True,
            capture_output=True,
        )
    pr = await rig.local.create_pr(
        "svc", title="Add a pitfall", description=PR_DESCRIPTION, source_branch="coro/proposal"
    )
    job = await rig.engine.create_job(
        JobInput(
            workflow_path="workflows/self-update/workflow.md", params={"repo": "svc", "prId": pr.id}
        )
    )

    async with asyncio.timeout(30):
        parked = await rig.engine.wait_until(job.id, lambda j: bool(j.awaiting_pr_id))
        assert parked.status is JobStatus.AWAITING_PR_MERGE
        assert [str(m.pr_id) for m in parked.pr_mappings] == [str(pr.id)]
        if outcome == "merged":
            await rig.local.merge("svc", pr.id)  # behind the runner's back: the poller sees it
        else:
            await rig.local.decline("svc", pr.id)
        done = await rig.engine.wait_until(job.id, lambda j: j.status.is_stopped)

    if outcome == "merged":
        assert done.status is JobStatus.COMPLETE, await explain(rig, done)
    else:
        assert done.status is JobStatus.FAILED
        assert done.escalation_message == f"pull request #{pr.id} was declined"
    assert rig.server.requests == []
    lines = await rig.engine.store.get_log(job.id)
    assert f"[tracking] svc #{pr.id} until it is merged or declined" in lines
