"""The reference pages agree with the code they describe.

- ``docs/tui.md``: the tables under *Keys* list every binding (id and key) of the app and of
  every screen and widget in ``coro_tui.screens`` / ``coro_tui.widgets``, and nothing else.
- ``docs/configuration.md``: the *Blocks* tables name every field of ``config.json`` (as the
  file spells it, camelCase) with its default, and no field the models do not have.
- ``docs/http-api.md``: the *Routes* table names every method and path of ``/openapi.json``,
  and no other.

A failure names what to add to or remove from the page.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

DOCS = Path(__file__).resolve().parents[2] / "docs"

Table = tuple[list[str], list[list[str]]]


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole ``#…`` line) up to the next heading of its level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    assert heading in lines, f"no heading {heading!r}"
    start = lines.index(heading) + 1
    end = next(
        (
            i
            for i in range(start, len(lines))
            if re.match(rf"#{{1,{level}}} ", lines[i])
            and not lines[i].startswith("#" * (level + 1))
        ),
        len(lines),
    )
    return "\n".join(lines[start:end])


def _cells(line: str) -> list[str]:
    inner = line.strip()[1:-1]  # rows start and end with "|"
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def tables(text: str) -> Iterator[Table]:
    """Every markdown table in ``text``: its header cells and its body rows."""
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and set(block[1].replace("|", "").strip()) <= set("-: "):
            yield _cells(block[0]), [_cells(row) for row in block[2:]]
        block = []


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# ── the TUI's keys ──────────────────────────────────────────────────────────────────────────


def _binding_classes() -> Iterator[type[Any]]:
    """The app, and every class in the screens and widgets packages that declares bindings."""
    from coro_tui.app import CoroApp

    yield CoroApp
    for package_name in ("coro_tui.screens", "coro_tui.widgets"):
        package = importlib.import_module(package_name)
        names = [package_name] + [
            f"{package_name}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
        ]
        for name in names:
            module = importlib.import_module(name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ == name and "BINDINGS" in vars(cls):
                    yield cls


def code_keys() -> dict[tuple[str, str], str]:
    """``(binding id, key) → declaring class`` for every binding coro declares."""
    from textual.binding import Binding

    found: dict[tuple[str, str], str] = {}
    for cls in _binding_classes():
        for binding in Binding.make_bindings(vars(cls)["BINDINGS"]):
            found[(binding.id or "(no id)", binding.key)] = cls.__name__
    return found


def doc_keys() -> set[tuple[str, str]]:
    """``(binding id, key)`` for every row of the key tables of docs/tui.md."""
    from textual.binding import Binding

    keys_section = section((DOCS / "tui.md").read_text(encoding="utf-8"), "## Keys")
    found: set[tuple[str, str]] = set()
    for header, rows in tables(keys_section):
        if [h.lower() for h in header[:2]] != ["key", "id"]:
            continue
        for row in rows:
            (binding_id,) = code_spans(row[1])
            for key in code_spans(row[0]):
                (binding,) = Binding.make_bindings([Binding(key, "doc")])  # "?" → question_mark
                found.add((binding_id, binding.key))
    return found


def test_every_key_of_the_tui_is_in_the_key_tables_and_no_other() -> None:
    in_code = code_keys()
    in_docs = doc_keys()
    assert in_code, "no bindings found in coro_tui"
    undocumented = sorted(
        f"{k} ({i}, {cls})" for (i, k), cls in in_code.items() if (i, k) not in in_docs
    )
    stale = sorted(f"{k} ({i})" for i, k in in_docs - in_code.keys())
    assert not undocumented, f"docs/tui.md § Keys: add a row for {undocumented}"
    assert not stale, f"docs/tui.md § Keys: no such binding, remove {stale}"


# ── config.json ─────────────────────────────────────────────────────────────────────────────


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _models(tp: Any) -> list[type[BaseModel]]:
    """The models ``tp`` stands for (a model, an optional model, a union of models), or []."""
    tp = _unwrap(tp)
    if get_origin(tp) in (Union, types.UnionType):
        members = [_unwrap(arg) for arg in get_args(tp) if arg is not type(None)]
        return [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    return [tp] if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def config_fields(model: type[BaseModel] | None = None, prefix: str = "") -> dict[str, set[str]]:
    """``field path → its possible defaults as JSON`` ("required" when it has none) for every
    leaf field of ``config.json``; ``<*>`` stands for a key you choose, ``[]`` for a list item.
    """
    from engine.config import LocalConfig

    fields: dict[str, set[str]] = {}
    for name, info in (model or LocalConfig).model_fields.items():
        path = f"{prefix}{info.alias or name}"
        annotation = _unwrap(info.annotation)
        origin, args = get_origin(annotation), get_args(annotation)
        nested: list[tuple[type[BaseModel], str]] = []
        if members := _models(annotation):
            nested = [(m, f"{path}.") for m in members]
        elif origin is dict and (members := _models(args[1])):
            nested = [(m, f"{path}.<*>.") for m in members]
        elif origin is list and (members := _models(args[0])):
            nested = [(m, f"{path}[].") for m in members]
        if nested:
            for member, member_prefix in nested:
                for key, defaults in config_fields(member, member_prefix).items():
                    fields.setdefault(key, set()).update(defaults)
            continue
        if info.is_required():
            default = "required"
        else:
            value = info.get_default(call_default_factory=True)
            assert value is not PydanticUndefined
            default = json.dumps(value)
        fields.setdefault(path, set()).add(default)
    return fields


def doc_config_fields() -> dict[str, str]:
    """``field path → documented default`` from the Blocks tables of docs/configuration.md."""
    blocks = section((DOCS / "configuration.md").read_text(encoding="utf-8"), "## Blocks")
    found: dict[str, str] = {}
    for header, rows in tables(blocks):
        if header[:2] != ["Field", "Default"]:
            continue
        for row in rows:
            (path,) = code_spans(row[0])
            path = re.sub(r"<[^>]+>", "<*>", path)
            assert path not in found, f"docs/configuration.md lists {path} twice"
            found[path] = row[1].strip("`")
    return found


def test_every_config_field_is_documented_with_its_default_and_no_other() -> None:
    in_code = config_fields()
    in_docs = doc_config_fields()
    missing = sorted(
        f"{p} (default {' or '.join(sorted(d))})" for p, d in in_code.items() if p not in in_docs
    )
    stale = sorted(set(in_docs) - set(in_code))
    wrong = sorted(
        f"{p}: documented {in_docs[p]}, the model says {' or '.join(sorted(d))}"
        for p, d in in_code.items()
        if p in in_docs and in_docs[p] not in d
    )
    assert not missing, f"docs/configuration.md § Blocks: add {missing}"
    assert not stale, f"docs/configuration.md § Blocks: no such field, remove {stale}"
    assert not wrong, f"docs/configuration.md § Blocks: wrong defaults {wrong}"


# ── the HTTP API ────────────────────────────────────────────────────────────────────────────

_METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


def _route(method: str, path: str) -> str:
    """``"POST /jobs/{}/resume"``: parameters unnamed (the page names them for readers)."""
    path = path.split("?", 1)[0]
    return f"{method.upper()} {re.sub(r'{[^}]*}', '{}', path)}"


def spec_routes() -> set[str]:
    from engine.api._openapi import openapi_document

    paths: dict[str, dict[str, Any]] = openapi_document()["paths"]
    return {_route(m, path) for path, ops in paths.items() for m in ops if m in _METHODS}


def doc_routes() -> set[str]:
    routes_section = section((DOCS / "http-api.md").read_text(encoding="utf-8"), "## Routes")
    found: set[str] = set()
    for header, rows in tables(routes_section):
        if header[0] != "method and path":
            continue
        for row in rows:
            method, _, path = code_spans(row[0])[0].partition(" ")
            found.add(_route(method, path))
    return found


def test_every_route_of_the_openapi_document_is_in_the_routes_table_and_no_other() -> None:
    in_spec = spec_routes()
    in_docs = doc_routes()
    assert in_spec, "the OpenAPI document has no paths"
    assert not in_spec - in_docs, f"docs/http-api.md § Routes: add {sorted(in_spec - in_docs)}"
    assert not in_docs - in_spec, (
        f"docs/http-api.md § Routes: not in /openapi.json, remove {sorted(in_docs - in_spec)}"
    )


def test_the_checks_catch_a_page_that_drifts() -> None:
    """The parsers read what the pages hold (a check that finds nothing cannot fail)."""
    assert ("app.help", "question_mark") in doc_keys()
    assert doc_config_fields()["jobs.maxConcurrent"] == "4"
    assert config_fields()["mcpServers.<*>.type"] == {"required"}
    assert "GET /jobs/{}/log" in doc_routes()
