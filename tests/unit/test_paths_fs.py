"""Tests for atomic writes (engine._fs) and coro's paths (engine.paths)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine import paths as coro_paths
from engine._fs import atomic_write_bytes, atomic_write_text, ensure_private_dir, realpath
from engine.config import LocalConfig
from engine.paths import CoroPaths


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ── atomic writes ───────────────────────────────────────────────────────────────────────────


def test_atomic_write_creates_file_with_mode_0600_and_parents_0700(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "secret.json"

    atomic_write_text(target, "{}\n")

    assert target.read_text() == "{}\n"
    assert _mode(target) == 0o600
    assert _mode(tmp_path / "a") == 0o700
    assert _mode(tmp_path / "a" / "b") == 0o700


def test_atomic_write_replaces_content_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("old")

    atomic_write_bytes(target, b"new \x00 bytes")

    assert target.read_bytes() == b"new \x00 bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_atomic_write_honours_an_explicit_mode_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "public.txt"
    old_umask = os.umask(0o077)
    try:
        atomic_write_text(target, "hello", mode=0o644)
    finally:
        os.umask(old_umask)
    assert _mode(target) == 0o644


def test_atomic_write_keeps_text_exactly(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    atomic_write_text(target, "line\r\nünïcode\n")
    assert target.read_bytes() == "line\r\nünïcode\n".encode()


def test_temp_file_is_never_readable_by_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with a permissive umask, the temp file has its final mode before data lands."""
    seen: list[int] = []
    real_write = os.write

    def spying_write(fd: int, data: bytes | memoryview) -> int:
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spying_write)
    old_umask = os.umask(0)
    try:
        atomic_write_text(tmp_path / "token", "s3cret-value")
    finally:
        os.umask(old_umask)

    assert seen
    assert all(mode == 0o600 for mode in seen)


def test_failed_write_keeps_old_content_and_removes_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "config.json"
    target.write_text('{"old": true}')
    real_write = os.write

    def half_then_fail(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_fail)

    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, '{"new": "a much longer value that will be cut in half"}')

    assert target.read_text() == '{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_failed_fsync_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state"
    target.write_text("old")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)

    with pytest.raises(OSError, match="Input/output"):
        atomic_write_text(target, "new")

    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state"]


def test_ensure_private_dir_leaves_existing_directories_alone(tmp_path: Path) -> None:
    existing = tmp_path / "shared"
    existing.mkdir()
    existing.chmod(0o755)

    ensure_private_dir(existing / "new")

    assert _mode(existing) == 0o755
    assert _mode(existing / "new") == 0o700


# ── coro_home ───────────────────────────────────────────────────────────────────────────────


def test_coro_home_reads_the_environment(coro_home: Path) -> None:
    assert coro_paths.coro_home() == coro_home


def test_coro_home_defaults_to_dot_coro_in_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORO_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert coro_paths.coro_home() == tmp_path / ".coro"


def test_coro_home_expands_tilde_and_makes_relative_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CORO_HOME", "~/elsewhere/../coro")
    assert coro_paths.coro_home() == tmp_path / "coro"

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CORO_HOME", "rel")
    assert coro_paths.coro_home() == tmp_path / "rel"
    assert coro_paths.coro_home().is_absolute()


def test_empty_coro_home_means_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CORO_HOME", "")
    assert coro_paths.coro_home() == tmp_path / ".coro"


# ── CoroPaths ───────────────────────────────────────────────────────────────────────────────


def test_paths_under_home(coro_home: Path) -> None:
    paths = CoroPaths.from_home()

    assert paths.home == coro_home
    assert paths.config_file == coro_home / "config.json"
    assert paths.state_db == coro_home / "state.db"
    assert paths.token_file == coro_home / "runner.token"
    assert paths.working_dir == coro_home / "working"
    assert paths.intelligence_dir == coro_home / "intelligence"
    assert paths.cache_dir == coro_home / "cache"
    assert paths.local_scm_dir == coro_home / "local-scm"
    assert paths.guardrails_dir == coro_home / "guardrails"


def test_config_overrides_working_and_intelligence_dirs(tmp_path: Path) -> None:
    config = LocalConfig.model_validate(
        {"paths": {"workingDir": str(tmp_path / "w")}, "intelligence": {"dir": "tenant"}}
    )

    paths = CoroPaths.from_home(tmp_path / "home", config)

    assert paths.working_dir == tmp_path / "w"
    assert paths.intelligence_dir == tmp_path / "home" / "tenant"
    assert paths.job_dir("job-1") == tmp_path / "w" / "job-1"


def test_paths_are_frozen(tmp_path: Path) -> None:
    paths = CoroPaths.from_home(tmp_path)
    with pytest.raises(AttributeError):
        paths.home = tmp_path / "x"  # type: ignore[misc]


@pytest.mark.parametrize("job_id", ["my-service-job-1712123456789", "a", "A.b_c-1"])
def test_job_dir_accepts_plain_ids(tmp_path: Path, job_id: str) -> None:
    assert CoroPaths.from_home(tmp_path).job_dir(job_id) == tmp_path / "working" / job_id


@pytest.mark.parametrize(
    "job_id",
    ["", ".", "..", "../etc", "a/b", "a\\b", ".hidden", "-rf", "a\nb", "a\x00b", "x" * 201],
)
def test_job_dir_refuses_unsafe_ids(tmp_path: Path, job_id: str) -> None:
    with pytest.raises(ValueError, match="cannot be used as a directory name"):
        CoroPaths.from_home(tmp_path).job_dir(job_id)


def test_ensure_creates_home_0700_and_every_directory(tmp_path: Path) -> None:
    paths = CoroPaths.from_home(tmp_path / "fresh-home")

    paths.ensure()
    paths.ensure()  # idempotent

    assert _mode(paths.home) == 0o700
    for directory in (
        paths.working_dir,
        paths.intelligence_dir,
        paths.cache_dir,
        paths.local_scm_dir,
        paths.guardrails_dir,
    ):
        assert directory.is_dir()
        assert _mode(directory) == 0o700
    assert not paths.config_file.exists()


def test_realpath_agrees_with_the_standard_library(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for name in ("a/b", "link/b", "link/../a", "file", "missing/x", "dangling", "."):
        path = tmp_path / name
        assert realpath(path) == os.path.realpath(path), name
    assert realpath(tmp_path / "link", strict=True) == str((tmp_path / "a").resolve())
    with pytest.raises(FileNotFoundError):
        realpath(tmp_path / "missing", strict=True)
    with pytest.raises(OSError, match=r"[Ll]evels of symbolic links"):
        realpath(tmp_path / "loop", strict=True)
