"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

pytest_plugins = ["tests.support.tui"]


@pytest.fixture
def coro_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh, empty ``CORO_HOME`` for one test."""
    home = tmp_path / "coro-home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("CORO_HOME", str(home))
    yield home
