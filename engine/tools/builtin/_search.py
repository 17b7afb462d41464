"""Glob and Grep: finding files and text inside the job's working directory.

Both walk the tree without following symlinked directories, skip ``.git``, and leave out any
symlinked file that leads outside the confinement root, so neither can name or read a file
outside it. Grep is a pure-Python (``re``) search: no ripgrep needed.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from pydantic import Field

from engine.tools._base import ToolError
from engine.tools.builtin._args import BuiltinArgs
from engine.tools.builtin._files import is_binary
from engine.tools.builtin._workspace import Workspace, is_within

__all__ = [
    "GLOB_LIMIT",
    "GREP_FILE_TYPES",
    "GlobArgs",
    "GrepArgs",
    "glob_files",
    "glob_regex",
    "grep_files",
]

GLOB_LIMIT = 100
"""Paths Glob returns at most."""
SKIPPED_DIRS = frozenset({".git"})
_SNIFF = 8192
_GREP_LINE_CHARS = 1000
_MAX_BRACE_EXPANSIONS = 256
_WILD = re.compile(r"[*?\[{]")

GREP_FILE_TYPES: dict[str, tuple[str, ...]] = {
    "c": ("*.c", "*.h"),
    "cpp": ("*.cc", "*.cpp", "*.cxx", "*.hh", "*.hpp", "*.hxx", "*.h"),
    "cs": ("*.cs",),
    "css": ("*.css", "*.scss", "*.sass", "*.less"),
    "go": ("*.go",),
    "html": ("*.html", "*.htm"),
    "java": ("*.java",),
    "js": ("*.js", "*.jsx", "*.mjs", "*.cjs"),
    "json": ("*.json",),
    "kotlin": ("*.kt", "*.kts"),
    "md": ("*.md", "*.markdown"),
    "php": ("*.php",),
    "py": ("*.py", "*.pyi"),
    "rb": ("*.rb",),
    "rust": ("*.rs",),
    "sh": ("*.sh", "*.bash", "*.zsh"),
    "sql": ("*.sql",),
    "swift": ("*.swift",),
    "toml": ("*.toml",),
    "ts": ("*.ts", "*.tsx", "*.mts", "*.cts"),
    "yaml": ("*.yaml", "*.yml"),
}
"""Grep's ``type`` filter: ripgrep's type names for the common languages."""


class GlobArgs(BuiltinArgs):
    pattern: str = Field(
        description="A glob such as '**/*.py' or 'src/**/*.{ts,tsx}': '*' and '?' stay within "
        "one directory, '**' crosses directories, '{a,b}' gives alternatives."
    )
    path: str | None = Field(
        default=None,
        description="The directory to search (default: the working directory).",
    )


class GrepArgs(BuiltinArgs):
    pattern: str = Field(description="A Python regular expression to search file contents for.")
    path: str | None = Field(
        default=None,
        description="A file or directory to search (default: the working directory).",
    )
    glob: str | None = Field(
        default=None,
        description="Only search files matching this glob ('*.py', 'src/**/*.ts', '*.{ts,tsx}').",
    )
    type: str | None = Field(
        default=None,
        description=f"Only search files of this type ({', '.join(GREP_FILE_TYPES)}).",
    )
    output_mode: Literal["files_with_matches", "content", "count"] = Field(
        default="files_with_matches",
        description="'files_with_matches' lists matching files (newest first), 'content' shows "
        "matching lines, 'count' the number of matching lines per file.",
    )
    case_insensitive: bool = Field(default=False, alias="-i", description="Ignore case.")
    line_numbers: bool = Field(
        default=True, alias="-n", description="Show line numbers (content mode)."
    )
    after: int | None = Field(
        default=None, ge=0, alias="-A", description="Lines to show after each match (content)."
    )
    before: int | None = Field(
        default=None, ge=0, alias="-B", description="Lines to show before each match (content)."
    )
    context: int | None = Field(
        default=None, ge=0, alias="-C", description="Lines to show around each match (content)."
    )
    head_limit: int | None = Field(
        default=None, ge=1, description="Return only the first N lines, files or counts."
    )


# -- globs --------------------------------------------------------------------------------


def expand_braces(pattern: str) -> list[str]:
    """``a.{py,md}`` → ``['a.py', 'a.md']``, nested braces included.

    Raises:
        ToolError: the pattern expands to too many alternatives.
    """
    results = [pattern]
    expanded: list[str] = []
    while results:
        current = results.pop()
        span = _innermost_braces(current)
        if span is None:
            expanded.append(current)
        else:
            start, end = span
            for option in current[start + 1 : end].split(","):
                results.append(current[:start] + option + current[end + 1 :])
        if len(results) + len(expanded) > _MAX_BRACE_EXPANSIONS:
            raise ToolError(
                f"argument 'pattern': {pattern!r} expands to more than "
                f"{_MAX_BRACE_EXPANSIONS} alternatives; simplify its {{a,b}} groups"
            )
    return sorted(set(expanded), key=expanded.index)


def _innermost_braces(pattern: str) -> tuple[int, int] | None:
    """The first ``{...}`` group holding a comma and no other brace, as (open, close)."""
    opened: int | None = None
    for index, char in enumerate(pattern):
        if char == "{":
            opened = index
        elif char == "}" and opened is not None:
            if "," in pattern[opened:index]:
                return opened, index
            opened = None
    return None


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex matching ``/``-separated relative paths against a glob.

    ``*`` and ``?`` match within one path segment (dot files included), ``**`` as a whole
    segment matches any number of directories (none included), ``[...]`` is a character class
    (``[!...]`` negated) and ``{a,b}`` gives alternatives.
    """
    options = [_translate(option) for option in expand_braces(pattern)]
    return re.compile("(?:" + "|".join(options) + r")\Z", re.DOTALL)


def _translate(pattern: str) -> str:
    segments = pattern.strip("/").split("/")
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            out.append(".*" if last else "(?:[^/]*/)*")
            continue
        out.append(_translate_segment(segment) + ("" if last else "/"))
    return "".join(out)


def _translate_segment(segment: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        index += 1
        if char == "*":
            while index < len(segment) and segment[index] == "*":
                index += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            start = index + (segment[index : index + 1] in ("!", "^"))
            close = segment.find("]", start + (segment[start : start + 1] == "]"))
            if close == -1:
                out.append(re.escape(char))
                continue
            body = segment[index:close]
            index = close + 1
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
        else:
            out.append(re.escape(char))
    return "".join(out)


def _split_pattern(pattern: str) -> tuple[str, str]:
    """A glob's literal leading directories and the rest: ``src/a/**/*.py`` → ``src/a``,
    ``**/*.py``."""
    parts = pattern.split("/")
    literal: list[str] = []
    for part in parts[:-1]:
        if _WILD.search(part):
            break
        literal.append(part)
    rest = "/".join(parts[len(literal) :])
    prefix = "/".join(literal)
    if pattern.startswith("/") and not prefix:
        prefix = "/"
    return prefix, rest


# -- walking ------------------------------------------------------------------------------


def walk_files(ws: Workspace, base: str, *, max_depth: int | None = None) -> Iterator[str]:
    """Every file below the directory ``base`` whose real path lies inside the root.

    Symlinked directories are not entered; a symlinked file is yielded (by its own path) only
    when its target is a regular file inside the root. ``.git`` is skipped.
    """
    for directory, dirnames, filenames in os.walk(base, followlinks=False):
        depth = 0 if directory == base else directory[len(base) :].count(os.sep)
        deeper = max_depth is None or depth + 1 < max_depth
        dirnames[:] = sorted(d for d in dirnames if deeper and d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            path = os.path.join(directory, name)
            if os.path.islink(path):
                target = os.path.realpath(path)
                if not is_within(target, ws.root) or not os.path.isfile(target):
                    continue
            yield path


def _search_base(ws: Workspace, raw: str | None) -> str:
    """The directory or file named by a ``path`` argument, confined; the cwd by default."""
    if raw is None or raw == "":
        return ws.cwd
    real = ws.resolve(raw, argument="path")
    if not os.path.exists(real):
        raise ToolError(f"argument 'path': {raw!r} does not exist")
    return real


def _relative(path: str, base: str) -> str:
    return os.path.relpath(path, base).replace(os.sep, "/")


# -- Glob ---------------------------------------------------------------------------------


def glob_files(ws: Workspace, args: GlobArgs) -> str:
    """Files matching ``pattern`` below ``path``, newest first, at most :data:`GLOB_LIMIT`."""
    if not args.pattern.strip():
        raise ToolError("argument 'pattern' is empty; give a glob such as '**/*.py'")
    base = _search_base(ws, args.path)
    if not os.path.isdir(base):
        raise ToolError(f"argument 'path': {args.path!r} is a file, not a directory")
    prefix, rest = _split_pattern(args.pattern)
    if prefix:
        base = ws.resolve(os.path.join(base, prefix), argument="pattern")
        if not os.path.isdir(base):
            return f"No files match {args.pattern!r} ({prefix!r} is not a directory)."
    if ".." in rest.split("/"):
        raise ToolError(
            "argument 'pattern': '..' may only appear in the leading directories of a pattern, "
            "before any wildcard"
        )
    regex = glob_regex(rest)
    depth = None if "**" in rest else len(rest.split("/"))
    found: list[tuple[float, str]] = []
    for path in walk_files(ws, base, max_depth=depth):
        if regex.match(_relative(path, base)):
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                continue
            found.append((mtime, ws.display(path)))
    if not found:
        return f"No files match {args.pattern!r} in {ws.display(base)}."
    found.sort(key=lambda item: (-item[0], item[1]))
    shown = [path for _, path in found[:GLOB_LIMIT]]
    text = "\n".join(shown)
    if len(found) > GLOB_LIMIT:
        text += (
            f"\n[showing the {GLOB_LIMIT} newest of {len(found)} matches; narrow the pattern or "
            "the path to see the rest]"
        )
    return text


# -- Grep ---------------------------------------------------------------------------------


@dataclass
class _Output:
    """Result lines under a byte cap and an optional entry limit."""

    cap: int
    limit: int | None
    lines: list[str]
    used: int = 0
    entries: int = 0
    truncated: str | None = None

    def add(self, line: str, *, entry: bool = True) -> bool:
        """Append a line; ``False`` once the output is full (nothing more should be added)."""
        if self.truncated:
            return False
        if entry and self.limit is not None and self.entries >= self.limit:
            self.truncated = f"[stopped at head_limit={self.limit}]"
            return False
        size = len(line.encode("utf-8")) + 1
        if self.used + size > self.cap and self.lines:
            self.truncated = (
                f"[output capped at {self.cap} bytes; narrow the search (path, glob, type) or "
                "set head_limit]"
            )
            return False
        self.lines.append(line)
        self.used += size
        self.entries += entry
        return True


def grep_files(ws: Workspace, args: GrepArgs, output_cap: int) -> str:
    """Search file contents with a regular expression; see :class:`GrepArgs`."""
    try:
        regex = re.compile(args.pattern, re.IGNORECASE if args.case_insensitive else 0)
    except re.error as exc:
        raise ToolError(
            f"argument 'pattern': {args.pattern!r} is not a valid regular expression: {exc} "
            "(Python `re` syntax; escape literal characters such as '(' or '{' with '\\')"
        ) from None
    filters = _file_filters(args)
    base = _search_base(ws, args.path)
    files = [base] if os.path.isfile(base) else walk_files(ws, base)
    out = _Output(max(output_cap - 200, 1), args.head_limit, [])
    matched: list[tuple[float, str]] = []
    counts: list[tuple[str, int]] = []
    for path in files:
        relative = _relative(path, base) if path != base else os.path.basename(path)
        if filters and not any(f.match(relative) for f in filters):
            continue
        lines = _text_lines(path)
        if lines is None:
            continue
        shown = ws.display(path)
        if args.output_mode == "content":
            if not _grep_content(regex, lines, shown, args, out):
                break
            continue
        count = sum(1 for line in lines if regex.search(line))
        if count:
            counts.append((shown, count))
            matched.append((_mtime(path), shown))
    if args.output_mode == "files_with_matches":
        matched.sort(key=lambda item: (-item[0], item[1]))
        for _, shown in matched:
            if not out.add(shown):
                break
        header = f"Found {_plural(len(matched), 'file')}"
    elif args.output_mode == "count":
        for shown, count in counts:
            if not out.add(f"{shown}:{count}"):
                break
        total = sum(count for _, count in counts)
        header = f"Found {_plural(total, 'matching line')} in {_plural(len(counts), 'file')}"
    else:
        header = ""
    if not out.lines:
        return f"No matches for {args.pattern!r}."
    body = "\n".join(out.lines)
    text = f"{header}\n{body}" if header else body
    return f"{text}\n{out.truncated}" if out.truncated else text


def _file_filters(args: GrepArgs) -> list[re.Pattern[str]] | None:
    globs: list[str] = []
    if args.type is not None:
        known = GREP_FILE_TYPES.get(args.type)
        if known is None:
            raise ToolError(
                f"argument 'type': unknown file type {args.type!r}; known types: "
                f"{', '.join(GREP_FILE_TYPES)} (or use glob)"
            )
        globs.extend(known)
    if args.glob:
        globs.append(args.glob)
    if not globs:
        return None
    filters: list[re.Pattern[str]] = []
    for glob in globs:
        regex = glob_regex(glob)
        if "/" in glob:
            filters.append(regex)
        else:  # a glob without a slash matches a file's name in any directory
            filters.append(glob_regex("**/" + glob))
    return filters


def _grep_content(
    regex: re.Pattern[str], lines: list[str], shown: str, args: GrepArgs, out: _Output
) -> bool:
    """Add one file's matching lines (with context) to ``out``; ``False`` once it is full."""
    before = args.before if args.before is not None else (args.context or 0)
    after = args.after if args.after is not None else (args.context or 0)
    recent: deque[int] = deque(maxlen=before)
    last_shown = -1
    trailing = 0
    for index, line in enumerate(lines):
        if regex.search(line):
            gap = last_shown >= 0 and index - len(recent) > last_shown + 1
            if gap and (before or after) and not out.add("--", entry=False):
                return False
            for previous in recent:
                if not out.add(_grep_line(shown, previous, lines[previous], args, "-")):
                    return False
            recent.clear()
            if not out.add(_grep_line(shown, index, line, args, ":")):
                return False
            last_shown = index
            trailing = after
        elif trailing:
            trailing -= 1
            if not out.add(_grep_line(shown, index, line, args, "-")):
                return False
            last_shown = index
        elif before:
            recent.append(index)
    return True


def _grep_line(shown: str, index: int, line: str, args: GrepArgs, separator: str) -> str:
    if len(line) > _GREP_LINE_CHARS:
        line = f"{line[:_GREP_LINE_CHARS]}… [{len(line) - _GREP_LINE_CHARS} more characters]"
    if args.line_numbers:
        return f"{shown}{separator}{index + 1}{separator}{line}"
    return f"{shown}{separator}{line}"


def _text_lines(path: str) -> list[str] | None:
    """The lines of a text file (no line ends), or ``None`` for a binary or unreadable one."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError:
        return None
    if is_binary(data[:_SNIFF]):
        return None
    return data.decode("utf-8", "replace").splitlines()


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
