"""The scripted model endpoint: a real HTTP server that answers like Anthropic's Messages API.

It answers ``POST /v1/messages`` (streaming or not) from a YAML :class:`ModelScript`, so the
real executor, pointed at it through the SDK's ``base_url``, runs its real code path in the demo
and the end-to-end tests. See ``docs/model-server.md`` for the script format.

Importing this package does not import Starlette or uvicorn; starting a server does.
"""

from __future__ import annotations

from engine.model_server._app import DEFAULT_PORT, ScriptedModelServer, serve
from engine.model_server._cache import CacheUsage, PromptCache
from engine.model_server._model import RecordedRequest, Reply, ScriptedModel
from engine.model_server._script import (
    FaultKind,
    FaultSpec,
    ModelScript,
    ScriptCase,
    ScriptError,
    ScriptStep,
    ScriptToolCall,
    load_script,
)

__all__ = [
    "DEFAULT_PORT",
    "CacheUsage",
    "FaultKind",
    "FaultSpec",
    "ModelScript",
    "PromptCache",
    "RecordedRequest",
    "Reply",
    "ScriptCase",
    "ScriptError",
    "ScriptStep",
    "ScriptToolCall",
    "ScriptedModel",
    "ScriptedModelServer",
    "load_script",
    "serve",
]
