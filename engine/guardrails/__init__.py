"""Guardrails: runner-enforced rules on pull requests, merges and proposals.

::

    guardrails = Guardrails(config.guardrails, paths.guardrails_dir)
    decision = await guardrails.check(GuardrailContext(on="propose_change", ...))
    if not decision.allow:
        await ctx.log(log_line(decision))
        await ctx.emit(*denial_event(decision, context))
        raise ToolError(decision.reason)

Four rules are bundled (:data:`BUNDLED_RULES`); the ``guardrails`` block of the configuration
overrides them by ``id`` and adds custom ones, including executable ``script`` rules in
``$CORO_HOME/guardrails/``. Every check fails closed except ``decision``, which has no
overseer to ask yet and allows with a note. See ``docs/guardrails.md``.
"""

from __future__ import annotations

from engine.guardrails._context import (
    GUARDRAIL_DENIED,
    Decision,
    DiffStats,
    GuardrailContext,
    GuardrailPoint,
    denial_event,
    log_line,
)
from engine.guardrails._engine import Guardrails
from engine.guardrails._rules import BUNDLED_RULES, EffectiveRule, RuleSource, effective_rules
from engine.guardrails._script import SCRIPT_TIMEOUT

__all__ = [
    "BUNDLED_RULES",
    "GUARDRAIL_DENIED",
    "SCRIPT_TIMEOUT",
    "Decision",
    "DiffStats",
    "EffectiveRule",
    "GuardrailContext",
    "GuardrailPoint",
    "Guardrails",
    "RuleSource",
    "denial_event",
    "effective_rules",
    "log_line",
]
