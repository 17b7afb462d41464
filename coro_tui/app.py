"""``CoroApp``: the full-screen TUI's shell — screens, styles, global keys, palette, start-up.

::

    CoroApp(Launch.auto()).run()          # `coro`: attach to a runner, or own the engine
    CoroApp(client=client)                # tests: screens over a ready client

The first frame is painted before anything heavy loads; then a worker reaches the runner
(:mod:`coro_tui._startup`) and sets :attr:`CoroApp.client`. Screens read ``self.app.client``
and watch it (``self.watch(self.app, "client", callback)``); until it is set,
:attr:`CoroApp.status` says what start-up is doing ("starting engine…").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from coro_tui._commands import BindingCommands, PlanCommands
from coro_tui._notify import DeveloperAlerts, terminal_alert
from coro_tui._startup import Launch, Session, StartupFailed, TuiPrefs, open_session, read_prefs

if TYPE_CHECKING:
    from coro_tui.client import EngineClient
    from coro_tui.screens.settings import SettingsScreen

__all__ = ["QUIT_GRACE_SECONDS", "CoroApp"]

#: How long running phases get to reach a boundary when a TUI that owns the engine quits.
QUIT_GRACE_SECONDS = 30.0

Opener = Callable[[Launch, Callable[[str], None]], Awaitable[Session]]


class _Starting(Screen[None]):
    """The first frame: what start-up is doing; replaced by the Runs screen once connected."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="startup-status")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "status", self._show)
        self.watch(self.app, "client", self._open_runs)

    def on_screen_resume(self) -> None:
        self._open_runs(getattr(self.app, "client", None))

    def _show(self, status: str) -> None:
        self.query_one("#startup-status", Static).update(status)

    def _open_runs(self, client: EngineClient | None) -> None:
        if client is not None and self.is_current:
            from coro_tui.screens.runs import RunsScreen

            self.app.push_screen(RunsScreen(client))


class CoroApp(App[int]):
    """The coro TUI.

    Args:
        launch: how to reach a runner (default: attach to one that answers, else own the
            engine).
        client: a ready client; start-up is skipped (tests, embedding).
        prefs: the ``tui`` config block (default: read from ``config.json``).
        opener: what reaches the runner (default :func:`~coro_tui._startup.open_session`).
    """

    TITLE = "coro"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # also right for subclasses elsewhere
    COMMANDS = App.COMMANDS | {BindingCommands, PlanCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="app.quit",
                tooltip="Quit (an engine this TUI started stops; jobs resume at next start)"),
        Binding("question_mark", "help", "Help", id="app.help", tooltip="Keys and how coro works"),
        Binding("n", "new_job", "New job", id="app.new_job", tooltip="Start a job from a brief"),
        Binding("s", "settings", "Settings", id="app.settings", tooltip="Edit config.json"),
        Binding("P", "plan", "Plan", id="app.plan",
                tooltip="Plan a new job with the assistant, then dispatch its brief"),
        Binding("ctrl+p", "command_palette", "Commands", id="app.command_palette", show=False,
                priority=True, tooltip="Every action of this screen, by name"),
    ]  # fmt: skip

    client: var[EngineClient | None] = var(None, init=False)
    """The runner the screens talk to; ``None`` until start-up reached it."""
    status: var[str] = var("starting engine…", init=False)
    """What start-up is doing, or why it failed; for screens while :attr:`client` is ``None``."""

    def __init__(
        self,
        launch: Launch | None = None,
        *,
        client: EngineClient | None = None,
        prefs: TuiPrefs | None = None,
        opener: Opener = open_session,
    ) -> None:
        super().__init__()
        self.launch = launch or Launch.auto()
        self.prefs = prefs if prefs is not None else read_prefs(self.launch.home)
        self.session: Session | None = None
        """What start-up opened (``None`` with a given client); the CLI closes it at exit."""
        self._given_client = client
        self._opener = opener
        self._stopping = False
        self.set_keymap(self.prefs.keymap)

    def get_default_screen(self) -> Screen[None]:
        return _Starting()

    def on_mount(self) -> None:
        if self._given_client is not None:
            self._connected(self._given_client)
        else:
            self.call_after_refresh(self._start)  # the first frame first

    # -- start-up --------------------------------------------------------------------------------
    def _set_status(self, text: str) -> None:
        self.status = text

    @work(name="coro-startup", exit_on_error=False)
    async def _start(self) -> None:
        try:
            session = await self._opener(self.launch, self._set_status)
        except StartupFailed as exc:
            self._failed(exc.message)
            return
        except Exception as exc:  # shown, not swallowed: the app stays open to say why
            self._failed(f"{type(exc).__name__}: {exc}")
            raise
        self.session = session
        # What is loaded by now (Textual, the engine, the SDKs) lives as long as the app: keep
        # it out of the collector's full passes, which took 130-170 ms each with a plan reply
        # streaming (a key waited that long), as `coro start --headless` does.
        from engine.gcpolicy import settle_after_start

        settle_after_start()
        if session.warning:
            self.notify(session.warning, severity="warning", timeout=20)
        self._connected(session.client)

    def _failed(self, message: str) -> None:
        self.status = f"coro cannot start: {message}\n\nq quits"
        self.notify(message, title="coro cannot start", severity="error", timeout=60)

    def _connected(self, client: EngineClient) -> None:
        info = client.info
        if info.mode == "attached":
            self.sub_title = f"attached to {info.url}"
        else:
            self.sub_title = f"engine in this process · {info.url or 'no HTTP API'}"
        self.status = self.sub_title
        self.notify(self.sub_title, title="coro")
        self.client = client
        self._alert(client)

    @work(name="coro-alerts", exit_on_error=False)
    async def _alert(self, client: EngineClient) -> None:
        ring = terminal_alert(self)

        def alert(text: str) -> None:
            self.notify(text, title="Needs you", severity="warning", markup=False)
            if self.prefs.notify:
                ring(text)

        await DeveloperAlerts(client, alert).run()

    def apply_prefs(self, prefs: TuiPrefs) -> None:
        """Use a changed ``tui`` config block (the Settings screen calls this after a save)."""
        self.prefs = prefs
        self.set_keymap(prefs.keymap)

    # -- global actions ----------------------------------------------------------------------------
    def _client_or_say_why(self) -> EngineClient | None:
        if self.client is None:
            self.notify(self.status, title="Not connected yet", severity="warning")
        return self.client

    def action_help(self) -> None:
        from coro_tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_new_job(self) -> None:
        from coro_tui.screens.new_job import NewJobScreen

        client = self._client_or_say_why()
        if client is not None and not isinstance(self.screen, NewJobScreen):
            self.push_screen(NewJobScreen(client), self._open_new_job)

    def _open_new_job(self, job_id: str | None) -> None:
        """Show the job the new-job dialog just created."""
        from coro_tui.screens.job import JobScreen

        client = self.client
        if job_id is not None and client is not None:
            self.push_screen(JobScreen(client, job_id, log_max_lines=self.prefs.log_max_lines))

    def action_plan(self) -> None:
        self.open_plan()

    def open_plan(self, session_id: str | None = None) -> None:
        """Open the plan screen: a new plan, or the saved plan ``session_id``."""
        from coro_tui.screens.plan import PlanScreen

        client = self._client_or_say_why()
        if client is None:
            return
        current = self.screen
        if isinstance(current, PlanScreen) and session_id in (None, current.session_id):
            return
        self.push_screen(PlanScreen(client, session_id))

    def action_settings(self) -> None:
        from coro_tui.screens.settings import SettingsScreen

        client = self._client_or_say_why()
        if client is not None and not isinstance(self.screen, SettingsScreen):
            self.push_screen(SettingsScreen(client))

    def on_settings_screen_saved(self, message: SettingsScreen.Saved) -> None:
        """A saved local config is this machine's: its keymap and alerts apply at once."""
        if self.client is not None and self.client.info.mode == "local":
            self.apply_prefs(TuiPrefs.from_config(message.config))

    async def action_quit(self) -> None:
        """Quit; a TUI that owns the engine asks first when jobs are running, then stops it
        (a second ``q`` while it stops cuts running phases at once)."""
        session = self.session
        if self._stopping:
            if session is not None:
                session.cut_running()
            return
        if session is None or not session.owns_engine:
            self.exit(0)
            return
        self._quit_owned(session)

    @work(name="coro-quit", exclusive=True, group="quit", exit_on_error=False)
    async def _quit_owned(self, session: Session) -> None:
        from coro_tui.client import ClientError
        from coro_tui.widgets.confirm import ConfirmDialog

        try:
            running = [j.id for j in await session.client.list_jobs() if j.status.is_running]
        except ClientError:
            running = []  # cannot tell: quit as asked, jobs resume at the next start
        if running:
            names = ", ".join(running[:5]) + (" …" if len(running) > 5 else "")
            question = (
                f"{len(running)} job{'s are' if len(running) > 1 else ' is'} running ({names}). "
                "Quit and let them resume where they stopped at the next start of coro?"
            )
            if not await self.push_screen_wait(ConfirmDialog("Quit coro?", question)):
                return
        self._stopping = True
        if running:
            self.notify(
                f"stopping: running phases get up to {QUIT_GRACE_SECONDS:g} s to reach a "
                "boundary; press q again to stop now",
                timeout=QUIT_GRACE_SECONDS,
            )
        await session.aclose(grace=QUIT_GRACE_SECONDS)
        self.exit(0)
