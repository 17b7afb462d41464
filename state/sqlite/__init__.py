"""The SQLite state backend (``$CORO_HOME/state.db``)."""

from __future__ import annotations

from state.sqlite._schema import SCHEMA_VERSION
from state.sqlite.backend import SqliteStateBackend

__all__ = ["SCHEMA_VERSION", "SqliteStateBackend"]
