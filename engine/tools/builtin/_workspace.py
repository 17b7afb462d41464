"""Path confinement for the built-in file tools: every path a model names stays inside the job.

A :class:`Workspace` turns a model's ``file_path`` or ``path`` into a real path (every symlink
resolved) and refuses it with a :class:`~engine.tools._base.ToolError` when it lands outside the
confinement root: through ``..``, as an absolute path elsewhere, or through a symlink anywhere
along the way. Writes are also refused inside the job's intelligence overlay.

The check is made twice: on the path before it is opened, and — on Linux — on the open file
descriptor itself (``/proc/self/fd``), so a symlink swapped in between the two cannot carry a
read or a write out of the root. Final components are opened with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from engine._fs import realpath
from engine.tools._base import ToolError

__all__ = ["OVERLAY_READ_ONLY", "Workspace", "is_within", "reason"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_FD_PATHS = Path("/proc/self/fd")

OVERLAY_READ_ONLY = (
    "the intelligence overlay is read-only to agents; propose changes with "
    "mcp__coro__propose_change"
)


def is_within(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or lies below it (both absolute and normalised)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Workspace:
    """The confinement root of one job, its working directory and its read-only overlay.

    Args:
        root: the directory nothing may leave; it must exist.
        cwd: where relative paths start; it must lie inside ``root``.
        overlay_dir: a directory inside ``root`` that may be read but never written.

    Raises:
        ValueError: ``root`` is not a directory, or ``cwd`` is not a directory inside it.
    """

    def __init__(self, root: Path, cwd: Path, overlay_dir: Path | None = None) -> None:
        self.root = realpath(root)
        if not os.path.isdir(self.root):
            raise ValueError(f"the confinement root {str(root)!r} is not a directory")
        self.cwd = self.root if cwd == root else realpath(cwd)
        if not os.path.isdir(self.cwd) or not is_within(self.cwd, self.root):
            raise ValueError(f"the working directory {str(cwd)!r} is not a directory in {root}")
        self._overlay_dir = overlay_dir
        self._overlay: str | None = None

    @property
    def overlay(self) -> str | None:
        """The overlay's real path, resolved on first use (most phases never write a file)."""
        if self._overlay is None and self._overlay_dir is not None:
            self._overlay = realpath(self._overlay_dir)
        return self._overlay

    def resolve(self, raw: str, *, argument: str = "file_path") -> str:
        """The real path ``raw`` names, relative to :attr:`cwd`, checked to lie inside the root.

        The target need not exist; the existing part of the path is resolved.

        Raises:
            ToolError: the path is empty or malformed, or it lands outside the root.
        """
        if not raw or "\0" in raw:
            raise ToolError(f"argument {argument!r} must be a non-empty path without NUL bytes")
        joined = os.path.join(self.cwd, raw)  # an absolute ``raw`` replaces cwd
        real = os.path.realpath(joined)
        if is_within(real, self.root):
            return real
        lexical = os.path.normpath(joined)
        if is_within(lexical, self.root):
            reason = "it goes through a symbolic link that leads out of the working directory"
        elif os.path.isabs(raw):
            reason = "absolute paths must lie inside the working directory"
        else:
            reason = "it climbs out of the working directory with '..'"
        raise ToolError(
            f"argument {argument!r}: {raw!r} is outside the job's working directory "
            f"({self.root}): {reason}; name a file inside it"
        )

    def check_writable(self, real: str, raw: str, *, argument: str = "file_path") -> None:
        """Refuse a write to a resolved path inside the overlay."""
        if self.overlay is not None and is_within(real, self.overlay):
            raise ToolError(f"argument {argument!r}: cannot write {raw!r}: {OVERLAY_READ_ONLY}")

    def display(self, real: str) -> str:
        """``real`` as the model should see it: relative to the working directory."""
        if real == self.cwd:
            return "."
        return os.path.relpath(real, self.cwd)

    def verify_fd(
        self, fd: int, raw: str, *, argument: str = "file_path", writing: bool = False
    ) -> None:
        """Refuse an open descriptor whose file lies outside the root (a swapped-in symlink),
        or, when ``writing``, inside the overlay.

        Where the platform cannot say which file a descriptor is (no ``/proc``), the path checks
        made before opening it stand alone.
        """
        try:
            actual = os.readlink(_FD_PATHS / str(fd)).removesuffix(" (deleted)")
        except OSError:
            return
        if not is_within(actual, self.root):
            raise ToolError(
                f"argument {argument!r}: {raw!r} changed while it was being opened and now leads "
                "out of the working directory; the call was refused"
            )
        if writing:
            self.check_writable(actual, raw, argument=argument)

    def open_regular(self, real: str, raw: str, *, argument: str = "file_path") -> int:
        """Open an existing regular file for reading; the caller closes the descriptor.

        Raises:
            ToolError: it does not exist, is a directory or another non-regular file, cannot be
                read, or leads outside the root.
        """
        flags = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(real, flags)
        except FileNotFoundError:
            raise ToolError(f"argument {argument!r}: {raw!r} does not exist") from None
        except OSError as exc:
            raise ToolError(f"argument {argument!r}: cannot open {raw!r}: {reason(exc)}") from None
        try:
            self.verify_fd(fd, raw, argument=argument)
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise ToolError(
                    f"argument {argument!r}: {raw!r} is a directory, not a file; list its files "
                    "with Glob (or search them with Grep)"
                )
            if not stat.S_ISREG(mode):
                raise ToolError(
                    f"argument {argument!r}: {raw!r} is not a regular file (a device, pipe or "
                    "socket); only regular files can be read"
                )
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_dir_for_writing(self, real: str, raw: str, *, argument: str = "file_path") -> int:
        """Open the directory a file will be written in (by descriptor); the caller closes it."""
        try:
            fd = os.open(real, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
        except OSError as exc:
            raise ToolError(
                f"argument {argument!r}: cannot open the directory of {raw!r}: {reason(exc)}"
            ) from None
        try:
            self.verify_fd(fd, raw, argument=argument, writing=True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def make_dirs(self, real_dir: str, raw: str, *, argument: str = "file_path") -> None:
        """Create ``real_dir`` and its missing parents, refusing to create any through a
        symlink that leads out of the root."""
        missing: list[str] = []
        current = real_dir
        while not os.path.isdir(current):
            if os.path.lexists(current):
                raise ToolError(
                    f"argument {argument!r}: cannot create the directories for {raw!r}: "
                    f"{self.display(current)!r} exists and is not a directory"
                )
            missing.append(current)
            current = os.path.dirname(current)
        for directory in reversed(missing):
            if not is_within(os.path.realpath(os.path.dirname(directory)), self.root):
                raise ToolError(
                    f"argument {argument!r}: {raw!r} leads out of the working directory"
                )
            try:
                os.mkdir(directory)
            except FileExistsError:
                pass
            except OSError as exc:
                raise ToolError(
                    f"argument {argument!r}: cannot create the directory "
                    f"{self.display(directory)!r}: {reason(exc)}"
                ) from None
        if not is_within(os.path.realpath(real_dir), self.root):
            raise ToolError(f"argument {argument!r}: {raw!r} leads out of the working directory")


def reason(exc: OSError) -> str:
    """A short, readable cause for an ``OSError`` (``permission denied``, ``No space left…``)."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno is not None and exc.errno == getattr(os, "ELOOP", -1):
        return "it is a symbolic link (or a symlink loop)"
    return exc.strerror or str(exc)
