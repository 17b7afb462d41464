"""The shared overlay store: one copy of each file, hard-linked into every job's overlay."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

import pytest

from engine.intelligence import IntelligenceResolver, Layer, tenant_dir_layer
from engine.intelligence._store import BlobStore


def put(root: Path, relpath: str, text: str) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def layers(tmp_path: Path) -> list[Layer]:
    base, tenant = tmp_path / "base", tmp_path / "tenant"
    put(base, "agents/coder.md", "base coder")
    put(base, ".claude/CLAUDE.md", "base rules")
    put(tenant, "agents/coder.md", "tenant coder")
    put(tenant, ".claude/CLAUDE.md", "tenant rules")
    script = put(base, ".claude/skills/ci/check.sh", "#!/bin/sh\necho ok\n")
    script.chmod(0o755)
    return [Layer("base", base), tenant_dir_layer("team-a", tenant)]


def overlay(working: Path, job: str) -> Path:
    return working / job / "_intelligence"


def test_jobs_on_the_same_layers_share_one_read_only_copy(
    tmp_path: Path, layers: list[Layer]
) -> None:
    working = tmp_path / "working"
    resolver = IntelligenceResolver(store=working / ".overlay-store")

    resolver.resolve("job-1", layers, overlay(working, "job-1"))
    resolver.resolve("job-2", layers, overlay(working, "job-2"))

    for relpath in ("agents/coder.md", ".claude/CLAUDE.md", ".claude/skills/ci/check.sh"):
        one, two = overlay(working, "job-1") / relpath, overlay(working, "job-2") / relpath
        assert one.read_bytes() == two.read_bytes()
        assert one.stat().st_ino == two.stat().st_ino
        assert one.stat().st_nlink == 3  # the store's copy and two overlays
        assert not one.stat().st_mode & 0o222  # nobody may write to it
    assert (overlay(working, "job-1") / "agents/coder.md").read_text() == "tenant coder"
    assert os.access(overlay(working, "job-2") / ".claude/skills/ci/check.sh", os.X_OK)


def test_a_write_through_one_job_is_undone_in_every_job(
    tmp_path: Path, layers: list[Layer]
) -> None:
    working = tmp_path / "working"
    resolver = IntelligenceResolver(store=working / ".overlay-store")
    for job in ("job-1", "job-2"):
        resolver.resolve(job, layers, overlay(working, job))
    damaged = overlay(working, "job-1") / "agents/coder.md"
    damaged.chmod(0o644)  # as a job's own Bash might, before writing
    damaged.write_text("rewritten by job 1")
    assert (overlay(working, "job-2") / "agents/coder.md").read_text() == "rewritten by job 1"

    results = [resolver.resolve(job, layers, overlay(working, job)) for job in ("job-1", "job-2")]

    assert [r.written for r in results] == [1, 1]
    for job in ("job-1", "job-2"):
        restored = overlay(working, job) / "agents/coder.md"
        assert restored.read_text() == "tenant coder"
        assert not restored.stat().st_mode & 0o222
    assert (overlay(working, "job-1") / "agents/coder.md").stat().st_ino == (
        overlay(working, "job-2") / "agents/coder.md"
    ).stat().st_ino


def test_without_hard_links_the_overlay_gets_copies(
    tmp_path: Path, layers: list[Layer], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    working = tmp_path / "working"
    resolver = IntelligenceResolver(store=tmp_path / "elsewhere" / "store")

    resolver.resolve("job-1", layers, overlay(working, "job-1"))
    again = resolver.resolve("job-1", layers, overlay(working, "job-1"))

    copy = overlay(working, "job-1") / "agents/coder.md"
    assert copy.read_text() == "tenant coder"
    assert copy.stat().st_nlink == 1
    assert again.written == 0
    assert resolver.store is not None and not resolver.store.usable


def test_sweep_deletes_what_no_overlay_links(tmp_path: Path, layers: list[Layer]) -> None:
    working = tmp_path / "working"
    store_dir = working / ".overlay-store"
    resolver = IntelligenceResolver(store=store_dir)
    for job in ("job-1", "job-2"):
        resolver.resolve(job, layers, overlay(working, job))
    put(layers[1].root, "agents/coder.md", "tenant coder, second edition")
    resolver.resolve("job-2", layers, overlay(working, "job-2"))
    stored = len(os.listdir(store_dir))

    assert BlobStore(store_dir).sweep() == 0  # job 1 still links the first edition
    shutil.rmtree(working / "job-1")
    removed = BlobStore(store_dir).sweep()

    assert removed == 1  # the first edition of agents/coder.md
    assert len(os.listdir(store_dir)) == stored - 1
    for entry in os.scandir(store_dir):
        assert stat.S_ISREG(entry.stat().st_mode) and entry.stat().st_nlink == 2
    assert (overlay(working, "job-2") / "agents/coder.md").read_text().startswith("tenant coder,")
