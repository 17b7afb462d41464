"""Plan mode: a chat with a read-only investigator that ends in a brief you can dispatch.

:class:`IntakeService` runs the turns of ``POST /intake/stream`` (and ``coro plan``), keeps
the sessions in state, enforces their budgets and dispatches a brief as a job.
:mod:`engine.intake._protocol` reads the readiness, findings and brief tags of a reply.
"""

from engine.intake._protocol import (
    LANES,
    READINESS_STATES,
    Brief,
    Readiness,
    TurnTags,
    brief_problems,
    parse_turn,
    visible_text,
)
from engine.intake._service import (
    ChatMessage,
    DispatchBody,
    IntakeContext,
    IntakeEvent,
    IntakeRefused,
    IntakeRequest,
    IntakeService,
)

__all__ = [
    "LANES",
    "READINESS_STATES",
    "Brief",
    "ChatMessage",
    "DispatchBody",
    "IntakeContext",
    "IntakeEvent",
    "IntakeRefused",
    "IntakeRequest",
    "IntakeService",
    "Readiness",
    "TurnTags",
    "brief_problems",
    "parse_turn",
    "visible_text",
]
