"""config.json edited while the engine runs: valid edits apply, invalid ones are refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anyio
import pytest

from engine.runtime import Engine
from tests.support.engine import ScriptedExecutor, write_config, write_intelligence


async def test_live_config_reload(coro_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_intelligence(coro_home)
    write_config(coro_home, jobs={"maxConcurrent": 3})
    engine = Engine(coro_home, executors=ScriptedExecutor().registry())
    outcomes: list[bool] = []
    changed = anyio.Event()

    def listener(applied: bool) -> None:
        nonlocal changed
        outcomes.append(applied)
        changed.set()

    engine.config_listeners.append(listener)
    await engine.start()
    try:
        assert engine.dispatcher is not None and engine.dispatcher.max_concurrent == 3
        config_file = coro_home / "config.json"
        with caplog.at_level(logging.WARNING), anyio.fail_after(10):
            config_file.write_text(json.dumps({"jobs": {"maxConcurrent": "lots"}}))
            await changed.wait()
        assert outcomes[-1] is False
        assert engine.config.jobs.max_concurrent == 3  # the last good config is kept
        assert engine.config_error is not None and "jobs.maxConcurrent" in engine.config_error
        assert any("jobs.maxConcurrent" in r.getMessage() for r in caplog.records)
        assert "lots" in config_file.read_text()  # the bad file is not overwritten

        changed = anyio.Event()
        with anyio.fail_after(10):
            config_file.write_text(
                json.dumps({"llm": {"defaultProvider": "test"}, "jobs": {"maxConcurrent": 7}})
            )
            while not outcomes[-1]:
                await changed.wait()
                changed = anyio.Event()
        assert engine.config.jobs.max_concurrent == 7
        assert engine.dispatcher.max_concurrent == 7
        assert engine.config_error is None
    finally:
        await engine.stop(grace=1)
