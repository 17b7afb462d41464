"""The GitHub plugin: pull requests, reviews, comments and checks over REST v3, and webhooks.

::

    plugin = GitHubPlugin(token=token)                       # or base_url=".../api/v3" (GHE)
    pr = await plugin.create_pr("acme/svc", title=..., description=..., source_branch="feat/x")
    events = plugin.normalize_inbound(headers, body)          # X-Hub-Signature-256 checked

``httpx2`` is imported when the first request is made, so importing this module is cheap.
Rate limits are waited out with the injected ``sleep`` up to ``max_retries`` times (and only
when the wait is at most ``max_retry_wait`` seconds); after that :class:`ScmRateLimited`
tells the caller how long to park.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from engine._version import __version__
from engine.scm._gitauth import basic_auth_env
from engine.scm._github_webhooks import CHECK_FAILED, login, normalize_inbound
from engine.scm._http import Json, backoff, parse_timestamp, retry_after, webhook_signature
from engine.scm._protocol import (
    CiState,
    CloneInfo,
    MergeStrategy,
    PrComment,
    PrState,
    PrStatus,
    PullRequest,
    ScmAuthError,
    ScmConflict,
    ScmError,
    ScmNotFound,
    ScmRateLimited,
    ScmUser,
)
from state import InboundEvent

if TYPE_CHECKING:
    import httpx2

__all__ = ["GitHubPlugin", "webhook_signature"]

Sleep = Callable[[float], Awaitable[object]]

_DEFAULT_API = "https://api.github.com"
_SECONDARY_WAIT = 60.0  # GitHub: "wait at least one minute" when no header says how long
_CHECK_PASSED = {"success", "neutral", "skipped"}
_COMMIT_STATE: dict[str, CiState] = {"success": "success", "failure": "failure", "error": "failure"}
_SCP_REMOTE = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?!//)(?P<path>[^\\]+)$")


class GitHubPlugin:
    """:class:`~engine.scm.ScmPlugin` for github.com and GitHub Enterprise Server.

    Args:
        token: a personal access token or app installation token; ``None`` for anonymous
            reads of public repositories.
        base_url: the REST root; GitHub Enterprise: ``https://ghe.example.com/api/v3``.
        webhook_secret: the secret webhooks are signed with; without it every delivery is
            rejected.
        plugin_id: the id events and references carry.
        transport: an ``httpx2`` transport (tests pass a ``MockTransport``).
        max_retries: retries after a rate limit, a 5xx or a connection error.
        sleep: how to wait between retries (tests inject one that does not wait).
        max_retry_wait: a rate limit asking for longer than this is raised at once, so the
            caller can park the job instead of holding a request open for an hour.
    """

    def __init__(
        self,
        *,
        token: str | None,
        base_url: str = _DEFAULT_API,
        webhook_secret: str | None = None,
        plugin_id: str = "github",
        transport: httpx2.AsyncBaseTransport | None = None,
        max_retries: int = 3,
        sleep: Sleep = asyncio.sleep,
        max_retry_wait: float = 120.0,
    ) -> None:
        self._token = token or None
        self._base_url = base_url.rstrip("/")
        self._webhook_secret = webhook_secret
        self._plugin_id = plugin_id
        self._transport = transport
        self._max_retries = max_retries
        self._sleep = sleep
        self._max_retry_wait = max_retry_wait
        self._client: httpx2.AsyncClient | None = None
        host = (urlsplit(self._base_url).hostname or "").lower()
        self._web_host = "github.com" if host == "api.github.com" else host

    @property
    def id(self) -> str:
        return self._plugin_id

    # -- remotes ----------------------------------------------------------------------------------
    def repo_of_remote(self, url: str) -> str | None:
        """``owner/name`` of an HTTPS, ``ssh://`` or ``git@host:`` remote on this GitHub host."""
        url = url.strip()
        if "://" in url:
            parts = urlsplit(url)
            host, path = (parts.hostname or "").lower(), parts.path
        elif match := _SCP_REMOTE.match(url):
            host, path = match["host"].lower(), match["path"]
        else:
            return None
        if host != self._web_host:
            return None
        path = path.strip("/").removesuffix(".git")
        owner, _, name = path.partition("/")
        if not owner or not name or "/" in name:
            return None
        return f"{owner}/{name}"

    def matches_remote(self, url: str) -> bool:
        return self.repo_of_remote(url) is not None

    # -- HTTP -------------------------------------------------------------------------------------
    def _http(self) -> httpx2.AsyncClient:
        if self._client is None:
            import httpx2

            headers = {
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": f"coro/{__version__}",
            }
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            self._client = httpx2.AsyncClient(
                base_url=self._base_url + "/",
                headers=headers,
                transport=self._transport,
                timeout=30.0,
            )
        return self._client

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _rate_limit_wait(self, response: httpx2.Response) -> float | None:
        """Seconds GitHub asks us to wait, or ``None`` if this is not a rate limit."""
        status, headers = response.status_code, response.headers
        if status not in (403, 429):
            return None
        if value := headers.get("retry-after"):
            wait = retry_after(value, http_date=False)  # GitHub sends seconds
            return _SECONDARY_WAIT if wait is None else wait
        if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
            try:
                return max(float(headers["x-ratelimit-reset"]) - time.time(), 0.0) + 1.0
            except ValueError:
                return _SECONDARY_WAIT
        if status == 429 or "rate limit" in _message(response).lower():
            return _SECONDARY_WAIT
        return None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str | int] | None = None,
        body: Json | None = None,
        conflict: tuple[int, ...] = (),
    ) -> httpx2.Response:
        """One API call with retries; failures become :class:`ScmError` naming ``what``.

        Rate limits are retried for every method (GitHub did not act on the request). A 5xx or
        a dropped connection is retried only for ``GET``: a ``POST`` or ``PUT`` may have been
        applied before the answer was lost, and retrying it could post a comment twice or
        turn a merge that went through into a false conflict. Those are raised, unless the
        connection was never made.

        Args:
            what: what was asked, for error messages (``"merging acme/svc#3"``).
            conflict: statuses that mean the request conflicts with the PR's state.
        """
        import httpx2

        client = self._http()
        for attempt in range(self._max_retries + 1):
            last = attempt == self._max_retries
            try:
                response = await client.request(method, path, params=params, json=body)
            except httpx2.TransportError as exc:
                never_sent = isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout)
                if last or not (method == "GET" or never_sent):
                    reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
                    raise ScmError(
                        self._redact(f"GitHub unreachable while {what} ({reason})")
                    ) from exc
                await self._sleep(backoff(attempt, first=0.5))
                continue
            wait = self._rate_limit_wait(response)
            if wait is not None:
                if last or wait > self._max_retry_wait:
                    raise ScmRateLimited(
                        f"GitHub rate limit while {what}: retry in {wait:.0f} s",
                        retry_after=wait,
                        status=response.status_code,
                    )
                await self._sleep(wait)
                continue
            if response.status_code >= 500 and method == "GET" and not last:
                await self._sleep(backoff(attempt, first=0.5))
                continue
            if response.is_success:
                return response
            raise self._error(response, what, conflict)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, response: httpx2.Response, what: str, conflict: tuple[int, ...]) -> ScmError:
        status, detail = response.status_code, self._redact(_message(response))
        said = f": {detail}" if detail else ""
        if status in conflict:
            return ScmConflict(f"GitHub refused {what} ({status}){said}", status=status)
        if status == 401:
            return ScmAuthError(
                f"GitHub rejected the token while {what} (401){said}; check that it is valid "
                "and not expired",
                status=status,
            )
        if status == 403:
            return ScmAuthError(
                f"GitHub denied {what} (403){said}; the token may lack a scope or access to "
                "the repository",
                status=status,
            )
        if status == 404:
            return ScmNotFound(
                f"GitHub found nothing while {what} (404); it does not exist or the token "
                "cannot see it",
                status=status,
            )
        if status >= 500 and response.request.method != "GET":
            said += "; it may or may not have been applied: check before trying again"
        return ScmError(f"GitHub answered {status} while {what}{said}", status=status)

    async def _json(self, method: str, path: str, *, what: str, **kwargs: Any) -> Json:
        response = await self._request(method, path, what=what, **kwargs)
        data = response.json() if response.content else {}
        if not isinstance(data, dict):
            raise ScmError(f"GitHub answered {what} with {type(data).__name__}, not an object")
        return data

    async def _pages(
        self,
        path: str,
        *,
        what: str,
        key: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> list[Json]:
        """Every item of a list endpoint, following ``Link: rel="next"``."""
        items: list[Json] = []
        url: str | None = path
        query: Mapping[str, str | int] | None = {"per_page": 100, **(params or {})}
        while url is not None:
            response = await self._request("GET", url, what=what, params=query)
            data = response.json()
            page = data.get(key, []) if key and isinstance(data, dict) else data
            if not isinstance(page, list):
                raise ScmError(f"GitHub answered {what} with something other than a list")
            items.extend(page)
            url, query = response.links.get("next", {}).get("url"), None
        return items

    # -- shapes -----------------------------------------------------------------------------------
    def _pull_request(self, repo: str, data: Json) -> PullRequest:
        merged = bool(data.get("merged") or data.get("merged_at"))
        state: PrState = "merged" if merged else "declined" if data["state"] == "closed" else "open"
        reviewers = [login(u) for u in data.get("requested_reviewers") or []]
        teams = [f"{t.get('slug')}" for t in data.get("requested_teams") or []]
        return PullRequest(
            id=int(data["number"]),
            repo=repo,
            title=data.get("title") or "",
            url=data.get("html_url") or "",
            state=state,
            source_branch=data["head"]["ref"],
            target_branch=data["base"]["ref"],
            author=login(data.get("user")),
            description=data.get("body") or "",
            reviewers=tuple(r for r in [*reviewers, *teams] if r),
            created_at=parse_timestamp(data.get("created_at"), strict=True),
            merged_at=parse_timestamp(data.get("merged_at"), strict=True),
            merge_commit=data.get("merge_commit_sha") if merged else None,
        )

    @staticmethod
    def _comment(data: Json) -> PrComment:
        return PrComment(
            id=int(data["id"]),
            author=login(data.get("user")) or "",
            body=data.get("body") or "",
            created_at=parse_timestamp(data.get("created_at"), strict=True),
            parent_id=data.get("in_reply_to_id"),
            path=data.get("path"),
            line=data.get("line") or data.get("original_line"),
            url=data.get("html_url"),
        )

    # -- repositories and pull requests -----------------------------------------------------------
    async def clone_info(self, repo: str) -> CloneInfo:
        data = await self._json("GET", f"repos/{repo}", what=f"reading repository {repo}")
        env = basic_auth_env("x-access-token", self._token) if self._token else {}
        return CloneInfo(
            repo=repo,
            url=data["clone_url"],
            default_branch=data.get("default_branch") or "main",
            env=env,
        )

    async def _find_open_pr(self, repo: str, head: str, base: str) -> Json | None:
        found = await self._pages(
            f"repos/{repo}/pulls",
            what=f"listing pull requests of {repo}",
            params={"state": "open", "head": head, "base": base},
        )
        return found[0] if found else None

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
        owner = repo.partition("/")[0]
        head = source_branch if ":" in source_branch else f"{owner}:{source_branch}"
        existing = await self._find_open_pr(repo, head, target_branch)
        if existing is None:
            try:
                existing = await self._json(
                    "POST",
                    f"repos/{repo}/pulls",
                    what=f"opening a pull request {source_branch} → {target_branch} in {repo}",
                    body={
                        "title": title,
                        "body": description,
                        "head": source_branch,
                        "base": target_branch,
                    },
                )
            except ScmError as exc:  # another caller opened it between our GET and POST
                if exc.status != 422:
                    raise
                existing = await self._find_open_pr(repo, head, target_branch)
                if existing is None:
                    raise
        pr = self._pull_request(repo, existing)
        return await self.add_reviewers(repo, pr.id, reviewers) if reviewers else pr

    async def get_pr(self, repo: str, pr_id: int | str) -> PullRequest:
        data = await self._json(
            "GET", f"repos/{repo}/pulls/{pr_id}", what=f"reading pull request {repo}#{pr_id}"
        )
        return self._pull_request(repo, data)

    async def pr_status(self, repo: str, pr_id: int | str) -> PrStatus:
        """The PR with its reviews (each reviewer's latest verdict) and CI on its head commit.

        CI combines check runs and commit statuses: any failure → ``failure``, else anything
        unfinished → ``pending``, else ``success``; ``none`` when neither reports anything.
        """
        name = f"{repo}#{pr_id}"
        data = await self._json("GET", f"repos/{repo}/pulls/{pr_id}", what=f"reading {name}")
        sha = data["head"]["sha"]
        reviews, runs, combined = await asyncio.gather(
            self._pages(f"repos/{repo}/pulls/{pr_id}/reviews", what=f"listing reviews of {name}"),
            self._pages(
                f"repos/{repo}/commits/{sha}/check-runs",
                what=f"listing check runs of {name}",
                key="check_runs",
            ),
            self._json("GET", f"repos/{repo}/commits/{sha}/status", what=f"reading CI of {name}"),
        )
        verdicts: dict[str, str] = {}
        for review in reviews:
            user, state = login(review.get("user")), str(review.get("state", "")).upper()
            if user and state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
                verdicts[user] = state
        return PrStatus(
            pr=self._pull_request(repo, data),
            approvals=tuple(u for u, s in verdicts.items() if s == "APPROVED"),
            changes_requested=tuple(u for u, s in verdicts.items() if s == "CHANGES_REQUESTED"),
            ci=_ci_state(runs, combined),
            mergeable=data.get("mergeable"),
            comment_count=int(data.get("comments") or 0) + int(data.get("review_comments") or 0),
        )

    # -- comments ---------------------------------------------------------------------------------
    async def list_comments(self, repo: str, pr_id: int | str) -> list[PrComment]:
        """Conversation comments and inline review comments together, oldest first."""
        what = f"listing comments of {repo}#{pr_id}"
        issue, inline = await asyncio.gather(
            self._pages(f"repos/{repo}/issues/{pr_id}/comments", what=what),
            self._pages(f"repos/{repo}/pulls/{pr_id}/comments", what=what),
        )
        comments = [self._comment(c) for c in [*issue, *inline]]
        far_future = datetime.max.replace(tzinfo=UTC)
        return sorted(comments, key=lambda c: (c.created_at or far_future, int(c.id)))

    async def post_comment(self, repo: str, pr_id: int | str, body: str) -> PrComment:
        data = await self._json(
            "POST",
            f"repos/{repo}/issues/{pr_id}/comments",
            what=f"commenting on {repo}#{pr_id}",
            body={"body": body},
        )
        return self._comment(data)

    async def reply_to_comment(
        self, repo: str, pr_id: int | str, parent_id: int | str, body: str
    ) -> PrComment:
        """Reply in the thread of an inline review comment.

        Conversation (issue) comments have no threads on GitHub: a reply to one is a new
        conversation comment that quotes the parent and mentions its author.
        """
        what = f"reading comment {parent_id} of {repo}#{pr_id}"
        try:
            parent = await self._json("GET", f"repos/{repo}/pulls/comments/{parent_id}", what=what)
        except ScmNotFound:
            parent = await self._json("GET", f"repos/{repo}/issues/comments/{parent_id}", what=what)
            if not str(parent.get("issue_url", "")).endswith(f"/issues/{pr_id}"):
                raise ScmNotFound(f"comment {parent_id} is not on {repo}#{pr_id}") from None
            quoted = "\n".join(f"> {line}" for line in (parent.get("body") or "").splitlines())
            author = login(parent.get("user"))
            lead = f"@{author} wrote:\n" if author else ""
            return await self.post_comment(repo, pr_id, f"{lead}{quoted}\n\n{body}")
        root = parent.get("in_reply_to_id") or parent["id"]  # GitHub threads are one level deep
        data = await self._json(
            "POST",
            f"repos/{repo}/pulls/{pr_id}/comments/{root}/replies",
            what=f"replying to comment {parent_id} of {repo}#{pr_id}",
            body={"body": body},
        )
        return self._comment(data)

    # -- reviewers, merging, people ---------------------------------------------------------------
    async def add_reviewers(
        self, repo: str, pr_id: int | str, reviewers: tuple[str, ...]
    ) -> PullRequest:
        """Request reviews from users, and from teams written ``org/team-slug``."""
        if not reviewers:
            return await self.get_pr(repo, pr_id)
        users = [r for r in reviewers if "/" not in r]
        teams = [r.partition("/")[2] for r in reviewers if "/" in r]
        data = await self._json(
            "POST",
            f"repos/{repo}/pulls/{pr_id}/requested_reviewers",
            what=f"requesting reviews from {', '.join(reviewers)} on {repo}#{pr_id}",
            body={"reviewers": users, "team_reviewers": teams},
        )
        return self._pull_request(repo, data)

    async def merge(
        self,
        repo: str,
        pr_id: int | str,
        *,
        strategy: MergeStrategy = "merge",
        message: str | None = None,
    ) -> PullRequest:
        body: Json = {"merge_method": strategy}
        if message:
            title, _, rest = message.partition("\n")
            body["commit_title"], body["commit_message"] = title, rest.strip()
        await self._request(
            "PUT",
            f"repos/{repo}/pulls/{pr_id}/merge",
            what=f"merging {repo}#{pr_id}",
            body=body,
            conflict=(405, 409, 422),
        )
        return await self.get_pr(repo, pr_id)

    async def resolve_user(self, query: str, *, repo: str | None = None) -> ScmUser | None:
        """A user by login or numeric id, or the first search hit for an e-mail or a name."""
        query = query.strip().removeprefix("@") if " " not in query else query.strip()
        if not query:
            return None
        what = f"looking up user {query!r}"
        if " " in query or "@" in query:
            field = "email" if "@" in query else "fullname"
            data = await self._json(
                "GET", "search/users", what=what, params={"q": f"{query} in:{field}"}
            )
            hits = data.get("items") or []
            if not hits:
                return None
            data = hits[0]
        else:
            try:
                data = await self._json("GET", f"users/{quote(query)}", what=what)
            except ScmNotFound:
                if not query.isdigit():
                    return None
                try:
                    data = await self._json("GET", f"user/{query}", what=what)
                except ScmNotFound:
                    return None
        return ScmUser(id=str(data["id"]), username=data["login"], display_name=data.get("name"))

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- webhooks ---------------------------------------------------------------------------------
    def normalize_inbound(self, headers: Mapping[str, str], body: bytes) -> list[InboundEvent]:
        """Verify ``X-Hub-Signature-256`` and map the delivery to event keys (see
        :func:`engine.scm._github_webhooks.normalize_inbound`)."""
        return normalize_inbound(
            headers, body, secret=self._webhook_secret, plugin_id=self._plugin_id
        )


def _message(response: httpx2.Response) -> str:
    """GitHub's ``message`` (and ``errors``) from an error body, or a short raw excerpt."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:200].strip()
    if not isinstance(data, dict):
        return ""
    parts = [str(data.get("message") or "")]
    for error in data.get("errors") or []:
        parts.append(str(error.get("message") or error) if isinstance(error, dict) else str(error))
    return "; ".join(p for p in parts if p)


def _ci_state(runs: list[Json], combined: Json) -> CiState:
    seen: set[CiState] = set()
    for run in runs:
        if run.get("status") != "completed":
            seen.add("pending")
        elif run.get("conclusion") in CHECK_FAILED:
            seen.add("failure")
        else:
            seen.add("success" if run.get("conclusion") in _CHECK_PASSED else "pending")
    if combined.get("total_count"):  # with no statuses GitHub still says "pending"
        seen.add(_COMMIT_STATE.get(str(combined.get("state")), "pending"))
    for verdict in ("failure", "pending", "success"):
        if verdict in seen:
            return verdict
    return "none"
