"""``coro demo`` as a developer runs it right after installing: a subprocess with a clean HOME,
no API key and no token; the job must complete and the sample repository's ``main`` must hold
the change, with its tests passing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a fresh machine: a new HOME and CORO_HOME, no provider keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CORO_"))}
    env |= {"HOME": str(home), "CORO_HOME": str(home / ".coro"), "PYTHONPATH": str(ROOT)}
    env.pop("GITHUB_TOKEN", None)
    return env


def coro(*args: str, home: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coro_tui", *args],
        cwd=home,
        env=clean_env(home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_headless_demo_merges_a_real_fix_that_passes_its_tests(tmp_path: Path) -> None:
    user_home, kept = tmp_path / "user", tmp_path / "demo-home"
    user_home.mkdir()

    started = time.monotonic()
    done = coro("demo", "--headless", "--home", str(kept), home=user_home, timeout=120)
    took = time.monotonic() - started

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert took < 60, f"the demo took {took:.1f} s"
    lines = done.stdout.splitlines()
    assert lines[0].startswith("demo: the model is scripted (no API key used)")
    assert any("awaiting-pr-merge" in line for line in lines)
    assert any("approving and merging it" in line for line in lines)
    assert "job textstats-demo complete" in lines[-2]
    assert not (user_home / ".coro").exists()  # --home, not CORO_HOME

    # the merged main branch of the local SCM's repository holds the fix and its tests pass
    checkout = tmp_path / "checkout"
    bare = kept / "local-scm" / "textstats.git"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(bare), str(checkout)], check=True)
    assert "return text.split()\n" in (checkout / "textstats.py").read_text()
    assert "test_an_empty_text_has_no_words" in (checkout / "test_textstats.py").read_text()
    tests = subprocess.run(
        ["python3", "-m", "unittest", "-v"], cwd=checkout, capture_output=True, text=True
    )
    assert tests.returncode == 0, tests.stderr
    assert "Ran 4 tests" in tests.stderr


def test_without_a_terminal_it_runs_headless_and_refuses_a_used_home(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "config.json").write_text("{}")

    done = coro("demo", "--home", str(used), home=tmp_path, timeout=30)

    assert done.returncode == 1
    assert "no terminal, so it runs --headless" in done.stdout
    assert f"--home {used}: not an empty directory" in done.stderr
    assert (used / "config.json").read_text() == "{}"


async def test_the_demo_script_plays_a_plan_session_on_the_sample(tmp_path: Path) -> None:
    """Plan mode is demonstrable offline: the demo's script answers a plan session that reads
    the sample project through the read-only tools, gets ready and writes a brief that
    dispatches."""
    from coro_tui._demo import DEMO_REPO, _started
    from engine.intake import IntakeRequest

    home = tmp_path / "home"
    home.mkdir()
    async with _started(home, lambda _: None) as run:
        intake = run.engine.intake
        messages: list[dict[str, str]] = []
        said = ["word_count looks wrong", "whitespace only", "yes, write the brief"]
        done: dict[str, object] = {}
        tools: list[str] = []
        for text in said:
            messages.append({"role": "user", "content": text})
            request = IntakeRequest.model_validate(
                {"sessionId": "demo-plan", "messages": messages, "context": {"repo": DEMO_REPO}}
            )
            reply = ""
            async for event in intake.run(await intake.begin(request)):
                if event.kind == "token":
                    reply += event.data["text"]
                elif event.kind == "tool_end":
                    assert event.data["ok"], event.data
                    tools.append(event.data["name"])
                elif event.kind == "done":
                    done = event.data
                assert event.kind != "error", event.data
            messages.append({"role": "assistant", "content": reply})
        assert tools == ["scm_list_files", "scm_search_code", "scm_read_file"]
        assert done["readiness"] == {"state": "ready", "openQuestions": [], "note": ""}
        assert done["briefErrors"] == [] and done["brief"]["repo"] == DEMO_REPO  # type: ignore[index]
        job = await intake.dispatch("demo-plan")
        assert job.params["title"] == "Count only real words"
        assert "split" in job.params["planFindings"]
