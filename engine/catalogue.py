"""The workflows a new job can name, before any job exists: the base layer and a local tenant
layer (a remote tenant layer is fetched when a job starts, so it cannot be listed here)."""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from engine.intelligence import Layer, base_layer, tenant_dir_layer

if TYPE_CHECKING:
    from engine.runtime import Engine

__all__ = ["list_workflows", "workflow_layers", "workflow_problem"]


def workflow_layers(engine: Engine) -> list[Layer]:
    """Layers that can hold workflows before a job starts, lowest first (no git fetch)."""
    layers = [base_layer()]
    overlay = engine.config.tenant.overlay
    tenant_id = engine.overlays.tenant_id
    if overlay.kind == "localDir":
        layers.append(tenant_dir_layer(tenant_id, Path(overlay.path)))
    elif engine.paths.intelligence_dir.is_dir():
        layers.append(tenant_dir_layer(tenant_id, engine.paths.intelligence_dir))
    return layers


def _remote_tenant(engine: Engine) -> bool:
    config = engine.config
    return config.tenant.overlay.kind == "gitRemote" or bool(config.intelligence.git_remote)


def workflow_problem(engine: Engine, workflow_path: str) -> str | None:
    """Why a new job cannot name ``workflow_path`` (``None``: it can, or it cannot be known
    before the job fetches a remote tenant layer)."""
    pure = PurePosixPath(workflow_path)
    if (
        pure.is_absolute()
        or PureWindowsPath(workflow_path).is_absolute()
        or ".." in pure.parts
        or not workflow_path.endswith(".md")
    ):
        return (
            f"workflow path {workflow_path!r} must be a relative .md path inside the "
            "intelligence overlay, such as workflows/job/workflow.md"
        )
    if _remote_tenant(engine):
        return None
    if not any((layer.root / pure).is_file() for layer in workflow_layers(engine)):
        return f"no workflow {workflow_path!r} in any intelligence layer"
    return None


async def list_workflows(engine: Engine) -> list[dict[str, Any]]:
    """Every workflow a new job can name, as ``GET /workflows`` lists them, by path."""
    found: dict[str, dict[str, Any]] = {}
    for layer in workflow_layers(engine):
        for info in await asyncio.to_thread(engine.overlays.list_workflows, layer.root):
            found[info.path] = {
                "path": info.path,
                "displayName": info.display_name,
                "description": info.description,
                "kind": info.kind,
                "phases": list(info.phases),
                "layer": layer.name,
            }
    return sorted(found.values(), key=lambda w: w["path"])
