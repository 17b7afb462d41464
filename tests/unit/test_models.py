"""The job model speaks the original's wire format, and statuses answer the right questions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from state.models import (
    PAUSED_AWAITING_EVENT,
    Job,
    JobEvent,
    JobStatus,
    JobType,
    PhaseUsage,
    TokenUsage,
    WorkItemStatus,
)

DATA = Path(__file__).resolve().parents[1] / "data"


def _drop_nulls(value: object) -> object:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def test_a_job_written_by_the_original_round_trips_unchanged() -> None:
    original = json.loads((DATA / "original-job.json").read_text())
    job = Job.model_validate(original)
    assert job.status is JobStatus.AWAITING_PR_MERGE
    assert job.work_items[0].status is WorkItemStatus.IN_PROGRESS
    assert job.pr_mappings[1].merged_at is not None and job.pr_mappings[0].is_open
    assert job.rate_limit_info is not None and job.rate_limit_info.resume_at == 1712124000000
    assert job.workflow_path_history[0].from_ == "workflows/job-fast/workflow.md"
    assert job.checkpoint_approval is not None and job.checkpoint_approval.for_phase == "coding"
    wire = json.loads(job.model_dump_json(exclude={"version", "completion_gate_blocks"}))
    assert _drop_nulls(wire) == _drop_nulls(original)
    # A field the original has and coro does not model is carried through, not lost.
    assert wire["decisionRecords"] == [{"phase": "coding", "score": 0.82}]


def test_the_wire_uses_camel_case_and_python_uses_snake_case() -> None:
    job = Job(id="j", current_work_item="a", work_item_loop_count=2)
    wire = job.to_wire()
    assert wire["currentWorkItem"] == "a" and wire["workItemLoopCount"] == 2
    assert "current_work_item" not in wire
    assert Job.model_validate(wire).current_work_item == "a"


def test_a_job_serialised_by_coro_parses_back_identically() -> None:
    job = Job.model_validate(json.loads((DATA / "original-job.json").read_text()))
    again = Job.model_validate_json(job.model_dump_json())
    assert again == job


@pytest.mark.parametrize(
    ("status", "terminal", "parked", "resumable", "cancellable"),
    [
        ("queued", False, False, False, True),
        ("planning", False, False, False, True),
        ("coding", False, False, False, True),
        ("awaiting-pr-merge", False, True, True, True),
        ("awaiting-developer-input", False, True, True, True),
        ("awaiting-plan-approval", False, True, True, True),
        ("awaiting-children", False, True, True, True),
        ("awaiting-rate-limit", False, True, True, True),
        ("escalated", False, False, True, True),
        ("failed", True, False, True, False),
        ("complete", True, False, False, False),
        ("cancelled", True, False, False, False),
    ],
)
def test_status_predicates(
    status: str, terminal: bool, parked: bool, resumable: bool, cancellable: bool
) -> None:
    s = JobStatus(status)
    assert (s.is_terminal, s.is_parked, s.is_resumable, s.is_cancellable) == (
        terminal,
        parked,
        resumable,
        cancellable,
    )


def test_a_workflow_may_declare_its_own_status() -> None:
    job = Job(id="j", status="security-audit")  # type: ignore[arg-type]
    assert job.status == "security-audit" and job.status.is_running
    assert JobStatus("security-audit") is job.status
    assert json.loads(job.model_dump_json())["status"] == "security-audit"
    with pytest.raises(ValidationError):
        Job(id="j", status="Not A Status!")  # type: ignore[arg-type]
    assert JobType("oss-contribution").value == "oss-contribution"


def test_every_status_of_the_reference_is_known() -> None:
    reference = {
        "queued", "complete", "cancelled", "escalated", "failed", "awaiting-plan-approval",
        "awaiting-pr-merge", "awaiting-developer-input", "awaiting-children", "coding",
        "awaiting-rate-limit", "spec-writing", "planning", "analyzing", "reviewing", "qa",
        "evaluating", "campaign-planning", "aggregating", "curating", "shipping",
    }  # fmt: skip
    assert reference <= {s.value for s in JobStatus.__members__.values()}
    assert PAUSED_AWAITING_EVENT.startswith("developer-input:")


def test_usage_accumulates_from_phases() -> None:
    total = TokenUsage()
    total.add(PhaseUsage(phase="a", input_tokens=10, output_tokens=5, cost_usd=0.5))
    total.add(PhaseUsage(phase="b", cache_read_input_tokens=100, cost_usd=0.25))
    assert (total.input_tokens, total.output_tokens, total.cache_read_input_tokens) == (10, 5, 100)
    assert total.total_cost_usd == pytest.approx(0.75)
    assert total.total_tokens == 115


def test_open_work_items_block_and_closed_ones_do_not() -> None:
    job = Job.model_validate(
        {
            "id": "j",
            "workItems": [
                {"name": "a", "status": "complete"},
                {"name": "b", "status": "escalated"},
                {"name": "c", "status": "pending"},
            ],
        }
    )
    assert [w.name for w in job.open_work_items()] == ["c"]
    assert job.work_item("b") is not None and job.work_item("zz") is None


def test_an_event_built_from_store_values_is_the_event_model_construct_builds() -> None:
    ts = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    fast = JobEvent.from_store("job-1", 3, 42, ts, "log", {"line": "ok"})
    slow = JobEvent.model_construct(
        job_id="job-1", seq=3, global_seq=42, ts=ts, kind="log", data={"line": "ok"}
    )
    assert fast == slow and repr(fast) == repr(slow)
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_fields_set == slow.model_fields_set and fast.model_extra == {}
    assert fast.model_copy(update={"seq": 4}).seq == 4 and fast.seq == 3
