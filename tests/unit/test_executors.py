"""The executor registry (entry points, loaded lazily) and phase → provider/model assignment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from engine.config import LocalConfig
from engine.errors import CoroError
from engine.executors import ExecutorNotFound, ExecutorRegistry, assign
from engine.workflow import parse_workflow
from state import Job
from state.models import PhaseModelOverride

WORKFLOW = parse_workflow(
    """---
phases:
  - name: plan
    agent: agents/planner.md
    tier: planning
  - name: code
    agent: agents/coder.md
    tier: coding
    provider: other
  - name: pinned
    agent: agents/coder.md
    model: claude-special-1
  - name: aliased
    agent: agents/coder.md
    model: mini
---
""",
    path="workflows/t/workflow.md",
)


def test_tier_resolves_through_the_aliases_and_the_default_provider() -> None:
    config = LocalConfig.model_validate({"llm": {"defaultProvider": "anthropic"}})
    got = assign(Job(id="j"), WORKFLOW.phase("plan"), config)
    assert (got.provider, got.model) == ("anthropic", config.llm.aliases["planning"].model)
    assert got.source == "tier planning"


def test_a_phase_provider_and_an_alias_provider() -> None:
    config = LocalConfig.model_validate(
        {"llm": {"aliases": {"mini": {"provider": "cheap", "model": "tiny-1"}}}}
    )
    assert assign(Job(id="j"), WORKFLOW.phase("code"), config).provider == "other"
    aliased = assign(Job(id="j"), WORKFLOW.phase("aliased"), config)
    assert (aliased.provider, aliased.model) == ("cheap", "tiny-1")
    pinned = assign(Job(id="j"), WORKFLOW.phase("pinned"), config)
    assert (pinned.provider, pinned.model) == ("anthropic", "claude-special-1")


def test_a_per_job_override_wins() -> None:
    job = Job(id="j", phase_model_overrides={"plan": PhaseModelOverride(model="coding")})
    got = assign(job, WORKFLOW.phase("plan"), LocalConfig())
    assert got.model == LocalConfig().llm.aliases["coding"].model and got.source == "override"


def test_an_unknown_tier_names_the_defined_aliases() -> None:
    config = LocalConfig()
    config.llm.aliases.pop("planning")
    with pytest.raises(CoroError, match=r"no such alias.*coding"):
        assign(Job(id="j"), WORKFLOW.phase("plan"), config)


def test_a_missing_provider_says_what_is_installed() -> None:
    registry = ExecutorRegistry(discover=False)
    registry.register("test", lambda config: object())  # type: ignore[arg-type,return-value]
    with pytest.raises(ExecutorNotFound, match=r"'anthropic'.*installed: test"):
        registry.executor("anthropic", LocalConfig())


def test_entry_point_plugins_are_found_without_being_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "coro_fake_executor.py").write_text(
        "class Fake:\n"
        "    provider_id = 'fake'\n"
        "    async def execute_phase(self, request):\n"
        "        raise NotImplementedError\n"
        "def create(config):\n"
        "    return Fake()\n"
    )
    dist = tmp_path / "coro_fake_executor-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: coro-fake-executor\n"
                                   "Version: 1.0\n")  # fmt: skip
    (dist / "entry_points.txt").write_text("[coro.executors]\nfake = coro_fake_executor:create\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = ExecutorRegistry()
    assert "fake" in registry.providers
    assert "coro_fake_executor" not in sys.modules
    executor = registry.executor("fake", LocalConfig())
    assert executor.provider_id == "fake"
    assert registry.executor("fake", LocalConfig()) is executor
    assert "coro_fake_executor" in sys.modules
