"""Helpers for the runs and job screen tests: a host app, a bounded wait, and fixed jobs behind a
still client for snapshots (behaviour tests use the real clients of ``tests/support/tui.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen

from coro_tui.client import ClientError, RunnerInfo
from state import (
    Artifact,
    Job,
    JobEvent,
    JobStatus,
    PhaseUsage,
    PrMapping,
    TokenUsage,
    WorkflowPhaseInfo,
    WorkItem,
    WorkItemStatus,
)

__all__ = ["NOW", "FixedJobsClient", "Host", "fixed_jobs", "until"]

#: The clock of every snapshot: ages are computed from it.
NOW = datetime(2026, 3, 14, 12, 0, 0, tzinfo=UTC)


class Host(App[None]):
    """A bare app under one screen; the screen is pushed, so ``escape`` can pop it."""

    def __init__(self, make_screen: Callable[[], Screen[Any]]) -> None:
        super().__init__()
        self._make_screen = make_screen

    def on_mount(self) -> None:
        self.push_screen(self._make_screen())


async def until(pilot: Pilot[Any], predicate: Callable[[], object]) -> None:
    """Let the app run until ``predicate()`` holds (fails after 20 seconds)."""
    with anyio.fail_after(20):
        while not predicate():
            await pilot.pause(0.01)


def _phases(*names: str) -> list[WorkflowPhaseInfo]:
    return [WorkflowPhaseInfo(name=n, status=n) for n in names]


def fixed_jobs() -> list[Job]:
    """Five jobs in five states, newest first, with fixed ids and times."""
    phases = _phases("spec", "plan", "build", "review", "evaluate")
    at = [NOW - timedelta(minutes=m) for m in (3, 42, 150, 60 * 26, 60 * 24 * 3)]
    return [
        Job(
            id="acme-api-job-1001",
            params={"repo": "acme/api"},
            status=JobStatus.CODING,
            phase="build",
            workflow_phases=phases,
            created_at=at[0],
            work_items=[
                WorkItem(name="rate-limiter", status=WorkItemStatus.COMPLETE),
                WorkItem(name="metrics", status=WorkItemStatus.IN_PROGRESS, loop_count=1),
                WorkItem(name="docs"),
            ],
            pr_mappings=[
                PrMapping(
                    pr_id=41,
                    work_item="rate-limiter",
                    repo_slug="acme/api",
                    url="https://git.example/acme/api/pull/41",
                    opened_at=at[0],
                    merged_at=at[0],
                ),
                PrMapping(
                    pr_id=42,
                    work_item="metrics",
                    repo_slug="acme/api",
                    url="https://git.example/acme/api/pull/42",
                    opened_at=at[0],
                ),
            ],
            artifacts=[
                Artifact(
                    id="art-plan",
                    phase="plan",
                    kind="plan-md",
                    title="Plan",
                    data={"path": "plan.md"},
                    created_at=at[0],
                ),
                Artifact(
                    id="art-pr",
                    phase="build",
                    kind="pr-link",
                    title="PR #42",
                    data={"url": "https://git.example/acme/api/pull/42"},
                    created_at=at[0],
                ),
            ],
            token_usage=TokenUsage(
                input_tokens=48_200,
                output_tokens=6_100,
                cache_read_input_tokens=120_000,
                total_cost_usd=1.37,
            ),
            phase_usage=[
                PhaseUsage(
                    phase="spec",
                    input_tokens=9_000,
                    output_tokens=1_200,
                    cost_usd=0.21,
                    num_turns=4,
                ),
                PhaseUsage(
                    phase="plan",
                    input_tokens=14_000,
                    output_tokens=2_100,
                    cost_usd=0.44,
                    num_turns=6,
                ),
                PhaseUsage(
                    phase="build",
                    work_item="rate-limiter",
                    input_tokens=25_200,
                    output_tokens=2_800,
                    cache_read_input_tokens=120_000,
                    cost_usd=0.72,
                    num_turns=11,
                ),
            ],
        ),
        Job(
            id="billing-job-1002",
            params={"repo": "acme/billing"},
            phase="plan",
            status=JobStatus.AWAITING_DEVELOPER_INPUT,
            awaiting_event="developer-input: approval after plan",
            workflow_phases=phases,
            created_at=at[1],
            token_usage=TokenUsage(input_tokens=20_000, total_cost_usd=0.31),
        ),
        Job(
            id="web-job-1003",
            params={"repo": "acme/web"},
            phase="build",
            workflow_path="workflows/job-fast/workflow.md",
            status=JobStatus.ESCALATED,
            escalation_message="the staging database refuses the migration credentials",
            workflow_phases=_phases("build", "review"),
            created_at=at[2],
        ),
        Job(
            id="docs-job-1004",
            params={"repo": "acme/docs"},
            phase="evaluate",
            status=JobStatus.COMPLETE,
            workflow_phases=phases,
            created_at=at[3],
            work_items=[WorkItem(name="guide", status=WorkItemStatus.COMPLETE)],
            token_usage=TokenUsage(input_tokens=900, output_tokens=80, total_cost_usd=0.02),
        ),
        Job(
            id="infra-job-1005",
            params={"repo": "acme/infra"},
            phase="review",
            status=JobStatus.AWAITING_PR_MERGE,
            awaiting_event="pullrequest:fulfilled",
            workflow_phases=phases,
            created_at=at[4],
            pr_mappings=[PrMapping(pr_id=7, repo_slug="acme/infra", opened_at=at[4])],
        ),
    ]


PLAN = """## Approach

1. Add a token bucket in front of `/v1/*`.
2. Export `limiter_rejections_total`.

| item | owner |
|---|---|
| rate-limiter | coder |
"""


class FixedJobsClient:
    """The jobs of :func:`fixed_jobs`, still: no events ever arrive."""

    def __init__(self, jobs: list[Job] | None = None) -> None:
        self.jobs = {job.id: job for job in (jobs if jobs is not None else fixed_jobs())}

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo(mode="local", url=None)

    async def list_jobs(self) -> list[Job]:
        return list(self.jobs.values())

    async def get_job(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise ClientError(f"no job {job_id}", status=404) from None

    async def last_global_seq(self) -> int:
        return 0

    async def all_events(self, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        await asyncio.Event().wait()
        yield []

    async def job_events(self, job_id: str, after: int = 0) -> AsyncIterator[list[JobEvent]]:
        await asyncio.Event().wait()
        yield []

    async def log_tail(self, job_id: str, lines: int) -> tuple[list[str], int]:
        log = [f"[{job_id}] step {n}: did a fixed thing" for n in range(1, 41)]
        return log[-lines:] if lines else [], 40

    async def artifact_content(self, job_id: str, artifact_id: str) -> str:
        return PLAN

    async def aclose(self) -> None:
        return None
