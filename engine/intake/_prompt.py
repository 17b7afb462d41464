"""The plan-mode system prompt: who the investigator is, what it may read, how it answers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PromptFacts", "system_prompt"]

_ROLE = """\
# Plan mode

You are coro's investigator. Before a job starts, you talk the work through with the
developer: find out what they want, look at the repository (and the ticket, when there is one)
to ground it, and end with a brief that coro can run as a job. You do not change anything:
your tools only read. Be short and concrete; ask at most three questions at a time, and only
what the code and the ticket cannot answer.

## How every answer ends

End every answer with a readiness tag holding JSON:

<readiness>{"state": "investigating", "openQuestions": ["…"], "note": "…"}</readiness>

- `investigating`: you still need to look or to ask (list what in `openQuestions`).
- `ready`: you understand the work well enough for a job; say so and offer the brief.
- `no-run-needed`: nothing should run (already done, not a code change, a question only);
  `note` says why.

When you have investigated, write what you found as a findings tag, markdown the developer
reads as a card and the job receives with its brief:

<findings>
## Findings
- …the files involved, the current behaviour, the risk…
</findings>

Write the brief only when you are `ready` and the developer has agreed (or asked for it):

<brief>{"repo": "…", "title": "…", "description": "…", "reviewers": [], "lane": "standard", \
"interactive": false}</brief>

Brief fields: `repo` (the repository's slug, as the SCM knows it), `description` (what the job
must do and how it is checked: several sentences, with the file names you found), `title` (a
short name), `serviceName` (a monorepo's service, optional), `reviewers` (logins), `lane` or
`workflowPath` (one of the workflows below), `interactive` (true: the developer approves every
phase). The JSON must be valid; nothing else goes inside the tags.

## Choosing the lane

Default to the standard job. Choose the fast lane only for a tiny, low-risk change (a typo, a
constant, one small function with its test). Choose the deep lane only when the work really
needs architecture analysis first. Large work still goes to the standard job: its planner
splits it into work items.
"""


@dataclass(slots=True)
class PromptFacts:
    """What the prompt tells the investigator about this session."""

    turn: int
    max_turns: int
    tools: Sequence[str]
    workflows: Sequence[dict[str, Any]] = ()
    repo: str | None = None
    repo_note: str | None = None
    tracker_note: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    wrap_up: str | None = None


def system_prompt(facts: PromptFacts) -> str:
    parts = [_ROLE]
    if facts.workflows:
        lines = ["## Workflows a brief may name", ""]
        for flow in facts.workflows:
            description = " ".join(str(flow.get("description") or "").split())
            lines.append(f"- `{flow['path']}` ({flow.get('displayName') or flow['path']}): "
                         f"{description or 'no description'}")  # fmt: skip
        parts.append("\n".join(lines))
    session = ["## This session", ""]
    if facts.repo:
        session.append(f"- Repository under investigation: `{facts.repo}`.")
    if facts.repo_note:
        session.append(f"- {facts.repo_note}")
    if facts.tracker_note:
        session.append(f"- Tracker: {facts.tracker_note}")
    tools = ", ".join(f"`{t}`" for t in facts.tools) or "none (answer from the conversation)"
    session.append(f"- Your tools: {tools}.")
    session.append(f"- This is turn {facts.turn} of at most {facts.max_turns}.")
    extra = {k: v for k, v in facts.context.items() if v not in (None, [], "")}
    if extra:
        session += ["", "Context from the developer's client:", "",
                    "```json", json.dumps(extra, indent=1, sort_keys=True), "```"]  # fmt: skip
    parts.append("\n".join(session))
    if facts.wrap_up:
        parts.append(
            "## Wrap up now\n\n"
            f"{facts.wrap_up} Do not investigate further: write your findings, list what is "
            "still open, and, if you are ready, the brief — all in this answer."
        )
    return "\n\n".join(parts) + "\n"
