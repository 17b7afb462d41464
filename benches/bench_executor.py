"""Benchmark: the Anthropic executor's own cost per tool round trip, against the scripted model
endpoint with zero delay, and the cache breakpoints of a long phase.

Figures (from the executor issue):
- executor overhead per tool round trip: the median time of one turn of a real phase (stream
  the answer, record usage, run a no-op tool, build the next request) minus the median time of
  the same requests posted by a bare ``httpx2`` client to a fresh endpoint, under 5 ms;
- a 20-turn phase's later requests all carry cache breakpoints (tools, system prompt, the
  conversation) and read from the endpoint's emulated cache.

Run: ``.venv/bin/python benches/bench_executor.py`` (or ``benches/run.py`` for every benchmark).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benches._harness import Figure, median
from engine.config import LocalConfig
from engine.model_server import ModelScript, ScriptedModelServer
from engine.phase import (
    PhaseRequest,
    PhaseSignals,
    SteeringChannel,
    ToolContext,
    ToolOutcome,
    ToolSpec,
)
from engine.providers.anthropic import AnthropicExecutor
from engine.workflow import parse_workflow
from state import InMemoryStateBackend, Job

TURNS = 20
ROUNDS = 5
WORKFLOW = """---
display_name: Bench
description: one long phase
phases:
  - name: work
    agent: agents/work.md
    tier: coding
---
Work.
"""


def script() -> ModelScript:
    steps: list[dict[str, Any]] = [
        {"text": f"Step {i}: checking the next file.",
         "tool_calls": [{"name": "Probe", "input": {"n": i, "path": f"src/module_{i}.py"}}]}
        for i in range(TURNS - 1)
    ]  # fmt: skip
    steps.append({"text": "Done."})
    return ModelScript.model_validate({"phases": {"work": steps}})


class ProbeTools:
    """One no-op tool that notes when each call arrives."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []

    def specs(self) -> list[ToolSpec]:
        schema = {"type": "object", "properties": {"n": {"type": "integer"},
                                                   "path": {"type": "string"}}}  # fmt: skip
        return [ToolSpec("Probe", "Look at a file.", schema)]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        self.arrivals.append(time.perf_counter())
        return ToolOutcome(f"{arguments.get('path')}: 120 lines, nothing to change")


async def run_phase(root: Path, base_url: str, job_id: str) -> tuple[list[float], Any]:
    async with InMemoryStateBackend() as store:
        workflow = parse_workflow(WORKFLOW, path="workflows/bench/workflow.md")
        phase = workflow.phase("work")
        job = await store.create_job(Job(id=job_id, workflow_path=workflow.path, phase="work"))
        config = LocalConfig.model_validate({"llm": {"apiKey": "sk-bench", "baseUrl": base_url}})
        signals = PhaseSignals()
        context = ToolContext(job=job, workflow=workflow, phase=phase, signals=signals,
                              store=store, config=config, job_dir=root, intelligence_dir=root,
                              proposals_dir=root, tenant_id="bench")  # fmt: skip
        tools = ProbeTools()
        system = (
            "You are the bench agent.\n\n"
            + "Follow the workflow carefully. " * 200
            + f'\n\n# Current Job\n\n```json\n{{"jobId": "{job_id}", "phase": "work"}}\n```'
        )
        request = PhaseRequest(
            job=job, workflow=workflow, phase=phase, provider="anthropic",
            model="claude-sonnet-4-6", system_prompt=system, kickoff="Start the phase.",
            cwd=root, intelligence_dir=root, tools=tools, signals=signals, context=context,
            steering=SteeringChannel(),
        )  # fmt: skip
        executor = AnthropicExecutor(env={})
        try:
            result = await executor.execute_phase(request)
        finally:
            await executor.aclose()
        assert result.stop_reason == "end_turn", result.error
        calls = await store.read_events(job_id, kinds=["model_call"], limit=1_000)
        return tools.arrivals, [e.data for e in calls]


async def bare_requests(base_url: str, bodies: list[dict[str, Any]]) -> list[float]:
    """Post the executor's recorded bodies with a bare streaming client; time each."""
    import httpx2

    times = []
    headers = {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"}
    async with httpx2.AsyncClient(base_url=base_url, headers=headers) as client:
        for body in bodies:
            started = time.perf_counter()
            async with client.stream("POST", "/v1/messages", json=body) as response:
                async for _ in response.aiter_bytes():
                    pass
            times.append(time.perf_counter() - started)
    return times


async def main() -> list[Figure]:
    turn_ms: list[float] = []
    bare_ms: list[float] = []
    breakpoints_ok = True
    reads_ok = True
    with tempfile.TemporaryDirectory(prefix="coro-bench-executor-") as tmp:
        root = Path(tmp)
        for n in range(ROUNDS + 1):  # the first round warms up imports and connections
            async with ScriptedModelServer(script()) as server:
                arrivals, calls = await run_phase(root, server.base_url, f"bench-{n}")
                bodies = [r.body for r in server.requests]
            async with ScriptedModelServer(script()) as fresh:
                bare = await bare_requests(fresh.base_url, bodies)
            if n == 0:
                continue
            turn_ms += [(b - a) * 1000 for a, b in itertools.pairwise(arrivals)]
            bare_ms += [t * 1000 for t in bare[1:-1]]
            for body in bodies[1:]:
                breakpoints_ok &= body["tools"][-1].get("cache_control") is not None
                breakpoints_ok &= body["system"][-1].get("cache_control") is not None
                breakpoints_ok &= "cache_control" in body["messages"][-1]["content"][-1]
            reads_ok &= all(c["cacheReadInputTokens"] > 0 for c in calls[1:])
    overhead = median(turn_ms) - median(bare_ms)
    return [
        Figure("executor overhead per tool round trip (median, beyond the endpoint)", overhead,
               "ms", "< 5 ms", overhead < 5, baseline=median(bare_ms),
               note=f"turn {median(turn_ms):.2f} ms vs bare request {median(bare_ms):.2f} ms; "
                    f"{len(turn_ms)} turns"),
        Figure(f"{TURNS}-turn phase: later requests carry breakpoints and read the cache",
               1.0 if breakpoints_ok and reads_ok else 0.0, "", "all", breakpoints_ok and reads_ok,
               note=f"{TURNS - 1} requests x {ROUNDS} runs checked from the endpoint's record"),
    ]  # fmt: skip


if __name__ == "__main__":
    for figure in asyncio.run(main()):
        print(figure.line())
