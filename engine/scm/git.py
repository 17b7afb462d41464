"""``git`` itself, run asynchronously: clones, fetches, pushes and the numbers guardrails need.

Every command is the real ``git`` CLI started with :func:`asyncio.create_subprocess_exec`
(never a shell), in its own process group so a timeout or a cancelled task kills it and every
helper it started (``git-remote-https``, ``ssh``). Prompts are off, so a missing credential
fails at once instead of hanging a job.

Credentials arrive as environment entries (:attr:`CloneInfo.env`, see
:mod:`engine.scm._gitauth`) and are passed to the one command that needs them: nothing is
written to ``.git/config`` or put in a remote URL, and a failing command's message has every
secret, every ``user:password@`` in a URL and every ``Authorization:`` value masked.

The system git configuration (``/etc/gitconfig``) is honoured on purpose: that is where
administrators put the proxy, CA bundle and credential settings a user's own git obeys, and
coro's git must reach the same hosts. What would make a command behave differently from
machine to machine (a locale, a ``GIT_DIR`` inherited from a hook) is pinned or removed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import secrets as _secrets
import shutil
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.scm._protocol import CloneInfo, ScmError

__all__ = [
    "GitError",
    "GitResult",
    "clone_or_reuse",
    "current_branch",
    "diff_stats",
    "env_secrets",
    "head_sha",
    "mask_secrets",
    "push_branch",
    "run_git",
    "run_git_result",
]

MASK = "********"

#: Lines of stderr a :class:`GitError` message keeps (the end is where git says what failed).
STDERR_TAIL = 12

# Inherited variables that would point git at another repository than the one asked for
# (they are set while a git hook runs, for instance).
_REPO_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)
# Credential-env entries that say how to authenticate but are not secrets themselves.
_NOT_SECRET = re.compile(r"GIT_CONFIG_COUNT|GIT_CONFIG_KEY_\d+|GIT_TERMINAL_PROMPT|GCM_\w+")
# Values shorter than this are never masked: "0" or "1" are not credentials, and masking them
# would garble every number in a message.
_MIN_SECRET = 4
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
# The header's value: an optional scheme (Basic, Bearer…) and the credential after it.
_AUTH_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization\s*:\s*)(?:[a-z][\w-]*\s+)?[^\s\"']+")
_AUTH_VALUE = re.compile(r"(?i)^\s*(?:authorization\s*:\s*)?(?:basic|bearer|token)\s+(\S+)\s*$")


class GitError(ScmError):
    """A ``git`` command failed, timed out, or git is not installed.

    Attributes:
        command: the command as run (``("git", "clone", ...)``), secrets masked.
        returncode: the exit status; ``None`` if it timed out or never started.
        stderr: the last lines of its standard error, secrets masked.
    """

    title = "git failed"

    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str] = (),
        returncode: int | None = None,
        stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.command = tuple(command)
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True, slots=True)
class GitResult:
    """What a finished ``git`` command said."""

    returncode: int
    stdout: str
    stderr: str


def env_secrets(env: Mapping[str, str]) -> list[str]:
    """The values in a credential environment worth masking, including the token inside an
    ``Authorization`` header value and the password inside a Basic one (so each is masked
    wherever it shows up on its own)."""
    found: list[str] = []
    for key, value in env.items():
        if _NOT_SECRET.fullmatch(key) or len(value) < _MIN_SECRET:
            continue
        found.append(value)
        token = _AUTH_VALUE.match(value.split(":", 1)[1] if ":" in value else value)
        if token:
            found.append(token.group(1))
            found += _basic_password(token.group(1))
    return found


def _basic_password(token: str) -> list[str]:
    """The password inside an HTTP Basic token, if it is one."""
    try:
        pair = base64.b64decode(token, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return []
    return [pair.partition(":")[2]] if ":" in pair else []


def mask_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each secret, each URL ``user:password@`` and each ``Authorization:``
    header value replaced by ``********``."""
    for secret in sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(rf"\1{MASK}@", text)
    return _AUTH_HEADER.sub(rf"\1{MASK}", text)


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPO_VARIABLES}
    env.update(GIT_TERMINAL_PROMPT="0", GCM_INTERACTIVE="never", LC_ALL="C", LANGUAGE="C")
    if "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    if extra:
        env.update(extra)
    return env


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _masked(args: Sequence[str], secrets: Sequence[str]) -> tuple[str, ...]:
    return tuple(mask_secrets(a, secrets) for a in ("git", *args))


async def run_git_result(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,  # noqa: ASYNC109 - a per-command limit that ends in a GitError
    secrets: Iterable[str] = (),
) -> GitResult:
    """Run ``git *args`` and return its exit status and output, whatever the status.

    Raises:
        GitError: git is not installed, or the command ran longer than ``timeout`` seconds
            (it is killed, with everything it started, before this returns).
    """
    hidden = [*secrets, *env_secrets(env or {})]
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=cwd,
            env=_environment(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        missing = cwd is not None and not cwd.is_dir()
        raise GitError(
            f"{cwd} does not exist" if missing else "git is not installed or not on PATH",
            command=_masked(args, hidden),
        ) from exc
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await proc.communicate()
    except TimeoutError as exc:
        command = _masked(args, hidden)
        raise GitError(
            f"`{' '.join(command)}` did not finish within {timeout:g} s and was killed",
            command=command,
        ) from exc
    finally:
        if proc.returncode is None:  # timed out or cancelled: leave nothing running
            _kill_group(proc)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(proc.wait())
    assert proc.returncode is not None
    return GitResult(
        proc.returncode,
        stdout.decode(errors="replace"),
        mask_secrets(stderr.decode(errors="replace"), hidden),
    )


async def run_git(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,  # noqa: ASYNC109 - a per-command limit that ends in a GitError
    secrets: Iterable[str] = (),
) -> str:
    """Run ``git *args`` and return its standard output.

    Args:
        args: the arguments after ``git``.
        cwd: the directory to run in.
        env: entries added to the inherited environment (credentials from
            :attr:`CloneInfo.env`); their values are masked in errors.
        timeout: seconds before the command and its helpers are killed.
        secrets: more values to mask in errors.

    Raises:
        GitError: the command failed (the message names the command, the exit status and the
            end of stderr, secrets masked), timed out, or git is missing.
    """
    hidden = [*secrets, *env_secrets(env or {})]
    result = await run_git_result(*args, cwd=cwd, env=env, timeout=timeout, secrets=hidden)
    if result.returncode != 0:
        raise _failure(args, result, hidden)
    return result.stdout


def _failure(args: Sequence[str], result: GitResult, secrets: Sequence[str]) -> GitError:
    command = _masked(args, secrets)
    tail = "\n".join(result.stderr.strip().splitlines()[-STDERR_TAIL:]) or "(no output)"
    return GitError(
        f"`{' '.join(command)}` exited with status {result.returncode}:\n{tail}",
        command=command,
        returncode=result.returncode,
        stderr=tail,
    )


# -- checkouts ------------------------------------------------------------------------------------
async def _origin_url(repo_dir: Path) -> str | None:
    result = await run_git_result("config", "--get", "remote.origin.url", cwd=repo_dir)
    return result.stdout.strip() if result.returncode == 0 else None


def _same_remote(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


async def clone_or_reuse(info: CloneInfo, dest: Path, *, secrets: Iterable[str] = ()) -> Path:
    """A checkout of ``info.url`` at ``dest``: fetched if it is already there, else cloned.

    The clone goes to a hidden sibling directory and is renamed into place when complete, so
    a crash never leaves half a clone at ``dest``. Credentials travel in ``info.env`` only.

    Raises:
        GitError: the clone or fetch failed, or ``dest`` holds something else (a checkout of
            another remote, or files).
    """
    hidden = [*secrets, *env_secrets(info.env)]
    url = mask_secrets(info.url, hidden)
    if dest.exists():
        if (dest / ".git").exists():
            origin = await _origin_url(dest)
            if origin is not None and _same_remote(origin, info.url):
                await run_git(
                    "fetch", "--quiet", "--prune", "origin", cwd=dest, env=info.env, secrets=hidden
                )
                return dest
            found = f"a checkout of {mask_secrets(origin, hidden)}" if origin else "a checkout"
            raise GitError(f"{dest} is {found}, not of {url}; move it aside or pick another place")
        if not dest.is_dir() or any(dest.iterdir()):
            raise GitError(
                f"{dest} exists and is not a checkout of {url}; move it aside or pick another place"
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.clone-{_secrets.token_hex(4)}")
    try:
        await run_git(
            "clone", "--quiet", "--", info.url, str(staging), env=info.env, secrets=hidden
        )
        with contextlib.suppress(FileNotFoundError, OSError):
            dest.rmdir()  # an empty directory left for us
        os.rename(staging, dest)
    finally:
        if staging.exists():
            await asyncio.to_thread(shutil.rmtree, staging, True)
    return dest


async def current_branch(repo_dir: Path) -> str | None:
    """The branch checked out in ``repo_dir``; ``None`` when HEAD is detached."""
    result = await run_git_result("symbolic-ref", "--quiet", "--short", "HEAD", cwd=repo_dir)
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


async def head_sha(repo_dir: Path, ref: str = "HEAD") -> str:
    """The commit ``ref`` points at in ``repo_dir``."""
    out = await run_git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo_dir)
    return out.strip()


async def push_branch(repo_dir: Path, branch: str, info: CloneInfo, *, force: bool = False) -> None:
    """Push ``branch`` to ``origin`` under the same name, authenticating with ``info.env``.

    Args:
        force: overwrite the remote branch, but only if it is still where this checkout last
            saw it (``--force-with-lease``), so another person's push is never lost.
    """
    ref = f"refs/heads/{branch}"
    lease = ["--force-with-lease"] if force else []
    await run_git("push", "--quiet", *lease, "origin", f"{ref}:{ref}", cwd=repo_dir, env=info.env)


async def diff_stats(repo_dir: Path, base: str, head: str) -> tuple[int, int, int]:
    """``(files, lines added, lines removed)`` on ``head`` since it left ``base``
    (``git diff --numstat base...head``); a binary file counts as a file with no lines."""
    out = await run_git("diff", "--numstat", f"{base}...{head}", "--", cwd=repo_dir)
    files = added = removed = 0
    for line in out.splitlines():
        plus, minus, _ = line.split("\t", 2)
        files += 1
        added += int(plus) if plus.isdigit() else 0
        removed += int(minus) if minus.isdigit() else 0
    return files, added, removed
