"""The SQLite backend's side tables: external references and legacy mappings, proposals,
plan-mode investigations and the durable inbox. Mixed into :class:`SqliteStateBackend`."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from state._common import BackendBase, apply_patch
from state.errors import JobNotFoundError, StateError
from state.models import ExternalRef, InboundEvent, InboxItem, Investigation, Job, Proposal, utcnow

if TYPE_CHECKING:
    import asyncio

    import aiosqlite

__all__ = ["SqliteRecords"]


class SqliteRecords(BackendBase):
    """Everything stored beside jobs; relies on the backend's connection helpers."""

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

    # -- mappings -----------------------------------------------------------------------------
    async def _map(self, sql: str, params: Sequence[Any], job_id: str) -> None:
        try:
            await self._transaction([(sql, params)])
        except StateError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise JobNotFoundError(job_id) from exc.__cause__
            raise

    async def _job_by(self, sql: str, params: Sequence[Any]) -> Job | None:
        rows = await self._read(sql, params)
        return await self.get_job(rows[0][0]) if rows else None

    async def map_external_ref(self, ref: ExternalRef, job_id: str) -> None:
        await self._map(
            "INSERT OR REPLACE INTO external_refs "
            "(plugin_id, kind, repo_key, external_id, url, job_id) VALUES (?,?,?,?,?,?)",
            (*ref.key, ref.url, job_id),
            job_id,
        )

    async def get_job_by_external_ref(self, ref: ExternalRef) -> Job | None:
        return await self._job_by(
            "SELECT job_id FROM external_refs WHERE plugin_id = ? AND kind = ? AND repo_key = ? "
            "AND external_id = ?",
            ref.key,
        )

    async def list_external_refs(self, job_id: str) -> list[ExternalRef]:
        rows = await self._read(
            "SELECT plugin_id, kind, repo_key, external_id, url FROM external_refs "
            "WHERE job_id = ? ORDER BY rowid",
            (job_id,),
        )
        return [
            ExternalRef(plugin_id=p, kind=k, repo_key=r, external_id=e, url=u)
            for p, k, r, e, u in rows
        ]

    async def map_pr_to_job(self, pr_id: int | str, job_id: str) -> None:
        await self._map(
            "INSERT OR REPLACE INTO pr_jobs (pr_id, job_id) VALUES (?, ?)",
            (str(pr_id), job_id),
            job_id,
        )

    async def get_job_by_pr(self, pr_id: int | str) -> Job | None:
        return await self._job_by("SELECT job_id FROM pr_jobs WHERE pr_id = ?", (str(pr_id),))

    async def map_jira_ticket_to_job(self, ticket_id: str, job_id: str) -> None:
        await self._map(
            "INSERT OR REPLACE INTO ticket_jobs (ticket_id, job_id) VALUES (?, ?)",
            (ticket_id, job_id),
            job_id,
        )

    async def get_job_by_jira_ticket(self, ticket_id: str) -> Job | None:
        return await self._job_by(
            "SELECT job_id FROM ticket_jobs WHERE ticket_id = ?", (ticket_id,)
        )

    async def map_repo_to_job(self, repo_slug: str, job_id: str) -> None:
        await self._map(
            "INSERT OR REPLACE INTO repo_jobs (repo_slug, job_id) VALUES (?, ?)",
            (repo_slug, job_id),
            job_id,
        )

    async def get_job_by_repo(self, repo_slug: str) -> Job | None:
        return await self._job_by("SELECT job_id FROM repo_jobs WHERE repo_slug = ?", (repo_slug,))

    # -- proposals ----------------------------------------------------------------------------
    async def create_proposal(self, proposal: Proposal) -> Proposal:
        try:
            await self._transaction(
                [
                    (
                        "INSERT INTO proposals (tenant_id, id, job_id, status, created_at, "
                        "updated_at, data) VALUES (?,?,?,?,?,?,?)",
                        (
                            proposal.tenant_id,
                            proposal.id,
                            proposal.job_id,
                            proposal.status,
                            proposal.created_at.isoformat(),
                            proposal.updated_at.isoformat(),
                            proposal.model_dump_json(),
                        ),
                    )
                ]
            )
        except StateError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise StateError(f"a proposal with id {proposal.id!r} already exists") from exc
            raise
        return proposal

    async def list_proposals(self, tenant_id: str, status: str | None = None) -> list[Proposal]:
        sql = "SELECT data FROM proposals WHERE tenant_id = ?"
        params: list[Any] = [tenant_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        rows = await self._read(sql + " ORDER BY created_at DESC", params)
        return [Proposal.model_validate_json(data) for (data,) in rows]

    async def get_proposal(self, tenant_id: str, proposal_id: str) -> Proposal | None:
        rows = await self._read(
            "SELECT data FROM proposals WHERE tenant_id = ? AND id = ?", (tenant_id, proposal_id)
        )
        return Proposal.model_validate_json(rows[0][0]) if rows else None

    async def update_proposal(
        self, tenant_id: str, proposal_id: str, updates: Mapping[str, Any]
    ) -> Proposal:
        current = await self.get_proposal(tenant_id, proposal_id)
        if current is None:
            raise StateError(f"no proposal {proposal_id!r} for tenant {tenant_id!r}")
        updated = apply_patch(current, updates, read_only={"id", "tenant_id", "created_at"})
        await self._transaction(
            [
                (
                    "UPDATE proposals SET status = ?, updated_at = ?, data = ? "
                    "WHERE tenant_id = ? AND id = ?",
                    (
                        updated.status,
                        updated.updated_at.isoformat(),
                        updated.model_dump_json(),
                        tenant_id,
                        proposal_id,
                    ),
                )
            ]
        )
        return updated

    # -- investigations -----------------------------------------------------------------------
    async def upsert_investigation(self, investigation: Investigation) -> Investigation:
        investigation.updated_at = utcnow()
        await self._transaction(
            [
                (
                    "INSERT INTO investigations (id, status, created_at, updated_at, data) "
                    "VALUES (?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET status = excluded.status, "
                    "updated_at = excluded.updated_at, data = excluded.data",
                    (
                        investigation.id,
                        investigation.status,
                        investigation.created_at.isoformat(),
                        investigation.updated_at.isoformat(),
                        investigation.model_dump_json(),
                    ),
                )
            ]
        )
        return investigation

    async def get_investigation(self, investigation_id: str) -> Investigation | None:
        rows = await self._read("SELECT data FROM investigations WHERE id = ?", (investigation_id,))
        return Investigation.model_validate_json(rows[0][0]) if rows else None

    async def list_investigations(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[Investigation]:
        sql = "SELECT data FROM investigations"
        params: list[Any] = []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(status)
        rows = await self._read(sql + " ORDER BY updated_at DESC LIMIT ?", [*params, limit])
        return [Investigation.model_validate_json(data) for (data,) in rows]

    async def delete_investigation(self, investigation_id: str) -> bool:
        counts = await self._transaction(
            [("DELETE FROM investigations WHERE id = ?", (investigation_id,))]
        )
        return counts[0] > 0

    # -- inbox --------------------------------------------------------------------------------
    async def enqueue(
        self, event: InboundEvent, dedupe_key: str, *, job_id: str | None = None
    ) -> InboxItem | None:
        db = self._writer()
        async with self._write_lock:
            try:
                cursor = await db.execute(
                    "INSERT OR IGNORE INTO inbox (dedupe_key, job_id, received_at, data) "
                    "VALUES (?, ?, ?, ?)",
                    (dedupe_key, job_id, time.time(), event.model_dump_json()),
                )
            except sqlite3.DatabaseError as exc:
                raise self._translate(exc) from exc
        if cursor.rowcount == 0:
            return None
        assert cursor.lastrowid is not None
        return InboxItem(id=cursor.lastrowid, dedupe_key=dedupe_key, job_id=job_id, event=event)

    async def claim(
        self,
        owner: str,
        *,
        job_id: str | None = None,
        limit: int = 100,
        lease_seconds: float = 300.0,
    ) -> list[InboxItem]:
        db = self._writer()
        now = time.time()
        sql = (
            "SELECT id, dedupe_key, job_id, attempts, data FROM inbox WHERE "
            "(state = 'pending' OR (state = 'claimed' AND lease_until < ?))"
        )
        params: list[Any] = [now]
        if job_id is not None:
            sql += " AND job_id = ?"
            params.append(job_id)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        async with self._write_lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                rows = list(await db.execute_fetchall(sql, params))
                await db.executemany(
                    "UPDATE inbox SET state = 'claimed', claimed_by = ?, lease_until = ?, "
                    "attempts = attempts + 1 WHERE id = ?",
                    [(owner, now + lease_seconds, row[0]) for row in rows],
                )
                await db.execute("COMMIT")
            except BaseException as exc:
                await self._rollback(db)
                if isinstance(exc, sqlite3.DatabaseError):
                    raise self._translate(exc) from exc
                raise
        return [
            InboxItem(
                id=item_id,
                dedupe_key=key,
                job_id=owner_job,
                event=InboundEvent.model_validate_json(data),
                state="claimed",
                attempts=attempts + 1,
                claimed_by=owner,
            )
            for item_id, key, owner_job, attempts, data in rows
        ]

    async def ack(self, item_ids: Iterable[int]) -> None:
        ids = list(item_ids)
        if ids:
            await self._transaction(
                [
                    ("UPDATE inbox SET state = 'done', lease_until = NULL WHERE id = ?", (i,))
                    for i in ids
                ]
            )

    async def release(self, item_ids: Iterable[int]) -> None:
        ids = list(item_ids)
        if ids:
            await self._transaction(
                [
                    (
                        "UPDATE inbox SET state = 'pending', claimed_by = NULL, "
                        "lease_until = NULL WHERE id = ? AND state = 'claimed'",
                        (i,),
                    )
                    for i in ids
                ]
            )

    async def pending_inbox(self, job_id: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM inbox WHERE state != 'done'"
        params: list[Any] = []
        if job_id is not None:
            sql += " AND job_id = ?"
            params.append(job_id)
        rows = await self._read(sql, params)
        return int(rows[0][0])
