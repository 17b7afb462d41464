"""Regenerate the README's pictures of the TUI from the real app: ``docs/img/tui*.svg``.

::

    .venv/bin/python scripts/screenshot.py            # writes docs/img/tui.svg and tui-job.svg
    .venv/bin/python scripts/screenshot.py --out DIR  # somewhere else

A real :class:`~engine.runtime.Engine` runs in a temporary ``CORO_HOME`` on the bundled ``job``
workflow, with a stand-in executor that plays the model from a short script per job (the
domain tools it calls are the real ones). Four jobs end up in four states — one coding, one
waiting at an approval checkpoint, one complete, one escalated — and the app, over a
:class:`~coro_tui.client.LocalClient`, is photographed on the runs screen and on the running
job's screen with Textual's ``save_screenshot``. Ages and times come from the clock, so each run
differs a little from the last; nothing else does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make the checkout importable
    sys.path.insert(0, str(ROOT))

from engine.config import LocalConfig, save_config  # noqa: E402
from engine.executors import ExecutorRegistry  # noqa: E402
from engine.phase import PhaseRequest, PhaseResult  # noqa: E402
from state import Job, JobInput, JobStatus, PhaseUsage  # noqa: E402

SIZE = (120, 22)
"""The terminal the pictures are taken in, columns by rows."""
WORKFLOW = "workflows/job/workflow.md"
RUNNING_JOB = "api-rate-limit"

Call = tuple[str, dict[str, Any]]


@dataclass
class Visit:
    """What the stand-in model does in one phase: domain tool calls, then maybe wait forever."""

    calls: list[Call] = field(default_factory=list)
    hang: bool = False
    input_tokens: int = 18_000
    output_tokens: int = 2_400


SCRIPTS: dict[str, dict[str, Visit]] = {
    RUNNING_JOB: {
        "spec-writing": Visit([("log", {"message": "spec: 429 with Retry-After per API key"})]),
        "planning": Visit(
            [
                ("set_work_items", {"workItems": ["token-bucket", "middleware", "docs"]}),
                ("log", {"message": "plan: three work items, one PR each"}),
            ],
            input_tokens=42_000,
        ),
        "coding": Visit(
            [
                ("update_work_item", {"name": "token-bucket", "status": "complete"}),
                ("update_work_item", {"name": "middleware", "status": "in-progress"}),
                ("log", {"message": "token-bucket merged; starting the middleware"}),
                ("log", {"message": "running pytest -q tests/test_rate_limit.py"}),
            ],
            hang=True,
        ),
    },
    "billing-retries": {
        "spec-writing": Visit([("log", {"message": "spec written: retry failed deliveries"})]),
    },
    "docs-install-steps": {
        "spec-writing": Visit([("log", {"message": "spec: two wrong commands in INSTALL.md"})]),
        "planning": Visit([("log", {"message": "one change, no work items"})]),
        "coding": Visit([("log", {"message": "fixed both commands"})], output_tokens=900),
        "review": Visit([("log", {"message": "reviewed"})]),
        "evaluation": Visit([("log", {"message": "done: the steps work on a fresh machine"})]),
    },
    "search-reindex": {
        "spec-writing": Visit(
            [("escalate", {"reason": "no credentials for the search cluster; add them"})]
        ),
    },
}

#: The jobs, in the order they are created: (id, repository, brief, interactive).
JOBS = [
    ("docs-install-steps", "acme/docs", "Fix the install steps", False),
    ("search-reindex", "acme/search", "Reindex nightly", False),
    ("billing-retries", "acme/billing", "Retry failed webhooks", True),
    (RUNNING_JOB, "acme/api", "Add rate limiting to /api/users", False),
]


@dataclass
class StandInModel:
    """A :class:`~engine.phase.PhaseExecutor` that plays each job's script in :data:`SCRIPTS`."""

    provider_id: str = "screenshot"
    hanging: asyncio.Event = field(default_factory=asyncio.Event)

    async def execute_phase(self, request: PhaseRequest) -> PhaseResult:
        phase = request.phase.name
        visit = SCRIPTS.get(request.context.job.id, {}).get(phase, Visit())
        for name, args in visit.calls:
            await request.tools.call(f"mcp__coro__{name}", args)
            request.steering.touch()
            if request.signals.ends_phase:
                break
        usage = PhaseUsage(
            phase=phase,
            input_tokens=visit.input_tokens,
            output_tokens=visit.output_tokens,
            cost_usd=(visit.input_tokens * 3 + visit.output_tokens * 15) / 1_000_000,
            num_turns=3,
            model=request.model,
        )
        if visit.hang:
            self.hanging.set()
            await asyncio.Event().wait()  # runs until the engine stops and cancels it
        if request.signals.ends_phase:
            return PhaseResult(stop_reason="signal", usage=usage)
        return PhaseResult(stop_reason="end_turn", usage=usage)


async def _wait(engine: Any, job_id: str, done: Callable[[Job], bool]) -> None:
    async with asyncio.timeout(60):
        await engine.wait_until(job_id, done)


async def take(out: Path) -> list[Path]:
    """Run the engine, seed the jobs, photograph the app; the SVG files written."""
    from engine.runner import CHECKPOINT_PREFIX
    from engine.runtime import Engine

    with tempfile.TemporaryDirectory(prefix="coro-screenshot-") as tmp:
        home = Path(tmp) / "home"
        config = {"llm": {"defaultProvider": "screenshot"}, "jobs": {"maxConcurrent": 4}}
        save_config(home / "config.json", LocalConfig.model_validate(config))
        model = StandInModel()
        registry = ExecutorRegistry(discover=False)
        registry.register("screenshot", model)
        engine = Engine(home, executors=registry, watch_config=False, poll_prs=False)
        await engine.start()
        try:
            waits: dict[str, Callable[[Job], bool]] = {
                "docs-install-steps": lambda j: j.status is JobStatus.COMPLETE,
                "search-reindex": lambda j: j.status is JobStatus.ESCALATED,
                "billing-retries": lambda j: (j.awaiting_event or "").startswith(CHECKPOINT_PREFIX),
                RUNNING_JOB: lambda j: j.status is JobStatus.CODING,
            }
            for job_id, repo, brief, interactive in JOBS:
                spec = JobInput(
                    workflow_path=WORKFLOW,
                    interactive=interactive,
                    params={"repo": repo, "description": brief},
                )
                await engine.create_job(spec, job_id=job_id)
                await _wait(engine, job_id, waits[job_id])
            async with asyncio.timeout(60):
                await model.hanging.wait()
            return await _photograph(engine, out)
        finally:
            await engine.stop(grace=0)


async def _photograph(engine: Any, out: Path) -> list[Path]:
    """The runs screen, then the running job's screen, as SVG files in ``out``."""
    from textual.widgets import DataTable

    from coro_tui._startup import TuiPrefs
    from coro_tui.app import CoroApp
    from coro_tui.client import LocalClient
    from coro_tui.screens import JobScreen, RunsScreen

    client = LocalClient(engine)
    app = CoroApp(client=client, prefs=TuiPrefs(notify=False))
    written: list[Path] = []
    try:
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
            await _settle(pilot)
            written.append(_save(app, out, "tui.svg"))
            app.screen.query_one("#runs-table", DataTable).move_cursor(
                row=_row_of(app, RUNNING_JOB)
            )
            await pilot.press("enter")
            await _until(pilot, lambda: isinstance(app.screen, JobScreen))
            await _settle(pilot)
            written.append(_save(app, out, "tui-job.svg"))
    finally:
        await client.aclose()
    return written


def _row_of(app: Any, job_id: str) -> int:
    table = app.screen.query_one("#runs-table")
    keys = [str(row.key.value) for row in table.ordered_rows]
    return keys.index(job_id)


async def _until(pilot: Any, predicate: Callable[[], object]) -> None:
    async with asyncio.timeout(30):
        while not predicate():
            await pilot.pause(0.05)


async def _settle(pilot: Any) -> None:
    """Give live updates (the log's backlog, the activity line) a moment to land."""
    await pilot.pause(1.0)
    await pilot.wait_for_scheduled_animations()


def _save(app: Any, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = Path(app.save_screenshot(filename=name, path=str(out)))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="where to write")
    args = parser.parse_args(argv)
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    asyncio.run(take(args.out.resolve()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
