"""The rules in force: the bundled defaults with the user's overrides merged in by ``id``.

A user rule whose ``id`` is a bundled rule's changes only the fields it sets: a field left out
(or ``null``) keeps the bundled value, and ``config`` is merged key by key. Any other ``id`` is a
custom rule. Bundled rules come first, in the order below, then custom rules in file order.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from engine.config import GuardrailRule, GuardrailsConfig

__all__ = ["BUNDLED_RULES", "EffectiveRule", "RuleSource", "effective_rules"]

RuleSource = Literal["bundled", "override", "custom"]


@dataclass(frozen=True, slots=True)
class EffectiveRule:
    """One rule as the engine applies it.

    ``on`` and ``check`` are ``None`` only for a custom rule that does not set them: a rule
    without ``on`` never runs, and one without ``check`` denies (it cannot be evaluated).
    ``script_file_exists`` says whether ``$CORO_HOME/guardrails/<script>`` is a file; it is
    ``False`` for rules that name no script.
    """

    id: str
    on: str | None
    check: str | None
    source: RuleSource
    enabled: bool = True
    title: str | None = None
    description: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    during: tuple[str, ...] | None = None
    workflows: tuple[str, ...] | None = None
    lanes: tuple[str, ...] | None = None
    script: str | None = None
    script_file_exists: bool = False


BUNDLED_RULES: tuple[EffectiveRule, ...] = (
    EffectiveRule(
        id="pr-description",
        on="scm.create_pr",
        check="pr-description",
        source="bundled",
        title="PR description",
        description="A pull request explains itself: a description of at least minLength "
        "characters with every heading of requiredHeadings.",
        config={"minLength": 80, "requiredHeadings": ["## What"]},
    ),
    EffectiveRule(
        id="pr-diff-size",
        on="scm.create_pr",
        check="pr-diff-size",
        source="bundled",
        title="PR diff size",
        description="Pull requests opened while coding stay reviewable: at most maxLines "
        "changed lines (added + removed) in at most maxFiles files.",
        config={"maxLines": 500, "maxFiles": 40},
        during=("coding",),
    ),
    EffectiveRule(
        id="proposal-markdown-only",
        on="propose_change",
        check="proposal-markdown-only",
        source="bundled",
        title="Markdown-only proposals",
        description="propose_change may only add or replace .md files.",
    ),
    EffectiveRule(
        id="merge-requires-approval",
        on="scm.merge_pr",
        check="merge-requires-approval",
        source="bundled",
        title="Merge requires approval",
        description="A pull request is merged only after at least minApprovals approvals from "
        "humans other than its author (bots and config.ignore do not count).",
        config={"minApprovals": 1},
        during=("review", "review-and-verify"),
    ),
)
"""The rules coro ships, always loaded (reference §7)."""

_OPTIONAL = ("on", "check", "enabled", "title", "description", "script")
_FILTERS = ("during", "workflows", "lanes")


def effective_rules(config: GuardrailsConfig, scripts_dir: Path) -> list[EffectiveRule]:
    """Every rule in evaluation order: bundled ones (overridden where configured), then custom.

    Args:
        config: the ``guardrails`` block of the configuration.
        scripts_dir: where ``script`` rules' files live (``$CORO_HOME/guardrails``).
    """
    overrides = {rule.id: rule for rule in config.rules}
    rules = [
        _merge(bundled, overrides[bundled.id])
        if bundled.id in overrides
        else replace(bundled, config=copy.deepcopy(bundled.config))
        for bundled in BUNDLED_RULES
    ]
    bundled_ids = {rule.id for rule in BUNDLED_RULES}
    rules += [_custom(rule) for rule in config.rules if rule.id not in bundled_ids]
    return [_with_script_state(rule, scripts_dir) for rule in rules]


def _merge(bundled: EffectiveRule, user: GuardrailRule) -> EffectiveRule:
    changes: dict[str, Any] = {
        name: getattr(user, name) for name in _OPTIONAL if getattr(user, name) is not None
    }
    changes.update(
        {name: tuple(getattr(user, name)) for name in _FILTERS if getattr(user, name) is not None}
    )
    config = copy.deepcopy({**bundled.config, **user.config})
    return replace(bundled, **changes, config=config, source="override")


def _custom(user: GuardrailRule) -> EffectiveRule:
    return EffectiveRule(
        id=user.id,
        on=user.on,
        check=user.check,
        source="custom",
        enabled=True if user.enabled is None else user.enabled,
        title=user.title,
        description=user.description,
        config=copy.deepcopy(user.config),
        during=None if user.during is None else tuple(user.during),
        workflows=None if user.workflows is None else tuple(user.workflows),
        lanes=None if user.lanes is None else tuple(user.lanes),
        script=user.script,
    )


def _with_script_state(rule: EffectiveRule, scripts_dir: Path) -> EffectiveRule:
    exists = rule.script is not None and os.path.isfile(scripts_dir / rule.script)
    return rule if exists == rule.script_file_exists else replace(rule, script_file_exists=exists)
