"""engine.scm.git: real git commands, masked errors, killed timeouts, credential-free clones."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from engine._serving import InLoopServer, bind_tcp
from engine.scm import CloneInfo
from engine.scm._gitauth import basic_auth_env
from engine.scm.git import (
    GitError,
    clone_or_reuse,
    current_branch,
    diff_stats,
    head_sha,
    mask_secrets,
    push_branch,
    run_git,
)
from tests.support.git_http import GitHttpBackend

SECRET = "fake-token-0f3c9a"


@pytest.fixture(autouse=True)
def _plain_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No user or system git configuration: every machine runs these tests the same way."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "dev")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "dev@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "dev")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "dev@example.com")
    yield


async def commit(checkout: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (checkout / name).write_text(text)
    await run_git("add", "--", *files, cwd=checkout)
    await run_git("commit", "--quiet", "-m", message, cwd=checkout)
    return await head_sha(checkout)


@pytest.fixture
async def origin(tmp_path: Path) -> Path:
    """A bare repository with one commit on ``main``."""
    bare = tmp_path / "origin.git"
    await run_git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed = tmp_path / "seed"
    await run_git("clone", "--quiet", str(bare), str(seed))
    await run_git("checkout", "--quiet", "-b", "main", cwd=seed)
    await commit(seed, {"README.md": "hello\n"}, "first")
    await run_git("push", "--quiet", "origin", "main", cwd=seed)
    return bare


def _info(origin: Path) -> CloneInfo:
    return CloneInfo(repo="svc", url=str(origin), env=basic_auth_env("x-access-token", SECRET))


# -- run_git --------------------------------------------------------------------------------------
async def test_a_failure_names_the_command_and_status_with_secrets_masked(tmp_path: Path) -> None:
    await run_git("init", "--quiet", str(tmp_path / "repo"))
    env = basic_auth_env("x-access-token", SECRET)
    with pytest.raises(GitError) as caught:
        await run_git(
            "-c",
            f"http.extraHeader=Authorization: Bearer {SECRET}",
            "-c",
            f"remote.up.url=https://bot:{SECRET}@example.com/x.git",
            "show",
            SECRET,
            cwd=tmp_path / "repo",
            env=env,
        )
    error = caught.value
    assert error.returncode == 128
    assert "exited with status 128" in error.message
    assert "git -c http.extraHeader=Authorization: ********" in error.message
    assert "remote.up.url=https://********@example.com/x.git show ********`" in error.message
    assert "unknown revision" in error.message  # git's own words, from stderr
    assert SECRET not in error.message and SECRET not in str(error.command)
    assert SECRET not in error.stderr and "********" in error.stderr


def test_masking_leaves_ordinary_text_alone() -> None:
    text = "Authorization: Basic Ym90OnMzY3JldA== 0 1 https://host/x https://u:p@host/y"
    masked = mask_secrets(text, ["0", "1", "Ym90OnMz"])
    assert masked == "Authorization: ******** 0 1 https://host/x https://********@host/y"


async def _pid_from(path: Path) -> int:
    with anyio.fail_after(10):
        while not path.exists() or not path.read_text().strip():
            await asyncio.sleep(0.02)
    return int(path.read_text())


async def _gone(pid: int) -> None:
    """Wait (at most 5 s) until ``pid`` has exited: no process, or only a zombie."""
    with anyio.fail_after(5):
        while True:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                return
            if state in ("Z", "X"):
                return
            await asyncio.sleep(0.02)


def _hang(pidfile: Path) -> list[str]:
    """A git command that starts a child which sleeps, writing the child's pid first."""
    return ["-c", f"alias.hang=!sh -c 'echo $$ > {pidfile}; exec sleep 60'", "hang"]


async def test_a_timeout_kills_git_and_what_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(GitError, match=r"did not finish within 0\.5 s and was killed"):
        await run_git(*_hang(pidfile), cwd=tmp_path, timeout=0.5)
    await _gone(await _pid_from(pidfile))


async def test_cancelling_kills_git_and_what_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    task = asyncio.create_task(run_git(*_hang(pidfile), cwd=tmp_path))
    pid = await _pid_from(pidfile)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _gone(pid)


# -- clone_or_reuse -------------------------------------------------------------------------------
async def test_a_clone_keeps_credentials_out_of_the_checkout(origin: Path, tmp_path: Path) -> None:
    dest = tmp_path / "work" / "svc"
    assert await clone_or_reuse(_info(origin), dest) == dest
    assert (dest / "README.md").read_text() == "hello\n"
    config = (dest / ".git" / "config").read_text()
    assert SECRET not in config and "extraHeader" not in config
    assert (await run_git("remote", "get-url", "origin", cwd=dest)).strip() == str(origin)
    assert await current_branch(dest) == "main"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["svc"]  # no staging left behind


async def test_a_second_call_fetches_into_the_same_checkout(origin: Path, tmp_path: Path) -> None:
    dest = tmp_path / "svc"
    await clone_or_reuse(_info(origin), dest)
    other = await clone_or_reuse(_info(origin), tmp_path / "other")
    await run_git("checkout", "--quiet", "-b", "feat/x", cwd=other)
    pushed = await commit(other, {"app.py": "x = 1\n"}, "add app")
    await push_branch(other, "feat/x", _info(origin))
    (dest / "scratch.txt").write_text("mine")
    assert await clone_or_reuse(_info(origin), dest) == dest
    assert await head_sha(dest, "origin/feat/x") == pushed
    assert (dest / "scratch.txt").read_text() == "mine"  # a fetch, not a fresh clone


async def test_a_foreign_checkout_or_directory_is_refused(origin: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    await run_git("init", "--quiet", str(elsewhere))
    await run_git("remote", "add", "origin", "https://example.com/other.git", cwd=elsewhere)
    with pytest.raises(GitError, match=re.escape("checkout of https://example.com/other.git")):
        await clone_or_reuse(_info(origin), elsewhere)
    files = tmp_path / "files"
    files.mkdir()
    (files / "notes.txt").write_text("keep me")
    with pytest.raises(GitError, match="exists and is not a checkout"):
        await clone_or_reuse(_info(origin), files)
    assert (files / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (await clone_or_reuse(_info(origin), empty) / "README.md").exists()


async def test_over_http_the_token_is_sent_but_never_stored(origin: Path, tmp_path: Path) -> None:
    backend = GitHttpBackend(root=origin.parent, token=SECRET)
    sock = bind_tcp("127.0.0.1", 0)
    server = InLoopServer(backend, sock, name="git-http")
    await server.start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/{origin.name}"
        with pytest.raises(GitError) as refused:
            await clone_or_reuse(CloneInfo(repo="svc", url=url), tmp_path / "anonymous")
        assert not (tmp_path / "anonymous").exists()
        info = CloneInfo(repo="svc", url=url, env=basic_auth_env("x-access-token", SECRET))
        dest = await clone_or_reuse(info, tmp_path / "svc")
        await run_git("checkout", "--quiet", "-b", "feat/http", cwd=dest)
        await commit(dest, {"b.txt": "b\n"}, "over http")
        await push_branch(dest, "feat/http", info)
        assert await clone_or_reuse(info, dest) == dest
    finally:
        await server.stop()
    assert "terminal prompts disabled" in refused.value.message  # it fails, never hangs
    assert await head_sha(origin, "refs/heads/feat/http") == await head_sha(dest)
    stored = "".join(
        p.read_text(errors="replace") for p in (dest / ".git").glob("*") if p.is_file()
    )
    assert SECRET not in stored and "Authorization" not in stored
    assert (await run_git("remote", "get-url", "origin", cwd=dest)).strip() == url


async def test_a_failed_clone_leaves_nothing_behind(tmp_path: Path) -> None:
    info = CloneInfo(repo="x", url=str(tmp_path / "missing.git"), env={"TOKEN": SECRET})
    with pytest.raises(GitError, match="git clone"):
        await clone_or_reuse(info, tmp_path / "work" / "x")
    assert list((tmp_path / "work").iterdir()) == []


# -- helpers for guardrails -----------------------------------------------------------------------
async def test_diff_stats_counts_files_and_lines_since_the_branch_left(
    origin: Path, tmp_path: Path
) -> None:
    dest = await clone_or_reuse(_info(origin), tmp_path / "svc")
    await run_git("checkout", "--quiet", "-b", "feat", cwd=dest)
    await commit(dest, {"README.md": "hello\nworld\n", "a.py": "1\n2\n3\n"}, "work")
    (dest / "blob.bin").write_bytes(b"\x00\x01")
    await run_git("add", "blob.bin", cwd=dest)
    await run_git("commit", "--quiet", "-m", "binary", cwd=dest)
    await run_git("checkout", "--quiet", "main", cwd=dest)
    await commit(dest, {"late.txt": "on main after\n"}, "main moves on")
    assert await diff_stats(dest, "main", "feat") == (3, 4, 0)
    assert await current_branch(dest) == "main"
    await run_git("checkout", "--quiet", "--detach", "feat", cwd=dest)
    assert await current_branch(dest) is None


def test_git_runs_with_prompts_off_and_no_inherited_repository(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from engine.scm.git import _environment

    monkeypatch.setenv("GIT_DIR", "/somewhere/else/.git")
    env = _environment({"GIT_CONFIG_COUNT": "1"})
    assert "GIT_DIR" not in env and env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["LC_ALL"] == "C" and env["GIT_CONFIG_COUNT"] == "1"
    assert env["PATH"] == os.environ["PATH"]
