"""Answers for git's credential protocol, so checkouts push without a token on disk.

``scm_clone_repo`` sets ``credential.helper`` in each checkout to ``coro git-credential``;
git runs it with ``protocol``/``host`` on stdin, and it answers from the config::

    git_credentials(config, host="github.com")   # ("x-access-token", "<git.token>")

Nothing is written to ``.git/config`` but the helper's command line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from engine.scm.registry import plugin_settings

if TYPE_CHECKING:
    from engine.config import LocalConfig

__all__ = ["git_credentials", "parse_request"]

_PUBLIC_API = {"api.github.com": "github.com", "api.bitbucket.org": "bitbucket.org"}
_DEFAULT_BASE = {"github": "https://api.github.com", "bitbucket": "https://api.bitbucket.org/2.0"}


def _git_host(base_url: str) -> str:
    host = urlsplit(base_url).netloc.lower()
    return _PUBLIC_API.get(host, host)


def git_credentials(config: LocalConfig, host: str) -> tuple[str, str] | None:
    """The (username, password) git should use for ``host``, if a plugin serves it."""
    wanted = host.lower()
    for plugin_id in ("github", "bitbucket"):
        settings = plugin_settings(config, plugin_id)
        if not settings:
            continue
        base = str(settings.get("baseUrl") or _DEFAULT_BASE[plugin_id])
        if _git_host(base) != wanted:
            continue
        token = settings.get("token")
        if plugin_id == "github" and token:
            return "x-access-token", str(token)
        if plugin_id == "bitbucket":
            if token:
                return "x-token-auth", str(token)
            if settings.get("username") and settings.get("appPassword"):
                return str(settings["username"]), str(settings["appPassword"])
    return None


def parse_request(lines: Iterable[str]) -> dict[str, str]:
    """The ``key=value`` lines git sends a credential helper, up to the first blank line."""
    request: dict[str, str] = {}
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            break
        key, sep, value = line.partition("=")
        if sep:
            request[key] = value
    return request
