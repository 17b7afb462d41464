"""The TUI's one way to reach a runner: :class:`EngineClient`, in this process or remote."""

from coro_tui.client._protocol import (
    ClientError,
    EngineClient,
    MessageMode,
    RunnerInfo,
    WorkflowSummary,
)

__all__ = ["ClientError", "EngineClient", "MessageMode", "RunnerInfo", "WorkflowSummary"]
