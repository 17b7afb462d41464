"""Read, Write and Edit: the built-in file tools, confined to the job's working directory.

Each function here is synchronous (the tool box runs it in a worker thread), returns the text
of the result and raises :class:`~engine.tools._base.ToolError` for anything the model should
correct. Writes go to a temporary file in the target's directory that is then renamed over the
target, so a reader sees the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from typing import BinaryIO

from pydantic import Field

from engine.tools._base import ToolError
from engine.tools.builtin._args import BuiltinArgs
from engine.tools.builtin._workspace import Workspace, reason

__all__ = [
    "READ_LINE_LIMIT",
    "READ_MAX_LINE_CHARS",
    "EditArgs",
    "ReadArgs",
    "WriteArgs",
    "edit_file",
    "is_binary",
    "number_lines",
    "read_file",
    "write_file",
]

READ_LINE_LIMIT = 2000
"""Lines Read returns when no ``limit`` is given."""
READ_MAX_LINE_CHARS = 2000
"""Characters of one line Read shows; the rest of a longer line is cut."""
_SNIFF = 8192
_NOTE_RESERVE = 256
_SNIPPET_CONTEXT = 3
_SNIPPET_MAX_LINES = 16
_CHUNK = 1 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

_PATH_HELP = "relative to the working directory, or absolute inside it"


class ReadArgs(BuiltinArgs):
    file_path: str = Field(description=f"The file to read ({_PATH_HELP}).")
    offset: int | None = Field(
        default=None,
        ge=0,
        description="The line number to start at (1 is the first line; 0 means 1 too).",
    )
    limit: int | None = Field(
        default=None, ge=1, description=f"How many lines to read (default {READ_LINE_LIMIT})."
    )


class WriteArgs(BuiltinArgs):
    file_path: str = Field(description=f"The file to create or replace ({_PATH_HELP}).")
    content: str = Field(description="The whole new content of the file.")


class EditArgs(BuiltinArgs):
    file_path: str = Field(description=f"The file to change ({_PATH_HELP}).")
    old_string: str = Field(
        description="The exact text to replace, including indentation; it must occur exactly "
        "once unless replace_all is true (add surrounding lines to make it unique)."
    )
    new_string: str = Field(description="The text to put in its place (must differ).")
    replace_all: bool = Field(
        default=False, description="Replace every occurrence instead of exactly one."
    )


def is_binary(head: bytes) -> bool:
    """Whether the first bytes of a file look binary (a NUL byte, as git and grep judge)."""
    return b"\0" in head


def number_lines(lines: list[str], first: int) -> str:
    """``lines`` numbered from ``first`` as ``cat -n`` does (6-wide number, then a tab)."""
    return "".join(f"{number:>6}\t{line}\n" for number, line in enumerate(lines, first))


def read_file(ws: Workspace, args: ReadArgs, output_cap: int) -> str:
    """Numbered lines of a text file, from ``offset``, at most ``limit`` and ``output_cap``."""
    real = ws.resolve(args.file_path)
    fd = ws.open_regular(real, args.file_path)
    with os.fdopen(fd, "rb") as file:
        head = file.read(_SNIFF)
        if is_binary(head):
            size = os.fstat(file.fileno()).st_size
            raise ToolError(
                f"argument 'file_path': {args.file_path!r} is a binary file ({size} bytes); Read "
                "shows text files only (inspect it with Bash, e.g. `file` or `xxd | head`)"
            )
        file.seek(0)
        return _numbered(file, args, output_cap, ws.display(real))


def _numbered(file: BinaryIO, args: ReadArgs, output_cap: int, shown: str) -> str:
    start = max(args.offset or 1, 1)
    limit = args.limit or READ_LINE_LIMIT
    budget = max(output_cap - _NOTE_RESERVE, 1)
    parts: list[str] = []
    used = 0
    last = start - 1
    capped = False
    lines = _LineCounter(file)
    for number, raw in lines:
        if number < start:
            continue
        if number >= start + limit:
            break
        entry = f"{number:>6}\t{_display_line(raw)}\n"
        size = len(entry.encode("utf-8"))
        if used + size > budget and parts:
            capped = True
            break
        parts.append(entry)
        used += size
        last = number
    total = _count_rest(file, lines)
    if total == 0:
        return f"({shown} is empty)"
    if start > total:
        raise ToolError(
            f"argument 'offset': {shown} has only {total} lines; offset {start} is past its end"
        )
    text = "".join(parts)
    if capped:
        text += (
            f"[output capped at {output_cap} bytes after line {last} of {total}; read on with "
            f"offset={last + 1}]\n"
        )
    elif last < total:
        text += f"[showing lines {start}-{last} of {total}; read on with offset={last + 1}]\n"
    return text


class _LineCounter:
    """Iterates ``(number, line)`` over a binary file and remembers how many it has read."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.count = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for raw in self._file:
            self.count += 1
            yield self.count, raw


def _count_rest(file: BinaryIO, lines: _LineCounter) -> int:
    """The file's total number of lines, counting what ``lines`` has not yet read in chunks."""
    total = lines.count
    last = b"\n"
    for chunk in iter(lambda: file.read(_CHUNK), b""):
        total += chunk.count(b"\n")
        last = chunk[-1:]
    if last != b"\n":
        total += 1  # a last line without a newline
    return total


def _display_line(raw: bytes) -> str:
    line = raw.decode("utf-8", "replace").removesuffix("\n").removesuffix("\r")
    if len(line) > READ_MAX_LINE_CHARS:
        extra = len(line) - READ_MAX_LINE_CHARS
        line = f"{line[:READ_MAX_LINE_CHARS]}… [{extra} more characters on this line]"
    return line


def write_file(ws: Workspace, args: WriteArgs) -> str:
    """Create or replace a file with ``content``; parent directories are created."""
    real = ws.resolve(args.file_path)
    ws.check_writable(real, args.file_path)
    data = _encode(args.content, "content")
    if os.path.isdir(real):
        raise ToolError(f"argument 'file_path': {args.file_path!r} is a directory")
    ws.make_dirs(os.path.dirname(real), args.file_path)
    existed = replace_file(ws, real, data, args.file_path)
    lines = args.content.count("\n") + (0 if args.content.endswith("\n") or not data else 1)
    verb = "Replaced" if existed else "Created"
    return f"{verb} {ws.display(real)}: wrote {len(data)} bytes ({lines} lines)."


def edit_file(ws: Workspace, args: EditArgs) -> str:
    """Replace ``old_string`` (once, or everywhere with ``replace_all``) in a text file."""
    if not args.old_string:
        raise ToolError(
            "argument 'old_string' is empty; give the exact text to replace (to create or "
            "replace a whole file, use Write)"
        )
    if args.old_string == args.new_string:
        raise ToolError(
            "argument 'new_string' is the same as 'old_string'; the edit would change nothing"
        )
    real = ws.resolve(args.file_path)
    ws.check_writable(real, args.file_path)
    if not os.path.lexists(real):
        raise ToolError(
            f"argument 'file_path': {args.file_path!r} does not exist; create it with Write"
        )
    fd = ws.open_regular(real, args.file_path)
    with os.fdopen(fd, "rb") as file:
        data = file.read()
    if is_binary(data[:_SNIFF]):
        raise ToolError(
            f"argument 'file_path': {args.file_path!r} is a binary file; Edit "
            "changes text files only"
        )
    # surrogateescape round-trips bytes that are not UTF-8, so an edit never mangles them
    text = data.decode("utf-8", "surrogateescape")
    old, new = args.old_string, args.new_string
    count = text.count(old)
    if count == 0 and "\r\n" in text and "\n" in old:
        old, new = old.replace("\n", "\r\n"), new.replace("\n", "\r\n")  # a CRLF file
        count = text.count(old)
    shown = ws.display(real)
    if count == 0:
        raise ToolError(
            f"argument 'old_string': the text was not found in {shown}; it must match exactly, "
            "including whitespace and indentation — Read the file and copy the lines to change"
        )
    if count > 1 and not args.replace_all:
        raise ToolError(
            f"argument 'old_string': the text occurs {count} times in {shown}; add surrounding "
            "lines to make it unique, or set replace_all to true to change every occurrence"
        )
    where = text.index(old)
    updated = text.replace(old, new) if args.replace_all else text.replace(old, new, 1)
    replace_file(ws, real, _encode(updated, "new_string", errors="surrogateescape"), shown)
    times = f"{count} occurrences" if args.replace_all and count > 1 else "1 occurrence"
    return f"Edited {shown}: replaced {times}.\n{_snippet(updated, where, new)}"


def _snippet(text: str, where: int, new: str) -> str:
    """Numbered lines around the first replacement, as they read now."""
    first = text.count("\n", 0, where)  # 0-based line of the change
    last = first + new.count("\n")
    lines = text.splitlines()
    lo = max(first - _SNIPPET_CONTEXT, 0)
    hi = min(last + _SNIPPET_CONTEXT + 1, len(lines), lo + _SNIPPET_MAX_LINES)
    shown = [_display_line(line.encode("utf-8", "surrogateescape")) for line in lines[lo:hi]]
    return number_lines(shown, lo + 1)


def _encode(text: str, argument: str, *, errors: str = "strict") -> bytes:
    try:
        return text.encode("utf-8", errors)
    except UnicodeEncodeError:
        raise ToolError(
            f"argument {argument!r} is not valid Unicode text (it holds a lone surrogate)"
        ) from None


def replace_file(ws: Workspace, real: str, data: bytes, raw: str) -> bool:
    """Atomically replace (or create) the file at the resolved path ``real`` with ``data``.

    The temporary file and the rename go through a descriptor of the verified parent directory,
    so a symlink swapped in along the path cannot redirect the write. An existing file keeps its
    permission bits; a new one gets the usual ``0666`` less the umask.

    Returns:
        Whether a file was there before.
    """
    parent, name = os.path.split(real)
    directory = ws.open_dir_for_writing(parent, raw)
    try:
        try:
            before = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            before = None
        if before is not None and stat.S_ISDIR(before.st_mode):
            raise ToolError(f"argument 'file_path': {raw!r} is a directory")
        mode = stat.S_IMODE(before.st_mode) if before and stat.S_ISREG(before.st_mode) else None
        tmp = f".coro-{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o666 if mode is None else mode, dir_fd=directory)
            try:
                if mode is not None:
                    os.fchmod(fd, mode)  # os.open's mode is filtered through the umask
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=directory)
            if isinstance(exc, OSError):
                raise ToolError(f"cannot write {raw!r}: {reason(exc)}") from None
            raise
        return before is not None
    finally:
        os.close(directory)
