"""One shared, read-only copy of every overlay file, hard-linked into each job's overlay.

Jobs stacked on the same layers get the same overlay, file for file. Writing it out anew for
every job costs an inode per file, which on a slow disk is most of what starting a job costs
(about 0.5-0.8 ms a file against 15 us for a link). So the resolver keeps each distinct file
once, by content, in a store beside the jobs' directories, and links it into the overlays.

A stored file is mode 0444 (0555 when executable), so a stray write fails for anyone but
root. A write that gets through anyway changes the file's mtime in every overlay that links
it, and each job's next resolve notices, as it would for a copy of its own: the damaged copy is
replaced by a fresh link, and the damaged blob by a freshly written one.

Where links cannot be made (another filesystem, a filesystem without them), the store
reports it once and the resolver writes plain copies instead.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path

from engine._fs import atomic_write_bytes

__all__ = ["BlobStore"]

log = logging.getLogger(__name__)

#: errno values that mean "this filesystem (pair) cannot hard-link", not "something is wrong".
_NO_LINKS = frozenset(
    {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}
)


class BlobStore:
    """Overlay files kept once by content under ``root``, handed out as hard links.

    Thread-safe: each blob is written to a temporary name of its own and renamed into place.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.usable = True

    def link(self, content: bytes, digest: str, executable: bool, dest: str) -> bool:
        """Make ``dest`` a hard link to the stored copy of ``content``, replacing any file there.

        Args:
            content: the bytes ``dest`` must hold.
            digest: their SHA-256, in hex.
            executable: whether the file must be executable.
            dest: an absolute path whose directory exists.

        Returns:
            False when links cannot be made here; the caller writes a copy instead, and the
            store is not tried again.

        Raises:
            OSError: the store or ``dest`` cannot be written.
        """
        if not self.usable:
            return False
        blob = self._blob(content, digest, executable)
        tmp = f"{dest}.coro-tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            os.link(blob, tmp)
        except FileNotFoundError:
            # Swept between being checked and linked: write it again, once.
            blob = self._blob(content, digest, executable)
            os.link(blob, tmp)
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            self.usable = False
            log.info(
                "intelligence overlays are copied, not linked: cannot link %s to %s (%s)",
                blob,
                dest,
                exc.strerror,
            )
            return False
        try:
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return True

    def sweep(self) -> int:
        """Delete stored files no overlay links any more (link count 1); returns how many."""
        removed = 0
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if st.st_nlink <= 1 or entry.name.endswith(".tmp"):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("overlay store: removed %d files no job uses", removed)
        return removed

    def _blob(self, content: bytes, digest: str, executable: bool) -> str:
        """The path of the stored copy of ``content``, written (or rewritten) if need be."""
        name = f"{digest}-x" if executable else digest
        path = os.path.join(self.root, name)
        if not _holds(path, content, executable):
            atomic_write_bytes(path, content, mode=0o555 if executable else 0o444, durable=False)
        return path


def _holds(path: str, content: bytes, executable: bool) -> bool:
    """Whether the stored file at ``path`` exists and has exactly ``content``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(content):
            return False
        if bool(st.st_mode & 0o100) != executable or st.st_mode & 0o222:
            return False
        return f.read() == content
