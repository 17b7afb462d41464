"""The built-in tools a model uses in a phase: Read, Write, Edit, Glob, Grep, Bash and Skill.

They carry Claude Code's names and argument names, so agent markdown written for Claude Code
works unchanged. :class:`BuiltinToolBox` serves the ones a phase allows, confined to the job's
working directory; :func:`bash_environment` is the environment its Bash commands run with.
See ``docs/tools.md``.
"""

from __future__ import annotations

from engine.tools.builtin._bash import bash_environment
from engine.tools.builtin._box import (
    BUILTIN_TOOL_SPECS,
    DEFAULT_OUTPUT_CAP,
    BuiltinToolBox,
    builtin_tool_specs,
)

__all__ = [
    "BUILTIN_TOOL_SPECS",
    "DEFAULT_OUTPUT_CAP",
    "BuiltinToolBox",
    "bash_environment",
    "builtin_tool_specs",
]
