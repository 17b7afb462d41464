"""Git on the local SCM's bare repositories: branch tips, merges in memory, and moving a
branch only if it is still where it was.

Every command names the repository outright (``--git-dir``), so git never wanders up to a
checkout that happens to contain the root. Merges and squashes are made with plumbing
(``merge-tree``, ``commit-tree``, ``update-ref``): no worktree, no index, no hooks. A rebase
needs a worktree, so it runs in a throwaway clone and is pushed back as a fast-forward.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from engine._fs import ensure_private_dir
from engine.scm._protocol import ScmConflict
from engine.scm.git import GitError, run_git, run_git_result

__all__ = [
    "MergeConflict",
    "TargetMoved",
    "branch_sha",
    "commit_onto",
    "file_path",
    "git_in",
    "git_status",
    "identity",
    "init_bare",
    "is_ancestor",
    "merge_tree",
    "rebase_onto",
    "scan",
    "valid_branch",
    "valid_slug",
]

_SLUG_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class MergeConflict(ScmConflict):
    """The two branches change the same lines; ``files`` names where."""

    def __init__(self, files: Sequence[str]) -> None:
        super().__init__(f"conflicts in {', '.join(files)}", status=409)
        self.files = list(files)


class TargetMoved(ScmConflict):
    """The target branch moved while a merge was being made; it was left alone."""

    def __init__(self) -> None:
        super().__init__("the target branch moved during the merge", status=409)


def valid_slug(slug: str) -> bool:
    parts = slug.split("/")
    return (
        0 < len(parts) <= 2
        and ".." not in slug
        and all(_SLUG_PART.fullmatch(p) and not p.endswith((".git", ".")) for p in parts)
    )


def file_path(url: str) -> Path | None:
    """The path a ``file://`` URL or a plain absolute path names; ``None`` for other URLs."""
    if url.startswith("file://"):
        parts = urlsplit(url)
        return Path(unquote(parts.path)) if parts.netloc in ("", "localhost") else None
    return Path(url) if os.path.isabs(url) else None


def scan(root: Path) -> list[str]:
    """The slugs of the bare repositories under ``root`` (``name.git``, ``group/name.git``)."""
    found: list[str] = []
    if not root.is_dir():
        return found
    for entry in root.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.name.endswith(".git"):
            if (entry / "HEAD").is_file():
                found.append(entry.name[:-4])
        elif entry.is_dir():
            found += [
                f"{entry.name}/{sub.name[:-4]}"
                for sub in entry.iterdir()
                if sub.name.endswith(".git") and (sub / "HEAD").is_file()
            ]
    return sorted(slug for slug in found if valid_slug(slug))


async def init_bare(path: Path, default_branch: str) -> None:
    """Create a bare repository at ``path`` (built aside and renamed into place, so a crash
    never leaves half of one). It keeps a reflog of every branch, so a merge done by mistake
    can be undone with ``git update-ref``."""
    parent = await asyncio.to_thread(ensure_private_dir, path.parent)
    staging = parent / f".{path.name}.init-{secrets.token_hex(4)}"
    try:
        await run_git(
            "init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(staging)
        )
        await run_git("--git-dir", str(staging), "config", "core.logAllRefUpdates", "true")
        try:
            os.rename(staging, path)
        except OSError:
            if not (path / "HEAD").is_file():  # not just another creator winning the race
                raise
    finally:
        if staging.exists():
            await asyncio.to_thread(shutil.rmtree, staging, True)


def identity(name: str, *, author: str | None = None) -> dict[str, str]:
    """The committer (and author) git records for a commit coro makes on someone's behalf."""
    env = {"GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": f"{name}@localhost"}
    if author is not None:
        env |= {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author}@localhost"}
    return env


async def git_in(repo: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """``git`` on the bare repository ``repo``; its standard output."""
    return await run_git("--git-dir", str(repo), *args, env=env)


async def git_status(repo: Path | None, *args: str) -> int:
    """The exit status of ``git`` on ``repo`` (or outside any repository when ``None``)."""
    where = ["--git-dir", str(repo)] if repo is not None else []
    return (await run_git_result(*where, *args)).returncode


async def valid_branch(name: str) -> bool:
    return bool(name) and await git_status(None, "check-ref-format", f"refs/heads/{name}") == 0


async def branch_sha(repo: Path, branch: str) -> str | None:
    """The commit ``branch`` points at, or ``None`` if there is no such branch."""
    ref = f"refs/heads/{branch}^{{commit}}"
    result = await run_git_result("--git-dir", str(repo), "rev-parse", "--verify", "--quiet", ref)
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


async def is_ancestor(repo: Path, commit: str, of: str) -> bool:
    return await git_status(repo, "merge-base", "--is-ancestor", commit, of) == 0


async def merge_tree(repo: Path, ours: str, theirs: str) -> tuple[str, list[str]]:
    """The tree merging ``theirs`` into ``ours`` gives, and the files that conflict (none when
    it merges cleanly). Nothing but unreferenced objects is written."""
    args = ("merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs)
    result = await run_git_result("--git-dir", str(repo), "-c", "core.quotePath=false", *args)
    if result.returncode not in (0, 1):
        raise GitError(
            f"`git {' '.join(args)}` exited with status {result.returncode}:\n"
            f"{result.stderr.strip()[-2000:]}",
            command=("git", *args),
            returncode=result.returncode,
            stderr=result.stderr,
        )
    tree, *conflicts = result.stdout.splitlines()
    return tree.strip(), sorted({c for c in conflicts if c}) if result.returncode else []


async def commit_onto(
    repo: Path,
    branch: str,
    *,
    old: str,
    tree: str,
    parents: Sequence[str],
    message: str,
    env: Mapping[str, str],
    reflog: str,
) -> str:
    """Commit ``tree`` with ``parents`` and move ``branch`` to it if it still points at
    ``old``; returns the new commit.

    Raises:
        TargetMoved: ``branch`` no longer points at ``old`` (nothing was changed).
    """
    parent_args = [arg for parent in parents for arg in ("-p", parent)]
    commit = await git_in(
        repo, "commit-tree", "--no-gpg-sign", *parent_args, "-m", message, tree, env=env
    )
    new = commit.strip()
    if await git_status(repo, "update-ref", "-m", reflog, f"refs/heads/{branch}", new, old):
        raise TargetMoved()
    return new


async def rebase_onto(
    repo: Path, branch: str, *, target: str, source: str, env: Mapping[str, str], scratch: Path
) -> str:
    """Replay ``source``'s commits on ``target`` (authors kept) in a throwaway clone under
    ``scratch``, then fast-forward ``branch`` to the result; returns its new tip.

    Raises:
        MergeConflict: a commit does not apply.
        TargetMoved: ``branch`` no longer points at ``target`` (nothing was changed).
        ScmConflict: every change is already on ``branch``.
    """
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".rebase-", dir=scratch))
    try:
        hooks = work / "no-hooks"
        hooks.mkdir()
        clone = work / "checkout"
        await run_git("clone", "--quiet", "--shared", "--no-checkout", str(repo), str(clone))
        settings = ["-C", str(clone), "-c", f"core.hooksPath={hooks}"]
        for setting in ("commit.gpgSign", "rebase.autoSquash", "rebase.autoStash"):
            settings += ["-c", f"{setting}=false"]
        env = {**env, "GIT_EDITOR": "true"}
        await run_git(*settings, "checkout", "--quiet", "--detach", source, env=env)
        replay = await run_git_result(*settings, "rebase", "--quiet", target, env=env)
        if replay.returncode != 0:
            unmerged = await run_git_result(*settings, "diff", "--name-only", "--diff-filter=U")
            files = [f for f in unmerged.stdout.splitlines() if f]
            if not files:
                raise GitError(f"git rebase failed:\n{replay.stderr.strip()[-2000:]}")
            raise MergeConflict(files)
        new = (await run_git(*settings, "rev-parse", "HEAD")).strip()
        if new == target:
            raise ScmConflict("nothing to merge: every change is already there", status=409)
        ref = f"refs/heads/{branch}"
        lease = f"--force-with-lease={ref}:{target}"
        pushed = await run_git_result(
            *settings, "push", "--quiet", lease, "origin", f"{new}:{ref}", env=env
        )
        if pushed.returncode != 0:
            raise TargetMoved()
        return new
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
