"""The SQLite backend's local pull requests (the local SCM's review records), one JSON
document per row. Mixed into :class:`SqliteStateBackend`."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

from state.backend import StalePullRequestError
from state.models import LocalPullRequest, utcnow

if TYPE_CHECKING:
    import asyncio

    import aiosqlite

    from state.errors import StateError

__all__ = ["SqliteLocalPrs"]


def _pr_from_row(version: int, data: str) -> LocalPullRequest:
    pr = LocalPullRequest.model_validate_json(data)
    pr.version = version
    return pr


class SqliteLocalPrs:
    """``create_local_pr`` and friends; relies on the backend's connection helpers."""

    if TYPE_CHECKING:
        _write_lock: asyncio.Lock

        def _writer(self) -> aiosqlite.Connection: ...

        async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        async def _transaction(
            self, statements: Sequence[tuple[str, Sequence[Any]]]
        ) -> list[int]: ...

        def _translate(self, exc: sqlite3.DatabaseError) -> StateError: ...

        @staticmethod
        async def _rollback(db: aiosqlite.Connection) -> None: ...

    async def create_local_pr(self, pr: LocalPullRequest) -> LocalPullRequest:
        db = self._writer()
        stored = pr.model_copy(deep=True)
        stored.version = 1
        stored.updated_at = utcnow()
        async with self._write_lock:
            # The next id is read and taken inside one immediate transaction, so two creators
            # (in this process or another) can never be given the same one.
            await db.execute("BEGIN IMMEDIATE")
            try:
                rows = await db.execute_fetchall(
                    "SELECT COALESCE(MAX(id), 0) FROM local_prs WHERE repo = ?", (pr.repo,)
                )
                stored.id = int(next(iter(rows))[0]) + 1
                await db.execute(
                    "INSERT INTO local_prs (repo, id, version, state, created_at, updated_at, "
                    "data) VALUES (?,?,?,?,?,?,?)",
                    (
                        stored.repo,
                        stored.id,
                        1,
                        stored.state,
                        stored.created_at.astimezone(UTC).isoformat(),
                        stored.updated_at.astimezone(UTC).isoformat(),
                        stored.model_dump_json(),
                    ),
                )
                await db.execute("COMMIT")
            except BaseException as exc:
                await self._rollback(db)
                if isinstance(exc, sqlite3.DatabaseError):
                    raise self._translate(exc) from exc
                raise
        pr.id, pr.version, pr.updated_at = stored.id, stored.version, stored.updated_at
        return pr

    async def get_local_pr(self, repo: str, pr_id: int) -> LocalPullRequest | None:
        rows = await self._read(
            "SELECT version, data FROM local_prs WHERE repo = ? AND id = ?", (repo, pr_id)
        )
        return _pr_from_row(*rows[0]) if rows else None

    async def save_local_pr(self, pr: LocalPullRequest) -> LocalPullRequest:
        saved = pr.model_copy(deep=True)
        saved.version = pr.version + 1
        saved.updated_at = utcnow()
        counts = await self._transaction(
            [
                (
                    "UPDATE local_prs SET version = ?, state = ?, updated_at = ?, data = ? "
                    "WHERE repo = ? AND id = ? AND version = ?",
                    (
                        saved.version,
                        saved.state,
                        saved.updated_at.astimezone(UTC).isoformat(),
                        saved.model_dump_json(),
                        pr.repo,
                        pr.id,
                        pr.version,
                    ),
                )
            ]
        )
        if counts[0] != 1:
            rows = await self._read(
                "SELECT version FROM local_prs WHERE repo = ? AND id = ?", (pr.repo, pr.id)
            )
            raise StalePullRequestError(pr.repo, pr.id, pr.version, rows[0][0] if rows else None)
        pr.version, pr.updated_at = saved.version, saved.updated_at
        return pr

    async def list_local_prs(
        self, *, repo: str | None = None, state: str | None = None
    ) -> list[LocalPullRequest]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("repo", repo), ("state", state)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = await self._read(
            f"SELECT version, data FROM local_prs{where} ORDER BY created_at DESC, id DESC",
            params,
        )
        return [_pr_from_row(version, data) for version, data in rows]
