"""Both EngineClient implementations against a real engine: the same calls, the same answers.

``tui_rig`` runs every test twice: with the in-process client and with the remote one over
loopback HTTP.
"""

from __future__ import annotations

import asyncio
import json

import anyio
import pytest

from coro_tui.client import ClientError
from state import JobInput, JobStatus
from tests.support.tui import WORKFLOW_PATH, TuiRig


async def test_jobs_are_listed_and_read(tui_rig: TuiRig) -> None:
    await tui_rig.finished_job("done-1")
    await tui_rig.job_at_checkpoint("waiting-1")

    jobs = await tui_rig.client.list_jobs()
    assert {j.id for j in jobs} == {"done-1", "waiting-1"}
    job = await tui_rig.client.get_job("waiting-1")
    assert job.status is JobStatus.AWAITING_DEVELOPER_INPUT and job.phase == "build"
    with pytest.raises(ClientError) as missing:
        await tui_rig.client.get_job("no-such-job")
    assert missing.value.status == 404 and "no-such-job" in missing.value.message


async def test_a_checkpoint_is_approved_and_a_job_cancelled_and_resumed(tui_rig: TuiRig) -> None:
    await tui_rig.job_at_checkpoint("approve-me")
    await tui_rig.client.approve("approve-me", "go on")
    done = await tui_rig.wait("approve-me", lambda j: j.status.is_stopped)
    assert done.status is JobStatus.COMPLETE

    with pytest.raises(ClientError) as refused:
        await tui_rig.client.approve("approve-me")
    assert refused.value.status == 409

    await tui_rig.job_at_checkpoint("cancel-me")
    cancelled = await tui_rig.client.cancel("cancel-me")
    assert cancelled.status is JobStatus.CANCELLED

    tui_rig.executor.script["spec"] = [[("escalate", {"reason": "need a human"})]]
    await tui_rig.start_job("resume-me")
    await tui_rig.wait("resume-me", lambda j: j.status is JobStatus.ESCALATED)
    await tui_rig.client.resume("resume-me", "try again")
    resumed = await tui_rig.wait("resume-me", lambda j: j.status is JobStatus.COMPLETE)
    assert resumed.status is JobStatus.COMPLETE


async def test_a_job_is_created_with_validation_by_the_runner(tui_rig: TuiRig) -> None:
    spec = JobInput(workflow_path=WORKFLOW_PATH, params={"repo": "svc", "description": "x"})
    job = await tui_rig.client.create_job(spec)
    assert job.params["repo"] == "svc"
    await tui_rig.wait(job.id, lambda j: j.status.is_stopped)

    with pytest.raises(ClientError) as refused:
        await tui_rig.client.create_job(JobInput(workflow_path="workflows/nope/workflow.md"))
    assert refused.value.status == 400 and refused.value.field == "workflowPath"


async def test_the_log_tail_and_the_event_streams_miss_nothing(tui_rig: TuiRig) -> None:
    lines = [("log", {"message": f"line {i}"}) for i in range(30)]
    tui_rig.executor.script["spec"] = [lines]
    tui_rig.executor.script["review"] = [
        [("escalate", {"reason": "stop here"})],
        [("log", {"message": "after resume"})],
    ]
    await tui_rig.start_job("logs-1")
    await tui_rig.wait("logs-1", lambda j: j.status is JobStatus.ESCALATED)

    tail, after = await tui_rig.client.log_tail("logs-1", 5)
    assert len(tail) == 5 and "line 29" in tail and "line 24" not in tail
    assert after == await tui_rig.engine.store.last_seq("logs-1")

    # follow from the cursor: the resumed job's new lines arrive, nothing before the cursor
    seen: list[str] = []

    async def follow() -> None:
        async for batch in tui_rig.client.job_events("logs-1", after):
            seen.extend(str(e.data.get("line")) for e in batch if e.kind == "log")
            if "after resume" in seen:
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    await tui_rig.client.resume("logs-1")
    with anyio.fail_after(15):
        await task
    assert "line 0" not in seen and seen[-1] == "after resume"


async def test_all_events_follow_every_job_from_a_cursor(tui_rig: TuiRig) -> None:
    await tui_rig.finished_job("first")
    after = await tui_rig.client.last_global_seq()
    seen: set[str] = set()

    async def follow() -> None:
        async for batch in tui_rig.client.all_events(after):
            seen.update(e.job_id for e in batch)
            if "second" in seen:
                return

    task = asyncio.create_task(follow())
    await tui_rig.finished_job("second")
    with anyio.fail_after(15):
        await task
    assert seen == {"second"}


async def test_workflows_and_config_go_through_the_api_paths(tui_rig: TuiRig) -> None:
    workflows = {w.path: w for w in await tui_rig.client.workflows()}
    assert workflows[WORKFLOW_PATH].phases == ("spec", "build", "review")
    assert workflows[WORKFLOW_PATH].layer is not None

    config = await tui_rig.client.get_config()
    config["jobs"]["maxConcurrent"] = 7
    saved = await tui_rig.client.put_config(config)
    assert saved["jobs"]["maxConcurrent"] == 7
    on_disk = json.loads((tui_rig.home / "config.json").read_text())
    assert on_disk["jobs"]["maxConcurrent"] == 7

    config["jobs"]["maxConcurrent"] = 0
    with pytest.raises(ClientError) as refused:
        await tui_rig.client.put_config(config)
    assert refused.value.status == 422 and refused.value.field == "jobs.maxConcurrent"
    assert json.loads((tui_rig.home / "config.json").read_text())["jobs"]["maxConcurrent"] == 7


async def test_info_says_where_the_jobs_run(tui_rig: TuiRig) -> None:
    info = tui_rig.client.info
    assert info.mode == ("local" if tui_rig.kind == "local" else "attached")
    if tui_rig.kind == "remote":
        assert info.url is not None and info.url.startswith("http://127.0.0.1:")
