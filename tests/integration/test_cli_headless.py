"""The ``coro`` CLI as a subprocess against ``coro start --headless``, itself a subprocess.

Everything is real: the runner process with SQLite and its API on loopback, the Anthropic
executor with the real SDK, and the scripted model endpoint (``coro model-server``) as the
only stand-in, for the model.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from tests.support.engine import write_intelligence

WORKFLOW = "workflows/test/workflow.md"
API_KEY = "sk-ant-test-key-0123456789"
COMPLETE_SCRIPT = """
phases:
  spec:
    - text: "Writing the spec."
      tool_calls: [{name: mcp__coro__log, input: {message: "spec written"}}]
    - text: "Spec done."
  build:
    - text: "Built."
  review:
    - text: "Reviewed."
"""
ESCALATE_SCRIPT = """
phases:
  spec:
    - tool_calls: [{name: mcp__coro__escalate, input: {reason: "the repo does not exist"}}]
"""
#: The build phase's first answer stalls for a minute: the phase is mid-flight when we signal.
STALL_SCRIPT = """
phases:
  spec:
    - tool_calls: [{name: mcp__coro__log, input: {message: "spec line 1"}}]
    - tool_calls: [{name: mcp__coro__log, input: {message: "spec line 2"}}]
    - text: "Spec done."
  build:
    - tool_calls: [{name: mcp__coro__log, input: {message: "build line 1"}}]
    - text: "Built."
  review:
    - tool_calls: [{name: mcp__coro__log, input: {message: "review line 1"}}]
    - text: "Reviewed."
faults:
  - phase: build
    kind: stall
    stall_seconds: 60
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """A background process whose first stdout line is its URL; stderr goes to a file."""

    popen: subprocess.Popen[str]
    stderr_file: Path
    url: str = ""
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, args: list[str], env: dict[str, str], stderr_file: Path) -> Proc:
        err: IO[str] = stderr_file.open("a")
        popen = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1
        )
        err.close()
        proc = cls(popen, stderr_file)
        proc.url = proc._first_line(timeout=30)
        return proc

    def _first_line(self, timeout: float) -> str:
        assert self.popen.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.popen.stdout.readline()))  # type: ignore[union-attr]
        reader.daemon = True
        reader.start()
        reader.join(timeout)
        if not box or not box[0].strip():
            self.popen.kill()
            raise AssertionError(f"no URL from {self.popen.args!r}; stderr:\n{self.stderr}")
        return box[0].strip()

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()


@dataclass
class Setup:
    home: Path
    env: dict[str, str]
    tmp: Path
    procs: list[Proc] = field(default_factory=list)

    def model_server(self, script: str) -> str:
        path = self.tmp / "script.yaml"
        path.write_text(script)
        proc = Proc.start(
            [*_coro(), "model-server", "--script", str(path), "--port", "0"],
            self.env, self.tmp / "model-server.err",
        )  # fmt: skip
        self.procs.append(proc)
        return proc.url

    def configure(self, model_url: str, port: int = 0, **extra: Any) -> None:
        config = {
            "llm": {"apiKey": API_KEY, "baseUrl": model_url,
                    "retry": {"stallSeconds": 120, "initialDelaySeconds": 0.05}},
            "server": {"port": port},
            **extra,
        }  # fmt: skip
        (self.home / "config.json").write_text(json.dumps(config))

    def runner(self, *args: str) -> Proc:
        proc = Proc.start(
            [*_coro(), "start", "--headless", *args], self.env, self.tmp / "runner.err"
        )
        self.procs.append(proc)
        return proc

    def cli(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_coro(), *args], env={**self.env, **env}, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip


def _coro() -> list[str]:
    return [sys.executable, "-m", "coro_tui"]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    write_intelligence(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORO_", "ANTHROPIC_"))}
    env["CORO_HOME"] = str(home)
    made = Setup(home, env, tmp_path)
    try:
        yield made
    finally:
        for proc in reversed(made.procs):
            proc.kill()


def _job_args(*extra: str) -> list[str]:
    return ["job", "--workflow", WORKFLOW, "--repo", "acme/svc", "--reviewers", "bob,carol",
            "--description", "add rate limiting", *extra]  # fmt: skip


# -- the happy path -------------------------------------------------------------------------------
def test_a_job_from_submit_to_complete_through_the_cli(setup: Setup) -> None:
    setup.configure(setup.model_server(COMPLETE_SCRIPT))
    runner = setup.runner("--grace", "5")
    assert runner.url.startswith("http://127.0.0.1:")
    token_line = runner.popen.stdout.readline()  # type: ignore[union-attr]
    assert token_line.strip() == f"token: {setup.home / 'runner.token'}"

    done = setup.cli(*_job_args())
    assert done.returncode == 0, done.stderr
    assert "── phase - → spec" in done.stdout
    assert "spec written" in done.stdout
    assert "is complete" in done.stderr
    job_id = done.stderr.split()[1]

    listed = setup.cli("jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)["jobs"]
    assert [(j["id"], j["status"]) for j in jobs] == [(job_id, "complete")]
    assert jobs[0]["params"]["reviewers"] == ["bob", "carol"]
    table = setup.cli("jobs", "--status", "complete")
    assert job_id in table.stdout and "STATUS" in table.stdout
    assert setup.cli("jobs", "--status", "escalated").stdout.strip() == (
        "no jobs with status escalated"
    )

    status = setup.cli("status", job_id)
    assert status.returncode == 0 and "complete" in status.stdout
    assert json.loads(setup.cli("status", job_id, "--json").stdout)["status"] == "complete"
    logs = setup.cli("logs", job_id)
    assert logs.returncode == 0 and logs.stdout.splitlines() == ["spec written"]
    as_json = [json.loads(line) for line in setup.cli("logs", job_id, "--json").stdout.split("\n")
               if line]  # fmt: skip
    assert [entry["line"] for entry in as_json] == ["spec written"]
    followed = setup.cli("logs", job_id, "--follow")
    assert followed.returncode == 0 and followed.stdout.splitlines() == ["spec written"]

    info = json.loads(setup.cli("runner", "status", "--json").stdout)
    assert info["mode"] == "headless" and info["url"] == runner.url
    assert info["byStatus"] == {"complete": 1}

    assert runner.stop() == 0
    log = runner.stderr
    assert "level=info" in log and 'msg="runner ready"' in log
    assert f"job={job_id}" in log and "to=complete" in log
    assert API_KEY not in log
    assert not (setup.home / "runner.json").exists()


def test_exit_codes_a_script_can_rely_on(setup: Setup) -> None:
    unreachable = setup.cli("jobs")  # no runner has ever run here: no token
    assert unreachable.returncode == 3 and "coro start --headless" in unreachable.stderr

    setup.configure(setup.model_server(ESCALATE_SCRIPT))
    runner = setup.runner()
    usage = setup.cli("job", "--workflow", WORKFLOW, "--repo", "acme/svc")
    assert usage.returncode == 2 and "--reviewers, --description" in usage.stderr
    bad_mode = setup.cli("message", "some-job", "hi", "--mode", "loud")
    assert bad_mode.returncode == 2

    escalated = setup.cli(*_job_args())
    assert escalated.returncode == 1, escalated.stdout + escalated.stderr
    assert "escalated: the repo does not exist" in escalated.stderr
    job_id = escalated.stderr.split()[1]
    assert setup.cli("status", job_id).returncode == 1

    unknown = setup.cli("status", "no-such-job")
    assert unknown.returncode == 1 and "404" in unknown.stderr
    bad_workflow = setup.cli(*_job_args("--workflow", "../etc/passwd.md"))
    assert bad_workflow.returncode == 2
    assert "must be a relative .md path" in bad_workflow.stderr
    refused = setup.cli("approve", job_id)
    assert refused.returncode == 1 and "409" in refused.stderr

    assert runner.stop() == 0
    gone = setup.cli("jobs")
    assert gone.returncode == 3 and "no runner answers" in gone.stderr


def test_an_interactive_job_parks_then_approve_and_follow_to_the_end(setup: Setup) -> None:
    setup.configure(setup.model_server(COMPLETE_SCRIPT))
    setup.runner()
    parked = setup.cli(*_job_args("--interactive"))
    assert parked.returncode == 0, parked.stderr
    assert "is parked" in parked.stderr and "coro approve" in parked.stderr
    job_id = parked.stderr.split()[1]

    approved = setup.cli("approve", job_id, "-m", "looks good")
    assert approved.returncode == 0, approved.stderr
    followed = setup.cli("logs", job_id, "--follow")
    assert followed.returncode == 0, followed.stderr
    assert json.loads(setup.cli("status", job_id, "--json").stdout)["status"] == "complete"


# -- shutdown, restart, reconnect ---------------------------------------------------------------
def test_sigterm_mid_phase_exits_0_and_the_job_resumes_with_followers_reconnecting(
    setup: Setup,
) -> None:
    port = _free_port()
    setup.configure(setup.model_server(STALL_SCRIPT), port=port)
    first = setup.runner("--grace", "1")
    submitted = setup.cli(*_job_args("--no-stream"))
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()

    follower = subprocess.Popen(
        [*_coro(), "logs", job_id, "--follow"], env=setup.env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while json.loads(setup.cli("status", job_id, "--json").stdout).get("phase") != "build":
            assert time.monotonic() < deadline, "the job never reached the build phase"
            time.sleep(0.2)
        time.sleep(0.5)  # the build phase's first model call is now stalled

        began = time.monotonic()
        assert first.stop(signal.SIGTERM, timeout=20) == 0
        assert time.monotonic() - began < 1 + 10
        assert "mid-phase at shutdown" in first.stderr
        saved = setup.cli("status", job_id, "--json")
        assert saved.returncode == 3  # nobody answers while the runner is down

        second = setup.runner("--grace", "1")
        assert second.url == f"http://127.0.0.1:{port}"
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert "reconnecting" in err
    assert out.splitlines() == [
        "spec line 1",
        "spec line 2",
        "[recovered] resuming phase build after a restart",
        "build line 1",
        "review line 1",
    ]
    assert json.loads(setup.cli("status", job_id, "--json").stdout)["status"] == "complete"


def test_a_taken_port_says_who_has_it(setup: Setup) -> None:
    port = _free_port()
    setup.configure("http://127.0.0.1:9", port=port)
    setup.runner()
    again = subprocess.run(
        [*_coro(), "start", "--headless"], env=setup.env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert again.returncode == 1
    assert "a coro runner is already listening" in again.stderr and "coro attach" in again.stderr

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        foreign = subprocess.run(
            [*_coro(), "start", "--headless", "--port", str(taken)], env=setup.env,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert foreign.returncode == 1
    assert "taken by another program" in foreign.stderr


def test_json_logs_and_a_public_host_warning(setup: Setup) -> None:
    setup.configure("http://127.0.0.1:9")
    runner = setup.runner("--log-format", "json", "--host", "0.0.0.0")
    assert runner.url.startswith("http://0.0.0.0:")
    assert runner.stop() == 0
    records = [json.loads(line) for line in runner.stderr.splitlines() if line.startswith("{")]
    messages = [r["msg"] for r in records]
    assert "runner ready" in messages and "runner stopped" in messages
    assert any(r["level"] == "warning" and "only the token" in r["msg"] for r in records)
