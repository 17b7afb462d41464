"""The Bitbucket Cloud plugin: pull requests, comments, reviewers and merges over REST 2.0, and
webhook deliveries turned into :class:`~state.InboundEvent`.

::

    plugin = BitbucketPlugin(workspace="acme", token=access_token, webhook_secret=secret)
    pr = await plugin.create_pr("svc", title=..., description=..., source_branch="feat/x")

``httpx2`` is imported when the first request is made, so importing this module stays cheap.
Requests are retried when Bitbucket asks us to slow down (429) and, for reads and ``PUT``, when
it fails (5xx, a dropped connection); a ``POST`` is retried only when it cannot have been acted
on (429, 503, no connection), so a comment is never posted twice.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from engine._version import __version__
from engine.scm._bitbucket_webhooks import CI_EVENT_KEYS as CI_EVENT_KEYS  # re-exported
from engine.scm._bitbucket_webhooks import (
    CI_STATES,
    PR_STATES,
    dig,
    normalize_inbound,
    user_name,
)
from engine.scm._bitbucket_webhooks import PR_EVENT_KEYS as PR_EVENT_KEYS  # re-exported
from engine.scm._gitauth import basic_auth_env
from engine.scm._http import Json, backoff, parse_timestamp, retry_after
from engine.scm._protocol import (
    CiState,
    CloneInfo,
    MergeStrategy,
    PrComment,
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

__all__ = ["BitbucketPlugin"]

#: coro's merge strategies → Bitbucket's ``merge_strategy``. Bitbucket has no rebase merge;
#: ``fast_forward`` is the one that keeps the branch's own commits without a merge commit.
MERGE_STRATEGIES: dict[str, str] = {
    "merge": "merge_commit",
    "squash": "squash",
    "rebase": "fast_forward",
}

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_WEB_HOSTS = frozenset({"bitbucket.org", "www.bitbucket.org"})
_SCP_REMOTE = re.compile(r"^[\w.-]+@(?P<host>[\w.-]+):(?P<path>.+)$")
_MAX_PAGES = 1000
_MAX_WAIT = 60.0  # a retry-after longer than this is the caller's to wait out (park the job)
_MERGE_POLLS = 120


class BitbucketPlugin:
    """:class:`~engine.scm.ScmPlugin` for Bitbucket Cloud.

    Args:
        workspace: the workspace a slug without one (``"svc"``) belongs to.
        username: with ``app_password``: an Atlassian account and one of its app passwords.
        app_password: see ``username``.
        token: a workspace, project or repository access token (preferred over an app
            password when both are given).
        base_url: the REST API root.
        webhook_secret: the secret webhooks are signed with; without it every delivery is
            rejected.
        plugin_id: the id jobs and the config name this plugin by.
        transport: an ``httpx2`` transport to use instead of the network (tests).
        max_retries: how many times a request is retried after a 429, a 5xx or a lost
            connection before the error is raised.
        sleep: how to wait between retries and merge polls (tests pass a recorder).
    """

    def __init__(
        self,
        *,
        workspace: str | None,
        username: str | None = None,
        app_password: str | None = None,
        token: str | None = None,
        base_url: str = "https://api.bitbucket.org/2.0",
        webhook_secret: str | None = None,
        plugin_id: str = "bitbucket",
        transport: httpx2.AsyncBaseTransport | None = None,
        max_retries: int = 3,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._workspace = workspace.strip("/") if workspace else None
        self._username = username
        self._app_password = app_password
        self._token = token
        self._base_url = base_url.rstrip("/")
        self._origin = _origin(self._base_url)
        self._webhook_secret = webhook_secret
        self._plugin_id = plugin_id
        self._transport = transport
        self._max_retries = max(0, max_retries)
        self._sleep = sleep
        self._client: httpx2.AsyncClient | None = None
        self._secrets = tuple(s for s in (token, app_password, webhook_secret) if s)

    @property
    def id(self) -> str:
        return self._plugin_id

    # -- remotes ----------------------------------------------------------------------------------
    def matches_remote(self, url: str) -> bool:
        return self.repo_of_remote(url) is not None

    def repo_of_remote(self, url: str) -> str | None:
        """``ws/repo`` for ``https://[user@]bitbucket.org/ws/repo[.git]``,
        ``git@bitbucket.org:ws/repo.git`` and ``ssh://git@bitbucket.org/ws/repo.git``."""
        url = url.strip()
        scp = _SCP_REMOTE.match(url)
        if scp and "://" not in url:
            host, path = scp["host"], scp["path"]
        else:
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http", "ssh", "git+ssh"):
                return None
            host, path = parts.hostname or "", parts.path
        if host.lower() not in _WEB_HOSTS:
            return None
        path = path.strip("/").removesuffix(".git")
        segments = path.split("/")
        if len(segments) != 2 or not all(segments):
            return None
        return path

    # -- repositories -----------------------------------------------------------------------------
    async def clone_info(self, repo: str) -> CloneInfo:
        slug = self._slug(repo)
        data = await self._get(self._repo_path(slug), what=f"repository {slug}")
        clone_links = dig(data, "links", "clone") or []
        href = next(
            (link.get("href") for link in clone_links if link.get("name") == "https"),
            f"https://bitbucket.org/{slug}.git",
        )
        env: dict[str, str] = {}
        if self._token:
            env = basic_auth_env("x-token-auth", self._token)
        elif self._username and self._app_password:
            env = basic_auth_env(self._username, self._app_password)
        return CloneInfo(
            repo=slug,
            url=_without_userinfo(str(href)),
            default_branch=dig(data, "mainbranch", "name") or "main",
            env=env,
        )

    # -- pull requests ----------------------------------------------------------------------------
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
        slug = self._slug(repo)
        query = " AND ".join(
            f'{field}="{_q_escape(value)}"'
            for field, value in (
                ("source.branch.name", source_branch),
                ("destination.branch.name", target_branch),
                ("state", "OPEN"),
            )
        )
        what = f"open pull requests of {slug} from {source_branch} to {target_branch}"
        async with aclosing(
            self._paged(f"{self._repo_path(slug)}/pullrequests", what=what, params={"q": query})
        ) as open_prs:
            existing = await anext(open_prs, None)
        if existing is not None:  # listed PRs lack reviewers: read the whole one
            if reviewers:
                return await self.add_reviewers(slug, existing["id"], reviewers)
            return await self.get_pr(slug, existing["id"])
        users = await self._resolve_all(slug.split("/")[0], reviewers)
        created = await self._send(
            "POST",
            f"{self._repo_path(slug)}/pullrequests",
            what=f"a pull request on {slug} from {source_branch} to {target_branch}",
            json={
                "title": title,
                "description": description,
                "source": {"branch": {"name": source_branch}},
                "destination": {"branch": {"name": target_branch}},
                "reviewers": [_reviewer_ref(user) for user in users],
                "close_source_branch": False,
            },
        )
        return self._pr(slug, created)

    async def get_pr(self, repo: str, pr_id: int | str) -> PullRequest:
        slug = self._slug(repo)
        return self._pr(slug, await self._get_pr(slug, pr_id))

    async def pr_status(self, repo: str, pr_id: int | str) -> PrStatus:
        slug = self._slug(repo)
        data = await self._get_pr(slug, pr_id)
        participants = data.get("participants") or []
        approvals = tuple(
            user_name(p.get("user")) or "?" for p in participants if p.get("approved")
        )
        changes = tuple(
            user_name(p.get("user")) or "?"
            for p in participants
            if p.get("state") == "changes_requested"
        )
        states = [
            str(status.get("state", "")).upper()
            async for status in self._paged(
                f"{self._pr_path(slug, pr_id)}/statuses",
                what=f"build statuses of pull request {slug}#{pr_id}",
            )
        ]
        return PrStatus(
            pr=self._pr(slug, data),
            approvals=approvals,
            changes_requested=changes,
            ci=_ci_state(states),
            comment_count=int(data.get("comment_count") or 0),
        )

    async def list_comments(self, repo: str, pr_id: int | str) -> list[PrComment]:
        slug = self._slug(repo)
        comments = [
            _comment(item)
            async for item in self._paged(
                f"{self._pr_path(slug, pr_id)}/comments",
                what=f"comments of pull request {slug}#{pr_id}",
            )
            if not item.get("deleted")
        ]
        epoch = datetime.min.replace(tzinfo=UTC)
        comments.sort(key=lambda c: (c.created_at or epoch, _int_or_zero(c.id)))
        return comments

    async def post_comment(self, repo: str, pr_id: int | str, body: str) -> PrComment:
        slug = self._slug(repo)
        data = await self._send(
            "POST",
            f"{self._pr_path(slug, pr_id)}/comments",
            what=f"a comment on pull request {slug}#{pr_id}",
            json={"content": {"raw": body}},
        )
        return _comment(data)

    async def reply_to_comment(
        self, repo: str, pr_id: int | str, parent_id: int | str, body: str
    ) -> PrComment:
        slug = self._slug(repo)
        data = await self._send(
            "POST",
            f"{self._pr_path(slug, pr_id)}/comments",
            what=f"a reply to comment {parent_id} on pull request {slug}#{pr_id}",
            json={"content": {"raw": body}, "parent": {"id": _int_or_str(parent_id)}},
        )
        return _comment(data)

    async def add_reviewers(
        self, repo: str, pr_id: int | str, reviewers: tuple[str, ...]
    ) -> PullRequest:
        """Bitbucket replaces the whole reviewer list on ``PUT``, so the current one is read
        first and kept. The PR's author is left out (Bitbucket refuses them as a reviewer)."""
        slug = self._slug(repo)
        data = await self._get_pr(slug, pr_id)
        current = [r for r in data.get("reviewers") or [] if isinstance(r, dict)]
        known = {key for r in current for key in _user_keys(r)}
        author_keys = set(_user_keys(data.get("author")))
        added = [
            u
            for u in await self._resolve_all(slug.split("/")[0], reviewers)
            if u.id.lower() not in known and u.id.lower() not in author_keys
        ]
        if not added:
            return self._pr(slug, data)
        refs = [_reviewer_ref_of(r) for r in current] + [_reviewer_ref(u) for u in added]
        updated = await self._send(
            "PUT",
            self._pr_path(slug, pr_id),
            what=f"the reviewers of pull request {slug}#{pr_id}",
            json={
                "title": data.get("title", ""),
                "description": data.get("description", ""),
                "reviewers": refs,
            },
        )
        return self._pr(slug, updated)

    async def merge(
        self,
        repo: str,
        pr_id: int | str,
        *,
        strategy: MergeStrategy = "merge",
        message: str | None = None,
    ) -> PullRequest:
        """Merge with ``merge_commit``, ``squash`` or (for ``"rebase"``) ``fast_forward``.

        A long merge answers 202 with a task-status link; it is polled until the merge is done.
        Refusals (conflicts, a PR that is not open, a strategy the repository forbids) raise
        :class:`ScmConflict` with Bitbucket's own explanation.
        """
        slug = self._slug(repo)
        what = f"merge of pull request {slug}#{pr_id}"
        body: Json = {"merge_strategy": MERGE_STRATEGIES[strategy], "close_source_branch": False}
        if message:
            body["message"] = message
        response = await self._request(
            "POST", f"{self._pr_path(slug, pr_id)}/merge", what=what, json=body, refusal=True
        )
        if response.status_code != 202:
            return self._pr(slug, _json_of(response, what))
        location = response.headers.get("location")
        if not location:
            return await self.get_pr(slug, pr_id)
        location = str(response.url.join(location))
        for _ in range(_MERGE_POLLS):
            task = await self._get(location, what=f"{what} (task status)", refusal=True)
            if task.get("task_status") != "PENDING":
                result = task.get("merge_result")
                if isinstance(result, dict) and result.get("id") is not None:
                    return self._pr(slug, result)
                return await self.get_pr(slug, pr_id)
            await self._sleep(1.0)
        raise ScmError(f"Bitbucket: {what} still pending after {_MERGE_POLLS} polls")

    # -- people -----------------------------------------------------------------------------------
    async def resolve_user(self, query: str, *, repo: str | None = None) -> ScmUser | None:
        """A workspace member whose nickname, display name, account id or UUID is ``query``
        (case-insensitive). Bitbucket does not show e-mail addresses, so they never match."""
        workspace = self._slug(repo).split("/")[0] if repo else self._require_workspace()
        found = await self._find_members(workspace, [query])
        return found.get(query)

    # -- webhooks ---------------------------------------------------------------------------------
    def normalize_inbound(self, headers: Mapping[str, str], body: bytes) -> list[InboundEvent]:
        """Verify a delivery's ``X-Hub-Signature`` and turn it into events (see
        :func:`engine.scm._bitbucket_webhooks.normalize_inbound`)."""
        return normalize_inbound(
            headers, body, secret=self._webhook_secret, plugin_id=self._plugin_id
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- shapes -----------------------------------------------------------------------------------
    def _pr(self, slug: str, data: Json) -> PullRequest:
        state = PR_STATES.get(str(data.get("state", "")).upper(), "open")
        pr_id = _int_or_str(data.get("id"))
        return PullRequest(
            id=pr_id,
            repo=slug,
            title=str(data.get("title") or ""),
            url=dig(data, "links", "html", "href")
            or f"https://bitbucket.org/{slug}/pull-requests/{pr_id}",
            state=state,
            source_branch=dig(data, "source", "branch", "name") or "",
            target_branch=dig(data, "destination", "branch", "name") or "",
            author=user_name(data.get("author")),
            description=str(data.get("description") or ""),
            reviewers=tuple(user_name(r) or "?" for r in data.get("reviewers") or []),
            created_at=parse_timestamp(data.get("created_on")),
            # Bitbucket has no merge time; a merged PR's last update is its merge.
            merged_at=parse_timestamp(data.get("updated_on")) if state == "merged" else None,
            merge_commit=dig(data, "merge_commit", "hash"),
        )

    # -- people, internals ------------------------------------------------------------------------
    async def _resolve_all(self, workspace: str, queries: Iterable[str]) -> list[ScmUser]:
        wanted = list(dict.fromkeys(q for q in queries if q.strip()))
        if not wanted:
            return []
        found = await self._find_members(workspace, wanted)
        missing = [q for q in wanted if q not in found]
        if missing:
            raise ScmNotFound(
                f"Bitbucket: no member of workspace {workspace} matches reviewer "
                + ", ".join(repr(q) for q in missing)
            )
        return [found[q] for q in wanted]

    async def _find_members(self, workspace: str, queries: list[str]) -> dict[str, ScmUser]:
        """One pass over the workspace's members for all of ``queries``."""
        keys = {q: q.strip().lower().strip("{}") for q in queries}
        found: dict[str, ScmUser] = {}
        members = self._paged(
            f"workspaces/{quote(workspace, safe='')}/members",
            what=f"members of workspace {workspace}",
        )
        async with aclosing(members):
            async for member in members:
                user: Json = member["user"] if isinstance(member.get("user"), dict) else member
                names = {
                    str(user.get(k) or "").lower().strip("{}")
                    for k in ("nickname", "display_name", "account_id", "uuid", "username")
                }
                for query, key in keys.items():
                    if query not in found and key in names:
                        found[query] = ScmUser(
                            id=str(user.get("uuid") or user.get("account_id")),
                            username=user_name(user) or "?",
                            display_name=user.get("display_name"),
                        )
                if len(found) == len(keys):
                    break
        return found

    def _require_workspace(self) -> str:
        if not self._workspace:
            raise ScmError(
                "Bitbucket: no workspace configured; name repositories as workspace/slug or set "
                f"plugins.installed.{self._plugin_id}.config.workspace"
            )
        return self._workspace

    def _slug(self, repo: str) -> str:
        repo = repo.strip().strip("/").removesuffix(".git")
        if "/" not in repo:
            return f"{self._require_workspace()}/{repo}"
        return repo

    @staticmethod
    def _repo_path(slug: str) -> str:
        workspace, _, name = slug.partition("/")
        return f"repositories/{quote(workspace, safe='')}/{quote(name, safe='')}"

    def _pr_path(self, slug: str, pr_id: int | str) -> str:
        return f"{self._repo_path(slug)}/pullrequests/{quote(str(pr_id), safe='')}"

    async def _get_pr(self, slug: str, pr_id: int | str) -> Json:
        return await self._get(self._pr_path(slug, pr_id), what=f"pull request {slug}#{pr_id}")

    # -- HTTP -------------------------------------------------------------------------------------
    def _http(self) -> httpx2.AsyncClient:
        if self._client is None:
            import httpx2

            headers = {"User-Agent": f"coro/{__version__}", "Accept": "application/json"}
            auth: httpx2.BasicAuth | None = None
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            elif self._username and self._app_password:
                auth = httpx2.BasicAuth(self._username, self._app_password)
            self._client = httpx2.AsyncClient(
                base_url=self._base_url + "/",
                headers=headers,
                auth=auth,
                transport=self._transport,
                timeout=httpx2.Timeout(30.0, connect=10.0),
            )
        return self._client

    async def _get(
        self,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        refusal: bool = False,
    ) -> Json:
        response = await self._request("GET", path, what=what, params=params, refusal=refusal)
        return _json_of(response, what)

    async def _send(self, method: str, path: str, *, what: str, json: Json) -> Json:
        return _json_of(await self._request(method, path, what=what, json=json), what)

    async def _paged(
        self, path: str, *, what: str, params: Mapping[str, str] | None = None
    ) -> AsyncGenerator[Json, None]:
        """Every item of a paginated collection, following its ``next`` links."""
        url: str | None = path
        for _ in range(_MAX_PAGES):
            if url is None:
                return
            page = await self._get(url, what=what, params=params)
            for value in page.get("values") or []:
                if isinstance(value, dict):
                    yield value
            url, params = page.get("next"), None
        raise ScmError(f"Bitbucket: {what}: more than {_MAX_PAGES} pages")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        json: Json | None = None,
        refusal: bool = False,
    ) -> httpx2.Response:
        """One API call with retries; anything but 2xx becomes an :class:`ScmError`.

        ``refusal``: a 400/409/555 is Bitbucket refusing the operation (a merge) and becomes
        :class:`ScmConflict`.
        """
        import httpx2

        if "://" in path and _origin(path) != self._origin:
            # Never send the credentials to a host a response pointed us at.
            raise ScmError(f"Bitbucket: {what}: refusing to follow a link off {self._origin}")
        asked = f"{what} ({method} {urlsplit(self._url(path)).path})"
        client = self._http()
        for attempt in range(self._max_retries + 1):
            last = attempt == self._max_retries
            try:
                response = await client.request(method, path, params=params, json=json)
            except httpx2.TransportError as exc:
                unsent = isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout)
                if not last and (method in _IDEMPOTENT or unsent):
                    await self._sleep(backoff(attempt, cap=30))
                    continue
                raise ScmError(
                    self._scrub(f"Bitbucket: {asked} failed: {type(exc).__name__}: {exc}")
                ) from exc
            status = response.status_code
            if status < 300:
                return response
            if status == 429:
                wait = retry_after(response.headers.get("retry-after"))
                delay = backoff(attempt, cap=30) if wait is None else wait
                if not last and delay <= _MAX_WAIT:
                    await self._sleep(delay)
                    continue
                raise ScmRateLimited(
                    f"Bitbucket: rate limited on {asked}; retry in {delay:g}s",
                    retry_after=delay,
                )
            retryable = status >= 500 and not (refusal and status == 555)
            if retryable and not last and (method in _IDEMPOTENT or status == 503):
                await self._sleep(backoff(attempt, cap=30))
                continue
            raise self._error(response, asked, refusal=refusal)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, response: httpx2.Response, asked: str, *, refusal: bool) -> ScmError:
        status = response.status_code
        reason = self._scrub(_error_message(response))
        detail = f": {reason}" if reason else ""
        if status in (401, 403):
            return ScmAuthError(
                f"Bitbucket refused {asked} ({status}){detail}. Check the access token or app "
                "password and its scopes (pull requests, repositories, account)",
                status=status,
            )
        if status == 404:
            return ScmNotFound(f"Bitbucket: {asked} not found (404){detail}", status=status)
        if refusal and status in (400, 409, 555):
            return ScmConflict(f"Bitbucket refused the {asked}{detail}", status=status)
        if status == 409:
            return ScmConflict(f"Bitbucket: {asked} conflicts (409){detail}", status=status)
        return ScmError(f"Bitbucket: {asked} failed ({status}){detail}", status=status)

    def _url(self, path: str) -> str:
        return path if "://" in path else f"{self._base_url}/{path.lstrip('/')}"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


# -- helpers --------------------------------------------------------------------------------------
def _user_keys(user: object) -> list[str]:
    if not isinstance(user, dict):
        return []
    return [str(user[k]).lower() for k in ("uuid", "account_id") if user.get(k)]


def _reviewer_ref(user: ScmUser) -> Json:
    if user.id.startswith("{"):
        return {"uuid": user.id}
    return {"account_id": user.id}


def _reviewer_ref_of(user: Json) -> Json:
    if user.get("uuid"):
        return {"uuid": user["uuid"]}
    return {"account_id": user.get("account_id")}


def _comment(data: Json) -> PrComment:
    inline: Json = data["inline"] if isinstance(data.get("inline"), dict) else {}
    line = inline.get("to") or inline.get("from")
    return PrComment(
        id=_int_or_str(data.get("id")),
        author=user_name(data.get("user")) or "?",
        body=str(dig(data, "content", "raw") or ""),
        created_at=parse_timestamp(data.get("created_on")),
        parent_id=dig(data, "parent", "id"),
        path=inline.get("path"),
        line=int(line) if line is not None else None,
        url=dig(data, "links", "html", "href"),
    )


def _ci_state(states: list[str]) -> CiState:
    mapped = [CI_STATES.get(s, "pending") for s in states]
    if not mapped:
        return "none"
    if "failure" in mapped:
        return "failure"
    if "pending" in mapped:
        return "pending"
    return "success"


def _int_or_str(value: object) -> int | str:
    if isinstance(value, int):
        return value
    text = str(value)
    return int(text) if text.isdigit() else text


def _int_or_zero(value: int | str) -> int:
    return value if isinstance(value, int) else 0


def _q_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _json_of(response: httpx2.Response, what: str) -> Json:
    try:
        data = response.json()
    except ValueError as exc:
        raise ScmError(
            f"Bitbucket: {what}: the answer is not JSON", status=response.status_code
        ) from exc
    if not isinstance(data, dict):
        raise ScmError(f"Bitbucket: {what}: unexpected answer", status=response.status_code)
    return data


def _error_message(response: httpx2.Response) -> str:
    """Bitbucket's ``{"type": "error", "error": {"message", "detail"}}``, or the raw text."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:200]
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ""
    parts = [str(error[k]) for k in ("message", "detail") if error.get(k)]
    return " — ".join(parts)
