"""What the model reads: the phase system prompt, the kickoff, and the prompts that replace it.

:class:`PromptBuilder` assembles the system prompt (workflow, the agent's role, the job as JSON,
upstream insights, the workspace layout). :func:`select_kickoff` picks the first user message
of the phase: the job's pending prompt, or the kickoff with its open-PR table. The helpers in
:mod:`engine.prompt.pending` write the pending prompts (batched webhook events, developer
messages, completion-gate corrections).
"""

from __future__ import annotations

from engine.prompt._common import MASK, format_age, mask_secrets
from engine.prompt.builder import (
    SECTION_SEPARATOR,
    PromptBuilder,
    ScmAvailability,
    TrackerAvailability,
    WorkspaceLayout,
    job_context,
)
from engine.prompt.kickoff import (
    RECENTLY_MERGED_LIMIT,
    approval_block,
    build_kickoff,
    coding_preflight_warning,
    open_prs_block,
    select_kickoff,
)
from engine.prompt.pending import (
    batched_events_prompt,
    completion_gate_pr_prompt,
    completion_gate_prompt,
    developer_message_prompt,
)

__all__ = [
    "MASK",
    "RECENTLY_MERGED_LIMIT",
    "SECTION_SEPARATOR",
    "PromptBuilder",
    "ScmAvailability",
    "TrackerAvailability",
    "WorkspaceLayout",
    "approval_block",
    "batched_events_prompt",
    "build_kickoff",
    "coding_preflight_warning",
    "completion_gate_pr_prompt",
    "completion_gate_prompt",
    "developer_message_prompt",
    "format_age",
    "job_context",
    "mask_secrets",
    "open_prs_block",
    "select_kickoff",
]
