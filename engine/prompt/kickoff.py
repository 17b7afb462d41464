"""The first user message of a phase: the kickoff, or the pending prompt that replaces it.

:func:`select_kickoff` is what the runner sends: the job's ``pending_prompt`` (batched webhook
events, a developer message, a completion-gate correction) when there is one, otherwise
:func:`build_kickoff`. Either way a due checkpoint approval comes first.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from engine.prompt._common import as_utc, format_age, md_cell, repo_checkout_dir, tool
from engine.workflow import PhaseConfig, Workflow
from state.models import Job, PrMapping

__all__ = [
    "RECENTLY_MERGED_LIMIT",
    "approval_block",
    "build_kickoff",
    "coding_preflight_warning",
    "open_prs_block",
    "select_kickoff",
]

RECENTLY_MERGED_LIMIT = 5
"""How many merged PRs the kickoff lists under the open ones."""

_CODING = "coding"
_EPOCH = datetime.min.replace(tzinfo=UTC)


def select_kickoff(
    job: Job, workflow: Workflow, phase: PhaseConfig, *, resumed: bool, now: datetime
) -> str:
    """The phase's first user message: the pending prompt if the job has one, else the kickoff.

    The checkpoint approval block (:func:`approval_block`) is put first in both cases.
    """
    pending = job.pending_prompt
    if pending is None or not pending.strip():
        return build_kickoff(job, workflow, phase, resumed=resumed, now=now)
    approval = approval_block(job, workflow, phase)
    return pending if approval is None else f"{approval}\n\n{pending}"


def build_kickoff(
    job: Job, workflow: Workflow, phase: PhaseConfig, *, resumed: bool, now: datetime
) -> str:
    """The kickoff message of a phase.

    In order: the developer's checkpoint approval (when due), the ``[coding-preflight]``
    warning (when due), what to do now (worded for a fresh or a resumed session), the
    "Open PRs on this job" block, and a reminder of where the repository checkout is.

    Args:
        resumed: the model's session continues (it has the earlier conversation).
        now: the time the PR ages are measured against.
    """
    parts = [
        approval_block(job, workflow, phase),
        coding_preflight_warning(job, workflow, phase),
        _opening(job, phase, resumed=resumed),
        open_prs_block(job, now=now),
        _workspace_reminder(job),
    ]
    return "\n\n".join(part for part in parts if part)


def _opening(job: Job, phase: PhaseConfig, *, resumed: bool) -> str:
    item = f" (work item `{job.current_work_item}`)" if job.current_work_item else ""
    if resumed:
        return (
            f"Continue where you left off: you are in phase **{phase.name}**{item}. Your role "
            'for this phase is in the system prompt under "Your Role This Phase"; re-read it '
            "if the phase changed since your last turn. Check what is already done "
            f"({tool('get_work_items')}, the PRs below) before repeating any step, then finish "
            "the phase's work and end your turn."
        )
    return (
        f"Begin phase **{phase.name}** of job `{job.id}`{item}. Your role for this phase "
        'is in the system prompt under "Your Role This Phase", and the whole workflow under '
        '"Current Workflow". Follow your phase instructions, report progress with '
        f"{tool('log')}, and end your turn when the phase's work is done: the runner then "
        "advances the job."
    )


def approval_block(job: Job, workflow: Workflow, phase: PhaseConfig) -> str | None:
    """The ``[DEVELOPER APPROVAL]`` block, when the phase follows an approved checkpoint.

    It is due when ``job.checkpoint_approval`` is for the phase declared before this one, or
    for ``job.approved_advance_from_phase`` (the phase the developer let the job leave).
    """
    approval = job.checkpoint_approval
    if approval is None:
        return None
    names = workflow.phase_names
    index = names.index(phase.name) if phase.name in names else 0
    previous = names[index - 1] if index > 0 else None
    if approval.for_phase not in (previous, job.approved_advance_from_phase):
        return None
    who = f" ({approval.approved_by})" if approval.approved_by else ""
    lines = [
        "[DEVELOPER APPROVAL]",
        f"The developer{who} approved the checkpoint after phase `{approval.for_phase}`.",
    ]
    message = (approval.message or "").strip()
    if message:
        lines.append("Their message:")
        lines.extend(f"> {line}".rstrip() for line in message.splitlines())
        lines.append(f"Carry on with phase `{phase.name}`, following their message.")
    else:
        lines.append(f"They left no message. Carry on with phase `{phase.name}`.")
    return "\n".join(lines)


def coding_preflight_warning(job: Job, workflow: Workflow, phase: PhaseConfig) -> str | None:
    """The ``[coding-preflight]`` nudge: the current work item already has open PRs.

    Only in a coding phase (by name or status). It is a soft hint to hand the work to review
    instead of opening more PRs; the completion gate remains the hard backstop.
    """
    item = job.current_work_item
    if _CODING not in (phase.name, phase.status) or not item:
        return None
    open_prs = [pr for pr in job.open_pr_mappings() if pr.work_item == item]
    if not open_prs:
        return None
    ids = ", ".join(f"#{pr.pr_id}" for pr in open_prs)
    following = workflow.next_phase(phase.name) if workflow.has_phase(phase.name) else None
    handoff = (
        f"end your turn so the job moves on to `{following}`"
        if following
        else f"hand the work to review with {tool('goto_phase')}"
    )
    return (
        f"[coding-preflight] Work item `{item}` already has {len(open_prs)} open PR(s): {ids}. "
        "Unless you are addressing review feedback on exactly these PRs, do not open another "
        f"one: {handoff}, where they are reviewed and merged. More PRs while these are unmerged "
        "only grow the review backlog."
    )


def open_prs_block(job: Job, *, now: datetime) -> str | None:
    """The "Open PRs on this job" block: a table of unmerged PRs, then the latest merged ones.

    ``None`` when the job has no PRs at all.
    """
    if not job.pr_mappings:
        return None
    lines = ["## Open PRs on this job", ""]
    open_prs = sorted(job.open_pr_mappings(), key=lambda pr: as_utc(pr.opened_at))
    if open_prs:
        lines += ["| PR | Work item | Repo | Age | Notes |", "|---|---|---|---|---|"]
        for pr in open_prs:
            lines.append(
                f"| #{md_cell(str(pr.pr_id))} | {md_cell(pr.work_item or '(unattributed)')} "
                f"| {md_cell(pr.repo_slug or '—')} | {format_age(pr.opened_at, now)} "
                f"| {md_cell(_notes(job, pr))} |"
            )
    else:
        lines.append("No open PRs: every PR on this job is merged.")
    merged = sorted(
        (pr for pr in job.pr_mappings if pr.merged_at is not None),
        key=lambda pr: as_utc(pr.merged_at or _EPOCH),
        reverse=True,
    )
    if merged:
        lines += ["", "Recently merged:"]
        for pr in merged[:RECENTLY_MERGED_LIMIT]:
            where = ", ".join(filter(None, [pr.work_item or "(unattributed)", pr.repo_slug]))
            age = format_age(pr.merged_at or now, now)
            lines.append(f"- PR #{pr.pr_id} ({where}) merged {age} ago")
        if len(merged) > RECENTLY_MERGED_LIMIT:
            lines.append(f"- … and {len(merged) - RECENTLY_MERGED_LIMIT} merged earlier")
    return "\n".join(lines)


def _notes(job: Job, pr: PrMapping) -> str:
    notes = ["open"]
    if job.awaiting_pr_id is not None and str(job.awaiting_pr_id) == str(pr.pr_id):
        notes.append(f"job parked on it ({job.awaiting_event or 'awaiting an event'})")
    if job.current_work_item and pr.work_item == job.current_work_item:
        notes.append("current work item")
    return "; ".join(notes)


def _workspace_reminder(job: Job) -> str | None:
    checkout = repo_checkout_dir(job)
    if checkout is None:
        return None
    where = "" if os.path.isabs(checkout) else " (under the job root)"
    return (
        "## Workspace\n"
        f"Repository checkout: `{checkout}`{where}. `Bash` commands and relative paths start "
        "in it; job documents (spec, plan, evaluations) belong in the job root, by absolute path."
    )
