"""``coro plan``: plan mode in line mode, at a prompt or in a pipe.

At a terminal it is a chat: type a message, the investigator's reply streams in, tool activity
and the readiness state go to stderr; ``/brief`` shows the brief, ``/dispatch`` starts it as a
job, ``/quit`` leaves (the plan is kept on the runner; ``--session ID`` reopens it). In a pipe
it reads stdin to the end, one developer turn per block (blocks separated by a line ``---``),
and prints each reply, or with ``--json`` one JSON object per turn.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coro_tui._cli_common import EXIT_FAILED, EXIT_USAGE, _fail, _runner, _stderr

if TYPE_CHECKING:
    from coro_tui._client import RunnerClient

__all__ = ["plan"]

_SEPARATOR = "---"
_PROMPT = "you> "


@dataclass
class _Session:
    id: str
    context: dict[str, Any]
    model: str | None
    messages: list[dict[str, str]] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)


def plan(
    ctx: typer.Context,
    message: Annotated[
        list[str] | None,
        typer.Argument(
            help="The first message (else read from the prompt or stdin).", show_default=False
        ),
    ] = None,
    repo: Annotated[
        str | None, typer.Option(help="The repository to investigate (its slug on the SCM).")
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(help="A local git checkout to read instead of the SCM's copy."),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(help="Reopen this plan (see `coro plan --list`), or name a new one."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="A model id or llm.aliases key (default: planning tier).")
    ] = None,
    dispatch: Annotated[
        bool,
        typer.Option("--dispatch", help="When the input ends, start the brief as a job."),
    ] = False,
    list_plans: Annotated[bool, typer.Option("--list", help="List saved plans and exit.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per turn (and the job).")
    ] = False,
) -> None:
    """Shape a job's brief in a chat with a read-only investigator, then dispatch it.

    The investigator reads the repository, past jobs and the tracker; every answer ends with
    its readiness (investigating, ready, no-run-needed), and once you agree, a brief. Needs a
    running runner (`coro start --headless`, or `coro` with the TUI). Exits 0, 1 when a turn
    fails (no model configured, a budget reached, the provider refused), 2 on bad input.
    """
    with _runner(ctx) as runner:
        if list_plans:
            _print_plans(runner, as_json=as_json)
            return
        context: dict[str, Any] = {}
        if repo:
            context["repo"] = repo
        if path:
            from pathlib import Path

            context["repoPath"] = str(Path(path).expanduser().resolve())
        state = _Session(session or _new_id(), context, model)
        if session is not None:
            _reopen(runner, state, show=not as_json and sys.stdin.isatty())
        first = " ".join(message or []).strip()
        ok = True
        if sys.stdin.isatty() and not as_json:
            ok = _chat(runner, state, first)
        else:
            turns = [first] if first else []
            turns += _blocks(sys.stdin.read()) if not sys.stdin.isatty() else []
            if not turns:
                _fail("nothing to say: give a message, or pipe one on stdin", EXIT_USAGE)
            for text in turns:
                ok = _turn(runner, state, text, as_json=as_json)
                if not ok:
                    break
        if ok and dispatch:
            ok = _dispatch(runner, state, as_json=as_json)
    if not ok:
        raise typer.Exit(EXIT_FAILED)


def _new_id() -> str:
    return f"plan-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _blocks(text: str) -> list[str]:
    blocks: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip() == _SEPARATOR:
            blocks.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    blocks.append("\n".join(current).strip())
    return [b for b in blocks if b]


def _reopen(runner: RunnerClient, state: _Session, *, show: bool) -> None:
    """Load a saved plan's conversation; an id the runner does not know starts a new plan."""
    from coro_tui._client import ApiRefused

    try:
        saved = runner.get(f"/intake/sessions/{state.id}")
    except ApiRefused as exc:
        if exc.status != 404:
            raise
        if show:
            _stderr(f"new plan {state.id}")
        return
    state.messages = [dict(m) for m in saved.get("messages", [])]
    state.last = saved
    if not state.context:
        if saved.get("repoPath"):
            state.context["repoPath"] = saved["repoPath"]
        elif saved.get("repo"):
            state.context["repo"] = saved["repo"]
    if show:
        from engine.intake import visible_text

        for item in state.messages:
            who = "you" if item["role"] == "user" else "coro"
            typer.echo(f"{who}> {visible_text(item['content'])}\n")
        _stderr(f"reopened {state.id} ({saved.get('status')}, {saved.get('turns', 0)} turns)")


def _chat(runner: RunnerClient, state: _Session, first: str) -> bool:
    _stderr(f"plan {state.id}: type your message; /brief, /dispatch, /quit")
    pending = first
    while True:
        if not pending:
            try:
                pending = input(_PROMPT).strip()
            except EOFError:
                typer.echo()
                return True
        text, pending = pending, ""
        if not text:
            continue
        if text in ("/quit", "/exit"):
            _stderr(f"plan kept: coro plan --session {state.id}")
            return True
        if text == "/brief":
            _show_brief(state.last)
            continue
        if text == "/dispatch":
            if _dispatch(runner, state, as_json=False):
                return True
            continue
        _turn(runner, state, text, as_json=False)


def _turn(runner: RunnerClient, state: _Session, text: str, *, as_json: bool) -> bool:
    """One turn; False when it ended with an error."""
    from engine.intake import visible_text

    state.messages.append({"role": "user", "content": text})
    body: dict[str, Any] = {"sessionId": state.id, "messages": state.messages}
    if state.context:
        body["context"] = state.context
    if state.model:
        body["model"] = state.model
    reply, shown = "", ""
    tools: list[dict[str, Any]] = []
    notices: list[str] = []
    for frame in runner.stream_post("/intake/stream", body):
        if not frame.data:
            continue
        data = frame.json()
        kind = frame.event
        if kind == "token":
            reply += data["text"]
            if not as_json:
                visible = visible_text(reply)
                if visible.startswith(shown) and len(visible) > len(shown):
                    sys.stdout.write(visible[len(shown) :])
                    sys.stdout.flush()
                    shown = visible
        elif kind == "tool_start" and not as_json:
            _stderr(f"  ▸ {data['name']} {_args(data.get('input'))}")
        elif kind == "tool_end":
            tools.append(data)
            if not as_json:
                status = "ok" if data.get("ok") else f"failed: {data.get('error', '')}"
                _stderr(f"    {status} ({data.get('durationMs')} ms)")
        elif kind == "notice":
            notices.append(str(data.get("message")))
            if not as_json:
                _stderr(f"  [{data.get('kind')}] {data.get('message')}")
        elif kind == "error":
            state.messages.pop()
            reason = data.get("reason")
            if as_json:
                typer.echo(json.dumps({"sessionId": state.id, "error": data}, ensure_ascii=False))
            else:
                if shown:
                    typer.echo()
                hint = _hint(reason)
                _stderr(f"coro: {data.get('message')}{hint}")
            return False
        elif kind == "done":
            state.messages.append({"role": "assistant", "content": reply})
            state.last = data
            if as_json:
                out = {"sessionId": state.id, "reply": visible_text(reply), "tools": tools,
                       "notices": notices, **data}  # fmt: skip
                typer.echo(json.dumps(out, ensure_ascii=False))
            else:
                typer.echo("\n" if shown else "")
                _show_state(data)
            return True
    state.messages.pop()
    _stderr("coro: the plan stream ended without an answer")
    return False


def _hint(reason: Any) -> str:
    if reason == "no-llm":
        return " (set ANTHROPIC_API_KEY or llm.apiKey, and a 'planning' alias in llm.aliases)"
    if reason == "budget":
        return " (raise the intake limits in config.json, or dispatch what you have)"
    return ""


def _args(value: Any) -> str:
    if not isinstance(value, dict) or not value:
        return ""
    text = " ".join(f"{k}={v}" for k, v in value.items())
    return text if len(text) <= 80 else text[:80] + "…"


def _show_state(done: dict[str, Any]) -> None:
    readiness = done.get("readiness") or {}
    state = readiness.get("state", "?")
    line = f"[{state}] turn {done.get('turns')}/{done['limits']['maxTurns']}, "
    line += f"{done.get('sessionTokens')}/{done['limits']['maxSessionTokens']} tokens"
    _stderr(line)
    for question in readiness.get("openQuestions") or []:
        _stderr(f"  ? {question}")
    if done.get("brief"):
        _show_brief(done)
    for problem in done.get("problems") or []:
        _stderr(f"  ! {problem}")
    if done.get("exhausted"):
        _stderr(f"  budget: {done['exhausted']}")


def _show_brief(done: dict[str, Any]) -> None:
    brief = done.get("brief")
    if not brief:
        _stderr("no brief yet: ask for one when the investigator says it is ready")
        return
    _stderr("brief:")
    for key in ("repo", "title", "workflowPath", "reviewers", "interactive", "description"):
        if key in brief:
            _stderr(f"  {key}: {brief[key]}")
    for error in done.get("briefErrors") or []:
        _stderr(f"  ! {error}")
    if not done.get("briefErrors"):
        _stderr("/dispatch starts it")


def _dispatch(runner: RunnerClient, state: _Session, *, as_json: bool) -> bool:
    from coro_tui._client import ApiRefused

    try:
        job = runner.post(f"/intake/sessions/{state.id}/dispatch", {})
    except ApiRefused as exc:
        if as_json:
            typer.echo(json.dumps({"sessionId": state.id, "dispatchError": exc.message}))
        else:
            _stderr(f"coro: cannot dispatch: {exc.message}")
        return False
    if as_json:
        typer.echo(json.dumps({"sessionId": state.id, "dispatched": job}, ensure_ascii=False))
    else:
        _stderr(f"job {job['jobId']} queued ({job['workflowPath']}); follow it: "
                f"coro logs {job['jobId']} --follow")  # fmt: skip
        typer.echo(job["jobId"])
    return True


def _print_plans(runner: RunnerClient, *, as_json: bool) -> None:
    sessions = runner.get("/intake/sessions")["sessions"]
    if as_json:
        typer.echo(json.dumps(sessions, indent=2, ensure_ascii=False))
        return
    if not sessions:
        _stderr("no saved plans")
    for item in sessions:
        readiness = (item.get("readiness") or {}).get("state", "-")
        job = f" → {item['jobId']}" if item.get("jobId") else ""
        typer.echo(f"{item['id']}  {item['status']:<10} {readiness:<14} "
                   f"{item.get('title') or ''}{job}")  # fmt: skip
