"""The layered intelligence resolver: merge rules, incremental re-resolve, safety, git tenants."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path

import pytest

import intelligence_base
from engine.errors import IntelligenceError, LayerEscapeError
from engine.intelligence import (
    MANIFEST_NAME,
    IntelligenceResolver,
    Layer,
    TenantGitLoader,
    base_layer,
    redact_url,
    repo_layer,
    safe_relpath,
    tenant_dir_layer,
)


@pytest.fixture(autouse=True, params=["copies", "links"])
def overlay_mode(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Every test runs twice: with overlays of plain copies, and as the engine runs them, with
    files hard-linked from a shared store."""
    if request.param == "links":
        original = IntelligenceResolver.__init__
        store = tmp_path / "overlay-store"

        def with_store(self: IntelligenceResolver, store_: Path | None = None) -> None:
            original(self, store=store if store_ is None else store_)

        monkeypatch.setattr(IntelligenceResolver, "__init__", with_store)
    return str(request.param)


def put(root: Path, relpath: str, text: str) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def settle(*roots: Path) -> None:
    """Age every file, as in an overlay that has sat on disk for a while."""
    past = time.time() - 3600
    for root in roots:
        for path in root.rglob("*"):
            os.utime(path, (past, past), follow_symlinks=False)


def dest_files(dest: Path) -> dict[str, str]:
    return {
        p.relative_to(dest).as_posix(): p.read_text()
        for p in sorted(dest.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }


def mtimes(dest: Path) -> dict[str, int]:
    return {p.relative_to(dest).as_posix(): p.stat().st_mtime_ns for p in dest.rglob("*")}


@pytest.fixture
def stack(tmp_path: Path) -> tuple[list[Layer], Path]:
    base, tenant, repo = tmp_path / "base", tmp_path / "tenant", tmp_path / "checkout"
    for root in (base, tenant, repo / ".coro"):
        root.mkdir(parents=True)
    layers = [Layer("base", base), tenant_dir_layer("team-abc", tenant), repo_layer("svc", repo)]
    return layers, tmp_path / "working" / "job-1" / "_intelligence"


def roots(layers: list[Layer]) -> tuple[Path, ...]:
    return tuple(layer.root for layer in layers)


def test_highest_layer_wins_for_ordinary_files(stack: tuple[list[Layer], Path]) -> None:
    layers, dest = stack
    base, tenant, repo = roots(layers)
    put(base, "agents/coder.md", "base coder")
    put(tenant, "agents/coder.md", "tenant coder")
    put(repo, "agents/coder.md", "repo coder")
    put(base, "agents/planner.md", "base planner")
    put(base, ".claude/skills/api/SKILL.md", "base skill")
    put(tenant, ".claude/skills/api/SKILL.md", "tenant skill")

    result = IntelligenceResolver().resolve("job-1", layers, dest)

    assert dest_files(dest) == {
        "agents/coder.md": "repo coder",
        "agents/planner.md": "base planner",
        ".claude/skills/api/SKILL.md": "tenant skill",
    }
    assert result.winners == {
        "agents/coder.md": "repo:svc",
        "agents/planner.md": "base",
        ".claude/skills/api/SKILL.md": "tenant:team-abc",
    }
    assert (result.written, result.removed, result.unchanged) == (3, 0, 0)


def test_claude_md_and_memory_are_appended_lowest_first(stack: tuple[list[Layer], Path]) -> None:
    layers, dest = stack
    base, tenant, repo = roots(layers)
    put(base, ".claude/CLAUDE.md", "Base rules.\n")
    put(tenant, ".claude/CLAUDE.md", "Tenant rules.")  # no final newline
    put(repo, ".claude/CLAUDE.md", "Repo rules.\n")
    put(base, "memory/known-pitfalls/go.md", "base pitfall\n")
    put(repo, "memory/known-pitfalls/go.md", "repo pitfall\n")
    put(base, "memory/notes.txt", "base notes")  # not markdown: last-wins
    put(tenant, "memory/notes.txt", "tenant notes")

    result = IntelligenceResolver().resolve("job-1", layers, dest)

    assert (dest / ".claude/CLAUDE.md").read_text() == (
        "<!-- coro layer: base -->\nBase rules.\n\n"
        "<!-- coro layer: tenant:team-abc -->\nTenant rules.\n\n"
        "<!-- coro layer: repo:svc -->\nRepo rules.\n"
    )
    assert (dest / "memory/known-pitfalls/go.md").read_text() == (
        "<!-- coro layer: base -->\nbase pitfall\n\n<!-- coro layer: repo:svc -->\nrepo pitfall\n"
    )
    assert (dest / "memory/notes.txt").read_text() == "tenant notes"
    assert result.winners[".claude/CLAUDE.md"] == ("base", "tenant:team-abc", "repo:svc")
    assert result.winners["memory/known-pitfalls/go.md"] == ("base", "repo:svc")
    assert result.winners["memory/notes.txt"] == "tenant:team-abc"


@pytest.mark.parametrize("settled", [True, False], ids=["settled", "just-written"])
def test_unchanged_re_resolve_writes_nothing(
    stack: tuple[list[Layer], Path], settled: bool
) -> None:
    layers, dest = stack
    base, tenant, repo = roots(layers)
    for i in range(20):
        put(base, f"agents/a{i}.md", f"base {i}")
    put(tenant, "agents/a3.md", "tenant 3")
    put(repo, ".claude/CLAUDE.md", "repo rules")
    put(base, ".claude/CLAUDE.md", "base rules")
    if settled:
        settle(*roots(layers))
    resolver = IntelligenceResolver()
    first = resolver.resolve("job-1", layers, dest)
    before = mtimes(dest)

    again = resolver.resolve("job-1", layers, dest)

    assert (again.written, again.removed, again.unchanged) == (0, 0, first.written)
    assert mtimes(dest) == before


@pytest.mark.parametrize("settled", [True, False], ids=["settled", "just-written"])
def test_changed_layer_file_is_rewritten(stack: tuple[list[Layer], Path], settled: bool) -> None:
    layers, dest = stack
    base, tenant, _ = roots(layers)
    put(base, "agents/coder.md", "version A")
    put(tenant, "memory/MEMORY.md", "index A")
    put(base, "agents/other.md", "stays")
    if settled:
        settle(*roots(layers))
    resolver = IntelligenceResolver()
    resolver.resolve("job-1", layers, dest)

    put(base, "agents/coder.md", "version B")  # same size: only the content differs
    put(tenant, "memory/MEMORY.md", "index B")
    result = resolver.resolve("job-1", layers, dest)

    assert (dest / "agents/coder.md").read_text() == "version B"
    assert (dest / "memory/MEMORY.md").read_text().endswith("index B\n")
    assert (result.written, result.unchanged) == (2, 1)


def test_edit_within_one_mtime_tick_is_not_missed(stack: tuple[list[Layer], Path]) -> None:
    layers, dest = stack
    source = put(layers[0].root, "agents/coder.md", "version A")
    resolver = IntelligenceResolver()
    resolver.resolve("job-1", layers, dest)
    tick = source.stat().st_mtime_ns

    source.write_text("version B")  # same size, and (as on a coarse clock) the same mtime
    os.utime(source, ns=(tick, tick))
    result = resolver.resolve("job-1", layers, dest)

    assert (dest / "agents/coder.md").read_text() == "version B"
    assert result.written == 1


def test_edited_overlay_copy_is_restored(stack: tuple[list[Layer], Path]) -> None:
    layers, dest = stack
    put(layers[0].root, "agents/coder.md", "from the layer")
    settle(*roots(layers))
    resolver = IntelligenceResolver()
    resolver.resolve("job-1", layers, dest)

    (dest / "agents/coder.md").write_text("edited in place")
    result = resolver.resolve("job-1", layers, dest)

    assert (dest / "agents/coder.md").read_text() == "from the layer"
    assert result.written == 1


def test_removing_an_upper_file_reverts_to_the_lower_layer(
    stack: tuple[list[Layer], Path],
) -> None:
    layers, dest = stack
    base, tenant, repo = roots(layers)
    put(base, "agents/coder.md", "base coder")
    put(tenant, "agents/coder.md", "tenant coder")
    upper = put(repo, "agents/coder.md", "repo coder")
    resolver = IntelligenceResolver()
    resolver.resolve("job-1", layers, dest)
    assert (dest / "agents/coder.md").read_text() == "repo coder"

    upper.unlink()
    result = resolver.resolve("job-1", layers, dest)

    assert (dest / "agents/coder.md").read_text() == "tenant coder"
    assert result.winners["agents/coder.md"] == "tenant:team-abc"


def test_file_gone_from_every_layer_disappears_but_foreign_files_stay(
    stack: tuple[list[Layer], Path],
) -> None:
    layers, dest = stack
    base, tenant, _ = roots(layers)
    put(base, "agents/coder.md", "coder")
    gone = [put(base, "skills/old/SKILL.md", "old"), put(tenant, "skills/old/SKILL.md", "old 2")]
    resolver = IntelligenceResolver()
    resolver.resolve("job-1", layers, dest)
    put(dest, "scratch/notes.md", "written by someone else")

    for path in gone:
        path.unlink()
    result = resolver.resolve("job-1", layers, dest)

    assert not (dest / "skills").exists()
    assert dest_files(dest) == {
        "agents/coder.md": "coder",
        "scratch/notes.md": "written by someone else",
    }
    assert (result.written, result.removed, result.unchanged) == (0, 1, 1)


def test_a_tampered_manifest_cannot_delete_outside_the_overlay(
    stack: tuple[list[Layer], Path], tmp_path: Path
) -> None:
    layers, dest = stack
    put(layers[0].root, "agents/coder.md", "coder")
    resolver = IntelligenceResolver()
    resolver.resolve("job-1", layers, dest)
    victim = put(tmp_path, "working/job-1/precious.txt", "keep me")
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    manifest["files"]["../precious.txt"] = manifest["files"]["agents/coder.md"]
    (dest / MANIFEST_NAME).write_text(json.dumps(manifest))

    resolver.resolve("job-1", layers, dest)

    assert victim.read_text() == "keep me"


def test_symlink_to_a_file_outside_the_layer_is_refused(
    stack: tuple[list[Layer], Path], tmp_path: Path
) -> None:
    layers, dest = stack
    base, tenant, _ = roots(layers)
    secret = put(tmp_path / "outside", "passwd", "root:x:0:0:SECRET")
    put(base, "agents/coder.md", "coder")
    (tenant / "agents").mkdir()
    (tenant / "agents/evil.md").symlink_to(secret)

    with pytest.raises(LayerEscapeError) as caught:
        IntelligenceResolver().resolve("job-1", layers, dest)

    assert "tenant:team-abc" in caught.value.message
    assert "agents/evil.md" in caught.value.message
    assert not dest.exists() or "SECRET" not in str(dest_files(dest))


def test_symlinked_directory_outside_the_layer_is_refused(
    stack: tuple[list[Layer], Path], tmp_path: Path
) -> None:
    layers, _ = stack
    outside = tmp_path / "outside"
    put(outside, "id_rsa", "PRIVATE KEY")
    repo = layers[2].root
    (repo / "skills").symlink_to(outside, target_is_directory=True)

    with pytest.raises(LayerEscapeError, match=r"repo:svc: skills is a symlink"):
        IntelligenceResolver().describe(layers)


def test_checkout_whose_dot_coro_points_outside_is_refused(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    put(tmp_path / "elsewhere", "agents/coder.md", "not from this repository")
    (checkout / ".coro").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    with pytest.raises(LayerEscapeError, match="repo:svc"):
        IntelligenceResolver().describe([repo_layer("svc", checkout)])


@pytest.mark.parametrize(
    "relpath", ["../etc/passwd", "agents/../../x", "/etc/passwd", "", ".", "a/\x00b"]
)
def test_path_validator_refuses_paths_that_leave_the_layer(relpath: str) -> None:
    with pytest.raises(LayerEscapeError, match="tenant:team-abc"):
        safe_relpath(relpath, layer="tenant:team-abc")


def test_path_validator_normalises_plain_paths() -> None:
    assert safe_relpath("agents/./coder.md", layer="base") == "agents/coder.md"
    assert safe_relpath(".claude/CLAUDE.md", layer="base") == ".claude/CLAUDE.md"


def test_symlinks_inside_the_layer_are_followed(stack: tuple[list[Layer], Path]) -> None:
    layers, dest = stack
    base = layers[0].root
    put(base, "shared/coder.md", "shared coder")
    (base / "agents").mkdir()
    (base / "agents/coder.md").symlink_to("../shared/coder.md")
    (base / "skills").symlink_to("shared", target_is_directory=True)

    IntelligenceResolver().resolve("job-1", layers, dest)

    assert (dest / "agents/coder.md").read_text() == "shared coder"
    assert not (dest / "agents/coder.md").is_symlink()
    assert (dest / "skills/coder.md").read_text() == "shared coder"


def test_symlink_loop_inside_a_layer_is_an_error(stack: tuple[list[Layer], Path]) -> None:
    layers, _ = stack
    base = layers[0].root
    (base / "a").mkdir()
    (base / "a/up").symlink_to("..", target_is_directory=True)

    with pytest.raises(IntelligenceError, match="loop"):
        IntelligenceResolver().describe(layers)


def test_overlay_inside_a_layer_is_refused(stack: tuple[list[Layer], Path]) -> None:
    layers, _ = stack
    put(layers[1].root, "agents/coder.md", "coder")

    with pytest.raises(IntelligenceError, match=r"inside layer tenant:team-abc"):
        IntelligenceResolver().resolve("job-1", layers, layers[1].root / "_intelligence")


def test_git_directories_are_not_copied(stack: tuple[list[Layer], Path]) -> None:
    layers, dest = stack
    tenant = layers[1].root
    put(tenant, ".git/config", "[remote] url = https://user:token@host/x")
    put(tenant, "agents/coder.md", "coder")

    IntelligenceResolver().resolve("job-1", layers, dest)

    assert dest_files(dest) == {"agents/coder.md": "coder"}


def test_scripts_keep_their_execute_bit(stack: tuple[list[Layer], Path]) -> None:
    layers, dest = stack
    script = put(layers[0].root, ".claude/skills/ci/check.sh", "#!/bin/sh\n")
    script.chmod(0o755)

    IntelligenceResolver().resolve("job-1", layers, dest)

    assert os.access(dest / ".claude/skills/ci/check.sh", os.X_OK)


def test_higher_layer_directory_replaces_a_lower_file(stack: tuple[list[Layer], Path]) -> None:
    layers, dest = stack
    put(layers[0].root, "skills/review", "a base file")
    put(layers[1].root, "skills/review/SKILL.md", "tenant skill")

    result = IntelligenceResolver().resolve("job-1", layers, dest)

    assert dest_files(dest) == {"skills/review/SKILL.md": "tenant skill"}
    assert result.winners == {"skills/review/SKILL.md": "tenant:team-abc"}


def test_repository_layer_joins_once_the_checkout_exists(tmp_path: Path) -> None:
    base = tmp_path / "base"
    put(base, "agents/coder.md", "base coder")
    checkout = tmp_path / "working" / "job-1" / "svc"
    layers = [Layer("base", base), repo_layer("svc", checkout)]
    dest = tmp_path / "working" / "job-1" / "_intelligence"
    resolver = IntelligenceResolver()

    assert resolver.resolve("job-1", layers, dest).winners == {"agents/coder.md": "base"}

    put(checkout, ".coro/agents/coder.md", "repo coder")
    put(checkout, "src/main.py", "print('not intelligence')")
    result = resolver.resolve("job-1", layers, dest)

    assert dest_files(dest) == {"agents/coder.md": "repo coder"}
    assert result.winners == {"agents/coder.md": "repo:svc"}


def test_describe_lists_paths_and_winners_without_writing(
    stack: tuple[list[Layer], Path],
) -> None:
    layers, dest = stack
    base, tenant, _ = roots(layers)
    put(base, ".claude/CLAUDE.md", "base")
    put(tenant, ".claude/CLAUDE.md", "tenant")
    put(tenant, "agents/coder.md", "coder")

    assert IntelligenceResolver().describe(layers) == [
        (".claude/CLAUDE.md", ("base", "tenant:team-abc")),
        ("agents/coder.md", "tenant:team-abc"),
    ]
    assert not dest.exists()


async def test_aresolve_materialises_the_packaged_base_layer(tmp_path: Path) -> None:
    dest = tmp_path / "_intelligence"

    result = await IntelligenceResolver().aresolve("job-1", [base_layer()], dest)

    assert base_layer().root == intelligence_base.layer_path()
    assert (intelligence_base.layer_root() / ".claude" / "CLAUDE.md").is_file()
    assert result.winners[".claude/CLAUDE.md"] == ("base",)
    assert (dest / ".claude/CLAUDE.md").read_text().startswith("<!-- coro layer: base -->\n")


def test_layer_names_that_would_break_a_banner_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid layer name"):
        Layer("tenant:x-->y", tmp_path)
    with pytest.raises(IntelligenceError, match="invalid tenant id"):
        tenant_dir_layer("../escape", tmp_path)


# --- tenant layers from a git remote ---------------------------------------------------------


def git(*args: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


class Remote:
    """A bare repository on disk, published through a file:// URL, and a clone to push from."""

    def __init__(self, tmp_path: Path) -> None:
        self.bare = tmp_path / "remote.git"
        self.work = tmp_path / "author"
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        git("init", "--quiet", "--initial-branch=main", str(self.work))
        git("remote", "add", "origin", self.url, cwd=self.work)

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def push(self, files: dict[str, str | None], branch: str = "main") -> None:
        for relpath, text in files.items():
            if text is None:
                (self.work / relpath).unlink()
            else:
                put(self.work, relpath, text)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "-m", "update", cwd=self.work)
        git("push", "--quiet", "origin", f"HEAD:{branch}", cwd=self.work)


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    remote = Remote(tmp_path)
    remote.push({"agents/coder.md": "team coder v1", ".claude/CLAUDE.md": "Team rules v1.\n"})
    return remote


async def test_git_tenant_is_cloned_into_the_cache(remote: Remote, coro_home: Path) -> None:
    loader = TenantGitLoader(coro_home / "cache", refresh_interval=0)
    base = coro_home / "base"
    put(base, ".claude/CLAUDE.md", "Base rules.\n")

    layer = await loader.load("team-abc", remote.url)
    result = IntelligenceResolver().resolve("job-1", [Layer("base", base), layer], coro_home / "d")

    assert layer == Layer("tenant:team-abc", coro_home / "cache/tenant-overlays/team-abc")
    assert (layer.root / "agents/coder.md").read_text() == "team coder v1"
    assert (coro_home / "d/agents/coder.md").read_text() == "team coder v1"
    assert result.winners[".claude/CLAUDE.md"] == ("base", "tenant:team-abc")
    assert git("rev-parse", "--is-shallow-repository", cwd=layer.root).strip() == "true"


async def test_new_commit_is_picked_up_after_the_refresh_interval(
    remote: Remote, coro_home: Path
) -> None:
    loader = TenantGitLoader(coro_home / "cache", refresh_interval=0)
    resolver = IntelligenceResolver()
    dest = coro_home / "working/job-1/_intelligence"
    resolver.resolve("job-1", [await loader.load("team-abc", remote.url)], dest)

    remote.push({"agents/coder.md": "team coder v2", ".claude/CLAUDE.md": None})
    result = resolver.resolve("job-1", [await loader.load("team-abc", remote.url)], dest)

    assert dest_files(dest) == {"agents/coder.md": "team coder v2"}
    assert (result.written, result.removed) == (1, 1)


async def test_remote_is_not_fetched_again_within_the_interval(
    remote: Remote, coro_home: Path
) -> None:
    loader = TenantGitLoader(coro_home / "cache", refresh_interval=3600)
    layer = await loader.load("team-abc", remote.url)

    remote.push({"agents/coder.md": "team coder v2"})
    await loader.load("team-abc", remote.url)

    assert (layer.root / "agents/coder.md").read_text() == "team coder v1"


async def test_git_tenant_follows_the_configured_ref(remote: Remote, coro_home: Path) -> None:
    remote.push({"agents/coder.md": "release coder"}, branch="release")
    loader = TenantGitLoader(coro_home / "cache", refresh_interval=0)

    layer = await loader.load("team-abc", remote.url, ref="release")
    assert (layer.root / "agents/coder.md").read_text() == "release coder"

    remote.push({"agents/coder.md": "release coder 2"}, branch="release")
    await loader.load("team-abc", remote.url, ref="release")
    assert (layer.root / "agents/coder.md").read_text() == "release coder 2"


async def test_failed_refresh_keeps_the_cached_copy(
    remote: Remote, coro_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loader = TenantGitLoader(coro_home / "cache", refresh_interval=0)
    layer = await loader.load("team-abc", remote.url)
    remote.bare.rename(remote.bare.with_name("moved.git"))

    with caplog.at_level(logging.WARNING, logger="engine.intelligence"):
        again = await loader.load("team-abc", remote.url)

    assert again == layer
    assert (layer.root / "agents/coder.md").read_text() == "team coder v1"
    assert "refresh failed, using the cached copy" in caplog.text


async def test_failed_first_clone_names_the_url_without_credentials(coro_home: Path) -> None:
    loader = TenantGitLoader(coro_home / "cache", timeout=30)
    url = "https://deploy:s3cr3t-token@127.0.0.1:1/team/intelligence.git"

    with pytest.raises(IntelligenceError) as caught:
        await loader.load("team-abc", url)

    message = caught.value.message
    assert "https://127.0.0.1:1/team/intelligence.git" in message
    assert "s3cr3t-token" not in message
    assert "deploy" not in message
    assert not (coro_home / "cache/tenant-overlays/team-abc").exists()
    assert list((coro_home / "cache/tenant-overlays").iterdir()) == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:token@host/x", "https://host/x"),
        ("https://token@host:8443/x.git", "https://host:8443/x.git"),
        ("https://host/x", "https://host/x"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_pending_proposals_in_the_tenant_layer_never_reach_a_job(tmp_path: Path) -> None:
    from engine.intelligence import IntelligenceResolver, Layer

    tenant = tmp_path / "tenant"
    (tenant / "proposals" / "prop-1" / "memory").mkdir(parents=True)
    (tenant / "proposals" / "prop-1" / "memory" / "known-pitfalls.md").write_text("unreviewed")
    (tenant / "agents").mkdir()
    (tenant / "agents" / "proposals.md").write_text("a real agent")
    dest = tmp_path / "out"
    result = IntelligenceResolver().resolve("j", [Layer("tenant:t", tenant)], dest)
    assert "agents/proposals.md" in result.winners
    assert not any(path.startswith("proposals/") for path in result.winners)
    assert not (dest / "proposals").exists()
