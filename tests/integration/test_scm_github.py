"""The GitHub plugin end to end: a fake GitHub API on loopback over real git repositories."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.scm import (
    CloneInfo,
    ScmAuthError,
    ScmConflict,
    ScmError,
    ScmNotFound,
    ScmPlugin,
    ScmRateLimited,
)
from engine.scm.github import GitHubPlugin
from tests.support.fake_github import FakeGitHub

pytestmark = pytest.mark.slow

TOKEN = "ghp_s3cretTok3nThatMustNeverLeak"
REPO = "acme/svc"
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Coro Agent",
    "GIT_AUTHOR_EMAIL": "agent@example.com",
    "GIT_COMMITTER_NAME": "Coro Agent",
    "GIT_COMMITTER_EMAIL": "agent@example.com",
}


class Sleeps(list[float]):
    """An injected ``sleep`` that records how long it was asked to wait, and does not wait."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
async def github(tmp_path: Path) -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub(tmp_path / "host", token=TOKEN)
    fake.create_repo(REPO, {"README.md": "# svc\n", "app.py": "VALUE = 1\n"})
    async with asyncio.timeout(10), fake.serving():
        yield fake


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def plugin(github: FakeGitHub, sleeps: Sleeps) -> AsyncIterator[GitHubPlugin]:
    plugin = GitHubPlugin(token=TOKEN, base_url=github.base_url, sleep=sleeps)
    yield plugin
    await plugin.aclose()


async def git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env={**os.environ, **GIT_ENV, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, f"git {' '.join(args)}: {out.decode()}"
    return out.decode().strip()


async def clone(info: CloneInfo, dest: Path) -> Path:
    await git("clone", "-q", info.url, str(dest), cwd=dest.parent, env=dict(info.env))
    return dest


async def push_branch(
    info: CloneInfo, work: Path, branch: str, files: dict[str, str], *, base: str = "main"
) -> str:
    """Commit ``files`` on a new ``branch`` from ``base`` and push it; the new head sha."""
    await git("checkout", "-q", "-B", branch, f"origin/{base}", cwd=work)
    for name, text in files.items():
        (work / name).write_text(text)
    await git("commit", "-q", "-am", f"Change {', '.join(files)}", cwd=work)
    await git("push", "-q", "origin", branch, cwd=work, env=dict(info.env))
    return await git("rev-parse", "HEAD", cwd=work)


async def test_a_pull_request_from_clone_to_merge(
    plugin: GitHubPlugin, github: FakeGitHub, tmp_path: Path
) -> None:
    assert isinstance(plugin, ScmPlugin)
    info = await plugin.clone_info(REPO)
    assert info.url == f"{github.base_url}/git/{REPO}.git" and info.default_branch == "main"
    work = await clone(info, tmp_path / "work")

    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    config = (work / ".git" / "config").read_text()
    remote = await git("remote", "get-url", "origin", cwd=work)
    for secret in (TOKEN, basic):
        assert secret not in config and secret not in remote

    sha = await push_branch(info, work, "feat/x", {"app.py": "VALUE = 2\n"})
    pr = await plugin.create_pr(
        REPO, title="Bump VALUE", description="Because.", source_branch="feat/x"
    )
    again = await plugin.create_pr(
        REPO,
        title="Bump VALUE",
        description="Because.",
        source_branch="feat/x",
        reviewers=("carol",),
    )
    assert (pr.id, pr.state, pr.source_branch, pr.target_branch) == (1, "open", "feat/x", "main")
    assert again.id == pr.id and again.reviewers == ("carol",)
    assert len(github.pulls[REPO]) == 1
    assert pr.created_at is not None and pr.created_at.tzinfo is not None

    await plugin.post_comment(REPO, pr.id, "Ready for review.")
    github.add_review(REPO, 1, "alice", "COMMENTED", "Looks fine so far")
    github.add_review(REPO, 1, "bob", "CHANGES_REQUESTED", "Rename it")
    github.add_review(REPO, 1, "alice", "APPROVED")
    github.add_check_run(REPO, sha, "tests", status="in_progress")
    status = await plugin.pr_status(REPO, pr.id)
    assert status.approvals == ("alice",) and status.changes_requested == ("bob",)
    assert (status.ci, status.mergeable, status.comment_count) == ("pending", True, 1)

    github.add_review(REPO, 1, "bob", "APPROVED")
    github.check_runs.clear()
    github.add_check_run(REPO, sha, "tests", conclusion="success")
    github.add_check_run(REPO, sha, "lint", conclusion="skipped")
    github.add_check_run(REPO, sha, "types", conclusion="success")  # three runs: two pages
    status = await plugin.pr_status(REPO, pr.id)
    assert set(status.approvals) == {"alice", "bob"} and status.changes_requested == ()
    assert status.ci == "success"

    merged_pr = await plugin.add_reviewers(REPO, pr.id, ("dave",))
    assert merged_pr.reviewers == ("carol", "dave")

    merged = await plugin.merge(REPO, pr.id, strategy="merge")
    assert merged.state == "merged" and merged.merged_at is not None
    assert merged.merge_commit == github.head_of(REPO, "main")
    await git("fetch", "-q", "origin", cwd=work, env=dict(info.env))
    assert await git("show", "origin/main:app.py", cwd=work) == "VALUE = 2"
    parents = await git("rev-list", "--parents", "-n1", "origin/main", cwd=work)
    assert sha in parents.split()[1:]  # a merge commit whose second parent is the branch


async def test_comments_are_paginated_merged_oldest_first_and_replied_to(
    plugin: GitHubPlugin, github: FakeGitHub, tmp_path: Path
) -> None:
    info = await plugin.clone_info(REPO)
    work = await clone(info, tmp_path / "work")
    await push_branch(info, work, "feat/c", {"README.md": "# svc, documented\n"})
    pr = await plugin.create_pr(REPO, title="Docs", description="", source_branch="feat/c")

    first = await plugin.post_comment(REPO, pr.id, "one")
    inline = github.add_review_comment(REPO, 1, "alice", "Typo here", path="README.md", line=1)
    await plugin.post_comment(REPO, pr.id, "two")
    await plugin.post_comment(REPO, pr.id, "three")

    thread = await plugin.reply_to_comment(REPO, pr.id, inline["id"], "Fixed.")
    assert thread.parent_id == inline["id"] and thread.path == "README.md"
    nested = await plugin.reply_to_comment(REPO, pr.id, thread.id, "And again.")
    assert nested.parent_id == inline["id"]  # GitHub threads are one level deep
    quoted = await plugin.reply_to_comment(REPO, pr.id, first.id, "Agreed")
    assert quoted.parent_id is None and quoted.body == "@coro-bot wrote:\n> one\n\nAgreed"

    comments = await plugin.list_comments(REPO, pr.id)
    assert [c.body for c in comments] == [
        "one",
        "Typo here",
        "two",
        "three",
        "Fixed.",
        "And again.",
        quoted.body,
    ]
    assert comments[1].author == "alice" and comments[1].line == 1
    assert all(c.created_at is not None and c.created_at.tzinfo for c in comments)
    pages = [
        p
        for m, p in github.requests
        if m == "GET"
        and p.startswith("/repos/acme/svc/")
        and p.partition("?")[0].endswith("/1/comments")
    ]
    assert len(pages) == 4 and sum("page=2" in p for p in pages) == 2  # 4 + 3 at two a page

    with pytest.raises(ScmNotFound, match="999"):
        await plugin.reply_to_comment(REPO, pr.id, 999, "nobody home")


async def test_squash_and_conflicting_merges(
    plugin: GitHubPlugin, github: FakeGitHub, tmp_path: Path
) -> None:
    info = await plugin.clone_info(REPO)
    work = await clone(info, tmp_path / "work")
    await push_branch(info, work, "feat/a", {"app.py": "VALUE = 'a'\n"})
    await push_branch(info, work, "feat/b", {"app.py": "VALUE = 'b'\n"})
    a = await plugin.create_pr(REPO, title="A", description="", source_branch="feat/a")
    b = await plugin.create_pr(REPO, title="B", description="", source_branch="feat/b")

    merged = await plugin.merge(REPO, a.id, strategy="squash", message="Set A\n\nDetails.")
    main = github.head_of(REPO, "main")
    assert merged.merge_commit == main
    assert (await plugin.pr_status(REPO, b.id)).mergeable is False
    with pytest.raises(ScmConflict, match=r"acme/svc#2.*405.*not mergeable"):
        await plugin.merge(REPO, b.id)
    assert github.head_of(REPO, "main") == main  # the failed merge moved nothing
    with pytest.raises(ScmConflict, match="405"):
        await plugin.merge(REPO, a.id)  # already merged

    await git("fetch", "-q", "origin", cwd=work, env=dict(info.env))
    log = await git("log", "--format=%B", "-n1", "origin/main", cwd=work)
    assert log.splitlines()[:3] == ["Set A", "", "Details."]
    assert await git("rev-list", "--count", "origin/main", cwd=work) == "2"  # squashed: one

    await push_branch(info, work, "feat/r", {"README.md": "# svc, rebased\n"})
    r = await plugin.create_pr(REPO, title="R", description="", source_branch="feat/r")
    rebased = await plugin.merge(REPO, r.id, strategy="rebase")
    await git("fetch", "-q", "origin", cwd=work, env=dict(info.env))
    assert rebased.merge_commit == await git("rev-parse", "origin/main", cwd=work)
    assert await git("rev-parse", "origin/main~1", cwd=work) == main  # linear, on top of A
    assert await git("show", "origin/main:README.md", cwd=work) == "# svc, rebased"


async def test_users_are_found_by_login_id_email_or_name(
    plugin: GitHubPlugin, github: FakeGitHub
) -> None:
    carol = github.add_user("carol", name="Carol Danvers", email="carol@example.com")
    for query in ("carol", "@carol", str(carol["id"]), "carol@example.com", "Carol Danvers"):
        user = await plugin.resolve_user(query)
        assert user is not None and (user.username, user.id) == ("carol", str(carol["id"]))
    assert await plugin.resolve_user("nobody") is None
    assert await plugin.resolve_user("nobody@example.com") is None


async def test_a_secondary_rate_limit_is_waited_out_as_told(
    plugin: GitHubPlugin, github: FakeGitHub, sleeps: Sleeps
) -> None:
    github.fail_next(2, "secondary_rate_limit", retry_after=7)
    info = await plugin.clone_info(REPO)
    assert info.repo == REPO and sleeps == [7.0, 7.0]


async def test_a_5xx_is_retried_with_backoff(
    plugin: GitHubPlugin, github: FakeGitHub, sleeps: Sleeps
) -> None:
    github.fail_next(2, "bad_gateway")
    await plugin.clone_info(REPO)
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]
    github.fail_next(4, "bad_gateway")
    with pytest.raises(ScmError, match=r"502") as caught:
        await plugin.clone_info(REPO)
    assert caught.value.status == 502


async def test_a_5xx_on_a_post_is_not_retried_so_nothing_is_posted_twice(
    plugin: GitHubPlugin, github: FakeGitHub, sleeps: Sleeps, tmp_path: Path
) -> None:
    info = await plugin.clone_info(REPO)
    await push_branch(info, await clone(info, tmp_path / "work"), "feat/p", {"app.py": "2\n"})
    pr = await plugin.create_pr(REPO, title="P", description="", source_branch="feat/p")
    github.fail_next(1, "bad_gateway")
    with pytest.raises(ScmError, match=r"502 while commenting on acme/svc#1.*may or may not"):
        await plugin.post_comment(REPO, pr.id, "once")
    assert sleeps == [] and [m for m, _ in github.requests].count("POST") == 2  # PR + comment


async def test_connection_errors_are_retried_for_reads_only(sleeps: Sleeps) -> None:
    import httpx2

    calls: list[str] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.method)
        if len(calls) in (1, 2, 4):
            raise httpx2.ReadError("connection reset by peer", request=request)
        return httpx2.Response(200, json={"clone_url": "https://github.com/acme/svc.git"})

    plugin = GitHubPlugin(token=TOKEN, transport=httpx2.MockTransport(answer), sleep=sleeps)
    try:
        assert (await plugin.clone_info(REPO)).url == "https://github.com/acme/svc.git"
        with pytest.raises(ScmError, match=r"unreachable while commenting on acme/svc#1"):
            await plugin.post_comment(REPO, 1, "once")
    finally:
        await plugin.aclose()
    assert calls == ["GET", "GET", "GET", "POST"] and sleeps == [0.5, 1.0]


async def test_a_persistent_rate_limit_raises_with_retry_after(
    plugin: GitHubPlugin, github: FakeGitHub, sleeps: Sleeps
) -> None:
    github.fail_next(4, "secondary_rate_limit", retry_after=42)
    with pytest.raises(ScmRateLimited) as caught:
        await plugin.get_pr(REPO, 1)
    assert caught.value.retry_after == 42 and sleeps == [42.0] * 3
    assert "acme/svc#1" in caught.value.message

    sleeps.clear()
    github.fail_next(1, "primary_rate_limit", retry_after=3600)  # too long to hold a call open
    with pytest.raises(ScmRateLimited) as caught:
        await plugin.get_pr(REPO, 1)
    assert 3500 < caught.value.retry_after <= 3602 and sleeps == []


async def test_missing_things_and_bad_tokens_raise_without_the_token(
    plugin: GitHubPlugin, github: FakeGitHub
) -> None:
    errors: list[ScmError] = []
    with pytest.raises(ScmNotFound, match="acme/nope") as not_found:
        await plugin.clone_info("acme/nope")
    errors.append(not_found.value)
    with pytest.raises(ScmNotFound, match=r"acme/svc#42") as no_pr:
        await plugin.pr_status(REPO, 42)
    errors.append(no_pr.value)

    wrong = GitHubPlugin(token="ghp_wrong_" + TOKEN, base_url=github.base_url)
    try:
        with pytest.raises(ScmAuthError, match=r"acme/svc.*401.*Bad credentials") as denied:
            await wrong.clone_info(REPO)
        errors.append(denied.value)
    finally:
        await wrong.aclose()
    for error in errors:
        assert TOKEN not in str(error) and TOKEN not in error.message


async def test_a_token_echoed_by_the_server_is_redacted() -> None:
    import httpx2

    def answer(request: httpx2.Request) -> httpx2.Response:
        token = request.headers["authorization"].removeprefix("Bearer ")
        return httpx2.Response(422, json={"message": f"token {token} is not allowed here"})

    plugin = GitHubPlugin(token=TOKEN, transport=httpx2.MockTransport(answer))
    try:
        with pytest.raises(ScmError, match=r"\*\*\*") as caught:
            await plugin.post_comment(REPO, 1, "hi")
    finally:
        await plugin.aclose()
    assert TOKEN not in str(caught.value) and "acme/svc#1" in str(caught.value)


@pytest.mark.parametrize(
    ("remote", "slug"),
    [
        ("https://github.com/acme/svc.git", "acme/svc"),
        ("https://github.com/acme/svc", "acme/svc"),
        ("git@github.com:acme/svc.git", "acme/svc"),
        ("ssh://git@github.com/acme/svc.git", "acme/svc"),
        ("https://gitlab.com/acme/svc.git", None),
        ("git@bitbucket.org:acme/svc.git", None),
        ("https://github.com/acme", None),
    ],
)
def test_remotes_of_github_com(remote: str, slug: str | None) -> None:
    plugin = GitHubPlugin(token=None)
    assert plugin.repo_of_remote(remote) == slug
    assert plugin.matches_remote(remote) is (slug is not None)


def test_remotes_of_an_enterprise_host() -> None:
    plugin = GitHubPlugin(token=None, base_url="https://ghe.example.com/api/v3")
    assert plugin.repo_of_remote("https://ghe.example.com/acme/svc.git") == "acme/svc"
    assert plugin.repo_of_remote("git@ghe.example.com:acme/svc.git") == "acme/svc"
    assert plugin.repo_of_remote("ssh://git@ghe.example.com:2222/acme/svc") == "acme/svc"
    assert not plugin.matches_remote("https://github.com/acme/svc.git")


async def test_enterprise_requests_go_under_the_api_path() -> None:
    import httpx2

    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(
            200,
            json={"clone_url": "https://ghe.example.com/acme/svc.git", "default_branch": "trunk"},
        )

    plugin = GitHubPlugin(
        token=TOKEN,
        base_url="https://ghe.example.com/api/v3",
        transport=httpx2.MockTransport(answer),
    )
    try:
        info = await plugin.clone_info(REPO)
    finally:
        await plugin.aclose()
    assert str(seen[0].url) == "https://ghe.example.com/api/v3/repos/acme/svc"
    assert seen[0].headers["x-github-api-version"] == "2022-11-28"
    assert seen[0].headers["user-agent"].startswith("coro/")
    assert info.default_branch == "trunk" and "GIT_CONFIG_VALUE_0" in info.env
