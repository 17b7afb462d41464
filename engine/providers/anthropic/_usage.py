"""Token usage and cost of model calls, per call and summed per phase."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.config import ModelPrice
from state import PhaseUsage

__all__ = ["CallUsage", "add_call", "price_for"]


@dataclass(frozen=True, slots=True)
class CallUsage:
    """What one model call used, as the API reported it, and what it cost."""

    model: str
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cost_usd: float
    duration_ms: int

    @classmethod
    def from_api(
        cls,
        model: str,
        usage: Any,
        prices: Mapping[str, ModelPrice],
        duration_ms: int,
    ) -> CallUsage:
        """From the SDK's ``Usage`` (or a dict with the same fields)."""

        def field(name: str) -> int:
            value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, 0)
            return int(value or 0)

        input_tokens = field("input_tokens")
        output_tokens = field("output_tokens")
        cache_read = field("cache_read_input_tokens")
        cache_write = field("cache_creation_input_tokens")
        price = price_for(model, prices)
        cost = (
            price.cost_usd(input_tokens, output_tokens, cache_read, cache_write)
            if price is not None
            else 0.0
        )
        return cls(model, input_tokens, output_tokens, cache_read, cache_write, cost, duration_ms)

    def to_event(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "cacheReadInputTokens": self.cache_read_input_tokens,
            "cacheCreationInputTokens": self.cache_creation_input_tokens,
            "costUsd": round(self.cost_usd, 6),
            "durationMs": self.duration_ms,
        }


def price_for(model: str, prices: Mapping[str, ModelPrice]) -> ModelPrice | None:
    """The price of ``model``: an exact entry, else the longest entry it starts with (so a
    dated id such as ``claude-sonnet-4-5-20250929`` takes the ``claude-sonnet-4-5`` price)."""
    exact = prices.get(model)
    if exact is not None:
        return exact
    candidates = [name for name in prices if model.startswith(name)]
    return prices[max(candidates, key=len)] if candidates else None


def add_call(phase: PhaseUsage, call: CallUsage) -> None:
    """Add one call to the phase's usage, with a per-model breakdown in ``model_usage``."""
    phase.input_tokens += call.input_tokens
    phase.output_tokens += call.output_tokens
    phase.cache_read_input_tokens += call.cache_read_input_tokens
    phase.cache_creation_input_tokens += call.cache_creation_input_tokens
    phase.cost_usd += call.cost_usd
    phase.duration_api_ms += call.duration_ms
    phase.num_turns += 1
    breakdown = phase.model_usage if phase.model_usage is not None else {}
    entry = breakdown.setdefault(
        call.model,
        {"inputTokens": 0, "outputTokens": 0, "cacheReadInputTokens": 0,
         "cacheCreationInputTokens": 0, "costUSD": 0.0, "turns": 0},
    )  # fmt: skip
    entry["inputTokens"] += call.input_tokens
    entry["outputTokens"] += call.output_tokens
    entry["cacheReadInputTokens"] += call.cache_read_input_tokens
    entry["cacheCreationInputTokens"] += call.cache_creation_input_tokens
    entry["costUSD"] += call.cost_usd
    entry["turns"] += 1
    phase.model_usage = breakdown
