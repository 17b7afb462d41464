"""Materialises a job's merged intelligence overlay into its ``_intelligence/`` directory.

Resolving is idempotent and incremental, because the phase loop does it at every phase
boundary: a manifest kept in the overlay records, for every file coro wrote, the layer files
it came from (path, size, mtime) and what was written (hash, size, mtime). An unchanged overlay
is then verified with ``stat`` calls alone; only a path whose sources or copy changed is read,
and only a file whose bytes differ is written. Files coro wrote that no layer supplies any
more are deleted; nothing coro did not write is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine._fs import atomic_write_bytes, realpath
from engine.errors import IntelligenceError, LayerEscapeError
from engine.intelligence._layers import Layer, is_inside, real_root, safe_relpath
from engine.intelligence._merge import MANIFEST_NAME, Target, Winner, plan
from engine.intelligence._store import BlobStore

__all__ = ["IntelligenceResolver", "ResolveResult"]

log = logging.getLogger(__name__)

_MANIFEST_VERSION = 1
# A source modified this recently may change again within one mtime tick without its size or
# mtime changing, so its signature is not trusted: the next resolve reads it again.
_RACY_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class ResolveResult:
    """What one resolve did to the overlay.

    Attributes:
        dest: the overlay directory.
        written: files created or rewritten because their content changed.
        removed: files deleted because no layer supplies them any more.
        unchanged: files already holding the right content.
        winners: for every file, the layer that supplied it, or for an appended file
            (``.claude/CLAUDE.md``, ``memory/**/*.md``) the tuple of layers, lowest first.
        digests: the SHA-256 (hex) of every file's content, as just checked, so a reader can
            tell whether a file it parsed before is still the same without reading it.
    """

    dest: Path
    written: int
    removed: int
    unchanged: int
    winners: dict[str, Winner]
    digests: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether the overlay's content differs from before this resolve."""
        return bool(self.written or self.removed)


@dataclass(slots=True)
class _Record:
    """One manifest entry: what a file was made from and what coro wrote."""

    sources: list[list[object]] | None  # None: re-read next time (a source was racy)
    sha256: str
    size: int
    mtime_ns: int
    executable: bool


class IntelligenceResolver:
    """Merges intelligence layers (lowest first) into a job's overlay directory.

    Thread-safe: resolves of the same destination are serialised, so keep one per process.

    Args:
        store: where to keep one shared copy of each file, hard-linked into every overlay
            that holds it (see :class:`~engine.intelligence._store.BlobStore`); it must be on
            the overlays' filesystem, or copies are written. ``None``: every overlay gets
            copies of its own.
    """

    #: A resolve whose last run took less than this runs on the event loop: the hop to a worker
    #: thread (and the GIL contention it brings with many jobs) costs more than the work.
    INLINE_BELOW_S = 0.002

    def __init__(self, store: Path | None = None) -> None:
        self.store = BlobStore(store) if store is not None else None
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._cost: dict[str, float] = {}  # dest -> seconds its last resolve took
        self._manifests: _Manifests = {}  # real dest -> its parsed manifest
        # real dest -> the plan last materialised there, and its winners
        self._last: dict[str, tuple[dict[str, Target], dict[str, Winner]]] = {}

    def resolve(self, job_id: str, layers: Sequence[Layer], dest: Path) -> ResolveResult:
        """Bring ``dest`` in line with the merge of ``layers``, touching only what changed.

        Args:
            job_id: the job the overlay belongs to (for logs).
            layers: lowest first: base, tenant, repository. A layer whose root does not exist
                contributes nothing.
            dest: the overlay, ``$CORO_HOME/working/<job_id>/_intelligence/``; created if missing.

        Raises:
            LayerEscapeError: a layer holds a symlink that leads out of it.
            IntelligenceError: ``dest`` overlaps a layer, or the overlay cannot be written.
        """
        started = time.perf_counter()
        dest_real = _check_dest(layers, dest)
        with self._lock(dest_real):
            targets = plan(layers)
            last = self._last.pop(dest_real, None)
            try:
                os.makedirs(dest_real, exist_ok=True)
                result = _materialise(
                    dest,
                    dest_real,
                    targets,
                    self._manifests,
                    self.store,
                    last[1] if last is not None and last[0] is targets else None,
                )
            except OSError as exc:
                raise IntelligenceError(
                    f"could not write the intelligence overlay of job {job_id} in {dest}: {exc}",
                ) from exc
            self._last[dest_real] = (targets, result.winners)
            self._cost[str(dest)] = time.perf_counter() - started
        level = logging.INFO if result.changed else logging.DEBUG
        log.log(
            level,
            "job %s: intelligence overlay resolved (%d written, %d removed, %d unchanged)",
            job_id,
            result.written,
            result.removed,
            result.unchanged,
        )
        return result

    async def aresolve(self, job_id: str, layers: Sequence[Layer], dest: Path) -> ResolveResult:
        """:meth:`resolve` without blocking the event loop for long.

        A resolve that took under :attr:`INLINE_BELOW_S` last time (an unchanged, small
        overlay: a few hundred ``stat`` calls) runs inline; the first one, and any that was
        slow, runs in a worker thread.
        """
        if self._cost.get(str(dest), float("inf")) < self.INLINE_BELOW_S:
            return self.resolve(job_id, layers, dest)
        return await asyncio.to_thread(self.resolve, job_id, layers, dest)

    def forget(self, dest: Path) -> None:
        """Drop what is remembered about ``dest`` (its job ended and the overlay is gone)."""
        real = realpath(dest)
        self._cost.pop(str(dest), None)
        self._manifests.pop(real, None)
        self._last.pop(real, None)
        with self._locks_guard:
            self._locks.pop(real, None)

    def describe(self, layers: Sequence[Layer]) -> list[tuple[str, Winner]]:
        """Every path the overlay of ``layers`` would hold, sorted, with its winning layer(s)."""
        return sorted((relpath, target.winner) for relpath, target in plan(layers).items())

    def _lock(self, dest_real: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(dest_real, threading.Lock())


def _check_dest(layers: Sequence[Layer], dest: Path) -> str:
    dest_real = realpath(dest)
    for layer in layers:
        root = real_root(layer)
        if root is None:
            continue
        if is_inside(dest_real, root):
            raise IntelligenceError(
                f"the overlay directory {dest} is inside layer {layer.name} ({layer.root})",
            )
        if is_inside(root, dest_real):
            raise IntelligenceError(
                f"layer {layer.name} ({layer.root}) is inside the overlay directory {dest}",
            )
    return dest_real


#: A parsed manifest, with the ``(inode, size, mtime)`` of the file it was read from or written to.
_Manifests = dict[str, tuple[tuple[int, int, int], dict[str, "_Record"]]]


def _materialise(
    dest: Path,
    dest_real: str,
    targets: dict[str, Target],
    manifests: _Manifests,
    store: BlobStore | None = None,
    same_plan_winners: dict[str, Winner] | None = None,
) -> ResolveResult:
    """Bring ``dest_real`` in line with ``targets``.

    ``same_plan_winners`` is given when ``targets`` is the very plan last materialised here
    (no layer changed since): a manifest entry this process wrote then is known to match its
    sources without comparing them again, so only the copies are checked.
    """
    old, cached = _cached_manifest(dest_real, manifests)
    same_plan = same_plan_winners is not None and cached
    racy_after = time.time_ns() - _RACY_NS
    removed = _remove_stale(dest_real, [p for p in old if p not in targets])
    records: dict[str, _Record] = {}
    written = unchanged = 0
    made_dirs = {dest_real}
    for relpath, target in targets.items():
        path = f"{dest_real}/{relpath}"
        record = old.get(relpath)
        try:
            st: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            st = None
        copy_intact = (
            record is not None
            and st is not None
            and stat.S_ISREG(st.st_mode)
            and st.st_size == record.size
            and st.st_mtime_ns == record.mtime_ns
            and bool(st.st_mode & 0o100) == target.executable
        )
        if (
            copy_intact
            and record is not None
            and record.sources is not None
            and (same_plan or record.sources == target.signature())
        ):
            unchanged += 1
            records[relpath] = record
            continue
        signature = target.signature()
        content = target.content()
        digest = hashlib.sha256(content).hexdigest()
        if st is not None and (
            (copy_intact and record is not None and record.sha256 == digest)
            or _holds(path, st, content, target.executable)
        ):
            unchanged += 1
        else:
            st = _write(dest_real, relpath, content, target.executable, made_dirs, store, digest)
            written += 1
        trusted = target.newest_mtime_ns() < racy_after
        records[relpath] = _Record(
            signature if trusted else None, digest, st.st_size, st.st_mtime_ns, target.executable
        )
    if records != old:
        _save_manifest(dest_real, records)
        with contextlib.suppress(OSError):
            manifests[dest_real] = (_identity(dest_real), records)
    if same_plan_winners is not None:
        winners = same_plan_winners
    else:
        winners = {relpath: target.winner for relpath, target in targets.items()}
    digests = {relpath: record.sha256 for relpath, record in records.items()}
    return ResolveResult(dest, written, removed, unchanged, winners, digests)


def _holds(path: str, st: os.stat_result, content: bytes, executable: bool) -> bool:
    """Whether the file at ``path`` (lstat ``st``) already has exactly ``content``."""
    if not stat.S_ISREG(st.st_mode) or st.st_size != len(content):
        return False
    if bool(st.st_mode & 0o100) != executable:
        return False
    with open(path, "rb") as f:
        return f.read() == content


def _write(
    dest_real: str,
    relpath: str,
    content: bytes,
    executable: bool,
    made_dirs: set[str],
    store: BlobStore | None = None,
    digest: str = "",
) -> os.stat_result:
    """Put ``content`` at ``relpath``: a link to the store's copy, else a copy of its own."""
    _make_parents(dest_real, relpath, made_dirs)
    path = f"{dest_real}/{relpath}"
    if os.path.isdir(path) and not os.path.islink(path):
        raise IntelligenceError(
            f"cannot write {relpath} in the overlay: a directory coro did not create is there",
        )
    if store is None or not store.link(content, digest, executable, path):
        atomic_write_bytes(path, content, mode=0o755 if executable else 0o644, durable=False)
    return os.lstat(path)


def _make_parents(dest_real: str, relpath: str, made_dirs: set[str]) -> None:
    """Create the directories above ``relpath``, refusing any that is not a real directory."""
    current = dest_real
    for part in relpath.split("/")[:-1]:
        current = f"{current}/{part}"
        if current in made_dirs:
            continue
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current)
        else:
            if not stat.S_ISDIR(st.st_mode):
                raise IntelligenceError(
                    f"cannot write {relpath} in the overlay: {current} is not a directory",
                )
        made_dirs.add(current)


def _remove_stale(dest_real: str, relpaths: list[str]) -> int:
    """Delete files coro wrote that no layer supplies any more; prune emptied directories."""
    removed = 0
    parents: set[str] = set()
    for relpath in relpaths:
        path = f"{dest_real}/{relpath}"
        parent = os.path.dirname(path)
        if os.path.realpath(parent) != parent:
            log.warning("not deleting %s: a directory above it in the overlay is a symlink", path)
            continue
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                continue
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed += 1
        while parent != dest_real and is_inside(parent, dest_real):
            parents.add(parent)
            parent = os.path.dirname(parent)
    for directory in sorted(parents, key=len, reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(directory)  # only succeeds when empty
    return removed


def _identity(dest_real: str) -> tuple[int, int, int]:
    st = os.stat(os.path.join(dest_real, MANIFEST_NAME))
    return st.st_ino, st.st_size, st.st_mtime_ns


def _cached_manifest(dest_real: str, manifests: _Manifests) -> tuple[dict[str, _Record], bool]:
    """The manifest, parsed again only when its file is not the one last read or written;
    and whether it is that one."""
    try:
        identity = _identity(dest_real)
    except OSError:
        manifests.pop(dest_real, None)
        return _load_manifest(dest_real), False
    cached = manifests.get(dest_real)
    if cached is not None and cached[0] == identity:
        return cached[1], True
    records = _load_manifest(dest_real)
    manifests[dest_real] = (identity, records)
    return records, False


def _load_manifest(dest_real: str) -> dict[str, _Record]:
    path = os.path.join(dest_real, MANIFEST_NAME)
    try:
        with open(path, "rb") as f:
            raw = json.loads(f.read())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable overlay manifest %s: %s", path, exc)
        return {}
    records: dict[str, _Record] = {}
    try:
        if raw["version"] != _MANIFEST_VERSION:
            return {}
        for relpath, entry in raw["files"].items():
            try:
                if safe_relpath(relpath, layer="overlay manifest") != relpath:
                    raise LayerEscapeError(f"overlay manifest: path {relpath!r} is not normal")
            except LayerEscapeError as exc:
                log.warning("ignoring manifest entry in %s: %s", path, exc.message)
                continue
            records[relpath] = _Record(
                entry["sources"],
                str(entry["sha256"]),
                int(entry["size"]),
                int(entry["mtime_ns"]),
                bool(entry["executable"]),
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("ignoring malformed overlay manifest %s: %r", path, exc)
        return {}
    return records


def _save_manifest(dest_real: str, records: dict[str, _Record]) -> None:
    path = os.path.join(dest_real, MANIFEST_NAME)
    body = {
        "version": _MANIFEST_VERSION,
        "files": {
            relpath: {
                "sources": r.sources,
                "sha256": r.sha256,
                "size": r.size,
                "mtime_ns": r.mtime_ns,
                "executable": r.executable,
            }
            for relpath, r in sorted(records.items())
        },
    }
    tmp = path + ".coro-tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(body, f, separators=(",", ":"))
    os.replace(tmp, path)
