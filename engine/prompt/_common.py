"""Small pieces every prompt module shares: tool names, secret masking, ages, markdown cells."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from engine.config import is_secret_key
from engine.workflow import DOMAIN_TOOL_PREFIX
from state.models import Job

__all__ = [
    "MASK",
    "as_utc",
    "format_age",
    "format_time",
    "is_secret_key",
    "mask_secrets",
    "md_cell",
    "redact_token_values",
    "repo_checkout_dir",
    "tool",
]

MASK = "********"
"""What a secret looks like in a prompt."""

_URL_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")
# Well-known token formats, masked wherever they appear in a value.
_TOKEN_VALUE = re.compile(
    r"\b(?:gh[opusr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|sk-ant-[\w-]{20,}"
    r"|glpat-[\w-]{20,}|xox[abprs]-[\w-]{10,})"
)


def tool(name: str) -> str:
    """A domain tool as the model sees it, ``mcp__coro__<name>``, in backticks."""
    return f"`{DOMAIN_TOOL_PREFIX}{name}`"


def redact_token_values(text: str) -> str:
    """``text`` with URL credentials and well-known token formats replaced by :data:`MASK`."""
    return _TOKEN_VALUE.sub(MASK, _URL_USERINFO.sub(f"{MASK}@", text))


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` safe to show a model: secret-looking keys masked, keys sorted.

    Mappings come back as dicts with sorted keys (so the JSON is the same every time), lists as
    lists; strings lose URL credentials and well-known token formats. An empty secret (``None``
    or ``""``) is left as it is: it reveals nothing and tells the agent the value is unset.
    """
    if isinstance(value, Mapping):
        masked: dict[str, Any] = {}
        for key in sorted(value, key=str):
            item = value[key]
            secret = is_secret_key(str(key)) and item not in (None, "")
            masked[str(key)] = MASK if secret else mask_secrets(item)
        return masked
    if isinstance(value, list | tuple):
        return [mask_secrets(item) for item in value]
    if isinstance(value, str):
        return redact_token_values(value)
    return value


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def format_age(then: datetime, now: datetime) -> str:
    """How long ago ``then`` was, compactly: ``<1m``, ``42m``, ``3h`` (under 48 hours), ``2d``.

    Naive datetimes are taken as UTC; a moment in the future counts as now.
    """
    minutes = int(max(0.0, (as_utc(now) - as_utc(then)).total_seconds()) // 60)
    if minutes < 1:
        return "<1m"
    if minutes < 60:
        return f"{minutes}m"
    hours = minutes // 60
    return f"{hours}h" if hours < 48 else f"{hours // 24}d"


def format_time(moment: datetime) -> str:
    """A timestamp as a model reads it best: ISO 8601 in UTC, to the second."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def md_cell(text: str) -> str:
    """Text safe inside one markdown table cell (no pipes, no line breaks)."""
    return " ".join(text.split()).replace("|", "\\|")


def repo_checkout_dir(job: Job) -> str | None:
    """The repository checkout ``scm_clone_repo`` recorded, relative to the job root if known.

    ``params.repoCheckoutDir`` (relative) wins over ``params.repoCheckoutAbsDir``.
    """
    for key in ("repoCheckoutDir", "repoCheckoutAbsDir"):
        value = job.params.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
