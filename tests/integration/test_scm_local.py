"""The local SCM end to end: real bare repositories, real git, a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from engine.scm import ScmConflict, ScmError, ScmNotFound, ScmPlugin, WebhookRejected
from engine.scm._bare import TargetMoved, commit_onto
from engine.scm.git import clone_or_reuse, head_sha, push_branch, run_git
from engine.scm.local import LocalScmPlugin
from state import SqliteStateBackend

REPO = "svc"


@pytest.fixture(autouse=True)
def _plain_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No user or system git configuration; commits made by the test are by ``dev``."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "dev")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "dev@example.com")
    yield


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStateBackend]:
    async with SqliteStateBackend(tmp_path / "state.db") as backend:
        yield backend


@pytest.fixture
def scm(tmp_path: Path, store: SqliteStateBackend) -> LocalScmPlugin:
    return LocalScmPlugin(root=tmp_path / "local-scm", store=store, user="ana")


async def commit(checkout: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (checkout / name).write_text(text)
    await run_git("add", "--", *files, cwd=checkout)
    await run_git("commit", "--quiet", "-m", message, cwd=checkout)
    return await head_sha(checkout)


@pytest.fixture
async def work(scm: LocalScmPlugin, tmp_path: Path) -> Path:
    """A checkout of ``svc`` whose ``main`` has one commit, pushed."""
    await scm.create_repo(REPO)
    info = await scm.clone_info(REPO)
    checkout = await clone_or_reuse(info, tmp_path / "work" / REPO)
    await run_git("checkout", "--quiet", "-b", "main", cwd=checkout)
    await commit(checkout, {"README.md": "svc\n", "app.py": "VALUE = 1\n"}, "first")
    await push_branch(checkout, "main", info)
    return checkout


async def push_feature(
    scm: LocalScmPlugin, checkout: Path, branch: str, commits: list[dict[str, str]]
) -> str:
    await run_git("checkout", "--quiet", "-B", branch, "main", cwd=checkout)
    for n, files in enumerate(commits, start=1):
        await commit(checkout, files, f"{branch}: step {n}")
    await push_branch(checkout, branch, await scm.clone_info(REPO))
    await run_git("checkout", "--quiet", "main", cwd=checkout)
    return await head_sha(checkout, branch)


async def bare(scm: LocalScmPlugin, *args: str) -> str:
    return (await run_git("--git-dir", str(scm.repo_path(REPO)), *args)).strip()


async def open_pr(scm: LocalScmPlugin, branch: str) -> int:
    pr = await scm.create_pr(REPO, title=f"Add {branch}", description="Why.", source_branch=branch)
    return int(pr.id)


# -- the review loop ------------------------------------------------------------------------------
async def test_a_pull_request_from_push_to_merge(scm: LocalScmPlugin, work: Path) -> None:
    assert isinstance(scm, ScmPlugin)
    info = await scm.clone_info(REPO)
    assert info.url == str(scm.repo_path(REPO)) and info.default_branch == "main"
    assert not info.env
    source = await push_feature(scm, work, "feat/limit", [{"limit.py": "LIMIT = 10\n"}])

    pr = await scm.create_pr(
        REPO,
        title="Rate limit",
        description="Adds a limit.",
        source_branch="feat/limit",
        reviewers=("bob",),
    )
    assert (pr.id, pr.state, pr.author, pr.reviewers) == (1, "open", "ana", ("bob",))
    again = await scm.create_pr(
        REPO,
        title="Rate limit (again)",
        description="",
        source_branch="feat/limit",
        reviewers=("carol", "bob"),
    )
    assert again.id == 1 and again.reviewers == ("bob", "carol") and again.title == "Rate limit"

    first = await scm.post_comment(REPO, 1, "Why 10?", path="limit.py", line=1)
    reply = await scm.reply_to_comment(REPO, 1, first.id, "Matches the API quota.")
    comments = await scm.list_comments(REPO, 1)
    assert [(c.id, c.author, c.parent_id) for c in comments] == [(1, "ana", None), (2, "ana", 1)]
    assert (comments[1].path, comments[1].line) == ("limit.py", 1)  # a reply stays in place
    assert reply.body == "Matches the API quota."
    with pytest.raises(ScmNotFound, match="no comment 9"):
        await scm.reply_to_comment(REPO, 1, 9, "?")

    assert "+LIMIT = 10" in await scm.diff(REPO, 1)
    await scm.approve(REPO, 1, "bob")
    await scm.approve(REPO, 1, "bob")  # once per person
    status = await scm.pr_status(REPO, 1)
    assert status.approvals == ("bob",) and status.mergeable is True
    assert status.ci == "none" and status.comment_count == 2 and status.state == "open"

    before = await bare(scm, "rev-parse", "main")
    merged = await scm.merge(REPO, 1)
    assert merged.state == "merged" and merged.merged_at is not None
    tip = await bare(scm, "rev-parse", "main")
    assert merged.merge_commit == tip
    assert (await bare(scm, "log", "-1", "--format=%P", "main")).split() == [before, source]
    assert await bare(scm, "log", "-1", "--format=%s%n%an", "main") == (
        "Merge pull request #1 from feat/limit\nana"
    )
    assert await bare(scm, "show", "main:limit.py") == "LIMIT = 10"
    assert "+LIMIT = 10" in await scm.diff(REPO, 1)  # still shows what it brought in

    with pytest.raises(ScmConflict, match="merged: only an open pull request can be merged"):
        await scm.merge(REPO, 1)
    with pytest.raises(ScmConflict, match="can be approved"):
        await scm.approve(REPO, 1, "carol")
    assert (await scm.get_pr(REPO, 1)).merge_commit == tip
    assert (await scm.pr_status(REPO, 1)).mergeable is None
    # A new pull request from the same branch is a new one, numbered on.
    await run_git("pull", "--quiet", "--ff-only", "origin", "main", cwd=work)
    await push_feature(scm, work, "feat/limit", [{"limit.py": "LIMIT = 20\n"}])
    assert (await open_pr(scm, "feat/limit")) == 2


async def test_squash_puts_one_commit_with_the_title_on_the_target(
    scm: LocalScmPlugin, work: Path
) -> None:
    steps = [{"a.py": "A = 1\n"}, {"b.py": "B = 2\n"}, {"a.py": "A = 3\n"}]
    await push_feature(scm, work, "feat/ab", steps)
    await open_pr(scm, "feat/ab")
    before = await bare(scm, "rev-parse", "main")
    merged = await scm.merge(REPO, 1, strategy="squash")
    assert await bare(scm, "log", "-1", "--format=%P", "main") == before
    assert await bare(scm, "log", "-1", "--format=%B", "main") == "Add feat/ab (#1)\n\nWhy."
    assert await bare(scm, "log", "-1", "--format=%an|%cn", "main") == "ana|ana"
    assert await bare(scm, "rev-list", "--count", f"{before}..main") == "1"
    assert await bare(scm, "show", "main:a.py") == "A = 3"
    assert await bare(scm, "show", "main:b.py") == "B = 2"
    assert merged.merge_commit == await bare(scm, "rev-parse", "main")


async def test_rebase_replays_each_commit_and_fast_forwards(
    scm: LocalScmPlugin, work: Path
) -> None:
    await push_feature(scm, work, "feat/ab", [{"a.py": "A = 1\n"}, {"b.py": "B = 2\n"}])
    await open_pr(scm, "feat/ab")
    # main moves on after the branch was cut, so the commits must be replayed, not reused.
    moved = await commit(work, {"README.md": "svc, moved on\n"}, "main moves")
    await push_branch(work, "main", await scm.clone_info(REPO))
    merged = await scm.merge(REPO, 1, strategy="rebase")
    log = await bare(scm, "log", "--format=%s|%an|%cn|%P", f"{moved}..main")
    subjects = [line.split("|") for line in log.splitlines()]
    assert [s[:3] for s in subjects] == [
        ["feat/ab: step 2", "dev", "ana"],
        ["feat/ab: step 1", "dev", "ana"],
    ]
    assert all(len(s[3].split()) == 1 for s in subjects)  # linear: no merge commit
    assert subjects[1][3] == moved
    assert merged.merge_commit == await bare(scm, "rev-parse", "main")
    assert await bare(scm, "show", "main:README.md") == "svc, moved on"
    assert await bare(scm, "show", "main:b.py") == "B = 2"
    assert not list((scm.root).glob(".rebase-*"))  # the scratch clone is gone


@pytest.mark.parametrize("strategy", ["merge", "squash", "rebase"])
async def test_a_conflict_names_the_files_and_changes_nothing(
    scm: LocalScmPlugin, work: Path, strategy: str
) -> None:
    await push_feature(scm, work, "feat/value", [{"app.py": "VALUE = 2\n", "new.py": "x\n"}])
    await open_pr(scm, "feat/value")
    await commit(work, {"app.py": "VALUE = 3\n"}, "main changes the same line")
    await push_branch(work, "main", await scm.clone_info(REPO))
    before = await bare(scm, "for-each-ref", "--format=%(refname) %(objectname)")
    assert (await scm.pr_status(REPO, 1)).mergeable is False
    with pytest.raises(ScmConflict, match=r"conflict in app\.py\. Merge 'main' into"):
        await scm.merge(REPO, 1, strategy=strategy)  # type: ignore[arg-type]
    assert await bare(scm, "for-each-ref", "--format=%(refname) %(objectname)") == before
    assert (await scm.get_pr(REPO, 1)).state == "open"


async def test_a_branch_that_moved_during_a_merge_is_left_alone(
    scm: LocalScmPlugin, work: Path
) -> None:
    """The last step of a merge moves the target only from the commit the merge started at."""
    stale = await bare(scm, "rev-parse", "main")
    pushed = await commit(work, {"late.py": "late\n"}, "someone else's push")
    await push_branch(work, "main", await scm.clone_info(REPO))
    with pytest.raises(TargetMoved):
        await commit_onto(
            scm.repo_path(REPO),
            "main",
            old=stale,
            tree=await bare(scm, "rev-parse", f"{stale}^{{tree}}"),
            parents=[stale],
            message="would lose the push",
            env={},
            reflog="test",
        )
    assert await bare(scm, "rev-parse", "main") == pushed


# -- refusals -------------------------------------------------------------------------------------
async def test_a_branch_must_be_pushed_before_its_pull_request(
    scm: LocalScmPlugin, work: Path
) -> None:
    with pytest.raises(ScmError, match=r"not in the local repository svc: push it first"):
        await open_pr(scm, "feat/unpushed")
    with pytest.raises(ScmError, match="not a valid branch name"):
        await open_pr(scm, "feat/..bad")
    with pytest.raises(ScmError, match="target branch 'release'"):
        await push_feature(scm, work, "feat/x", [{"x.py": "x\n"}])
        await scm.create_pr(
            REPO, title="x", description="", source_branch="feat/x", target_branch="release"
        )


async def test_declined_pull_requests_cannot_be_merged(scm: LocalScmPlugin, work: Path) -> None:
    await push_feature(scm, work, "feat/no", [{"no.py": "no\n"}])
    await open_pr(scm, "feat/no")
    assert (await scm.decline(REPO, 1)).state == "declined"
    with pytest.raises(ScmConflict, match="is declined"):
        await scm.merge(REPO, 1, strategy="squash")
    assert [p.state for p in await scm.list_prs(repo=REPO)] == ["declined"]
    with pytest.raises(ScmNotFound, match="no pull request #5"):
        await scm.get_pr(REPO, 5)
    with pytest.raises(ScmNotFound):
        await scm.get_pr(REPO, "five")


async def test_nothing_to_merge_is_refused(scm: LocalScmPlugin, work: Path) -> None:
    await run_git("branch", "same", "main", cwd=work)
    await push_branch(work, "same", await scm.clone_info(REPO))
    await open_pr(scm, "same")
    with pytest.raises(ScmConflict, match="nothing to merge"):
        await scm.merge(REPO, 1)


@pytest.mark.parametrize(
    "slug", ["../escape", "/etc/passwd", "a/b/c", "a..b", "-rf", "x y", "", "svc.git", "g/.x"]
)
async def test_bad_slugs_are_refused(scm: LocalScmPlugin, slug: str) -> None:
    with pytest.raises(ScmError, match="not a local repository name"):
        await scm.create_repo(slug)
    with pytest.raises(ScmError, match="not a local repository name"):
        await scm.clone_info(slug)
    with pytest.raises(ScmError, match="not a local repository name"):
        await scm.get_pr(slug, 1)
    assert not scm.root.exists() or not any(scm.root.iterdir())


# -- repositories, people, webhooks -------------------------------------------------------------
async def test_repositories_remotes_people_and_webhooks(
    scm: LocalScmPlugin, store: SqliteStateBackend, tmp_path: Path
) -> None:
    path = await scm.create_repo("group/web", default_branch="trunk")
    assert await scm.create_repo("group/web") == path  # idempotent
    await scm.create_repo(REPO)
    assert await scm.repos() == ["group/web", "svc"]
    assert (await scm.clone_info("group/web")).default_branch == "trunk"
    with pytest.raises(ScmNotFound, match="no local repository 'nope'"):
        await scm.clone_info("nope")

    assert scm.repo_of_remote(str(path)) == "group/web"
    assert scm.repo_of_remote(f"file://{path}") == "group/web"
    assert scm.matches_remote(str(scm.repo_path(REPO)))
    assert not scm.matches_remote("https://github.com/acme/svc.git")
    assert not scm.matches_remote(str(tmp_path / "elsewhere.git"))
    assert not scm.matches_remote(f"file://{scm.root}/../elsewhere.git")

    user = await scm.resolve_user("  bob ")
    assert user is not None and (user.id, user.username) == ("bob", "bob")
    assert await scm.resolve_user(" ") is None
    with pytest.raises(WebhookRejected, match="do not send webhooks"):
        scm.normalize_inbound({}, b"{}")
    assert LocalScmPlugin(root=scm.root, store=store).user == "coro"
    await scm.aclose()


async def test_concurrent_writers_lose_nothing(scm: LocalScmPlugin, work: Path) -> None:
    await push_feature(scm, work, "feat/busy", [{"busy.py": "1\n"}])
    opened = await asyncio.gather(*(open_pr(scm, "feat/busy") for _ in range(4)))
    assert set(opened) == {1}
    comments = await asyncio.gather(*(scm.post_comment(REPO, 1, f"c{n}") for n in range(6)))
    assert sorted(int(c.id) for c in comments) == [1, 2, 3, 4, 5, 6]
    assert len(await scm.list_comments(REPO, 1)) == 6


async def test_pull_requests_outlive_the_process(
    scm: LocalScmPlugin, store: SqliteStateBackend, work: Path, tmp_path: Path
) -> None:
    await push_feature(scm, work, "feat/keep", [{"keep.py": "1\n"}])
    await open_pr(scm, "feat/keep")
    await scm.approve(REPO, 1, "bob")
    await store.close()
    async with SqliteStateBackend(tmp_path / "state.db") as reopened:
        later = LocalScmPlugin(root=scm.root, store=reopened, user="bob")
        assert (await later.pr_status(REPO, 1)).approvals == ("bob",)
        assert (await later.merge(REPO, 1, strategy="squash")).state == "merged"
