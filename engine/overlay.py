"""A job's intelligence overlay: which layers it stacks, and the workflows it can see.

The layers are the packaged base layer, the tenant layer (``tenant.overlay`` in the config, else
``intelligence.gitRemote``, else the ``intelligence/`` directory when it exists) and the
repository layer (``<checkout>/.coro`` once the job has cloned its repository). Workflow paths
such as ``workflows/job/workflow.md`` are resolved inside the job's materialised overlay.

:func:`explain_overlay` and :meth:`OverlayManager.workflows_in` say what a stack of layers would
give a job without materialising anything; ``coro intelligence show`` and ``coro workflows``
print them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from engine.config import LocalConfig
from engine.errors import WorkflowError
from engine.intelligence import (
    IntelligenceResolver,
    Layer,
    ResolveResult,
    TenantGitLoader,
    base_layer,
    redact_url,
    repo_layer,
    scan_layer,
    tenant_dir_layer,
)
from engine.intelligence._merge import plan
from engine.paths import CoroPaths
from engine.workflow import BUILTIN_TOOL_NAMES, Workflow, load_workflow, parse_workflow
from state import Job

__all__ = [
    "OverlayEntry",
    "OverlayManager",
    "WorkflowInfo",
    "WorkflowListing",
    "explain_overlay",
    "tenant_id_for",
]

log = logging.getLogger(__name__)

INTELLIGENCE_DIR = "_intelligence"
#: Beside the jobs' directories (job ids cannot start with ``.``), so on their filesystem.
OVERLAY_STORE_DIR = ".overlay-store"
_WORKFLOW_FILE = re.compile(r"workflows/[^/]+/workflow\.md")


def tenant_id_for(config: LocalConfig) -> str:
    """``solo-<hostname>`` locally (hybrid mode will use ``team-<teamId>``)."""
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"solo-{host or 'localhost'}"


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    path: str
    display_name: str
    description: str
    kind: str
    phases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WorkflowListing:
    """A workflow a job would see: the layer that supplies it, and what it is or why it fails.

    Exactly one of ``info`` and ``error`` is set.
    """

    path: str
    layer: str
    info: WorkflowInfo | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class OverlayEntry:
    """One path of a resolved overlay and the layers behind it.

    Attributes:
        path: the POSIX path inside the overlay (``agents/build.md``).
        appended: whether the layers' copies are concatenated (``.claude/CLAUDE.md``,
            ``memory/**/*.md``) rather than the top one winning.
        layers: the layers whose copies make the file, lowest first; one for a last-wins file.
        overrides: lower layers whose copy of a last-wins file the winner replaces.
    """

    path: str
    appended: bool
    layers: tuple[str, ...]
    overrides: tuple[str, ...] = ()


def explain_overlay(layers: Sequence[Layer]) -> list[OverlayEntry]:
    """Which layers make each path of the overlay ``layers`` (lowest first) would give a job.

    Nothing is read or written: the layers are only scanned.

    Raises:
        LayerEscapeError: a layer has a symlink that leads out of it.
        IntelligenceError: a layer cannot be read, or two layers share a name.
    """
    scanned = [set(scan_layer(layer)) for layer in layers]
    entries = []
    for relpath, target in sorted(plan(layers).items()):
        names = tuple(source.layer for source in target.sources)
        below = () if target.appended else range(target.top)
        overrides = tuple(layers[i].name for i in below if relpath in scanned[i])
        entries.append(OverlayEntry(relpath, target.appended, names, overrides))
    return entries


class OverlayManager:
    """Builds each job's layer stack, materialises it, and loads workflows from it."""

    def __init__(
        self,
        config: LocalConfig,
        paths: CoroPaths,
        *,
        known_tool: Callable[[str], bool] | None = None,
    ) -> None:
        self.config = config
        self.paths = paths
        self.tenant_id = tenant_id_for(config)
        self._resolver = IntelligenceResolver(store=paths.working_dir / OVERLAY_STORE_DIR)
        self._git = TenantGitLoader(paths.cache_dir)
        self._known_tool = known_tool
        self._workflows: dict[tuple[str, str], Workflow] = {}
        self._digests: dict[str, dict[str, str]] = {}  # job -> its overlay's files, as resolved
        self._texts: dict[str, str] = {}  # sha256 -> text, of files read through read_text

    def reconfigure(self, config: LocalConfig, paths: CoroPaths) -> None:
        """Take a new config; the next resolve uses it (workflows are checked against it)."""
        self.config = config
        self.paths = paths
        self._workflows.clear()
        store = paths.working_dir / OVERLAY_STORE_DIR
        if self._resolver.store is None or self._resolver.store.root != store:
            self._resolver = IntelligenceResolver(store=store)

    def sweep_store(self) -> int:
        """Delete shared overlay files no job links any more; returns how many (blocking)."""
        store = self._resolver.store
        return store.sweep() if store is not None else 0

    def intelligence_dir(self, job_id: str) -> Path:
        return self.paths.job_dir(job_id) / INTELLIGENCE_DIR

    async def layers(self, job: Job) -> list[Layer]:
        """The job's layer stack, lowest first; the repository layer once it has a checkout."""
        checkout = job.params.get("repoCheckoutAbsDir")
        if isinstance(checkout, str) and checkout:
            slug = str(job.params.get("repoSlug") or Path(checkout).name)
            return await self.layers_for(Path(checkout), slug)
        return await self.layers_for(None)

    async def layers_for(
        self,
        checkout: Path | None,
        slug: str | None = None,
        *,
        on_remote: Callable[[str], None] | None = None,
    ) -> list[Layer]:
        """The layer stack a job would get, lowest first: base, tenant, then ``checkout/.coro``.

        Args:
            checkout: a repository checkout whose ``.coro/`` is the top layer; ``None`` for none.
            slug: names the repository layer (``repo:<slug>``); the checkout's folder name when
                ``None``. Characters a layer name cannot hold become ``-``.
            on_remote: called with the remote's URL (credentials removed) before a tenant layer
                kept in git is cloned or refreshed, which can take a while.

        Raises:
            IntelligenceError: the tenant layer's remote cannot be cloned, or its id is invalid.
        """
        layers = [base_layer()]
        tenant = await self._tenant_layer(on_remote)
        if tenant is not None:
            layers.append(tenant)
        if checkout is not None:
            name = slug or checkout.name
            safe = "".join(c if c.isalnum() or c in "-_./" else "-" for c in name)
            layers.append(repo_layer(safe, checkout))
        return layers

    async def _tenant_layer(self, on_remote: Callable[[str], None] | None = None) -> Layer | None:
        overlay = self.config.tenant.overlay
        if overlay.kind == "localDir":
            return tenant_dir_layer(self.tenant_id, Path(overlay.path).expanduser())
        if overlay.kind == "gitRemote":
            if on_remote is not None:
                on_remote(redact_url(overlay.url))
            return await self._git.load(self.tenant_id, overlay.url, overlay.ref)
        if overlay.kind == "cloudBlob":
            log.warning("tenant overlay kind cloudBlob is not supported yet; skipping it")
            return None
        if self.config.intelligence.git_remote:
            if on_remote is not None:
                on_remote(redact_url(self.config.intelligence.git_remote))
            return await self._git.load(self.tenant_id, self.config.intelligence.git_remote)
        if self.paths.intelligence_dir.is_dir():
            return tenant_dir_layer(self.tenant_id, self.paths.intelligence_dir)
        return None

    async def resolve(self, job: Job) -> ResolveResult:
        """Materialise the job's overlay (idempotent; rewrites only what changed)."""
        layers = await self.layers(job)
        result = await self._resolver.aresolve(job.id, layers, self.intelligence_dir(job.id))
        self._digests[job.id] = result.digests
        return result

    def forget(self, job_id: str) -> None:
        """Drop what is kept in memory about the job's overlay (its run ended); the next
        resolve reads the overlay's manifest from disk again."""
        self._resolver.forget(self.intelligence_dir(job_id))
        self._digests.pop(job_id, None)

    def read_text(self, job_id: str, relpath: str) -> str:
        """A file of the job's overlay, from memory when its last resolve vouched for the same
        content that was read before (agents and CLAUDE.md, read at every phase).

        Raises:
            OSError, UnicodeDecodeError: the file cannot be read.
        """
        digest = self._digests.get(job_id, {}).get(relpath)
        if digest is not None:
            text = self._texts.get(digest)
            if text is not None:
                return text
        raw = (self.intelligence_dir(job_id) / relpath).read_bytes()
        # The digest is of the bytes; the text is what Path.read_text gives (universal newlines).
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        if digest is not None and hashlib.sha256(raw).hexdigest() == digest:
            if len(self._texts) > 256:
                self._texts.clear()
            self._texts[digest] = text
        return text

    def _known(self, name: str) -> bool:
        if name in BUILTIN_TOOL_NAMES:
            return True
        return self._known_tool(name) if self._known_tool is not None else True

    def workflow_file(self, job_id: str, workflow_path: str) -> Path:
        """The file behind a workflow path, refusing paths that leave the overlay."""
        pure = PurePosixPath(workflow_path)
        if pure.is_absolute() or ".." in pure.parts or not workflow_path.endswith(".md"):
            raise WorkflowError(
                f"workflow path {workflow_path!r} must be a relative .md path inside the "
                "intelligence overlay, such as workflows/job/workflow.md"
            )
        return self.intelligence_dir(job_id) / pure

    def load_workflow(self, job_id: str, workflow_path: str) -> Workflow:
        """Load a workflow from the job's overlay.

        Parsed workflows are cached by path and content, so jobs whose overlays hold the same
        file share one parse, and an edited file is parsed again.
        """
        file = self.workflow_file(job_id, workflow_path)
        digest = self._digests.get(job_id, {}).get(workflow_path)
        if digest is not None and (workflow_path, digest) in self._workflows:
            return self._workflows[workflow_path, digest]  # the resolve just vouched for it
        try:
            raw = file.read_bytes()
        except FileNotFoundError:
            raise WorkflowError(
                f"no workflow {workflow_path!r} in any intelligence layer (looked for {file})"
            ) from None
        except OSError as exc:
            raise WorkflowError(f"cannot read {file}: {exc.strerror}") from exc
        key = (workflow_path, hashlib.sha256(raw).hexdigest())
        found = self._workflows.get(key)
        if found is None:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise WorkflowError(f"{workflow_path}: not UTF-8 text ({exc})") from exc
            found = parse_workflow(
                text,
                path=workflow_path,
                known_tools=self._known,
                known_servers=tuple(self.config.mcp_servers),
                tier_aliases=tuple(self.config.llm.aliases),
            )
            if len(self._workflows) > 256:
                self._workflows.clear()
            self._workflows[key] = found
        return found

    def workflow_exists(self, job_id: str, workflow_path: str) -> bool:
        try:
            return self.workflow_file(job_id, workflow_path).is_file()
        except WorkflowError:
            return False

    def list_workflows(self, root: Path) -> list[WorkflowInfo]:
        """Every ``workflows/*/workflow.md`` under an overlay directory that parses."""
        found = []
        for file in sorted(root.glob("workflows/*/workflow.md")):
            rel = file.relative_to(root).as_posix()
            try:
                found.append(self._workflow_info(file, rel))
            except WorkflowError as exc:
                log.warning("skipping %s: %s", rel, exc.message)
        return found

    def workflows_in(self, layers: Sequence[Layer]) -> list[WorkflowListing]:
        """Every ``workflows/*/workflow.md`` a job on ``layers`` would see, by path.

        Each comes from the highest layer that has it. A file that does not parse is listed
        with its error, checked as a job would check it (tools, MCP servers, model tiers).

        Raises:
            LayerEscapeError: a layer has a symlink that leads out of it.
            IntelligenceError: a layer cannot be read, or two layers share a name.
        """
        found = []
        for relpath, target in sorted(plan(layers).items()):
            if target.appended or not _WORKFLOW_FILE.fullmatch(relpath):
                continue
            source = target.sources[0]
            try:
                info = self._workflow_info(Path(source.file.path), relpath)
            except WorkflowError as exc:
                found.append(WorkflowListing(relpath, source.layer, error=exc.message))
            else:
                found.append(WorkflowListing(relpath, source.layer, info=info))
        return found

    def _workflow_info(self, file: Path, relpath: str) -> WorkflowInfo:
        wf = load_workflow(
            file,
            path=relpath,
            known_tools=self._known,
            known_servers=tuple(self.config.mcp_servers),
            tier_aliases=tuple(self.config.llm.aliases),
        )
        return WorkflowInfo(relpath, wf.display_name, wf.description, wf.kind, wf.phase_names)
