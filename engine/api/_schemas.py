"""Request bodies of the HTTP API: camelCase JSON, unknown fields refused."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = [
    "ApproveBody",
    "ArtifactContentBody",
    "InteractiveBody",
    "LocalApproveBody",
    "LocalCommentBody",
    "LocalMergeBody",
    "MessageBody",
    "ReasonBody",
    "RequestBody",
    "ResumeBody",
]

#: The largest artefact a ``PUT .../content`` may write.
MAX_ARTIFACT_BYTES = 2 * 1024 * 1024


class RequestBody(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True
    )


class ResumeBody(RequestBody):
    """``POST /jobs/{id}/resume``."""

    from_phase: str | None = Field(None, description="Start again at this phase.")
    clear_session: bool = Field(False, description="Forget the model conversation.")
    message: str | None = Field(None, description="A developer message for the next kickoff.")


class MessageBody(RequestBody):
    """``POST /jobs/{id}/message``."""

    # The route refuses blank text with its own message; the document says so with a pattern.
    text: str = Field(
        min_length=1, description="The developer's message.", json_schema_extra={"pattern": r"\S"}
    )
    mode: Literal["queue", "steer", "urgent"] = Field(
        "steer",
        description="When a running phase sees it: queue (end of turn), steer (next tool "
        "boundary), urgent (at once).",
    )


class ApproveBody(RequestBody):
    """``POST /jobs/{id}/approve``."""

    message: str | None = Field(None, description="Shown to the next phase with the approval.")
    by: str | None = Field(None, description="Who approved.")


class ReasonBody(RequestBody):
    """``POST /jobs/{id}/cancel``, ``/pause``."""

    reason: str | None = Field(None, description="Why (kept in the job's log).")


class InteractiveBody(RequestBody):
    """``PATCH /jobs/{id}/interactive``."""

    interactive: bool


class ArtifactContentBody(RequestBody):
    """``PUT /jobs/{id}/artifacts/{artifactId}/content``."""

    content: str = Field(description="The new text of the file (UTF-8, at most 2 MiB).")
    edited_by: str | None = Field(None, description="Who edited it.")


class LocalCommentBody(RequestBody):
    """``POST /scm/local/prs/{n}/comment``."""

    body: str = Field(min_length=1, pattern=r"\S", description="The comment (markdown).")
    author: str | None = Field(None, description="Who writes it (default: developer).")
    parent_id: int | None = Field(None, description="The comment this one answers.")


class LocalApproveBody(RequestBody):
    """``POST /scm/local/prs/{n}/approve``."""

    user: str | None = Field(None, description="Who approves (default: developer).")


class LocalMergeBody(RequestBody):
    """``POST /scm/local/prs/{n}/merge``."""

    strategy: Literal["merge", "squash", "rebase"] = "merge"
    message: str | None = Field(None, description="The merge commit's message.")
