"""Tests for engine.config: defaults, the camelCase file format, errors, saving and secrets."""

from __future__ import annotations

import json
import os
import re
import stat
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from engine.config import (
    MASK,
    ConfigError,
    ConfigValidationError,
    LocalConfig,
    LocalDirOverlay,
    StdioMcpServer,
    config_fingerprint,
    load_config,
    parse_config,
    redact,
    redact_text,
    save_config,
    unknown_keys,
    unredact,
)
from engine.config._base import SECRET, SECRET_VALUES, has_marker

# A config as a user would write it by hand, touching every block, with secrets in all the
# places the model marks as secret.
HAND_WRITTEN: dict[str, Any] = {
    "cloud": {"url": "https://cloud.example.com", "token": "cloud-token-123"},
    "intelligence": {"dir": "/srv/intel", "gitRemote": "git@example.com:t/intel.git"},
    "paths": {"workingDir": "/srv/work"},
    "git": {
        "provider": "github",
        "workspace": "acme",
        "username": "dev",
        "token": "ghp_gittoken456",
        "baseUrl": "https://api.github.com",
    },
    "tenant": {
        "displayName": "Acme",
        "overlay": {"kind": "gitRemote", "url": "git@example.com:t/o.git", "ref": "main"},
    },
    "proposals": {"routing": {"strategy": "agent"}},
    "tracker": {
        "provider": "jira",
        "jira": {
            "baseUrl": "https://acme.atlassian.net",
            "email": "dev@acme.test",
            "apiToken": "jira-api-token-789",
            "projectKey": "PROJ",
        },
        "linear": {"apiKey": "lin_api_key_000", "teamKey": "ENG"},
        "github": {"token": "ghp_trackertoken", "repo": "acme/app"},
    },
    "plugins": {
        "defaults": {"scm": "github", "tracker": "jira"},
        "installed": {
            "sentry": {
                "enabled": False,
                "config": {
                    "org": "acme",
                    "authToken": "sntrys_plugin_tok",
                    "nested": {"client_secret": "nested-secret-1"},
                },
            }
        },
    },
    "llm": {
        "defaultProvider": "anthropic",
        "apiKey": "sk-ant-api-key-1",
        "authToken": "oauth-token-2",
        "baseUrl": "http://127.0.0.1:9999",
        "aliases": {"coding": {"provider": "anthropic", "model": "claude-opus-4-1"}},
        "prices": {"my-model": {"inputPerMTok": 2, "outputPerMTok": 8}},
        "maxTurnsPerPhase": 50,
    },
    "mcpServers": {
        "sentry": {
            "type": "stdio",
            "command": "npx",
            "args": ["-y", "@sentry/mcp"],
            "env": {"SENTRY_TOKEN": "env-secret-value", "LOG_LEVEL": "debugging"},
            "allowedTools": ["search"],
        },
        "docs": {
            "type": "http",
            "url": "https://mcp.example.com/mcp",
            "headers": {"Authorization": "Bearer header-secret"},
            "enabled": False,
        },
        "events": {"type": "sse", "url": "http://localhost:8080/sse", "disallowedTools": ["x"]},
    },
    "inheritClaudeCodeMcps": True,
    "guardrails": {
        "enabled": True,
        "rules": [
            {"id": "pr-diff-size", "config": {"maxLines": 800}},
            {
                "id": "no-friday-merges",
                "on": "scm.merge_pr",
                "check": "script",
                "script": "friday.py",
                "during": ["review"],
                "workflows": ["job"],
                "lanes": ["fast"],
            },
        ],
    },
    "jobs": {
        "maxConcurrent": 2,
        "idleWatchdog": {"enabled": False, "idleMinutes": 10, "nudges": 1},
        "budget": {"maxTokens": 1000000, "maxCostUsd": 12.5},
        "completionGateMaxRetries": 3,
    },
    "polling": {"intervalSeconds": 30},
    "state": {"synchronous": "full"},
    "server": {"host": "0.0.0.0", "port": 8000},
    "tui": {"keymap": {"job.pause": "ctrl+p"}, "notify": False, "logMaxLines": 2000},
    "intake": {"maxTurns": 12, "toolsEnabled": False},
    "upstream": {"repoUrl": "https://github.com/x/y", "token": "upstream-token-3"},
    "decision": {"mode": "jev"},
    "coachMode": {"enabled": True, "graduateAfterRuns": 5},
    "futureBlock": {"someKey": 1},
}

SECRETS = [
    "cloud-token-123",
    "ghp_gittoken456",
    "jira-api-token-789",
    "lin_api_key_000",
    "ghp_trackertoken",
    "sntrys_plugin_tok",
    "nested-secret-1",
    "sk-ant-api-key-1",
    "oauth-token-2",
    "env-secret-value",
    "debugging",  # every MCP env value is treated as secret
    "Bearer header-secret",
    "upstream-token-3",
]


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ── defaults ────────────────────────────────────────────────────────────────────────────────


def test_missing_file_gives_defaults(coro_home: Path) -> None:
    config = load_config(coro_home / "config.json")

    assert config == LocalConfig()
    assert not (coro_home / "config.json").exists()


def test_empty_object_is_a_valid_config_with_documented_defaults() -> None:
    config = parse_config({})

    assert config.mode == "local"
    assert config.jobs.max_concurrent == 4
    assert config.jobs.idle_watchdog.idle_minutes == 5
    assert config.jobs.idle_watchdog.nudges == 2
    assert config.jobs.completion_gate_max_retries == 5
    assert config.jobs.budget.max_tokens is None
    assert config.jobs.budget.max_cost_usd is None
    assert config.polling.interval_seconds == 60
    assert config.state.synchronous == "normal"
    assert (config.server.host, config.server.port) == ("127.0.0.1", 7337)
    assert config.tui.log_max_lines == 5000
    assert config.intake.max_output_tokens_per_turn == 4096
    assert config.intake.tool_rounds_per_turn == 25
    assert config.llm.default_provider == "anthropic"
    assert config.llm.max_turns_per_phase == 200
    assert set(config.llm.aliases) == {"mini", "planning", "coding"}
    assert config.llm.aliases["coding"].model.startswith("claude-")
    for alias in config.llm.aliases.values():
        assert alias.model in config.llm.prices, f"no default price for {alias.model}"
    assert config.tenant.overlay.kind == "none"
    assert config.tracker.provider == "none"
    assert config.mcp_servers == {}


def test_cloud_url_and_token_switch_to_hybrid_mode() -> None:
    assert parse_config({"cloud": {"url": "https://c"}}).mode == "local"
    assert parse_config({"cloud": {"url": "https://c", "token": "t"}}).mode == "hybrid"


def test_user_aliases_are_merged_over_the_built_in_tiers() -> None:
    config = parse_config({"llm": {"aliases": {"review": {"model": "claude-sonnet-4-5"}}}})
    assert set(config.llm.aliases) == {"mini", "planning", "coding", "review"}


def test_editing_one_config_never_edits_the_defaults_of_another() -> None:
    first = LocalConfig()
    first.llm.aliases["coding"].model = "changed"
    assert LocalConfig().llm.aliases["coding"].model != "changed"


def test_price_without_cache_prices_uses_anthropic_ratios() -> None:
    price = parse_config({"llm": {"prices": {"m": {"inputPerMTok": 10, "outputPerMTok": 20}}}})
    cost = price.llm.prices["m"].cost_usd(1_000_000, 1_000_000, 1_000_000, 1_000_000)
    assert cost == pytest.approx(10 + 20 + 1 + 12.5)


# ── the file format ─────────────────────────────────────────────────────────────────────────


def test_hand_written_camel_case_file_parses(coro_home: Path) -> None:
    config = load_config(_write(coro_home / "config.json", HAND_WRITTEN))

    assert config.intelligence.git_remote == "git@example.com:t/intel.git"
    assert config.paths.working_dir == "/srv/work"
    assert config.tracker.jira.api_token == "jira-api-token-789"
    assert config.llm.aliases["coding"].model == "claude-opus-4-1"
    assert config.llm.aliases["mini"].model == "claude-haiku-4-5"
    assert config.jobs.idle_watchdog.idle_minutes == 10
    assert config.jobs.budget.max_cost_usd == 12.5
    assert config.inherit_claude_code_mcps is True
    assert config.coach_mode["graduateAfterRuns"] == 5
    assert config.tenant.overlay.kind == "gitRemote"
    sentry = config.mcp_servers["sentry"]
    assert isinstance(sentry, StdioMcpServer)
    assert sentry.allowed_tools == ["search"]
    assert config.guardrails.rules[1].on == "scm.merge_pr"


def test_load_save_load_round_trips(coro_home: Path) -> None:
    path = _write(coro_home / "config.json", HAND_WRITTEN)
    first = load_config(path)

    save_config(path, first)
    second = load_config(path)

    assert second == first
    assert second.model_extra == {"futureBlock": {"someKey": 1}}


def test_saved_file_is_camel_case_two_space_json_without_defaults(coro_home: Path) -> None:
    path = coro_home / "config.json"
    config = LocalConfig()
    config.jobs.max_concurrent = 8
    config.llm.aliases["review"] = config.llm.aliases["coding"].model_copy(
        update={"reasoning_effort": "high"}
    )

    save_config(path, config)

    text = path.read_text()
    assert json.loads(text) == {
        "llm": {
            "aliases": {
                "review": {
                    "model": config.llm.aliases["coding"].model,
                    "reasoningEffort": "high",
                }
            }
        },
        "jobs": {"maxConcurrent": 8},
    }
    assert '\n  "jobs": {\n    "maxConcurrent": 8\n  }' in text
    assert text.endswith("}\n")
    assert load_config(path) == config


def test_default_config_saves_as_an_empty_object(coro_home: Path) -> None:
    save_config(coro_home / "config.json", LocalConfig())
    assert json.loads((coro_home / "config.json").read_text()) == {}


def test_unknown_keys_are_kept_and_listed(coro_home: Path) -> None:
    path = _write(coro_home / "config.json", {"jobs": {"maxConcurent": 9}, "newThing": [1]})

    config = load_config(path)
    save_config(path, config)

    assert json.loads(path.read_text()) == {"jobs": {"maxConcurent": 9}, "newThing": [1]}
    assert sorted(unknown_keys(config)) == ["jobs.maxConcurent", "newThing"]


def test_original_runner_jira_username_is_read_as_email() -> None:
    config = parse_config({"tracker": {"jira": {"username": "me@acme.test"}}})
    assert config.tracker.jira.email == "me@acme.test"


def test_save_config_mode_0600_in_a_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "new-home" / "config.json"

    save_config(path, parse_config(HAND_WRITTEN))

    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700


# ── validation ──────────────────────────────────────────────────────────────────────────────


def test_reserved_coro_mcp_id_is_rejected() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"mcpServers": {"coro": {"type": "stdio", "command": "x"}}})
    assert "mcpServers" in caught.value.message
    assert "'coro' is reserved" in caught.value.message


def test_mcp_id_that_would_break_tool_names_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"my\.server"):
        parse_config({"mcpServers": {"my.server": {"type": "stdio", "command": "x"}}})


def test_mcp_kinds_are_told_apart_by_type() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        parse_config({"mcpServers": {"a": {"type": "websocket", "url": "ws://x"}}})
    (issue,) = caught.value.issues
    assert issue.path == "mcpServers.a.type"
    assert '"websocket"' in issue.message
    assert "'stdio'" in issue.message
    assert "'sse'" in issue.message


def test_malformed_json_names_file_line_and_column(coro_home: Path) -> None:
    path = coro_home / "config.json"
    path.write_text('{\n  "jobs": {\n    "maxConcurrent": 4,\n  }\n}\n')

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    message = caught.value.message
    assert str(path) in message
    assert "line 4, column 3" in message
    assert caught.value.title == "Invalid configuration"


def test_invalid_field_names_file_camel_case_path_given_and_expected(coro_home: Path) -> None:
    path = _write(
        coro_home / "config.json",
        {"llm": {"aliases": {"coding": {"model": "m", "reasoningEffort": "extreme"}}}},
    )

    with pytest.raises(ConfigValidationError) as caught:
        load_config(path)

    message = caught.value.message
    assert str(path) in message
    assert "llm.aliases.coding.reasoningEffort" in message
    assert '"extreme"' in message
    assert "'low', 'medium' or 'high'" in message
    assert "reasoning_effort" not in message


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        ({"jobs": {"maxConcurrent": 0}}, "jobs.maxConcurrent", "greater than or equal to 1"),
        ({"server": {"port": "http"}}, "server.port", "a whole number"),
        ({"jobs": 4}, "jobs", "an object"),
        ({"tenant": {"overlay": {"kind": "localDir"}}}, "tenant.overlay.path", "missing"),
        ({"tenant": {"overlay": {"path": "/x"}}}, "tenant.overlay.kind", "'localDir'"),
        (
            {"guardrails": {"rules": [{"id": "r", "check": "nope"}]}},
            "guardrails.rules[0].check",
            "'script'",
        ),
        (
            {"guardrails": {"rules": [{"id": "r", "script": "../x.py"}]}},
            "guardrails.rules[0].script",
            "not a path",
        ),
        ({"mcpServers": {"a": {"type": "http", "url": "ftp://x"}}}, "mcpServers.a.url", "http://"),
        ({"state": {"synchronous": "off"}}, "state.synchronous", "'normal' or 'full'"),
    ],
)
def test_invalid_values_are_reported_at_their_json_path(
    data: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        parse_config(data)
    assert [issue.path for issue in caught.value.issues] == [path]
    assert words in caught.value.issues[0].message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        parse_config({"jobs": {"maxConcurrent": -1}, "polling": {"intervalSeconds": "soon"}})
    assert {issue.path for issue in caught.value.issues} == {
        "jobs.maxConcurrent",
        "polling.intervalSeconds",
    }


def test_a_secret_of_the_wrong_type_is_not_echoed() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        parse_config({"cloud": {"token": 1234567890123}})
    assert "1234567890123" not in caught.value.message
    assert "cloud.token" in caught.value.message


def test_top_level_must_be_an_object(coro_home: Path) -> None:
    path = _write(coro_home / "config.json", [1, 2])
    with pytest.raises(ConfigError, match="expected a JSON object, got a list"):
        load_config(path)


@pytest.mark.parametrize(
    "content",
    [b'{"jobs": ', b"", b'{"jobs": {"maxConcurrent": "many"}}', b"\xff\xfe{}"],
)
def test_a_bad_file_is_never_overwritten(coro_home: Path, content: bytes) -> None:
    path = coro_home / "config.json"
    path.write_bytes(content)
    before = os.stat(path)

    with pytest.raises(ConfigError):
        load_config(path)

    assert path.read_bytes() == content
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in coro_home.iterdir()) == ["config.json"]


def test_unreadable_file_is_a_config_error(coro_home: Path) -> None:
    (coro_home / "config.json").mkdir()
    with pytest.raises(ConfigError, match="Cannot read"):
        load_config(coro_home / "config.json")


def test_utf8_bom_is_accepted(coro_home: Path) -> None:
    path = coro_home / "config.json"
    path.write_bytes(b'\xef\xbb\xbf{"polling": {"intervalSeconds": 5}}')
    assert load_config(path).polling.interval_seconds == 5


def test_assignment_is_validated() -> None:
    config = LocalConfig()
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        config.jobs.max_concurrent = 0


# ── secrets ─────────────────────────────────────────────────────────────────────────────────


def test_redact_masks_every_secret_and_nothing_else() -> None:
    config = parse_config(HAND_WRITTEN)

    redacted = redact(config)
    dumped = json.dumps(redacted)

    for secret in SECRETS:
        assert secret not in dumped, f"{secret} leaked"
    assert redacted["cloud"] == {"url": "https://cloud.example.com", "token": MASK}
    assert redacted["mcpServers"]["sentry"]["env"] == {"SENTRY_TOKEN": MASK, "LOG_LEVEL": MASK}
    assert redacted["mcpServers"]["docs"]["headers"] == {"Authorization": MASK}
    assert redacted["plugins"]["installed"]["sentry"]["config"] == {
        "org": "acme",
        "authToken": MASK,
        "nested": {"client_secret": MASK},
    }
    assert redacted["upstream"] == {"repoUrl": "https://github.com/x/y", "token": MASK}
    # Non-secrets that merely look alike stay readable.
    assert redacted["tracker"]["jira"]["projectKey"] == "PROJ"
    assert redacted["tracker"]["linear"]["teamKey"] == "ENG"
    assert redacted["jobs"]["budget"]["maxTokens"] == 1000000
    assert redacted["git"]["username"] == "dev"
    assert redacted["intelligence"]["gitRemote"] == "git@example.com:t/intel.git"


def test_redact_leaves_unset_secrets_visible_as_unset() -> None:
    redacted = redact(LocalConfig())
    assert redacted["cloud"]["token"] is None
    assert redacted["llm"]["apiKey"] is None
    assert MASK not in json.dumps(redacted)


def test_redacted_copy_saved_back_unchanged_restores_every_secret() -> None:
    config = parse_config(HAND_WRITTEN)
    assert unredact(redact(config), config) == config


def test_unredact_applies_new_values_and_nulls() -> None:
    config = parse_config(HAND_WRITTEN)
    submitted = redact(config)
    submitted["git"]["token"] = "ghp_brand_new"
    submitted["llm"]["apiKey"] = None
    submitted["jobs"]["maxConcurrent"] = 6
    submitted["guardrails"]["rules"].reverse()  # rules are matched by id, not position

    result = unredact(submitted, config)

    assert result.git.token == "ghp_brand_new"
    assert result.llm.api_key is None
    assert result.llm.auth_token == "oauth-token-2"
    assert result.jobs.max_concurrent == 6
    assert result.cloud.token == "cloud-token-123"
    sentry = result.mcp_servers["sentry"]
    assert isinstance(sentry, StdioMcpServer)
    assert sentry.env["SENTRY_TOKEN"] == "env-secret-value"


def test_unredact_refuses_a_mask_with_nothing_behind_it() -> None:
    config = parse_config(HAND_WRITTEN)
    submitted = redact(config)
    submitted["mcpServers"]["renamed"] = submitted["mcpServers"].pop("docs")

    with pytest.raises(ConfigError) as caught:
        unredact(submitted, config)
    assert "mcpServers.renamed.headers.Authorization" in caught.value.message


def test_unredact_reports_invalid_submissions_by_field() -> None:
    submitted = redact(LocalConfig())
    submitted["server"]["port"] = 70000
    with pytest.raises(ConfigValidationError) as caught:
        unredact(submitted, LocalConfig())
    assert caught.value.issues[0].path == "server.port"


def test_redact_text_hides_secrets_in_free_text() -> None:
    config = parse_config(HAND_WRITTEN)
    log = (
        "git push https://dev:ghp_gittoken456@github.com/acme/app failed; "
        "header was 'Bearer header-secret'; model claude-opus-4-1"
    )

    cleaned = redact_text(log, config)

    assert "ghp_gittoken456" not in cleaned
    assert "header-secret" not in cleaned
    assert f"https://dev:{MASK}@github.com/acme/app" in cleaned
    assert "claude-opus-4-1" in cleaned


def test_redact_text_ignores_very_short_secrets() -> None:
    config = parse_config({"cloud": {"token": "abc"}})
    assert redact_text("abc abcdef", config) == "abc abcdef"


def test_overlay_cloud_blob_key_is_not_a_secret() -> None:
    config = parse_config({"tenant": {"overlay": {"kind": "cloudBlob", "key": "overlay-k1"}}})
    assert redact(config)["tenant"]["overlay"]["key"] == "overlay-k1"


# ── fingerprint ─────────────────────────────────────────────────────────────────────────────


def test_fingerprint_tells_content_changes_from_touches(coro_home: Path) -> None:
    path = coro_home / "config.json"
    assert config_fingerprint(path) is None

    save_config(path, parse_config({"jobs": {"maxConcurrent": 2}}))
    first = config_fingerprint(path)
    save_config(path, parse_config({"jobs": {"maxConcurrent": 2}}))
    same = config_fingerprint(path)
    save_config(path, parse_config({"jobs": {"maxConcurrent": 3}}))
    changed = config_fingerprint(path)

    assert first is not None
    assert same is not None
    assert changed is not None
    assert first.same_content(same)
    assert not first.same_content(changed)
    assert first.size == path.stat().st_size


def test_overlay_variants_parse_to_their_own_model() -> None:
    config = parse_config({"tenant": {"overlay": {"kind": "localDir", "path": "/srv/o"}}})
    assert isinstance(config.tenant.overlay, LocalDirOverlay)
    assert config.tenant.overlay.path == "/srv/o"


# ── docs/configuration.md stays in step with the model ─────────────────────────────────────

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _model_leaves() -> dict[str, FieldInfo]:
    """Every leaf field by its documented path, with ``<>`` for keys the user chooses."""
    leaves: dict[str, FieldInfo] = {}

    def models_in(annotation: object) -> list[tuple[str, type[BaseModel]]]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [("", annotation)]
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) is dict:
            return [(f".<>{suffix}", model) for suffix, model in models_in(args[1])]
        if typing.get_origin(annotation) is list:
            return [(f"[]{suffix}", model) for suffix, model in models_in(args[0])]
        return [found for arg in args for found in models_in(arg)]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            path = f"{prefix}{info.alias or name}"
            nested = models_in(info.annotation)
            for suffix, sub_model in nested:
                walk(sub_model, f"{path}{suffix}.")
            if not nested:
                leaves[path] = info

    walk(LocalConfig, "")
    return leaves


def _doc_rows() -> dict[str, str]:
    """``path → default cell`` of every row in the doc's "Field | Default | Meaning" tables."""
    rows: dict[str, str] = {}
    in_field_table = False
    for line in DOC.read_text().splitlines():
        if line.startswith("| Field | Default | Meaning |"):
            in_field_table = True
        elif not line.startswith("|"):
            in_field_table = False
        elif in_field_table and (match := re.match(r"\| `([^`]+)` \| ([^|]+) \|", line)):
            rows[re.sub(r"<[a-z]+>", "<>", match[1])] = match[2].strip()
    return rows


def test_every_config_field_is_documented_with_its_default() -> None:
    leaves, rows = _model_leaves(), _doc_rows()

    assert sorted(set(leaves) - set(rows)) == [], "fields missing from docs/configuration.md"
    assert sorted(set(rows) - set(leaves)) == [], "documented fields that do not exist"
    for path, info in leaves.items():
        if info.is_required():
            assert rows[path] == "required", path
        else:
            default = info.get_default(call_default_factory=True)
            assert json.loads(rows[path].strip("`")) == default, path


def test_every_secret_field_is_listed_as_secret_in_the_doc() -> None:
    section = DOC.read_text().split("## Secrets", 1)[1].split("\n## ", 1)[0]
    for path, info in _model_leaves().items():
        if has_marker(info, SECRET):
            assert f"`{path}`" in section, path
        if has_marker(info, SECRET_VALUES):
            assert f"`{path.rsplit('.', 1)[1]}`" in section, path
