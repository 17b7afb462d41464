"""The guardrails engine: which rules apply to a call, and the first denial among them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.guardrails._checks import BUILTIN_CHECKS, RuleMisconfigured
from engine.guardrails._context import Decision, GuardrailContext
from engine.guardrails._rules import EffectiveRule, effective_rules
from engine.guardrails._script import SCRIPT_TIMEOUT, run_script

if TYPE_CHECKING:
    from engine.config import GuardrailsConfig

__all__ = ["Guardrails"]


class Guardrails:
    """Checks tool calls against the rules in force.

    Args:
        config: the ``guardrails`` block of the configuration.
        scripts_dir: where script rules live (``CoroPaths.guardrails_dir``).
        script_timeout: seconds a script rule may run before it is killed.
    """

    def __init__(
        self,
        config: GuardrailsConfig,
        scripts_dir: Path,
        *,
        script_timeout: float = SCRIPT_TIMEOUT,
    ) -> None:
        self.enabled = config.enabled
        self.scripts_dir = scripts_dir
        self.script_timeout = script_timeout
        self.rules: list[EffectiveRule] = effective_rules(config, scripts_dir)

    def applicable(self, ctx: GuardrailContext) -> list[EffectiveRule]:
        """The enabled rules for ``ctx.on`` whose phase, workflow and lane filters match."""
        if not self.enabled:
            return []
        return [
            rule
            for rule in self.rules
            if rule.enabled
            and rule.on == ctx.on
            and (rule.during is None or ctx.phase in rule.during)
            and (rule.workflows is None or ctx.workflow_path in rule.workflows)
            and (rule.lanes is None or ctx.lane in rule.lanes)
        ]

    async def check(self, ctx: GuardrailContext) -> Decision:
        """The verdict on one call: the first denial in rule order, else allow.

        An allowed call carries a note (``rule_id`` and ``reason``) when a ``decision`` rule
        applied but could not be consulted; callers log it with :func:`log_line`.
        """
        notes: list[tuple[str, str]] = []
        for rule in self.applicable(ctx):
            if rule.check == "decision":
                notes.append(
                    (rule.id, f"decision rule {rule.id} skipped: no overseer provider configured")
                )
                continue
            reason = await self._evaluate(rule, ctx)
            if reason is not None:
                return Decision(allow=False, rule_id=rule.id, reason=reason)
        if notes:
            return Decision(
                allow=True, rule_id=notes[0][0], reason="; ".join(note for _, note in notes)
            )
        return Decision(allow=True)

    async def _evaluate(self, rule: EffectiveRule, ctx: GuardrailContext) -> str | None:
        if rule.check == "script":
            if rule.script is None:  # the config model refuses this; an override may not
                return f"guardrail rule {rule.id!r} has check 'script' but names no script"
            allow, reason = await run_script(
                self.scripts_dir / rule.script, ctx, time_limit=self.script_timeout
            )
            return None if allow else reason
        check = BUILTIN_CHECKS.get(rule.check or "")
        if check is None:
            return (
                f"guardrail rule {rule.id!r} has no usable check ({rule.check!r}), so the call "
                "is refused; fix the rule in guardrails.rules"
            )
        try:
            return check(rule, ctx)
        except RuleMisconfigured as exc:
            return str(exc)
