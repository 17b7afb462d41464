"""What the hosted SCM plugins (GitHub, Bitbucket) share: retry waits, timestamps, signatures.

Each plugin keeps its own policy (how long to back off, how a wait it cannot parse is
treated); these are the mechanics both would otherwise write twice. Nothing here imports
``httpx2``.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import math
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "Json",
    "backoff",
    "parse_timestamp",
    "retry_after",
    "signature_matches",
    "webhook_signature",
]

Json = dict[str, Any]


def backoff(attempt: int, *, first: float = 1.0, cap: float = math.inf) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): ``first``, doubling, at most ``cap``."""
    return float(min(cap, first * 2**attempt))


def retry_after(value: str | None, *, http_date: bool = True) -> float | None:
    """Seconds from a ``Retry-After`` header, or ``None`` when it says nothing usable.

    Args:
        value: the header: a number of seconds or, with ``http_date``, an HTTP date.
        http_date: whether a date is understood; without it only seconds are.
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    if not http_date:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def parse_timestamp(value: object, *, strict: bool = False) -> datetime | None:
    """An aware datetime from an ISO 8601 string (one without an offset is UTC).

    Args:
        value: what the API answered; anything but a non-empty string is ``None``.
        strict: raise :class:`ValueError` for a malformed string instead of returning ``None``.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        if strict:
            raise
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def webhook_signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of body>``: what GitHub sends as ``X-Hub-Signature-256`` and
    Bitbucket as ``X-Hub-Signature``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(signature: str, secret: str, body: bytes) -> bool:
    """Whether ``signature`` (white space around it ignored) signs ``body`` with ``secret``,
    compared in constant time."""
    expected = webhook_signature(secret, body)
    return hmac.compare_digest(signature.strip().encode(), expected.encode())
