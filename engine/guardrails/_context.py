"""What a guardrail sees (:class:`GuardrailContext`), what it answers (:class:`Decision`), and
the one shape every caller records a denial in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from engine.scm import PrStatus
    from state import Job

__all__ = [
    "GUARDRAIL_DENIED",
    "Decision",
    "DiffStats",
    "GuardrailContext",
    "GuardrailPoint",
    "denial_event",
    "log_line",
]

GuardrailPoint = Literal["scm.create_pr", "scm.merge_pr", "propose_change", "tool.before"]
"""Where a guardrail runs: a rule's ``on``."""

GUARDRAIL_DENIED = "guardrail_denied"
"""The event kind of a denial: ``{ruleId, on, toolName, reason}``."""


@dataclass(frozen=True, slots=True)
class DiffStats:
    """The size of a change: files touched, lines added and removed."""

    files: int
    added: int
    removed: int

    @property
    def lines(self) -> int:
        return self.added + self.removed


@dataclass(frozen=True, slots=True)
class GuardrailContext:
    """One tool call about to happen, with the facts the tool computed for the checks.

    Args:
        on: the enforcement point.
        tool_name: the tool as the model called it (``propose_change``, ``scm_create_pr``…).
        tool_input: its arguments, camelCase as the model sent them.
        job: the job making the call.
        phase: the phase it is in (matched against a rule's ``during``).
        workflow_path: the job's workflow (matched against ``workflows``).
        lane: the job's lane, ``job.params["lane"]`` (matched against ``lanes``).
        working_dir: the job's directory; script rules run there.
        pr_status: for ``scm.merge_pr``, the pull request's status from the SCM.
        diff: for ``scm.create_pr``, the size of the change.
        scm_identity: the login coro acts as on the SCM; its approvals do not count.
    """

    on: GuardrailPoint
    tool_name: str
    tool_input: dict[str, Any]
    job: Job
    phase: str
    workflow_path: str
    lane: str | None
    working_dir: Path
    pr_status: PrStatus | None = None
    diff: DiffStats | None = None
    scm_identity: str | None = None

    @classmethod
    def for_job(
        cls,
        on: GuardrailPoint,
        tool_name: str,
        tool_input: dict[str, Any],
        job: Job,
        *,
        phase: str,
        working_dir: Path,
        pr_status: PrStatus | None = None,
        diff: DiffStats | None = None,
        scm_identity: str | None = None,
    ) -> GuardrailContext:
        """A context whose workflow and lane are the job's own."""
        lane = job.params.get("lane")
        return cls(
            on=on,
            tool_name=tool_name,
            tool_input=tool_input,
            job=job,
            phase=phase,
            workflow_path=job.workflow_path,
            lane=lane if isinstance(lane, str) else None,
            working_dir=working_dir,
            pr_status=pr_status,
            diff=diff,
            scm_identity=scm_identity,
        )

    def to_json(self) -> dict[str, Any]:
        """What a script rule reads on stdin (camelCase; ``prStatus``/``diff`` when known)."""
        data: dict[str, Any] = {
            "on": self.on,
            "toolName": self.tool_name,
            "toolInput": self.tool_input,
            "job": {
                "id": self.job.id,
                "workflowPath": self.workflow_path,
                "phase": self.phase,
                "params": self.job.params,
            },
            "workingDir": str(self.working_dir),
        }
        if self.pr_status is not None:
            status, pr = self.pr_status, self.pr_status.pr
            data["prStatus"] = {
                "state": status.state,
                "approvals": list(status.approvals),
                "changesRequested": list(status.changes_requested),
                "ci": status.ci,
                "mergeable": status.mergeable,
                "commentCount": status.comment_count,
                "pr": {
                    "id": pr.id,
                    "repo": pr.repo,
                    "title": pr.title,
                    "url": pr.url,
                    "author": pr.author,
                    "sourceBranch": pr.source_branch,
                    "targetBranch": pr.target_branch,
                },
            }
        if self.diff is not None:
            data["diff"] = {
                "files": self.diff.files,
                "added": self.diff.added,
                "removed": self.diff.removed,
            }
        return data


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on a call.

    A denial names its rule and says what to fix. An allowed call may still carry a
    ``rule_id`` and ``reason``: a note to log (a ``decision`` rule that was skipped).
    """

    allow: bool
    rule_id: str | None = None
    reason: str | None = None


def denial_event(decision: Decision, ctx: GuardrailContext) -> tuple[str, dict[str, Any]]:
    """The event every caller appends for a denial: ``("guardrail_denied", {...})``."""
    return GUARDRAIL_DENIED, {
        "ruleId": decision.rule_id,
        "on": ctx.on,
        "toolName": ctx.tool_name,
        "reason": decision.reason,
    }


def log_line(decision: Decision) -> str:
    """The job log line for a denial or a note: ``[guardrail] <rule>: <reason>``."""
    return f"[guardrail] {decision.rule_id or 'guardrails'}: {decision.reason or 'denied'}"
