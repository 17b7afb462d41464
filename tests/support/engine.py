"""Test doubles for the engine: a scripted executor that uses the real domain tools.

The executor plays a model: for each phase it takes the next "visit" from its script, calls the
listed coro tools through the phase's real tool box (the in-process MCP client), and ends the
turn. Everything else — the runner, the state, the tools — is the real thing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import LocalConfig, save_config
from engine.executors import ExecutorRegistry
from engine.phase import PhaseRequest, PhaseResult
from state import PhaseUsage
from state.models import ConversationMessage, RateLimitInfo

WORKFLOW = """---
display_name: Test lane
description: A three-phase workflow the engine tests run.
phases:
  - name: spec
    agent: agents/spec.md
    tier: mini
  - name: build
    agent: agents/build.md
    tier: coding
    interactive_checkpoint: true
  - name: review
    agent: agents/review.md
    tier: mini
    status: reviewing
---
# Test lane

Write a spec, build it, review it.
"""

Call = tuple[str, dict[str, Any]]
#: A visit: tool calls to make, or a coroutine function that does anything with the request.
Visit = Sequence[Call] | Callable[[PhaseRequest], Awaitable[PhaseResult | None]]


def write_intelligence(home: Path, workflow: str = WORKFLOW) -> None:
    """A tenant layer in ``$CORO_HOME/intelligence`` holding the test workflow and agents."""
    root = home / "intelligence"
    (root / "workflows" / "test").mkdir(parents=True, exist_ok=True)
    (root / "workflows" / "test" / "workflow.md").write_text(workflow)
    (root / "agents").mkdir(exist_ok=True)
    for name in ("spec", "build", "review", "other"):
        (root / "agents" / f"{name}.md").write_text(f"# {name} agent\n\nDo the {name} work.\n")


def write_config(home: Path, **blocks: Any) -> LocalConfig:
    data: dict[str, Any] = {"llm": {"defaultProvider": "test"}}
    data.update(blocks)
    config = LocalConfig.model_validate(data)
    save_config(home / "config.json", config)
    return config


@dataclass
class ScriptedExecutor:
    """Plays a model from a per-phase script of visits."""

    script: dict[str, list[Visit]] = field(default_factory=dict)
    provider_id: str = "test"
    requests: list[PhaseRequest] = field(default_factory=list)
    outcomes: list[tuple[str, str, bool]] = field(default_factory=list)
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def execute_phase(self, request: PhaseRequest) -> PhaseResult:
        self.requests.append(request)
        self.entered.set()
        phase = request.phase.name
        visits = self.script.get(phase, [])
        visit: Visit = visits.pop(0) if visits else []
        conversation = [
            *request.resume_conversation,
            ConversationMessage(role="user", content=request.kickoff),
        ]
        result: PhaseResult | None = None
        if callable(visit):
            result = await visit(request)
        else:
            for name, args in visit:
                outcome = await request.tools.call(f"mcp__coro__{name}", args)
                self.outcomes.append((phase, name, outcome.is_error))
                request.steering.touch()
                if request.signals.ends_phase:
                    break
        conversation.append(ConversationMessage(role="assistant", content=f"{phase} done"))
        if result is not None:
            return result
        return PhaseResult(
            stop_reason="signal" if request.signals.ends_phase else "end_turn",
            usage=PhaseUsage(
                phase=phase, input_tokens=100, output_tokens=20, cost_usd=0.01, num_turns=1,
                model=request.model,
            ),
            conversation=conversation,
        )  # fmt: skip

    def registry(self) -> ExecutorRegistry:
        registry = ExecutorRegistry(discover=False)
        registry.register("test", self)
        return registry


def rate_limited(seconds: float) -> Callable[[PhaseRequest], Awaitable[PhaseResult]]:
    async def visit(request: PhaseRequest) -> PhaseResult:
        import time

        return PhaseResult(
            stop_reason="rate_limited",
            usage=PhaseUsage(phase=request.phase.name),
            rate_limit=RateLimitInfo(
                provider="test", kind="overloaded", resume_at=int((time.time() + seconds) * 1000)
            ),
        )

    return visit
