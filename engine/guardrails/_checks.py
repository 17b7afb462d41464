"""The built-in checks. Each returns ``None`` to allow, or the reason for a denial.

Reasons are written for the model that made the call: they give the numbers and say what to
change before calling again. A check whose facts are missing denies (it fails closed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.guardrails._context import GuardrailContext
    from engine.guardrails._rules import EffectiveRule

__all__ = ["BUILTIN_CHECKS", "RuleMisconfigured"]


class RuleMisconfigured(Exception):
    """A rule's ``config`` holds a value its check cannot use."""


def _number(rule: EffectiveRule, key: str) -> int:
    value = rule.config.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise RuleMisconfigured(
            f"guardrail rule {rule.id!r} is misconfigured: config.{key} must be a number ≥ 0, "
            f"not {value!r}"
        )
    return int(value)


def _strings(rule: EffectiveRule, key: str) -> list[str]:
    value = rule.config.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RuleMisconfigured(
            f"guardrail rule {rule.id!r} is misconfigured: config.{key} must be a list of "
            f"strings, not {value!r}"
        )
    return value


def pr_description(rule: EffectiveRule, ctx: GuardrailContext) -> str | None:
    """``description`` is at least ``minLength`` characters and has every required heading."""
    min_length = _number(rule, "minLength")
    headings = _strings(rule, "requiredHeadings")
    raw = ctx.tool_input.get("description")
    text = raw.strip() if isinstance(raw, str) else ""
    lines = [line.strip().lower() for line in text.splitlines()]
    missing = [h for h in headings if not any(line.startswith(h.lower()) for line in lines)]
    problems = []
    if len(text) < min_length:
        found = f"has {len(text)} characters" if text else "is empty"
        problems.append(f"{found}; at least {min_length} are required")
    if missing:
        problems.append("lacks " + " and ".join(f"a {h!r} section" for h in missing))
    if not problems:
        return None
    sections = " with " + " and ".join(f"a {h!r} section" for h in headings) if headings else ""
    return (
        f"the PR description {', and '.join(problems)}. Write a description of at least "
        f"{min_length} characters{sections} that says what changed and why, then call "
        f"{ctx.tool_name} again."
    )


def pr_diff_size(rule: EffectiveRule, ctx: GuardrailContext) -> str | None:
    """The change has at most ``maxLines`` changed lines in at most ``maxFiles`` files."""
    max_lines = _number(rule, "maxLines")
    max_files = _number(rule, "maxFiles")
    diff = ctx.diff
    if diff is None:
        return (
            f"the diff size could not be checked: {ctx.tool_name} did not measure the change, "
            "so the pull request is refused (guardrails fail closed)"
        )
    problems = []
    if diff.lines > max_lines:
        problems.append(
            f"{diff.lines} changed lines (+{diff.added} -{diff.removed}; the limit is {max_lines})"
        )
    if diff.files > max_files:
        problems.append(f"{diff.files} changed files (the limit is {max_files})")
    if not problems:
        return None
    return (
        f"the pull request is too large to review: {' and '.join(problems)}. Split the work into "
        "smaller pull requests (for example one per work item, or stacked branches) and open "
        "them one at a time."
    )


def proposal_markdown_only(rule: EffectiveRule, ctx: GuardrailContext) -> str | None:
    """Every path in ``files[].path`` and ``targetFile`` ends in ``.md``."""
    paths: list[tuple[str, Any]] = []
    files = ctx.tool_input.get("files")
    if isinstance(files, list):
        for number, entry in enumerate(files):
            path = entry.get("path") if isinstance(entry, dict) else entry
            paths.append((f"files[{number}].path", path))
    if "targetFile" in ctx.tool_input:
        paths.append(("targetFile", ctx.tool_input["targetFile"]))
    offending = [
        f"{where} {path!r}"
        for where, path in paths
        if not (isinstance(path, str) and path.strip().endswith(".md"))
    ]
    if not offending:
        return None
    return (
        f"only markdown (.md) files can be proposed, and {', '.join(offending)} "
        f"{'is' if len(offending) == 1 else 'are'} not. Drop those files, or describe the "
        "change they need in a .md file (a skill, an agent, memory, CLAUDE.md) instead."
    )


def merge_requires_approval(rule: EffectiveRule, ctx: GuardrailContext) -> str | None:
    """At least ``minApprovals`` approvals from humans other than the PR's author.

    Bots (a login ending in ``[bot]``), logins in ``config.ignore`` and coro's own SCM
    identity do not count.
    """
    min_approvals = _number(rule, "minApprovals")
    ignored = {login.lower() for login in _strings(rule, "ignore")}
    status = ctx.pr_status
    if status is None:
        return (
            f"the approvals could not be checked: {ctx.tool_name} did not get the pull "
            "request's status from the SCM, so the merge is refused (guardrails fail closed)"
        )
    author = (status.pr.author or "").lower()
    identity = (ctx.scm_identity or "").lower()
    counted: list[str] = []
    skipped: list[str] = []
    for login in dict.fromkeys(status.approvals):
        folded = login.lower()
        if folded == author:
            skipped.append(f"{login} (the author)")
        elif folded.endswith("[bot]"):
            skipped.append(f"{login} (a bot)")
        elif folded in ignored:
            skipped.append(f"{login} (ignored)")
        elif identity and folded == identity:
            skipped.append(f"{login} (coro itself)")
        else:
            counted.append(login)
    if len(counted) >= min_approvals:
        return None
    wanted = "1 approval is" if min_approvals == 1 else f"{min_approvals} approvals are"
    not_counted = f"; not counted: {', '.join(skipped)}" if skipped else ""
    return (
        f"pull request {status.pr.id} has {len(counted)} human approval"
        f"{'' if len(counted) == 1 else 's'}{not_counted}; at least {wanted} required from "
        "someone other than its author before merging. Ask for a review "
        "and wait for the approval (await_event) instead of merging now."
    )


Check = Callable[["EffectiveRule", "GuardrailContext"], "str | None"]

BUILTIN_CHECKS: dict[str, Check] = {
    "pr-description": pr_description,
    "pr-diff-size": pr_diff_size,
    "proposal-markdown-only": proposal_markdown_only,
    "merge-requires-approval": merge_requires_approval,
}
"""The checks that need no script and no model, by ``check`` name."""
