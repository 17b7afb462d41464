"""The StateBackend contract: every implementation must pass every test here."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from state import (
    DuplicateJobError,
    ExternalRef,
    InboundEvent,
    InMemoryStateBackend,
    Investigation,
    Job,
    JobEvent,
    JobNotFoundError,
    JobStatus,
    LocalPrComment,
    LocalPullRequest,
    PrMapping,
    Proposal,
    SqliteStateBackend,
    StaleJobError,
    StalePullRequestError,
    StateBackend,
    WorkItem,
)


@pytest.fixture(params=["memory", "sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateBackend]:
    store: StateBackend
    if request.param == "memory":
        store = InMemoryStateBackend()
    else:
        store = SqliteStateBackend(tmp_path / "state.db", flush_interval=0.01)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def make_job(store: StateBackend, job_id: str = "svc-job-1", **fields: object) -> Job:
    return await store.create_job(Job(id=job_id, params={"repo": "svc"}, **fields))  # type: ignore[arg-type]


def test_both_backends_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(InMemoryStateBackend(), StateBackend)
    assert isinstance(SqliteStateBackend(tmp_path / "x.db"), StateBackend)


# -- jobs ---------------------------------------------------------------------------------------
async def test_create_and_get_returns_an_independent_copy(backend: StateBackend) -> None:
    job = await make_job(backend)
    assert job.version == 1
    copy = await backend.get_job(job.id)
    assert copy is not None and copy is not job
    assert copy.params == {"repo": "svc"} and copy.version == 1
    copy.params["repo"] = "changed"
    again = await backend.get_job(job.id)
    assert again is not None and again.params == {"repo": "svc"}
    assert await backend.get_job("nope") is None


async def test_duplicate_id_is_refused(backend: StateBackend) -> None:
    await make_job(backend)
    with pytest.raises(DuplicateJobError, match="svc-job-1"):
        await make_job(backend)


async def test_save_bumps_the_version_and_reads_see_the_newest_state(
    backend: StateBackend,
) -> None:
    job = await make_job(backend)
    job.status = JobStatus.PLANNING
    job.work_items = [WorkItem(name="rate-limit")]
    await backend.save_job(job)
    assert job.version == 2
    seen = await backend.get_job(job.id)
    assert seen is not None
    assert seen.status is JobStatus.PLANNING and seen.work_items[0].name == "rate-limit"
    job.phase = "planning"
    await backend.save_job(job, durable=True)
    assert job.version == 3


async def test_a_stale_copy_cannot_overwrite_a_newer_save(backend: StateBackend) -> None:
    await make_job(backend)
    first = await backend.get_job("svc-job-1")
    second = await backend.get_job("svc-job-1")
    assert first is not None and second is not None
    first.params["winner"] = "first"
    await backend.save_job(first, durable=True)
    second.params["winner"] = "second"
    with pytest.raises(StaleJobError, match="another writer changed it first"):
        await backend.save_job(second, durable=True)
    final = await backend.get_job("svc-job-1")
    assert final is not None and final.params["winner"] == "first"


async def test_a_batch_of_saves_reports_only_the_jobs_another_process_moved_on(
    tmp_path: Path,
) -> None:
    """Two stores on one file, as two processes: saves are written in one statement per batch,
    and a job the other writer saved first (to the very same version number) is the only one
    refused; the others in the batch are written."""
    path = tmp_path / "state.db"
    async with (
        SqliteStateBackend(path, flush_interval=60) as ours,
        SqliteStateBackend(path, flush_interval=60) as theirs,
    ):
        for job_id in ("a", "b", "c"):
            await make_job(ours, job_id)
        mine = {job_id: await ours.get_job(job_id) for job_id in ("a", "b", "c")}
        other = await theirs.get_job("b")
        assert other is not None
        other.params["by"] = "them"
        await theirs.save_job(other, durable=True)  # b is now at version 2, their data

        for job in mine.values():
            assert job is not None
            job.params["by"] = "us"
        await ours.save_job(mine["a"])  # type: ignore[arg-type]
        await ours.save_job(mine["c"])  # type: ignore[arg-type]
        with pytest.raises(StaleJobError):  # one batch of three, each from version 1 to 2
            await ours.save_job(mine["b"], durable=True)  # type: ignore[arg-type]

    async with SqliteStateBackend(path) as check:
        saved = {job_id: await check.get_job(job_id) for job_id in ("a", "b", "c")}
    assert {k: v.params["by"] for k, v in saved.items() if v} == {"a": "us", "b": "them", "c": "us"}


async def test_a_subscriber_that_joins_during_a_commit_gets_its_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It reads its backlog (from another connection) before the batch commits, so it must get
    the batch live, even though nobody listened when the batch was written."""
    import aiosqlite

    async with SqliteStateBackend(tmp_path / "state.db") as store:
        await make_job(store, "j")
        stream = store.subscribe("j")
        joined: list[asyncio.Task[list[JobEvent]]] = []
        execute = aiosqlite.Connection.execute

        async def commit_late(self: aiosqlite.Connection, sql: str, *args: object) -> object:
            if sql == "COMMIT" and not joined:
                joined.append(asyncio.ensure_future(anext(stream)))  # type: ignore[arg-type]
                await asyncio.sleep(0.2)  # it subscribes and reads an empty backlog
            return await execute(self, sql, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(aiosqlite.Connection, "execute", commit_late)
        await store.append_event("j", "log", {"line": "written while it joined"})
        monkeypatch.undo()
        with anyio.fail_after(5):
            batch = await joined[0]
        assert [e.data["line"] for e in batch] == ["written while it joined"]
        await stream.aclose()  # type: ignore[attr-defined]


async def test_update_job_takes_wire_or_python_names(backend: StateBackend) -> None:
    await make_job(backend)
    job = await backend.update_job("svc-job-1", {"awaitingEvent": "pr:merged", "phase": "review"})
    assert job.awaiting_event == "pr:merged" and job.phase == "review"
    job = await backend.update_job("svc-job-1", {"status": "awaiting-pr-merge"})
    assert job.status.is_parked
    with pytest.raises(KeyError, match="notAField"):
        await backend.update_job("svc-job-1", {"notAField": 1})
    with pytest.raises(KeyError, match="version"):
        await backend.update_job("svc-job-1", {"version": 99})
    with pytest.raises(JobNotFoundError):
        await backend.update_job("missing", {"phase": "x"})


async def test_list_filters_and_paginates_newest_first(backend: StateBackend) -> None:
    for i in range(5):
        await make_job(
            backend,
            f"job-{i}",
            created_at=datetime(2026, 1, 1 + i, tzinfo=UTC),
            status=JobStatus.COMPLETE if i % 2 else JobStatus.QUEUED,
            workflow_path=f"workflows/{'job-fast' if i == 4 else 'job'}/workflow.md",
            campaign_parent_id="job-0" if i in (1, 2) else None,
        )
    assert [j.id for j in await backend.list_jobs()] == [f"job-{i}" for i in (4, 3, 2, 1, 0)]
    assert [j.id for j in await backend.list_jobs(status="complete")] == ["job-3", "job-1"]
    assert len(await backend.list_jobs(status=["complete", "queued"])) == 5
    assert [j.id for j in await backend.list_jobs(limit=2, offset=1)] == ["job-3", "job-2"]
    assert [
        j.id for j in await backend.list_jobs(workflow_path="workflows/job-fast/workflow.md")
    ] == ["job-4"]
    assert {j.id for j in await backend.list_child_jobs("job-0")} == {"job-1", "job-2"}
    assert await backend.count_jobs(status="queued") == 3
    assert len(await backend.list_jobs_by_type("job")) == 5


async def test_list_sees_a_save_that_is_not_yet_flushed(backend: StateBackend) -> None:
    job = await make_job(backend)
    job.status = JobStatus.CODING
    await backend.save_job(job)
    assert [j.id for j in await backend.list_jobs(status="coding")] == [job.id]


async def test_delete_removes_the_job_its_events_and_mappings(backend: StateBackend) -> None:
    await make_job(backend)
    await backend.append_log("svc-job-1", "hello")
    await backend.map_pr_to_job(7, "svc-job-1")
    assert await backend.delete_job("svc-job-1") is True
    assert await backend.get_job("svc-job-1") is None
    assert await backend.read_events("svc-job-1") == []
    assert await backend.get_job_by_pr(7) is None
    assert await backend.delete_job("svc-job-1") is False


# -- event log ----------------------------------------------------------------------------------
async def test_events_are_numbered_per_job_and_globally(backend: StateBackend) -> None:
    await make_job(backend, "a")
    await make_job(backend, "b")
    assert await backend.append_event("a", "status", {"from": "queued", "to": "planning"}) == 1
    assert await backend.append_events("b", [("log", {"line": "x"}), ("log", {"line": "y"})]) == [
        1,
        2,
    ]
    assert await backend.append_event("a", "phase", {"to": "planning"}) == 2
    a = await backend.read_events("a")
    assert [(e.seq, e.kind) for e in a] == [(1, "status"), (2, "phase")]
    assert a[0].data == {"from": "queued", "to": "planning"} and a[0].job_id == "a"
    every = await backend.read_all_events()
    assert [(e.job_id, e.seq) for e in every] == [("a", 1), ("b", 1), ("b", 2), ("a", 2)]
    assert [e.global_seq for e in every] == sorted({e.global_seq for e in every})
    assert await backend.last_seq("a") == 2
    assert await backend.last_global_seq() == every[-1].global_seq
    after = await backend.read_all_events(after_global_seq=every[1].global_seq, limit=1)
    assert [(e.job_id, e.seq) for e in after] == [("b", 2)]


async def test_reading_from_a_cursor_with_a_limit_and_kinds(backend: StateBackend) -> None:
    await make_job(backend)
    await backend.append_events(
        "svc-job-1", [("log" if i % 2 else "status", {"i": i}) for i in range(10)]
    )
    page = await backend.read_events("svc-job-1", after_seq=3, limit=4)
    assert [e.seq for e in page] == [4, 5, 6, 7]
    logs = await backend.read_events("svc-job-1", kinds=["log"])
    assert [e.data["i"] for e in logs] == [1, 3, 5, 7, 9]
    tail = await backend.read_last_events("svc-job-1", 3)
    assert [e.seq for e in tail] == [8, 9, 10]


async def test_appending_to_an_unknown_job_fails_without_harming_others(
    backend: StateBackend,
) -> None:
    await make_job(backend)
    results = await asyncio.gather(
        backend.append_event("svc-job-1", "log", {"line": "kept"}),
        backend.append_event("ghost", "log", {"line": "lost"}),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert isinstance(results[1], JobNotFoundError)
    assert [e.data["line"] for e in await backend.read_events("svc-job-1")] == ["kept"]


async def test_concurrent_appends_get_distinct_gapless_seqs(backend: StateBackend) -> None:
    await make_job(backend)
    seqs = await asyncio.gather(
        *(backend.append_event("svc-job-1", "log", {"n": n}) for n in range(200))
    )
    assert sorted(seqs) == list(range(1, 201))
    events = await backend.read_events("svc-job-1", limit=500)
    assert {e.data["n"]: e.seq for e in events} == dict(zip(range(200), seqs, strict=True))


async def test_logs_are_log_events(backend: StateBackend) -> None:
    await make_job(backend)
    await backend.append_log("svc-job-1", "one")
    await backend.append_event("svc-job-1", "status", {"to": "coding"})
    await backend.append_logs("svc-job-1", ["two", "three"])
    assert await backend.get_log("svc-job-1") == ["one", "two", "three"]
    assert await backend.get_log("svc-job-1", 1) == ["two", "three"]
    assert await backend.get_log("svc-job-1", 0, 2) == ["one", "two"]
    assert await backend.log_length("svc-job-1") == 3


async def _collect(stream: AsyncIterator[list[JobEvent]], count: int, into: list[JobEvent]) -> None:
    async for batch in stream:
        into.extend(batch)
        if len(into) >= count:
            return


async def test_subscribe_gives_the_backlog_then_live_events(backend: StateBackend) -> None:
    await make_job(backend)
    await backend.append_logs("svc-job-1", ["a", "b", "c"])
    got: list[JobEvent] = []
    stream = backend.subscribe("svc-job-1", after=1)
    with anyio.fail_after(5):
        reader = asyncio.create_task(_collect(stream, 4, got))
        while len(got) < 2:
            await asyncio.sleep(0)
        await backend.append_logs("svc-job-1", ["d", "e"])
        await reader
    await stream.aclose()  # type: ignore[attr-defined]
    assert [e.data["line"] for e in got] == ["b", "c", "d", "e"]


async def test_the_global_feed_carries_every_job(backend: StateBackend) -> None:
    await make_job(backend, "a")
    await make_job(backend, "b")
    got: list[JobEvent] = []
    stream = backend.subscribe(None, after=await backend.last_global_seq())
    with anyio.fail_after(5):
        reader = asyncio.create_task(_collect(stream, 3, got))
        await asyncio.sleep(0)
        await backend.append_log("a", "1")
        await backend.append_log("b", "2")
        await backend.append_log("a", "3")
        await reader
    await stream.aclose()  # type: ignore[attr-defined]
    assert [(e.job_id, e.data["line"]) for e in got] == [("a", "1"), ("b", "2"), ("a", "3")]


async def test_a_slow_subscriber_misses_nothing_and_sees_nothing_twice(
    backend: StateBackend,
) -> None:
    backend._broker._buffer_size = 16  # type: ignore[attr-defined]
    await make_job(backend)
    await backend.append_log("svc-job-1", "first")
    got: list[JobEvent] = []
    stream = backend.subscribe("svc-job-1")
    with anyio.fail_after(10):
        got.extend(await anext(stream))  # type: ignore[call-overload]
        for chunk in range(11):  # far more than the buffer holds, while nobody reads
            await backend.append_logs("svc-job-1", [f"{chunk}-{i}" for i in range(9)])
        await _collect(stream, 100, got)
    await stream.aclose()  # type: ignore[attr-defined]
    assert [e.seq for e in got] == list(range(1, 101))


# -- mappings -----------------------------------------------------------------------------------
async def test_external_refs_map_to_jobs(backend: StateBackend) -> None:
    await make_job(backend)
    ref = ExternalRef(kind="pull_request", plugin_id="github", repo_key="o/r", external_id="12")
    await backend.map_external_ref(ref.model_copy(update={"url": "https://x/12"}), "svc-job-1")
    found = await backend.get_job_by_external_ref(ref)
    assert found is not None and found.id == "svc-job-1"
    other = ref.model_copy(update={"repo_key": "o/other"})
    assert await backend.get_job_by_external_ref(other) is None
    refs = await backend.list_external_refs("svc-job-1")
    assert [r.url for r in refs] == ["https://x/12"]
    with pytest.raises(JobNotFoundError):
        await backend.map_external_ref(ref, "ghost")


async def test_legacy_pr_ticket_and_repo_mappings(backend: StateBackend) -> None:
    await make_job(backend)
    await backend.map_pr_to_job(42, "svc-job-1")
    await backend.map_jira_ticket_to_job("PROJ-1", "svc-job-1")
    await backend.map_repo_to_job("org/svc", "svc-job-1")
    for found in (
        await backend.get_job_by_pr("42"),
        await backend.get_job_by_jira_ticket("PROJ-1"),
        await backend.get_job_by_repo("org/svc"),
    ):
        assert found is not None and found.id == "svc-job-1"
    assert await backend.get_job_by_pr(43) is None


async def test_pr_mappings_on_the_job_and_merge_stamp(backend: StateBackend) -> None:
    await make_job(backend)
    await backend.add_pr_mapping("svc-job-1", PrMapping(pr_id=5, work_item="wi-1"))
    await backend.add_pr_mapping("svc-job-1", PrMapping(pr_id=6, work_item="wi-2"))
    merged_at = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    job = await backend.mark_pr_merged("svc-job-1", 5, merged_at)
    assert [p.pr_id for p in job.open_pr_mappings()] == [6]
    stored = await backend.get_job("svc-job-1")
    assert stored is not None
    mapping = stored.pr_mapping(5)
    assert mapping is not None and mapping.merged_at == merged_at
    await backend.mark_pr_merged("svc-job-1", 999, merged_at)  # unknown PR: a soft no-op


# -- proposals and investigations ---------------------------------------------------------------
async def test_proposals(backend: StateBackend) -> None:
    p = Proposal(id="p1", tenant_id="solo-box", job_id="j", type="memory-update", title="T")
    await backend.create_proposal(p)
    assert [x.id for x in await backend.list_proposals("solo-box")] == ["p1"]
    assert await backend.list_proposals("other-tenant") == []
    updated = await backend.update_proposal("solo-box", "p1", {"status": "approved"})
    assert updated.status == "approved"
    assert [x.id for x in await backend.list_proposals("solo-box", "approved")] == ["p1"]
    assert await backend.list_proposals("solo-box", "pending") == []
    got = await backend.get_proposal("solo-box", "p1")
    assert got is not None and got.status == "approved"


async def test_investigations(backend: StateBackend) -> None:
    inv = Investigation(id="inv-1", messages=[{"role": "user", "content": "hi"}])
    await backend.upsert_investigation(inv)
    inv.status = "dispatched"
    inv.job_id = "svc-job-1"
    await backend.upsert_investigation(inv)
    got = await backend.get_investigation("inv-1")
    assert got is not None and got.status == "dispatched" and got.messages[0]["content"] == "hi"
    assert [i.id for i in await backend.list_investigations(status="dispatched")] == ["inv-1"]
    assert await backend.list_investigations(status="open") == []
    assert await backend.delete_investigation("inv-1") is True
    assert await backend.get_investigation("inv-1") is None


# -- inbox --------------------------------------------------------------------------------------
def _inbound(n: int) -> InboundEvent:
    return InboundEvent(event_key="pullrequest:approved", payload={"n": n}, plugin_id="local")


async def test_inbox_ignores_a_duplicate_delivery(backend: StateBackend) -> None:
    assert await backend.enqueue(_inbound(1), "delivery-1", job_id="j") is not None
    assert await backend.enqueue(_inbound(1), "delivery-1", job_id="j") is None
    assert await backend.pending_inbox("j") == 1


async def test_inbox_claim_ack_and_release(backend: StateBackend) -> None:
    for n in range(3):
        await backend.enqueue(_inbound(n), f"d-{n}", job_id="j")
    await backend.enqueue(_inbound(9), "other", job_id="k")
    claimed = await backend.claim("runner-1", job_id="j", limit=2)
    assert [c.event.payload["n"] for c in claimed] == [0, 1]
    assert all(c.state == "claimed" and c.attempts == 1 for c in claimed)
    assert [c.event.payload["n"] for c in await backend.claim("runner-2", job_id="j")] == [2]
    await backend.ack([claimed[0].id])
    await backend.release([claimed[1].id])
    again = await backend.claim("runner-1", job_id="j")
    assert [c.event.payload["n"] for c in again] == [1]
    assert again[0].attempts == 2
    await backend.ack([claimed[0].id])  # acking twice is harmless
    assert await backend.pending_inbox("j") == 2  # item 1 (claimed) and item 2 (claimed)
    # A duplicate of an event already done is still ignored.
    assert await backend.enqueue(_inbound(0), "d-0", job_id="j") is None


async def test_an_expired_claim_can_be_claimed_again(backend: StateBackend) -> None:
    await backend.enqueue(_inbound(1), "d-1")
    first = await backend.claim("crashed-runner", lease_seconds=0.0)
    assert len(first) == 1
    await asyncio.sleep(0.01)
    second = await backend.claim("new-runner")
    assert [c.id for c in second] == [first[0].id]
    assert second[0].claimed_by == "new-runner"


async def test_a_save_can_ack_the_events_it_acted_on(backend: StateBackend) -> None:
    job = await make_job(backend)
    await backend.enqueue(_inbound(1), "d-1", job_id=job.id)
    claimed = await backend.claim("runner", job_id=job.id)
    job.pending_prompt = "[WEBHOOK EVENTS: 1 received since you parked]"
    await backend.save_job(job, ack=[c.id for c in claimed])
    assert await backend.pending_inbox(job.id) == 0
    stored = await backend.get_job(job.id)
    assert stored is not None and stored.pending_prompt is not None


# -- local pull requests -----------------------------------------------------------------------
def _local_pr(repo: str = "svc", source: str = "feat/x", **fields: object) -> LocalPullRequest:
    return LocalPullRequest(
        repo=repo,
        title=f"PR from {source}",
        source_branch=source,
        author="coro",
        **fields,  # type: ignore[arg-type]
    )


async def test_local_pr_ids_count_from_one_per_repository(backend: StateBackend) -> None:
    first = await backend.create_local_pr(_local_pr())
    assert (first.id, first.version) == (1, 1)
    assert (await backend.create_local_pr(_local_pr(source="feat/y"))).id == 2
    assert (await backend.create_local_pr(_local_pr("group/other"))).id == 1
    got = await backend.get_local_pr("svc", 1)
    assert got is not None and got is not first
    assert got.title == "PR from feat/x" and got.state == "open" and got.version == 1
    got.title = "changed"
    again = await backend.get_local_pr("svc", 1)
    assert again is not None and again.title == "PR from feat/x"
    assert await backend.get_local_pr("svc", 3) is None
    assert await backend.get_local_pr("nope", 1) is None


async def test_concurrent_local_pr_creations_get_distinct_ids(backend: StateBackend) -> None:
    made = await asyncio.gather(
        *(backend.create_local_pr(_local_pr(source=f"b{i}")) for i in range(12))
    )
    assert sorted(pr.id for pr in made) == list(range(1, 13))
    assert len(await backend.list_local_prs(repo="svc")) == 12


async def test_saving_a_local_pr_keeps_comments_and_refuses_a_stale_copy(
    backend: StateBackend,
) -> None:
    await backend.create_local_pr(_local_pr(reviewers=["ana"]))
    first = await backend.get_local_pr("svc", 1)
    second = await backend.get_local_pr("svc", 1)
    assert first is not None and second is not None
    first.comments.append(LocalPrComment(id=1, author="ana", body="why?", path="a.py", line=3))
    await backend.save_local_pr(first)
    assert first.version == 2
    second.state = "declined"
    with pytest.raises(StalePullRequestError, match="another writer changed it first"):
        await backend.save_local_pr(second)
    stored = await backend.get_local_pr("svc", 1)
    assert stored is not None and stored.state == "open" and stored.version == 2
    assert stored.comments[0].body == "why?" and stored.comments[0].line == 3
    assert stored.reviewers == ["ana"]
    with pytest.raises(StalePullRequestError, match="does not exist"):
        await backend.save_local_pr(_local_pr(id=7, version=1))


async def test_local_prs_are_listed_newest_first_and_filtered(backend: StateBackend) -> None:
    for day, (repo, source) in enumerate([("svc", "a"), ("web", "b"), ("svc", "c")], start=1):
        pr = _local_pr(repo, source, created_at=datetime(2026, 1, day, tzinfo=UTC))
        await backend.create_local_pr(pr)
    merged = await backend.get_local_pr("svc", 1)
    assert merged is not None
    merged.state = "merged"
    await backend.save_local_pr(merged)
    assert [(p.repo, p.source_branch) for p in await backend.list_local_prs()] == [
        ("svc", "c"),
        ("web", "b"),
        ("svc", "a"),
    ]
    assert [p.source_branch for p in await backend.list_local_prs(repo="svc")] == ["c", "a"]
    assert [p.source_branch for p in await backend.list_local_prs(state="open")] == ["c", "b"]
    assert [p.id for p in await backend.list_local_prs(repo="svc", state="merged")] == [1]
    assert await backend.list_local_prs(repo="none") == []


async def test_local_prs_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SqliteStateBackend(path) as store:
        await store.create_local_pr(_local_pr())
    async with SqliteStateBackend(path) as store:
        got = await store.get_local_pr("svc", 1)
        assert got is not None and got.version == 1
        assert (await store.create_local_pr(_local_pr(source="next"))).id == 2


async def test_a_database_from_before_local_prs_is_migrated_with_its_jobs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    async with SqliteStateBackend(path) as store:
        await make_job(store)
    with contextlib.closing(sqlite3.connect(path)) as con:  # back to schema version 1
        con.execute("DROP TABLE local_prs")
        con.execute("PRAGMA user_version = 1")
        con.commit()
    async with SqliteStateBackend(path) as store:
        assert await store.get_job("svc-job-1") is not None
        assert (await store.create_local_pr(_local_pr())).id == 1


async def test_closing_twice_is_fine(backend: StateBackend) -> None:
    await backend.close()
    await backend.close()
