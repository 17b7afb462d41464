"""The base intelligence layer, shipped as package data, and a tiny loader for it.

The layer (``layer/``: ``.claude/CLAUDE.md``, workflows, agents, skills, memory templates) is
the lowest layer of every job's overlay. This package never imports the engine; the engine's
intelligence resolver reads the layer through :func:`layer_path`.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = ["layer_path", "layer_root"]


def layer_root() -> Traversable:
    """The packaged ``layer/`` directory, wherever the package was installed from."""
    return files(__name__).joinpath("layer")


def layer_path() -> Path:
    """The packaged ``layer/`` directory as a real directory on disk.

    This is the normal case (a wheel or a source checkout). A package imported from a zip
    archive has no directory to walk; read it through :func:`layer_root` instead.

    Raises:
        FileNotFoundError: the layer is not a directory on disk.
    """
    root = layer_root()
    if isinstance(root, Path) and root.is_dir():
        return root
    raise FileNotFoundError(f"the base intelligence layer is not a directory on disk: {root}")
