"""Read-only issue trackers for plan mode: GitHub Issues and Jira, over their REST APIs.

A tracker answers with text the model reads: the issue's title, status and description (cut
at 8 KiB), its comments (the last 50, each cut at 4 KiB), or search hits. Errors are
:class:`TrackerError` with a message naming the tracker and what it said.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from engine.errors import CoroError

if TYPE_CHECKING:
    from engine.config import LocalConfig

__all__ = ["Tracker", "TrackerError", "tracker_for"]

_DESCRIPTION_CHARS = 8 * 1024
_COMMENT_CHARS = 4 * 1024
_COMMENTS = 50
_TIMEOUT = 15.0


class TrackerError(CoroError):
    title = "Tracker request failed"


class Tracker(Protocol):
    name: str

    async def issue(self, key: str) -> str: ...

    async def comments(self, key: str) -> str: ...

    async def search(self, query: str, limit: int) -> str: ...

    async def aclose(self) -> None: ...


def tracker_for(config: LocalConfig) -> tuple[Tracker | None, str | None]:
    """The configured tracker, or ``None`` and why there is none (``None``: none configured)."""
    tracker = config.tracker
    if tracker.provider == "github":
        gh = tracker.github
        if not gh.token or not gh.repo:
            return None, "tracker.github needs token and repo (owner/name)"
        return GithubIssues(gh.api_url, gh.repo, str(gh.token)), None
    if tracker.provider == "jira":
        jira = tracker.jira
        if not jira.base_url or not jira.email or not jira.api_token:
            return None, "tracker.jira needs baseUrl, email and apiToken"
        return Jira(jira.base_url, jira.email, str(jira.api_token), jira.project_key), None
    if tracker.provider == "linear":
        return None, "plan mode cannot read Linear yet (GitHub Issues and Jira are supported)"
    return None, None


def _cut(text: str | None, limit: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[:limit] + f"\n… (cut at {limit} characters)"


class _Http:
    name = "tracker"

    def __init__(self, base_url: str, headers: dict[str, str], auth: Any = None) -> None:
        import httpx2

        self._client = httpx2.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, auth=auth, timeout=_TIMEOUT
        )

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        import httpx2

        try:
            response = await self._client.get(path, params=params)
        except httpx2.HTTPError as exc:
            raise TrackerError(f"{self.name}: cannot reach it: {type(exc).__name__}") from None
        if response.status_code == 404:
            raise TrackerError(f"{self.name}: not found ({path})")
        if response.status_code in (401, 403):
            raise TrackerError(f"{self.name}: refused ({response.status_code}); check the token")
        if response.status_code >= 400:
            raise TrackerError(f"{self.name}: answered {response.status_code} for {path}")
        return response.json()

    async def aclose(self) -> None:
        await self._client.aclose()


class GithubIssues(_Http):
    """Issues of one GitHub repository."""

    name = "GitHub Issues"

    def __init__(self, api_url: str, repo: str, token: str) -> None:
        super().__init__(
            api_url,
            {"authorization": f"Bearer {token}", "accept": "application/vnd.github+json"},
        )
        self.repo = repo

    def _number(self, key: str) -> str:
        number = key.strip().lstrip("#").rsplit("#", 1)[-1]
        if not number.isdigit():
            raise TrackerError(f"{self.name}: {key!r} is not an issue number")
        return number

    async def issue(self, key: str) -> str:
        data = await self._get(f"/repos/{self.repo}/issues/{self._number(key)}")
        labels = ", ".join(str(label.get("name")) for label in data.get("labels") or [])
        return (
            f"#{data.get('number')} {data.get('title')}\n"
            f"state: {data.get('state')}; author: {(data.get('user') or {}).get('login')}; "
            f"labels: {labels or 'none'}\n\n{_cut(data.get('body'), _DESCRIPTION_CHARS)}"
        )

    async def comments(self, key: str) -> str:
        path = f"/repos/{self.repo}/issues/{self._number(key)}/comments"
        data = await self._get(path, {"per_page": 100})
        rows = [
            f"— {(c.get('user') or {}).get('login')} at {c.get('created_at')}:\n"
            f"{_cut(c.get('body'), _COMMENT_CHARS)}"
            for c in list(data)[-_COMMENTS:]
        ]
        return "\n\n".join(rows) if rows else "no comments"

    async def search(self, query: str, limit: int) -> str:
        data = await self._get(
            "/search/issues", {"q": f"{query} repo:{self.repo}", "per_page": limit}
        )
        rows = [
            f"#{item.get('number')} [{item.get('state')}] {item.get('title')}"
            for item in (data.get("items") or [])[:limit]
        ]
        return "\n".join(rows) if rows else "no issues match"


class Jira(_Http):
    """Jira Cloud or Server, REST API v2 (plain-text descriptions)."""

    name = "Jira"

    def __init__(self, base_url: str, email: str, token: str, project: str | None) -> None:
        import httpx2

        super().__init__(base_url, {"accept": "application/json"}, httpx2.BasicAuth(email, token))
        self.project = project

    async def issue(self, key: str) -> str:
        data = await self._get(f"/rest/api/2/issue/{key.strip()}")
        fields = data.get("fields") or {}
        status = (fields.get("status") or {}).get("name")
        kind = (fields.get("issuetype") or {}).get("name")
        return (
            f"{data.get('key')} {fields.get('summary')}\n"
            f"type: {kind}; status: {status}\n\n"
            f"{_cut(fields.get('description'), _DESCRIPTION_CHARS)}"
        )

    async def comments(self, key: str) -> str:
        data = await self._get(f"/rest/api/2/issue/{key.strip()}/comment")
        rows = [
            f"— {(c.get('author') or {}).get('displayName')} at {c.get('created')}:\n"
            f"{_cut(c.get('body'), _COMMENT_CHARS)}"
            for c in (data.get("comments") or [])[-_COMMENTS:]
        ]
        return "\n\n".join(rows) if rows else "no comments"

    async def search(self, query: str, limit: int) -> str:
        text = query.replace('"', " ")
        jql = f'text ~ "{text}"' + (f" AND project = {self.project}" if self.project else "")
        data = await self._get("/rest/api/2/search", {"jql": jql, "maxResults": limit})
        rows = [
            f"{item.get('key')} [{((item.get('fields') or {}).get('status') or {}).get('name')}] "
            f"{(item.get('fields') or {}).get('summary')}"
            for item in data.get("issues") or []
        ]
        return "\n".join(rows) if rows else "no issues match"
