"""``coro plan`` as a subprocess in a pipe, against ``coro start --headless`` and ``coro
model-server``, both subprocesses: a plan read from stdin, answered, its brief dispatched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.integration.test_cli_headless import COMPLETE_SCRIPT, WORKFLOW, Setup, setup

__all__ = ["setup"]

BRIEF = {
    "repo": "acme/svc",
    "title": "Rate limit",
    "description": "Enforce RATE in limits.py, with a test.",
    "workflowPath": WORKFLOW,
}

_ASK = {"state": "investigating", "openQuestions": ["the limit"]}
_LOOKING = {"state": "investigating"}
_READY = {"state": "ready"}

PLAN_SCRIPT = COMPLETE_SCRIPT + json.dumps(
    {
        "chat_turns": [
            [
                {"tool_calls": [{"name": "scm_read_file", "input": {"path": "limits.py"}}]},
                {
                    "when": [
                        {
                            "if_result_contains": "RATE = None",
                            "text": "RATE is not enforced. How many a minute? "
                            f"<readiness>{json.dumps(_ASK)}</readiness>",
                        },
                        {"text": f"Not found. <readiness>{json.dumps(_LOOKING)}</readiness>"},
                    ]
                },
            ],
            [
                {
                    "text": f"Ready. <brief>{json.dumps(BRIEF)}</brief>"
                    f"<readiness>{json.dumps(_READY)}</readiness>"
                }
            ],
        ]
    }
)[1:-1].join(["\n", "\n"])


def _checkout(tmp: Path) -> Path:
    repo = tmp / "svc"
    repo.mkdir()
    (repo / "limits.py").write_text("RATE = None\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def test_a_piped_plan_is_answered_and_dispatched(setup: Setup) -> None:
    setup.configure(setup.model_server(PLAN_SCRIPT))
    runner = setup.runner()
    assert runner.url
    repo = _checkout(setup.tmp)
    stdin = "Rate-limit the users API\n---\nSixty, and write the brief\n"
    done = subprocess.run(
        [*_coro_cmd(), "plan", "--path", str(repo), "--session", "cli-1", "--json", "--dispatch"],
        input=stdin, env=setup.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line.get("turns") for line in lines[:2]] == [1, 2]
    first, second, dispatched = lines
    assert first["reply"] == "RATE is not enforced. How many a minute?"
    assert first["readiness"]["openQuestions"] == ["the limit"]
    assert [t["name"] for t in first["tools"]] == ["scm_read_file"]
    assert second["brief"]["title"] == "Rate limit" and second["briefErrors"] == []
    job = dispatched["dispatched"]
    assert job["params"]["description"] == BRIEF["description"]

    listed = setup.cli("plan", "--list")
    assert "cli-1" in listed.stdout and "dispatched" in listed.stdout
    again = setup.cli("plan", "--session", "cli-1", "more?")
    assert again.returncode == 1 and "dispatched" in again.stderr


def test_without_a_runner_plan_says_how_to_start_one(setup: Setup) -> None:
    done = setup.cli("plan", "hello")
    assert done.returncode == 3 and "coro start --headless" in done.stderr


def _coro_cmd() -> list[str]:
    import sys

    return [sys.executable, "-m", "coro_tui"]
