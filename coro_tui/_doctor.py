"""``coro doctor``: a health report on the local installation, with fixes for what is wrong."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from typing import Literal

import typer

from engine._version import __version__
from engine.config import load_config
from engine.errors import CoroError
from engine.paths import CoroPaths
from state import SqliteStateBackend, StateError

Level = Literal["ok", "warn", "error"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: Level
    detail: str


async def _checks() -> list[Check]:
    paths = CoroPaths.from_home()
    checks = [Check("coro", "ok", f"version {__version__}")]
    if paths.home.exists():
        mode = paths.home.stat().st_mode & 0o777
        level: Level = "ok" if mode & 0o077 == 0 else "warn"
        hint = "" if level == "ok" else f" (others can read it: chmod 700 {paths.home})"
        checks.append(Check("home", level, f"{paths.home} mode {mode:o}{hint}"))
    else:
        checks.append(Check("home", "ok", f"{paths.home} (not created yet)"))
    config = None
    try:
        config = load_config(paths.config_file)
        exists = paths.config_file.exists()
        checks.append(
            Check("config", "ok", f"{paths.config_file}" + ("" if exists else " (defaults)"))
        )
    except CoroError as exc:
        checks.append(Check("config", "error", exc.message))
    if config is not None:
        paths = CoroPaths.from_home(paths.home, config)
    if paths.state_db.exists():
        store = SqliteStateBackend(paths.state_db)
        try:
            await store.open()
            jobs = await store.count_jobs()
            checks.append(Check("state", "ok", f"{paths.state_db}: {jobs} jobs"))
        except StateError as exc:
            checks.append(Check("state", "error", exc.message))
        except sqlite3.Error as exc:
            checks.append(Check("state", "error", f"{paths.state_db}: {exc}"))
        finally:
            await store.close()
    else:
        checks.append(Check("state", "ok", f"{paths.state_db} (not created yet)"))
    return checks


async def run_doctor(*, as_json: bool) -> int:
    """Print the report; returns the exit code (1 when any check is an error)."""
    checks = await _checks()
    if as_json:
        typer.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for check in checks:
            mark = {"ok": "ok  ", "warn": "warn", "error": "FAIL"}[check.level]
            typer.echo(f"{mark}  {check.name:<7} {check.detail}")
    return 1 if any(c.level == "error" for c in checks) else 0
