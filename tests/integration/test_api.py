"""The HTTP API end to end: a real uvicorn on port 0, an httpx2 client, a real SQLite engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from engine.api import ApiServer, ensure_token, read_token
from engine.config import MASK, load_config
from engine.intelligence import base_layer
from engine.runtime import Engine
from state import Artifact, JobStatus
from tests.support.engine import ScriptedExecutor, write_config, write_intelligence

WORKFLOW_PATH = "workflows/test/workflow.md"
SECRET = "ghp_secret_value_123456"


@dataclass
class Api:
    engine: Engine
    server: ApiServer
    client: httpx2.AsyncClient
    executor: ScriptedExecutor

    async def create(self, **body: Any) -> dict[str, Any]:
        payload = {"workflowPath": WORKFLOW_PATH, "params": {"repo": "acme/svc"}, **body}
        response = await self.client.post("/jobs", json=payload)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def settle(self, job_id: str) -> JobStatus:
        with anyio.fail_after(20):
            job = await self.engine.wait_until(job_id)
        return job.status


@contextlib.asynccontextmanager
async def running_api(home: Path) -> AsyncIterator[Api]:
    """An engine with a scripted executor, and its API on a free port with a client."""
    write_intelligence(home)
    write_config(home, git={"provider": "github", "token": SECRET})
    executor = ScriptedExecutor()
    engine = Engine(home, executors=executor.registry(), watch_config=False)
    await engine.start()
    try:
        async with ApiServer(engine, port=0, heartbeat_seconds=0.2) as server:
            headers = {"Authorization": f"Bearer {server.token}"}
            async with httpx2.AsyncClient(base_url=server.url, headers=headers) as client:
                yield Api(engine, server, client, executor)
    finally:
        await engine.stop(grace=1)


@pytest.fixture
async def api(coro_home: Path) -> AsyncIterator[Api]:
    async with running_api(coro_home) as running:
        yield running


# -- health, token, security ----------------------------------------------------------------------
async def test_health_needs_no_token_and_says_who_answers(api: Api) -> None:
    async with httpx2.AsyncClient(base_url=api.server.url) as anonymous:
        response = await anonymous.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["mode"] == "headless"
    assert body["version"] and body["runnerId"].startswith("runner-")


async def test_the_token_file_is_private_and_reused(api: Api, coro_home: Path) -> None:
    token_file = coro_home / "runner.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(coro_home.stat().st_mode) == 0o700
    assert len(api.server.token) >= 43  # 32 random bytes, base64url
    assert read_token(api.engine.paths) == api.server.token
    assert ensure_token(api.engine.paths) == api.server.token


async def test_every_route_but_health_needs_the_bearer_token(api: Api) -> None:
    async with httpx2.AsyncClient(base_url=api.server.url) as anonymous:
        missing = await anonymous.get("/jobs")
        wrong = await anonymous.get("/jobs", headers={"Authorization": "Bearer nope"})
        in_query = await anonymous.get("/jobs", params={"token": api.server.token})
        basic = await anonymous.get("/jobs", headers={"Authorization": api.server.token})
    assert [r.status_code for r in (missing, wrong, in_query, basic)] == [401] * 4
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "query string" in in_query.json()["error"]
    # A token in the query is refused even alongside a good header.
    both = await api.client.get("/jobs", params={"access_token": api.server.token})
    assert both.status_code == 401
    assert (await api.client.get("/jobs")).status_code == 200


async def test_a_foreign_host_is_refused_before_the_body_is_read(api: Api) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", api.server.port)
    try:
        # Announces a body and never sends it: a server that waited for it would hang.
        writer.write(
            b"POST /jobs HTTP/1.1\r\nHost: evil.example\r\n"
            b"Authorization: Bearer " + api.server.token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n"
        )
        await writer.drain()
        with anyio.fail_after(5):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 403"), head
    # The right port with another name, and a loopback name on another port, are refused too.
    for host in ("evil.example", f"evil.example:{api.server.port}", "127.0.0.1:1"):
        response = await api.client.get("/health", headers={"Host": host})
        assert response.status_code == 403, host
    own = await api.client.get("/health", headers={"Host": f"localhost:{api.server.port}"})
    assert own.is_success


async def test_cross_site_origin_is_refused(api: Api) -> None:
    port = api.server.port
    evil = await api.client.post("/jobs", json={}, headers={"Origin": "https://evil.example"})
    other_port = await api.client.get("/jobs", headers={"Origin": "http://127.0.0.1:1"})
    own = await api.client.get("/jobs", headers={"Origin": f"http://localhost:{port}"})
    assert (evil.status_code, other_port.status_code, own.status_code) == (403, 403, 200)
    assert "access-control-allow-origin" not in own.headers


async def test_state_changing_routes_want_json_and_bounded_bodies(api: Api) -> None:
    text = await api.client.post("/jobs", content=b"{}", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415
    big = json.dumps({"workflowPath": WORKFLOW_PATH, "params": {"x": "a" * (1 << 20)}})
    declared = await api.client.post(
        "/jobs", content=big, headers={"Content-Type": "application/json"}
    )
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(40):
            yield b" " * 32768

    streamed = await api.client.post(
        "/jobs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert await api.engine.store.count_jobs() == 0


async def test_a_body_of_non_json_whitespace_is_not_an_empty_body(api: Api) -> None:
    """JSON whitespace is space, tab, CR and LF; a form feed is not (schemathesis found a
    form-feed body taken as "no body")."""
    headers = {"Content-Type": "application/json"}
    for body in (b"\x0c", b" \x0b ", b"\x1c"):
        refused = await api.client.post("/jobs", content=body, headers=headers)
        assert refused.status_code == 400, body
        assert "not valid JSON" in refused.json()["error"]
    empty = await api.client.post("/jobs", content=b" \r\n\t", headers=headers)
    assert empty.status_code == 201  # no body: a job with the default workflow


async def test_an_unexpected_failure_is_a_json_500_without_internals(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(job_id: str) -> None:
        raise RuntimeError("internal detail /secret/path")

    monkeypatch.setattr(api.engine.store, "get_job", broken)
    response = await api.client.get("/jobs/some-job")
    assert response.status_code == 500
    assert "secret" not in response.text and "Traceback" not in response.text
    assert response.json()["error"]
    assert "internal detail" in caplog.text


# -- jobs -----------------------------------------------------------------------------------------
async def test_create_get_and_list_jobs(api: Api) -> None:
    created = await api.create(jobId="one-job")
    assert created["jobId"] == created["id"] == "one-job"
    assert created["streamUrl"] == "/jobs/one-job/stream"
    assert created["workflowPath"] == WORKFLOW_PATH
    assert await api.settle("one-job") is JobStatus.COMPLETE
    await api.create(jobId="two-job", interactive=True)
    assert await api.settle("two-job") is JobStatus.AWAITING_DEVELOPER_INPUT

    got = await api.client.get("/jobs/one-job")
    assert got.status_code == 200 and got.json()["status"] == "complete"
    listed = (await api.client.get("/jobs")).json()
    assert [j["id"] for j in listed["jobs"]] == ["two-job", "one-job"]
    assert listed["total"] == 2 and listed["next"] is None
    done = (await api.client.get("/jobs", params={"status": "complete"})).json()
    assert [j["id"] for j in done["jobs"]] == ["one-job"] and done["total"] == 1
    page = (await api.client.get("/jobs", params={"limit": 1})).json()
    assert [j["id"] for j in page["jobs"]] == ["two-job"] and page["next"] == 1
    page2 = (await api.client.get("/jobs", params={"limit": 1, "offset": 1})).json()
    assert [j["id"] for j in page2["jobs"]] == ["one-job"]
    by_workflow = (await api.client.get("/jobs", params={"workflow": "workflows/x.md"})).json()
    last = await api.engine.store.last_global_seq()
    assert by_workflow == {"jobs": [], "total": 0, "next": None, "lastGlobalSeq": last}


async def test_job_errors_name_the_problem(api: Api) -> None:
    missing = await api.client.get("/jobs/no-such-job")
    assert missing.status_code == 404 and "no-such-job" in missing.json()["error"]
    escape = await api.client.post("/jobs", json={"workflowPath": "../../etc/workflow.md"})
    assert escape.status_code == 400 and escape.json()["field"] == "workflowPath"
    unknown = await api.client.post("/jobs", json={"workflowPath": "workflows/nope/workflow.md"})
    assert unknown.status_code == 400 and unknown.json()["field"] == "workflowPath"
    wrong_type = await api.client.post("/jobs", json={"interactive": "maybe"})
    assert wrong_type.status_code == 422 and wrong_type.json()["field"] == "interactive"
    not_object = await api.client.post("/jobs", json=[1, 2])
    assert not_object.status_code == 422
    # a number is no date-time, whatever lax parsing would make of it
    epoch = await api.client.post(
        "/jobs", json={"initialInsights": [{"category": "c", "summary": "s", "detail": "d",
                                            "decidedAt": 0}]},
    )  # fmt: skip
    assert epoch.status_code == 422 and epoch.json()["field"] == "initialInsights.0.decidedAt"
    bad_json = await api.client.post(
        "/jobs", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    bad_limit = await api.client.get("/jobs", params={"limit": "many"})
    assert bad_limit.status_code == 422 and bad_limit.json()["field"] == "limit"
    await api.create(jobId="dup-job")
    duplicate = await api.client.post(
        "/jobs", json={"jobId": "dup-job", "workflowPath": WORKFLOW_PATH}
    )
    assert duplicate.status_code == 409
    unknown_route = await api.client.get("/nothing-here")
    assert unknown_route.status_code == 404 and unknown_route.json()["error"]


async def test_checkpoint_approve_resume_message_and_refusals(api: Api) -> None:
    await api.create(jobId="gate-job", interactive=True)
    assert await api.settle("gate-job") is JobStatus.AWAITING_DEVELOPER_INPUT

    bad_mode = await api.client.post("/jobs/gate-job/message", json={"text": "hi", "mode": "x"})
    assert bad_mode.status_code == 422 and bad_mode.json()["field"] == "mode"
    empty = await api.client.post("/jobs/gate-job/message", json={"text": ""})
    assert empty.status_code == 422 and empty.json()["field"] == "text"
    extra = await api.client.post("/jobs/gate-job/approve", json={"sudo": True})
    assert extra.status_code == 422 and extra.json()["field"] == "sudo"

    approved = await api.client.post("/jobs/gate-job/approve", json={"by": "alice"})
    assert approved.status_code == 200, approved.text
    assert await api.settle("gate-job") is JobStatus.COMPLETE

    again = await api.client.post("/jobs/gate-job/approve", json={})
    resume = await api.client.post("/jobs/gate-job/resume", json={})
    message = await api.client.post("/jobs/gate-job/message", json={"text": "more"})
    pause = await api.client.post("/jobs/gate-job/pause", json={})
    cancel = await api.client.post("/jobs/gate-job/cancel", json={})
    for refused in (again, resume, message, pause, cancel):
        assert refused.status_code == 409, refused.text
        assert "complete" in refused.json()["error"]
    for action in ("approve", "resume", "message", "pause", "cancel"):
        body = {"text": "x"} if action == "message" else {}
        response = await api.client.post(f"/jobs/ghost-job/{action}", json=body)
        assert response.status_code == 404, action


async def test_message_resumes_a_parked_job_and_interactive_can_be_turned_off(api: Api) -> None:
    await api.create(jobId="msg-job", interactive=True)
    assert await api.settle("msg-job") is JobStatus.AWAITING_DEVELOPER_INPUT
    sent = await api.client.post(
        "/jobs/msg-job/message", json={"text": "use the cache", "mode": "queue"}
    )
    assert sent.status_code == 202 and sent.json()["messageId"].startswith("msg-")
    assert await api.settle("msg-job") in (JobStatus.COMPLETE, JobStatus.AWAITING_DEVELOPER_INPUT)

    await api.create(jobId="toggle-job", interactive=True)
    assert await api.settle("toggle-job") is JobStatus.AWAITING_DEVELOPER_INPUT
    bad = await api.client.patch("/jobs/toggle-job/interactive", json={"interactive": "no"})
    assert bad.status_code == 422 and bad.json()["field"] == "interactive"
    off = await api.client.patch("/jobs/toggle-job/interactive", json={"interactive": False})
    assert off.status_code == 200 and off.json()["interactive"] is False
    assert await api.settle("toggle-job") is JobStatus.COMPLETE


async def test_pause_then_cancel_a_parked_job(api: Api) -> None:
    await api.create(jobId="stop-job", interactive=True)
    assert await api.settle("stop-job") is JobStatus.AWAITING_DEVELOPER_INPUT
    paused = await api.client.post("/jobs/stop-job/pause", json={})
    assert paused.status_code == 409  # already parked: nothing to pause
    cancelled = await api.client.post("/jobs/stop-job/cancel", json={"reason": "not needed"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


# -- artefacts ------------------------------------------------------------------------------------
async def _with_artifacts(api: Api) -> Path:
    await api.create(jobId="art-job")
    assert await api.settle("art-job") is JobStatus.COMPLETE
    job_dir = api.engine.paths.job_dir("art-job")
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "plan.md").write_text("# Plan\n")
    (job_dir / "blob.bin").write_bytes(b"\x00\x01")
    job = await api.engine.store.get_job("art-job")
    assert job is not None
    job.artifacts += [
        Artifact(id="art-plan", kind="plan-md", title="Plan", data={"path": "plan.md"}),
        Artifact(id="art-bin", kind="blob", title="Blob", data={"path": "blob.bin"}),
        Artifact(id="art-out", kind="x", title="Out", data={"path": "../../../etc/hosts"}),
        Artifact(id="art-link", kind="pr-link", title="PR", data={"url": "https://x"}),
    ]
    await api.engine.store.save_job(job, durable=True)
    return job_dir


async def test_artifact_content_read_and_edit(api: Api) -> None:
    job_dir = await _with_artifacts(api)
    url = "/jobs/art-job/artifacts/art-plan/content"
    got = await api.client.get(url)
    assert got.status_code == 200 and got.text == "# Plan\n"
    assert got.headers["content-type"].startswith("text/markdown")
    put = await api.client.put(url, json={"content": "# Plan v2\n", "editedBy": "bob"})
    assert put.status_code == 200 and put.json()["editedBy"] == "bob"
    assert (job_dir / "plan.md").read_text() == "# Plan v2\n"
    job = await api.engine.store.get_job("art-job")
    assert job is not None and job.artifacts[0].edited_at is not None
    log = await api.engine.store.get_log(job.id)
    assert any("[artifact-edit] art-plan" in line for line in log)


async def test_artifact_errors(api: Api) -> None:
    await _with_artifacts(api)
    base = "/jobs/art-job/artifacts"
    assert (await api.client.get(f"{base}/art-nope/content")).status_code == 404
    assert (await api.client.get(f"{base}/art-link/content")).status_code == 404
    assert (await api.client.get(f"{base}/art-out/content")).status_code == 403
    outside = await api.client.put(f"{base}/art-out/content", json={"content": "x"})
    assert outside.status_code == 403
    binary = await api.client.put(f"{base}/art-bin/content", json={"content": "x"})
    assert binary.status_code == 400
    huge = "a" * (2 * 1024 * 1024 + 1)
    too_big = await api.client.put(f"{base}/art-plan/content", json={"content": huge})
    assert too_big.status_code == 413
    assert (await api.client.get("/jobs/nope/artifacts/a/content")).status_code == 404


# -- workflows, config, openapi -------------------------------------------------------------------
async def test_workflows_lists_the_layers_workflows(api: Api) -> None:
    body = (await api.client.get("/workflows")).json()
    paths = [w["path"] for w in body["workflows"]]
    assert WORKFLOW_PATH in paths
    test = next(w for w in body["workflows"] if w["path"] == WORKFLOW_PATH)
    assert test["phases"] == ["spec", "build", "review"]
    assert test["layer"] == f"tenant:{api.engine.overlays.tenant_id}"


async def test_workflows_name_the_layer_that_supplies_each(api: Api, coro_home: Path) -> None:
    tenant_root = coro_home / "intelligence"
    body = (await api.client.get("/workflows")).json()
    for workflow in body["workflows"]:
        in_tenant = (tenant_root / workflow["path"]).is_file()
        assert workflow["layer"] == (
            f"tenant:{api.engine.overlays.tenant_id}" if in_tenant else "base"
        ), workflow
        if not in_tenant:
            assert (base_layer().root / workflow["path"]).is_file()


async def test_config_is_redacted_and_a_put_keeps_masked_secrets(api: Api, coro_home: Path) -> None:
    got = await api.client.get("/config")
    config = got.json()["config"]
    assert config["git"]["token"] == MASK and SECRET not in got.text
    config["jobs"]["maxConcurrent"] = 2
    put = await api.client.put("/config", json=config)
    assert put.status_code == 200, put.text
    assert put.json()["applied"] is True and put.json()["config"]["git"]["token"] == MASK
    saved = load_config(coro_home / "config.json")
    assert saved.git.token == SECRET and saved.jobs.max_concurrent == 2
    assert api.engine.config.jobs.max_concurrent == 2
    assert stat.S_IMODE((coro_home / "config.json").stat().st_mode) == 0o600


async def test_an_invalid_config_put_names_the_field_and_changes_nothing(
    api: Api, coro_home: Path
) -> None:
    before = (coro_home / "config.json").read_bytes()
    config = (await api.client.get("/config")).json()["config"]
    config["jobs"]["maxConcurrent"] = "lots"
    put = await api.client.put("/config", json=config)
    assert put.status_code == 422 and put.json()["field"] == "jobs.maxConcurrent"
    assert (coro_home / "config.json").read_bytes() == before


async def test_openapi_describes_every_route(api: Api) -> None:
    from starlette.routing import Route

    from engine.api._app import ApiSettings, build_app

    doc = (await api.client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    settings = ApiSettings(mode="x", runner_id="x", heartbeat=1, closing=asyncio.Event())
    app = build_app(api.engine, settings)
    for route in app.routes:
        assert isinstance(route, Route)
        path = route.path
        methods = (route.methods or set()) - {"HEAD"}
        for method in methods:
            assert method.lower() in doc["paths"][path], (method, path)
    for path_item in doc["paths"].values():
        for op in path_item.values():
            body = op.get("requestBody")
            if body:
                ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
                assert ref in doc["components"]["schemas"]
