"""Errors raised by the engine.

Every error the engine raises on purpose derives from :class:`CoroError`, so a caller (the CLI,
the TUI, the HTTP shim) can catch one type and show ``title`` and ``message`` to the user::

    CoroError
    ├── ConfigError            config.json is unreadable, malformed or invalid
    │   └── ConfigValidationError   invalid values; ``issues`` names each field (engine.config)
    ├── WorkflowError          a workflow file is malformed or names something that does not exist
    ├── IntelligenceError      an intelligence layer cannot be read or tries to escape its root
    │   └── LayerEscapeError   a symlink or ``..`` path would leave the layer
    └── ProviderError          a model provider refused or failed a request
        ├── ProviderRateLimited    429 / 529: retry after ``retry_after`` seconds, or park
        ├── ProviderUnavailable    connection lost, stream stalled, 5xx: worth retrying
        └── ProviderRefused        auth, permission, spend limit, bad request: a person must act

Third-party errors are translated at the boundary and chained with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CoroError",
    "IntelligenceError",
    "LayerEscapeError",
    "ProviderError",
    "ProviderNotConfigured",
    "ProviderRateLimited",
    "ProviderRefused",
    "ProviderUnavailable",
    "WorkflowError",
]


class CoroError(Exception):
    """Root of every error coro raises on purpose.

    Attributes:
        title: a short heading for a toast or the first line of a CLI error.
        message: the full, user-facing explanation (what went wrong and what to do).
    """

    title = "coro error"

    def __init__(self, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title


class ConfigError(CoroError):
    """The configuration file cannot be read, parsed or validated."""

    title = "Invalid configuration"


class WorkflowError(CoroError):
    """A workflow file is malformed, or refers to a phase, agent or tool that does not exist."""

    title = "Invalid workflow"


class IntelligenceError(CoroError):
    """An intelligence layer cannot be read or materialised."""

    title = "Intelligence layer problem"


class LayerEscapeError(IntelligenceError):
    """A path in a layer (a symlink, or a name with ``..``) would escape the layer's root."""

    title = "Path escapes its layer"


class ProviderError(CoroError):
    """A model provider refused or failed a request. ``provider`` is its id (``anthropic``)."""

    title = "Model provider error"

    def __init__(self, message: str, *, provider: str, status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class ProviderRateLimited(ProviderError):
    """The provider is limiting requests (429) or is overloaded (529).

    Attributes:
        retry_after: seconds the provider asked us to wait, when it said.
        kind: ``rate-limit`` or ``overloaded``, as a parked job records it.
    """

    title = "Rate limited"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        retry_after: float | None = None,
        kind: str = "rate-limit",
    ) -> None:
        super().__init__(message, provider=provider, status=status)
        self.retry_after = retry_after
        self.kind = kind


class ProviderUnavailable(ProviderError):
    """The request did not complete: connection lost, stream stalled, or a 5xx answer."""

    title = "Model provider unavailable"


class ProviderRefused(ProviderError):
    """The provider refused the request for a reason retrying cannot fix: bad credentials, no
    permission, a spend limit, or a malformed request. The message is the provider's own."""


class ProviderNotConfigured(ProviderRefused):
    """No request was made: the provider has no credentials in the config or environment."""

    title = "Model provider not configured"

    title = "Model provider refused the request"
