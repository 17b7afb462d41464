"""A fake GitHub REST v3 API over real bare git repositories, for testing the GitHub plugin.

::

    fake = FakeGitHub(tmp_path / "repos", token="ghp_test")
    fake.create_repo("acme/svc", {"README.md": "hi\\n"})
    async with fake.serving():          # fake.base_url → http://127.0.0.1:PORT
        ...                             # clone http://127.0.0.1:PORT/git/acme/svc.git

Branch heads are read from the bare repositories with ``git rev-parse``, so a branch pushed
with real git is what a pull request shows. Merging runs a real ``git merge`` (``--squash``,
or a ``rebase``) in a temporary worktree and moves the base branch; a conflict answers 405 as
GitHub does. Pull requests, reviews, comments, check runs and users live in memory.

List endpoints page by at most ``max_per_page`` items with ``Link`` headers. Test hooks
(``add_review``, ``add_check_run``…) change state directly; ``fail_next`` makes the next
requests answer with a rate limit or a 502.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from engine._serving import InLoopServer, bind_tcp
from tests.support.git_http import GitHttpBackend

__all__ = ["FakeGitHub"]

Json = dict[str, Any]
Failure = Literal["secondary_rate_limit", "primary_rate_limit", "bad_gateway"]

_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "GitHub",
    "GIT_AUTHOR_EMAIL": "noreply@github.com",
    "GIT_COMMITTER_NAME": "GitHub",
    "GIT_COMMITTER_EMAIL": "noreply@github.com",
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"message": message, "documentation_url": "https://docs.github.com"},
        status_code=status,
        headers=headers,
    )


@dataclass
class _PullRequest:
    number: int
    repo: str
    title: str
    body: str
    head: str
    base: str
    author: str
    created_at: str
    state: Literal["open", "closed"] = "open"
    merged_at: str | None = None
    merge_commit_sha: str | None = None
    head_sha_at_close: str | None = None
    reviewers: list[str] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)
    reviews: list[Json] = field(default_factory=list)


class FakeGitHub:
    """The fake API as an ASGI app; ``serving()`` runs it on loopback in the current loop."""

    def __init__(self, root: Path, *, token: str, viewer: str = "coro-bot") -> None:
        self.root = root
        self.token = token
        self.viewer = viewer
        self.max_per_page = 2
        self.base_url = ""
        self.requests: list[tuple[str, str]] = []  # (method, path with query) of API calls
        self.pulls: dict[str, list[_PullRequest]] = {}
        self.issue_comments: list[Json] = []
        self.review_comments: list[Json] = []
        self.check_runs: list[Json] = []
        self.statuses: list[Json] = []
        self.users: dict[str, Json] = {}
        self._failures: list[tuple[Failure, float]] = []
        self._ids = itertools.count(1000)
        root.mkdir(parents=True, exist_ok=True)
        self.git = GitHttpBackend(root, token=token)
        repo = "/repos/{owner}/{name}"
        pull = repo + "/pulls/{number:int}"
        self.app = Starlette(
            routes=[
                Mount("/git", app=self.git),
                Route(repo, self._repo),
                Route(repo + "/pulls", self._list_pulls, methods=["GET"]),
                Route(repo + "/pulls", self._create_pull, methods=["POST"]),
                Route(pull, self._get_pull),
                Route(pull + "/requested_reviewers", self._request_reviewers, methods=["POST"]),
                Route(pull + "/reviews", self._list_reviews),
                Route(pull + "/comments", self._list_review_comments),
                Route(pull + "/comments/{id:int}/replies", self._reply, methods=["POST"]),
                Route(pull + "/merge", self._merge, methods=["PUT"]),
                Route(repo + "/pulls/comments/{id:int}", self._get_review_comment),
                Route(repo + "/issues/{number:int}/comments", self._list_issue_comments),
                Route(
                    repo + "/issues/{number:int}/comments",
                    self._post_issue_comment,
                    methods=["POST"],
                ),
                Route(repo + "/issues/comments/{id:int}", self._get_issue_comment),
                Route(repo + "/commits/{sha}/check-runs", self._check_runs),
                Route(repo + "/commits/{sha}/status", self._combined_status),
                Route("/users/{login}", self._get_user),
                Route("/user/{id:int}", self._get_user_by_id),
                Route("/search/users", self._search_users),
            ]
        )

    # -- serving ----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/git/"):
            failure = self._gate(scope)
            if failure is not None:
                await failure(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeGitHub]:
        sock = bind_tcp("127.0.0.1", 0)
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = InLoopServer(self, sock, name="fake-github")
        await server.start()
        try:
            yield self
        finally:
            await server.stop()

    def _gate(self, scope: Scope) -> Response | None:
        """Record the call; answer 401 without the token, or with a queued failure."""
        query = scope.get("query_string", b"").decode()
        self.requests.append((scope["method"], scope["path"] + (f"?{query}" if query else "")))
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "Bad credentials")
        if not self._failures:
            return None
        kind, retry_after = self._failures.pop(0)
        if kind == "bad_gateway":
            return Response("<html>502 Bad Gateway</html>", status_code=502)
        if kind == "primary_rate_limit":
            reset = str(int(datetime.now(UTC).timestamp() + retry_after))
            return _error(
                403,
                "API rate limit exceeded for user ID 1.",
                **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset},
            )
        return _error(
            403,
            "You have exceeded a secondary rate limit. Please wait a few minutes.",
            **{"retry-after": f"{retry_after:g}"},
        )

    def fail_next(self, count: int, kind: Failure, *, retry_after: float = 30.0) -> None:
        """Answer the next ``count`` API requests with ``kind`` instead of serving them."""
        self._failures.extend([(kind, retry_after)] * count)

    # -- test hooks -------------------------------------------------------------------------------
    def bare(self, repo: str) -> Path:
        return self.root / f"{repo}.git"

    def create_repo(self, repo: str, files: dict[str, str], *, branch: str = "main") -> None:
        """A bare repository with one commit on ``branch`` holding ``files``."""
        with tempfile.TemporaryDirectory() as work:
            _run("git", "init", "-q", "-b", branch, work)
            for name, text in files.items():
                (Path(work) / name).write_text(text)
            _run("git", "-C", work, "add", "-A")
            _run("git", "-C", work, "commit", "-q", "-m", "Initial commit")
            _run("git", "clone", "-q", "--bare", work, str(self.bare(repo)))
        _run(
            "git", "--git-dir", str(self.bare(repo)), "symbolic-ref", "HEAD", f"refs/heads/{branch}"
        )

    def head_of(self, repo: str, branch: str) -> str | None:
        result = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.bare(repo)),
                "rev-parse",
                "--verify",
                "-q",
                f"refs/heads/{branch}",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **_GIT_ENV},
            check=False,
        )
        return result.stdout.strip() or None

    def add_user(self, login: str, *, name: str | None = None, email: str | None = None) -> Json:
        user = {"login": login, "id": next(self._ids), "name": name, "email": email, "type": "User"}
        self.users[login] = user
        return user

    def add_review(self, repo: str, number: int, user: str, state: str, body: str = "") -> Json:
        """A submitted review: ``APPROVED``, ``CHANGES_REQUESTED``, ``COMMENTED``…"""
        pr = self._pr(repo, number)
        review = {
            "id": next(self._ids),
            "user": {"login": user},
            "state": state,
            "body": body,
            "commit_id": self.head_of(repo, pr.head),
            "submitted_at": _now(),
        }
        pr.reviews.append(review)
        return review

    def add_review_comment(
        self, repo: str, number: int, user: str, body: str, *, path: str, line: int
    ) -> Json:
        """An inline comment on ``path:line`` of a pull request's diff."""
        pr = self._pr(repo, number)
        return self._new_review_comment(repo, pr, user, body, path=path, line=line)

    def add_check_run(
        self,
        repo: str,
        sha: str,
        name: str,
        *,
        status: str = "completed",
        conclusion: str | None = "success",
    ) -> Json:
        run = {
            "id": next(self._ids),
            "repo": repo,
            "head_sha": sha,
            "name": name,
            "status": status,
            "conclusion": conclusion if status == "completed" else None,
        }
        self.check_runs.append(run)
        return run

    def add_status(self, repo: str, sha: str, context: str, state: str) -> None:
        """A commit status (``success``, ``pending``, ``failure``, ``error``)."""
        self.statuses.append({"repo": repo, "sha": sha, "context": context, "state": state})

    # -- helpers ----------------------------------------------------------------------------------
    def _pr(self, repo: str, number: int) -> _PullRequest:
        for pr in self.pulls.get(repo, []):
            if pr.number == number:
                return pr
        raise LookupError(f"{repo}#{number}")

    def _html(self, repo: str) -> str:
        return f"{self.base_url}/web/{repo}"

    def _page(self, request: Request, items: list[Json], key: str | None = None) -> Response:
        per_page = min(int(request.query_params.get("per_page", 30)), self.max_per_page)
        page = int(request.query_params.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        last = max((len(items) + per_page - 1) // per_page, 1)
        if page < last:
            query = {**request.query_params, "page": str(page + 1)}
            links = [f'<{self.base_url}{request.url.path}?{urlencode(query)}>; rel="next"']
            query["page"] = str(last)
            links.append(f'<{self.base_url}{request.url.path}?{urlencode(query)}>; rel="last"')
            headers["link"] = ", ".join(links)
        body: Any = {"total_count": len(items), key: chunk} if key else chunk
        return JSONResponse(body, headers=headers)

    async def _mergeable(self, repo: str, pr: _PullRequest) -> bool | None:
        if pr.state != "open":
            return None
        proc = await asyncio.create_subprocess_exec(
            "git",
            "--git-dir",
            str(self.bare(repo)),
            "merge-tree",
            "--write-tree",
            f"refs/heads/{pr.base}",
            f"refs/heads/{pr.head}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, **_GIT_ENV},
        )
        return await proc.wait() == 0

    async def _pr_json(self, repo: str, pr: _PullRequest, *, detail: bool = True) -> Json:
        owner = repo.partition("/")[0]
        head_sha = pr.head_sha_at_close or self.head_of(repo, pr.head)
        data: Json = {
            "url": f"{self.base_url}/repos/{repo}/pulls/{pr.number}",
            "html_url": f"{self._html(repo)}/pull/{pr.number}",
            "number": pr.number,
            "state": pr.state,
            "title": pr.title,
            "body": pr.body or None,
            "user": {"login": pr.author},
            "created_at": pr.created_at,
            "merged_at": pr.merged_at,
            "merge_commit_sha": pr.merge_commit_sha,
            "head": {"ref": pr.head, "sha": head_sha, "label": f"{owner}:{pr.head}"},
            "base": {"ref": pr.base, "sha": self.head_of(repo, pr.base)},
            "requested_reviewers": [{"login": r} for r in pr.reviewers],
            "requested_teams": [{"slug": t} for t in pr.teams],
        }
        if detail:
            data |= {
                "merged": pr.merged_at is not None,
                "mergeable": await self._mergeable(repo, pr),
                "comments": sum(c["_pr"] == (repo, pr.number) for c in self.issue_comments),
                "review_comments": sum(c["_pr"] == (repo, pr.number) for c in self.review_comments),
            }
        return data

    def _new_review_comment(
        self,
        repo: str,
        pr: _PullRequest,
        user: str,
        body: str,
        *,
        path: str,
        line: int,
        in_reply_to: int | None = None,
    ) -> Json:
        comment_id = next(self._ids)
        comment = {
            "_pr": (repo, pr.number),
            "id": comment_id,
            "user": {"login": user},
            "body": body,
            "path": path,
            "line": line,
            "in_reply_to_id": in_reply_to,
            "created_at": _now(),
            "html_url": f"{self._html(repo)}/pull/{pr.number}#discussion_r{comment_id}",
        }
        self.review_comments.append(comment)
        return comment

    @staticmethod
    def _public(comment: Json) -> Json:
        return {k: v for k, v in comment.items() if not k.startswith("_")}

    # -- routes -----------------------------------------------------------------------------------
    def _slug(self, request: Request) -> str | None:
        repo = f"{request.path_params['owner']}/{request.path_params['name']}"
        return repo if self.bare(repo).is_dir() else None

    async def _repo(self, request: Request) -> Response:
        repo = self._slug(request)
        if repo is None:
            return _error(404, "Not Found")
        branch = subprocess.run(
            ["git", "--git-dir", str(self.bare(repo)), "symbolic-ref", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return JSONResponse(
            {
                "full_name": repo,
                "default_branch": branch,
                "html_url": self._html(repo),
                "clone_url": f"{self.base_url}/git/{repo}.git",
            }
        )

    async def _list_pulls(self, request: Request) -> Response:
        repo = self._slug(request)
        if repo is None:
            return _error(404, "Not Found")
        query = request.query_params
        owner = repo.partition("/")[0]
        found = [
            await self._pr_json(repo, pr, detail=False)
            for pr in self.pulls.get(repo, [])
            if query.get("state", "open") in ("all", pr.state)
            and ("head" not in query or query["head"] == f"{owner}:{pr.head}")
            and ("base" not in query or query["base"] == pr.base)
        ]
        return self._page(request, found)

    async def _create_pull(self, request: Request) -> Response:
        repo = self._slug(request)
        if repo is None:
            return _error(404, "Not Found")
        data = await request.json()
        head, base = data.get("head", ""), data.get("base", "")
        if self.head_of(repo, head) is None or self.head_of(repo, base) is None:
            return _error(422, "Validation Failed")
        if any(
            p.head == head and p.base == base and p.state == "open"
            for p in self.pulls.get(repo, [])
        ):
            owner = repo.partition("/")[0]
            return _error(422, f"A pull request already exists for {owner}:{head}.")
        prs = self.pulls.setdefault(repo, [])
        pr = _PullRequest(
            number=len(prs) + 1,
            repo=repo,
            title=data["title"],
            body=data.get("body") or "",
            head=head,
            base=base,
            author=self.viewer,
            created_at=_now(),
        )
        prs.append(pr)
        return JSONResponse(await self._pr_json(repo, pr), status_code=201)

    def _lookup(self, request: Request) -> tuple[str, _PullRequest] | None:
        repo = self._slug(request)
        if repo is None:
            return None
        try:
            return repo, self._pr(repo, request.path_params["number"])
        except LookupError:
            return None

    async def _get_pull(self, request: Request) -> Response:
        found = self._lookup(request)
        if found is None:
            return _error(404, "Not Found")
        return JSONResponse(await self._pr_json(*found))

    async def _request_reviewers(self, request: Request) -> Response:
        found = self._lookup(request)
        if found is None:
            return _error(404, "Not Found")
        repo, pr = found
        data = await request.json()
        for login in data.get("reviewers") or []:
            if login == pr.author:
                return _error(422, "Review cannot be requested from pull request author.")
            if login not in pr.reviewers:
                pr.reviewers.append(login)
        pr.teams.extend(t for t in data.get("team_reviewers") or [] if t not in pr.teams)
        return JSONResponse(await self._pr_json(repo, pr), status_code=201)

    async def _list_reviews(self, request: Request) -> Response:
        found = self._lookup(request)
        if found is None:
            return _error(404, "Not Found")
        return self._page(request, found[1].reviews)

    async def _list_review_comments(self, request: Request) -> Response:
        found = self._lookup(request)
        if found is None:
            return _error(404, "Not Found")
        key = (found[0], found[1].number)
        return self._page(
            request, [self._public(c) for c in self.review_comments if c["_pr"] == key]
        )

    async def _get_review_comment(self, request: Request) -> Response:
        for comment in self.review_comments:
            if comment["id"] == request.path_params["id"]:
                return JSONResponse(self._public(comment))
        return _error(404, "Not Found")

    async def _reply(self, request: Request) -> Response:
        found = self._lookup(request)
        if found is None:
            return _error(404, "Not Found")
        repo, pr = found
        parent = next(
            (
                c
                for c in self.review_comments
                if c["id"] == request.path_params["id"] and c["_pr"] == (repo, pr.number)
            ),
            None,
        )
        if parent is None:
            return _error(404, "Not Found")
        if parent["in_reply_to_id"] is not None:
            return _error(422, "Validation Failed: replies to replies are not supported")
        data = await request.json()
        comment = self._new_review_comment(
            repo,
            pr,
            self.viewer,
            data["body"],
            path=parent["path"],
            line=parent["line"],
            in_reply_to=parent["id"],
        )
        return JSONResponse(self._public(comment), status_code=201)

    async def _list_issue_comments(self, request: Request) -> Response:
        found = self._lookup(request)
        if found is None:
            return _error(404, "Not Found")
        key = (found[0], found[1].number)
        return self._page(
            request, [self._public(c) for c in self.issue_comments if c["_pr"] == key]
        )

    async def _post_issue_comment(self, request: Request) -> Response:
        found = self._lookup(request)
        if found is None:
            return _error(404, "Not Found")
        repo, pr = found
        data = await request.json()
        comment_id = next(self._ids)
        comment = {
            "_pr": (repo, pr.number),
            "id": comment_id,
            "user": {"login": self.viewer},
            "body": data["body"],
            "created_at": _now(),
            "issue_url": f"{self.base_url}/repos/{repo}/issues/{pr.number}",
            "html_url": f"{self._html(repo)}/pull/{pr.number}#issuecomment-{comment_id}",
        }
        self.issue_comments.append(comment)
        return JSONResponse(self._public(comment), status_code=201)

    async def _get_issue_comment(self, request: Request) -> Response:
        for comment in self.issue_comments:
            if comment["id"] == request.path_params["id"]:
                return JSONResponse(self._public(comment))
        return _error(404, "Not Found")

    async def _merge(self, request: Request) -> Response:
        found = self._lookup(request)
        if found is None:
            return _error(404, "Not Found")
        repo, pr = found
        data = await request.json() if await request.body() else {}
        method = data.get("merge_method", "merge")
        if method not in ("merge", "squash", "rebase"):
            return _error(422, f"Invalid merge_method: {method}")
        if pr.state != "open":
            return _error(405, "Pull Request is not mergeable")
        head_sha = self.head_of(repo, pr.head)
        title = data.get("commit_title") or (
            f"{pr.title} (#{pr.number})"
            if method == "squash"
            else f"Merge pull request #{pr.number} from {repo.partition('/')[0]}:{pr.head}"
        )
        message = title + (f"\n\n{data['commit_message']}" if data.get("commit_message") else "")
        sha = await _git_merge(self.bare(repo), pr.base, pr.head, method, message)
        if sha is None:
            return _error(405, "Pull Request is not mergeable")
        pr.state, pr.merged_at, pr.merge_commit_sha = "closed", _now(), sha
        pr.head_sha_at_close = head_sha
        return JSONResponse(
            {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}
        )

    async def _check_runs(self, request: Request) -> Response:
        repo, sha = self._slug(request), request.path_params["sha"]
        runs = [
            {k: v for k, v in r.items() if k != "repo"}
            for r in self.check_runs
            if r["repo"] == repo and r["head_sha"] == sha
        ]
        return self._page(request, runs, key="check_runs")

    async def _combined_status(self, request: Request) -> Response:
        repo, sha = self._slug(request), request.path_params["sha"]
        latest = {s["context"]: s for s in self.statuses if s["repo"] == repo and s["sha"] == sha}
        states = {s["state"] for s in latest.values()}
        state = (
            "failure"
            if states & {"failure", "error"}
            else "pending"
            if "pending" in states or not states
            else "success"
        )
        return JSONResponse(
            {
                "state": state,
                "sha": sha,
                "total_count": len(latest),
                "statuses": list(latest.values()),
            }
        )

    async def _get_user(self, request: Request) -> Response:
        user = self.users.get(request.path_params["login"])
        return JSONResponse(user) if user else _error(404, "Not Found")

    async def _get_user_by_id(self, request: Request) -> Response:
        user = next((u for u in self.users.values() if u["id"] == request.path_params["id"]), None)
        return JSONResponse(user) if user else _error(404, "Not Found")

    async def _search_users(self, request: Request) -> Response:
        term, _, qualifier = request.query_params.get("q", "").rpartition(" in:")
        field = {"email": "email", "fullname": "name"}.get(qualifier, "login")
        hits = [
            {"login": u["login"], "id": u["id"], "type": "User"}
            for u in self.users.values()
            if term and (u.get(field) or "").lower() == term.lower()
        ]
        return JSONResponse({"total_count": len(hits), "incomplete_results": False, "items": hits})


def _run(*args: str, cwd: str | None = None) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, env={**os.environ, **_GIT_ENV})


async def _git(*args: str, cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env={**os.environ, **_GIT_ENV},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode().strip()


async def _git_merge(bare: Path, base: str, head: str, method: str, message: str) -> str | None:
    """Merge ``head`` into ``base`` in a throwaway worktree; the new base sha, or ``None`` on a
    conflict (the base branch is then left as it was)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        code, out = await _git(
            "worktree", "add", "-q", "--detach", str(work), f"refs/heads/{base}", cwd=bare
        )
        assert code == 0, out
        try:
            old = (await _git("rev-parse", "HEAD", cwd=work))[1]
            if method == "merge":
                code, _ = await _git(
                    "merge", "--no-ff", "-m", message, f"refs/heads/{head}", cwd=work
                )
            elif method == "squash":
                code, _ = await _git("merge", "--squash", f"refs/heads/{head}", cwd=work)
                if code == 0:
                    code, _ = await _git("commit", "-q", "-m", message, cwd=work)
            else:
                code, _ = await _git("checkout", "-q", "--detach", f"refs/heads/{head}", cwd=work)
                if code == 0:
                    code, _ = await _git("rebase", "-q", old, cwd=work)
            if code != 0:
                await _git("rebase" if method == "rebase" else "merge", "--abort", cwd=work)
                return None
            new = (await _git("rev-parse", "HEAD", cwd=work))[1]
            code, out = await _git("update-ref", f"refs/heads/{base}", new, old, cwd=bare)
            assert code == 0, out
            return new
        finally:
            await _git("worktree", "remove", "--force", str(work), cwd=bare)
