"""The layered intelligence resolver: base → tenant → repository, merged into a job's overlay.

Layers, lowest first: the base layer packaged in :mod:`intelligence_base`; the tenant layer (a
local directory, or a git remote cached under ``$CORO_HOME/cache/tenant-overlays/``); and the
repository layer, ``<checkout>/.coro/``. :class:`IntelligenceResolver` merges them into
``$CORO_HOME/working/<job_id>/_intelligence/`` at job start and again at every phase boundary:
``.claude/CLAUDE.md`` and ``memory/**/*.md`` are appended under provenance banners, every other
path is last-wins.
"""

from __future__ import annotations

from engine.intelligence._git import TenantGitLoader, redact_url
from engine.intelligence._layers import (
    Layer,
    LayerFile,
    base_layer,
    repo_layer,
    safe_relpath,
    scan_layer,
    tenant_dir_layer,
)
from engine.intelligence._merge import MANIFEST_NAME, Winner, banner, is_appended
from engine.intelligence._resolver import IntelligenceResolver, ResolveResult

__all__ = [
    "MANIFEST_NAME",
    "IntelligenceResolver",
    "Layer",
    "LayerFile",
    "ResolveResult",
    "TenantGitLoader",
    "Winner",
    "banner",
    "base_layer",
    "is_appended",
    "redact_url",
    "repo_layer",
    "safe_relpath",
    "scan_layer",
    "tenant_dir_layer",
]
