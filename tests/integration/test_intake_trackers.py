"""Plan mode's tracker readers against small fakes of the GitHub and Jira REST APIs served on
loopback, and the tracker tools appearing only when a tracker is configured."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine._serving import InLoopServer, bind_tcp
from engine.config import LocalConfig
from engine.intake._tools import IntakeToolBox
from engine.intake._trackers import tracker_for
from engine.runtime import Engine

TOKEN = "ghp_tracker_token_123"


def _github(request: Request) -> JSONResponse | None:
    if request.headers.get("authorization") != f"Bearer {TOKEN}":
        return JSONResponse({"message": "Bad credentials"}, status_code=401)
    return None


async def gh_issue(request: Request) -> JSONResponse:
    if (refused := _github(request)) is not None:
        return refused
    if request.path_params["number"] != 7:
        return JSONResponse({"message": "Not Found"}, status_code=404)
    return JSONResponse({
        "number": 7, "title": "Users API is hammered", "state": "open",
        "user": {"login": "carol"}, "labels": [{"name": "bug"}],
        "body": "One client sends 900 requests a minute. " + "x" * 9000,
    })  # fmt: skip


async def gh_comments(request: Request) -> JSONResponse:
    if (refused := _github(request)) is not None:
        return refused
    return JSONResponse([
        {"user": {"login": "dave"}, "created_at": "2026-11-01T10:00:00Z", "body": "60/min?"},
    ])  # fmt: skip


async def gh_search(request: Request) -> JSONResponse:
    if (refused := _github(request)) is not None:
        return refused
    assert "repo:acme/svc" in request.query_params["q"]
    return JSONResponse({"items": [{"number": 7, "state": "open", "title": "Users API"}]})


async def jira_issue(request: Request) -> JSONResponse:
    expected = "Basic " + base64.b64encode(b"me@acme.test:jira-token-123").decode()
    if request.headers.get("authorization") != expected:
        return JSONResponse({"errorMessages": ["no"]}, status_code=401)
    return JSONResponse({
        "key": request.path_params["key"],
        "fields": {"summary": "Limit users", "status": {"name": "To Do"},
                   "issuetype": {"name": "Story"}, "description": "Add a limit."},
    })  # fmt: skip


APP = Starlette(
    routes=[
        Route("/repos/acme/svc/issues/{number:int}", gh_issue),
        Route("/repos/acme/svc/issues/{number:int}/comments", gh_comments),
        Route("/search/issues", gh_search),
        Route("/rest/api/2/issue/{key}", jira_issue),
    ]
)


@asynccontextmanager
async def serving() -> AsyncIterator[str]:
    sock = bind_tcp("127.0.0.1", 0)
    server = InLoopServer(APP, sock, name="fake-tracker", http="h11")
    await server.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await server.stop()


def github_config(url: str) -> LocalConfig:
    return LocalConfig.model_validate(
        {"tracker": {"provider": "github",
                     "github": {"token": TOKEN, "repo": "acme/svc", "apiUrl": url}}}
    )  # fmt: skip


async def test_github_issues_are_read_cut_and_searched() -> None:
    async with serving() as url:
        tracker, problem = tracker_for(github_config(url))
        assert tracker is not None and problem is None
        try:
            issue = await tracker.issue("#7")
            assert issue.startswith("#7 Users API is hammered")
            assert "labels: bug" in issue and "cut at 8192 characters" in issue
            assert "dave" in await tracker.comments("7")
            assert "#7 [open] Users API" in await tracker.search("users", 20)
            with pytest.raises(Exception, match="not found"):
                await tracker.issue("8")
        finally:
            await tracker.aclose()


async def test_jira_issues_are_read_with_basic_auth() -> None:
    async with serving() as url:
        config = LocalConfig.model_validate(
            {"tracker": {"provider": "jira", "jira": {"baseUrl": url, "email": "me@acme.test",
                                                      "apiToken": "jira-token-123"}}}
        )  # fmt: skip
        tracker, _ = tracker_for(config)
        assert tracker is not None
        try:
            issue = await tracker.issue("PROJ-12")
            assert issue.startswith("PROJ-12 Limit users") and "status: To Do" in issue
        finally:
            await tracker.aclose()


def test_an_unusable_tracker_config_says_what_is_missing() -> None:
    half = LocalConfig.model_validate({"tracker": {"provider": "github"}})
    assert tracker_for(half) == (None, "tracker.github needs token and repo (owner/name)")
    linear = LocalConfig.model_validate({"tracker": {"provider": "linear"}})
    assert "Linear" in str(tracker_for(linear)[1])
    assert tracker_for(LocalConfig()) == (None, None)


async def test_tracker_tools_exist_only_with_a_tracker(coro_home: Path) -> None:
    engine = Engine(coro_home, watch_config=False)
    await engine.start()
    try:
        plain = IntakeToolBox(config=engine.config, store=engine.store, repo=None)
        assert plain.names == ["list_past_jobs", "get_past_job"]
        async with serving() as url:
            config = github_config(url)
            tracker, _ = tracker_for(config)
            assert tracker is not None
            tools = IntakeToolBox(config=config, store=engine.store, repo=None, tracker=tracker)
            assert "tracker_get_issue" in tools.names
            read = await tools.call("tracker_get_issue", {"key": "7"})
            assert not read.is_error and "Users API" in read.text
            assert TOKEN not in read.text
            missing = await tools.call("tracker_get_issue", {"key": "8"})
            assert missing.is_error and "not found" in missing.text
            await tracker.aclose()
    finally:
        await engine.stop(grace=1)
