"""Errors raised by the engine.

Every error the engine raises on purpose derives from :class:`CoroError`, so a caller (the CLI,
the TUI, the HTTP shim) can catch one type and show ``title`` and ``message`` to the user::

    CoroError
    ├── ConfigError            config.json is unreadable, malformed or invalid
    │   └── ConfigValidationError   invalid values; ``issues`` names each field (engine.config)
    ├── WorkflowError          a workflow file is malformed or names something that does not exist
    └── IntelligenceError      an intelligence layer cannot be read or tries to escape its root
        └── LayerEscapeError   a symlink or ``..`` path would leave the layer

Third-party errors are translated at the boundary and chained with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CoroError",
    "IntelligenceError",
    "LayerEscapeError",
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
