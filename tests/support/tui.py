"""Fixtures for TUI tests: a real engine with jobs, reached through either client kind.

``tui_rig`` is parametrized ``local`` / ``remote``: the same test runs once against a
:class:`~coro_tui.client.LocalClient` in this process and once against a
:class:`~coro_tui.client.RemoteClient` talking to a real :class:`~engine.api.ApiServer` over
loopback HTTP. Jobs run the test workflow of :mod:`tests.support.engine` (``spec`` →
``build``, with an interactive checkpoint → ``review``) on a :class:`ScriptedExecutor`.

Registered for every test through ``pytest_plugins`` in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from coro_tui.client import EngineClient
from engine.runtime import Engine
from state import Job, JobInput, JobStatus
from tests.support.engine import ScriptedExecutor, write_config, write_intelligence

__all__ = ["TuiRig", "tui_rig"]

WORKFLOW_PATH = "workflows/test/workflow.md"


@dataclass
class TuiRig:
    """A started engine, the client under test, and the scripted executor behind the jobs."""

    kind: str
    engine: Engine
    client: EngineClient
    executor: ScriptedExecutor
    home: Path

    async def start_job(self, job_id: str, *, interactive: bool = False, **params: Any) -> Job:
        """Create a job on the test workflow (``params`` default to ``repo=svc``)."""
        spec = JobInput(
            workflow_path=WORKFLOW_PATH, interactive=interactive, params={"repo": "svc", **params}
        )
        return await self.engine.create_job(spec, job_id=job_id)

    async def wait(self, job_id: str, predicate: Callable[[Job], bool], within: float = 20) -> Job:
        try:
            with anyio.fail_after(within):
                return await self.engine.wait_until(job_id, predicate)
        except TimeoutError:
            job = await self.engine.store.get_job(job_id)
            state = "no such job" if job is None else f"{job.status.value} in {job.phase}"
            log = await self.engine.store.get_log(job_id)
            raise AssertionError(f"job {job_id} is {state}; its log: {log[-10:]}") from None

    async def job_at_checkpoint(self, job_id: str) -> Job:
        """A job parked at the ``build`` checkpoint, waiting for the developer's approval."""
        from engine.runner import CHECKPOINT_PREFIX

        await self.start_job(job_id, interactive=True)
        return await self.wait(
            job_id, lambda j: (j.awaiting_event or "").startswith(CHECKPOINT_PREFIX)
        )

    async def finished_job(self, job_id: str) -> Job:
        await self.start_job(job_id)
        return await self.wait(job_id, lambda j: j.status is JobStatus.COMPLETE)


@pytest.fixture(params=["local", "remote"])
async def tui_rig(request: pytest.FixtureRequest, coro_home: Path) -> AsyncIterator[TuiRig]:
    from coro_tui.client import LocalClient, RemoteClient
    from engine.api import ApiServer

    write_intelligence(coro_home)
    write_config(coro_home, jobs={"idleWatchdog": {"enabled": False}})
    executor = ScriptedExecutor()
    engine = Engine(coro_home, executors=executor.registry(), watch_config=False)
    await engine.start()
    server: ApiServer | None = None
    client: EngineClient
    try:
        if request.param == "local":
            client = LocalClient(engine)
        else:
            server = ApiServer(engine, port=0, mode="tui")
            await server.start()
            client = RemoteClient(server.url, server.token)
        yield TuiRig(request.param, engine, client, executor, coro_home)
        await client.aclose()
    finally:
        if server is not None:
            await server.stop()
        await engine.stop(grace=1)
