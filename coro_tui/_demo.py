"""``coro demo``: one whole job, for real, with a scripted model and a throwaway ``CORO_HOME``.

::

    code = run_demo(DemoOptions(home=None, headless=True))   # what `coro demo --headless` does

The scripted model endpoint (``engine.model_server``) plays the model on loopback, from
``demo/script.yaml``; the anthropic executor talks to it through ``llm.baseUrl`` with a dummy
key, so every other part is the real thing: the standard workflow and the base agents, the
tools (files are really written, tests really run), git, and the local SCM, which holds the
sample project of ``demo/sample/`` and the pull request the job opens. The job parks until
the pull request is approved and merged: by the developer with ``g`` on the job screen, or by
the demo itself with ``--headless``. Then evaluation runs and the job completes.

Nothing heavy is imported at module load: the engine when the demo starts, Textual only for
the TUI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from coro_tui._startup import Launch, Session
    from coro_tui.app import CoroApp, Opener
    from coro_tui.client import LocalClient
    from engine.model_server import ModelScript, ScriptedModelServer
    from engine.runtime import Engine
    from state import Job, JobEvent

__all__ = [
    "DEMO_JOB_ID",
    "DEMO_REPO",
    "SCRIPTED_NOTICE",
    "DemoError",
    "DemoOptions",
    "demo_script",
    "run_demo",
]

DATA_DIR = Path(__file__).with_name("demo")
SCRIPT_FILE = DATA_DIR / "script.yaml"
SAMPLE_DIR = DATA_DIR / "sample"
DEMO_REPO = "textstats"
DEMO_JOB_ID = "textstats-demo"
WORKFLOW = "workflows/job/workflow.md"
BRIEF = (
    "word_count in textstats miscounts: words separated by several spaces, a tab or a newline "
    "come out wrong, and an empty text has one word. Make it count only real words, with tests."
)
SCRIPTED_NOTICE = "demo: the model is scripted (no API key used)"
MERGE_HINT = "press g to approve and merge the PR"
#: The whole job takes ~15 s here; past this something is wrong, and the demo says so.
JOB_TIMEOUT_SECONDS = 180.0
#: Running phases get this long to reach a boundary when the demo stops.
STOP_GRACE_SECONDS = 2.0
_JOB_DIR_TOKEN = "$JOB_DIR"
_SHORT = 110


class DemoError(Exception):
    """The demo cannot run or its job did not complete; ``message`` is for the terminal."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``coro demo`` was asked.

    Attributes:
        home: the ``CORO_HOME`` to create and keep (a new or empty directory); ``None``: a
            temporary one, removed at exit.
        headless: no screen: approve and merge the pull request automatically, print the job's
            events.
    """

    home: Path | None = None
    headless: bool = False


# -- the pieces --------------------------------------------------------------------------------
def demo_script(job_dir: Path) -> ModelScript:
    """The shipped script, with ``$JOB_DIR`` replaced by ``job_dir`` in every string."""
    import yaml
    from pydantic import ValidationError

    from engine.model_server import ModelScript

    try:
        data = yaml.safe_load(SCRIPT_FILE.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DemoError(f"cannot read the demo's model script {SCRIPT_FILE}: {exc}") from exc

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(_JOB_DIR_TOKEN, str(job_dir))
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    try:
        return ModelScript.model_validate(fill(data))
    except ValidationError as exc:
        raise DemoError(f"the demo's model script {SCRIPT_FILE} is invalid: {exc}") from exc


def _prepare_home(home: Path | None) -> tuple[Path, bool]:
    """The ``CORO_HOME`` to use and whether to remove it at exit."""
    if home is None:
        return Path(tempfile.mkdtemp(prefix="coro-demo-")), True
    home = Path(os.path.abspath(os.path.expanduser(home)))
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise DemoError(
            f"--home {home}: not an empty directory. The demo makes a fresh CORO_HOME there; "
            "give a new or empty directory"
        )
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home, False


def _write_config(home: Path, base_url: str) -> None:
    from engine.config import LocalConfig, save_config

    config = LocalConfig.model_validate(
        {
            "llm": {"defaultProvider": "anthropic", "apiKey": "sk-scripted-demo",
                    "baseUrl": base_url},
            "jobs": {"idleWatchdog": {"enabled": False}},
            "polling": {"intervalSeconds": 2},
        }
    )  # fmt: skip
    save_config(home / "config.json", config)


def _git(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        ["git", "-c", "user.name=coro demo", "-c", "user.email=demo@localhost", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise DemoError(f"git {' '.join(args)} failed: {done.stderr.strip() or done.stdout}")


def _check_tools() -> None:
    needs = {
        "git": "the local SCM and the agents use it",
        "python3": "the agents run the sample project's tests with it",
    }
    for tool, why in needs.items():
        if shutil.which(tool) is None:
            raise DemoError(f"the demo needs {tool} on PATH ({why})")


def _seed(bare: Path) -> None:
    """Push the sample project as ``main`` of the bare repository ``bare``."""
    with tempfile.TemporaryDirectory(prefix="coro-demo-seed-") as tmp:
        scratch = Path(tmp) / DEMO_REPO
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(SAMPLE_DIR, scratch, ignore=ignore)
        _git("init", "-q", "-b", "main", cwd=scratch)
        _git("add", ".", cwd=scratch)
        _git("commit", "-qm", "textstats: word statistics for short texts", cwd=scratch)
        _git("push", "-q", str(bare), "main", cwd=scratch)


@dataclass
class DemoRun:
    """A started demo: the scripted model, the engine, and the job."""

    home: Path
    server: ScriptedModelServer
    engine: Engine
    job_id: str


@contextlib.asynccontextmanager
async def _started(home: Path, say: Callable[[str], None]) -> AsyncIterator[DemoRun]:
    """Start the scripted model and the engine on ``home``, seed the sample repository and
    submit the job; stop everything on the way out."""
    _check_tools()
    say("starting the scripted model and the engine…")
    from engine.errors import CoroError
    from engine.model_server import ScriptedModelServer
    from engine.paths import CoroPaths
    from engine.runtime import Engine
    from engine.scm.local import LocalScmPlugin
    from state import JobInput

    os.environ["CORO_HOME"] = str(home)  # git's credential helper and Bash see this home
    script = demo_script(CoroPaths.from_home(home).job_dir(DEMO_JOB_ID))
    async with ScriptedModelServer(script, port=0) as server:
        _write_config(home, server.base_url)
        engine = Engine(home, watch_config=False)
        try:
            await engine.start()
        except CoroError as exc:
            raise DemoError(f"the engine cannot start: {exc}") from exc
        try:
            say(f"seeding the local SCM with the sample project {DEMO_REPO!r}…")
            local = engine.scm.plugin("local")
            assert isinstance(local, LocalScmPlugin)
            bare = await local.create_repo(DEMO_REPO)
            await asyncio.to_thread(_seed, bare)
            await engine.create_job(
                JobInput(
                    workflow_path=WORKFLOW,
                    trigger_source="demo",
                    params={"repo": DEMO_REPO, "description": BRIEF},
                ),
                job_id=DEMO_JOB_ID,
            )
            yield DemoRun(home, server, engine, DEMO_JOB_ID)
        finally:
            await engine.stop(grace=STOP_GRACE_SECONDS)


def open_local_pr(job: Job) -> tuple[str, int] | None:
    """``(repo, number)`` of the job's first open pull request on the local SCM, if any."""
    for pr in job.pr_mappings:
        if pr.is_open and pr.plugin_id == "local" and pr.repo_slug and str(pr.pr_id).isdigit():
            return pr.repo_slug, int(pr.pr_id)
    return None


def _waits_for_merge(job: Job) -> bool:
    return job.status.is_stopped or (
        job.status.is_parked
        and (job.awaiting_event or "").startswith("pr:")
        and open_local_pr(job) is not None
    )


def _why(job: Job) -> str:
    reason = job.escalation_message or job.awaiting_event or "no reason given"
    return f"the job is {job.status.value} in phase {job.phase or '-'}: {reason}"


# -- headless ----------------------------------------------------------------------------------
def describe_event(event: JobEvent) -> str:
    """One compact line for an event: time, kind, the gist of its data."""
    data = event.data
    kind = str(event.kind)
    if kind == "log":
        gist = str(data.get("line", ""))
    elif kind in ("status", "phase"):
        gist = f"{data.get('from') or '-'} → {data.get('to')}"
        if data.get("reason"):
            gist += f" ({data['reason']})"
    elif kind == "tool_call":
        gist = f"{data.get('name')} {json.dumps(data.get('input'), ensure_ascii=False)}"
    elif kind == "tool_result":
        gist = f"{data.get('name')}{' ERROR' if data.get('isError') else ''}: "
        gist += str(data.get("summary", ""))
    elif kind == "assistant":
        gist = str(data.get("text", ""))
    elif kind == "model_call":
        who = f"{data['subagent']} " if data.get("subagent") else ""
        gist = f"{who}turn {data.get('turn')}: {data.get('stopReason')}, {data.get('model')}"
    elif kind == "phase_started":
        gist = f"{data.get('phase')} on {data.get('provider')} {data.get('model')}"
    elif kind == "artifact":
        gist = f"{data.get('kind')}: {data.get('title')}"
    elif kind == "usage":
        gist = f"{data.get('phase')}: {data.get('input_tokens', data.get('inputTokens'))} in, "
        gist += f"{data.get('output_tokens', data.get('outputTokens'))} out"
    else:
        gist = json.dumps(data, ensure_ascii=False, default=str)
    gist = " ".join(gist.split())
    if len(gist) > _SHORT:
        gist = gist[: _SHORT - 1] + "…"
    when = datetime.fromtimestamp(event.ts.timestamp()).strftime("%H:%M:%S")
    return f"{when} {kind:<12} {gist}"


class _EventPrinter:
    """Prints a job's events as they come, and says when it has printed up to a ``seq``."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.printed = 0
        self.caught_up = asyncio.Event()
        self._target: int | None = None

    async def follow(self, client: LocalClient, job_id: str) -> None:
        async for batch in client.job_events(job_id):
            for event in batch:
                print(describe_event(event), file=self.out, flush=True)
                self.printed = event.seq
            self._check()

    def up_to(self, seq: int) -> None:
        """Set :attr:`caught_up` once every event up to ``seq`` is printed."""
        self._target = seq
        self._check()

    def _check(self) -> None:
        if self._target is not None and self.printed >= self._target:
            self.caught_up.set()


async def _headless(home: Path, out: TextIO, *, kept: bool) -> int:
    from coro_tui.client import ClientError, LocalClient

    def say(text: str) -> None:
        print(f"coro demo: {text}", file=out, flush=True)

    started = time.monotonic()
    async with _started(home, say) as run:
        client = LocalClient(run.engine)
        printer = _EventPrinter(out)
        following = asyncio.create_task(printer.follow(client, run.job_id))
        try:
            say(f"job {run.job_id} submitted on {WORKFLOW}; its events follow")
            async with asyncio.timeout(JOB_TIMEOUT_SECONDS):
                job = await run.engine.wait_until(run.job_id, _waits_for_merge)
                pr = open_local_pr(job)
                if not job.status.is_stopped and pr is not None:
                    say(f"the job waits for {pr[0]}#{pr[1]}: approving and merging it as you "
                        "would with g on the job screen")  # fmt: skip
                    await client.merge_local_pr(*pr)
                    job = await run.engine.wait_until(run.job_id, lambda j: j.status.is_stopped)
        except TimeoutError:
            job = await client.get_job(run.job_id)
            raise DemoError(
                f"the job did not finish within {JOB_TIMEOUT_SECONDS:g} s; {_why(job)}"
            ) from None
        except ClientError as exc:
            raise DemoError(f"approving and merging the pull request failed: {exc.message}") \
                from exc  # fmt: skip
        finally:
            # the events committed before the end are printed before the verdict
            last = await run.engine.store.read_last_events(run.job_id, 1)
            printer.up_to(last[-1].seq if last else 0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await printer.caught_up.wait()
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
            await client.aclose()
        elapsed = time.monotonic() - started
        if job.status.value != "complete":
            raise DemoError(f"{_why(job)} (after {elapsed:.1f} s)")
        say(f"job {run.job_id} complete in {elapsed:.1f} s: {DEMO_REPO}#1 is merged into main")
        if kept:
            say(f"kept: the merged repository is {run.engine.paths.local_scm_dir / DEMO_REPO}.git")
    return 0


# -- the TUI -----------------------------------------------------------------------------------
async def _tui(home: Path) -> int:
    from coro_tui._startup import Launch

    stack = contextlib.AsyncExitStack()
    runs: list[DemoRun] = []

    async def opener(launch: Launch, status: Callable[[str], None]) -> Session:
        from coro_tui._startup import Session, StartupFailed
        from coro_tui.client import LocalClient

        try:
            run = await stack.enter_async_context(_started(home, status))
        except DemoError as exc:
            raise StartupFailed(exc.message) from exc
        runs.append(run)
        status(f"{SCRIPTED_NOTICE}; job {run.job_id} submitted")
        # the session does not own the engine: the demo stops it (and the model) at exit
        return Session(LocalClient(run.engine), paths=run.engine.paths)

    async with stack:
        app = _demo_app(Launch(home=home), opener, runs)
        try:
            await app.run_async()
        finally:
            if app.session is not None:
                await app.session.aclose()
        return app.return_code or 0


def _demo_app(launch: Launch, opener: Opener, runs: list[DemoRun]) -> CoroApp:
    from coro_tui.app import CoroApp
    from coro_tui.client import EngineClient
    from coro_tui.screens.job import JobScreen

    class DemoApp(CoroApp):
        """The TUI on the demo's job, saying plainly that the model is scripted."""

        def watch_client(self, client: EngineClient | None) -> None:
            if client is not None and runs:
                self.sub_title = f"{SCRIPTED_NOTICE} · CORO_HOME {runs[0].home}"
                self.set_timer(0.05, lambda: self._open_job(client))

        def _open_job(self, client: EngineClient) -> None:
            banner = f"{SCRIPTED_NOTICE} — when the job waits for the merge, {MERGE_HINT}"
            self.push_screen(
                JobScreen(client, DEMO_JOB_ID, log_max_lines=self.prefs.log_max_lines,
                          banner=banner)
            )  # fmt: skip

    return DemoApp(launch, opener=opener)


# -- the command -------------------------------------------------------------------------------
def run_demo(options: DemoOptions, out: TextIO | None = None) -> int:
    """Run the demo to its end; the exit code (0: the job completed).

    Raises:
        DemoError: the demo cannot run, or its job did not complete (the message says why).
    """
    out = out or sys.stdout
    home, throwaway = _prepare_home(options.home)
    try:
        if options.headless:
            print(
                f"{SCRIPTED_NOTICE}: a local endpoint plays the model from a script, so the "
                "job is real (files, git, tests, a pull request) but the model's words are canned",
                file=out,
                flush=True,
            )
            where = "a throwaway" if throwaway else "the"
            print(f"coro demo: {where} CORO_HOME is {home}", file=out, flush=True)
            return asyncio.run(_headless(home, out, kept=not throwaway))
        return asyncio.run(_tui(home))
    finally:
        if throwaway:
            shutil.rmtree(home, ignore_errors=True)
