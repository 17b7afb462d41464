"""The TUI's one way to reach a runner: :class:`EngineClient`, in this process or remote.

:class:`LocalClient` and :class:`RemoteClient` are imported on first use: they bring in the
engine and httpx, which must not load before the TUI's first frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coro_tui.client._protocol import (
    ClientError,
    EngineClient,
    MessageMode,
    PlanEvent,
    RunnerInfo,
    WorkflowSummary,
)

if TYPE_CHECKING:
    from coro_tui.client._local import LocalClient
    from coro_tui.client._remote import RemoteClient

__all__ = [
    "ClientError",
    "EngineClient",
    "LocalClient",
    "MessageMode",
    "PlanEvent",
    "RemoteClient",
    "RunnerInfo",
    "WorkflowSummary",
]


def __getattr__(name: str) -> Any:
    if name == "LocalClient":
        from coro_tui.client._local import LocalClient

        return LocalClient
    if name == "RemoteClient":
        from coro_tui.client._remote import RemoteClient

        return RemoteClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
