"""kill -9 in the middle of a phase: the next start resumes the job and nothing is doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from engine.runtime import Engine
from state import EventKind, JobStatus
from tests.support.engine import ScriptedExecutor, write_config, write_intelligence

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


async def test_a_job_killed_mid_phase_resumes_and_completes(coro_home: Path) -> None:
    write_intelligence(coro_home)
    write_config(coro_home)
    with subprocess.Popen(
        [sys.executable, "-m", "tests.integration._engine_worker"],
        cwd=ROOT,
        env={**os.environ, "CORO_HOME": str(coro_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        line = child.stdout.readline()
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        errors = child.stderr.read()
    assert line.strip() == "mid-build", errors

    executor = ScriptedExecutor(
        {"review": [[("update_work_item", {"name": "a", "status": "complete"})]]}
    )
    engine = Engine(coro_home, executors=executor.registry(), watch_config=False)
    await engine.start()
    try:
        with anyio.fail_after(20):
            job = await engine.wait_until("crash-job")
        assert job.status is JobStatus.COMPLETE, job.escalation_message
        # The interrupted phase ran again from its start, with the state it had reached.
        rerun = executor.requests[0]
        assert rerun.phase.name == "build"
        assert [p.pr_id for p in rerun.job.pr_mappings] == [1]
        assert "Open PRs on this job" in rerun.kickoff
        assert [w.name for w in job.work_items] == ["a"]
        assert [p.pr_id for p in job.pr_mappings] == [1]
        kinds = [e.kind for e in await engine.store.read_events("crash-job", limit=1000)]
        assert kinds.count(EventKind.RECOVERED) == 1
        assert kinds.count(EventKind.JOB_CREATED) == 1
    finally:
        await engine.stop(grace=1)
