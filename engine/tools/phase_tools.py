"""Open every tool of one phase: the built-in tools, coro's domain tools and the external MCP
servers' share, each filtered by the phase's ``tools:`` allow-list, as one tool box."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from engine.config import LocalConfig, iter_secrets
from engine.phase import ToolBox, ToolContext
from engine.tools.builtin import BuiltinToolBox, bash_environment
from engine.tools.composite import CompositeToolBox
from engine.tools.mcp_bridge import open_domain_toolbox

__all__ = ["open_phase_toolbox", "working_directory"]


def working_directory(ctx: ToolContext) -> Path:
    """Where relative paths and ``Bash`` start: the repository checkout when the job has one
    inside its working directory, else the working directory itself."""
    checkout = ctx.job.params.get("repoCheckoutAbsDir")
    if isinstance(checkout, str) and checkout:
        path = Path(checkout)
        if path.is_dir() and path.resolve().is_relative_to(ctx.job_dir.resolve()):
            return path
    return ctx.job_dir


#: The secret values of the config last asked about. A config is replaced, never changed, when
#: the file is edited, so one walk serves every phase until the next edit.
_secrets: tuple[LocalConfig | None, list[str]] = (None, [])


def _secret_values(config: LocalConfig) -> list[str]:
    global _secrets
    if _secrets[0] is not config:
        _secrets = (config, [value for _, value in iter_secrets(config)])
    return _secrets[1]


@asynccontextmanager
async def open_phase_toolbox(
    ctx: ToolContext, allowed: Collection[str] | None = None
) -> AsyncIterator[CompositeToolBox]:
    """The phase's tools. Enter and leave it in the same task (the domain tools' MCP client
    holds a task group); leaving it kills any ``Bash`` process still running."""
    ctx.job_dir.mkdir(parents=True, exist_ok=True)
    secrets = _secret_values(ctx.config)
    builtin = BuiltinToolBox(
        root=ctx.job_dir,
        cwd=working_directory(ctx),
        overlay_dir=ctx.intelligence_dir,
        allowed=set(allowed) if allowed is not None else None,
        env=lambda: bash_environment(secrets=secrets),
    )
    try:
        async with AsyncExitStack() as stack:
            if ctx.domain_session is not None:
                domain = ctx.domain_session.for_phase(ctx, allowed)
            else:
                domain = await stack.enter_async_context(open_domain_toolbox(ctx, allowed))
            boxes: list[ToolBox] = [builtin, domain]
            if ctx.external_tools is not None:
                boxes.append(ctx.external_tools)
            yield CompositeToolBox(boxes, phase=ctx.phase.name)
    finally:
        await builtin.aclose()
