"""The merge plan: which layer (or layers) supply each path of an overlay, and its bytes.

``.claude/CLAUDE.md`` and ``memory/**/*.md`` are appended, lowest layer first, each part under
a provenance banner; every other path is last-wins.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import IntelligenceError
from engine.intelligence._layers import Layer, LayerFile, scan_layer

__all__ = ["MANIFEST_NAME", "Source", "Target", "Winner", "banner", "is_appended", "plan"]

MANIFEST_NAME = ".coro-manifest.json"
"""The record, kept in the overlay, of every file coro wrote there."""

Winner = str | tuple[str, ...]
"""The layer that supplied a last-wins file, or the layers (lowest first) of an appended one."""


def is_appended(relpath: str) -> bool:
    """Whether layers' copies of ``relpath`` are concatenated rather than replaced."""
    return relpath == ".claude/CLAUDE.md" or (
        relpath.startswith("memory/") and relpath.endswith(".md")
    )


def banner(layer_name: str) -> bytes:
    """The provenance line that precedes one layer's part of an appended file."""
    return f"<!-- coro layer: {layer_name} -->\n".encode()


@dataclass(frozen=True, slots=True)
class Source:
    """One layer's copy of a path."""

    layer: str
    index: int
    file: LayerFile


@dataclass(slots=True)
class Target:
    """What one path of the overlay is made of."""

    appended: bool
    sources: list[Source]

    @property
    def winner(self) -> Winner:
        if self.appended:
            return tuple(s.layer for s in self.sources)
        return self.sources[0].layer

    @property
    def top(self) -> int:
        return self.sources[-1].index

    @property
    def executable(self) -> bool:
        return not self.appended and self.sources[0].file.executable

    def signature(self) -> list[list[object]]:
        """What the content depends on, as stored in the manifest: path, size and mtime."""
        return [[s.layer, s.file.path, s.file.size, s.file.mtime_ns] for s in self.sources]

    def newest_mtime_ns(self) -> int:
        return max(s.file.mtime_ns for s in self.sources)

    def content(self) -> bytes:
        """The bytes this path should hold, read from the layers now."""
        if not self.appended:
            return _read(self.sources[0].file.path)
        parts = []
        for source in self.sources:
            data = _read(source.file.path)
            parts.append(banner(source.layer) + data + (b"" if data.endswith(b"\n") else b"\n"))
        return b"\n".join(parts)


def _read(path: str) -> bytes:
    # Scanned paths are real paths; O_NOFOLLOW keeps a symlink swapped in since from being read.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        return f.read()


#: The last plan made for each stack of layers, with the scans it was made from. A phase
#: boundary re-plans every running job's stack; when no layer changed, the scans are equal and
#: the plan is reused as it is (its identity then also tells the resolver nothing moved).
_PLANS: dict[tuple[tuple[str, str], ...], tuple[list[dict[str, LayerFile]], dict[str, Target]]]
_PLANS = {}
_MAX_PLANS = 64


def plan(layers: Sequence[Layer]) -> dict[str, Target]:
    """Scan ``layers`` (lowest first) and decide where every path of the overlay comes from.

    When one layer has a file where another has a directory, the higher layer wins the path.
    When every layer scans as it did last time, the same dict as last time is returned, so
    treat it as read-only.

    Raises:
        LayerEscapeError: a layer has a symlink that leads out of it.
        IntelligenceError: two layers share a name, or a layer cannot be read.
    """
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise IntelligenceError(f"layer names must be unique: {', '.join(names)}")
    scans = [scan_layer(layer) for layer in layers]
    key = tuple((layer.name, str(layer.root)) for layer in layers)
    last = _PLANS.get(key)
    if last is not None and all(a is b or a == b for a, b in zip(last[0], scans, strict=True)):
        return last[1]
    targets = _merge(layers, scans)
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[key] = (scans, targets)
    return targets


def _merge(layers: Sequence[Layer], scans: list[dict[str, LayerFile]]) -> dict[str, Target]:
    targets: dict[str, Target] = {}
    for index, (layer, scan) in enumerate(zip(layers, scans, strict=True)):
        for relpath, file in scan.items():
            if relpath == MANIFEST_NAME:
                continue
            source = Source(layer.name, index, file)
            target = targets.get(relpath)
            if target is not None and target.appended:
                target.sources.append(source)
            else:
                targets[relpath] = Target(is_appended(relpath), [source])
    _settle_file_dir_clashes(targets)
    return targets


def _settle_file_dir_clashes(targets: dict[str, Target]) -> None:
    dirs: dict[str, int] = {}  # directory -> highest layer index with something below it
    for relpath, target in targets.items():
        head, sep, _ = relpath.rpartition("/")
        while sep:
            if dirs.get(head, -1) < target.top:
                dirs[head] = target.top
            head, sep, _ = head.rpartition("/")
    for directory in sorted((d for d in dirs if d in targets), key=len):
        if directory not in targets:
            continue  # a shorter clash above it already dropped it
        if targets[directory].top > dirs[directory]:
            below = directory + "/"
            for relpath in [p for p in targets if p.startswith(below)]:
                del targets[relpath]
        else:
            del targets[directory]
