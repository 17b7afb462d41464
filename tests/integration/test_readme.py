"""The README's two commands work as written, in a fresh copy of the repository.

Each command is taken verbatim from ``README.md`` (the ``sh`` block after its
``<!-- readme-command: NAME -->`` marker) and run with ``bash -c`` in a copy of the working tree
(tracked files and untracked ones git does not ignore), so it makes its own virtual environment
as a newcomer's would. pip's cache is left on. The test command runs one small test file
(``PYTEST_ADDOPTS``) and this file skips itself inside it, so it does not recurse.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Set in the environment of the README's test command: this file then skips itself.
INSIDE = "CORO_README_TEST"
#: What the README's test command runs here: small, quick, and not this file.
SMALL_TEST_FILE = "tests/unit/test_paths_fs.py"
#: A fresh virtual environment and pip install take a while, even from pip's cache.
TIMEOUT = 900

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get(INSIDE)), reason="inside the README's test command (no recursion)"
    ),
]


def readme_commands() -> dict[str, str]:
    """``name → command`` for every ``<!-- readme-command: NAME -->`` block of README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"<!-- readme-command: (\w+) -->\n```sh\n(.*?)\n```", text, re.S)
    return dict(found)


def _venv_problem() -> str | None:
    """Why ``python3 -m venv`` cannot make a working environment here, or ``None``."""
    python3 = shutil.which("python3")
    if python3 is None:
        return "no python3 on PATH"
    probe = subprocess.run(
        [python3, "-c", "import ensurepip, venv"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"python3 -m venv is unavailable (install python3-venv): {probe.stderr.strip()}"
    return None


def fresh_copy(dest: Path) -> Path:
    """The working tree's files git knows or would add, copied to ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if not source.is_file():  # deleted in the working tree, or a submodule
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


def run_readme_command(
    name: str, tmp_path: Path, extra_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    problem = _venv_problem()
    if problem is not None:
        pytest.skip(problem)
    command = readme_commands()[name]
    checkout = fresh_copy(tmp_path / "coro")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS", "CORO_URL"}
        and not key.startswith("PYTEST_")
    }
    # The running interpreter's venv, if its bin directory is on PATH, must not be picked up.
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["CORO_HOME"] = str(tmp_path / "home")
    env.update(extra_env)
    return subprocess.run(
        ["bash", "-c", command],
        cwd=checkout,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    out, err = result.stdout[-4000:], result.stderr[-4000:]
    return f"exit {result.returncode}\nstdout:\n{out}\nstderr:\n{err}"


def test_the_readme_has_both_commands_each_one_line() -> None:
    commands = readme_commands()
    assert set(commands) == {"demo", "tests"}, f"README.md's marked commands: {sorted(commands)}"
    for name, command in commands.items():
        assert "\n" not in command, f"the {name} command is one line to copy: {command!r}"
        assert command.startswith("python3 -m venv .venv && "), command


def test_ci_runs_the_readmes_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert readme_commands()["tests"] in ci.splitlines(), (
        ".ci/run must run README.md's test command, verbatim, on a line of its own"
    )


def test_the_readmes_test_command_works_in_a_fresh_copy(tmp_path: Path) -> None:
    result = run_readme_command(
        "tests",
        tmp_path,
        {INSIDE: "1", "PYTEST_ADDOPTS": f"{SMALL_TEST_FILE} -p no:cacheprovider"},
    )
    assert result.returncode == 0, _tail(result)
    assert re.search(r"\b\d+ passed\b", result.stdout), _tail(result)
    assert (tmp_path / "coro" / ".venv" / "bin" / "pytest").is_file()


def test_the_readmes_demo_command_completes_a_job_headless(tmp_path: Path) -> None:
    # stdout is a pipe here, so `coro demo` runs headless by itself.
    result = run_readme_command("demo", tmp_path, {})
    assert result.returncode == 0, _tail(result)
    output = result.stdout + result.stderr
    assert re.search(r"scripted", output, re.I), _tail(result)
    assert re.search(r"\bcomplete\b", result.stdout), _tail(result)
