"""The ``coro`` console script: version, help, and honest failures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from coro_tui.cli import app
from engine import __version__
from state import Job, SqliteStateBackend

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"coro {__version__}"


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "doctor" in result.output and "demo" in result.output


def test_bare_coro_without_a_terminal_says_the_tui_needs_one() -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    assert "the TUI needs a terminal" in result.output


def test_doctor_on_a_fresh_home(coro_home: Path) -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert checks["config"]["level"] == "ok" and "(defaults)" in checks["config"]["detail"]


def test_doctor_reports_a_broken_config_and_database(coro_home: Path) -> None:
    (coro_home / "config.json").write_text('{"jobs": {"maxConcurrent": "many"}}')
    (coro_home / "state.db").write_bytes(b"garbage" * 10)
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 1
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert checks["config"]["level"] == "error"
    assert "jobs.maxConcurrent" in checks["config"]["detail"]
    assert checks["state"]["level"] == "error" and "mv " in checks["state"]["detail"]


async def test_doctor_counts_jobs(coro_home: Path) -> None:
    async with SqliteStateBackend(coro_home / "state.db") as store:
        await store.create_job(Job(id="a"))
    proc = subprocess.run(
        [sys.executable, "-m", "coro_tui", "doctor"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 jobs" in proc.stdout


def test_the_console_script_is_installed() -> None:
    exe = shutil.which("coro", path=str(Path(sys.executable).parent))
    assert exe is not None, "run `pip install -e .` so the coro script exists"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_init_writes_the_flags_and_keeps_the_rest(coro_home: Path, tmp_path: Path) -> None:
    (coro_home / "config.json").write_text('{"jobs": {"maxConcurrent": 2}}')
    layer = tmp_path / "team-layer"
    layer.mkdir()
    result = runner.invoke(
        app,
        ["init", "--port", "7400", "--git-provider", "github", "--git-token", "ghp_abcdef123456",
         "--intelligence-dir", str(layer)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "ghp_abcdef123456" not in result.output and "git.token = (secret)" in result.output
    written = json.loads((coro_home / "config.json").read_text())
    assert written["server"] == {"port": 7400}
    assert written["jobs"] == {"maxConcurrent": 2}
    assert written["git"] == {"provider": "github", "token": "ghp_abcdef123456"}
    assert written["tenant"]["overlay"] == {"kind": "localDir", "path": str(layer)}
    assert (coro_home / "config.json").stat().st_mode & 0o777 == 0o600


def test_init_refuses_bad_flags_and_a_broken_config(coro_home: Path) -> None:
    bad = runner.invoke(app, ["init", "--git-provider", "svn"])
    assert bad.exit_code == 2 and "git.provider" in bad.output
    missing = runner.invoke(app, ["init", "--intelligence-dir", "/no/such/dir"])
    assert missing.exit_code == 2 and "no such directory" in missing.output
    (coro_home / "config.json").write_text("{not json")
    broken = runner.invoke(app, ["init", "--port", "7400"])
    assert broken.exit_code == 2 and "--force" in broken.output
    forced = runner.invoke(app, ["init", "--port", "7400", "--force"])
    assert forced.exit_code == 0
    assert json.loads((coro_home / "config.json").read_text()) == {"server": {"port": 7400}}


def test_start_without_headless_says_what_works() -> None:
    result = runner.invoke(app, ["start"])
    assert result.exit_code == 2 and "--headless" in result.output


def test_sse_frames_cut_mid_way_are_not_yielded() -> None:
    from coro_tui._client import parse_frames

    lines = ["retry: 1000", "", ": ping", "", "id: 1", "event: log", "data: a", "data: b", "",
             "id: 2", "data: half"]  # fmt: skip
    frames = list(parse_frames(lines))
    assert [(f.id, f.event, f.text) for f in frames] == [("1", "log", "a\nb")]


def test_job_lines_and_exit_codes() -> None:
    from coro_tui._render import describe_event, exit_code_for, jobs_table, stops_watching

    assert [exit_code_for(s) for s in ("complete", "awaiting-pr-merge", "escalated", "failed",
                                       "cancelled")] == [0, 0, 1, 1, 1]  # fmt: skip
    assert stops_watching("awaiting-developer-input") and not stops_watching("coding")
    status = {"kind": "status", "data": {"from": "queued", "to": "spec", "reason": "go"}}
    assert describe_event(status) == "── status queued → spec (go)"
    assert describe_event({"kind": "model_call", "data": {}}) is None
    table = jobs_table([{"id": "j-1", "status": "complete", "workflowPath": "w.md",
                         "tokenUsage": {"totalCostUsd": 0.5}}])  # fmt: skip
    assert table.splitlines()[1].split() == ["j-1", "complete", "-", "w.md", "$0.50"]


def test_a_bare_coro_reaches_the_tui_without_loading_the_command_line() -> None:
    """The console script's fast path: typer and the command modules stay unloaded."""
    code = (
        "import sys, coro_tui._entry, coro_tui._tui_run, coro_tui._startup, coro_tui.app; "
        "print(sorted(m for m in ('typer', 'coro_tui.cli', 'coro_tui._cli_jobs') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_bare_coro_without_a_terminal_says_so_and_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "coro_tui"], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 2 and "the TUI needs a terminal" in done.stderr
