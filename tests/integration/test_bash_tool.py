"""The Bash built-in with real processes: output caps, timeouts, interrupts and the environment.

A command tells the test its process group by connecting to a loopback TCP listener
(``/dev/tcp``), so the test waits for an event, never for time to pass. Whether processes have
died is awaited through pidfds, which become readable when the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.phase import ToolOutcome
from engine.tools.builtin import BuiltinToolBox, bash_environment

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@pytest.fixture
def job(tmp_path: Path) -> Path:
    root = tmp_path / "job"
    (root / "_intelligence").mkdir(parents=True)
    return root


@pytest.fixture
async def box(job: Path) -> AsyncIterator[BuiltinToolBox]:
    box = BuiltinToolBox(root=job, cwd=job, overlay_dir=job / "_intelligence")
    yield box
    await box.aclose()


class Reporter:
    """A loopback listener a command reports its process group to: ``echo $$ > /dev/tcp/…``."""

    def __init__(self) -> None:
        self.pgids: asyncio.Queue[int] = asyncio.Queue()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Reporter:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def report(self) -> str:
        """Shell code that sends the command's process group id."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"echo $$ > /dev/tcp/127.0.0.1/{port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.close()
        await self.pgids.put(int(line))

    async def next_pgid(self) -> int:
        async with asyncio.timeout(10):
            return await self.pgids.get()


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group, from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


async def all_exited(pids: list[int]) -> None:
    """Return once every process in ``pids`` has exited (pidfds turn readable on exit)."""
    loop = asyncio.get_running_loop()
    waits = []
    fds = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        fds.append(fd)
        done = loop.create_future()
        loop.add_reader(fd, lambda f=done: f.done() or f.set_result(None))
        waits.append(done)
    try:
        await asyncio.gather(*waits)
    finally:
        for fd in fds:
            loop.remove_reader(fd)
            os.close(fd)


async def run(box: BuiltinToolBox, command: str, **extra: object) -> ToolOutcome:
    async with asyncio.timeout(30):
        return await box.call("Bash", {"command": command, **extra})


async def test_output_exit_code_and_stderr(box: BuiltinToolBox, job: Path) -> None:
    outcome = await run(box, "pwd; echo oops >&2; cat; exit 3")  # cat reads /dev/null
    assert not outcome.is_error
    assert outcome.text == f"{job.resolve()}\n[stderr]\noops\n[exit code 3]"
    assert (await run(box, "true")).text == "(no output)"
    assert box.running_processes == 0


async def test_a_megabyte_of_output_is_capped_with_a_note(job: Path) -> None:
    box = BuiltinToolBox(root=job, cwd=job, overlay_dir=job / "_intelligence", output_cap=4096)
    command = "head -c 1048576 /dev/zero | tr '\\0' a; head -c 10000 /dev/zero | tr '\\0' b >&2"
    outcome = await run(box, command)
    assert not outcome.is_error
    stdout, stderr = outcome.text.split("\n[stderr]\n")
    assert stdout == "a" * 4096 + f"\n[stdout truncated: {1048576 - 4096} more bytes]"
    assert stderr == "b" * 4096 + f"\n[stderr truncated: {10000 - 4096} more bytes]"
    await box.aclose()


async def test_a_timeout_stops_the_whole_group(box: BuiltinToolBox) -> None:
    async with Reporter() as reporter:
        call = asyncio.create_task(
            run(box, f"sleep 600 & {reporter.report}; sleep 600; wait", timeout=500)
        )
        pgid = await reporter.next_pgid()
        members = group_members(pgid)
        assert len(members) >= 2  # bash and its sleeps
        outcome = await call
    assert outcome.is_error
    assert outcome.text.startswith("[timed out after 0.5 s")
    async with asyncio.timeout(1):
        await all_exited(members)
    assert group_members(pgid) == []
    assert box.running_processes == 0


@pytest.mark.slow
async def test_a_group_that_ignores_sigterm_is_killed(box: BuiltinToolBox) -> None:
    async with Reporter() as reporter:
        call = asyncio.create_task(
            run(box, f"trap '' TERM; sleep 600 & {reporter.report}; wait", timeout=200)
        )
        pgid = await reporter.next_pgid()
        members = group_members(pgid)
        started = time.monotonic()
        outcome = await call
    assert outcome.is_error and "timed out" in outcome.text
    assert time.monotonic() - started >= 1.5  # SIGTERM was ignored; SIGKILL came after grace
    async with asyncio.timeout(1):
        await all_exited(members)
    assert group_members(pgid) == []


async def test_cancelling_the_call_kills_children_and_grandchildren_within_a_second(
    box: BuiltinToolBox,
) -> None:
    async with Reporter() as reporter:
        command = f"sleep 600 & bash -c 'sleep 600 & wait' & {reporter.report}; sleep 600; wait"
        call = asyncio.create_task(run(box, command))
        pgid = await reporter.next_pgid()
        members = group_members(pgid)
        async with asyncio.timeout(5):  # the grandchild may not be forked yet
            while len(members) < 4:  # bash, sleep, bash (child), sleep (grandchild)
                await asyncio.sleep(0.01)
                members = group_members(pgid)
        assert box.running_processes == 1
        started = time.monotonic()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        async with asyncio.timeout(1):
            await all_exited(members)
    assert time.monotonic() - started < 1
    assert group_members(pgid) == []
    with pytest.raises(ProcessLookupError):
        os.kill(pgid, 0)  # the leader was reaped, not left a zombie
    assert box.running_processes == 0


async def test_aclose_kills_a_running_command(box: BuiltinToolBox) -> None:
    async with Reporter() as reporter:
        call = asyncio.create_task(run(box, f"{reporter.report}; sleep 600 & sleep 600; wait"))
        pgid = await reporter.next_pgid()
        members = group_members(pgid)
        async with asyncio.timeout(1):
            await box.aclose()
            outcome = await call
            await all_exited(members)
    assert outcome.is_error and "tool box was closed" in outcome.text
    assert group_members(pgid) == []
    assert box.running_processes == 0
    await box.aclose()  # idempotent
    assert "closed" in (await run(box, "true")).text


async def test_aclose_kills_background_processes_a_finished_command_left(
    box: BuiltinToolBox,
) -> None:
    server = await run(box, "sleep 600 > /dev/null 2>&1 & echo $!")
    holder = await run(box, "sleep 600 & echo $!")
    assert not server.is_error and not holder.is_error
    assert "still hold the command's output" in holder.text
    pids = [int(server.text), int(holder.text.splitlines()[0])]
    assert all(Path(f"/proc/{pid}").exists() for pid in pids)
    assert box.running_processes == 0
    async with asyncio.timeout(1):
        await box.aclose()
        await all_exited(pids)


async def test_a_long_timeout_is_clamped_and_says_so(job: Path) -> None:
    box = BuiltinToolBox(
        root=job,
        cwd=job,
        overlay_dir=job / "_intelligence",
        bash_default_timeout=5,
        bash_max_timeout=10,
    )
    outcome = await run(box, "echo fine", timeout=3_600_000)
    assert not outcome.is_error
    assert outcome.text == (
        "fine\n[a timeout of 3600 s was asked for; the maximum is 10 s, so the command got 10 s]"
    )


async def test_a_command_that_cannot_start_is_an_error(job: Path) -> None:
    cwd = job / "gone"
    cwd.mkdir()
    box = BuiltinToolBox(root=job, cwd=cwd, overlay_dir=job / "_intelligence")
    cwd.rmdir()
    outcome = await run(box, "true")
    assert outcome.is_error and outcome.text.startswith("Bash: could not start /bin/bash")


async def test_the_environment_carries_no_secret(
    job: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_planted")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-planted")
    monkeypatch.setenv("HARMLESS_NAME", "value-from-config")
    monkeypatch.setenv("VISIBLE", "yes")
    box = BuiltinToolBox(
        root=job,
        cwd=job,
        overlay_dir=job / "_intelligence",
        env=bash_environment(secrets=["value-from-config"]),
    )
    outcome = await run(box, "env")
    assert "VISIBLE=yes" in outcome.text and "GIT_TERMINAL_PROMPT=0" in outcome.text
    for planted in ("ghp_planted", "sk-ant-planted", "value-from-config"):
        assert planted not in outcome.text
    await box.aclose()
