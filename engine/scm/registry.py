"""Which SCM plugins exist, built from the config, and which one a request reaches.

::

    scm = ScmRegistry(config=lambda: engine.config, paths=engine.paths, store=engine.store)
    plugin = scm.resolve(remote_url=url, job=job)  # explicit > remote > job > default

Plugins and where their settings come from (``plugins.installed.<id>.config`` first, then the
``git`` block when ``git.provider`` names that plugin):

- ``github``: ``token``, ``baseUrl`` (GitHub Enterprise: ``https://host/api/v3``),
  ``webhookSecret``. Installed when a token is set.
- ``bitbucket``: ``workspace``, ``token`` (an access token) or ``username`` + ``appPassword``,
  ``baseUrl``, ``webhookSecret``. Installed when credentials are set.
- ``local``: bare repositories under ``$CORO_HOME/local-scm``. Always installed.

A plugin is rebuilt when its settings change (the config reloads without a restart).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.scm._protocol import ScmError, ScmPlugin

if TYPE_CHECKING:
    from engine.config import LocalConfig
    from engine.paths import CoroPaths
    from state import Job, StateBackend

__all__ = ["SCM_PLUGIN_IDS", "ScmRegistry", "plugin_settings"]

log = logging.getLogger(__name__)

SCM_PLUGIN_IDS = ("github", "bitbucket", "local")


def plugin_settings(config: LocalConfig, plugin_id: str) -> dict[str, Any] | None:
    """The plugin's settings, or ``None`` if it is not installed (or disabled)."""
    if plugin_id not in SCM_PLUGIN_IDS:
        return None
    installed = config.plugins.installed.get(plugin_id)
    if installed is not None and not installed.enabled:
        return None
    merged: dict[str, Any] = {}
    git = config.git
    if git.provider == plugin_id:
        merged.update(
            {
                "token": git.token,
                "baseUrl": git.base_url,
                "workspace": git.workspace,
                "username": git.username,
                "webhookSecret": git.webhook_secret,
            }
        )
    if installed is not None:
        merged.update({k: v for k, v in installed.config.items() if v is not None})
    merged = {k: v for k, v in merged.items() if v not in (None, "")}
    if plugin_id == "local":
        return merged
    if plugin_id == "github" and not merged.get("token"):
        return None if installed is None else merged
    if plugin_id == "bitbucket" and not (
        merged.get("token") or (merged.get("username") and merged.get("appPassword"))
    ):
        return None if installed is None else merged
    return merged


def _text(settings: dict[str, Any], key: str) -> str | None:
    value = settings.get(key)
    return str(value) if value not in (None, "") else None


class ScmRegistry:
    """The configured SCM plugins (see the module docstring)."""

    def __init__(
        self,
        *,
        config: Callable[[], LocalConfig],
        paths: Callable[[], CoroPaths],
        store: StateBackend,
        factories: dict[str, Callable[[dict[str, Any]], ScmPlugin]] | None = None,
    ) -> None:
        self._config = config
        self._paths = paths
        self._store = store
        self._factories = factories or {}
        self._built: dict[str, tuple[str, ScmPlugin]] = {}
        self._retired: list[ScmPlugin] = []

    def installed(self) -> list[str]:
        """Ids of the plugins the config sets up, in a stable order."""
        config = self._config()
        return [p for p in SCM_PLUGIN_IDS if plugin_settings(config, p) is not None] + sorted(
            p for p in self._factories if p not in SCM_PLUGIN_IDS
        )

    def default_id(self) -> str | None:
        """``plugins.defaults.scm``, else ``git.provider``, else the only hosted plugin, else
        ``local``."""
        config = self._config()
        installed = self.installed()
        for candidate in (config.plugins.defaults.scm, config.git.provider):
            if candidate and candidate in installed:
                return candidate
        hosted = [p for p in installed if p != "local"]
        if len(hosted) == 1:
            return hosted[0]
        return "local" if "local" in installed else None

    def resolve_for(self, requested: str | None) -> tuple[str | None, str | None, list[str]]:
        """``(resolved, default, installed)`` for a job that asks for ``requested`` (its
        ``params.scm``): the requested plugin when installed, else the default when the job
        asked for none; ``resolved`` is ``None`` when the job's SCM tools reach nothing."""
        installed = self.installed()
        default = self.default_id()
        if requested:
            return (requested if requested in installed else None), default, installed
        return default, default, installed

    def plugin(self, plugin_id: str) -> ScmPlugin:
        """The plugin with that id.

        Raises:
            ScmError: no such plugin, or it is not configured (the message says what to set).
        """
        config = self._config()
        settings = plugin_settings(config, plugin_id)
        if settings is None and plugin_id not in self._factories:
            known = ", ".join(self.installed()) or "none"
            hint = {
                "github": "set git.token with git.provider github, or "
                "plugins.installed.github.config.token",
                "bitbucket": "set git.workspace and git.token (or username + "
                "plugins.installed.bitbucket.config.appPassword) with git.provider bitbucket",
            }.get(plugin_id, f"known SCM plugins: {', '.join(SCM_PLUGIN_IDS)}")
            raise ScmError(
                f"SCM plugin {plugin_id!r} is not configured ({hint}); installed: {known}"
            )
        settings = settings or {}
        fingerprint = json.dumps(settings, sort_keys=True, default=str)
        cached = self._built.get(plugin_id)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        if cached is not None:
            self._retired.append(cached[1])
        plugin = self._build(plugin_id, settings)
        self._built[plugin_id] = (fingerprint, plugin)
        return plugin

    def _build(self, plugin_id: str, settings: dict[str, Any]) -> ScmPlugin:
        factory = self._factories.get(plugin_id)
        if factory is not None:
            return factory(settings)
        if plugin_id == "github":
            from engine.scm.github import GitHubPlugin

            return GitHubPlugin(
                token=_text(settings, "token"),
                base_url=_text(settings, "baseUrl") or "https://api.github.com",
                webhook_secret=_text(settings, "webhookSecret"),
            )
        if plugin_id == "bitbucket":
            from engine.scm.bitbucket import BitbucketPlugin

            return BitbucketPlugin(
                workspace=_text(settings, "workspace"),
                username=_text(settings, "username"),
                app_password=_text(settings, "appPassword"),
                token=_text(settings, "token"),
                base_url=_text(settings, "baseUrl") or "https://api.bitbucket.org/2.0",
                webhook_secret=_text(settings, "webhookSecret"),
            )
        from engine.scm.local import LocalScmPlugin

        return LocalScmPlugin(root=self._paths().local_scm_dir, store=self._store)

    def resolve(
        self,
        *,
        plugin_id: str | None = None,
        remote_url: str | None = None,
        job: Job | None = None,
    ) -> ScmPlugin:
        """The plugin a tool call reaches: the explicit id, else the one whose service the
        repository's remote URL belongs to, else the job's ``params.scm``, else the default.

        Raises:
            ScmError: nothing is configured, or the chosen plugin is not.
        """
        if plugin_id:
            return self.plugin(plugin_id)
        if remote_url:
            for candidate in self.installed():
                plugin = self.plugin(candidate)
                if plugin.matches_remote(remote_url):
                    return plugin
        requested = job.params.get("scm") if job is not None else None
        if isinstance(requested, str) and requested:
            return self.plugin(requested)
        default = self.default_id()
        if default is None:
            raise ScmError("no SCM plugin is configured: set git.provider and git.token")
        return self.plugin(default)

    async def aclose(self) -> None:
        """Close every plugin built so far."""
        plugins = [p for _, p in self._built.values()] + self._retired
        self._built.clear()
        self._retired.clear()
        for plugin in plugins:
            try:
                await plugin.aclose()
            except Exception:  # closing must not stop the others from closing
                log.exception("closing SCM plugin %s failed", plugin.id)
