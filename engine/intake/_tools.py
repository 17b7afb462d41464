"""Plan mode's read-only investigation tools, and their bounds.

The investigator may list, read and search the files of one repository (a local checkout, or
the SCM's copy cloned into the cache), read past jobs, and read tracker issues when a tracker
is configured. Nothing here writes. Every call is bounded: output per tool, entries per
listing, matches per search, and a timeout; a path that would leave the repository (``..``,
an absolute path, a symlink pointing out) is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from engine.config import redact_text
from engine.errors import CoroError
from engine.phase import ToolOutcome, ToolSpec

if TYPE_CHECKING:
    from engine.config import IntakeConfig, LocalConfig
    from engine.intake._trackers import Tracker
    from state import StateBackend

__all__ = ["IntakeToolBox", "RepoView"]

#: Directories a listing or a search never goes into.
_SKIP_DIRS = {".git", "node_modules", "__pycache__", ".venv", "venv", ".mypy_cache", ".tox"}
_MAX_LIST = 400
_MAX_OUTPUT = 32 * 1024
_MAX_LINE = 300
_SEARCH_FILE_BYTES = 1024 * 1024

A = TypeVar("A", bound=BaseModel)


class _Refused(Exception):
    """A call the tool will not do; the message goes to the model as the tool's error."""


class _Args(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class _ListArgs(_Args):
    path: str = Field("", description="A directory of the repository ('' for the top).")
    depth: int = Field(3, ge=1, le=10, description="How many directory levels to show.")


class _ReadArgs(_Args):
    path: str = Field(description="The file, relative to the repository's top.")
    start_line: int = Field(1, ge=1, description="The first line to return (1-based).")
    max_lines: int = Field(400, ge=1, le=5000, description="How many lines at most.")


class _SearchArgs(_Args):
    query: str = Field(min_length=1, description="A regular expression (Python syntax).")
    path: str = Field("", description="Only search under this directory.")
    ignore_case: bool = False


class _PastJobsArgs(_Args):
    repo: str | None = Field(None, description="Only jobs on this repository.")
    status: str | None = Field(None, description="Only jobs with this status.")
    limit: int = Field(10, ge=1, le=30)


class _PastJobArgs(_Args):
    job_id: str = Field(min_length=1)


class _IssueArgs(_Args):
    key: str = Field(min_length=1, description="The issue key or number, e.g. PROJ-12 or 42.")


class _IssueSearchArgs(_Args):
    query: str = Field(min_length=1, description="Words to look for in issues.")


@dataclass(frozen=True, slots=True)
class RepoView:
    """A repository's files on disk, read-only: ``root`` is a checkout's top directory."""

    root: Path
    label: str

    def resolve(self, relative: str, *, want_dir: bool = False) -> Path:
        """``relative`` inside the repository, or :class:`_Refused` naming why not."""
        text = relative.strip().replace("\\", "/")
        if text in ("", ".", "/"):
            return self.root
        if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
            raise _Refused(f"{relative!r}: give a path relative to the repository's top")
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise _Refused(f"{relative!r}: '..' is not allowed; paths stay inside the repository")
        if parts and parts[0] == ".git":
            raise _Refused(f"{relative!r}: git's own files are not readable")
        path = self.root.joinpath(*parts)
        try:
            real = path.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise _Refused(f"{relative!r}: no such {'directory' if want_dir else 'file'}") from None
        except OSError as exc:
            raise _Refused(f"{relative!r}: {exc.strerror or exc}") from None
        if not real.is_relative_to(self.root.resolve()):
            raise _Refused(f"{relative!r}: the path leads out of the repository")
        return real

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root.resolve()).as_posix()


class IntakeToolBox:
    """The tools of one plan-mode turn, as the executor's :class:`~engine.phase.ToolBox`."""

    def __init__(
        self,
        *,
        config: LocalConfig,
        store: StateBackend,
        repo: RepoView | None,
        tracker: Tracker | None = None,
    ) -> None:
        self.config = config
        self.bounds: IntakeConfig = config.intake
        self.store = store
        self.repo = repo
        self.tracker = tracker
        self._tools: dict[
            str, tuple[ToolSpec, type[BaseModel], Callable[[Any], Awaitable[str]]]
        ] = {}
        if repo is not None:
            self._add("scm_list_files", "List the repository's files and directories (a tree; "
                      "directories end in '/').", _ListArgs, self._list)  # fmt: skip
            self._add("scm_read_file", "Read a text file of the repository, with line numbers. "
                      f"At most {self.bounds.max_read_bytes} bytes per call; page with "
                      "startLine.", _ReadArgs, self._read)  # fmt: skip
            self._add("scm_search_code", "Search the repository's text files for a regular "
                      f"expression; at most {self.bounds.max_search_results} matches, as "
                      "path:line: text.", _SearchArgs, self._search)  # fmt: skip
        self._add("list_past_jobs", "coro's past and current jobs, newest first: id, status, "
                  "phase, repository and brief.", _PastJobsArgs, self._past_jobs)  # fmt: skip
        detail = "One job in detail: brief, status, work items, PRs, artefacts, last log lines."
        self._add("get_past_job", detail, _PastJobArgs, self._past_job)
        if tracker is not None:
            self._add("tracker_get_issue", f"Read an issue of the {tracker.name} tracker: title, "
                      "status and description.", _IssueArgs, self._issue)  # fmt: skip
            self._add("tracker_get_comments", f"Read an issue's comments on {tracker.name}.",
                      _IssueArgs, self._comments)  # fmt: skip
            self._add("tracker_search_issues", f"Search {tracker.name} issues by text.",
                      _IssueSearchArgs, self._search_issues)  # fmt: skip

    def _add(
        self, name: str, description: str, args: type[A], handler: Callable[[A], Awaitable[str]]
    ) -> None:
        schema = args.model_json_schema(by_alias=True)
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        self._tools[name] = (ToolSpec(name, description, schema), args, handler)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self) -> list[ToolSpec]:
        return [spec for spec, _, _ in self._tools.values()]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        """Run a tool; every failure is an error result the model can read."""
        found = self._tools.get(name)
        if found is None:
            known = ", ".join(self._tools)
            return ToolOutcome(f"{name}: no such tool here (plan mode has: {known})", True)
        _, model, handler = found
        try:
            args = model.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            return ToolOutcome(f"{name}: wrong arguments: {problems}", True)
        timeout = self.bounds.tool_timeout_seconds
        try:
            text = await asyncio.wait_for(handler(args), timeout)
        except _Refused as exc:
            return ToolOutcome(f"{name}: {exc}", True)
        except TimeoutError:
            return ToolOutcome(f"{name}: stopped after {timeout:g} s; narrow the request", True)
        except CoroError as exc:
            return ToolOutcome(f"{name}: {exc.message}", True)
        except Exception as exc:  # a tool failure must reach the model, not end the turn
            return ToolOutcome(f"{name}: failed: {type(exc).__name__}: {exc}", True)
        return ToolOutcome(_clip(redact_text(text, self.config)))

    # -- repository ---------------------------------------------------------------------------
    async def _list(self, args: _ListArgs) -> str:
        assert self.repo is not None
        repo = self.repo
        top = repo.resolve(args.path, want_dir=True)
        if not top.is_dir():
            raise _Refused(f"{args.path!r} is a file; read it with scm_read_file")
        return await asyncio.to_thread(_tree, repo, top, args.depth)

    async def _read(self, args: _ReadArgs) -> str:
        assert self.repo is not None
        path = self.repo.resolve(args.path)
        if path.is_dir():
            raise _Refused(f"{args.path!r} is a directory; list it with scm_list_files")
        limit = self.bounds.max_read_bytes
        return await asyncio.to_thread(_read_lines, path, args.start_line, args.max_lines, limit)

    async def _search(self, args: _SearchArgs) -> str:
        assert self.repo is not None
        try:
            pattern = re.compile(args.query, re.IGNORECASE if args.ignore_case else 0)
        except re.error as exc:
            raise _Refused(f"query: not a valid regular expression: {exc}") from None
        top = self.repo.resolve(args.path, want_dir=True)
        cap = self.bounds.max_search_results
        return await asyncio.to_thread(_search, self.repo, top, pattern, cap)

    # -- past jobs ----------------------------------------------------------------------------
    async def _past_jobs(self, args: _PastJobsArgs) -> str:
        jobs = await self.store.list_jobs(limit=200)
        rows = []
        for job in jobs:
            repo = str(job.params.get("repo") or job.params.get("repoSlug") or "")
            if args.repo and repo != args.repo:
                continue
            if args.status and job.status.value != args.status:
                continue
            brief = str(job.params.get("description") or "")
            rows.append(
                {
                    "jobId": job.id,
                    "status": job.status.value,
                    "phase": job.phase,
                    "repo": repo or None,
                    "workflow": job.workflow_path,
                    "createdAt": job.created_at.isoformat(timespec="seconds"),
                    "brief": brief[:160] + ("…" if len(brief) > 160 else ""),
                }
            )
            if len(rows) >= args.limit:
                break
        return json.dumps(rows, indent=1) if rows else "no jobs match"

    async def _past_job(self, args: _PastJobArgs) -> str:
        job = await self.store.get_job(args.job_id)
        if job is None:
            raise _Refused(f"no job {args.job_id!r}; list_past_jobs shows the ids")
        log = await self.store.get_log(job.id, max(0, await self.store.log_length(job.id) - 20))
        detail = {
            "jobId": job.id,
            "status": job.status.value,
            "phase": job.phase,
            "workflow": job.workflow_path,
            "params": job.params,
            "workItems": [{"name": w.name, "status": w.status.value} for w in job.work_items],
            "pullRequests": [
                {"prId": pr.pr_id, "repo": pr.repo_slug, "merged": pr.merged_at is not None}
                for pr in job.pr_mappings
            ],
            "artifacts": [{"kind": a.kind, "title": a.title} for a in job.artifacts],
            "escalation": job.escalation_message,
            "lastLogLines": log,
        }
        return json.dumps(detail, indent=1, default=str)

    # -- tracker ------------------------------------------------------------------------------
    async def _issue(self, args: _IssueArgs) -> str:
        assert self.tracker is not None
        return await self.tracker.issue(args.key)

    async def _comments(self, args: _IssueArgs) -> str:
        assert self.tracker is not None
        return await self.tracker.comments(args.key)

    async def _search_issues(self, args: _IssueSearchArgs) -> str:
        assert self.tracker is not None
        return await self.tracker.search(args.query, self.bounds.max_search_results)


def _clip(text: str) -> str:
    if len(text) <= _MAX_OUTPUT + 1024:
        return text
    return text[:_MAX_OUTPUT] + f"\n… (cut: {len(text) - _MAX_OUTPUT} more characters)"


def _walk(top: Path) -> list[Path]:
    """Files under ``top``, sorted, skipping tool and dependency directories and every
    symlink (one could point out of the repository)."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if not path.is_symlink():
                out.append(path)
    return out


def _tree(repo: RepoView, top: Path, depth: int) -> str:
    lines: list[str] = []
    more = 0

    def walk(directory: Path, level: int) -> None:
        nonlocal more
        try:
            entries = sorted(directory.iterdir(), key=lambda p: p.name)
        except OSError:
            return
        for path in entries:
            if path.name in _SKIP_DIRS:
                continue
            is_dir = path.is_dir() and not path.is_symlink()
            if len(lines) >= _MAX_LIST:
                more += 1
                continue
            lines.append(path.relative_to(top).as_posix() + ("/" if is_dir else ""))
            if is_dir and level + 1 < depth:
                walk(path, level + 1)

    walk(top, 0)
    if not lines:
        return f"{repo.rel(top) or '.'}: empty"
    if more:
        lines.append(f"… and {more} more entries; list a subdirectory")
    return "\n".join(lines)


def _read_lines(path: Path, start: int, count: int, limit: int) -> str:
    with path.open("rb") as handle:
        head = handle.read(8192)
        if b"\0" in head:
            return f"{path.name}: a binary file ({path.stat().st_size} bytes); not shown"
        handle.seek(0)
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    if start > len(lines) and lines:
        raise _Refused(f"startLine {start}: the file has {len(lines)} lines")
    out: list[str] = []
    size = 0
    last = start - 1
    for number, line in enumerate(lines[start - 1 : start - 1 + count], start):
        row = f"{number:>5}  {line}"
        if size + len(row) + 1 > limit:
            break
        out.append(row)
        size += len(row) + 1
        last = number
    if last < len(lines):
        out.append(
            f"… (lines {last + 1} to {len(lines)} not shown; read on with startLine={last + 1})"
        )
    return "\n".join(out) if out else "(empty file)"


def _search(repo: RepoView, top: Path, pattern: re.Pattern[str], cap: int) -> str:
    hits: list[str] = []
    files = [top] if top.is_file() else _walk(top)
    for path in files:
        try:
            if path.stat().st_size > _SEARCH_FILE_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if b"\0" in data[:8192]:
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if pattern.search(line):
                text = line.strip()
                if len(text) > _MAX_LINE:
                    text = text[:_MAX_LINE] + "…"
                hits.append(f"{repo.rel(path)}:{number}: {text}")
                if len(hits) >= cap:
                    hits.append(f"… stopped at {cap} matches; narrow the query or the path")
                    return "\n".join(hits)
    return "\n".join(hits) if hits else "no matches"
