"""The ``local`` SCM: pull requests between branches of bare repositories on this machine.

For a developer working alone, without a hosting service, and for the demo. Repositories are
bare git repositories under one root (``$CORO_HOME/local-scm``), ``<root>/<slug>.git``, where a
slug is ``name`` or ``group/name``. Agents clone them and push branches as they would to
GitHub; pull requests, reviewers, comments and approvals live in coro's state store
(:class:`state.LocalPullRequest`), and a merge is a real merge into the bare repository.

There are no webhooks: whatever waits on a local pull request learns of changes by polling
:meth:`LocalScmPlugin.pr_status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from engine.scm._bare import (
    MergeConflict,
    TargetMoved,
    branch_sha,
    commit_onto,
    file_path,
    git_in,
    identity,
    init_bare,
    is_ancestor,
    merge_tree,
    rebase_onto,
    scan,
    valid_branch,
    valid_slug,
)
from engine.scm._protocol import (
    CloneInfo,
    MergeStrategy,
    PrComment,
    PrStatus,
    PullRequest,
    ScmConflict,
    ScmError,
    ScmNotFound,
    ScmUser,
    WebhookRejected,
)
from engine.scm.git import GitError
from state import (
    InboundEvent,
    LocalPrApproval,
    LocalPrComment,
    LocalPullRequest,
    StalePullRequestError,
    StateBackend,
    StateError,
    utcnow,
)

__all__ = ["LocalScmPlugin"]

_STRATEGIES: frozenset[str] = frozenset({"merge", "squash", "rebase"})
# Saves of one pull request that lost a race are retried this many times before giving up.
_SAVE_ATTEMPTS = 8


class LocalScmPlugin:
    """:class:`~engine.scm.ScmPlugin` over bare repositories under ``root``.

    Args:
        root: the directory holding the bare repositories (``CoroPaths.local_scm_dir``).
        store: where pull requests are kept.
        plugin_id: the id jobs and the config name this plugin by.
        user: the name actions are recorded under (pull request author, comment author,
            merger). The engine's agent uses the default, ``coro``; the ``coro pr`` commands
            pass the developer's name.
    """

    def __init__(
        self,
        *,
        root: Path,
        store: StateBackend,
        plugin_id: str = "local",
        user: str | None = None,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self.user = (user or "").strip() or "coro"
        self._store = store
        self._id = plugin_id
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def id(self) -> str:
        return self._id

    # -- repositories -----------------------------------------------------------------------
    def repo_path(self, slug: str) -> Path:
        """Where the bare repository ``slug`` lives (whether or not it exists).

        Raises:
            ScmError: ``slug`` is not ``name`` or ``group/name`` of letters, digits, ``.``,
                ``_`` and ``-`` (so it can never point outside ``root``).
        """
        if not isinstance(slug, str) or not valid_slug(slug):
            raise ScmError(
                f"{slug!r} is not a local repository name: use `name` or `group/name`, made of "
                "letters, digits, '.', '_' and '-' (no '..', no leading '.' or '-')"
            )
        return self.root.joinpath(*f"{slug}.git".split("/"))

    def _existing(self, slug: str) -> Path:
        path = self.repo_path(slug)
        if not (path / "HEAD").is_file():
            raise ScmNotFound(
                f"there is no local repository {slug!r} under {self.root}; create it first",
                status=404,
            )
        return path

    async def create_repo(self, slug: str, *, default_branch: str = "main") -> Path:
        """Create the bare repository ``slug`` (nothing happens if it exists); returns its path.

        The repository keeps a reflog of every branch, so a merge done by mistake can be undone
        with ``git update-ref``.
        """
        path = self.repo_path(slug)
        if not (path / "HEAD").is_file():
            await self._check_branch_name(default_branch)
            await init_bare(path, default_branch)
        return path

    async def repos(self) -> list[str]:
        """The slugs of every repository under ``root``, sorted."""
        return await asyncio.to_thread(scan, self.root)

    def matches_remote(self, url: str) -> bool:
        """A ``file://`` URL or an absolute path naming a repository under ``root``."""
        return self.repo_of_remote(url) is not None

    def repo_of_remote(self, url: str) -> str | None:
        path = file_path(url.strip())
        if path is None:
            return None
        try:
            relative = Path(os.path.realpath(path)).relative_to(os.path.realpath(self.root))
        except ValueError:
            return None
        slug = relative.as_posix().removesuffix(".git")
        return slug if valid_slug(slug) else None

    async def clone_info(self, repo: str) -> CloneInfo:
        """The bare repository's path as the URL (a local clone hard-links its objects); no
        credentials are needed."""
        path = self._existing(repo)
        head = await git_in(path, "symbolic-ref", "--quiet", "--short", "HEAD")
        return CloneInfo(repo=repo, url=str(path), default_branch=head.strip() or "main")

    # -- pull requests ----------------------------------------------------------------------
    async def create_pr(
        self,
        repo: str,
        *,
        title: str,
        description: str,
        source_branch: str,
        target_branch: str = "main",
        reviewers: tuple[str, ...] = (),
    ) -> PullRequest:
        path = self._existing(repo)
        for branch in (source_branch, target_branch):
            await self._check_branch_name(branch)
        if source_branch == target_branch:
            raise ScmError(f"a pull request needs two branches; both are {source_branch!r}")
        if await branch_sha(path, source_branch) is None:
            raise ScmError(
                f"branch {source_branch!r} is not in the local repository {repo}: push it "
                f"first (`git push origin {source_branch}`), then open the pull request"
            )
        if await branch_sha(path, target_branch) is None:
            raise ScmError(f"the target branch {target_branch!r} does not exist in {repo}")
        wanted = _names(reviewers)
        async with self._lock(repo):
            for pr in await self._list(repo=repo, state="open"):
                if (pr.source_branch, pr.target_branch) == (source_branch, target_branch):
                    if set(wanted) - set(pr.reviewers):
                        return await self.add_reviewers(repo, pr.id, tuple(wanted))
                    return self._shape(pr)
            new = LocalPullRequest(
                repo=repo,
                title=title.strip() or source_branch,
                description=description,
                source_branch=source_branch,
                target_branch=target_branch,
                author=self.user,
                reviewers=list(wanted),
            )
            with _store_errors():
                created = await self._store.create_local_pr(new)
        return self._shape(created)

    async def get_pr(self, repo: str, pr_id: int | str) -> PullRequest:
        return self._shape(await self._load(repo, pr_id))

    async def local_pr(self, repo: str, pr_id: int | str) -> LocalPullRequest:
        """The whole stored record: reviewers, approvals with times, every comment."""
        return await self._load(repo, pr_id)

    async def list_prs(
        self, *, repo: str | None = None, state: str | None = None
    ) -> list[LocalPullRequest]:
        """Pull requests, newest first, of one repository or all, in one state or any."""
        if repo is not None:
            self.repo_path(repo)
        return await self._list(repo=repo, state=state)

    async def pr_status(self, repo: str, pr_id: int | str) -> PrStatus:
        """Where the pull request stands. ``mergeable`` is worked out with a merge in memory
        (``git merge-tree``) while it is open; local repositories have no CI."""
        pr = await self._load(repo, pr_id)
        mergeable: bool | None = None
        if pr.state == "open":
            path = self._existing(repo)
            target, source = await self._tips(path, pr)
            if target and source:
                with contextlib.suppress(GitError):  # e.g. unrelated histories: unknown
                    mergeable = not (await merge_tree(path, target, source))[1]
        return PrStatus(
            pr=self._shape(pr),
            approvals=tuple(pr.approved_by),
            ci="none",
            mergeable=mergeable,
            comment_count=len(pr.comments),
        )

    async def diff(self, repo: str, pr_id: int | str) -> str:
        """The pull request's changes as a unified diff: ``target...source`` while it is open,
        what the merge brought in once merged."""
        pr = await self._load(repo, pr_id)
        path = self._existing(repo)
        if pr.state == "merged" and pr.base_commit and pr.merge_commit:
            span = [pr.base_commit, pr.merge_commit]
        else:
            target, source = await self._tips(path, pr)
            if target is None or source is None:
                gone = pr.source_branch if source is None else pr.target_branch
                raise ScmNotFound(f"branch {gone!r} no longer exists in {repo}", status=404)
            span = [f"{target}...{source}"]
        return await git_in(path, "diff", "--no-color", "--no-ext-diff", *span, "--")

    async def list_comments(self, repo: str, pr_id: int | str) -> list[PrComment]:
        pr = await self._load(repo, pr_id)
        return [_comment(c) for c in sorted(pr.comments, key=lambda c: c.id)]

    async def post_comment(
        self,
        repo: str,
        pr_id: int | str,
        body: str,
        *,
        path: str | None = None,
        line: int | None = None,
        author: str | None = None,
    ) -> PrComment:
        """Comment on the pull request; ``path`` and ``line`` make it an inline comment.
        ``author`` defaults to the plugin's user (the agent); ``coro pr`` passes the
        developer."""
        return await self._comment(
            repo, pr_id, body, parent_id=None, path=path, line=line, author=author
        )

    async def reply_to_comment(
        self,
        repo: str,
        pr_id: int | str,
        parent_id: int | str,
        body: str,
        *,
        author: str | None = None,
    ) -> PrComment:
        return await self._comment(repo, pr_id, body, parent_id=parent_id, author=author)

    async def _comment(
        self,
        repo: str,
        pr_id: int | str,
        body: str,
        *,
        parent_id: int | str | None,
        path: str | None = None,
        line: int | None = None,
        author: str | None = None,
    ) -> PrComment:
        if not body.strip():
            raise ScmError("a comment needs some text")
        parent = None if parent_id is None else _number(parent_id, "comment")
        added: list[LocalPrComment] = []

        def change(pr: LocalPullRequest) -> None:
            anchor = path, line
            if parent is not None:
                replied = pr.comment(parent)
                if replied is None:
                    raise ScmNotFound(f"{repo}#{pr.id} has no comment {parent}", status=404)
                anchor = replied.path, replied.line
            comment = LocalPrComment(
                id=pr.next_comment_id(),
                author=(author or "").strip() or self.user,
                body=body,
                parent_id=parent,
                path=anchor[0],
                line=anchor[1],
            )
            pr.comments.append(comment)
            added[:] = [comment]

        await self._update(repo, pr_id, change)
        return _comment(added[0])

    async def add_reviewers(
        self, repo: str, pr_id: int | str, reviewers: tuple[str, ...]
    ) -> PullRequest:
        wanted = _names(reviewers)

        def change(pr: LocalPullRequest) -> None:
            pr.reviewers += [r for r in wanted if r not in pr.reviewers]

        return self._shape(await self._update(repo, pr_id, change))

    async def approve(self, repo: str, pr_id: int | str, user: str) -> PullRequest:
        """Record ``user``'s approval (once per person) of an open pull request."""
        who = user.strip()
        if not who:
            raise ScmError("an approval needs the name of the person approving")

        def change(pr: LocalPullRequest) -> None:
            _require_open(pr, "approved")
            if who not in pr.approved_by:
                pr.approvals.append(LocalPrApproval(user=who))

        return self._shape(await self._update(repo, pr_id, change))

    async def decline(self, repo: str, pr_id: int | str) -> PullRequest:
        """Close an open pull request without merging it; its branch stays."""

        def change(pr: LocalPullRequest) -> None:
            _require_open(pr, "declined")
            pr.state = "declined"

        return self._shape(await self._update(repo, pr_id, change))

    # -- merging ----------------------------------------------------------------------------
    async def merge(
        self,
        repo: str,
        pr_id: int | str,
        *,
        strategy: MergeStrategy = "merge",
        message: str | None = None,
    ) -> PullRequest:
        """Merge into the target branch of the bare repository, for real.

        ``merge`` makes a merge commit (always, even when a fast-forward would do); ``squash``
        one commit with the pull request's title and description on top of the target;
        ``rebase`` replays the source's commits on the target (authors kept) and fast-forwards
        it. ``message`` replaces the merge or squash commit's message.

        The target branch moves only if it still points where it did when the merge began, so
        a push made meanwhile is never lost; on a conflict nothing in the repository changes.

        Raises:
            ScmConflict: the branches conflict (the files are named), the pull request is not
                open, a branch is gone, there is nothing to merge, or the target moved.
        """
        if strategy not in _STRATEGIES:
            raise ScmError(f"unknown merge strategy {strategy!r}: use merge, squash or rebase")
        path = self._existing(repo)
        async with self._lock(repo):
            pr = await self._load(repo, pr_id)
            _require_open(pr, "merged")
            target, source = await self._tips(path, pr)
            if target is None or source is None:
                gone = pr.source_branch if source is None else pr.target_branch
                raise ScmConflict(
                    f"{repo}#{pr.id} cannot be merged: branch {gone!r} no longer exists; push it "
                    "again or decline the pull request",
                    status=409,
                )
            if await is_ancestor(path, source, target):
                raise ScmConflict(
                    f"nothing to merge: every commit of {pr.source_branch!r} is already on "
                    f"{pr.target_branch!r}",
                    status=409,
                )
            try:
                new = await self._merge_into(path, pr, strategy, message, target, source)
            except MergeConflict as exc:
                raise ScmConflict(
                    f"{repo}#{pr.id} cannot be merged: {pr.source_branch!r} and "
                    f"{pr.target_branch!r} conflict in {', '.join(exc.files)}. Merge "
                    f"{pr.target_branch!r} into {pr.source_branch!r}, resolve the conflicts, "
                    "push, and merge again. Nothing was changed.",
                    status=409,
                ) from exc
            except TargetMoved as exc:
                raise ScmConflict(
                    f"{pr.target_branch!r} of {repo} moved while #{pr.id} was being merged "
                    "(someone pushed); nothing was changed. Merge again.",
                    status=409,
                ) from exc

            def record(stored: LocalPullRequest) -> None:
                stored.state = "merged"
                stored.merged_at = utcnow()
                stored.merge_commit = new
                stored.merge_strategy = strategy
                stored.base_commit = target

            return self._shape(await self._update(repo, pr.id, record))

    async def _merge_into(
        self,
        path: Path,
        pr: LocalPullRequest,
        strategy: MergeStrategy,
        message: str | None,
        target: str,
        source: str,
    ) -> str:
        if strategy == "rebase":
            return await rebase_onto(
                path,
                pr.target_branch,
                target=target,
                source=source,
                env=identity(self.user),
                scratch=self.root,
            )
        tree, conflicts = await merge_tree(path, target, source)
        if conflicts:
            raise MergeConflict(conflicts)
        if strategy == "merge":
            parents = [target, source]
            text = f"Merge pull request #{pr.id} from {pr.source_branch}\n\n{pr.title}\n"
            env = identity(self.user, author=self.user)
        else:
            parents = [target]
            text = "\n\n".join(filter(None, [f"{pr.title} (#{pr.id})", pr.description]))
            env = identity(self.user, author=pr.author)
        return await commit_onto(
            path,
            pr.target_branch,
            old=target,
            tree=tree,
            parents=parents,
            message=message or text,
            env=env,
            reflog=f"coro: merge pull request #{pr.id} ({pr.source_branch})",
        )

    async def _tips(self, path: Path, pr: LocalPullRequest) -> tuple[str | None, str | None]:
        """Where the target and source branches point now (``None`` for a missing one)."""
        return (
            await branch_sha(path, pr.target_branch),
            await branch_sha(path, pr.source_branch),
        )

    # -- people and webhooks ----------------------------------------------------------------
    async def resolve_user(self, query: str, *, repo: str | None = None) -> ScmUser | None:
        """Anyone is a local user: the name itself, if it is not empty."""
        name = query.strip()
        return ScmUser(id=name, username=name) if name else None

    def normalize_inbound(self, headers: Mapping[str, str], body: bytes) -> list[InboundEvent]:
        raise WebhookRejected("local repositories do not send webhooks")

    async def aclose(self) -> None:
        return None

    # -- helpers ----------------------------------------------------------------------------
    def _lock(self, repo: str) -> asyncio.Lock:
        return self._locks.setdefault(repo, asyncio.Lock())

    async def _check_branch_name(self, branch: str) -> None:
        if not await valid_branch(branch):
            raise ScmError(f"{branch!r} is not a valid branch name")

    def _shape(self, pr: LocalPullRequest) -> PullRequest:
        return PullRequest(
            id=pr.id,
            repo=pr.repo,
            title=pr.title,
            url=f"local://{pr.repo}/pull/{pr.id}",
            state=pr.state,
            source_branch=pr.source_branch,
            target_branch=pr.target_branch,
            author=pr.author,
            description=pr.description,
            reviewers=tuple(pr.reviewers),
            created_at=pr.created_at,
            merged_at=pr.merged_at,
            merge_commit=pr.merge_commit,
        )

    async def _load(self, repo: str, pr_id: int | str) -> LocalPullRequest:
        self.repo_path(repo)
        number = _number(pr_id, "pull request")
        with _store_errors():
            pr = await self._store.get_local_pr(repo, number)
        if pr is None:
            raise ScmNotFound(f"there is no pull request #{number} in {repo}", status=404)
        return pr

    async def _list(
        self, *, repo: str | None = None, state: str | None = None
    ) -> list[LocalPullRequest]:
        with _store_errors():
            return await self._store.list_local_prs(repo=repo, state=state)

    async def _update(
        self, repo: str, pr_id: int | str, change: Callable[[LocalPullRequest], None]
    ) -> LocalPullRequest:
        """Load, change and save the pull request, starting again if another writer won."""
        for _ in range(_SAVE_ATTEMPTS):
            pr = await self._load(repo, pr_id)
            change(pr)
            try:
                with _store_errors():
                    return await self._store.save_local_pr(pr)
            except StalePullRequestError:
                continue
        raise ScmConflict(f"{repo}#{pr_id} keeps changing underneath; try again", status=409)


# -- module helpers -------------------------------------------------------------------------------
@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Turn a failing state store into an :class:`ScmError` (a lost race passes through)."""
    try:
        yield
    except StalePullRequestError:
        raise
    except StateError as exc:
        raise ScmError(f"the pull request store failed: {exc.message}") from exc


def _require_open(pr: LocalPullRequest, verb: str) -> None:
    if pr.state != "open":
        raise ScmConflict(
            f"{pr.repo}#{pr.id} is {pr.state}: only an open pull request can be {verb}",
            status=409,
        )


def _number(value: int | str, what: str) -> int:
    text = str(value).strip().removeprefix("#")
    if not text.isdigit() or int(text) < 1:
        raise ScmNotFound(f"{value!r} is not a {what} number", status=404)
    return int(text)


def _names(people: Sequence[str]) -> list[str]:
    """Non-empty names, stripped, each once, in the order given."""
    return list(dict.fromkeys(p.strip() for p in people if p.strip()))


def _comment(comment: LocalPrComment) -> PrComment:
    return PrComment(
        id=comment.id,
        author=comment.author,
        body=comment.body,
        created_at=comment.created_at,
        parent_id=comment.parent_id,
        path=comment.path,
        line=comment.line,
    )
