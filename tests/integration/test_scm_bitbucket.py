"""The Bitbucket Cloud plugin end to end: real HTTP to a fake Bitbucket, real git behind it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from engine.scm import (
    ScmAuthError,
    ScmConflict,
    ScmError,
    ScmNotFound,
    ScmPlugin,
    ScmRateLimited,
)
from engine.scm.bitbucket import BitbucketPlugin
from tests.support.fake_bitbucket import FakeBitbucket, FakeUser, serving

ROOT = Path(__file__).resolve().parents[2]
REPO = "acme/svc"
ALICE = FakeUser("alice", "Alice Liddell")
BOB = FakeUser("bob", "Bob Builder")
CAROL = FakeUser("carol", "Carol Danvers")


class Sleeps:
    """The plugin's ``sleep``: records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeBitbucket]:
    fake = FakeBitbucket(tmp_path / "bitbucket")
    fake.create_repo(REPO, {"README.md": "# svc\n\nline one\n"})
    for user in (ALICE, BOB, CAROL):
        fake.add_member("acme", user)
    async with asyncio.timeout(30), serving(fake):
        yield fake


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def plugin(fake: FakeBitbucket, sleeps: Sleeps) -> AsyncIterator[BitbucketPlugin]:
    plugin = BitbucketPlugin(
        workspace="acme", token=fake.token, base_url=fake.api_url, sleep=sleeps
    )
    yield plugin
    await plugin.aclose()


async def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """git in a subprocess that does not block the loop the fake is served from."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        "-c",
        "user.name=Dev",
        "-c",
        "user.email=dev@example.test",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            **os.environ,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            **(env or {}),
        },
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


def assert_no_secret(exc: BaseException, *secrets: str) -> None:
    text = f"{exc} {exc!r} {getattr(exc, 'message', '')}"
    for secret in secrets:
        assert secret not in text


async def open_pr(plugin: BitbucketPlugin, fake: FakeBitbucket, branch: str = "feat/x") -> int:
    fake.commit_to(REPO, branch, {f"{branch.replace('/', '-')}.txt": f"{branch}\n"})
    pr = await plugin.create_pr(REPO, title=f"Add {branch}", description="", source_branch=branch)
    assert isinstance(pr.id, int)
    return pr.id


# -- the whole way -------------------------------------------------------------------------------
async def test_clone_push_open_twice_and_merge(
    fake: FakeBitbucket, plugin: BitbucketPlugin, tmp_path: Path
) -> None:
    assert isinstance(plugin, ScmPlugin)
    info = await plugin.clone_info("svc")
    assert (info.repo, info.default_branch) == (REPO, "main")
    assert info.url == f"{fake.base_url}/git/acme/svc.git"  # "x-token-auth@" stripped

    work = tmp_path / "work"
    await git(tmp_path, "clone", "--quiet", info.url, str(work), env=dict(info.env))
    assert fake.token not in (work / ".git" / "config").read_text()
    assert await git(work, "remote", "get-url", "origin") == info.url
    await git(work, "checkout", "-q", "-b", "feat/x")
    (work / "feature.txt").write_text("the feature\n")
    await git(work, "add", "feature.txt")
    await git(work, "commit", "-q", "-m", "Add the feature")
    await git(work, "push", "-q", "origin", "feat/x", env=dict(info.env))
    pushed = await git(work, "rev-parse", "HEAD")
    assert fake.head(REPO, "feat/x") == pushed

    pr = await plugin.create_pr(
        "svc",
        title="Add the feature",
        description="Why: because.",
        source_branch="feat/x",
        reviewers=("alice",),
    )
    assert (pr.repo, pr.state, pr.author, pr.reviewers) == (REPO, "open", "coro-bot", ("alice",))
    assert (pr.source_branch, pr.target_branch) == ("feat/x", "main")
    assert pr.url == f"https://bitbucket.org/acme/svc/pull-requests/{pr.id}"
    assert pr.created_at is not None and pr.created_at.tzinfo is not None

    again = await plugin.create_pr(
        REPO,
        title="Add it again",
        description="",
        source_branch="feat/x",
        reviewers=("Bob Builder",),
    )
    assert again.id == pr.id and again.title == "Add the feature"
    assert again.reviewers == ("alice", "bob")
    assert len(fake.prs[REPO]) == 1

    merged = await plugin.merge("svc", pr.id, message="Merge the feature")
    assert merged.state == "merged"
    assert merged.merged_at is not None and merged.merged_at.tzinfo is not None
    main = fake.head(REPO, "main")
    assert merged.merge_commit == main and fake.is_ancestor(REPO, pushed, "main")
    await git(work, "pull", "-q", "origin", "main", env=dict(info.env))
    assert (work / "feature.txt").read_text() == "the feature\n"


async def test_comments_replies_and_pages(fake: FakeBitbucket, plugin: BitbucketPlugin) -> None:
    pr_id = await open_pr(plugin, fake)
    first = await plugin.post_comment(REPO, pr_id, "Looks good, one question.")
    reply = await plugin.reply_to_comment("svc", pr_id, first.id, "Answered.")
    assert (first.author, reply.parent_id, reply.body) == ("coro-bot", first.id, "Answered.")
    assert first.url and first.url.endswith(f"#comment-{first.id}")
    more = [await plugin.post_comment(REPO, pr_id, f"note {i}") for i in range(3)]
    fake.delete_comment(REPO, pr_id, int(more[1].id))

    comments = await plugin.list_comments(REPO, pr_id)
    assert [c.body for c in comments] == [
        "Looks good, one question.",
        "Answered.",
        "note 0",
        "note 2",
    ]
    assert all(c.created_at and c.created_at.tzinfo for c in comments)
    pages = [p for m, p in fake.requests if m == "GET" and f"/{pr_id}/comments" in p]
    assert any("page=3" in p for p in pages)  # 5 comments, 2 a page

    with pytest.raises(ScmNotFound, match="comment 999"):
        await plugin.reply_to_comment(REPO, pr_id, 999, "to nothing")


async def test_status_shows_approvals_change_requests_and_ci(
    fake: FakeBitbucket, plugin: BitbucketPlugin
) -> None:
    pr_id = await open_pr(plugin, fake)
    status = await plugin.pr_status(REPO, pr_id)
    assert (status.state, status.approvals, status.ci, status.comment_count) == (
        "open",
        (),
        "none",
        0,
    )

    await plugin.post_comment(REPO, pr_id, "ping")
    fake.approve(REPO, pr_id, ALICE)
    fake.request_changes(REPO, pr_id, BOB)
    fake.add_status(REPO, pr_id, "SUCCESSFUL", key="build")
    fake.add_status(REPO, pr_id, "SUCCESSFUL", key="lint")
    fake.add_status(REPO, pr_id, "INPROGRESS", key="e2e")  # on the second page
    status = await plugin.pr_status(REPO, pr_id)
    assert (status.approvals, status.changes_requested) == (("alice",), ("bob",))
    assert (status.ci, status.comment_count) == ("pending", 1)

    fake.add_status(REPO, pr_id, "FAILED", key="e2e")
    assert (await plugin.pr_status(REPO, pr_id)).ci == "failure"
    fake.add_status(REPO, pr_id, "SUCCESSFUL", key="e2e")
    assert (await plugin.pr_status(REPO, pr_id)).ci == "success"


async def test_add_reviewers_keeps_the_ones_already_there(
    fake: FakeBitbucket, plugin: BitbucketPlugin
) -> None:
    fake.commit_to(REPO, "feat/r", {"r.txt": "r\n"})
    pr = await plugin.create_pr(
        REPO, title="R", description="", source_branch="feat/r", reviewers=("alice",)
    )
    updated = await plugin.add_reviewers(REPO, pr.id, ("BOB", ALICE.account_id, "coro-bot"))
    assert updated.reviewers == ("alice", "bob")  # the author is never their own reviewer
    assert [u.nickname for u in fake.prs[REPO][int(pr.id)].reviewers] == ["alice", "bob"]
    puts = len([m for m, _ in fake.requests if m == "PUT"])
    assert (await plugin.add_reviewers(REPO, pr.id, ("alice",))).reviewers == ("alice", "bob")
    assert len([m for m, _ in fake.requests if m == "PUT"]) == puts  # nothing new: no PUT

    with pytest.raises(ScmNotFound, match="'nobody'"):
        await plugin.add_reviewers(REPO, pr.id, ("nobody",))


async def test_unknown_reviewer_opens_no_pr(fake: FakeBitbucket, plugin: BitbucketPlugin) -> None:
    fake.commit_to(REPO, "feat/y", {"y.txt": "y\n"})
    with pytest.raises(ScmNotFound, match="workspace acme matches reviewer 'ghost'"):
        await plugin.create_pr(
            REPO, title="Y", description="", source_branch="feat/y", reviewers=("ghost",)
        )
    assert fake.prs[REPO] == {}


async def test_resolve_user(plugin: BitbucketPlugin) -> None:
    assert (await plugin.resolve_user("ALICE")) is not None
    by_name = await plugin.resolve_user("bob builder", repo=REPO)
    assert by_name is not None and (by_name.id, by_name.username) == (BOB.uuid, "bob")
    for query in (CAROL.account_id, CAROL.uuid.strip("{}"), "Carol DANVERS"):
        found = await plugin.resolve_user(query)
        assert found is not None and found.username == "carol", query
    assert await plugin.resolve_user("nobody") is None


# -- merging --------------------------------------------------------------------------------------
async def test_squash_and_fast_forward(fake: FakeBitbucket, plugin: BitbucketPlugin) -> None:
    squashed = await open_pr(plugin, fake, "feat/squash")
    branch_head = fake.head(REPO, "feat/squash")
    pr = await plugin.merge(REPO, squashed, strategy="squash", message="Squashed")
    main = fake.head(REPO, "main")
    assert pr.merge_commit == main and not fake.is_ancestor(REPO, branch_head, "main")
    assert (
        subprocess.run(
            ["git", "--git-dir", str(fake.repos[REPO]), "cat-file", "-e", "main:feat-squash.txt"],
            check=False,
        ).returncode
        == 0
    )

    fake.commit_to(REPO, "feat/ff", {"ff.txt": "ff\n"}, base="main")
    ff = await plugin.create_pr(REPO, title="FF", description="", source_branch="feat/ff")
    await plugin.merge(REPO, ff.id, strategy="rebase")
    assert fake.head(REPO, "main") == fake.head(REPO, "feat/ff")  # no merge commit

    fake.commit_to(REPO, "feat/late", {"late.txt": "late\n"}, base="main~1")
    late = await plugin.create_pr(REPO, title="Late", description="", source_branch="feat/late")
    with pytest.raises(ScmConflict, match="Fast-forward"):
        await plugin.merge(REPO, late.id, strategy="rebase")


async def test_a_long_merge_is_polled_until_done(
    fake: FakeBitbucket, plugin: BitbucketPlugin, sleeps: Sleeps
) -> None:
    fake.merge_async = True
    pr_id = await open_pr(plugin, fake)
    merged = await plugin.merge(REPO, pr_id)
    assert merged.state == "merged" and merged.merge_commit == fake.head(REPO, "main")
    assert len([p for _, p in fake.requests if "/merge/task-status/" in p]) == 2
    assert sleeps.waits == [1.0]


async def test_conflicting_merge_is_refused_with_bitbuckets_reason(
    fake: FakeBitbucket, plugin: BitbucketPlugin
) -> None:
    fake.commit_to(REPO, "feat/a", {"README.md": "# svc\n\nline one, said A\n"})
    fake.commit_to(REPO, "feat/b", {"README.md": "# svc\n\nline one, said B\n"})
    a = await plugin.create_pr(REPO, title="A", description="", source_branch="feat/a")
    b = await plugin.create_pr(REPO, title="B", description="", source_branch="feat/b")
    await plugin.merge(REPO, a.id)
    main = fake.head(REPO, "main")
    with pytest.raises(ScmConflict, match="Conflicts during merge") as caught:
        await plugin.merge(REPO, b.id)
    assert f"pull request {REPO}#{b.id}" in str(caught.value)
    assert fake.head(REPO, "main") == main
    assert (await plugin.get_pr(REPO, b.id)).state == "open"
    with pytest.raises(ScmConflict, match="isn't open"):
        await plugin.merge(REPO, a.id)
    assert_no_secret(caught.value, fake.token)


# -- retries and errors ---------------------------------------------------------------------------
async def test_429_waits_as_told_then_succeeds(
    fake: FakeBitbucket, plugin: BitbucketPlugin, sleeps: Sleeps
) -> None:
    pr_id = await open_pr(plugin, fake)
    fake.fail_next(2, 429, retry_after=7)
    assert (await plugin.get_pr(REPO, pr_id)).id == pr_id
    assert sleeps.waits == [7.0, 7.0]

    fake.fail_next(1, 429)  # no Retry-After: back off; a POST is safe to repeat after a 429
    await plugin.post_comment(REPO, pr_id, "once")
    assert sleeps.waits[2:] == [1.0]
    assert [c["content"]["raw"] for c in fake.prs[REPO][pr_id].comments] == ["once"]


async def test_persistent_429_raises_rate_limited(
    fake: FakeBitbucket, plugin: BitbucketPlugin, sleeps: Sleeps
) -> None:
    fake.fail_next(10, 429)
    before = len(fake.requests)
    with pytest.raises(ScmRateLimited) as caught:
        await plugin.clone_info(REPO)
    assert sleeps.waits == [1.0, 2.0, 4.0] and caught.value.retry_after == 8.0
    assert len(fake.requests) - before == 4
    assert "repository acme/svc" in str(caught.value)

    fake._failures.clear()
    fake.fail_next(1, 429, retry_after=3600)  # too long to sleep through: the caller parks
    with pytest.raises(ScmRateLimited) as long:
        await plugin.clone_info(REPO)
    assert long.value.retry_after == 3600.0 and sleeps.waits == [1.0, 2.0, 4.0]


async def test_5xx_is_retried_for_reads_but_a_post_is_not_repeated(
    fake: FakeBitbucket, plugin: BitbucketPlugin, sleeps: Sleeps
) -> None:
    pr_id = await open_pr(plugin, fake)
    fake.fail_next(2, 502)
    assert (await plugin.get_pr(REPO, pr_id)).id == pr_id
    assert sleeps.waits == [1.0, 2.0]

    fake.fail_next(1, 502)
    with pytest.raises(ScmError, match=r"failed \(502\)") as caught:
        await plugin.post_comment(REPO, pr_id, "maybe posted")
    assert type(caught.value) is ScmError and sleeps.waits == [1.0, 2.0]

    fake.fail_next(4, 500)
    with pytest.raises(ScmError, match=r"failed \(500\)"):
        await plugin.get_pr(REPO, pr_id)


async def test_not_found_names_what_was_asked(fake: FakeBitbucket, plugin: BitbucketPlugin) -> None:
    with pytest.raises(ScmNotFound, match=r"pull request acme/svc#999") as pr:
        await plugin.get_pr("svc", 999)
    with pytest.raises(ScmNotFound, match=r"repository acme/nope") as repo:
        await plugin.clone_info("nope")
    for exc in (pr.value, repo.value):
        assert exc.status == 404
        assert_no_secret(exc, fake.token)


async def test_bad_credentials_raise_auth_error_without_the_secret(
    fake: FakeBitbucket, sleeps: Sleeps
) -> None:
    wrong = [
        BitbucketPlugin(workspace="acme", token="wrong-token-s3cr3t", base_url=fake.api_url),
        BitbucketPlugin(
            workspace="acme",
            username=fake.username,
            app_password="wrong-pw-s3cr3t",
            base_url=fake.api_url,
        ),
    ]
    for plugin in wrong:
        with pytest.raises(ScmAuthError, match="401") as caught:
            await plugin.get_pr(REPO, 1)
        assert_no_secret(caught.value, "wrong-token-s3cr3t", "wrong-pw-s3cr3t", "s3cr3t")
        await plugin.aclose()


async def test_app_password_works_for_the_api_and_for_git(
    fake: FakeBitbucket, tmp_path: Path
) -> None:
    plugin = BitbucketPlugin(
        workspace="acme",
        username=fake.username,
        app_password=fake.app_password,
        base_url=fake.api_url,
    )
    info = await plugin.clone_info(REPO)
    await git(tmp_path, "clone", "-q", info.url, str(tmp_path / "w"), env=dict(info.env))
    assert fake.app_password not in (tmp_path / "w" / ".git" / "config").read_text()
    fake.commit_to(REPO, "feat/pw", {"pw.txt": "pw\n"})
    pr = await plugin.create_pr(REPO, title="PW", description="", source_branch="feat/pw")
    assert pr.author == "dev"
    await plugin.aclose()


async def test_unreachable_service_is_an_scm_error_without_the_secret(sleeps: Sleeps) -> None:
    from engine._serving import bind_tcp

    sock = bind_tcp("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    plugin = BitbucketPlugin(
        workspace="acme",
        token="tok-s3cr3t",
        base_url=f"http://127.0.0.1:{port}/2.0",
        sleep=sleeps,
    )
    with pytest.raises(ScmError, match="ConnectError") as caught:
        await plugin.get_pr(REPO, 1)
    assert sleeps.waits == [1.0, 2.0, 4.0]
    assert_no_secret(caught.value, "tok-s3cr3t")
    await plugin.aclose()


async def test_pagination_never_follows_a_link_to_another_host() -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(200, json={"values": [], "next": "https://evil.test/steal?page=2"})

    plugin = BitbucketPlugin(
        workspace="acme", token="tok-s3cr3t", transport=httpx2.MockTransport(handler)
    )
    with pytest.raises(ScmError, match="refusing to follow"):
        await plugin.list_comments(REPO, 1)
    assert [u.split("?")[0] for u in seen] == [
        "https://api.bitbucket.org/2.0/repositories/acme/svc/pullrequests/1/comments"
    ]
    await plugin.aclose()


# -- remotes, slugs, import cost ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("https://bitbucket.org/acme/svc", "acme/svc"),
        ("https://bitbucket.org/acme/svc.git", "acme/svc"),
        ("https://dev@bitbucket.org/acme/svc.git", "acme/svc"),
        ("git@bitbucket.org:acme/svc.git", "acme/svc"),
        ("ssh://git@bitbucket.org/acme/svc.git", "acme/svc"),
        ("https://github.com/acme/svc.git", None),
        ("git@github.com:acme/svc.git", None),
        ("https://bitbucket.org/acme", None),
    ],
)
def test_remotes(url: str, slug: str | None) -> None:
    plugin = BitbucketPlugin(workspace=None)
    assert plugin.repo_of_remote(url) == slug
    assert plugin.matches_remote(url) is (slug is not None)


async def test_a_bare_slug_needs_a_workspace() -> None:
    with pytest.raises(ScmError, match=r"plugins\.installed\.bitbucket\.config\.workspace"):
        await BitbucketPlugin(workspace=None).get_pr("svc", 1)


def test_importing_the_plugin_does_not_import_httpx2() -> None:
    probe = "import sys, engine.scm.bitbucket; print('httpx2' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
