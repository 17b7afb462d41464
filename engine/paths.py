"""Where coro keeps its files: ``CORO_HOME`` (default ``~/.coro``) and everything under it.

::

    $CORO_HOME/
        config.json      LocalConfig (mode 0600)
        state.db         SQLite state
        runner.token     bearer token of the HTTP shim (mode 0600)
        runner.json      where the running runner listens (url, pid), while it runs
        working/<job>/   per-job directory: _intelligence/ overlay + checkouts (paths.workingDir)
        intelligence/    the tenant layer (intelligence.dir)
        cache/           loader and writer caches
        local-scm/       bare repositories of the local SCM
        guardrails/      user guardrail scripts
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine._fs import ensure_private_dir

if TYPE_CHECKING:
    from engine.config import LocalConfig

__all__ = ["CORO_HOME_ENV", "CoroPaths", "coro_home"]

CORO_HOME_ENV = "CORO_HOME"
_DEFAULT_HOME = "~/.coro"
# A job id becomes one directory name: no separators, no "." / "..", no leading dot or dash.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def coro_home() -> Path:
    """``$CORO_HOME`` if set and not empty, else ``~/.coro``; ``~`` expanded, made absolute."""
    raw = os.environ.get(CORO_HOME_ENV) or _DEFAULT_HOME
    return Path(os.path.abspath(os.path.expanduser(raw)))


def _resolve(value: str | None, home: Path, default: str) -> Path:
    """A configured directory: ``~`` expanded; relative paths are relative to ``home``."""
    if not value:
        return home / default
    return Path(os.path.abspath(home / os.path.expanduser(value)))


@dataclass(frozen=True, slots=True)
class CoroPaths:
    """Every path coro uses, derived once from a home directory and the config."""

    home: Path
    config_file: Path
    state_db: Path
    token_file: Path
    runner_file: Path
    working_dir: Path
    intelligence_dir: Path
    cache_dir: Path
    local_scm_dir: Path
    guardrails_dir: Path

    @classmethod
    def from_home(
        cls, home: str | os.PathLike[str] | None = None, config: LocalConfig | None = None
    ) -> CoroPaths:
        """Paths under ``home`` (default :func:`coro_home`).

        Args:
            home: the coro home directory.
            config: when given, ``paths.workingDir`` and ``intelligence.dir`` override the
                working and intelligence directories (relative values are taken from ``home``).
        """
        root = coro_home() if home is None else Path(os.path.abspath(os.path.expanduser(home)))
        working = config.paths.working_dir if config is not None else None
        intelligence = config.intelligence.dir if config is not None else None
        return cls(
            home=root,
            config_file=root / "config.json",
            state_db=root / "state.db",
            token_file=root / "runner.token",
            runner_file=root / "runner.json",
            working_dir=_resolve(working, root, "working"),
            intelligence_dir=_resolve(intelligence, root, "intelligence"),
            cache_dir=root / "cache",
            local_scm_dir=root / "local-scm",
            guardrails_dir=root / "guardrails",
        )

    def job_dir(self, job_id: str) -> Path:
        """The working directory of one job.

        Raises:
            ValueError: ``job_id`` is not a safe single path component (it contains a
                separator, is ``.``/``..``, starts with ``.``/``-``, or is empty or too long).
        """
        if not _SAFE_ID.fullmatch(job_id):
            raise ValueError(
                f"job id {job_id!r} cannot be used as a directory name: use letters, digits, "
                "'.', '_' or '-', starting with a letter or digit"
            )
        return self.working_dir / job_id

    def ensure(self) -> None:
        """Create home (mode 0700) and the directories under it; existing ones are left alone."""
        for directory in (
            self.home,
            self.working_dir,
            self.intelligence_dir,
            self.cache_dir,
            self.local_scm_dir,
            self.guardrails_dir,
        ):
            ensure_private_dir(directory)
