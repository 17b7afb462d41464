"""``coro workflows`` and ``coro intelligence show`` against real layers on disk.

Each test builds its own tenant layer and repository checkout under ``tmp_path`` and points a
real ``config.json`` at them. The base layer is whatever ``intelligence_base`` ships today, so
it is only asserted generically (its rows come from files that exist in it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from coro_tui.cli import app
from engine.config import LocalConfig
from engine.intelligence import base_layer
from engine.overlay import tenant_id_for

TENANT = f"tenant:{tenant_id_for(LocalConfig())}"
BASE_ROOT = base_layer().root
BASE_WORKFLOWS = sorted(
    p.relative_to(BASE_ROOT).as_posix() for p in BASE_ROOT.glob("workflows/*/workflow.md")
)

runner = CliRunner()


def workflow(name: str, phases: tuple[str, ...] = ("plan", "build")) -> str:
    lines = ["---", f"display_name: {name}", f"description: The {name} lane.", "phases:"]
    lines += [f"  - name: {phase}\n    agent: null" for phase in phases]
    return "\n".join([*lines, "---", f"Run the {name} lane.", ""])


def put(root: Path, relpath: str, text: str) -> Path:
    file = root / relpath
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    return file


def configure(home: Path, **blocks: Any) -> None:
    (home / "config.json").write_text(json.dumps(blocks))


def coro(*args: str) -> Result:
    return runner.invoke(app, list(args))


def rows(result: Result) -> dict[str, dict[str, Any]]:
    return {row["path"]: row for row in json.loads(result.stdout)}


@pytest.fixture
def tenant(coro_home: Path, tmp_path: Path) -> Path:
    """A tenant layer in its own folder, configured as ``tenant.overlay`` (localDir)."""
    root = tmp_path / "team-intelligence"
    put(root, "workflows/lane/workflow.md", workflow("Team lane"))
    put(root, "workflows/job/workflow.md", workflow("Team job"))
    put(root, "agents/build.md", "# team builder\n")
    put(root, ".claude/CLAUDE.md", "Team rules.\n")
    configure(coro_home, tenant={"overlay": {"kind": "localDir", "path": str(root)}})
    return root


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A repository checkout named ``svc`` whose ``.coro/`` overrides the tenant."""
    repo = tmp_path / "svc"
    put(repo, ".coro/workflows/lane/workflow.md", workflow("Repo lane", ("only",)))
    put(repo, ".coro/agents/build.md", "# repo builder\n")
    put(repo, ".coro/.claude/CLAUDE.md", "Repo rules.\n")
    return repo


# -- coro workflows -------------------------------------------------------------------------------
def test_base_only_lists_the_base_layers_workflows(coro_home: Path) -> None:
    result = coro("workflows", "--json")
    listed = json.loads(result.stdout)
    assert [w["path"] for w in listed] == BASE_WORKFLOWS
    assert all(w["layer"] == "base" for w in listed)
    assert result.exit_code == (1 if any(w["error"] for w in listed) else 0), result.output


def test_a_tenant_workflow_wins_over_the_base_one(coro_home: Path, tenant: Path) -> None:
    result = coro("workflows", "--json")
    listed = rows(result)
    assert listed["workflows/job/workflow.md"]["layer"] == TENANT
    assert listed["workflows/job/workflow.md"]["displayName"] == "Team job"
    assert listed["workflows/lane/workflow.md"] == {
        "path": "workflows/lane/workflow.md",
        "displayName": "Team lane",
        "description": "The Team lane lane.",
        "kind": "job",
        "phases": ["plan", "build"],
        "layer": TENANT,
        "error": None,
    }
    others = set(listed) - {"workflows/job/workflow.md", "workflows/lane/workflow.md"}
    assert {listed[p]["layer"] for p in others} <= {"base"}
    assert others <= set(BASE_WORKFLOWS)


def test_the_legacy_intelligence_folder_is_the_tenant_layer(coro_home: Path) -> None:
    put(coro_home / "intelligence", "workflows/mine/workflow.md", workflow("Mine"))
    listed = rows(coro("workflows", "--json"))
    assert listed["workflows/mine/workflow.md"]["layer"] == TENANT


def test_the_repository_layer_wins_with_repo(coro_home: Path, tenant: Path, checkout: Path) -> None:
    without = rows(coro("workflows", "--json"))
    assert without["workflows/lane/workflow.md"]["layer"] == TENANT
    result = coro("workflows", "--repo", str(checkout), "--json")
    lane = rows(result)["workflows/lane/workflow.md"]
    assert (lane["layer"], lane["displayName"], lane["phases"]) == (
        "repo:svc",
        "Repo lane",
        ["only"],
    )


def test_the_table_names_each_workflow_and_its_layer(
    coro_home: Path, tenant: Path, checkout: Path
) -> None:
    result = coro("workflows", "--repo", str(checkout))
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["PATH", "NAME", "KIND", "PHASES", "LAYER", "DESCRIPTION"]
    lane = next(line for line in lines if line.startswith("workflows/lane/workflow.md"))
    assert lane.split()[1:] == ["Repo", "lane", "job", "only", "repo:svc", "The", "Repo", "lane",
                                "lane."]  # fmt: skip


def test_a_broken_workflow_is_listed_with_its_error_and_exits_1(
    coro_home: Path, tenant: Path
) -> None:
    put(tenant, "workflows/broken/workflow.md", "just prose, no front matter\n")
    put(tenant, "workflows/odd-tool/workflow.md", workflow("x").replace(
        "agent: null", "agent: null\n    tools: [mcp__coro__no_such_tool]", 1
    ))  # fmt: skip
    result = coro("workflows")
    assert result.exit_code == 1
    broken = next(line for line in result.stdout.splitlines() if "workflows/broken/" in line)
    assert TENANT in broken and "ERROR: " in broken and "no front matter" in broken
    odd = next(line for line in result.stdout.splitlines() if "workflows/odd-tool/" in line)
    assert "unknown tool 'mcp__coro__no_such_tool'" in odd
    assert "2 workflows failed to parse" in result.stderr
    as_json = coro("workflows", "--json")
    assert as_json.exit_code == 1
    entry = rows(as_json)["workflows/broken/workflow.md"]
    assert entry["displayName"] is None and entry["phases"] is None
    assert entry["error"].startswith("workflows/broken/workflow.md: no front matter")
    assert rows(as_json)["workflows/lane/workflow.md"]["error"] is None


def test_a_workflow_may_use_a_configured_mcp_servers_tools(coro_home: Path, tmp_path: Path) -> None:
    root = tmp_path / "team"
    text = workflow("Ext").replace("agent: null", "agent: null\n    tools: [mcp__docs__*]", 1)
    put(root, "workflows/ext/workflow.md", text)
    configure(
        coro_home,
        tenant={"overlay": {"kind": "localDir", "path": str(root)}},
        mcpServers={"docs": {"type": "stdio", "command": "docs-server"}},
    )
    result = coro("workflows", "--json")
    assert rows(result)["workflows/ext/workflow.md"]["error"] is None, result.output


def test_a_git_remote_tenant_is_fetched_with_a_note_on_stderr(
    coro_home: Path, tmp_path: Path
) -> None:
    seed = tmp_path / "seed"
    put(seed, "workflows/remote/workflow.md", workflow("From git"))
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "seed"]):
        subprocess.run(["git", *args], cwd=seed, env=env, check=True)
    configure(coro_home, tenant={"overlay": {"kind": "gitRemote", "url": str(seed)}})
    result = coro("workflows", "--json")
    assert rows(result)["workflows/remote/workflow.md"]["layer"] == TENANT
    assert f"fetching the tenant layer from {seed}" in result.stderr
    assert (coro_home / "cache" / "tenant-overlays").is_dir()


def test_a_bad_config_is_one_line_and_exit_2(coro_home: Path) -> None:
    configure(coro_home, tenant={"overlay": {"kind": "floppy"}}, jobs={"maxConcurrent": "x"})
    result = coro("workflows")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert "tenant.overlay.kind" in result.stderr and "jobs.maxConcurrent" in result.stderr


def test_a_missing_repo_is_a_usage_error(coro_home: Path, tmp_path: Path) -> None:
    result = coro("workflows", "--repo", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_a_repo_without_coro_folder_says_so(coro_home: Path, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    result = coro("workflows", "--repo", str(tmp_path / "plain"), "--json")
    assert "has no .coro/ folder" in result.stderr
    assert {w["layer"] for w in json.loads(result.stdout)} <= {"base"}


# -- coro intelligence show -----------------------------------------------------------------------
def test_show_lists_appended_layers_and_overrides(
    coro_home: Path, tenant: Path, checkout: Path
) -> None:
    in_base = (BASE_ROOT / ".claude/CLAUDE.md").is_file()
    result = coro("intelligence", "show", "--repo", str(checkout))
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    expected = ("base + " if in_base else "") + f"{TENANT} + repo:svc"
    assert lines[".claude/CLAUDE.md"].split(None, 1)[1].strip() == expected
    assert lines["agents/build.md"].split()[1:] == ["repo:svc", TENANT]

    shown = rows(coro("intelligence", "show", "--repo", str(checkout), "--json"))
    assert shown[".claude/CLAUDE.md"] == {
        "path": ".claude/CLAUDE.md",
        "appended": True,
        "layers": [*(["base"] if in_base else []), TENANT, "repo:svc"],
        "overrides": [],
    }
    assert shown["agents/build.md"] == {
        "path": "agents/build.md",
        "appended": False,
        "layers": ["repo:svc"],
        "overrides": [TENANT],
    }
    base_job = "workflows/job/workflow.md" in BASE_WORKFLOWS
    assert shown["workflows/job/workflow.md"]["overrides"] == (["base"] if base_job else [])
    assert not list(checkout.rglob("_intelligence")) and not (coro_home / "working").exists()


def test_show_without_repo_stops_at_the_tenant(coro_home: Path, tenant: Path) -> None:
    in_base = (BASE_ROOT / ".claude/CLAUDE.md").is_file()
    shown = rows(coro("intelligence", "show", "--json"))
    assert shown[".claude/CLAUDE.md"]["layers"] == [*(["base"] if in_base else []), TENANT]
    assert shown["agents/build.md"]["layers"] == [TENANT]


def test_show_filters_by_glob_or_folder(coro_home: Path, tenant: Path, checkout: Path) -> None:
    put(checkout, ".coro/agents/review.md", "# reviewer\n")
    for pattern in ("agents/*", "agents", "agents/"):
        result = coro("intelligence", "show", "--repo", str(checkout), "--json", pattern)
        paths = list(rows(result))
        assert "agents/build.md" in paths and "agents/review.md" in paths, pattern
        assert all(p.startswith("agents/") for p in paths), pattern
    only = coro("intelligence", "show", "--repo", str(checkout), "*/review.md")
    assert [line.split()[0] for line in only.stdout.splitlines()[1:]] == ["agents/review.md"]
    none = coro("intelligence", "show", "nothing/*")
    assert none.exit_code == 0 and none.stdout == "" and "no path matches" in none.stderr


def test_a_symlink_out_of_the_repo_layer_is_a_clear_error(
    coro_home: Path, tenant: Path, checkout: Path, tmp_path: Path
) -> None:
    secret = put(tmp_path, "secret.txt", "do not read\n")
    (checkout / ".coro/agents/leak.md").symlink_to(secret)
    for command in (["intelligence", "show"], ["workflows"]):
        result = coro(*command, "--repo", str(checkout))
        assert result.exit_code == 1, command
        assert result.stdout == ""
        [line] = result.stderr.splitlines()
        assert "repo:svc" in line and "agents/leak.md" in line and "outside the layer" in line


def test_a_coro_folder_leading_out_of_the_checkout_is_refused(
    coro_home: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    put(elsewhere, "agents/x.md", "# x\n")
    repo = tmp_path / "svc"
    repo.mkdir()
    (repo / ".coro").symlink_to(elsewhere)
    result = coro("intelligence", "show", "--repo", str(repo))
    assert result.exit_code == 1
    assert "outside" in result.stderr and "repo:svc" in result.stderr


def test_intelligence_without_a_command_shows_its_help() -> None:
    result = coro("intelligence")
    assert "show" in result.output


def test_help_imports_no_engine_or_heavy_module() -> None:
    probe = (
        "import sys\nfrom coro_tui.cli import app\n"
        "try:\n    app(['workflows', '--help'])\nexcept SystemExit:\n    pass\n"
        "mods = ('textual', 'anthropic', 'mcp', 'engine.overlay', 'engine.intelligence')\n"
        "print(sorted(m for m in mods if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "Usage:" in done.stdout
    assert done.stderr.strip() == "[]"
