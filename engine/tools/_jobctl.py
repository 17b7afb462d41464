"""Job-control tools: the log, work items, job params, sessions, and the phase-ending signals.

``goto_phase``, ``await_event``, ``escalate`` and ``switch_workflow`` only set
:class:`~engine.phase.PhaseSignals`; the runner acts on them once the phase ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from engine.phase import WorkflowSwitchSignal
from engine.tools._base import DomainTool, ToolArgs, ToolError, ToolResult
from state import WorkItem, WorkItemStatus

if TYPE_CHECKING:
    from engine.phase import ToolContext

__all__ = ["TOOLS"]

_ENDS_TURN = "The phase ends after this call: finish your turn without calling further tools."


def _text(description: str) -> Any:
    """A required, non-blank text argument."""
    return Field(min_length=1, description=description)


def _work_items(ctx: ToolContext) -> dict[str, Any]:
    return {
        "workItems": [item.to_wire() for item in ctx.job.work_items],
        "currentWorkItem": ctx.job.current_work_item,
    }


# -- log --------------------------------------------------------------------------------------
class LogArgs(ToolArgs):
    message: str = _text("The line to append to the job log.")


async def log(ctx: ToolContext, args: LogArgs) -> ToolResult:
    await ctx.log(args.message)
    return "logged"


# -- work items -------------------------------------------------------------------------------
class SetWorkItemsArgs(ToolArgs):
    work_items: list[str] = Field(
        description="Every work item's name, in the order they should be done."
    )


async def set_work_items(ctx: ToolContext, args: SetWorkItemsArgs) -> ToolResult:
    names = [name.strip() for name in args.work_items]
    if any(not name for name in names):
        raise ToolError("work item names must not be empty")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ToolError(f"work item names must be unique; repeated: {', '.join(duplicates)}")
    job = ctx.job
    job.work_items = [WorkItem(name=name) for name in names]
    job.work_item_loop_count = 0
    if job.current_work_item not in names:
        job.current_work_item = None
    await ctx.save()
    await ctx.log(f"[work-items] {len(names)} set: {', '.join(names) or '(none)'}")
    return _work_items(ctx)


class UpdateWorkItemArgs(ToolArgs):
    name: str = Field(description="The work item's name, as given to set_work_items.")
    status: Literal["pending", "in-progress", "complete", "escalated"] | None = Field(
        None, description="The new status; 'in-progress' also makes it the current work item."
    )
    increment_loop: bool | None = Field(
        None, description="Count one more fix loop on this item (e.g. after a failed review)."
    )


async def update_work_item(ctx: ToolContext, args: UpdateWorkItemArgs) -> ToolResult:
    job = ctx.job
    item = job.work_item(args.name.strip())
    if item is None:
        known = ", ".join(repr(w.name) for w in job.work_items)
        raise ToolError(
            f"unknown work item {args.name!r}; known work items: {known}"
            if known
            else f"unknown work item {args.name!r}: the job has no work items yet "
            "(call set_work_items first)"
        )
    if args.status is None and not args.increment_loop:
        raise ToolError("nothing to update: pass status, incrementLoop, or both")
    changes = []
    if args.status is not None:
        status = WorkItemStatus(args.status)
        changes.append(f"{item.status.value} → {status.value}")
        item.status = status
        if status is WorkItemStatus.IN_PROGRESS:
            job.current_work_item = item.name
    if args.increment_loop:
        item.loop_count += 1
        job.work_item_loop_count += 1
        changes.append(f"loop {item.loop_count}")
    await ctx.save()
    await ctx.log(f"[work-item] {item.name}: {', '.join(changes)}")
    return {
        "workItem": item.to_wire(),
        "currentWorkItem": job.current_work_item,
        "workItemLoopCount": job.work_item_loop_count,
    }


class NoArgs(ToolArgs):
    pass


async def get_work_items(ctx: ToolContext, args: NoArgs) -> ToolResult:
    return _work_items(ctx)


# -- session and params -----------------------------------------------------------------------
class RequestNewSessionArgs(ToolArgs):
    reason: str = _text("Why the conversation should start afresh (e.g. a new work item).")


async def request_new_session(ctx: ToolContext, args: RequestNewSessionArgs) -> ToolResult:
    ctx.job.session_id = None
    ctx.job.conversation_history = []
    ctx.signals.new_session_reason = args.reason
    await ctx.save()
    await ctx.log(f"[session-reset] {args.reason}")
    return "The next phase starts with a fresh conversation; this one is not carried over."


class SetJobParamsArgs(ToolArgs):
    params: dict[str, Any] = Field(
        description="Keys to set on job.params (shallow merge: each key replaces its old value)."
    )


async def set_job_params(ctx: ToolContext, args: SetJobParamsArgs) -> ToolResult:
    if not args.params:
        raise ToolError("params is empty: pass at least one key to set")
    ctx.job.params.update(args.params)
    await ctx.save()
    await ctx.log(f"[params] set {', '.join(sorted(args.params))}")
    return {"params": ctx.job.params}


# -- phase-ending signals ---------------------------------------------------------------------
class GotoPhaseArgs(ToolArgs):
    phase: str = Field(description="A phase declared by this job's workflow.")


async def goto_phase(ctx: ToolContext, args: GotoPhaseArgs) -> ToolResult:
    workflow = ctx.workflow
    if not workflow.has_phase(args.phase):
        raise ToolError(
            f"unknown phase {args.phase!r}; workflow {workflow.path} declares: "
            f"{', '.join(workflow.phase_names)}"
        )
    ctx.signals.next_phase = args.phase
    await ctx.log(f"[goto-phase] {ctx.phase.name} → {args.phase}")
    return f"The job goes to phase {args.phase!r} next. {_ENDS_TURN}"


class AwaitEventArgs(ToolArgs):
    event_name: str = _text(
        "The event to wait for: 'pr:merged', 'pr:approved', 'ci-status:<prId>', or "
        "'developer-input: <question>' to ask the developer."
    )
    pr_id: int | None = Field(None, description="The pull request the event concerns, if any.")


async def await_event(ctx: ToolContext, args: AwaitEventArgs) -> ToolResult:
    ctx.signals.awaiting_event = args.event_name
    ctx.signals.awaiting_pr_id = args.pr_id
    pr = f" (PR {args.pr_id})" if args.pr_id is not None else ""
    await ctx.log(f"[await-event] {args.event_name}{pr}")
    return f"The job parks until {args.event_name!r}{pr} arrives. {_ENDS_TURN}"


class EscalateArgs(ToolArgs):
    reason: str = _text("What is blocking and what a human needs to decide or do.")


async def escalate(ctx: ToolContext, args: EscalateArgs) -> ToolResult:
    ctx.signals.escalated = True
    ctx.signals.escalation_reason = args.reason
    await ctx.log(f"[escalate] {args.reason}")
    return f"The job is escalated to a human. {_ENDS_TURN}"


class SwitchWorkflowArgs(ToolArgs):
    workflow_path: str = _text(
        "The workflow to continue under, e.g. workflows/job-fast/workflow.md."
    )
    params_patch: dict[str, Any] | None = Field(
        None, description="Keys to merge into job.params on the switch (e.g. {lane: 'fast'})."
    )
    reason: str = _text("Why this lane fits the work better.")
    to_phase: str | None = Field(
        None, description="The phase of the new workflow to start in (default: its first)."
    )


async def switch_workflow(ctx: ToolContext, args: SwitchWorkflowArgs) -> ToolResult:
    path = args.workflow_path.strip()
    if path == ctx.job.workflow_path:
        raise ToolError(f"the job already runs workflow {path}")
    if not ctx.known_workflows(path):
        raise ToolError(
            f"workflow {path!r} does not exist in any intelligence layer "
            "(give its path from the layer root, e.g. workflows/job-fast/workflow.md)"
        )
    ctx.signals.switch_workflow = WorkflowSwitchSignal(
        workflow_path=path,
        reason=args.reason,
        to_phase=(args.to_phase or "").strip() or None,
        params_patch=dict(args.params_patch or {}),
    )
    await ctx.log(f"[switch-workflow] {ctx.job.workflow_path} → {path}: {args.reason}")
    return f"The job switches to {path}. {_ENDS_TURN}"


TOOLS: tuple[DomainTool[Any], ...] = (
    DomainTool(
        "log",
        "Append a line to the job log the developer watches. Call it often: what you are "
        "about to do, what you found, what you decided and why.",
        LogArgs,
        log,
    ),
    DomainTool(
        "set_work_items",
        "Declare the job's work items (usually the planner, once). Replaces any existing "
        "list; every item starts 'pending' with a loop count of 0. Names must be unique.",
        SetWorkItemsArgs,
        set_work_items,
    ),
    DomainTool(
        "update_work_item",
        "Move a work item along: status 'in-progress' when you start it (it becomes the "
        "current work item), 'complete' when its PRs are merged, 'escalated' if it cannot be "
        "done; incrementLoop: true when it goes round a fix loop again.",
        UpdateWorkItemArgs,
        update_work_item,
    ),
    DomainTool(
        "get_work_items",
        "The job's work items with status and loop count, and the current work item.",
        NoArgs,
        get_work_items,
    ),
    DomainTool(
        "request_new_session",
        "Start the next phase with a fresh conversation (e.g. before a new work item), so "
        "old context does not crowd it out. Does not end this phase.",
        RequestNewSessionArgs,
        request_new_session,
    ),
    DomainTool(
        "set_job_params",
        "Record facts on the job for later phases (e.g. {language: 'go'}, {lane: "
        "'standard'}). Shallow merge into job.params.",
        SetJobParamsArgs,
        set_job_params,
    ),
    DomainTool(
        "goto_phase",
        "Choose the next phase instead of the default next one, e.g. goto_phase('coding') "
        "for a fix loop. Only for loops and detours: to advance normally just end your turn. "
        + _ENDS_TURN,
        GotoPhaseArgs,
        goto_phase,
    ),
    DomainTool(
        "await_event",
        "Park the job until an outside event arrives: a PR merge or approval, CI status, or a "
        "developer's answer ('developer-input: <question>'). " + _ENDS_TURN,
        AwaitEventArgs,
        await_event,
    ),
    DomainTool(
        "escalate",
        "Stop the job and hand it to a human, when you cannot go on safely (missing access, "
        "contradictory requirements, too many failed loops). " + _ENDS_TURN,
        EscalateArgs,
        escalate,
    ),
    DomainTool(
        "switch_workflow",
        "Continue the job under another workflow (a lane switch, e.g. to the fast or deep "
        "lane) that exists in an intelligence layer. " + _ENDS_TURN,
        SwitchWorkflowArgs,
        switch_workflow,
    ),
)
