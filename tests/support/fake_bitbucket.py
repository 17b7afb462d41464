"""A fake Bitbucket Cloud (REST 2.0) over real git repositories, for integration tests.

It answers the endpoints :class:`engine.scm.bitbucket.BitbucketPlugin` uses, shaped like
Bitbucket's answers, and serves the repositories themselves over git smart HTTP at ``/git``::

    fake = FakeBitbucket(tmp_path)
    fake.create_repo("acme/svc")                   # a bare repository with main
    async with serving(fake):                      # http://127.0.0.1:PORT
        plugin = BitbucketPlugin(workspace="acme", token=fake.token, base_url=fake.api_url)

Branch heads are read from the bare repositories and a merge is a real merge (``git
merge-tree``, then ``commit-tree`` and ``update-ref``), so a conflict is a real conflict.
Collections are paginated with ``next`` links and a small ``pagelen`` so clients must page.
Test hooks: :meth:`fail_next` (429 or 5xx for the next requests), :meth:`approve`,
:meth:`request_changes`, :meth:`add_status`, :meth:`delete_comment`, ``merge_async`` (answer a
merge with 202 and a task-status link). State lives in memory.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import subprocess
import uuid as uuidlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from engine._serving import InLoopServer, bind_tcp
from tests.support.git_http import GitHttpBackend

__all__ = ["FakeBitbucket", "FakeUser", "serving"]

Json = dict[str, Any]

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bitbucket",
    "GIT_AUTHOR_EMAIL": "noreply@bitbucket.test",
    "GIT_COMMITTER_NAME": "Bitbucket",
    "GIT_COMMITTER_EMAIL": "noreply@bitbucket.test",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


@dataclass(frozen=True)
class FakeUser:
    nickname: str
    display_name: str
    uuid: str = field(default_factory=lambda: "{" + str(uuidlib.uuid4()) + "}")
    account_id: str = field(default_factory=lambda: "5b" + uuidlib.uuid4().hex[:22])

    def json(self) -> Json:
        return {
            "type": "user",
            "nickname": self.nickname,
            "display_name": self.display_name,
            "uuid": self.uuid,
            "account_id": self.account_id,
        }


@dataclass
class FakePr:
    id: int
    repo: str
    title: str
    description: str
    source: str
    destination: str
    author: FakeUser
    reviewers: list[FakeUser]
    state: str = "OPEN"
    created_on: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_on: datetime = field(default_factory=lambda: datetime.now(UTC))
    merge_commit: str | None = None
    votes: dict[str, tuple[FakeUser, str]] = field(default_factory=dict)  # uuid → (who, state)
    comments: list[Json] = field(default_factory=list)
    statuses: list[Json] = field(default_factory=list)


class FakeBitbucket:
    """The fake service: an ASGI app plus the hooks tests drive it with."""

    def __init__(
        self,
        root: Path,
        *,
        token: str = "bb-access-token-0123456789",
        username: str = "dev",
        app_password: str = "bb-app-password-9876543210",
        pagelen: int = 2,
    ) -> None:
        self.root = root
        self.token = token
        self.username = username
        self.app_password = app_password
        self.pagelen = pagelen
        self.bot = FakeUser("coro-bot", "Coro Bot")
        self.members: dict[str, list[FakeUser]] = {}
        self.repos: dict[str, Path] = {}
        self.prs: dict[str, dict[int, FakePr]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path?query) of API requests
        self.merge_async = False
        self.base_url = ""  # set by serving()
        self._failures: list[tuple[int, float | None]] = []
        self._ids = itertools.count(1)
        self._comment_ids = itertools.count(1001)
        self._tasks: dict[str, tuple[str, int, int]] = {}  # task → (slug, pr id, polls left)
        self._git = GitHttpBackend(root)
        self._api = Starlette(routes=self._routes())

    # -- test hooks ---------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"{self.base_url}/2.0"

    def add_member(self, workspace: str, user: FakeUser) -> FakeUser:
        self.members.setdefault(workspace, []).append(user)
        return user

    def create_repo(self, slug: str, files: Mapping[str, str] | None = None) -> Path:
        """A bare repository ``<root>/<slug>.git`` whose ``main`` holds ``files``."""
        workspace = slug.split("/")[0]
        if workspace not in self.members:
            self.add_member(workspace, self.bot)
            self.add_member(workspace, FakeUser(self.username, "The Developer"))
        bare = self.root / f"{slug}.git"
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git_sync(bare.parent, "init", "--quiet", "--bare", "-b", "main", str(bare))
        entries = []
        for name, content in (files or {"README.md": "# svc\n"}).items():
            blob = _git_sync(bare, "hash-object", "-w", "--stdin", input=content)
            entries.append(f"100644 blob {blob}\t{name}\n")
        tree = _git_sync(bare, "mktree", input="".join(entries))
        commit = _git_sync(bare, "commit-tree", tree, "-m", "Initial commit")
        _git_sync(bare, "update-ref", "refs/heads/main", commit)
        self.repos[slug] = bare
        self.prs[slug] = {}
        return bare

    def commit_to(
        self, slug: str, branch: str, files: Mapping[str, str], *, base: str = "main"
    ) -> str:
        """Commit ``files`` (over ``base``'s tree) to ``branch`` straight into the bare repo,
        as a developer pushing would; returns the commit."""
        bare = self.repos[slug]
        parent = self.head(slug, branch if _has_branch(bare, branch) else base)
        index = {"GIT_INDEX_FILE": str(bare / f"index-{uuidlib.uuid4().hex}")}
        _git_sync(bare, "read-tree", parent, env=index)
        for name, content in files.items():
            blob = _git_sync(bare, "hash-object", "-w", "--stdin", input=content)
            _git_sync(
                bare, "update-index", "--add", "--cacheinfo", f"100644,{blob},{name}", env=index
            )
        tree = _git_sync(bare, "write-tree", env=index)
        Path(index["GIT_INDEX_FILE"]).unlink()
        commit = _git_sync(bare, "commit-tree", tree, "-p", parent, "-m", f"Change {branch}")
        _git_sync(bare, "update-ref", f"refs/heads/{branch}", commit)
        return commit

    def head(self, slug: str, branch: str) -> str:
        return _git_sync(self.repos[slug], "rev-parse", f"refs/heads/{branch}")

    def is_ancestor(self, slug: str, commit: str, branch: str) -> bool:
        result = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.repos[slug]),
                "merge-base",
                "--is-ancestor",
                commit,
                f"refs/heads/{branch}",
            ],
            env={**os.environ, **GIT_ENV},
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def fail_next(self, count: int, status: int = 429, *, retry_after: float | None = None) -> None:
        """Answer the next ``count`` API requests with ``status`` (and ``Retry-After``)."""
        self._failures.extend([(status, retry_after)] * count)

    def approve(self, slug: str, pr_id: int, user: FakeUser) -> None:
        self.prs[slug][pr_id].votes[user.uuid] = (user, "approved")

    def request_changes(self, slug: str, pr_id: int, user: FakeUser) -> None:
        self.prs[slug][pr_id].votes[user.uuid] = (user, "changes_requested")

    def add_status(self, slug: str, pr_id: int, state: str, *, key: str = "ci") -> None:
        """Set build status ``key`` of the PR's head commit (replacing one with that key)."""
        pr = self.prs[slug][pr_id]
        pr.statuses = [s for s in pr.statuses if s["key"] != key]
        pr.statuses.append(
            {
                "type": "build",
                "key": key,
                "name": key,
                "state": state,
                "url": f"https://ci.test/{key}",
                "refname": pr.source,
            }
        )

    def delete_comment(self, slug: str, pr_id: int, comment_id: int) -> None:
        for comment in self.prs[slug][pr_id].comments:
            if comment["id"] == comment_id:
                comment["deleted"] = True

    # -- ASGI -----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path: str = scope["path"]
        if path.startswith("/git/"):
            if self._caller(headers.get("authorization")) is None:
                response: Response = Response(
                    "authentication required", 401, {"WWW-Authenticate": 'Basic realm="git"'}
                )
                await response(scope, receive, send)
                return
            scope = {**scope, "root_path": scope.get("root_path", "") + "/git"}
            await self._git(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode()
        self.requests.append((scope["method"], path + (f"?{query}" if query else "")))
        if self._failures:
            status, retry_after = self._failures.pop(0)
            extra = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            response = _error(status, "Rate limit for this resource has been exceeded", extra)
        elif self._caller(headers.get("authorization")) is None:
            response = _error(401, "Access token expired or invalid")
        else:
            await self._api(scope, receive, send)
            return
        await response(scope, receive, send)

    def _caller(self, header: str | None) -> FakeUser | None:
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() == "bearer" and value.strip() == self.token:
            return self.bot
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            if user == "x-token-auth" and password == self.token:
                return self.bot
            if user == self.username and password == self.app_password:
                return next(
                    u
                    for users in self.members.values()
                    for u in users
                    if u.nickname == self.username
                )
        return None

    # -- routes ---------------------------------------------------------------------------------
    def _routes(self) -> list[Route | Mount]:
        repo = "/2.0/repositories/{ws}/{repo}"
        pr = repo + "/pullrequests/{pr_id:int}"
        return [
            Route(repo, self._get_repo),
            Route(repo + "/pullrequests", self._pullrequests, methods=["GET", "POST"]),
            Route(pr, self._pullrequest, methods=["GET", "PUT"]),
            Route(pr + "/merge", self._merge, methods=["POST"]),
            Route(pr + "/merge/task-status/{task}", self._task_status),
            Route(pr + "/statuses", self._statuses),
            Route(pr + "/comments", self._comments, methods=["GET", "POST"]),
            Route("/2.0/workspaces/{ws}/members", self._members),
        ]

    def _slug(self, request: Request) -> str:
        return f"{request.path_params['ws']}/{request.path_params['repo']}"

    def _pr_of(self, request: Request) -> FakePr | None:
        prs = self.prs.get(self._slug(request), {})
        return prs.get(request.path_params["pr_id"])

    async def _get_repo(self, request: Request) -> Response:
        slug = self._slug(request)
        if slug not in self.repos:
            return _error(404, f"Repository {slug} not found")
        return JSONResponse(
            {
                "type": "repository",
                "full_name": slug,
                "name": slug.split("/")[1],
                "mainbranch": {"type": "branch", "name": "main"},
                "links": {
                    "html": {"href": f"https://bitbucket.org/{slug}"},
                    "clone": [
                        {
                            "name": "https",
                            "href": f"http://x-token-auth@{self._netloc}/git/{slug}.git",
                        },
                        {"name": "ssh", "href": f"git@bitbucket.org:{slug}.git"},
                    ],
                },
            }
        )

    @property
    def _netloc(self) -> str:
        return self.base_url.split("://", 1)[1]

    async def _pullrequests(self, request: Request) -> Response:
        slug = self._slug(request)
        if slug not in self.repos:
            return _error(404, f"Repository {slug} not found")
        if request.method == "POST":
            return await self._create_pr(request, slug)
        terms = _parse_q(request.query_params.get("q", ""))
        states = request.query_params.getlist("state") or ([] if "state" in terms else ["OPEN"])
        found = [
            self._pr_json(pr)
            for pr in self.prs[slug].values()
            if (not states or pr.state in states)
            and all(str(_dig(self._pr_json(pr), key)) == value for key, value in terms.items())
        ]
        return JSONResponse(self._page(request, found))

    async def _create_pr(self, request: Request, slug: str) -> Response:
        body = await request.json()
        author = self._caller(request.headers.get("authorization"))
        assert author is not None
        source = _dig(body, "source.branch.name")
        destination = _dig(body, "destination.branch.name") or "main"
        for branch in (source, destination):
            if (
                not branch
                or await _git(
                    self.repos[slug], "rev-parse", "--verify", "-q", f"refs/heads/{branch}"
                )
                is None
            ):
                return _error(400, f"branch {branch!r} not found", fields={"source": [branch]})
        reviewers = self._reviewers(slug, body.get("reviewers") or [], author)
        if isinstance(reviewers, Response):
            return reviewers
        pr = FakePr(
            id=next(self._ids),
            repo=slug,
            title=body.get("title") or "",
            description=body.get("description") or "",
            source=source,
            destination=destination,
            author=author,
            reviewers=reviewers,
        )
        self.prs[slug][pr.id] = pr
        return JSONResponse(self._pr_json(pr), status_code=201)

    def _reviewers(
        self, slug: str, refs: list[Json], author: FakeUser
    ) -> list[FakeUser] | Response:
        members = self.members.get(slug.split("/")[0], [])
        chosen: list[FakeUser] = []
        for ref in refs:
            user = next(
                (
                    u
                    for u in members
                    if ref.get("uuid") == u.uuid or ref.get("account_id") == u.account_id
                ),
                None,
            )
            if user is None:
                return _error(400, f"reviewer {ref} is not a member of the workspace")
            if user == author:
                return _error(
                    400, f"{user.display_name} is the author and cannot be included as a reviewer."
                )
            chosen.append(user)
        return chosen

    async def _pullrequest(self, request: Request) -> Response:
        pr = self._pr_of(request)
        if pr is None:
            return _error(404, "Pull request not found")
        if request.method == "PUT":
            body = await request.json()
            if "reviewers" in body:
                reviewers = self._reviewers(pr.repo, body["reviewers"], pr.author)
                if isinstance(reviewers, Response):
                    return reviewers
                pr.reviewers = reviewers
            pr.title = body.get("title", pr.title)
            pr.description = body.get("description", pr.description)
            pr.updated_on = datetime.now(UTC)
        return JSONResponse(self._pr_json(pr))

    async def _merge(self, request: Request) -> Response:
        pr = self._pr_of(request)
        if pr is None:
            return _error(404, "Pull request not found")
        if pr.state != "OPEN":
            return _error(400, "You can't merge a pull request that isn't open.")
        body = await request.json() if await request.body() else {}
        strategy = body.get("merge_strategy", "merge_commit")
        message = body.get("message") or f"Merged in {pr.source} (pull request #{pr.id})"
        refused = await self._git_merge(pr, strategy, message)
        if refused is not None:
            return _error(400, refused)
        if self.merge_async:
            task = uuidlib.uuid4().hex
            self._tasks[task] = (pr.repo, pr.id, 1)
            location = f"{self.api_url}/repositories/{pr.repo}/pullrequests/{pr.id}"
            location += f"/merge/task-status/{task}"
            return JSONResponse({"task_status": "PENDING"}, 202, {"Location": location})
        return JSONResponse(self._pr_json(pr))

    async def _git_merge(self, pr: FakePr, strategy: str, message: str) -> str | None:
        """Merge in the bare repository; the reason Bitbucket would give if it cannot."""
        bare = self.repos[pr.repo]
        target = await _git(bare, "rev-parse", f"refs/heads/{pr.destination}")
        source = await _git(bare, "rev-parse", f"refs/heads/{pr.source}")
        assert target and source
        if strategy == "fast_forward":
            if await _git(bare, "merge-base", "--is-ancestor", target, source) is None:
                return "Fast-forward merge is not possible: the destination branch has diverged."
            commit = source
        elif strategy in ("merge_commit", "squash"):
            tree = await _git(bare, "merge-tree", "--write-tree", "--no-messages", target, source)
            if tree is None:
                return "Conflicts during merge."
            parents = ["-p", target] + (["-p", source] if strategy == "merge_commit" else [])
            commit = await _git(bare, "commit-tree", tree.splitlines()[0], *parents, "-m", message)
            assert commit
        else:
            return f"merge_strategy: {strategy!r} is not a valid merge strategy."
        if await _git(bare, "update-ref", f"refs/heads/{pr.destination}", commit, target) is None:
            return "The destination branch moved during the merge; try again."
        pr.state, pr.merge_commit, pr.updated_on = "MERGED", commit, datetime.now(UTC)
        return None

    async def _task_status(self, request: Request) -> Response:
        task = self._tasks.get(request.path_params["task"])
        if task is None:
            return _error(404, "Task not found")
        slug, pr_id, polls = task
        if polls > 0:
            self._tasks[request.path_params["task"]] = (slug, pr_id, polls - 1)
            return JSONResponse({"task_status": "PENDING"})
        return JSONResponse(
            {"task_status": "SUCCESS", "merge_result": self._pr_json(self.prs[slug][pr_id])}
        )

    async def _statuses(self, request: Request) -> Response:
        pr = self._pr_of(request)
        if pr is None:
            return _error(404, "Pull request not found")
        return JSONResponse(self._page(request, pr.statuses))

    async def _comments(self, request: Request) -> Response:
        pr = self._pr_of(request)
        if pr is None:
            return _error(404, "Pull request not found")
        if request.method == "GET":
            return JSONResponse(self._page(request, pr.comments))
        body = await request.json()
        raw = _dig(body, "content.raw")
        if not raw:
            return _error(400, "content: This field is required.")
        parent = _dig(body, "parent.id")
        if parent is not None and not any(c["id"] == parent for c in pr.comments):
            return _error(404, f"Comment {parent} not found")
        user = self._caller(request.headers.get("authorization"))
        assert user is not None
        comment_id = next(self._comment_ids)
        comment: Json = {
            "type": "pullrequest_comment",
            "id": comment_id,
            "content": {"raw": raw, "markup": "markdown", "type": "rendered"},
            "user": user.json(),
            "created_on": datetime.now(UTC).isoformat(),
            "deleted": False,
            "links": {
                "html": {
                    "href": f"https://bitbucket.org/{pr.repo}/pull-requests/"
                    f"{pr.id}/_/diff#comment-{comment_id}"
                }
            },
        }
        if parent is not None:
            comment["parent"] = {"id": parent}
        if isinstance(body.get("inline"), dict):
            comment["inline"] = body["inline"]
        pr.comments.append(comment)
        return JSONResponse(comment, status_code=201)

    async def _members(self, request: Request) -> Response:
        workspace = request.path_params["ws"]
        if workspace not in self.members:
            return _error(404, f"Workspace {workspace} not found")
        values = [
            {"type": "workspace_membership", "user": u.json(), "workspace": {"slug": workspace}}
            for u in self.members[workspace]
        ]
        return JSONResponse(self._page(request, values))

    # -- shapes ---------------------------------------------------------------------------------
    def _page(self, request: Request, items: list[Json]) -> Json:
        page = int(request.query_params.get("page", "1"))
        start = (page - 1) * self.pagelen
        body: Json = {
            "pagelen": self.pagelen,
            "page": page,
            "size": len(items),
            "values": items[start : start + self.pagelen],
        }
        if start + self.pagelen < len(items):
            body["next"] = str(request.url.include_query_params(page=page + 1))
        return body

    def _pr_json(self, pr: FakePr) -> Json:
        bare = self.repos[pr.repo]

        def side(branch: str) -> Json:
            head = _git_sync(bare, "rev-parse", f"refs/heads/{branch}")
            return {
                "branch": {"name": branch},
                "commit": {"hash": head[:12]},
                "repository": {"full_name": pr.repo, "type": "repository"},
            }

        reviewer_ids = {u.uuid for u in pr.reviewers}
        people = {u.uuid: (u, None) for u in pr.reviewers} | pr.votes
        web = f"https://bitbucket.org/{pr.repo}/pull-requests/{pr.id}"
        return {
            "type": "pullrequest",
            "id": pr.id,
            "title": pr.title,
            "description": pr.description,
            "state": pr.state,
            "author": pr.author.json(),
            "source": side(pr.source),
            "destination": side(pr.destination),
            "reviewers": [u.json() for u in pr.reviewers],
            "participants": [
                {
                    "type": "participant",
                    "user": user.json(),
                    "role": "REVIEWER" if user.uuid in reviewer_ids else "PARTICIPANT",
                    "approved": vote == "approved",
                    "state": vote,
                }
                for user, vote in people.values()
            ],
            "close_source_branch": False,
            "merge_commit": {"hash": pr.merge_commit} if pr.merge_commit else None,
            "comment_count": sum(1 for c in pr.comments if not c["deleted"]),
            "task_count": 0,
            "created_on": pr.created_on.isoformat(),
            "updated_on": pr.updated_on.isoformat(),
            "links": {
                "html": {"href": web},
                "self": {"href": f"{self.api_url}/repositories/{pr.repo}/pullrequests/{pr.id}"},
            },
        }


@asynccontextmanager
async def serving(fake: FakeBitbucket) -> AsyncIterator[FakeBitbucket]:
    """Serve ``fake`` on a free loopback port for the duration of the block."""
    sock = bind_tcp("127.0.0.1", 0)
    fake.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = InLoopServer(fake, sock, name="fake-bitbucket")
    await server.start()
    try:
        yield fake
    finally:
        await server.stop()


# -- helpers --------------------------------------------------------------------------------------
def _error(
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    fields: Json | None = None,
) -> JSONResponse:
    error: Json = {"message": message}
    if fields:
        error["fields"] = fields
    return JSONResponse({"type": "error", "error": error}, status, dict(headers or {}))


def _dig(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


_TERM = re.compile(r'([\w.]+)\s*=\s*"((?:[^"\\]|\\.)*)"')


def _parse_q(q: str) -> dict[str, str]:
    """The ``field="value" AND …`` subset of Bitbucket's filter language."""
    terms = {}
    for clause in filter(None, (c.strip() for c in re.split(r"\s+AND\s+", q))):
        match = _TERM.fullmatch(clause)
        assert match, f"unsupported q clause: {clause}"
        terms[match[1]] = re.sub(r"\\(.)", r"\1", match[2])
    return terms


async def _git(git_dir: Path, *args: str) -> str | None:
    """``git --git-dir git_dir args``: its stdout, or None if it failed."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        "--git-dir",
        str(git_dir),
        *args,
        env={**os.environ, **GIT_ENV},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return out.decode().strip() if proc.returncode == 0 else None


def _git_sync(
    git_dir: Path, *args: str, input: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    result = subprocess.run(
        ["git", "--git-dir", str(git_dir), *args],
        env={**os.environ, **GIT_ENV, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def _has_branch(git_dir: Path, branch: str) -> bool:
    result = subprocess.run(
        ["git", "--git-dir", str(git_dir), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        check=False,
    )
    return result.returncode == 0
