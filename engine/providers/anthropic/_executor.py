"""``AnthropicExecutor``: runs a phase on Anthropic's Messages API with its own tool loop.

One phase is a loop of turns: send the conversation (streamed), record usage, run the tools the
model asked for, send their results, until the model ends its turn, a tool ends the phase, the
developer pauses, or the turn cap is reached. Rate limits are retried with back-off and then
park the job; a refusal (credentials, spend limit) escalates with the provider's message.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from engine.config import redact_text
from engine.errors import ProviderError, ProviderRateLimited, ProviderRefused, ProviderUnavailable
from engine.phase import (
    ChatRequest,
    ChatResult,
    DeveloperMessage,
    PhaseRequest,
    PhaseResult,
    SteeringChannel,
    StopReason,
    ToolOutcome,
    ToolSpec,
)
from engine.providers.anthropic import _conversation as conv
from engine.providers.anthropic._client import (
    PROVIDER,
    ClientKey,
    Turn,
    client_key,
    deprecation,
    make_client,
    stream_turn,
)
from engine.providers.anthropic._subagents import TASK_TOOL, SubagentRunner, task_spec
from engine.providers.anthropic._usage import CallUsage, add_call
from state import EventKind, PhaseUsage, RateLimitInfo

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

    from engine.config import LlmRetryConfig, LocalConfig

__all__ = ["AnthropicExecutor", "create"]

T = TypeVar("T")

_SUMMARY_CHARS = 500
_EVENT_VALUE_CHARS = 2_000
_INTERRUPTED = "interrupted by the developer before it finished"


class _Interrupted(Exception):
    """The developer interrupted the model call or tool in flight."""


class _Park(Exception):
    """Rate limits outlasted the retries: park the job until ``resume_in`` seconds from now."""

    def __init__(self, error: ProviderRateLimited, resume_in: float, attempts: int) -> None:
        super().__init__(error.message)
        self.error = error
        self.resume_in = resume_in
        self.attempts = attempts


def create(config: LocalConfig) -> AnthropicExecutor:
    """Entry-point factory (``coro.executors``: ``anthropic``)."""
    return AnthropicExecutor()


class AnthropicExecutor:
    """The built-in executor (provider id ``anthropic``).

    Args:
        env: where ``ANTHROPIC_*`` variables are read (default ``os.environ``).
        sleep: how retries wait.
        client_factory: builds the SDK client from the resolved credentials and endpoint
            (tests hand it an ``httpx2.MockTransport``).
    """

    provider_id = PROVIDER

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        client_factory: Callable[[ClientKey], AsyncAnthropic] = make_client,
    ) -> None:
        self._env = env
        self._sleep = sleep
        self._client_factory = client_factory
        self._clients: dict[ClientKey, AsyncAnthropic] = {}
        self._closing: set[asyncio.Future[None]] = set()

    async def aclose(self) -> None:
        """Close the HTTP clients (the engine calls this when it stops)."""
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.close()

    def client_for(self, config: LocalConfig) -> tuple[AsyncAnthropic, ClientKey]:
        key = client_key(config.llm, self._env)
        client = self._clients.get(key)
        if client is None:
            for old in self._clients.values():  # the config changed: drop the old credentials
                closing = asyncio.ensure_future(old.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            self._clients.clear()
            client = self._clients[key] = self._client_factory(key)
        return client, key

    # -- a phase --------------------------------------------------------------------------------
    async def execute_phase(self, request: PhaseRequest) -> PhaseResult:
        config = request.context.config
        usage = PhaseUsage(phase=request.phase.name, model=request.model)
        messages = conv.open_session(request.resume_conversation, request.kickoff)

        def result(stop: StopReason, **extra: Any) -> PhaseResult:
            return PhaseResult(
                stop_reason=stop, usage=usage, conversation=conv.stored(messages), **extra
            )

        try:
            client, key = self.client_for(config)
        except ProviderRefused as exc:
            return result("error", error=exc.message)
        end_of_life = deprecation(request.model)
        if end_of_life:
            await request.context.log(
                f"[model] {request.model} is deprecated and reaches end-of-life on "
                f"{end_of_life}; point the tier at a newer model in llm.aliases"
            )
        specs = request.tools.specs()
        subagents = SubagentRunner.for_phase(request, self, specs, usage)
        if subagents is not None:
            specs = [*specs, task_spec(request.phase.subagents)]
        tools = _tool_params(specs)
        system = [{"type": "text", "text": request.system_prompt, "cache_control": _EPHEMERAL}]
        steering = request.steering
        cap = config.llm.max_turns_per_phase
        while True:
            if usage.num_turns >= cap:
                return result("turn_cap", error=f"reached the cap of {cap} model turns")
            await self._deliver_steering(request, messages, usage.num_turns + 1)
            params = {
                "model": request.model,
                "max_tokens": config.llm.max_output_tokens,
                "system": system,
                "messages": conv.with_breakpoints(messages),
            }
            if tools:
                params["tools"] = tools
            try:
                turn = await self.call(client, key, params, request=request)
            except _Interrupted:
                steering.clear_interrupt()
                if steering.pause_requested:
                    return result("interrupted", error="paused by developer")
                continue  # the steer text (if any) goes with the next request
            except _Park as park:
                return result("rate_limited", rate_limit=_rate_limit_info(park))
            except ProviderError as exc:
                return result("error", error=exc.message)
            call = CallUsage.from_api(request.model, turn.usage, config.llm.prices,
                                      turn.duration_ms)  # fmt: skip
            add_call(usage, call)
            messages.append({"role": "assistant", "content": turn.content})
            await self._record_turn(request, usage.num_turns, turn, call)
            uses = conv.tool_uses(messages[-1])
            if not uses:
                await self._persist(request, messages)
                if steering.pause_requested:
                    return result("interrupted", error="paused by developer")
                queued = steering.drain_queued_messages()
                if queued:
                    conv.add_user_text(messages, _developer([m.text for m in queued]))
                    await _record_delivered(request, queued, usage.num_turns + 1)
                    await request.context.log(f"[steering] {len(queued)} queued message(s) "
                                              "delivered at the end of the turn")  # fmt: skip
                    continue
                return result("end_turn")
            await self._persist(request, messages)
            results = await self._run_tools(request, uses, subagents)
            conv.add_user_blocks(messages, results)
            await self._persist(request, messages)
            if request.signals.ends_phase:
                return result("signal")
            if steering.pause_requested:
                steering.clear_interrupt()
                return result("interrupted", error="paused by developer")
            steering.clear_interrupt()

    async def _deliver_steering(
        self, request: PhaseRequest, messages: list[dict[str, Any]], turn: int
    ) -> None:
        """Put the inbound events and the developer's steers into the next request (model
        call number ``turn`` of the phase) and record each message's delivery."""
        parts = request.steering.drain_events()
        steers = request.steering.drain_messages()
        if steers:
            parts.append(_developer([m.text for m in steers]))
        if parts:
            conv.add_user_text(messages, "\n\n".join(parts))
        await _record_delivered(request, steers, turn)

    async def call(
        self,
        client: AsyncAnthropic,
        key: ClientKey,
        params: dict[str, Any],
        *,
        request: PhaseRequest,
    ) -> Turn:
        """One model call with retries; interruptible by the developer.

        Raises:
            _Interrupted: the developer interrupted it.
            _Park: rate limits outlasted the retries.
            ProviderError: the provider refused, or stayed unavailable through every try.
        """
        retry = request.context.config.llm.retry
        steering = request.steering
        attempt = 0
        while True:
            attempt += 1
            try:
                return await _interruptible(
                    stream_turn(client, params, stall_seconds=key.stall_seconds,
                                on_event=steering.touch),
                    steering,
                )  # fmt: skip
            except ProviderRateLimited as exc:
                delay = _retry_delay(exc, retry, attempt)
                if attempt >= retry.max_attempts or delay > retry.max_delay_seconds:
                    resume_in = (
                        exc.retry_after
                        if exc.retry_after is not None
                        else retry.rate_limit_park_seconds
                    )
                    raise _Park(exc, resume_in, attempt) from exc
                await self._wait_retry(request, exc, attempt, retry.max_attempts, delay)
            except ProviderUnavailable as exc:
                if attempt >= retry.max_attempts:
                    raise ProviderUnavailable(
                        f"{exc.message} (gave up after {attempt} tries)",
                        provider=exc.provider, status=exc.status,
                    ) from exc  # fmt: skip
                delay = _retry_delay(exc, retry, attempt)
                await self._wait_retry(request, exc, attempt, retry.max_attempts, delay)

    async def _wait_retry(
        self, request: PhaseRequest, exc: ProviderError, attempt: int, attempts: int, delay: float
    ) -> None:
        await request.context.log(
            f"[model] {exc.message}; retrying in {delay:.1f} s (try {attempt + 1} of {attempts})"
        )
        request.steering.touch()
        await _interruptible(self._sleep(delay), request.steering)

    async def _record_turn(self, request: PhaseRequest, turn_no: int, turn: Turn,
                           call: CallUsage) -> None:  # fmt: skip
        context = request.context
        data = {"turn": turn_no, "stopReason": turn.stop_reason, **call.to_event()}
        events: list[tuple[str, dict[str, Any]]] = [("model_call", data)]
        text = conv.text_of({"content": turn.content}).strip()
        if text:
            events.append(("assistant", {"turn": turn_no,
                                         "text": redact_text(text, context.config)}))  # fmt: skip
        await context.store.append_events(context.job.id, events)

    async def _persist(self, request: PhaseRequest, messages: list[dict[str, Any]]) -> None:
        """Keep the conversation on the job as it grows, so a crash resumes it."""
        request.context.job.conversation_history = conv.stored(messages)
        await request.context.save()

    # -- tools ----------------------------------------------------------------------------------
    async def _run_tools(
        self,
        request: PhaseRequest,
        uses: list[dict[str, Any]],
        subagents: SubagentRunner | None,
    ) -> list[dict[str, Any]]:
        """Run the turn's tool calls in order; every call gets a result block."""
        results: list[dict[str, Any]] = []
        steering = request.steering
        for use in uses:
            use_id, name = str(use["id"]), str(use["name"])
            arguments = conv.tool_input(use)
            if steering.interrupted or request.signals.ends_phase:
                why = (
                    _INTERRUPTED
                    if steering.interrupted
                    else "not run: an earlier tool call of this turn ended the phase"
                )
                results.append(conv.tool_result(use_id, why, is_error=True))
                continue
            await request.context.emit(EventKind.TOOL_CALL,
                             {"id": use_id, "name": name, "input": _clip(arguments)})  # fmt: skip
            started = time.monotonic()
            try:
                if name == TASK_TOOL and subagents is not None:
                    outcome = await _interruptible(subagents.run(arguments), steering)
                else:
                    outcome = await _interruptible(request.tools.call(name, arguments), steering)
            except _Interrupted:
                outcome = ToolOutcome(_INTERRUPTED, is_error=True)
            steering.touch()
            text = redact_text(outcome.text, request.context.config)
            results.append(conv.tool_result(use_id, text, is_error=outcome.is_error))
            await request.context.emit(EventKind.TOOL_RESULT, {
                "id": use_id, "name": name, "isError": outcome.is_error,
                "summary": _summary(text), "durationMs": int((time.monotonic() - started) * 1000),
            })  # fmt: skip
        return results

    # -- plan mode ------------------------------------------------------------------------------
    async def chat(self, request: ChatRequest, config: LocalConfig) -> ChatResult:
        """A streamed plan-mode turn, with a tool loop when the request carries tools.

        Raises:
            ProviderRefused: no credentials, or the provider refused the request.
            ProviderError: the provider stayed unavailable through every try.
        """
        client, key = self.client_for(config)
        usage = PhaseUsage(phase="chat", model=request.model)
        messages = list(request.messages)
        specs = request.tools.specs() if request.tools is not None else []
        tools = _tool_params(specs)
        texts: list[str] = []
        rounds, spent, output = 0, 0, 0
        stopped: str | None = None
        context_tokens = 0
        while True:
            on_token = _separated(request.on_token, texts) if request.on_token else None
            params: dict[str, Any] = {
                "model": request.model,
                "max_tokens": max(1, request.max_output_tokens - output),
                "system": request.system_prompt,
                "messages": messages,
            }
            if tools:
                params["tools"] = tools
                if stopped is not None:
                    params["tool_choice"] = {"type": "none"}
            turn = await self._chat_call(client, key, params, config, on_token, request.on_thinking)
            call = CallUsage.from_api(request.model, turn.usage, config.llm.prices,
                                      turn.duration_ms)  # fmt: skip
            add_call(usage, call)
            context_tokens = (
                call.input_tokens + call.cache_read_input_tokens + call.cache_creation_input_tokens
            )
            spent += context_tokens + call.output_tokens
            output += call.output_tokens
            text = conv.text_of({"content": turn.content})
            if text:
                texts.append(text)
            uses = [b for b in turn.content if b.get("type") == "tool_use"]
            if not uses or turn.stop_reason != "tool_use" or stopped is not None:
                break
            messages.append({"role": "assistant", "content": turn.content})
            stopped = _chat_stop(request, rounds, output, spent)
            if stopped is not None:
                note = f"not run: {stopped}. Answer now with what you have found."
                results = [conv.tool_result(str(u["id"]), note, is_error=True) for u in uses]
            else:
                rounds += 1
                results = await _chat_tools(request, uses)
            messages.append({"role": "user", "content": results})
        return ChatResult(
            text="\n\n".join(texts),
            usage=usage,
            tool_rounds=rounds,
            stopped=stopped,
            context_tokens=context_tokens,
        )

    async def _chat_call(
        self,
        client: AsyncAnthropic,
        key: Any,
        params: dict[str, Any],
        config: LocalConfig,
        on_token: Callable[[str], Awaitable[None]] | None,
        on_thinking: Callable[[str], Awaitable[None]] | None,
    ) -> Any:
        retry = config.llm.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                return await stream_turn(
                    client,
                    params,
                    stall_seconds=key.stall_seconds,
                    on_text=on_token,
                    on_thinking=on_thinking,
                )
            except (ProviderRateLimited, ProviderUnavailable) as exc:
                delay = _retry_delay(exc, retry, attempt)
                if attempt >= retry.max_attempts or delay > retry.max_delay_seconds:
                    raise
                await self._sleep(delay)


def _separated(
    on_token: Callable[[str], Awaitable[None]], texts: list[str]
) -> Callable[[str], Awaitable[None]]:
    """``on_token`` for one model call: a call after one that said something starts with a
    blank line, as the joined text does."""
    first = True

    async def send(delta: str) -> None:
        nonlocal first
        if first and texts:
            delta = "\n\n" + delta
        first = False
        await on_token(delta)

    return send


def _chat_stop(request: ChatRequest, rounds: int, output: int, spent: int) -> str | None:
    """Why the turn may run no more tools, if it may not."""
    if rounds >= request.max_tool_rounds:
        return f"this turn has used its {request.max_tool_rounds} tool rounds"
    if output >= request.max_output_tokens:
        return f"this turn has written its {request.max_output_tokens} output tokens"
    if request.token_budget is not None and spent >= request.token_budget:
        return "the session's token budget is spent"
    return None


async def _chat_tools(request: ChatRequest, uses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run one round of plan-mode tool calls; every call gets a result block."""
    assert request.tools is not None
    results: list[dict[str, Any]] = []
    for use in uses:
        use_id, name = str(use["id"]), str(use["name"])
        arguments = conv.tool_input(use)
        if request.on_tool_start is not None:
            await request.on_tool_start(use_id, name, arguments)
        started = time.monotonic()
        outcome = await request.tools.call(name, arguments)
        if request.on_tool_end is not None:
            await request.on_tool_end(
                use_id, name, outcome, int((time.monotonic() - started) * 1000)
            )
        results.append(conv.tool_result(use_id, outcome.text, is_error=outcome.is_error))
    return results


_EPHEMERAL = {"type": "ephemeral"}


async def _interruptible(work: Awaitable[T], steering: SteeringChannel) -> T:
    """Await ``work`` unless the developer interrupts first; then cancel it and wait for it to
    unwind (a ``Bash`` call kills its process group as it does)."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(steering.wait_interrupt())
    try:
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    finally:
        waiter.cancel()
    if task in done:
        return task.result()
    steering.acknowledge_interrupt()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise _Interrupted


def _retry_delay(exc: ProviderError, retry: LlmRetryConfig, attempt: int) -> float:
    """How long to wait before try ``attempt + 1``: the provider's ``retry-after`` when it
    gave one, else the back-off."""
    if isinstance(exc, ProviderRateLimited) and exc.retry_after is not None:
        return exc.retry_after
    return _backoff(retry, attempt)


def _backoff(retry: LlmRetryConfig, attempt: int) -> float:
    """Doubling back-off with a little jitter, capped at ``max_delay_seconds``."""
    base = retry.initial_delay_seconds * (2 ** (attempt - 1))
    return float(min(retry.max_delay_seconds, base * (1 + random.uniform(0, 0.1))))


def _rate_limit_info(park: _Park) -> RateLimitInfo:
    return RateLimitInfo(
        provider=PROVIDER,
        kind="overloaded" if park.error.kind == "overloaded" else "rate-limit",
        resume_at=int((time.time() + park.resume_in) * 1000),
        retry_attempt=park.attempts,
        source="retry-after" if park.error.retry_after is not None else "backoff",
        last_error_message=park.error.message,
    )


async def _record_delivered(request: PhaseRequest, sent: list[DeveloperMessage], turn: int) -> None:
    events: list[tuple[str, dict[str, Any]]] = [
        (EventKind.MESSAGE_DELIVERED, {"messageId": m.message_id, "turn": turn})
        for m in sent
        if m.message_id is not None
    ]
    if events:
        context = request.context
        await context.store.append_events(context.job.id, events)


def _developer(texts: list[str]) -> str:
    return "\n\n".join(f"{conv.DEVELOPER_MESSAGE} {text}" for text in texts)


def _tool_params(specs: list[ToolSpec]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": spec.name, "description": spec.description, "input_schema": spec.input_schema}
        for spec in specs
    ]
    if params:
        params[-1] = {**params[-1], "cache_control": _EPHEMERAL}
    return params


def _summary(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _SUMMARY_CHARS else text[:_SUMMARY_CHARS] + "…"


def _clip(value: Any) -> Any:
    """Tool input for the event log: long strings cut (a Write's content can be megabytes)."""
    if isinstance(value, str):
        return value if len(value) <= _EVENT_VALUE_CHARS else value[:_EVENT_VALUE_CHARS] + "…"
    if isinstance(value, dict):
        return {k: _clip(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clip(v) for v in value]
    return value
