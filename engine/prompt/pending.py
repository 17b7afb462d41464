"""Prompts the runner stores in ``job.pending_prompt`` to be sent instead of the kickoff.

Webhook events batched while the job ran or was parked, a developer's message, and the
completion gate's corrections. Each is a pure function of its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.prompt._common import as_utc, format_time, redact_token_values, tool
from state.models import InboundEvent, Job, PrMapping

__all__ = [
    "batched_events_prompt",
    "completion_gate_pr_prompt",
    "completion_gate_prompt",
    "developer_message_prompt",
]

_SUMMARY_LIMIT = 240
_QUOTE_LIMIT = 160


def batched_events_prompt(events: Sequence[InboundEvent]) -> str:
    """``[WEBHOOK EVENTS: N received since you parked]`` and one line per event, oldest first.

    Each line gives the time, the event key, the PR and repository when known, and a short
    summary of the payload (title, state, approvals, review, comment, check) — never the
    payload itself.

    Raises:
        ValueError: ``events`` is empty.
    """
    if not events:
        raise ValueError("batched_events_prompt needs at least one event")
    ordered = sorted(events, key=lambda event: as_utc(event.received_at))
    lines = [f"[WEBHOOK EVENTS: {len(ordered)} received since you parked]", ""]
    for number, event in enumerate(ordered, start=1):
        pr_id, repo = _pr_and_repo(event)
        where = f" on PR #{pr_id}" if pr_id else ""
        if repo:
            where += f" ({repo})" if pr_id else f" in {repo}"
        summary = _summary(event.payload) or "no details in the payload"
        lines.append(
            f"{number}. {format_time(event.received_at)} {event.event_key}{where} — {summary}"
        )
    lines += [
        "",
        "Decide which to act on first, following your phase instructions: a comment may need a "
        "reply or a return to coding, an approval may allow a merge once CI is green. These "
        "lines are summaries and later events may supersede earlier ones, so check a PR with "
        f"{tool('scm_get_pr_status')} (and its comments with {tool('scm_list_pr_comments')}) "
        "before acting on it.",
    ]
    return "\n".join(lines)


def developer_message_prompt(text: str, *, sender: str | None = None) -> str:
    """A developer's message to the agent, framed as a ``[DEVELOPER MESSAGE]`` block."""
    header = f"[DEVELOPER MESSAGE] from {sender}" if sender else "[DEVELOPER MESSAGE]"
    return (
        f"{header}\n{text.strip()}\n\n"
        "This comes from the developer watching this job. Take it into account before your "
        "next step: follow an instruction, answer a question. If you need their reply before "
        f"you can go on, call {tool('await_event')} with an eventName starting with "
        '"developer-input: " and a short reason.'
    )


def completion_gate_prompt(
    job: Job, *, attempt: int | None = None, max_attempts: int | None = None
) -> str:
    """The ``[completion-gate]`` correction sent when the job ends with unfinished work items.

    It lists every work item still pending or in progress, the job's PRs grouped by work item
    (open vs merged), and how to finish with the work-item and phase tools.

    Args:
        attempt: how many times in a row the gate has blocked, with ``max_attempts`` the cap
            after which the runner fails the job; the line is left out unless both are given.

    Raises:
        ValueError: the job has no unfinished work item (the gate does not block it).
    """
    blocking = job.open_work_items()
    if not blocking:
        raise ValueError(f"job {job.id} has no unfinished work item; the gate does not block it")
    lines = [
        f"[completion-gate] This job cannot complete yet: {len(blocking)} work item(s) are not "
        "finished. The runner completes a job only when every work item is `complete` or "
        "`escalated`.",
        "",
        "Unfinished work items:",
        *(
            f"- `{item.name}` — status: {item.status}, loop count: {item.loop_count}"
            for item in blocking
        ),
        "",
    ]
    if job.pr_mappings:
        lines.append("PRs on this job, by work item:")
        for item, prs in _by_work_item(job.pr_mappings).items():
            open_ids = _ids(pr for pr in prs if pr.merged_at is None)
            merged_ids = _ids(pr for pr in prs if pr.merged_at is not None)
            lines.append(f"- {item}: open {open_ids}; merged {merged_ids}")
    else:
        lines.append("No PRs are recorded on this job.")
    lines += [
        "",
        "What to do next:",
        f"1. Confirm the state of the work items with {tool('get_work_items')} (and of open PRs "
        f"with {tool('scm_get_pr_status')}).",
        "2. Drive each unfinished work item to `complete` as your workflow describes: finish its "
        "code, get its PRs reviewed and merged, then mark it with "
        f"{tool('update_work_item')} (status `complete`).",
        f"3. Use {tool('goto_phase')} to re-enter the phase that owns the remaining work (for "
        "example `coding` if implementation is missing, `review` if PRs are open and unmerged). "
        "Do not end your turn expecting the job to finish while work items are pending or in "
        "progress.",
        "4. If a work item cannot be finished, mark it `escalated` with "
        f"{tool('update_work_item')}, or call {tool('escalate')} with the reason.",
    ]
    lines += _attempt_line(attempt, max_attempts)
    return "\n".join(lines)


def completion_gate_pr_prompt(
    job: Job, *, attempt: int | None = None, max_attempts: int | None = None
) -> str:
    """The ``[completion-gate]`` correction for a job without work items but with open PRs.

    The original's gate skips jobs without work items, so a job could complete with PRs it
    opened still unmerged; coro holds such a job back until they are merged or it escalates.

    Raises:
        ValueError: the job has no open PR (the gate does not block it).
    """
    open_prs = job.open_pr_mappings()
    if not open_prs:
        raise ValueError(f"job {job.id} has no open PR; the gate does not block it")
    lines = [
        f"[completion-gate] This job cannot complete yet: {len(open_prs)} PR(s) it opened are "
        "still open. The job has no work items, so the runner completes it only when every PR "
        "it opened is merged.",
        "",
        "Open PRs:",
    ]
    for pr in open_prs:
        repo = f" in {pr.repo_slug}" if pr.repo_slug else ""
        item = f" (work item `{pr.work_item}`)" if pr.work_item else ""
        lines.append(f"- #{pr.pr_id}{repo}{item}, opened {format_time(pr.opened_at)}")
    lines += [
        "",
        "What to do next:",
        f"1. Check each PR with {tool('scm_get_pr_status')}.",
        "2. Get them reviewed and merged as your workflow describes: merge with "
        f"{tool('scm_merge_pr')} once a human approved, re-enter the phase that owns merges "
        f"with {tool('goto_phase')}, or park with {tool('await_event')} (eventName "
        '"pr:approved" and the prId) while a human reviews.',
        f"3. If a PR should not be merged, call {tool('escalate')} saying which and why; the "
        "developer decides.",
    ]
    lines += _attempt_line(attempt, max_attempts)
    return "\n".join(lines)


def _attempt_line(attempt: int | None, max_attempts: int | None) -> list[str]:
    if attempt is None or max_attempts is None:
        return []
    return [
        "",
        f"(Attempt {attempt} of {max_attempts}: after the last one the runner fails the job.)",
    ]


def _by_work_item(prs: Sequence[PrMapping]) -> dict[str, list[PrMapping]]:
    groups: dict[str, list[PrMapping]] = {}
    for pr in prs:
        key = f"`{pr.work_item}`" if pr.work_item else "(unattributed)"
        groups.setdefault(key, []).append(pr)
    return groups


def _ids(prs: Any) -> str:
    ids = [f"#{pr.pr_id}" for pr in prs]
    return ", ".join(ids) if ids else "none"


# -- webhook payload summaries -------------------------------------------------------------


def _get(data: Any, *path: str) -> Any:
    """``data[path[0]][path[1]]…``, or ``None`` as soon as a step is not a mapping key."""
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _first(*values: Any) -> str | None:
    return next((text for text in map(_text, values) if text), None)


def _quote(text: str) -> str:
    text = redact_token_values(text)
    return f'"{text[: _QUOTE_LIMIT - 1]}…"' if len(text) > _QUOTE_LIMIT else f'"{text}"'


def _user(data: Any) -> str | None:
    return _first(_get(data, "display_name"), _get(data, "login"), _get(data, "nickname"))


def _pr_and_repo(event: InboundEvent) -> tuple[str | None, str | None]:
    """The PR number and repository an event is about: its reference first, then the payload.

    Knows coro's normalised keys (``prId``, ``repoSlug``) and the raw GitHub and Bitbucket
    shapes (``pull_request.number``, ``pullrequest.id``, ``issue.number`` on a PR comment,
    ``check_suite.pull_requests``).
    """
    payload, ref = event.payload, event.ref
    issue = _get(payload, "issue")
    checks = _get(payload, "check_suite", "pull_requests") or _get(
        payload, "check_run", "pull_requests"
    )
    pr_id = _first(
        ref.external_id if ref is not None and ref.kind == "pull_request" else None,
        _get(payload, "prId"),
        _get(payload, "pull_request", "number"),
        _get(payload, "pullrequest", "id"),
        _get(issue, "number") if _get(issue, "pull_request") else None,
        _get(checks[0], "number") if isinstance(checks, list) and checks else None,
    )
    repo = _first(
        ref.repo_key if ref is not None else None,
        _get(payload, "repoSlug"),
        _get(payload, "repository", "full_name"),
        _get(payload, "repository", "name"),
    )
    return pr_id, repo


def _summary(payload: Mapping[str, Any]) -> str:
    pr = _get(payload, "pull_request") or _get(payload, "pullrequest") or {}
    parts: list[str] = []
    title = _first(_get(payload, "title"), _get(pr, "title"), _get(payload, "issue", "title"))
    if title:
        parts.append(_quote(title))
    state = (_first(_get(payload, "state"), _get(pr, "state")) or "").lower()
    action = _first(_get(payload, "action"))
    if _get(pr, "merged") is True or state == "merged":
        parts.append("merged")
    elif action == "closed" and _get(pr, "merged") is False:
        parts.append("closed without merging")
    else:
        parts += [text for text in (action, state and f"state {state}") if text]
    approvals = _get(payload, "approvalCount")
    if isinstance(approvals, int) and not isinstance(approvals, bool):
        parts.append(f"approvals: {approvals}")
    review = _get(payload, "review")
    if isinstance(review, Mapping):
        by = _user(_get(review, "user"))
        parts.append(
            f"review {_first(_get(review, 'state')) or 'submitted'}" + (f" by {by}" if by else "")
        )
    comment = _get(payload, "comment")
    if isinstance(comment, Mapping):
        by = _user(_get(comment, "user"))
        body = _first(_get(comment, "body"), _get(comment, "content", "raw"))
        parts.append(
            "comment" + (f" by {by}" if by else "") + (f": {_quote(body)}" if body else "")
        )
    for kind in ("check_suite", "check_run"):
        check = _get(payload, kind)
        if isinstance(check, Mapping):
            name = _first(_get(check, "name")) or kind.replace("_", " ")
            result = _first(_get(check, "conclusion"), _get(check, "status")) or "updated"
            parts.append(f"{name}: {result}")
    message = _first(_get(payload, "summary"), _get(payload, "message"))
    if message and not parts:
        parts.append(_quote(message))
    summary = "; ".join(parts)
    return summary if len(summary) <= _SUMMARY_LIMIT else summary[: _SUMMARY_LIMIT - 1] + "…"
