"""``coro workflows`` and ``coro intelligence show``: what a job would see of the intelligence
layers (base, tenant, and a repository's ``.coro/``), read from ``CORO_HOME`` directly.

Neither needs a runner, and neither writes an overlay: they scan the layers and say which one
supplies each file. Engine modules are imported inside the commands so ``coro --help`` stays
fast.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from coro_tui._cli_common import EXIT_FAILED, EXIT_USAGE, JsonFlag, _fail, _print_json, _stderr

if TYPE_CHECKING:
    from engine.intelligence import Layer
    from engine.overlay import OverlayEntry, OverlayManager, WorkflowListing

__all__ = ["intelligence_app", "show", "workflows"]

_T = TypeVar("_T")

intelligence_app = typer.Typer(
    name="intelligence",
    help="Inspect the intelligence layers jobs get (no runner needed).",
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
)

RepoOption = Annotated[
    Path | None,
    typer.Option(
        "--repo",
        exists=True,
        file_okay=False,
        help="A repository checkout: its .coro/ folder is the top layer.",
    ),
]


def workflows(repo: RepoOption = None, as_json: JsonFlag = False) -> None:
    """List the workflows a job would see, and the layer that supplies each.

    Reads the base layer, the tenant layer configured in $CORO_HOME/config.json and, with
    --repo, the checkout's .coro/ folder; the highest layer wins each path. A workflow that
    does not parse is listed with its error, and the exit code is then 1.
    """
    overlays, layers = _stack(repo)
    listings = _or_fail(lambda: overlays.workflows_in(layers))
    if as_json:
        _print_json([_workflow_json(w) for w in listings])
    else:
        typer.echo(_workflows_table(listings) if listings else "no workflows in any layer")
    broken = sum(1 for w in listings if w.error is not None)
    if broken:
        _stderr(f"coro: {broken} workflow{'s' if broken > 1 else ''} failed to parse")
        raise typer.Exit(EXIT_FAILED)


@intelligence_app.command("show")
def show(
    pattern: Annotated[
        str | None,
        typer.Argument(help="Only paths matching this glob (agents/*), or under this folder."),
    ] = None,
    repo: RepoOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the resolved overlay: each path and the layer that supplies it.

    Appended files (.claude/CLAUDE.md, memory/**/*.md) list every contributing layer, lowest
    first; other files name the winning layer and the lower layers it overrides. Nothing is
    written anywhere.
    """
    from engine.overlay import explain_overlay

    _, layers = _stack(repo)
    entries = _or_fail(lambda: explain_overlay(layers))
    if pattern:
        folder = pattern.rstrip("/") + "/"
        entries = [e for e in entries if fnmatchcase(e.path, pattern) or e.path.startswith(folder)]
    if as_json:
        _print_json([_entry_json(e) for e in entries])
        return
    if not entries:
        what = f"no path matches {pattern!r}" if pattern else "the layers hold no files"
        _stderr(f"coro: {what} (layers: {', '.join(layer.name for layer in layers)})")
        return
    typer.echo(_entries_table(entries))


# -- the layer stack ------------------------------------------------------------------------------
def _stack(repo: Path | None) -> tuple[OverlayManager, list[Layer]]:
    """The config's overlay manager and the layers a job would stack, lowest first."""
    from engine.config import load_config
    from engine.errors import ConfigError
    from engine.overlay import OverlayManager
    from engine.paths import CoroPaths
    from engine.tools import domain_tool_names

    paths = CoroPaths.from_home()
    try:
        config = load_config(paths.config_file)
    except ConfigError as exc:
        _fail(_one_line(exc.message), EXIT_USAGE)
    paths = CoroPaths.from_home(paths.home, config)
    tools = domain_tool_names()
    overlays = OverlayManager(config, paths, known_tool=tools.__contains__)
    checkout = None if repo is None else Path(os.path.abspath(repo.expanduser()))
    if checkout is not None and not (checkout / ".coro").exists():
        _stderr(f"coro: {checkout} has no .coro/ folder, so the repository layer adds nothing")

    def note(url: str) -> None:
        _stderr(f"coro: fetching the tenant layer from {url} (git) …")

    slug = None if checkout is None else (checkout.name or "root")
    layers = _or_fail(lambda: asyncio.run(overlays.layers_for(checkout, slug, on_remote=note)))
    return overlays, layers


def _or_fail(work: Callable[[], _T]) -> _T:
    """``work()``, with a layer that cannot be read (or escapes) turned into exit code 1."""
    from engine.errors import CoroError

    try:
        return work()
    except CoroError as exc:
        _fail(_one_line(exc.message), EXIT_FAILED)


def _one_line(message: str) -> str:
    """A multi-line message (a config error listing fields, git's stderr) as one line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    joined = lines[0] if lines else message
    for line in lines[1:]:
        joined += (" " if joined.endswith(":") else "; ") + line
    return joined


# -- output ---------------------------------------------------------------------------------------
def _workflow_json(listing: WorkflowListing) -> dict[str, Any]:
    info = listing.info
    return {
        "path": listing.path,
        "displayName": info.display_name if info else None,
        "description": info.description if info else None,
        "kind": info.kind if info else None,
        "phases": list(info.phases) if info else None,
        "layer": listing.layer,
        "error": listing.error,
    }


def _entry_json(entry: OverlayEntry) -> dict[str, Any]:
    return {
        "path": entry.path,
        "appended": entry.appended,
        "layers": list(entry.layers),
        "overrides": list(entry.overrides),
    }


def _workflows_table(listings: list[WorkflowListing]) -> str:
    rows = [("PATH", "NAME", "KIND", "PHASES", "LAYER", "DESCRIPTION")]
    for w in listings:
        if w.info is None:
            rows.append((w.path, "-", "-", "-", w.layer, f"ERROR: {w.error}"))
        else:
            about = " ".join(w.info.description.split())
            about = about if len(about) <= 72 else about[:71] + "…"
            phases = ",".join(w.info.phases)
            rows.append((w.path, w.info.display_name, w.info.kind, phases, w.layer, about))
    return _table(rows)


def _entries_table(entries: list[OverlayEntry]) -> str:
    rows = [("PATH", "LAYER", "OVERRIDES")]
    rows += [(e.path, " + ".join(e.layers), ", ".join(e.overrides)) for e in entries]
    return _table(rows)


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    """Left-aligned columns two spaces apart; the last column is never padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]
        ).rstrip()
        for row in rows
    )
