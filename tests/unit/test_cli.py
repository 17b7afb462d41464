"""The ``coro`` console script: version, help, and honest failures for what is not built."""

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


def test_bare_coro_says_the_tui_is_not_built_yet() -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    assert "TUI is not built yet" in result.output


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
