"""The executor registry: which ``PhaseExecutor`` runs a phase, and on which model.

Executors are found through the ``coro.executors`` entry-point group (name = provider id,
value = a factory ``(LocalConfig) -> PhaseExecutor``) without importing them: a plugin's module
is imported the first time a phase needs that provider. Tests and embedders may also register
an executor instance directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from engine.errors import CoroError

if TYPE_CHECKING:
    from engine.config import LocalConfig
    from engine.phase import PhaseExecutor
    from engine.workflow import PhaseConfig
    from state import Job

__all__ = [
    "ENTRY_POINT_GROUP",
    "ExecutorNotFound",
    "ExecutorRegistry",
    "PhaseAssignment",
    "assign",
    "model_for",
]

ENTRY_POINT_GROUP = "coro.executors"

log = logging.getLogger(__name__)

ExecutorFactory = Callable[["LocalConfig"], "PhaseExecutor"]


class ExecutorNotFound(CoroError):
    """No executor is installed for the provider a phase asks for."""

    title = "No executor for this provider"


@dataclass(frozen=True, slots=True)
class PhaseAssignment:
    """The provider and model a phase runs on, and where that choice came from."""

    provider: str
    model: str
    source: str  # "override", "phase model", "tier <name>" …


class ExecutorRegistry:
    """Executors by provider id; entry points are loaded on first use only."""

    def __init__(self, *, discover: bool = True) -> None:
        self._factories: dict[str, ExecutorFactory] = {}
        self._instances: dict[str, PhaseExecutor] = {}
        self._entry_points: dict[str, EntryPoint] = {}
        if discover:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                self._entry_points.setdefault(ep.name, ep)

    def register(self, provider: str, executor: PhaseExecutor | ExecutorFactory) -> None:
        """Register an executor instance, or a factory called with the config on first use."""
        self._instances.pop(provider, None)
        if callable(executor) and not hasattr(executor, "execute_phase"):
            self._factories[provider] = executor
        else:
            self._instances[provider] = executor  # type: ignore[assignment]

    @property
    def providers(self) -> list[str]:
        return sorted({*self._instances, *self._factories, *self._entry_points})

    def executor(self, provider: str, config: LocalConfig) -> PhaseExecutor:
        """The executor for ``provider``, creating it on first use."""
        found = self._instances.get(provider)
        if found is not None:
            return found
        factory = self._factories.get(provider)
        if factory is None and provider in self._entry_points:
            factory = self._entry_points[provider].load()
            self._factories[provider] = factory
        if factory is None:
            known = ", ".join(self.providers) or "none"
            raise ExecutorNotFound(
                f"no executor is installed for provider {provider!r} (installed: {known}). "
                "Set llm.defaultProvider or the phase's provider to one of them."
            )
        instance = factory(config)
        self._instances[provider] = instance
        return instance

    async def aclose(self) -> None:
        """Close every created executor that holds resources (HTTP clients and the like)."""
        instances = list(self._instances.values())
        self._instances.clear()
        for instance in instances:
            close = getattr(instance, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    log.exception("closing executor %s failed", instance.provider_id)

    def forget(self, provider: str) -> None:
        """Drop a created instance (e.g. after a config change) so the next use rebuilds it."""
        self._instances.pop(provider, None)


def model_for(name: str, config: LocalConfig, *providers: str | None) -> tuple[str, str]:
    """``(provider, model)`` for ``name``, an ``llm.aliases`` key or else a model id as it is.

    The provider is the first of ``providers`` that is set, else the alias's, else
    ``llm.defaultProvider``.
    """
    alias = config.llm.aliases.get(name)
    model = alias.model if alias is not None else name
    provider = next((p for p in providers if p), None)
    provider = provider or (alias.provider if alias is not None else None)
    return provider or config.llm.default_provider, model


def assign(job: Job, phase: PhaseConfig, config: LocalConfig) -> PhaseAssignment:
    """Resolve the phase's provider and model.

    A per-job override for the phase wins; else the phase's ``model`` (an alias key or a
    concrete model id); else its ``tier`` looked up in ``llm.aliases``. The provider comes from
    the override, the phase, the alias, then ``llm.defaultProvider``, in that order.
    """
    aliases = config.llm.aliases
    override = job.phase_model_overrides.get(phase.name)
    if override is not None:
        provider, model = model_for(override.model, config, override.provider, phase.provider)
        return PhaseAssignment(provider, model, "override")
    key = phase.model or phase.tier or "planning"
    if key not in aliases and phase.model is None:
        known = ", ".join(sorted(aliases)) or "none"
        raise CoroError(
            f"phase {phase.name!r} asks for tier {key!r}, but llm.aliases has no such alias "
            f"(defined: {known}). Add it to the config.",
            title="Unknown model tier",
        )
    provider, model = model_for(key, config, phase.provider)
    source = f"tier {key}" if phase.model is None else f"phase model {key}"
    return PhaseAssignment(provider, model, source)
