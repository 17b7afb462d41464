"""Source-control routes: webhooks from hosting services, and the local SCM's pull requests.

``POST /webhook/{plugin_id}`` is the one route that takes no bearer token: the delivery is
verified by its signature (the plugin checks it against the configured secret). It stores the
events in the durable inbox, answers 202 at once, and routes them to their jobs afterwards.

``/scm/local/prs…`` is how a developer reviews the local SCM's pull requests (``coro pr``):
list, show, diff, comment, approve, merge, decline. Each action is also handed to the job that
opened the pull request as an inbound event, so a job waiting on it wakes at once rather than
at the next poll.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.api._app import ApiError, _body, _json
from engine.api._schemas import LocalApproveBody, LocalCommentBody, LocalMergeBody
from engine.scm import (
    PR_APPROVED,
    PR_COMMENT,
    PR_DECLINED,
    PR_MERGED,
    ScmConflict,
    ScmError,
    ScmNotFound,
    WebhookRejected,
)
from state import ExternalRef, InboundEvent

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from engine.runtime import Engine
    from engine.scm.local import LocalScmPlugin


__all__ = ["ScmRoutes"]


class ScmRoutes:
    """The handlers, bound to one engine (errors are raised as ``ApiError``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def webhook(self, request: Request) -> Response:
        plugin_id = request.path_params["plugin_id"]
        try:
            plugin = self.engine.scm.plugin(plugin_id)
        except ScmError as exc:
            raise ApiError(404, exc.message) from None
        body = await request.body()
        try:
            events = plugin.normalize_inbound(request.headers, body)
        except WebhookRejected as exc:
            raise ApiError(401, exc.message) from None
        except ScmError as exc:
            raise ApiError(400, exc.message) from None
        inbound = self.engine.inbound
        assert inbound is not None
        accepted, duplicates = 0, 0
        jobs: dict[str, None] = {}
        for event in events:
            item = await inbound.submit(event, route=False)
            if item is None:
                duplicates += 1
                continue
            accepted += 1
            if item.job_id is not None:
                jobs[item.job_id] = None
        for job_id in jobs:
            inbound.route_soon(job_id)
        answer: dict[str, Any] = {"accepted": accepted, "duplicates": duplicates}
        return _json(answer, 202)

    # -- the local SCM's pull requests -----------------------------------------------------------
    def _local(self) -> LocalScmPlugin:
        from engine.scm.local import LocalScmPlugin

        plugin = self.engine.scm.plugin("local")
        if not isinstance(plugin, LocalScmPlugin):
            raise ApiError(404, "the local SCM is not available")
        return plugin

    @staticmethod
    def _repo(request: Request) -> str:
        repo = request.query_params.get("repo", "")
        if not repo:
            raise ApiError(422, "repo: name the repository (?repo=acme/svc)", field="repo")
        return _known_slug(repo)

    @staticmethod
    def _pr_id(request: Request) -> int:
        raw = request.path_params["pr_id"]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:  # as documented
            raise ApiError(422, f"pr_id: {raw!r} is not a pull request number", field="pr_id")
        return int(raw)

    async def _scm_call(self, call: Any) -> Any:
        try:
            return await call
        except ScmNotFound as exc:
            raise ApiError(404, exc.message) from None
        except ScmConflict as exc:
            raise ApiError(409, exc.message) from None
        except ScmError as exc:
            raise ApiError(400, exc.message) from None

    async def list_prs(self, request: Request) -> Response:
        state = request.query_params.get("state")
        if state not in (None, "open", "merged", "declined"):
            raise ApiError(422, "state: open, merged or declined", field="state")
        repo = request.query_params.get("repo")
        if repo is not None:
            _known_slug(repo)
        local = self._local()
        prs = await self._scm_call(local.list_prs(repo=repo, state=state))
        return _json({"pullRequests": [_summary(pr) for pr in prs],
                      "repos": await local.repos()})  # fmt: skip

    async def show_pr(self, request: Request) -> Response:
        pr = await self._scm_call(self._local().local_pr(self._repo(request), self._pr_id(request)))
        job = await self._job_of(pr.repo, pr.id)
        data = pr.to_wire()
        data["jobId"] = job
        return _json(data)

    async def diff_pr(self, request: Request) -> Response:
        from starlette.responses import Response

        diff = await self._scm_call(self._local().diff(self._repo(request), self._pr_id(request)))
        return Response(diff, media_type="text/plain; charset=utf-8")

    async def comment_pr(self, request: Request) -> Response:
        body = await _body(request, LocalCommentBody)
        repo, pr_id = self._repo(request), self._pr_id(request)
        local = self._local()
        author = (body.author or "").strip() or "developer"
        if body.parent_id is None:
            call = local.post_comment(repo, pr_id, body.body, author=author)
        else:
            call = local.reply_to_comment(repo, pr_id, body.parent_id, body.body, author=author)
        comment = await self._scm_call(call)
        await self._tell_job(repo, pr_id, PR_COMMENT, f"comment:{comment.id}",
                             author=author, body=body.body, commentId=comment.id)  # fmt: skip
        return _json({"commentId": comment.id, "parentId": comment.parent_id}, 201)

    async def approve_pr(self, request: Request) -> Response:
        body = await _body(request, LocalApproveBody)
        repo, pr_id = self._repo(request), self._pr_id(request)
        user = (body.user or "").strip() or "developer"
        pr = await self._scm_call(self._local().approve(repo, pr_id, user))
        await self._tell_job(repo, pr_id, PR_APPROVED, f"approved:{user}", author=user)
        return _json(_shape(pr))

    async def merge_pr(self, request: Request) -> Response:
        body = await _body(request, LocalMergeBody)
        repo, pr_id = self._repo(request), self._pr_id(request)
        call = self._local().merge(repo, pr_id, strategy=body.strategy, message=body.message)
        pr = await self._scm_call(call)
        await self._tell_job(repo, pr_id, PR_MERGED, "merged", merged=True, state="MERGED")
        return _json(_shape(pr))

    async def decline_pr(self, request: Request) -> Response:
        repo, pr_id = self._repo(request), self._pr_id(request)
        pr = await self._scm_call(self._local().decline(repo, pr_id))
        await self._tell_job(repo, pr_id, PR_DECLINED, "declined", state="DECLINED")
        return _json(_shape(pr))

    async def _job_of(self, repo: str, pr_id: int) -> str | None:
        ref = _ref(repo, pr_id)
        job = await self.engine.store.get_job_by_external_ref(ref)
        return job.id if job is not None else None

    async def _tell_job(self, repo: str, pr_id: int, key: str, what: str, **payload: Any) -> None:
        """Hand the developer's action to the job that opened the PR (it may be waiting)."""
        from engine.polling import poll_dedupe_key

        inbound = self.engine.inbound
        assert inbound is not None
        event = InboundEvent(
            source="developer", event_key=key, plugin_id="local", ref=_ref(repo, pr_id),
            payload={"repo": repo, "prId": pr_id, "action": key.split(":")[-1], **payload},
        )  # fmt: skip
        item = await inbound.submit(
            event, dedupe_key=poll_dedupe_key("local", repo, pr_id, what), route=False
        )
        if item is not None and item.job_id is not None:
            inbound.route_soon(item.job_id)


def _known_slug(repo: str) -> str:
    """``repo`` if it can name a local repository; otherwise no such repository (404)."""
    from engine.scm._bare import valid_slug

    if not valid_slug(repo):
        raise ApiError(
            404, f"there is no local repository {repo!r}: names are `name` or `group/name` of "
            "letters, digits, '.', '_' and '-'",
        )  # fmt: skip
    return repo


def _ref(repo: str, pr_id: int) -> ExternalRef:
    return ExternalRef(kind="pull_request", plugin_id="local", repo_key=repo.lower(),
                       external_id=str(pr_id))  # fmt: skip


def _summary(pr: Any) -> dict[str, Any]:
    return {
        "repo": pr.repo,
        "id": pr.id,
        "title": pr.title,
        "state": pr.state,
        "author": pr.author,
        "sourceBranch": pr.source_branch,
        "targetBranch": pr.target_branch,
        "approvedBy": [a.user for a in pr.approvals],
        "comments": len(pr.comments),
        "updatedAt": pr.updated_at.isoformat(),
    }


def _shape(pr: Any) -> dict[str, Any]:
    return {
        "repo": pr.repo,
        "id": pr.id,
        "title": pr.title,
        "state": pr.state,
        "url": pr.url,
        "mergedAt": pr.merged_at.isoformat() if pr.merged_at else None,
        "mergeCommit": pr.merge_commit,
    }
