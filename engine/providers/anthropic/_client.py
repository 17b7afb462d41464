"""The Anthropic SDK at arm's length: client creation, one streamed turn, error translation.

``anthropic`` and ``httpx2`` are imported inside these functions, on the first model call.
Every SDK error leaves this module as an :class:`~engine.errors.ProviderError` chained from it.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.errors import (
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderRefused,
    ProviderUnavailable,
)

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

    from engine.config import LlmConfig

__all__ = [
    "PROVIDER",
    "ClientKey",
    "Turn",
    "client_key",
    "deprecation",
    "make_client",
    "stream_turn",
]

PROVIDER = "anthropic"


@dataclass(frozen=True, slots=True)
class ClientKey:
    """What a client is built from; a new key (the config changed) means a new client."""

    api_key: str | None
    auth_token: str | None
    base_url: str | None
    stall_seconds: float


def client_key(llm: LlmConfig, env: Mapping[str, str] | None = None) -> ClientKey:
    """Credentials and endpoint: the config first, then ``ANTHROPIC_*`` variables.

    Raises:
        ProviderNotConfigured: there is neither an API key nor an auth token.
    """
    env = os.environ if env is None else env
    api_key = llm.api_key or env.get("ANTHROPIC_API_KEY") or None
    auth_token = llm.auth_token or env.get("ANTHROPIC_AUTH_TOKEN") or None
    if api_key is None and auth_token is None:
        raise ProviderNotConfigured(
            "no Anthropic credentials: set ANTHROPIC_API_KEY, or llm.apiKey (or llm.authToken "
            "for an OAuth token) in config.json",
            provider=PROVIDER,
        )
    base_url = llm.base_url or env.get("ANTHROPIC_BASE_URL") or None
    return ClientKey(api_key, auth_token, base_url, llm.retry.stall_seconds)


def make_client(key: ClientKey, *, transport: Any = None) -> AsyncAnthropic:
    """A client with the SDK's own retries off: the executor retries, so it can log each try,
    honour ``retry-after`` and park a job rather than sleep for minutes.

    Args:
        key: credentials and endpoint.
        transport: an ``httpx2`` transport to use instead of the network (tests).
    """
    import anthropic
    import httpx2

    timeout = httpx2.Timeout(connect=30.0, read=key.stall_seconds, write=60.0, pool=60.0)
    http_client = (
        httpx2.AsyncClient(transport=transport, timeout=timeout) if transport is not None else None
    )
    return anthropic.AsyncAnthropic(
        api_key=key.api_key,
        auth_token=key.auth_token,
        base_url=key.base_url,
        max_retries=0,
        timeout=timeout,
        http_client=http_client,
    )


def deprecation(model: str) -> str | None:
    """When ``model`` reaches end-of-life, as the SDK knows it (``None``: not deprecated)."""
    try:
        from anthropic.resources.messages.messages import DEPRECATED_MODELS
    except ImportError:  # the SDK moved it; not worth failing a phase over
        return None
    when = DEPRECATED_MODELS.get(model)
    return str(when) if when else None


@dataclass(slots=True)
class Turn:
    """One answer of the model: its content blocks (API dicts), why it stopped, its usage."""

    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: Any
    model: str
    message_id: str
    duration_ms: int


async def stream_turn(
    client: AsyncAnthropic,
    params: dict[str, Any],
    *,
    stall_seconds: float,
    on_event: Callable[[], None] | None = None,
    on_text: Callable[[str], Awaitable[None]] | None = None,
    on_thinking: Callable[[str], Awaitable[None]] | None = None,
) -> Turn:
    """Stream one Messages API call to its end.

    A stream that sends nothing for ``stall_seconds`` is abandoned (``ProviderUnavailable``).

    Args:
        client: the SDK client.
        params: the ``messages.stream`` arguments.
        stall_seconds: longest silence allowed between two stream events.
        on_event: called on every event (the watchdog's sign of life).
        on_text: awaited with each text delta (plan mode's live tokens).
        on_thinking: awaited with each thinking delta.
    """
    import anthropic
    import httpx2

    started = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(stall_seconds) as deadline:
            # The SDK warns about a deprecated model with warnings.warn, which would print
            # over the TUI; the executor reports it in the job's log instead (deprecation()).
            # stream() is synchronous, so the filter cannot leak into another task.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                manager = client.messages.stream(**params)
            async with manager as stream:
                async for event in stream:
                    deadline.reschedule(loop.time() + stall_seconds)
                    if on_event is not None:
                        on_event()
                    if on_text is not None and event.type == "text":
                        await on_text(event.text)
                    elif on_thinking is not None and event.type == "thinking":
                        await on_thinking(event.thinking)
                message = await stream.get_final_message()
    except TimeoutError as exc:
        raise ProviderUnavailable(
            f"the model stream stalled: no data for {stall_seconds:g} s", provider=PROVIDER
        ) from exc
    except anthropic.APIStatusError as exc:
        raise translate_status(exc) from exc
    except anthropic.APIConnectionError as exc:
        raise ProviderUnavailable(
            f"could not reach the model API: {_connection_reason(exc)}", provider=PROVIDER
        ) from exc
    except (httpx2.TransportError, anthropic.APIResponseValidationError) as exc:
        raise ProviderUnavailable(
            f"the model stream broke off: {type(exc).__name__}: {exc}", provider=PROVIDER
        ) from exc
    return Turn(
        content=[block.model_dump(mode="json", exclude_none=True) for block in message.content],
        stop_reason=message.stop_reason,
        usage=message.usage,
        model=message.model,
        message_id=message.id,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def _connection_reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    return detail or type(exc).__name__


def _error_type_and_message(exc: Any) -> tuple[str | None, str]:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            kind = error.get("type")
            message = error.get("message")
            return (str(kind) if kind else None), str(message or exc.message)
    return None, str(getattr(exc, "message", exc))


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), when present."""
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:  # an HTTP date
        return max(0.0, email.utils.parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def translate_status(exc: Any) -> ProviderError:
    """An SDK ``APIStatusError`` (also one raised by an ``error`` event mid-stream) as ours."""
    status = int(getattr(exc, "status_code", 0) or 0)
    kind, message = _error_type_and_message(exc)
    response = getattr(exc, "response", None)
    headers = response.headers if response is not None else None
    where = f"{kind or 'HTTP ' + str(status)}"
    if kind == "rate_limit_error" or status == 429:
        return ProviderRateLimited(
            f"rate limited by Anthropic ({where}): {message}", provider=PROVIDER,
            status=status, retry_after=retry_after_seconds(headers), kind="rate-limit",
        )  # fmt: skip
    if kind == "overloaded_error" or status == 529:
        return ProviderRateLimited(
            f"Anthropic is overloaded ({where}): {message}", provider=PROVIDER,
            status=status, retry_after=retry_after_seconds(headers), kind="overloaded",
        )  # fmt: skip
    if kind in ("api_error", "timeout_error") or status >= 500 or status in (408, 409):
        return ProviderUnavailable(
            f"Anthropic failed the request ({where}): {message}", provider=PROVIDER, status=status
        )
    hint = {
        "authentication_error": " Check ANTHROPIC_API_KEY or llm.apiKey / llm.authToken.",
        "permission_error": " The key is not allowed to use this model or feature.",
        "billing_error": " Check the account's billing and spend limits.",
        "not_found_error": " Check the model id in llm.aliases.",
    }.get(kind or "", "")
    if status == 401:
        hint = hint or " Check ANTHROPIC_API_KEY or llm.apiKey / llm.authToken."
    return ProviderRefused(
        f"Anthropic refused the request ({where}): {message}.{hint}".replace("..", "."),
        provider=PROVIDER,
        status=status,
    )
