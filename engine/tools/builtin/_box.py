"""The built-in tool box: Read, Write, Edit, Glob, Grep, Bash and Skill for one phase.

:class:`BuiltinToolBox` is a :class:`~engine.phase.ToolBox`: it offers the built-ins on the
phase's allow-list and answers every call with a :class:`~engine.phase.ToolOutcome` — wrong
arguments, refusals and failures come back as error results that name the argument at fault.
Only the cancellation of the calling task propagates (after Bash has killed its process group).
File work runs in worker threads, so a large Grep never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.phase import ToolOutcome, ToolSpec
from engine.tools._base import ToolError, tool_schema
from engine.tools.builtin._args import BuiltinArgs, parse_args
from engine.tools.builtin._bash import BashArgs, BashRunner, bash_environment
from engine.tools.builtin._files import (
    READ_LINE_LIMIT,
    READ_MAX_LINE_CHARS,
    EditArgs,
    ReadArgs,
    WriteArgs,
    edit_file,
    read_file,
    write_file,
)
from engine.tools.builtin._search import GLOB_LIMIT, GlobArgs, GrepArgs, glob_files, grep_files
from engine.tools.builtin._skill import SkillArgs, run_skill
from engine.tools.builtin._workspace import Workspace

__all__ = ["BUILTIN_TOOL_SPECS", "DEFAULT_OUTPUT_CAP", "BuiltinToolBox", "builtin_tool_specs"]

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT_CAP = 64 * 1024
DEFAULT_BASH_TIMEOUT = 120.0
MAX_BASH_TIMEOUT = 600.0

ORDER = ("Read", "Write", "Edit", "Glob", "Grep", "Bash", "Skill")
_ARGS: dict[str, type[BuiltinArgs]] = {
    "Read": ReadArgs,
    "Write": WriteArgs,
    "Edit": EditArgs,
    "Glob": GlobArgs,
    "Grep": GrepArgs,
    "Bash": BashArgs,
    "Skill": SkillArgs,
}


@dataclass(frozen=True, slots=True)
class _Limits:
    output_cap: int
    bash_default_timeout: float
    bash_max_timeout: float


def _size(n: int) -> str:
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"


def _descriptions(limits: _Limits) -> dict[str, str]:
    cap = _size(limits.output_cap)
    return {
        "Read": (
            "Read a text file in the job's working directory. Lines come numbered like `cat -n` "
            f"(number, tab, text): up to {READ_LINE_LIMIT} lines from `offset` (default: the "
            f"first line); lines over {READ_MAX_LINE_CHARS} characters are cut and the result "
            f"is capped at {cap} — a note at the end says which offset to read on from. Binary "
            "files and directories are refused (list a directory with Glob)."
        ),
        "Write": (
            "Create a file, or replace a file's whole content. Missing parent directories are "
            "created. The path must stay inside the job's working directory, and the "
            "intelligence overlay (_intelligence/) is read-only. To change part of a file, "
            "use Edit."
        ),
        "Edit": (
            "Replace exact text in a file. `old_string` must occur exactly once (include "
            "surrounding lines to make it unique) unless `replace_all` is true; copy it from "
            "Read's output without the line-number prefix, keeping indentation. Returns the "
            "changed lines."
        ),
        "Glob": (
            "Find files by name pattern ('**/*.py', 'src/**/*.{ts,tsx}'), below the working "
            f"directory or `path`. Returns paths newest first, at most {GLOB_LIMIT}; .git is "
            "skipped."
        ),
        "Grep": (
            "Search file contents with a Python regular expression, below the working "
            "directory or in `path`. Filter files with `glob` or `type`; `output_mode` "
            "'files_with_matches' (default) lists files, 'content' shows matching lines "
            "('-n' line numbers, '-A'/'-B'/'-C' context), 'count' counts them per file. "
            f".git and binary files are skipped; output is capped at {cap}."
        ),
        "Bash": (
            "Run a command with /bin/bash in the job's working directory, in its own process "
            "group, with no stdin. `timeout` is in milliseconds (default "
            f"{limits.bash_default_timeout * 1000:g}, at most {limits.bash_max_timeout * 1000:g});"
            " on timeout the command and everything it started are stopped. stdout and stderr "
            f"are each capped at {cap}; a non-zero exit shows as [exit code N]. Prefer Read, "
            "Edit, Glob and Grep over cat, sed, find and grep. The environment holds none of "
            "coro's credentials, and git never prompts."
        ),
        "Skill": (
            "List this job's skills (call it without arguments), or load one by name: returns "
            "its SKILL.md instructions and the other files of the skill, to follow them."
        ),
    }


@functools.cache
def builtin_tool_specs(
    *,
    output_cap: int = DEFAULT_OUTPUT_CAP,
    bash_default_timeout: float = DEFAULT_BASH_TIMEOUT,
    bash_max_timeout: float = MAX_BASH_TIMEOUT,
) -> dict[str, ToolSpec]:
    """The seven built-ins' specs by name, their descriptions quoting these limits.

    Cached per set of limits: building the JSON schemas costs ~2 ms, and every phase asks.
    Treat the result as read-only.
    """
    descriptions = _descriptions(_Limits(output_cap, bash_default_timeout, bash_max_timeout))
    return {name: ToolSpec(name, descriptions[name], tool_schema(_ARGS[name])) for name in ORDER}


BUILTIN_TOOL_SPECS: Mapping[str, ToolSpec] = MappingProxyType(builtin_tool_specs())
"""The built-in tools' specs by name (Read, Write, Edit, Glob, Grep, Bash, Skill), as offered
with the default limits."""


class BuiltinToolBox:
    """The built-in tools of one phase, confined to the job's working directory.

    Args:
        root: the confinement root (the job's working directory); it must exist.
        cwd: a directory inside ``root`` where relative paths and Bash commands start.
        overlay_dir: the job's intelligence overlay: Skill reads its ``.claude/skills``, and no
            tool may write inside it.
        allowed: the phase's allow-list; names that are not built-ins are ignored. ``None``
            offers all seven.
        env: the environment of Bash commands, or a function that makes it when the first
            command runs (default: :func:`bash_environment`).
        bash_default_timeout: seconds a command may run when the call names no timeout.
        bash_max_timeout: the most a call may ask for; longer requests are clamped.
        output_cap: bytes a result keeps (for Bash: of stdout, and of stderr).

    Raises:
        ValueError: ``root`` is not a directory, or ``cwd`` is not a directory inside it.
    """

    def __init__(
        self,
        *,
        root: Path,
        cwd: Path,
        overlay_dir: Path,
        allowed: Collection[str] | None = None,
        env: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        bash_default_timeout: float = DEFAULT_BASH_TIMEOUT,
        bash_max_timeout: float = MAX_BASH_TIMEOUT,
        output_cap: int = DEFAULT_OUTPUT_CAP,
    ) -> None:
        self._workspace = Workspace(root, cwd, overlay_dir)
        self._output_cap = output_cap
        self._names = tuple(name for name in ORDER if allowed is None or name in allowed)
        all_specs = builtin_tool_specs(
            output_cap=output_cap,
            bash_default_timeout=bash_default_timeout,
            bash_max_timeout=bash_max_timeout,
        )
        self._specs = [all_specs[name] for name in self._names]
        self._bash = BashRunner(
            self._workspace.cwd,
            bash_environment if env is None else env,
            default_timeout=bash_default_timeout,
            max_timeout=bash_max_timeout,
            output_cap=output_cap,
        )
        self._closed = False
        self._handlers: dict[str, Callable[[Any], Awaitable[str | ToolOutcome]]] = {
            "Read": self._read,
            "Write": self._write,
            "Edit": self._edit,
            "Glob": self._glob,
            "Grep": self._grep,
            "Bash": self._bash.run,
            "Skill": self._skill,
        }

    @property
    def running_processes(self) -> int:
        """Bash commands in flight."""
        return self._bash.running

    def specs(self) -> list[ToolSpec]:
        return list(self._specs)

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        """Run a built-in; every failure is an error outcome, never an exception.

        Cancelling the calling task interrupts the call (a Bash command's process group is
        killed first) and propagates.
        """
        if self._closed:
            return ToolOutcome(f"{name}: the tool box of this phase is closed", is_error=True)
        if name not in self._names:
            return ToolOutcome(self._unavailable(name), is_error=True)
        try:
            args = parse_args(name, _ARGS[name], arguments)
            result = await self._handlers[name](args)
        except ToolError as exc:
            return ToolOutcome(f"{name}: {exc.message}", is_error=True)
        except Exception as exc:
            logger.exception("built-in tool %s failed", name)
            return ToolOutcome(
                f"{name}: internal error in coro ({type(exc).__name__}: {exc}). This is not a "
                "problem with your arguments; do not repeat the call more than once.",
                is_error=True,
            )
        return result if isinstance(result, ToolOutcome) else ToolOutcome(result)

    async def aclose(self) -> None:
        """Kill every Bash process group still running; later calls are refused. Idempotent."""
        self._closed = True
        await self._bash.aclose()

    def _unavailable(self, name: str) -> str:
        available = ", ".join(self._names) or "none"
        if name in _ARGS:
            return (
                f"tool {name!r} is not allowed in this phase; the built-in tools of this phase "
                f"are: {available}"
            )
        return f"unknown tool {name!r}; the built-in tools of this phase are: {available}"

    async def _read(self, args: ReadArgs) -> str:
        return await asyncio.to_thread(read_file, self._workspace, args, self._output_cap)

    async def _write(self, args: WriteArgs) -> str:
        return await asyncio.to_thread(write_file, self._workspace, args)

    async def _edit(self, args: EditArgs) -> str:
        return await asyncio.to_thread(edit_file, self._workspace, args)

    async def _glob(self, args: GlobArgs) -> str:
        return await asyncio.to_thread(glob_files, self._workspace, args)

    async def _grep(self, args: GrepArgs) -> str:
        return await asyncio.to_thread(grep_files, self._workspace, args, self._output_cap)

    async def _skill(self, args: SkillArgs) -> str:
        return await asyncio.to_thread(run_skill, self._workspace, args, self._output_cap)
