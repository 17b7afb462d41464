"""Schemathesis fuzzes the API from its OpenAPI document: no 5xx, no answer the document denies.

``schema.parametrize()`` makes one test per documented operation and runs schemathesis' phases
(the document's examples, its coverage scenarios — boundary values, missing and undeclared
methods — then random positive and negative requests), checking every response with all of its
default checks: not a server error, a documented status code, content type and body, valid data
accepted, invalid data refused, ``405`` with ``Allow`` for an undeclared method.

Schemathesis sends its requests synchronously (``requests``), so the engine and its server
cannot share the test's thread: :func:`fuzz_target` runs ``running_api`` — the same engine and
``ApiServer`` as ``test_api.py`` — in an event loop of its own on a worker thread, and the test
talks to it over loopback like any client.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.core.failures import Failure
from schemathesis.openapi.checks import RejectedPositiveData

from engine.api._openapi import openapi_document
from state import Artifact, JobStatus
from tests.integration.test_api import running_api

pytestmark = pytest.mark.slow

#: Jobs made before the fuzzing starts, so a generated path can name one that exists.
DONE_JOB = "fuzz-done"
PARKED_JOB = "fuzz-parked"
PLAN_ARTIFACT = "fuzz-plan"
_START_TIMEOUT = 30
_NAMES_THAT_MAY_NOT_EXIST = frozenset({"workflowPath", "fromPhase"})

CONFIG = schemathesis.Config.from_dict(
    {
        # The test sends the bearer token with every request, so generating (and negating)
        # the Authorization header would only be overwritten.
        "generation": {
            "max-examples": 50,
            "database": "none",
            "with-security-parameters": False,
        },
        # Per-operation phases only: a stateful run chains POST /jobs into every job route and
        # would not fit the time a test may take.
        "phases": {"stateful": {"enabled": False}},
        "request-timeout": 10,
    }
)
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG).exclude(
    # The SSE streams of a live job (and /events) never end: tests/integration/test_api_sse.py
    # covers them, their cursors and their errors.
    path_regex=r"(/events|/stream)$",
)


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    """Keep the generated ids, or name a job (and artefact) that exists."""
    known = [{"job_id": DONE_JOB, "artifact_id": PLAN_ARTIFACT}, {"job_id": PARKED_JOB}]
    if not path_parameters or "job_id" not in path_parameters:
        return st.just(path_parameters)
    choices = [path_parameters]
    for ids in known:
        choices.append(
            {**path_parameters, **{k: v for k, v in ids.items() if k in path_parameters}}
        )
    return st.sampled_from(choices)


@schema.hook
def filter_failure(
    context: schemathesis.HookContext,
    failure: Failure,
    case: schemathesis.Case[Any],
    response: schemathesis.Response,
) -> bool:
    """Keep every failure but two refusals of well-formed requests the document cannot rule out.

    - A workflow or phase that is not there: the document cannot list which workflows and
      phases a runner has; the API answers with a documented 400 naming the field (and the CLI
      makes it a usage error).
    - A config that does not validate: the document describes ``PUT /config``'s body as an
      object (the config's own rules live in ``engine/config``, tested in test_config.py), so a
      generated object may be refused with a documented 422 naming the field at fault.
    """
    if not isinstance(failure, RejectedPositiveData):
        return True
    body = response.json()
    field = body.get("field") if isinstance(body, dict) else None
    if response.status_code == 400:
        return field not in _NAMES_THAT_MAY_NOT_EXIST
    config = case.method == "PUT" and case.path == "/config"
    return not (config and response.status_code == 422 and isinstance(field, str) and field)


@dataclass(frozen=True)
class FuzzTarget:
    url: str
    token: str


async def _serve(
    home: Path, ready: threading.Event, info: list[FuzzTarget], stop: asyncio.Event
) -> None:
    async with running_api(home) as api:
        await api.create(jobId=DONE_JOB)
        await api.create(jobId=PARKED_JOB, interactive=True)
        assert await api.settle(DONE_JOB) is JobStatus.COMPLETE
        assert await api.settle(PARKED_JOB) is JobStatus.AWAITING_DEVELOPER_INPUT
        job_dir = api.engine.paths.job_dir(DONE_JOB)
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "plan.md").write_text("# Plan\n")
        job = await api.engine.store.get_job(DONE_JOB)
        assert job is not None
        job.artifacts.append(
            Artifact(id=PLAN_ARTIFACT, kind="plan-md", title="Plan", data={"path": "plan.md"})
        )
        await api.engine.store.save_job(job, durable=True)
        info.append(FuzzTarget(api.server.url, api.server.token))
        ready.set()
        await stop.wait()


@pytest.fixture
def fuzz_target(coro_home: Path) -> Iterator[FuzzTarget]:
    """The engine and its API, served from an event loop on a worker thread."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()
    info: list[FuzzTarget] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(_serve(coro_home, ready, info, stop))
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=run, name="fuzz-target")
    thread.start()
    ready.wait(_START_TIMEOUT)
    try:
        if errors:
            raise errors[0]
        assert info, "the API did not start"
        yield info[0]
    finally:
        if thread.is_alive() and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(_START_TIMEOUT)
        assert not thread.is_alive(), "the API did not stop"
    if errors:
        raise errors[0]


@schema.parametrize()
# One engine serves all the cases of an operation, on purpose: the jobs it holds are its state.
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzing_finds_no_5xx_and_no_schema_violation(
    case: schemathesis.Case[Any], fuzz_target: FuzzTarget
) -> None:
    case.call_and_validate(
        base_url=fuzz_target.url,
        headers={"Authorization": f"Bearer {fuzz_target.token}"},
    )
