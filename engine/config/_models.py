"""The schema of ``$CORO_HOME/config.json``: one pydantic model per block.

Attributes are snake_case in Python and camelCase in the file (``max_concurrent`` ↔
``maxConcurrent``). Every block has defaults, so ``{}`` is a valid configuration. Keys coro does
not know are kept (and written back) rather than rejected, so a file written by a newer coro or
by the original runner still loads; :func:`~engine.config._base.unknown_keys` lists them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from engine.config._base import ConfigBlock, FreeDict, SecretMap, SecretValue

__all__ = [
    "DEFAULT_ALIASES",
    "DEFAULT_PRICES",
    "RESERVED_MCP_ID",
    "BudgetConfig",
    "CloudBlobOverlay",
    "CloudConfig",
    "GitConfig",
    "GitRemoteOverlay",
    "GithubTrackerConfig",
    "GuardrailRule",
    "GuardrailsConfig",
    "HttpMcpServer",
    "IdleWatchdogConfig",
    "InstalledPlugin",
    "IntakeConfig",
    "IntelligenceConfig",
    "JiraConfig",
    "JobsConfig",
    "LinearConfig",
    "LlmConfig",
    "LocalConfig",
    "LocalDirOverlay",
    "McpServer",
    "ModelAlias",
    "ModelPrice",
    "NoOverlay",
    "PathsConfig",
    "PluginDefaults",
    "PluginsConfig",
    "PollingConfig",
    "ProposalsConfig",
    "RoutingConfig",
    "ServerConfig",
    "SseMcpServer",
    "StateConfig",
    "StdioMcpServer",
    "TenantConfig",
    "TenantOverlay",
    "TrackerConfig",
    "TuiConfig",
]

_M = TypeVar("_M", bound=BaseModel)


# ── cloud, intelligence, paths, git ─────────────────────────────────────────────────────────


class CloudConfig(ConfigBlock):
    url: str | None = None
    token: SecretValue = None


class IntelligenceConfig(ConfigBlock):
    dir: str | None = None
    git_remote: str | None = None


class PathsConfig(ConfigBlock):
    working_dir: str | None = None


class GitConfig(ConfigBlock):
    provider: Literal["github", "bitbucket", "gitlab", "local"] | None = None
    workspace: str | None = None
    username: str | None = None
    token: SecretValue = None
    base_url: str | None = None
    webhook_secret: SecretValue = None


# ── tenant ──────────────────────────────────────────────────────────────────────────────────


class NoOverlay(ConfigBlock):
    kind: Literal["none"]


class LocalDirOverlay(ConfigBlock):
    kind: Literal["localDir"]
    path: str = Field(min_length=1)


class GitRemoteOverlay(ConfigBlock):
    kind: Literal["gitRemote"]
    url: str = Field(min_length=1)
    ref: str | None = None


class CloudBlobOverlay(ConfigBlock):
    kind: Literal["cloudBlob"]
    key: str = Field(min_length=1)


TenantOverlay = Annotated[
    NoOverlay | LocalDirOverlay | GitRemoteOverlay | CloudBlobOverlay,
    Field(discriminator="kind"),
]


class TenantConfig(ConfigBlock):
    display_name: str | None = None
    overlay: TenantOverlay = Field(default_factory=lambda: NoOverlay(kind="none"))


# ── proposals, tracker, plugins ─────────────────────────────────────────────────────────────


class RoutingConfig(ConfigBlock):
    strategy: Literal["path", "agent"] = "path"


class ProposalsConfig(ConfigBlock):
    routing: RoutingConfig = Field(default_factory=RoutingConfig)


class JiraConfig(ConfigBlock):
    base_url: str | None = None
    # The original runner called this field ``username``; both spellings are read.
    email: str | None = Field(default=None, validation_alias=AliasChoices("email", "username"))
    api_token: SecretValue = None
    project_key: str | None = None


class LinearConfig(ConfigBlock):
    api_key: SecretValue = None
    team_key: str | None = None


class GithubTrackerConfig(ConfigBlock):
    token: SecretValue = None
    repo: str | None = None
    api_url: str = "https://api.github.com"


class TrackerConfig(ConfigBlock):
    provider: Literal["none", "jira", "github", "linear"] = "none"
    jira: JiraConfig = Field(default_factory=JiraConfig)
    linear: LinearConfig = Field(default_factory=LinearConfig)
    github: GithubTrackerConfig = Field(default_factory=GithubTrackerConfig)


class PluginDefaults(ConfigBlock):
    scm: str | None = None
    tracker: str | None = None


class InstalledPlugin(ConfigBlock):
    enabled: bool = True
    config: FreeDict = Field(default_factory=dict)


class PluginsConfig(ConfigBlock):
    defaults: PluginDefaults = Field(default_factory=PluginDefaults)
    installed: dict[str, InstalledPlugin] = Field(default_factory=dict)


# ── llm ─────────────────────────────────────────────────────────────────────────────────────


class ModelAlias(ConfigBlock):
    provider: str | None = None
    model: str = Field(min_length=1)
    reasoning_effort: Literal["low", "medium", "high"] | None = None


class ModelPrice(ConfigBlock):
    """US dollars per million tokens. Cache prices left unset follow Anthropic's ratios."""

    input_per_m_tok: float = Field(ge=0)
    output_per_m_tok: float = Field(ge=0)
    cache_read_per_m_tok: float | None = Field(default=None, ge=0)
    cache_write_per_m_tok: float | None = Field(default=None, ge=0)

    def cost_usd(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float:
        """The price of one usage record; unset cache prices are 10 % / 125 % of input."""
        cache_read = self.cache_read_per_m_tok
        cache_write = self.cache_write_per_m_tok
        if cache_read is None:
            cache_read = self.input_per_m_tok * 0.1
        if cache_write is None:
            cache_write = self.input_per_m_tok * 1.25
        total = (
            input_tokens * self.input_per_m_tok
            + output_tokens * self.output_per_m_tok
            + cache_read_tokens * cache_read
            + cache_write_tokens * cache_write
        )
        return total / 1_000_000


DEFAULT_ALIASES: dict[str, ModelAlias] = {
    # No provider: the built-in tiers follow llm.defaultProvider.
    "mini": ModelAlias(model="claude-haiku-4-5", reasoning_effort="low"),
    "planning": ModelAlias(model="claude-opus-4-7", reasoning_effort="high"),
    "coding": ModelAlias(model="claude-sonnet-4-6", reasoning_effort="medium"),
}
"""The tiers workflows name (``tier: coding``); a user's ``llm.aliases`` is merged over them."""

DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-haiku-4-5": ModelPrice(
        input_per_m_tok=1.0,
        output_per_m_tok=5.0,
        cache_read_per_m_tok=0.1,
        cache_write_per_m_tok=1.25,
    ),
    "claude-sonnet-4-6": ModelPrice(
        input_per_m_tok=3.0,
        output_per_m_tok=15.0,
        cache_read_per_m_tok=0.3,
        cache_write_per_m_tok=3.75,
    ),
    "claude-opus-4-7": ModelPrice(
        input_per_m_tok=5.0,
        output_per_m_tok=25.0,
        cache_read_per_m_tok=0.5,
        cache_write_per_m_tok=6.25,
    ),
    "claude-sonnet-4-5": ModelPrice(
        input_per_m_tok=3.0,
        output_per_m_tok=15.0,
        cache_read_per_m_tok=0.3,
        cache_write_per_m_tok=3.75,
    ),
    "claude-opus-4-1": ModelPrice(
        input_per_m_tok=15.0,
        output_per_m_tok=75.0,
        cache_read_per_m_tok=1.5,
        cache_write_per_m_tok=18.75,
    ),
}
"""Built-in prices; a user's ``llm.prices`` is merged over them."""


def _fresh(builtins: dict[str, _M], given: dict[str, _M]) -> dict[str, _M]:
    """``given`` over copies of ``builtins`` (copies, so editing one config never edits another)."""
    merged = {key: model.model_copy(deep=True) for key, model in builtins.items()}
    merged.update(given)
    return merged


class LlmRetryConfig(ConfigBlock):
    """How a provider call is retried before a phase gives up on it."""

    max_attempts: int = Field(default=5, ge=1)
    initial_delay_seconds: float = Field(default=1.0, ge=0)
    max_delay_seconds: float = Field(default=60.0, ge=0)
    stall_seconds: float = Field(default=120.0, gt=0)
    rate_limit_park_seconds: float = Field(default=60.0, ge=0)


class LlmConfig(ConfigBlock):
    default_provider: str = Field(default="anthropic", min_length=1)
    api_key: SecretValue = None
    auth_token: SecretValue = None
    base_url: str | None = None
    aliases: dict[str, ModelAlias] = Field(default_factory=lambda: _fresh(DEFAULT_ALIASES, {}))
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: _fresh(DEFAULT_PRICES, {}))
    max_turns_per_phase: int = Field(default=200, ge=1)
    max_output_tokens: int = Field(default=16_000, ge=1)
    retry: LlmRetryConfig = Field(default_factory=lambda: LlmRetryConfig())

    @field_validator("aliases", mode="after")
    @classmethod
    def _merge_default_aliases(cls, value: dict[str, ModelAlias]) -> dict[str, ModelAlias]:
        return _fresh(DEFAULT_ALIASES, value)

    @field_validator("prices", mode="after")
    @classmethod
    def _merge_default_prices(cls, value: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        return _fresh(DEFAULT_PRICES, value)

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        """When writing the file (``exclude_defaults``), leave out untouched built-in entries.

        Without this, adding one alias would pin every built-in tier in the user's file.
        """
        data = handler(self)
        if not info.exclude_defaults or not isinstance(data, dict):
            return data
        for key, current, builtins in (
            ("aliases", self.aliases, DEFAULT_ALIASES),
            ("prices", self.prices, DEFAULT_PRICES),
        ):
            if isinstance(data.get(key), dict):
                kept = {
                    name: value
                    for name, value in data[key].items()
                    if name not in builtins or current.get(name) != builtins[name]
                }
                if kept:
                    data[key] = kept
                else:
                    del data[key]
        return data


# ── mcpServers ──────────────────────────────────────────────────────────────────────────────

RESERVED_MCP_ID = "coro"
# Tool names the model sees are ``mcp__<id>__<tool>`` and must match ``[A-Za-z0-9_-]{1,64}``.
_MCP_ID = re.compile(r"[A-Za-z0-9_-]+")


class _McpServerBase(ConfigBlock):
    type: str  # narrowed to a Literal by each kind; declared here so it is written first
    enabled: bool = True
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] = Field(default_factory=list)


class StdioMcpServer(_McpServerBase):
    type: Literal["stdio"]
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: SecretMap = Field(default_factory=dict)


class _RemoteMcpServer(_McpServerBase):
    url: str = Field(min_length=1)
    headers: SecretMap = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value


class HttpMcpServer(_RemoteMcpServer):
    type: Literal["http"]


class SseMcpServer(_RemoteMcpServer):
    type: Literal["sse"]


McpServer = Annotated[StdioMcpServer | HttpMcpServer | SseMcpServer, Field(discriminator="type")]


# ── guardrails ──────────────────────────────────────────────────────────────────────────────


class GuardrailRule(ConfigBlock):
    """A custom rule, or an override (merged by ``id``) of a bundled one."""

    id: str = Field(min_length=1)
    title: str | None = None
    description: str | None = None
    enabled: bool | None = None
    on: Literal["scm.create_pr", "scm.merge_pr", "propose_change", "tool.before"] | None = None
    check: (
        Literal[
            "pr-description",
            "pr-diff-size",
            "merge-requires-approval",
            "proposal-markdown-only",
            "script",
            "decision",
        ]
        | None
    ) = None
    config: FreeDict = Field(default_factory=dict)
    during: list[str] | None = None
    workflows: list[str] | None = None
    lanes: list[str] | None = None
    script: str | None = None

    @field_validator("script")
    @classmethod
    def _basename(cls, value: str | None) -> str | None:
        if value is not None and (
            not value or "/" in value or "\\" in value or value in {".", ".."}
        ):
            raise ValueError("expected a file name inside $CORO_HOME/guardrails, not a path")
        return value

    @model_validator(mode="after")
    def _script_named(self) -> GuardrailRule:
        if self.check == "script" and not self.script:
            raise ValueError(f"rule {self.id!r} has check 'script' but no 'script' file name")
        return self


class GuardrailsConfig(ConfigBlock):
    enabled: bool = True
    rules: list[GuardrailRule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[GuardrailRule]) -> list[GuardrailRule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} appears more than once")
            seen.add(rule.id)
        return rules


# ── jobs, polling, state, server, tui, intake ───────────────────────────────────────────────


class IdleWatchdogConfig(ConfigBlock):
    enabled: bool = True
    idle_minutes: float = Field(default=5, gt=0)
    nudges: int = Field(default=2, ge=0)
    check_seconds: float = Field(default=30, gt=0)
    grace_seconds: float = Field(default=30, ge=0)


class BudgetConfig(ConfigBlock):
    max_tokens: int | None = Field(default=None, ge=1)
    max_cost_usd: float | None = Field(default=None, gt=0)


class JobsConfig(ConfigBlock):
    max_concurrent: int = Field(default=4, ge=1)
    idle_watchdog: IdleWatchdogConfig = Field(default_factory=IdleWatchdogConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    completion_gate_max_retries: int = Field(default=5, ge=1)


class PollingConfig(ConfigBlock):
    interval_seconds: float = Field(default=60, gt=0)


class StateConfig(ConfigBlock):
    synchronous: Literal["normal", "full"] = "normal"


class ServerConfig(ConfigBlock):
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=7337, ge=0, le=65535)


class TuiConfig(ConfigBlock):
    keymap: dict[str, str] = Field(default_factory=dict)
    notify: bool = True
    log_max_lines: int = Field(default=5000, ge=1)


class IntakeConfig(ConfigBlock):
    """Plan mode (``POST /intake/stream``, ``coro plan``): budgets and tool bounds."""

    max_turns: int = Field(default=8, ge=1)
    max_output_tokens_per_turn: int = Field(default=4096, ge=1)
    max_session_tokens: int = Field(default=30000, ge=1)
    tool_rounds_per_turn: int = Field(default=25, ge=0)
    tool_timeout_seconds: float = Field(default=15, gt=0)
    max_read_bytes: int = Field(default=65536, ge=1024)
    max_search_results: int = Field(default=20, ge=1)
    session_expiry_hours: float = Field(default=72, gt=0)
    tools_enabled: bool = True


# ── the whole file ──────────────────────────────────────────────────────────────────────────


class LocalConfig(ConfigBlock):
    """``$CORO_HOME/config.json``. See ``docs/configuration.md`` for every field."""

    cloud: CloudConfig = Field(default_factory=CloudConfig)
    intelligence: IntelligenceConfig = Field(default_factory=IntelligenceConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    git: GitConfig = Field(default_factory=GitConfig)
    tenant: TenantConfig = Field(default_factory=TenantConfig)
    proposals: ProposalsConfig = Field(default_factory=ProposalsConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    llm: LlmConfig = Field(default_factory=LlmConfig)
    mcp_servers: dict[str, McpServer] = Field(default_factory=dict)
    inherit_claude_code_mcps: bool = False
    guardrails: GuardrailsConfig = Field(default_factory=GuardrailsConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    polling: PollingConfig = Field(default_factory=PollingConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    tui: TuiConfig = Field(default_factory=TuiConfig)
    intake: IntakeConfig = Field(default_factory=IntakeConfig)
    upstream: FreeDict = Field(default_factory=dict)
    decision: FreeDict = Field(default_factory=dict)
    coach_mode: FreeDict = Field(default_factory=dict)

    @field_validator("mcp_servers")
    @classmethod
    def _valid_server_ids(cls, servers: dict[str, Any]) -> dict[str, Any]:
        for server_id in servers:
            if server_id.casefold() == RESERVED_MCP_ID:
                raise ValueError(
                    f"the id {server_id!r} is reserved for coro's own tools (mcp__coro__*); "
                    "give this server another id"
                )
            if not _MCP_ID.fullmatch(server_id) or "__" in server_id:
                raise ValueError(
                    f"the id {server_id!r} must be letters, digits, '-' or '_' without '__' "
                    "(the model sees its tools as mcp__<id>__<tool>)"
                )
        return servers

    @property
    def mode(self) -> Literal["local", "hybrid"]:
        """``hybrid`` when the runner is paired with a cloud (``cloud.url`` and ``cloud.token``)."""
        return "hybrid" if self.cloud.url and self.cloud.token else "local"
