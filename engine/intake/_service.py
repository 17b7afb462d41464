"""Plan-mode sessions: one streamed turn at a time, budgets, persistence and dispatch.

A session (an :class:`~state.Investigation`) is saved after every turn, so it survives a
restart and can be reopened; one that has been idle longer than ``intake.sessionExpiryHours``
expires (it can be read, not continued). A turn is refused before any model call when the
session has used its turns or tokens; the last turn, or one that starts near the token cap,
asks the model to wrap up, and the client hears why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from engine._fs import atomic_write_bytes, ensure_private_dir
from engine.catalogue import list_workflows, workflow_problem
from engine.errors import CoroError, ProviderError, ProviderNotConfigured
from engine.executors import ExecutorNotFound, model_for
from engine.intake._prompt import PromptFacts, system_prompt
from engine.intake._protocol import Brief, brief_problems, parse_turn
from engine.intake._tools import IntakeToolBox, RepoView
from engine.phase import ChatRequest, ToolOutcome
from state import Investigation, JobInput, utcnow

if TYPE_CHECKING:
    from engine.intake._trackers import Tracker
    from engine.runtime import Engine
    from state import Job

__all__ = [
    "ChatMessage",
    "DispatchBody",
    "IntakeContext",
    "IntakeEvent",
    "IntakeRefused",
    "IntakeRequest",
    "IntakeService",
]

log = logging.getLogger(__name__)

_SESSION_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
#: A turn that starts with this share of the session's tokens spent is asked to wrap up.
_WRAP_UP_SHARE = 0.8
_FINDINGS_PARAM_CHARS = 8 * 1024
#: A repository's SCM copy fetched this recently is read as it is: the turns of one
#: conversation do not each pay a fetch.
_COPY_FRESH_SECONDS = 300.0


class _Body(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True
    )


class ChatMessage(_Body):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=200_000)


class IntakeContext(_Body):
    """What the client knows that grounds the conversation."""

    repo: str | None = Field(None, description="The repository's slug on the SCM, to read.")
    repo_path: str | None = Field(
        None, description="A local git checkout to read instead (absolute path)."
    )
    recent_repos: list[str] = Field(default_factory=list)
    recent_reviewers: list[str] = Field(default_factory=list)
    available_workflows: list[str] = Field(default_factory=list)
    user_locale: str | None = None


class IntakeRequest(_Body):
    """``POST /intake/stream``: the conversation so far, ending with the developer's turn."""

    session_id: str = Field(pattern=_SESSION_ID, description="The plan's id, chosen by the client.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    context: IntakeContext | None = None
    model: str | None = Field(None, description="A model id or llm.aliases key.")
    provider: str | None = None


class DispatchBody(_Body):
    """``POST /intake/sessions/{id}/dispatch``: the brief as the developer edited it, if
    they did (else the session's own)."""

    brief: dict[str, Any] | None = None


_Emit = Callable[["IntakeEvent"], Awaitable[None]]


class IntakeRefused(CoroError):
    """A plan-mode request that cannot go ahead; ``status`` is its HTTP status."""

    title = "Plan mode refused the request"

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True, slots=True)
class IntakeEvent:
    """One event of a streamed turn, as the SSE stream sends it (``event:`` and ``data:``)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Turn:
    request: IntakeRequest
    session: Investigation
    number: int
    lock: asyncio.Lock
    #: What the running turn says, ``None`` last; :meth:`IntakeService.run` hands it on.
    events: asyncio.Queue[IntakeEvent | None] = field(default_factory=asyncio.Queue)


class IntakeService:
    """Plan mode on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._locks: dict[str, asyncio.Lock] = {}
        self._turns: set[asyncio.Task[None]] = set()
        #: SCM copies by repository: when each was last fetched, and where it is.
        self._copies: dict[str, tuple[float, Path]] = {}

    @property
    def limits(self) -> dict[str, int]:
        bounds = self.engine.config.intake
        return {
            "maxTurns": bounds.max_turns,
            "maxOutputTokensPerTurn": bounds.max_output_tokens_per_turn,
            "maxSessionTokens": bounds.max_session_tokens,
            "toolRoundsPerTurn": bounds.tool_rounds_per_turn,
        }

    # -- sessions ------------------------------------------------------------------------------
    async def get(self, session_id: str) -> Investigation:
        session = await self.engine.store.get_investigation(session_id)
        if session is None:
            raise IntakeRefused(404, f"no plan session {session_id!r}")
        return await self._expire(session)

    async def list(self, status: str | None = None, limit: int = 100) -> list[Investigation]:
        sessions = await self.engine.store.list_investigations(status=status, limit=limit)
        return [await self._expire(s) for s in sessions]

    async def abandon(self, session_id: str) -> Investigation:
        session = await self.get(session_id)
        if session.status == "dispatched":
            raise IntakeRefused(409, f"plan {session_id} was dispatched as job {session.job_id}")
        session.status = "abandoned"
        return await self.engine.store.upsert_investigation(session)

    async def _expire(self, session: Investigation) -> Investigation:
        hours = self.engine.config.intake.session_expiry_hours
        if session.status == "open" and utcnow() - session.updated_at > timedelta(hours=hours):
            session.status = "expired"
            await self.engine.store.upsert_investigation(session)
        return session

    async def expire_stale(self) -> int:
        """Mark every open session idle for too long as expired; returns how many."""
        count = 0
        for session in await self.engine.store.list_investigations(status="open", limit=10_000):
            if (await self._expire(session)).status == "expired":
                count += 1
        return count

    # -- a turn --------------------------------------------------------------------------------
    async def begin(self, request: IntakeRequest) -> _Turn:
        """Check a turn can start and take the session's lock (released when it ends).

        Raises:
            IntakeRefused: 409 while another turn of the session runs, or when the session
                is no longer open; 422 when the conversation does not end with the developer.
        """
        if request.messages[-1].role != "user":
            raise IntakeRefused(422, "the last message must be the developer's (role user)",
                                field="messages")  # fmt: skip
        lock = self._locks.setdefault(request.session_id, asyncio.Lock())
        if lock.locked():
            raise IntakeRefused(409, f"plan {request.session_id} is already answering a turn")
        await lock.acquire()
        try:
            session = await self.engine.store.get_investigation(request.session_id)
            if session is None:
                first = request.messages[0].content.strip().splitlines()
                session = Investigation(id=request.session_id, title=(first or [""])[0][:80])
            session = await self._expire(session)
            if session.status != "open":
                why = {
                    "dispatched": f"it was dispatched as job {session.job_id}",
                    "abandoned": "it was abandoned",
                    "expired": "it expired after being idle "
                    f"{self.engine.config.intake.session_expiry_hours:g} h",
                }[session.status]
                raise IntakeRefused(409, f"plan {session.id} cannot go on: {why}; start a new one")
            answered = sum(1 for m in request.messages if m.role == "assistant")
            number = max(session.turns, answered) + 1
        except BaseException:
            lock.release()
            raise
        turn = _Turn(request, session, number, lock)
        # The turn runs from here, whether or not anyone reads its events (a client gone
        # before its stream started): it ends, is saved and releases the session's lock.
        task = asyncio.create_task(self._turn(turn), name=f"coro-plan-{session.id}")
        self._turns.add(task)
        task.add_done_callback(self._turns.discard)
        task.add_done_callback(lambda _: turn.events.put_nowait(None))
        return turn

    async def run(self, turn: _Turn) -> AsyncIterator[IntakeEvent]:
        """The events of a turn :meth:`begin` started. The turn goes on to its end (and is
        saved) even when the client stops listening: plan-mode replies are not thrown away."""
        while (event := await turn.events.get()) is not None:
            yield event

    async def _turn(self, turn: _Turn) -> None:
        emit = turn.events.put
        try:
            await self._answer(turn, emit)
        except Exception as exc:
            log.exception("plan-mode turn of %s failed", turn.session.id)
            await emit(IntakeEvent("error", {"message": f"internal error: {exc}"}))
        finally:
            turn.lock.release()

    async def _answer(self, turn: _Turn, emit: _Emit) -> None:
        engine, session, request = self.engine, turn.session, turn.request
        bounds = engine.config.intake
        limits = self.limits
        await emit(IntakeEvent("session", {"sessionId": session.id, "turn": turn.number,
                                           "limits": limits}))  # fmt: skip
        exhausted = self._exhausted(session, turn.number)
        if exhausted is not None:
            budget, message = exhausted
            await emit(IntakeEvent("error", {"message": message, "reason": "budget",
                                             "budget": budget, "turns": session.turns,
                                             "sessionTokens": session.session_tokens}))  # fmt: skip
            return
        try:
            executor, model = self._executor(request)
        except _NoLlm as exc:
            await emit(IntakeEvent("error", {"message": str(exc), "reason": "no-llm"}))
            return
        context = request.context or IntakeContext()
        repo, repo_note = await self._repo(context, emit)
        tracker, tracker_note = self._tracker()
        tools = None
        if bounds.tools_enabled:
            tools = IntakeToolBox(config=engine.config, store=engine.store, repo=repo,
                                  tracker=tracker)  # fmt: skip
        wrap_up = self._wrap_up(session, turn.number)
        if wrap_up is not None:
            budget, message = wrap_up
            await emit(IntakeEvent("notice", {"kind": "budget", "budget": budget,
                                              "message": message}))  # fmt: skip
        facts = PromptFacts(
            turn=turn.number,
            max_turns=bounds.max_turns,
            tools=tools.names if tools is not None else [],
            workflows=await list_workflows(engine),
            repo=context.repo or (repo.label if repo else None),
            repo_note=repo_note,
            tracker_note=tracker_note,
            context=context.model_dump(by_alias=True, exclude={"repo", "repo_path"}),
            wrap_up=wrap_up[1] if wrap_up else None,
        )

        async def on_token(text: str) -> None:
            await emit(IntakeEvent("token", {"text": text}))

        async def on_thinking(text: str) -> None:
            await emit(IntakeEvent("thinking", {"text": text}))

        async def on_tool_start(use_id: str, name: str, arguments: dict[str, Any]) -> None:
            await emit(IntakeEvent("tool_start", {"id": use_id, "name": name,
                                                  "input": arguments}))  # fmt: skip

        async def on_tool_end(use_id: str, name: str, outcome: ToolOutcome, ms: int) -> None:
            summary = _summary(outcome.text)
            data: dict[str, Any] = {"id": use_id, "name": name, "durationMs": ms,
                                    "ok": not outcome.is_error, "summary": summary}  # fmt: skip
            if outcome.is_error:
                data["error"] = _summary(outcome.text)
            await emit(IntakeEvent("tool_end", data))

        chat = ChatRequest(
            system_prompt=system_prompt(facts),
            messages=[m.model_dump() for m in request.messages],
            model=model,
            max_output_tokens=bounds.max_output_tokens_per_turn,
            on_token=on_token,
            on_thinking=on_thinking,
            tools=tools,
            max_tool_rounds=bounds.tool_rounds_per_turn,
            token_budget=max(1, bounds.max_session_tokens - session.session_tokens),
            on_tool_start=on_tool_start,
            on_tool_end=on_tool_end,
        )
        try:
            result = await executor.chat(chat, engine.config)
        except ProviderNotConfigured as exc:
            await emit(IntakeEvent("error", {"message": exc.message, "reason": "no-llm"}))
            return
        except ProviderError as exc:
            await emit(IntakeEvent("error", {"message": exc.message, "reason": "provider"}))
            return
        finally:
            if tracker is not None:
                with contextlib.suppress(Exception):
                    await tracker.aclose()
        tags = parse_turn(result.text)
        usage = result.usage
        spent = (usage.input_tokens + usage.output_tokens + usage.cache_read_input_tokens
                 + usage.cache_creation_input_tokens)  # fmt: skip
        session.messages = [
            *(m.model_dump() for m in request.messages),
            {"role": "assistant", "content": result.text},
        ]
        session.turns = turn.number
        session.session_tokens += spent
        session.context_tokens = result.context_tokens
        session.cost_usd += usage.cost_usd
        session.model = model
        session.repo = context.repo or session.repo
        session.repo_path = context.repo_path or session.repo_path
        if tags.readiness is not None:
            session.readiness = tags.readiness.model_dump(by_alias=True)
        if tags.findings is not None:
            session.findings = tags.findings
        if tags.brief_raw is not None:
            session.brief = tags.brief.to_wire() if tags.brief is not None else tags.brief_raw
            session.brief_errors = brief_problems(tags.brief_raw)
            if tags.brief is not None:
                problem = workflow_problem(engine, tags.brief.workflow())
                if problem is not None:
                    session.brief_errors.append(f"brief.workflowPath: {problem}")
        await engine.store.upsert_investigation(session)
        after = self._exhausted(session, session.turns + 1)
        await emit(
            IntakeEvent(
                "done",
                {
                    "sessionId": session.id,
                    "usage": {
                        "inputTokens": usage.input_tokens,
                        "outputTokens": usage.output_tokens,
                        "cacheReadInputTokens": usage.cache_read_input_tokens,
                        "cacheCreationInputTokens": usage.cache_creation_input_tokens,
                        "costUsd": round(usage.cost_usd, 6),
                    },
                    "contextTokens": session.context_tokens,
                    "sessionTokens": session.session_tokens,
                    "turns": session.turns,
                    "limits": limits,
                    "toolRounds": result.tool_rounds,
                    "stopped": result.stopped,
                    "wrapUp": wrap_up[1] if wrap_up else None,
                    "exhausted": after[1] if after else None,
                    "readiness": session.readiness,
                    "findings": session.findings,
                    "brief": session.brief,
                    "briefErrors": session.brief_errors,
                    "problems": tags.problems,
                },
            )
        )

    def _exhausted(self, session: Investigation, number: int) -> tuple[str, str] | None:
        bounds = self.engine.config.intake
        if number > bounds.max_turns:
            return "turns", (
                f"this plan has used all {bounds.max_turns} turns (intake.maxTurns); dispatch "
                "its brief, or start a new plan"
            )
        if session.session_tokens >= bounds.max_session_tokens:
            return "sessionTokens", (
                f"this plan has used {session.session_tokens} of its "
                f"{bounds.max_session_tokens} tokens (intake.maxSessionTokens); dispatch its "
                "brief, or start a new plan"
            )
        return None

    def _wrap_up(self, session: Investigation, number: int) -> tuple[str, str] | None:
        bounds = self.engine.config.intake
        if number >= bounds.max_turns:
            return (
                "turns",
                f"This is the last turn of the session ({number} of {bounds.max_turns}).",
            )
        if session.session_tokens >= _WRAP_UP_SHARE * bounds.max_session_tokens:
            return "sessionTokens", (
                f"The session has used {session.session_tokens} of its "
                f"{bounds.max_session_tokens} tokens."
            )
        return None

    def _executor(self, request: IntakeRequest) -> tuple[Any, str]:
        config = self.engine.config
        if request.model is None and "planning" not in config.llm.aliases:
            raise _NoLlm(
                "plan mode uses the 'planning' tier, and llm.aliases has no 'planning' alias; "
                "add one, or pick a model"
            )
        provider, model = model_for(request.model or "planning", config, request.provider)
        try:
            executor = self.engine.executors.executor(provider, config)
        except ExecutorNotFound as exc:
            raise _NoLlm(exc.message) from None
        if not hasattr(executor, "chat"):
            raise _NoLlm(f"the {provider} executor cannot chat, so it cannot run plan mode")
        return executor, model

    async def _repo(
        self, context: IntakeContext, emit: _Emit
    ) -> tuple[RepoView | None, str | None]:
        """The repository the tools read, and a note for the prompt when there is none."""
        if context.repo_path:
            root = Path(context.repo_path).expanduser()
            if not root.is_absolute() or not (root / ".git").exists():
                note = f"{context.repo_path} is not a git checkout; no repository to read"
                await emit(IntakeEvent("notice", {"kind": "repo", "message": note}))
                return None, note
            return RepoView(root.resolve(), context.repo or root.name), None
        if not context.repo:
            return None, "No repository was named: ask which one, if it matters."
        fetched = self._copies.get(context.repo)
        if fetched is not None and time.monotonic() - fetched[0] < _COPY_FRESH_SECONDS:
            return RepoView(fetched[1], context.repo), None
        await emit(IntakeEvent("notice", {"kind": "repo",
                                          "message": f"fetching {context.repo}…"}))  # fmt: skip
        try:
            root = await self._scm_copy(context.repo)
        except (CoroError, OSError) as exc:
            message = exc.message if isinstance(exc, CoroError) else str(exc)
            note = f"the repository {context.repo} could not be fetched: {message}"
            await emit(IntakeEvent("notice", {"kind": "repo", "message": note}))
            return None, note
        self._copies[context.repo] = (time.monotonic(), root)
        return RepoView(root, context.repo), None

    async def _scm_copy(self, repo: str) -> Path:
        """A read-only copy of ``repo``'s default branch in the cache, fetched fresh."""
        from engine.scm.git import clone_or_reuse, env_secrets, run_git

        engine = self.engine
        plugin_id, _, installed = engine.scm.resolve_for(None)
        if plugin_id is None:
            raise CoroError(f"no SCM plugin is configured (installed: {installed or 'none'})")
        plugin = engine.scm.plugin(plugin_id)
        info = await plugin.clone_info(repo)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", repo)
        dest = engine.paths.cache_dir / "intake" / plugin_id / safe
        ensure_private_dir(dest.parent)
        hidden = env_secrets(info.env)
        await clone_or_reuse(info, dest, secrets=hidden)
        await run_git("checkout", "--quiet", "--force", "--detach",
                      f"origin/{info.default_branch}", cwd=dest)  # fmt: skip
        return dest.resolve()

    def _tracker(self) -> tuple[Tracker | None, str | None]:
        from engine.intake._trackers import tracker_for

        tracker, problem = tracker_for(self.engine.config)
        if tracker is not None:
            return tracker, f"{tracker.name} is configured; its issues can be read."
        return None, problem or "none is configured; ask the developer for the ticket's text."

    # -- dispatch ------------------------------------------------------------------------------
    async def dispatch(self, session_id: str, edited: dict[str, Any] | None = None) -> Job:
        """Create the job the plan's brief (or the developer's edit of it) describes.

        Raises:
            IntakeRefused: 404 no such plan; 409 not open or no brief yet; 422 a bad brief,
                naming the field.
        """
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        if lock.locked():
            raise IntakeRefused(409, f"plan {session_id} is answering a turn; dispatch after it")
        async with lock:
            session = await self.get(session_id)
            if session.status != "open":
                where = f" as job {session.job_id}" if session.job_id else ""
                raise IntakeRefused(409, f"plan {session_id} is {session.status}{where}")
            data = edited if edited is not None else session.brief
            if data is None:
                raise IntakeRefused(409, f"plan {session_id} has no brief yet; ask for one",
                                    field="brief")  # fmt: skip
            problems = brief_problems(data)
            if problems:
                where = problems[0].split(":", 1)[0].removeprefix("brief.")
                raise IntakeRefused(422, "; ".join(problems), field=where)
            brief = Brief.model_validate(data)
            problem = workflow_problem(self.engine, brief.workflow())
            if problem is not None:
                raise IntakeRefused(422, problem, field="workflowPath")
            plan_dir = self._write_plan(session, brief)
            params: dict[str, Any] = {
                "repo": brief.repo,
                "description": brief.description,
                "reviewers": brief.reviewers,
                "planSessionId": session.id,
                "planContextDir": str(plan_dir),
            }
            if brief.title:
                params["title"] = brief.title
            if brief.service_name:
                params["serviceName"] = brief.service_name
            if session.findings:
                params["planFindings"] = session.findings[:_FINDINGS_PARAM_CHARS]
            job = await self.engine.create_job(
                JobInput(
                    workflow_path=brief.workflow(),
                    trigger_source="plan",
                    params=params,
                    interactive=brief.interactive,
                )
            )
            session.status = "dispatched"
            session.job_id = job.id
            session.brief = brief.to_wire()
            session.brief_errors = []
            await self.engine.store.upsert_investigation(session)
            return job

    def _write_plan(self, session: Investigation, brief: Brief) -> Path:
        """The plan's context directory: ``findings.md``, ``brief.json``, ``transcript.md``."""
        plan_dir = self.engine.paths.home / "plans" / session.id
        ensure_private_dir(plan_dir)
        findings = session.findings or "No findings were written in plan mode.\n"
        atomic_write_bytes(plan_dir / "findings.md", findings.encode())
        atomic_write_bytes(plan_dir / "brief.json",
                           json.dumps(brief.to_wire(), indent=2).encode())  # fmt: skip
        transcript = "\n\n".join(
            f"**{m.get('role')}**\n\n{m.get('content')}" for m in session.messages
        )
        atomic_write_bytes(plan_dir / "transcript.md", transcript.encode())
        return plan_dir

    async def aclose(self) -> None:
        """Let running turns finish saving (briefly), then cancel what is left."""
        if self._turns:
            _, pending = await asyncio.wait(set(self._turns), timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class _NoLlm(Exception):
    pass


def _summary(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "…"
