"""The phase system prompt: the workflow, the agent's role, the job as JSON, upstream insights.

:meth:`PromptBuilder.build` assembles it from the job's intelligence overlay, one section per
concern, joined by ``---`` lines. The result is a pure function of its inputs (no clock, sorted
keys in free-form maps), so an executor can cache the stable prefix; secrets in ``params`` are
masked before they reach it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import WorkflowError
from engine.prompt._common import mask_secrets, repo_checkout_dir, tool
from engine.workflow import PhaseConfig, Workflow, split_front_matter
from state.models import Insight, Job

__all__ = [
    "CLAUDE_MD",
    "SECTION_SEPARATOR",
    "PromptBuilder",
    "ScmAvailability",
    "TrackerAvailability",
    "WorkspaceLayout",
    "job_context",
]

SECTION_SEPARATOR = "\n\n---\n\n"
"""What sits between two sections of the system prompt: a line ``---`` with blank lines."""

CLAUDE_MD = Path(".claude") / "CLAUDE.md"
"""The runtime instructions of the overlay, relative to the intelligence directory."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScmAvailability:
    """Which SCM plugin the job's ``scm_*`` tools reach. The defaults mean none is configured.

    Attributes:
        available: a plugin resolved for this job, so SCM tool calls hit a real back end.
        resolved: the plugin id they reach, or ``"none"``.
        requested: the plugin the job asked for (``params.scm``), if any.
        default: the configured default plugin, if any.
        installed: every SCM plugin id installed.
    """

    available: bool = False
    resolved: str = "none"
    requested: str | None = None
    default: str | None = None
    installed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "resolved": self.resolved,
            "requested": self.requested,
            "default": self.default,
            "installed": sorted(self.installed),
        }


@dataclass(frozen=True, slots=True)
class TrackerAvailability:
    """Whether ``tracker_*`` calls reach a real tracker. The defaults mean none is configured.

    Agents decide on ``available`` rather than probing with calls that would create issues.
    ``defaults`` holds provider-specific values for tool arguments (``owner``, ``teamKey``).
    """

    provider: str = "none"
    available: bool = False
    defaults: Mapping[str, str] = field(default_factory=dict, hash=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "available": self.available,
            "defaults": dict(sorted(self.defaults.items())),
        }


@dataclass(frozen=True, slots=True)
class WorkspaceLayout:
    """Where a job's files are: its root, the repository checkout (once cloned), the overlay."""

    job_dir: Path
    repo_dir: Path | None
    intelligence_dir: Path

    @classmethod
    def for_job(cls, job: Job, *, job_dir: Path, intelligence_dir: Path) -> WorkspaceLayout:
        """The layout with the checkout ``scm_clone_repo`` recorded in the job's params."""
        checkout = repo_checkout_dir(job)
        repo_dir = None if checkout is None else job_dir / checkout
        return cls(job_dir, repo_dir, intelligence_dir)

    def render(self) -> str:
        """The ``## Workspace layout`` block of the system prompt."""
        lines = [
            "## Workspace layout",
            "",
            f"- Job root: `{self.job_dir}` — the job's working directory; artefact paths are "
            "relative to it.",
        ]
        if self.repo_dir is None:
            lines.append(
                "- Repository checkout: none yet. Clone the target repository with "
                f"{tool('scm_clone_repo')}; its path appears here from the next phase on."
            )
        else:
            relative = _relative(self.repo_dir, self.job_dir)
            lines.append(
                f"- Repository checkout: `{self.repo_dir}`"
                + (f" (`{relative}` under the job root)" if relative else "")
                + ". `Bash` commands and relative paths start in this tree; write job "
                + "documents (spec, plan, evaluations) in the job root by absolute path, "
                + f"such as `{self.job_dir / 'feature-spec.md'}`."
            )
        lines.append(
            f"- Intelligence overlay: `{self.intelligence_dir}` — the workflows, agents, skills "
            "and memory this job runs with. Read it, never edit it; propose changes with "
            f"{tool('propose_change')}."
        )
        return "\n".join(lines)


def _relative(path: Path, root: Path) -> str | None:
    """``path`` relative to ``root`` when it lies under it, else ``None``."""
    relative = os.path.relpath(path, root)
    return None if relative == os.curdir or relative.startswith(os.pardir) else relative


def job_context(job: Job, *, scm: ScmAvailability, tracker: TrackerAvailability) -> dict[str, Any]:
    """The job as the ``# Current Job`` JSON shows it: camelCase, secrets masked."""
    return {
        "jobId": job.id,
        "type": str(job.type),
        "workflowPath": job.workflow_path,
        "interactive": job.interactive,
        "params": mask_secrets(job.params),
        "triggerSource": job.trigger_source,
        "status": str(job.status),
        "phase": job.phase,
        "currentWorkItem": job.current_work_item,
        "workItems": [item.to_wire() for item in job.work_items],
        "workItemLoopCount": job.work_item_loop_count,
        "prMappings": [pr.to_wire() for pr in job.pr_mappings],
        "awaitingEvent": job.awaiting_event,
        "awaitingPrId": job.awaiting_pr_id,
        "awaitingNextPhase": job.awaiting_next_phase,
        "approvedAdvanceFromPhase": job.approved_advance_from_phase,
        "escalationMessage": job.escalation_message,
        "tracker": tracker.to_json(),
        "scm": scm.to_json(),
    }


class PromptBuilder:
    """Builds the system prompt of one phase from the job's intelligence overlay."""

    def build(
        self,
        job: Job,
        workflow: Workflow,
        phase: PhaseConfig,
        *,
        intelligence_dir: Path,
        scm: ScmAvailability,
        tracker: TrackerAvailability,
        include_claude_md: bool = False,
        workspace: WorkspaceLayout | None = None,
        read: Callable[[str], str] | None = None,
    ) -> str:
        """The phase's system prompt, sections joined by :data:`SECTION_SEPARATOR`.

        Args:
            job: the job, as saved before the phase starts.
            workflow: the job's workflow; its body is the ``# Current Workflow`` section.
            phase: the phase about to run; its agent file is read from ``intelligence_dir``.
            intelligence_dir: the job's materialised overlay (``working/<job>/_intelligence``).
            scm: what the job's SCM tools reach, for the ``scm`` block of the job JSON.
            tracker: what its tracker tools reach, for the ``tracker`` block.
            include_claude_md: put the overlay's ``.claude/CLAUDE.md`` first, for executors
                that cannot load it natively.
            workspace: the job's directories; when its ``repo_dir`` is ``None`` the checkout
                recorded in the job's params is used. ``None`` leaves the block out.
            read: reads a file of the overlay by its path inside it (the overlay manager's
                cached :meth:`~engine.overlay.OverlayManager.read_text`); by default the
                file under ``intelligence_dir`` is read.

        Raises:
            WorkflowError: the phase's agent file is missing or unreadable.
        """
        if read is None:
            read = _reader(intelligence_dir)
        sections: list[str] = []
        if include_claude_md:
            claude_md = _read_optional(read, intelligence_dir, CLAUDE_MD.as_posix())
            if claude_md is not None:
                sections.append(_section("Runtime Instructions", CLAUDE_MD.as_posix(), claude_md))
        sections.append(_section("Current Workflow", workflow.path, workflow.body))
        sections.append(self._role(workflow, phase, intelligence_dir, read))
        if workspace is not None and workspace.repo_dir is None:
            workspace = WorkspaceLayout.for_job(
                job, job_dir=workspace.job_dir, intelligence_dir=workspace.intelligence_dir
            )
        sections.append(_current_job(job, scm, tracker, workspace))
        if job.insights:
            sections.append(_insights(job.insights))
        return SECTION_SEPARATOR.join(sections)

    def _role(
        self,
        workflow: Workflow,
        phase: PhaseConfig,
        intelligence_dir: Path,
        read: Callable[[str], str],
    ) -> str:
        if phase.agent is None:
            return (
                "# Your Role This Phase\n\n"
                f"Phase `{phase.name}` is managed by the runner itself: no agent is assigned to "
                "it. Do not start new work. Report anything that needs attention with "
                f"{tool('log')}, then end your turn."
            )
        where = f"{workflow.path}: phase {phase.name!r}"
        path = intelligence_dir / phase.agent
        try:
            text = read(phase.agent)
        except FileNotFoundError as exc:
            raise WorkflowError(
                f"{where}: agent file {phase.agent!r} not found at {path}; add it to an "
                "intelligence layer or fix the phase's 'agent:' path",
                title="Agent file missing",
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.reason if isinstance(exc, UnicodeDecodeError) else exc.strerror or exc
            raise WorkflowError(
                f"{where}: cannot read agent file {phase.agent!r} at {path}: {reason}"
            ) from exc
        _, body = split_front_matter(text, source=f"{where}: {phase.agent}")
        return _section("Your Role This Phase", phase.agent, body)


def _section(title: str, source: str, body: str) -> str:
    return f"# {title}\n*Source: {source}*\n\n{body.strip()}"


def _reader(intelligence_dir: Path) -> Callable[[str], str]:
    def read(relpath: str) -> str:
        return (intelligence_dir / relpath).read_text(encoding="utf-8")

    return read


def _read_optional(read: Callable[[str], str], intelligence_dir: Path, relpath: str) -> str | None:
    path = intelligence_dir / relpath
    try:
        return read(relpath)
    except FileNotFoundError:
        _log.warning("no %s in the overlay to put in the system prompt", path)
    except (OSError, UnicodeDecodeError) as exc:
        _log.warning("cannot read %s for the system prompt: %s", path, exc)
    return None


def _current_job(
    job: Job,
    scm: ScmAvailability,
    tracker: TrackerAvailability,
    workspace: WorkspaceLayout | None,
) -> str:
    context = job_context(job, scm=scm, tracker=tracker)
    text = json.dumps(context, indent=2, ensure_ascii=False, default=str)
    parts = [
        "# Current Job\n\nThis is the job you are executing. Keep every action within its "
        f"scope.\n\n```json\n{text}\n```"
    ]
    if workspace is not None:
        parts.append(workspace.render())
    return "\n\n".join(parts)


def _insights(insights: list[Insight]) -> str:
    from_siblings = any(insight.source_child_name for insight in insights)
    lead = (
        "These learnings were recorded by earlier campaign siblings and by earlier phases of "
        "this job. Entries marked `[campaign sibling: …]` were found on the same repository "
        "and tenant moments ago: read them before memory and follow their recipes. "
        if from_siblings
        else "These learnings were recorded by agents in earlier phases of this job. "
    )
    entries = [_insight(number, insight) for number, insight in enumerate(insights, start=1)]
    return (
        "# Insights from Upstream Agents\n\n"
        + lead
        + "Each is a discovery, workaround or pattern that may warrant a self-improvement "
        + f"proposal with {tool('propose_change')}.\n\n"
        + "\n\n".join(entries)
    )


def _insight(number: int, insight: Insight) -> str:
    phase = insight.phase or "unknown phase"
    origin = (
        f"[campaign sibling: {insight.source_child_name} · {phase}]"
        if insight.source_child_name
        else f"[{phase}]"
    )
    status = "" if insight.status == "pending" else f" ({insight.status} by the developer)"
    lines = [
        f"### {number}. {origin} {insight.category}{status}",
        f"**Summary:** {insight.edited_summary or insight.summary}",
        f"**Detail:** {insight.edited_detail or insight.detail}",
    ]
    suggestion = insight.edited_suggestion or insight.suggestion
    if suggestion:
        lines.append(f"**Suggestion:** {suggestion}")
    return "\n".join(lines)
