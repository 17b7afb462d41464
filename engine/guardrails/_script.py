"""Script rules: an executable in ``$CORO_HOME/guardrails/`` decides, and fails closed.

The script gets the :meth:`~engine.guardrails.GuardrailContext.to_json` of the call on stdin
and prints ``{"allow": true|false, "reason"?: "..."}``. It runs without a shell, in the job's
directory, in its own process group, which is killed when it overruns its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.guardrails._context import GuardrailContext

__all__ = ["SCRIPT_TIMEOUT", "run_script"]

SCRIPT_TIMEOUT = 30.0
"""Seconds a script rule may take before it is killed (and the call denied)."""

_MAX_SHOWN = 300


async def run_script(
    path: Path, ctx: GuardrailContext, *, time_limit: float = SCRIPT_TIMEOUT
) -> tuple[bool, str | None]:
    """Run one script rule.

    Returns:
        ``(allow, reason)``. Every failure (missing or not executable file, failure to start,
        timeout, non-zero exit, output that is not the expected JSON) is a denial whose reason
        names the script and what went wrong.
    """
    name = path.name
    if not path.is_file():
        return False, f"guardrail script {name!r} was not found in {path.parent}"
    if not os.access(path, os.X_OK):
        return False, f"guardrail script {name!r} is not executable (chmod +x {path})"
    payload = json.dumps(ctx.to_json(), ensure_ascii=False, default=str).encode()
    try:
        process = await asyncio.create_subprocess_exec(
            str(path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ctx.working_dir,
            start_new_session=True,
        )
    except OSError as exc:
        return False, f"guardrail script {name!r} could not be started: {exc}"
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(payload), time_limit)
    except TimeoutError:
        _kill(process)
        await process.wait()
        return False, f"guardrail script {name!r} did not answer within {time_limit:g} s"
    except BaseException:
        _kill(process)
        await process.wait()
        raise
    if process.returncode != 0:
        detail = _shown(stderr.decode(errors="replace").strip())
        return False, (
            f"guardrail script {name!r} exited with status {process.returncode}"
            + (f": {detail}" if detail else "")
        )
    return _verdict(name, stdout.decode(errors="replace"))


def _verdict(name: str, output: str) -> tuple[bool, str | None]:
    try:
        answer = json.loads(output)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("allow"), bool):
        return False, (
            f"guardrail script {name!r} printed {_shown(output.strip())!r} instead of a JSON "
            'object like {"allow": false, "reason": "..."}'
        )
    reason = answer.get("reason")
    reason = reason.strip() if isinstance(reason, str) and reason.strip() else None
    if answer["allow"]:
        return True, None
    return False, reason or f"guardrail script {name!r} denied the call without a reason"


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _shown(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"
