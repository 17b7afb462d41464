"""Tenant layers kept in a git remote, cloned into coro's cache and refreshed now and then.

The real ``git`` CLI does the work, run with ``asyncio.create_subprocess_exec`` (never a shell)
and with prompts switched off, so a missing credential fails fast instead of hanging a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from engine.errors import IntelligenceError
from engine.intelligence._layers import Layer, check_tenant_id

__all__ = ["TenantGitLoader", "redact_url"]

log = logging.getLogger(__name__)

_STAMP = "coro-overlay.json"
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s]*@")


def redact_url(url: str) -> str:
    """``url`` without the user name and password: ``https://user:token@host/x`` → ``https://host/x``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _redact_text(text: str) -> str:
    return _URL_CREDENTIALS.sub(r"\1", text)


class TenantGitLoader:
    """Loads tenant layers from git remotes into ``<cache_dir>/tenant-overlays/<tenant_id>/``.

    The first load clones (shallow); later loads fetch and hard-reset at most once every
    ``refresh_interval`` seconds. A failed refresh keeps the cached copy and logs a warning; a
    failed first clone raises. One loader per process: it serialises work on each cache.

    Args:
        cache_dir: coro's cache directory (``$CORO_HOME/cache``).
        refresh_interval: seconds between fetches of the same remote; 0 fetches every time.
        timeout: seconds a single git command may take before it is killed.
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        refresh_interval: float = 300.0,
        timeout: float = 120.0,
    ) -> None:
        self.cache_dir = cache_dir
        self.refresh_interval = refresh_interval
        self.timeout = timeout
        self._locks: dict[str, asyncio.Lock] = {}

    def cache_path(self, tenant_id: str) -> Path:
        """Where the working copy of ``tenant_id``'s layer lives."""
        return self.cache_dir / "tenant-overlays" / check_tenant_id(tenant_id)

    async def load(self, tenant_id: str, url: str, ref: str | None = None) -> Layer:
        """Return the tenant layer, cloning or refreshing the cached copy as needed.

        Args:
            tenant_id: ``solo-<host>`` or ``team-<id>``; names the cache directory.
            url: the remote, in any form ``git clone`` accepts.
            ref: a branch or tag; the remote's default branch when ``None``.

        Raises:
            IntelligenceError: there is no usable cached copy and the clone failed.
        """
        checkout = self.cache_path(tenant_id)
        lock = self._locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            source = hashlib.sha256(f"{url}\0{ref or ''}".encode()).hexdigest()
            stamp = _read_stamp(checkout)
            if stamp is None or stamp.get("source") != source:
                await self._clone(tenant_id, url, ref, checkout)
                _write_stamp(checkout, source)
            elif not _is_fresh(stamp, self.refresh_interval):
                try:
                    await self._refresh(url, ref, checkout)
                except IntelligenceError as exc:
                    log.warning(
                        "tenant layer %s: refresh failed, using the cached copy: %s",
                        tenant_id,
                        exc.message,
                    )
                _write_stamp(checkout, source)
        return Layer(f"tenant:{tenant_id}", checkout)

    async def _clone(self, tenant_id: str, url: str, ref: str | None, checkout: Path) -> None:
        staging = await asyncio.to_thread(_make_staging, checkout)
        try:
            branch = ["--branch", ref] if ref else []
            await self._git("clone", "--quiet", "--depth", "1", *branch, "--", url, str(staging))
            await asyncio.to_thread(_swap_in, staging, checkout)
        except IntelligenceError as exc:
            raise IntelligenceError(
                f"could not clone tenant layer {tenant_id} from {redact_url(url)}: {exc.message}",
            ) from exc
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    async def _refresh(self, url: str, ref: str | None, checkout: Path) -> None:
        try:
            await self._git(
                "fetch", "--quiet", "--depth", "1", "origin", ref or "HEAD", cwd=checkout
            )
            await self._git("reset", "--quiet", "--hard", "FETCH_HEAD", cwd=checkout)
            await self._git("clean", "-ffdxq", cwd=checkout)
        except IntelligenceError as exc:
            raise IntelligenceError(f"fetch from {redact_url(url)}: {exc.message}") from exc

    async def _git(self, *args: str, cwd: Path | None = None) -> None:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never"}
        if "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env:
            env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
        try:
            proc = await asyncio.create_subprocess_exec(
                "git",
                *args,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise IntelligenceError("git is not installed or not on PATH") from exc
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError as exc:
            raise IntelligenceError(f"git {args[0]} timed out after {self.timeout:g} s") from exc
        finally:
            if proc.returncode is None:
                proc.kill()
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()
        if proc.returncode != 0:
            detail = _redact_text(stderr.decode(errors="replace").strip()) or "no output"
            raise IntelligenceError(f"git {args[0]} exited with {proc.returncode}: {detail}")


def _make_staging(checkout: Path) -> Path:
    """An empty directory next to ``checkout`` to clone into, so no half clone is ever used."""
    checkout.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{checkout.name}.", dir=checkout.parent))


def _swap_in(staging: Path, checkout: Path) -> None:
    """Put the finished clone at ``staging`` in place of ``checkout``."""
    if checkout.exists():
        old = staging.with_name(staging.name + ".old")
        checkout.rename(old)
        staging.rename(checkout)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(checkout)


def _read_stamp(checkout: Path) -> dict[str, object] | None:
    try:
        stamp = json.loads((checkout / ".git" / _STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _write_stamp(checkout: Path, source: str) -> None:
    (checkout / ".git" / _STAMP).write_text(
        json.dumps({"source": source, "checked_at": time.time()})
    )


def _is_fresh(stamp: dict[str, object], interval: float) -> bool:
    checked_at = stamp.get("checked_at")
    if not isinstance(checked_at, int | float):
        return False
    age = time.time() - checked_at
    return 0 <= age < interval
