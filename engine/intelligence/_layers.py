"""Intelligence layers: what a layer is, where each kind comes from, and a scan that stays inside.

A layer is a directory tree of markdown (and the odd script) that contributes to a job's
overlay. The scan is the only place a layer is walked, and it refuses — before anything is
read — a symlink that leads out of the layer; symlinks that stay inside are followed.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

import intelligence_base
from engine._fs import realpath
from engine.errors import IntelligenceError, LayerEscapeError

__all__ = [
    "Layer",
    "LayerFile",
    "base_layer",
    "check_tenant_id",
    "is_inside",
    "real_root",
    "repo_layer",
    "safe_relpath",
    "scan_layer",
    "tenant_dir_layer",
]

log = logging.getLogger(__name__)

_LAYER_NAME = re.compile(r"[a-z][a-z0-9-]*(?::\S+)?")
_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SKIPPED_NAMES = frozenset({".git"})
#: Top-level folders of a layer that are not intelligence: proposals waiting for review are
#: written to ``<tenant layer>/proposals/`` and must not reach any job until they are applied.
_SKIPPED_TOP = frozenset({"proposals"})
_ODD_PARTS = frozenset({"", ".", ".."})


@dataclass(frozen=True, slots=True)
class Layer:
    """One source of intelligence files; a stack of them is given lowest first.

    Attributes:
        name: ``base``, ``tenant:<tenant_id>`` or ``repo:<slug>``. It appears in provenance
            banners and in ``ResolveResult.winners``, so it must not contain ``-->``.
        root: the directory the layer contributes. A root that does not exist yet (a
            repository that is not cloned) contributes nothing.
        within: when set, ``root`` must resolve to a directory inside it, so a checkout's
            ``.coro`` cannot be a symlink that leads out of the checkout.
    """

    name: str
    root: Path
    within: Path | None = None
    unchanging: bool = False
    """The layer's files cannot change while coro runs (the packaged base layer), so one scan
    serves the whole process: re-resolving a job's overlay then stats only the other layers."""

    def __post_init__(self) -> None:
        if not _LAYER_NAME.fullmatch(self.name) or "-->" in self.name:
            raise ValueError(
                f"invalid layer name {self.name!r}: expected base, tenant:<id> or repo:<slug>",
            )


@dataclass(frozen=True, slots=True)
class LayerFile:
    """A regular file found in a layer, located by its real path (any in-layer symlink resolved)."""

    path: str
    size: int
    mtime_ns: int
    executable: bool


@cache
def base_layer() -> Layer:
    """The base layer packaged in :mod:`intelligence_base` (it changes only with an upgrade,
    which restarts coro)."""
    return Layer("base", intelligence_base.layer_path(), unchanging=True)


def check_tenant_id(tenant_id: str) -> str:
    """Return ``tenant_id`` if it can name a directory (``solo-host``, ``team-abc``), else raise."""
    if not _TENANT_ID.fullmatch(tenant_id):
        raise IntelligenceError(
            f"invalid tenant id {tenant_id!r}: use letters, digits, '.', '_' and '-'",
        )
    return tenant_id


def tenant_dir_layer(tenant_id: str, directory: Path) -> Layer:
    """A tenant layer read from a local directory (``tenant.overlay = localDir``)."""
    return Layer(f"tenant:{check_tenant_id(tenant_id)}", directory.expanduser())


def repo_layer(slug: str, checkout: Path) -> Layer:
    """The repository layer: ``<checkout>/.coro/``, contributing once the checkout exists."""
    return Layer(f"repo:{slug}", checkout / ".coro", within=checkout)


def safe_relpath(relpath: str, *, layer: str) -> str:
    """Check that ``relpath`` stays inside a layer and return it in normal POSIX form.

    Raises:
        LayerEscapeError: the path is empty, absolute or has a ``..`` component.
    """
    if (
        relpath
        and relpath[0] != "/"
        and "\x00" not in relpath
        and not _ODD_PARTS.intersection(relpath.split("/"))
    ):
        return relpath  # already normal: the common case, checked without pathlib
    pure = PurePosixPath(relpath)
    if not relpath or "\x00" in relpath or pure.is_absolute() or ".." in pure.parts:
        raise LayerEscapeError(f"layer {layer}: path {relpath!r} leaves the layer")
    normal = pure.as_posix()
    if normal == ".":
        raise LayerEscapeError(f"layer {layer}: path {relpath!r} names no file")
    return normal


def real_root(layer: Layer) -> str | None:
    """The layer's root with every symlink resolved, or ``None`` if it does not exist.

    Raises:
        IntelligenceError: the root exists but is not a directory.
        LayerEscapeError: the root resolves outside ``layer.within``.
    """
    if layer.unchanging:
        known = _UNCHANGING_ROOTS.get(layer)
        if known is not None:
            return known
    try:
        root = realpath(layer.root, strict=True)
    except OSError:
        return None
    if not os.path.isdir(root):
        raise IntelligenceError(f"layer {layer.name}: {layer.root} is not a directory")
    if layer.within is not None and not is_inside(root, realpath(layer.within)):
        raise LayerEscapeError(
            f"layer {layer.name}: {layer.root} resolves to {root}, outside {layer.within}",
        )
    if layer.unchanging:
        _UNCHANGING_ROOTS[layer] = root
    return root


#: Real roots of unchanging layers (the packaged base layer cannot move while coro runs).
_UNCHANGING_ROOTS: dict[Layer, str] = {}


def is_inside(path: str, directory: str) -> bool:
    """Whether real path ``path`` is ``directory`` or below it."""
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def scan_layer(layer: Layer) -> dict[str, LayerFile]:
    """Every regular file in a layer, by POSIX path relative to its root.

    ``.git`` and a top-level ``proposals/`` are skipped. Nothing is read; the scan costs one
    ``stat`` per file.

    An :attr:`~Layer.unchanging` layer is scanned once per process; the dict returned is
    shared, so do not change it.

    Raises:
        LayerEscapeError: a symlink in the layer resolves outside the layer's root.
        IntelligenceError: the layer cannot be listed, or a symlink makes a loop.
    """
    if layer.unchanging:
        cached = _UNCHANGING.get(layer.root)
        if cached is None:
            cached = _UNCHANGING[layer.root] = _scan(layer)
        return cached
    return _scan(layer)


#: Scans of unchanging layers, by root. Callers only read the dicts :func:`scan_layer` returns.
_UNCHANGING: dict[Path, dict[str, LayerFile]] = {}


def _scan(layer: Layer) -> dict[str, LayerFile]:
    root = real_root(layer)
    if root is None:
        return {}
    found: dict[str, LayerFile] = {}
    _walk(layer, root, root, "", (root,), found)
    return found


def _walk(
    layer: Layer,
    root: str,
    directory: str,
    prefix: str,
    ancestors: tuple[str, ...],
    found: dict[str, LayerFile],
) -> None:
    try:
        entries = os.scandir(directory)
    except OSError as exc:
        raise IntelligenceError(f"layer {layer.name}: cannot list {directory}: {exc}") from exc
    with entries:
        for entry in entries:
            if entry.name in _SKIPPED_NAMES or (not prefix and entry.name in _SKIPPED_TOP):
                continue
            relpath = prefix + entry.name
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if not is_inside(target, root):
                    raise LayerEscapeError(
                        f"layer {layer.name}: {relpath} is a symlink to {target}, "
                        "outside the layer; it was not read",
                    )
                if os.path.isdir(target):
                    if any(is_inside(a, target) for a in ancestors):
                        raise IntelligenceError(
                            f"layer {layer.name}: symlink {relpath} makes a loop",
                        )
                    _walk(layer, root, target, relpath + "/", (*ancestors, target), found)
                    continue
                try:
                    st = os.stat(target)
                except OSError:
                    log.warning("layer %s: skipping dangling symlink %s", layer.name, relpath)
                    continue
                path = target
            elif entry.is_dir(follow_symlinks=False):
                _walk(layer, root, entry.path, relpath + "/", (*ancestors, entry.path), found)
                continue
            else:
                st = entry.stat(follow_symlinks=False)
                path = entry.path
            if stat.S_ISREG(st.st_mode):
                found[relpath] = LayerFile(
                    path, st.st_size, st.st_mtime_ns, bool(st.st_mode & 0o111)
                )
