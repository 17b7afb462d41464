"""Subagents: the ``Task`` tool runs a nested, stateless tool loop for a declared subagent.

A phase's front matter declares its subagents (``subagents:`` with ``name``, ``agent``, ``tier``
or ``model``, ``tools``). The model delegates through ``Task``; the subagent gets its own system
prompt (its agent markdown plus the job), the phase's tools narrowed to its list (never
``Task``: subagents cannot recurse), and the same turn cap. Its usage counts toward the phase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.errors import ProviderError
from engine.phase import PhaseRequest, ToolOutcome, ToolSpec
from engine.prompt import SECTION_SEPARATOR
from engine.providers.anthropic import _conversation as conv
from engine.providers.anthropic._usage import CallUsage, add_call
from engine.workflow import split_front_matter
from state import PhaseUsage

if TYPE_CHECKING:
    from engine.providers.anthropic._executor import AnthropicExecutor
    from engine.workflow import SubagentConfig

__all__ = ["TASK_TOOL", "SubagentRunner", "task_spec"]

TASK_TOOL = "Task"
SUBAGENT_HEADING = "# Subagent: "


def task_spec(subagents: Sequence[SubagentConfig]) -> ToolSpec:
    listing = "\n".join(f"- {sub.name}: agent {sub.agent}" for sub in subagents)
    return ToolSpec(
        name=TASK_TOOL,
        description=(
            "Delegate a self-contained task to one of this phase's subagents. The subagent "
            "starts fresh (it sees only your prompt and the job), works with its own tools, "
            "and returns its final answer as this tool's result. Subagents:\n" + listing
        ),
        input_schema={
            "type": "object",
            "properties": {
                "subagent_type": {"type": "string", "enum": [s.name for s in subagents]},
                "description": {"type": "string", "description": "A 3-5 word summary."},
                "prompt": {"type": "string", "description": "The full task for the subagent."},
            },
            "required": ["subagent_type", "prompt"],
            "additionalProperties": False,
        },
    )


class SubagentRunner:
    """Runs the subagents of one phase."""

    def __init__(
        self,
        request: PhaseRequest,
        executor: AnthropicExecutor,
        specs: Sequence[ToolSpec],
        usage: PhaseUsage,
    ) -> None:
        self._request = request
        self._usage = usage
        self._executor = executor
        self._specs = [spec for spec in specs if spec.name != TASK_TOOL]
        self._by_name = {sub.name: sub for sub in request.phase.subagents}

    @classmethod
    def for_phase(
        cls,
        request: PhaseRequest,
        executor: AnthropicExecutor,
        specs: Sequence[ToolSpec],
        usage: PhaseUsage,
    ) -> SubagentRunner | None:
        """A runner when the phase declares subagents and allows ``Task``; else ``None``."""
        phase = request.phase
        if not phase.subagents or (phase.tools is not None and TASK_TOOL not in phase.tools):
            return None
        return cls(request, executor, specs, usage)

    async def run(self, arguments: Mapping[str, Any]) -> ToolOutcome:
        name = arguments.get("subagent_type")
        prompt = arguments.get("prompt")
        if not isinstance(name, str) or name not in self._by_name:
            known = ", ".join(self._by_name)
            return ToolOutcome(f"Task: unknown subagent_type {name!r}; use one of: {known}", True)
        if not isinstance(prompt, str) or not prompt.strip():
            return ToolOutcome("Task: 'prompt' must be a non-empty string", is_error=True)
        sub = self._by_name[name]
        try:
            return await self._loop(sub, prompt)
        except ProviderError as exc:
            return ToolOutcome(f"Task: subagent {name!r} failed: {exc.message}", is_error=True)

    def _system_prompt(self, sub: SubagentConfig) -> str:
        path = self._request.intelligence_dir / sub.agent
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _AgentMissing(f"cannot read agent file {sub.agent!r} at {path}: {exc}") from exc
        _, body = split_front_matter(text, source=str(path))
        sections = [f"{SUBAGENT_HEADING}{sub.name}\n\n{body.strip()}"]
        sections += [
            part
            for part in self._request.system_prompt.split(SECTION_SEPARATOR)
            if part.startswith("# Current Job")
        ]
        return SECTION_SEPARATOR.join(sections)

    def _model(self, sub: SubagentConfig) -> str:
        aliases = self._request.context.config.llm.aliases
        key = sub.model or sub.tier or "planning"
        alias = aliases.get(key)
        return alias.model if alias is not None else key

    async def _loop(self, sub: SubagentConfig, prompt: str) -> ToolOutcome:
        request = self._request
        config = request.context.config
        if sub.provider not in (None, "anthropic"):
            return ToolOutcome(
                f"Task: subagent {sub.name!r} asks for provider {sub.provider!r}; this phase "
                "runs on anthropic and can only run anthropic subagents",
                is_error=True,
            )
        try:
            system_prompt = self._system_prompt(sub)
        except _AgentMissing as exc:
            return ToolOutcome(f"Task: {exc}", is_error=True)
        allowed = None if sub.tools is None else set(sub.tools)
        specs = [s for s in self._specs if allowed is None or s.name in allowed]
        names = {s.name for s in specs}
        tools = [{"name": s.name, "description": s.description, "input_schema": s.input_schema}
                 for s in specs]  # fmt: skip
        model = self._model(sub)
        client, key = self._executor.client_for(config)
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": [{"type": "text", "text": prompt}]}
        ]
        cap = config.llm.max_turns_per_phase
        await request.context.log(f"[subagent] {sub.name} started ({model})")
        for turn_no in range(1, cap + 1):
            params: dict[str, Any] = {
                "model": model,
                "max_tokens": config.llm.max_output_tokens,
                "system": [{"type": "text", "text": system_prompt,
                            "cache_control": {"type": "ephemeral"}}],
                "messages": conv.with_breakpoints(messages),
            }  # fmt: skip
            if tools:
                params["tools"] = tools
            turn = await self._executor.call(client, key, params, request=request)
            call = CallUsage.from_api(model, turn.usage, config.llm.prices, turn.duration_ms)
            add_call(self._usage, call)  # a subagent's turns count toward the phase
            await request.context.emit(
                "model_call", {"turn": turn_no, "subagent": sub.name,
                               "stopReason": turn.stop_reason, **call.to_event()},
            )  # fmt: skip
            messages.append({"role": "assistant", "content": turn.content})
            uses = conv.tool_uses(messages[-1])
            if not uses:
                text = conv.text_of(messages[-1]).strip()
                await request.context.log(f"[subagent] {sub.name} finished after {turn_no} turns")
                return ToolOutcome(text or f"(subagent {sub.name} returned no text)")
            results = []
            for use in uses:
                name = str(use["name"])
                arguments = conv.tool_input(use)
                if name not in names:
                    outcome = ToolOutcome(
                        f"tool {name!r} is not available to subagent {sub.name!r}; its tools "
                        f"are: {', '.join(sorted(names)) or 'none'}",
                        is_error=True,
                    )
                else:
                    outcome = await request.tools.call(name, arguments)
                request.steering.touch()
                results.append(
                    conv.tool_result(str(use["id"]), outcome.text, is_error=outcome.is_error)
                )
            conv.add_user_blocks(messages, results)
        return ToolOutcome(
            f"Task: subagent {sub.name!r} reached the cap of {cap} turns without finishing",
            is_error=True,
        )


class _AgentMissing(Exception):
    pass
