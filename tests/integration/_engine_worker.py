"""A runner process for the crash test (run as ``python -m``): it runs a job into the middle of
its ``build`` phase, records a PR there, prints ``mid-build`` and hangs until it is killed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from engine.phase import PhaseRequest
from engine.runtime import Engine
from state import JobInput, PrMapping
from tests.support.engine import ScriptedExecutor


async def build(request: PhaseRequest) -> None:
    job = request.context.job
    job.pr_mappings.append(PrMapping(pr_id=1, work_item="a", repo_slug="acme/svc"))
    job.current_work_item = "a"
    await request.context.save(durable=True)
    print("mid-build", flush=True)
    await asyncio.Event().wait()


async def main() -> None:
    executor = ScriptedExecutor(
        {"spec": [[("set_work_items", {"workItems": ["a"]})]], "build": [build]}
    )
    engine = Engine(Path(os.environ["CORO_HOME"]), executors=executor.registry(),
                    watch_config=False)  # fmt: skip
    await engine.start()
    await engine.create_job(
        JobInput(workflow_path="workflows/test/workflow.md", params={"repo": "acme/svc"}),
        job_id="crash-job",
    )
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
