"""The TUI in a real terminal: tmux runs ``coro`` (engine, HTTP API and TUI in one process) on
the real Anthropic executor against ``coro model-server``; a job submitted with ``coro job``
shows up, parks at its checkpoint, is opened and approved from the keyboard, and completes.

Everything the developer would touch is real: the terminal, the keys, the processes, the
HTTP API the CLI talks to. Only the model is scripted.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.engine import write_intelligence

SCRIPT = """
phases:
  spec:
    - text: "Spec written."
  build:
    - text: "Built."
  review:
    - text: "Reviewed."
"""
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Terminal:
    """One tmux session running a command, 120x40."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.name = f"coro-e2e-{uuid.uuid4().hex[:8]}"
        shell = " ".join("'" + p.replace("'", "'\\''") + "'" for p in command)
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", "120", "-y", "40", shell],
            env=env, check=True,
        )  # fmt: skip

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True
        ).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, check: Callable[[str], bool], what: str, within: float = 30) -> str:
        deadline = time.monotonic() + within
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if check(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"waited {within:g} s for {what}; the screen shows:\n{screen}")

    def alive(self) -> bool:
        probe = subprocess.run(["tmux", "has-session", "-t", self.name], capture_output=True)
        return probe.returncode == 0

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[str]:
    script = tmp_path / "script.yaml"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "coro_tui", "model-server", "--script", str(script), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("http://"), url
    yield url
    proc.terminate()
    proc.wait(10)
    proc.stdout.close()


def test_a_job_is_watched_and_its_checkpoint_approved_from_the_keyboard(
    coro_home: Path, model_server: str
) -> None:
    write_intelligence(coro_home)
    port = free_port()
    config = {
        "llm": {"defaultProvider": "anthropic", "apiKey": "sk-test-tmux", "baseUrl": model_server},
        "server": {"port": port},
        "jobs": {"idleWatchdog": {"enabled": False}},
    }
    (coro_home / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "CORO_HOME": str(coro_home), "TERM": "xterm-256color"}
    env.pop("CORO_URL", None)
    anchor = Terminal(["sleep", "600"], env)  # keeps the tmux server up between sessions
    tui = Terminal([sys.executable, "-m", "coro_tui"], env)
    try:
        tui.wait_for(lambda s: "Runs —" in s, "the runs screen")
        assert (coro_home / "runner.json").exists()  # the CLI finds the TUI's runner there
        submitted = subprocess.run(
            [sys.executable, "-m", "coro_tui", "job", "--repo", "svc", "--reviewers", "ana",
             "--description", "Limit requests", "--workflow", "workflows/test/workflow.md",
             "--interactive", "--no-stream", "--json"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        job_id = json.loads(submitted.stdout)["jobId"]

        # the job moves through spec and build, then waits at the checkpoint: marked as needing me
        runs = tui.wait_for(
            lambda s: job_id[:15] in s and "awaiting-developer-input" in s,
            "the job at its checkpoint",
        )
        shown = job_id[:15]  # the table shortens long ids
        row = next(line for line in runs.splitlines() if line.lstrip().startswith(f"!  {shown}"))
        assert "awaiting-developer-input" in row and "svc" in row

        tui.keys("Enter")
        job_screen = tui.wait_for(lambda s: "✓ spec" in s, "the job screen's phase strip")
        assert "build" in job_screen and "○ review" in job_screen

        tui.keys("a")
        done = tui.wait_for(lambda s: "complete" in s, "the job to complete after approval")
        assert job_id in done or "review" in done

        status = subprocess.run(
            [sys.executable, "-m", "coro_tui", "status", job_id, "--json"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert json.loads(status.stdout)["status"] == "complete"

        tui.keys("Escape")
        tui.wait_for(lambda s: "Runs —" in s, "the runs screen again")  # ESC then q is alt+q
        tui.keys("q")
        deadline = time.monotonic() + 20
        while tui.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not tui.alive(), tui.screen()
        assert not (coro_home / "runner.json").exists()
    finally:
        tui.close()
        anchor.close()


def test_an_attached_tui_sees_and_approves_a_headless_runners_job(
    coro_home: Path, model_server: str
) -> None:
    write_intelligence(coro_home)
    config = {
        "llm": {"defaultProvider": "anthropic", "apiKey": "sk-test-tmux", "baseUrl": model_server},
        "server": {"port": free_port()},
        "jobs": {"idleWatchdog": {"enabled": False}},
    }
    (coro_home / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "CORO_HOME": str(coro_home), "TERM": "xterm-256color"}
    env.pop("CORO_URL", None)
    runner = subprocess.Popen(
        [sys.executable, "-m", "coro_tui", "start", "--headless"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    anchor = Terminal(["sleep", "600"], env)
    tui: Terminal | None = None
    try:
        assert runner.stdout is not None
        url = runner.stdout.readline().strip()
        assert url.startswith("http://"), url
        submitted = subprocess.run(
            [sys.executable, "-m", "coro_tui", "job", "--repo", "svc", "--reviewers", "ana",
             "--description", "Limit requests", "--workflow", "workflows/test/workflow.md",
             "--interactive", "--no-stream", "--json"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        job_id = json.loads(submitted.stdout)["jobId"]

        tui = Terminal([sys.executable, "-m", "coro_tui", "attach", url], env)
        attached = tui.wait_for(lambda s: "Runs —" in s and "attached to" in s, "attaching")
        assert url in attached
        tui.wait_for(lambda s: job_id[:15] in s and "awaiting-developer-input" in s,
                     "the headless runner's job at its checkpoint")  # fmt: skip
        tui.keys("Enter")
        tui.wait_for(lambda s: "✓ spec" in s, "the job screen")
        tui.keys("a")
        tui.wait_for(lambda s: "complete" in s, "the job to complete after approval")

        tui.keys("Escape")
        tui.wait_for(lambda s: "Runs —" in s, "the runs screen again")
        tui.keys("q")
        deadline = time.monotonic() + 20
        while tui.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not tui.alive(), tui.screen()
        # quitting an attached TUI leaves the runner running
        assert runner.poll() is None
        status = subprocess.run(
            [sys.executable, "-m", "coro_tui", "status", job_id, "--json"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert json.loads(status.stdout)["status"] == "complete"
    finally:
        if tui is not None:
            tui.close()
        anchor.close()
        runner.terminate()
        runner.wait(30)
        if runner.stdout is not None:
            runner.stdout.close()


STEER_SCRIPT = """
phases:
  spec:
    - tool_calls: [{name: Bash, input: {command: "sleep 6"}}]
    - text: "Spec done."
  build:
    - text: "Built."
  review:
    - text: "Reviewed."
"""


def test_a_steer_message_is_typed_on_a_running_jobs_screen_and_delivered(
    coro_home: Path, tmp_path: Path
) -> None:
    """``m`` on the job screen of a job whose phase runs a tool: the line says what it runs,
    the message is accepted at once and delivered with the model's next turn."""
    write_intelligence(coro_home)
    script = tmp_path / "steer.yaml"
    script.write_text(STEER_SCRIPT)
    server = subprocess.Popen(
        [sys.executable, "-m", "coro_tui", "model-server", "--script", str(script), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    url = server.stdout.readline().strip()
    config = {
        "llm": {"defaultProvider": "anthropic", "apiKey": "sk-test-tmux", "baseUrl": url},
        "server": {"port": free_port()},
        "jobs": {"idleWatchdog": {"enabled": False}},
    }
    (coro_home / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "CORO_HOME": str(coro_home), "TERM": "xterm-256color"}
    env.pop("CORO_URL", None)
    anchor = Terminal(["sleep", "600"], env)
    tui = Terminal([sys.executable, "-m", "coro_tui"], env)
    try:
        tui.wait_for(lambda s: "Runs —" in s, "the runs screen")
        submitted = subprocess.run(
            [sys.executable, "-m", "coro_tui", "job", "--repo", "svc", "--reviewers", "ana",
             "--description", "Limit requests", "--workflow", "workflows/test/workflow.md",
             "--no-stream", "--json"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        job_id = json.loads(submitted.stdout)["jobId"]
        tui.wait_for(lambda s: job_id[:15] in s, "the job in the runs list")
        tui.keys("Enter")
        tui.wait_for(lambda s: "now: tool Bash: sleep 6" in s, "the tool in flight")

        tui.keys("m")
        tui.wait_for(lambda s: "message (steer)" in s, "the message line")
        tui.keys("-l", "add a changelog entry")
        tui.keys("Enter")
        tui.wait_for(
            lambda s: "you (steer): add a changelog entry  [accepted]" in s, "the message accepted"
        )
        tui.wait_for(lambda s: "add a changelog entry  [delivered at turn" in s,
                     "the message delivered with the next turn", within=30)  # fmt: skip
    finally:
        tui.close()
        anchor.close()
        server.terminate()
        server.wait(10)
        server.stdout.close()


def test_the_demo_in_a_terminal_is_merged_with_g_and_completes(tmp_path: Path) -> None:
    """``coro demo`` as a newcomer runs it: the screen says the model is scripted and which key
    merges the pull request; ``g`` then ``y`` merges it, the job completes, ``q`` quits."""
    home = tmp_path / "demo-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORO_", "ANTHROPIC_"))}
    env["TERM"] = "xterm-256color"
    anchor = Terminal(["sleep", "600"], env)
    tui = Terminal([sys.executable, "-m", "coro_tui", "demo", "--home", str(home)], env)
    try:
        tui.wait_for(lambda s: "scripted" in s and "press g" in s, "the scripted-model notice")
        tui.wait_for(lambda s: "g approve and merge" in s, "the job waiting for the merge", 90)
        tui.keys("g")
        tui.wait_for(lambda s: "#1" in s and "textstats" in s, "the question naming the PR")
        tui.keys("y")
        tui.wait_for(lambda s: "complete" in s, "the job completing", 90)
        tui.keys("q")
        deadline = time.monotonic() + 20
        while tui.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not tui.alive()
        merged = subprocess.run(
            ["git", "--git-dir", str(home / "local-scm" / "textstats.git"), "log", "--oneline",
             "main"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert merged.returncode == 0 and len(merged.stdout.splitlines()) >= 2, merged
    finally:
        tui.close()
        anchor.close()
