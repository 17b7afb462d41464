"""The new-job dialog: repository, brief, reviewers, workflow, interactive; ``ctrl+s`` creates it.

Dismisses with the new job's id (the app opens its Job screen), or ``None`` when cancelled. A
refusal the runner ties to a field (``ClientError.field``) is shown next to that field.
``ctrl+o`` plans it first: the plan screen replaces the dialog, with the repository and the
description as the first message, unsent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Label, Select, Static, Switch, TextArea

from coro_tui.client import ClientError

if TYPE_CHECKING:
    from coro_tui.client import EngineClient, WorkflowSummary

__all__ = ["DEFAULT_WORKFLOW", "NewJobScreen", "ReviewerNames", "parse_reviewers"]

DEFAULT_WORKFLOW = "workflows/job/workflow.md"
"""The workflow selected when the runner offers it."""

# Where a runner's field name (``params.repo``, ``workflowPath`` …) is shown on this form.
_FIELD_FOR = {
    "repo": "repo",
    "params.repo": "repo",
    "description": "description",
    "params.description": "description",
    "reviewers": "reviewers",
    "params.reviewers": "reviewers",
    "workflowPath": "workflow",
    "workflow_path": "workflow",
    "interactive": "interactive",
}


def parse_reviewers(text: str) -> list[str]:
    """``"ana, bo,"`` → ``["ana", "bo"]``: comma-separated names, blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


class ReviewerNames(Validator):
    """Comma-separated reviewer names, none with a space inside."""

    def validate(self, value: str) -> ValidationResult:
        bad = [name for name in parse_reviewers(value) if any(ch.isspace() for ch in name)]
        if bad:
            return self.failure(f"names have no spaces; separate them with commas: {bad[0]!r}")
        return self.success()


class NewJobScreen(ModalScreen[str | None]):
    """Ask for a new job's parameters and create it through the client."""

    CSS_PATH = "new_job.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Create job", id="new_job.submit", tooltip="Create the job"),
        Binding(
            "ctrl+o",
            "plan",
            "Plan it first",
            id="new_job.plan",
            tooltip="Talk the job through with the assistant before creating it",
        ),
        Binding(
            "escape", "cancel", "Cancel", id="new_job.cancel", tooltip="Close without creating"
        ),
    ]

    @dataclass
    class Refused(Message):
        """The runner would not create the job; ``field`` is the runner's name for the culprit."""

        message: str
        field: str | None

    def __init__(self, client: EngineClient) -> None:
        super().__init__()
        self.client = client
        self._submitting = False

    def compose(self) -> ComposeResult:
        with Vertical(id="new-job"):
            with VerticalScroll(id="new-job-form"):
                with Horizontal(classes="row"):
                    yield Label("Repository", classes="label")
                    with Vertical(classes="field"):
                        yield Input(
                            placeholder="owner/name or a local path",
                            id="repo",
                            validate_on=["blur"],
                        )
                        yield Static(classes="error", id="repo-error")
                with Horizontal(classes="row"):
                    yield Label("Description", classes="label")
                    with Vertical(classes="field"):
                        yield TextArea(id="description", soft_wrap=True, tab_behavior="focus")
                        yield Static(classes="error", id="description-error")
                with Horizontal(classes="row"):
                    yield Label("Reviewers", classes="label")
                    with Vertical(classes="field"):
                        yield Input(
                            placeholder="comma-separated: ana, bo",
                            id="reviewers",
                            validators=[ReviewerNames()],
                            validate_on=["blur", "changed"],
                        )
                        yield Static(classes="error", id="reviewers-error")
                with Horizontal(classes="row"):
                    yield Label("Workflow", classes="label")
                    with Vertical(classes="field"):
                        yield Select[str]([], prompt="loading workflows…", id="workflow")
                        yield Static(classes="error", id="workflow-error")
                with Horizontal(classes="row"):
                    yield Label("Interactive", classes="label")
                    with Vertical(classes="field"):
                        yield Switch(False, id="interactive")
                        yield Static(classes="error", id="interactive-error")
            yield Static(classes="error", id="form-error")
            yield Static(
                "ctrl+s create · ctrl+o plan it first · esc cancel · tab next field",
                id="new-job-keys",
            )

    def on_mount(self) -> None:
        self.query_one("#new-job").border_title = "New job"
        self.query_one("#repo", Input).focus()
        self._load_workflows()

    @work(exclusive=True, group="new-job-workflows")
    async def _load_workflows(self) -> None:
        select = self.query_one("#workflow", Select)
        try:
            workflows = await self.client.workflows()
        except ClientError as exc:
            select.prompt = "no workflows"
            self._show_error("workflow", f"cannot list workflows: {exc.message}")
            return
        self.set_workflows(workflows)

    def set_workflows(self, workflows: list[WorkflowSummary]) -> None:
        """Offer ``workflows``, selecting :data:`DEFAULT_WORKFLOW` (or the first) by default."""
        select = self.query_one("#workflow", Select)
        select.prompt = "choose a workflow" if workflows else "no workflows"
        select.set_options((_workflow_label(w), w.path) for w in workflows)
        paths = [w.path for w in workflows]
        if DEFAULT_WORKFLOW in paths:
            select.value = DEFAULT_WORKFLOW
        elif paths:
            select.value = paths[0]

    # -- validation ----------------------------------------------------------------------------
    @on(Input.Blurred, "#repo")
    @on(Input.Changed, "#repo")
    def _repo_edited(self, event: Input.Blurred | Input.Changed) -> None:
        if event.value.strip() or self.query_one("#repo").has_class("-invalid"):
            self._check_repo()

    @on(Input.Changed, "#reviewers")
    @on(Input.Blurred, "#reviewers")
    def _reviewers_edited(self, event: Input.Changed | Input.Blurred) -> None:
        self._check_reviewers()

    @on(TextArea.Changed, "#description")
    def _description_edited(self) -> None:
        if self.query_one("#description", TextArea).text.strip():
            self._show_error("description", None)

    @on(Select.Changed, "#workflow")
    def _workflow_chosen(self) -> None:
        if self.query_one("#workflow", Select).value is not Select.NULL:
            self._show_error("workflow", None)

    def _check_repo(self) -> bool:
        ok = bool(self.query_one("#repo", Input).value.strip())
        self._show_error("repo", None if ok else "a repository is required")
        return ok

    def _check_reviewers(self) -> bool:
        result = self.query_one("#reviewers", Input).validate(
            self.query_one("#reviewers", Input).value
        )
        failures = result.failure_descriptions if result is not None else []
        self._show_error("reviewers", failures[0] if failures else None)
        return not failures

    def _validate_all(self) -> str | None:
        """Check every field; the id of the first bad one, or ``None`` when all are fine."""
        bad: list[str] = []
        if not self._check_repo():
            bad.append("repo")
        if not self.query_one("#description", TextArea).text.strip():
            self._show_error("description", "a description is required")
            bad.append("description")
        if not self._check_reviewers():
            bad.append("reviewers")
        if self.query_one("#workflow", Select).value is Select.NULL:
            self._show_error("workflow", "choose a workflow")
            bad.append("workflow")
        return bad[0] if bad else None

    def _show_error(self, field: str, message: str | None) -> None:
        """Show ``message`` under ``field`` (``form`` for the whole form); ``None`` clears it."""
        error = self.query_one(f"#{field}-error", Static)
        error.update(message or "")
        error.set_class(bool(message), "-shown")
        if field != "form":
            self.query_one(f"#{field}").set_class(bool(message), "-invalid")

    # -- actions -------------------------------------------------------------------------------
    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_plan(self) -> None:
        from pathlib import Path

        from coro_tui.screens.plan import PlanScreen

        repo = self.query_one("#repo", Input).value.strip()
        local = repo.startswith(("/", "~", "."))
        self.app.switch_screen(
            PlanScreen(
                self.client,
                repo=None if local or not repo else repo,
                repo_path=str(Path(repo).expanduser().resolve()) if local else None,
                initial_text=self.query_one("#description", TextArea).text.strip(),
            )
        )

    async def action_submit(self) -> None:
        if self._submitting:
            return
        self._show_error("form", None)
        first_bad = self._validate_all()
        if first_bad is not None:
            self.query_one(f"#{first_bad}").focus()
            return
        from state import JobInput

        workflow = self.query_one("#workflow", Select).value
        assert isinstance(workflow, str)
        spec = JobInput(
            workflow_path=workflow,
            interactive=self.query_one("#interactive", Switch).value,
            params={
                "repo": self.query_one("#repo", Input).value.strip(),
                "description": self.query_one("#description", TextArea).text.strip(),
                "reviewers": parse_reviewers(self.query_one("#reviewers", Input).value),
            },
        )
        self._submitting = True
        try:
            job = await self.client.create_job(spec)
        except ClientError as exc:
            self._refused(exc)
            self.post_message(self.Refused(exc.message, exc.field))
            return
        finally:
            self._submitting = False
        self.notify(f"Created job {job.id}", title="New job")
        self.dismiss(job.id)

    def _refused(self, exc: ClientError) -> None:
        field = _FIELD_FOR.get(exc.field or "")
        if field is None:
            self._show_error("form", exc.message)
            return
        self._show_error(field, exc.message)
        self.query_one(f"#{field}").focus()


def _workflow_label(workflow: WorkflowSummary) -> str:
    name = workflow.display_name or workflow.path
    return f"{name} · {workflow.path}" if name != workflow.path else name
