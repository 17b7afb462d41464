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
import email.utils
import hashlib
import hmac
import json
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from engine._version import __version__
from engine.scm._events import (
    CI_COMPLETED,
    PR_APPROVED,
    PR_CHANGES_REQUESTED,
    PR_COMMENT,
    PR_DECLINED,
    PR_MERGED,
    PR_UPDATED,
)
from engine.scm._gitauth import basic_auth_env
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
    WebhookRejected,
)
from state import ExternalRef, InboundEvent

if TYPE_CHECKING:
    import httpx2

__all__ = ["BitbucketPlugin"]

Json = dict[str, Any]

#: coro's merge strategies → Bitbucket's ``merge_strategy``. Bitbucket has no rebase merge;
#: ``fast_forward`` is the one that keeps the branch's own commits without a merge commit.
MERGE_STRATEGIES: dict[str, str] = {
    "merge": "merge_commit",
    "squash": "squash",
    "rebase": "fast_forward",
}

#: Bitbucket's webhook event keys → coro's event keys (see :mod:`engine.scm._events`).
PR_EVENT_KEYS: dict[str, str] = {
    "pullrequest:fulfilled": PR_MERGED,
    "pullrequest:rejected": PR_DECLINED,
    "pullrequest:updated": PR_UPDATED,
    "pullrequest:approved": PR_APPROVED,
    "pullrequest:changes_request_created": PR_CHANGES_REQUESTED,
    "pullrequest:comment_created": PR_COMMENT,
}
CI_EVENT_KEYS = frozenset({"repo:commit_status_updated", "repo:commit_status_created"})

_PR_STATES: dict[str, PrState] = {
    "OPEN": "open",
    "MERGED": "merged",
    "DECLINED": "declined",
    "SUPERSEDED": "declined",
}
_CI_STATES: dict[str, CiState] = {
    "SUCCESSFUL": "success",
    "FAILED": "failure",
    "STOPPED": "failure",
    "INPROGRESS": "pending",
}
_FINAL_CI_STATES = frozenset({"SUCCESSFUL", "FAILED", "STOPPED"})
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
        clone_links = _dig(data, "links", "clone") or []
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
            default_branch=_dig(data, "mainbranch", "name") or "main",
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
            _user_name(p.get("user")) or "?" for p in participants if p.get("approved")
        )
        changes = tuple(
            _user_name(p.get("user")) or "?"
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
        """Verify a delivery's ``X-Hub-Signature`` and turn it into events.

        Pull request events carry ``prId`` and a ``ref`` to the PR. A commit status
        (``repo:commit_status_updated``/``_created`` in a final state) becomes ``ci:completed``
        with the commit's ``sha`` and no ``prId`` or ``ref``: Bitbucket's status payload does
        not say which pull request the commit belongs to, so the PR poller, which reads
        ``/pullrequests/{id}/statuses``, is what ties a build to a job.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        self._verify_signature(lowered, body)
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ScmError("Bitbucket webhook: the body is not JSON") from exc
        if not isinstance(data, dict):
            raise ScmError("Bitbucket webhook: the body is not a JSON object")
        native = lowered.get("x-event-key", "").strip()
        delivery = lowered.get("x-request-uuid") or _fallback_delivery_id(lowered, body)
        if native in PR_EVENT_KEYS:
            return [self._pr_event(native, data, delivery)]
        if native in CI_EVENT_KEYS:
            return self._ci_events(native, data, delivery)
        return []

    def _verify_signature(self, headers: Mapping[str, str], body: bytes) -> None:
        if not self._webhook_secret:
            raise WebhookRejected(
                "Bitbucket webhook rejected: no webhook secret is configured; set "
                f"plugins.installed.{self._plugin_id}.config.webhookSecret (or "
                "git.webhookSecret) to the secret of the repository's webhook"
            )
        signature = headers.get("x-hub-signature", "").strip()
        if not signature:
            raise WebhookRejected("Bitbucket webhook rejected: no X-Hub-Signature header")
        expected = (
            "sha256=" + hmac.new(self._webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise WebhookRejected("Bitbucket webhook rejected: the signature does not match")

    def _pr_event(self, native: str, data: Json, delivery: str | None) -> InboundEvent:
        pr = data.get("pullrequest")
        if not isinstance(pr, dict) or pr.get("id") is None:
            raise ScmError(f"Bitbucket webhook {native}: the payload has no pullrequest id")
        repo = _dig(data, "repository", "full_name") or _dig(
            pr, "destination", "repository", "full_name"
        )
        if not repo:
            raise ScmError(f"Bitbucket webhook {native}: the payload names no repository")
        pr_id = int(pr["id"])
        state = _PR_STATES.get(str(pr.get("state", "")).upper(), "open")
        url = _dig(pr, "links", "html", "href")
        payload: Json = {
            "nativeEvent": native,
            "action": native.split(":", 1)[1],
            "repo": repo,
            "prId": pr_id,
            "state": state,
            "merged": state == "merged",
            "title": pr.get("title"),
            "sourceBranch": _dig(pr, "source", "branch", "name"),
            "targetBranch": _dig(pr, "destination", "branch", "name"),
            "url": url,
        }
        actor = data.get("actor")
        if native == "pullrequest:approved":
            actor = _dig(data, "approval", "user") or actor
        elif native == "pullrequest:changes_request_created":
            actor = _dig(data, "changes_request", "user") or actor
        elif native == "pullrequest:comment_created":
            comment = data.get("comment") or {}
            actor = comment.get("user") or actor
            payload["body"] = _dig(comment, "content", "raw") or ""
            payload["commentId"] = comment.get("id")
            payload["parentId"] = _dig(comment, "parent", "id")
            if isinstance(comment.get("inline"), dict):
                payload["path"] = comment["inline"].get("path")
                payload["line"] = comment["inline"].get("to") or comment["inline"].get("from")
        elif native == "pullrequest:fulfilled":
            payload["mergeCommit"] = _dig(pr, "merge_commit", "hash")
        payload["author"] = _user_name(actor) or _user_name(pr.get("author"))
        return InboundEvent(
            event_key=PR_EVENT_KEYS[native],
            payload=payload,
            plugin_id=self._plugin_id,
            ref=ExternalRef(
                kind="pull_request",
                plugin_id=self._plugin_id,
                repo_key=repo,
                external_id=str(pr_id),
                url=url,
            ),
            delivery_id=delivery,
        )

    def _ci_events(self, native: str, data: Json, delivery: str | None) -> list[InboundEvent]:
        status = data.get("commit_status")
        if not isinstance(status, dict):
            raise ScmError(f"Bitbucket webhook {native}: the payload has no commit_status")
        state = str(status.get("state", "")).upper()
        if state not in _FINAL_CI_STATES:
            return []
        repo = _dig(data, "repository", "full_name") or _dig(status, "repository", "full_name")
        payload: Json = {
            "nativeEvent": native,
            "action": native.split(":", 1)[1],
            "repo": repo,
            "sha": _dig(status, "commit", "hash"),
            "state": state,
            "conclusion": _CI_STATES[state],
            "key": status.get("key"),
            "name": status.get("name"),
            "url": status.get("url"),
            "branch": status.get("refname"),
            "author": _user_name(data.get("actor")),
        }
        return [
            InboundEvent(
                event_key=CI_COMPLETED,
                payload=payload,
                plugin_id=self._plugin_id,
                delivery_id=delivery,
            )
        ]

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- shapes -----------------------------------------------------------------------------------
    def _pr(self, slug: str, data: Json) -> PullRequest:
        state = _PR_STATES.get(str(data.get("state", "")).upper(), "open")
        pr_id = _int_or_str(data.get("id"))
        return PullRequest(
            id=pr_id,
            repo=slug,
            title=str(data.get("title") or ""),
            url=_dig(data, "links", "html", "href")
            or f"https://bitbucket.org/{slug}/pull-requests/{pr_id}",
            state=state,
            source_branch=_dig(data, "source", "branch", "name") or "",
            target_branch=_dig(data, "destination", "branch", "name") or "",
            author=_user_name(data.get("author")),
            description=str(data.get("description") or ""),
            reviewers=tuple(_user_name(r) or "?" for r in data.get("reviewers") or []),
            created_at=_timestamp(data.get("created_on")),
            # Bitbucket has no merge time; a merged PR's last update is its merge.
            merged_at=_timestamp(data.get("updated_on")) if state == "merged" else None,
            merge_commit=_dig(data, "merge_commit", "hash"),
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
                            username=_user_name(user) or "?",
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
                    await self._sleep(_backoff(attempt))
                    continue
                raise ScmError(
                    self._scrub(f"Bitbucket: {asked} failed: {type(exc).__name__}: {exc}")
                ) from exc
            status = response.status_code
            if status < 300:
                return response
            if status == 429:
                wait = _retry_after(response.headers.get("retry-after"))
                delay = _backoff(attempt) if wait is None else wait
                if not last and delay <= _MAX_WAIT:
                    await self._sleep(delay)
                    continue
                raise ScmRateLimited(
                    f"Bitbucket: rate limited on {asked}; retry in {delay:g}s",
                    retry_after=delay,
                )
            retryable = status >= 500 and not (refusal and status == 555)
            if retryable and not last and (method in _IDEMPOTENT or status == 503):
                await self._sleep(_backoff(attempt))
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
def _dig(data: object, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _user_name(user: object) -> str | None:
    if not isinstance(user, dict):
        return None
    for key in ("nickname", "username", "display_name", "account_id", "uuid"):
        if user.get(key):
            return str(user[key])
    return None


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
        author=_user_name(data.get("user")) or "?",
        body=str(_dig(data, "content", "raw") or ""),
        created_at=_timestamp(data.get("created_on")),
        parent_id=_dig(data, "parent", "id"),
        path=inline.get("path"),
        line=int(line) if line is not None else None,
        url=_dig(data, "links", "html", "href"),
    )


def _ci_state(states: list[str]) -> CiState:
    mapped = [_CI_STATES.get(s, "pending") for s in states]
    if not mapped:
        return "none"
    if "failure" in mapped:
        return "failure"
    if "pending" in mapped:
        return "pending"
    return "success"


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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


def _backoff(attempt: int) -> float:
    return float(min(30, 2**attempt))


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (a number of seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


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


def _fallback_delivery_id(headers: Mapping[str, str], body: bytes) -> str | None:
    hook = headers.get("x-hook-uuid")
    if not hook:
        return None
    return f"{hook}:{hashlib.sha256(body).hexdigest()[:16]}"
