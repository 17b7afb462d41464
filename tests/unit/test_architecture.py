"""The import arrows of DESIGN.md §3, checked two ways: statically and in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("coro_tui", "engine", "state", "cloud_client", "intelligence_base", "cloud_server")

#: Which of our packages each package may import (itself always allowed).
ALLOWED = {
    "coro_tui": {"engine", "state", "intelligence_base", "cloud_client"},
    "engine": {"state", "intelligence_base"},
    "state": set(),
    "cloud_client": {"state"},
    "intelligence_base": set(),
    "cloud_server": {"state"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_along_the_arrows(package: str) -> None:
    forbidden = set(PACKAGES) - ALLOWED[package] - {package}
    if package != "coro_tui":
        forbidden.add("textual")
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _sources(package)
        for name in _imports(path) & forbidden
    }
    assert not offenders, sorted(offenders)


def test_the_architecture_test_sees_every_package() -> None:
    assert all(_sources(p) for p in PACKAGES)


_PROBE = """
import importlib, json, pkgutil, sys
loaded = {}
for top in ("engine", "state", "intelligence_base", "cloud_client", "cloud_server"):
    package = importlib.import_module(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        importlib.import_module(info.name)
heavy = ("textual", "anthropic", "mcp", "starlette", "uvicorn")
heavy = sorted(m for m in heavy if m in sys.modules)
print(json.dumps(heavy))
"""


def test_importing_every_engine_and_state_module_loads_nothing_heavy() -> None:
    """``textual`` never; ``anthropic``/``mcp``/servers only once a phase or the API runs."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
