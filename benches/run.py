"""Run every benchmark and rewrite ``docs/performance.md`` with the figures, date and machine.

Run: ``.venv/bin/python benches/run.py`` (add ``--no-write`` to only print).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benches import (
    bench_api,
    bench_engine,
    bench_executor,
    bench_intelligence,
    bench_scm,
    bench_state,
    bench_tui,
)
from benches._harness import Figure, machine

DOC = ROOT / "docs" / "performance.md"

INTRO = """# Performance

Measured by `.venv/bin/python benches/run.py`, which rewrites this file. Every figure that has a
baseline was measured in the same run as that baseline (a bare loop doing the same work with
the library directly), because absolute times on shared 2-core machines drift; the ratio is
the figure that matters. Targets come from the issues. A `MISS` is a real miss, not noise to
be ignored: rerun, and if it holds, treat it as a bug.
"""


def _intelligence() -> list[Figure]:
    with contextlib.redirect_stdout(io.StringIO()):
        settled = bench_intelligence.measure("settled", settled=True)
    return [
        Figure(
            "re-resolve an unchanged 200-file, 3-layer overlay (median)",
            settled,
            "ms",
            f"< {bench_intelligence.BUDGET_MS:g} ms",
            settled < bench_intelligence.BUDGET_MS,
        )
    ]


def _table(title: str, figures: list[Figure]) -> str:
    rows = [f"## {title}", "", "| figure | measured | baseline | ratio | target | |"]
    rows.append("|---|---|---|---|---|---|")
    for f in figures:
        base = f"{f.baseline:,.1f} {f.unit}" if f.baseline is not None else ""
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else ""
        note = f" ({f.note})" if f.note else ""
        rows.append(
            f"| {f.name}{note} | {f.value:,.2f} {f.unit} | {base} | {ratio} | {f.target} | "
            f"{'ok' if f.ok else 'MISS'} |"
        )
    return "\n".join(rows) + "\n"


def main() -> int:
    sections = [
        ("State (SQLite backend)", asyncio.run(bench_state.main())),
        ("Intelligence overlay", _intelligence()),
        ("Engine (phase loop, 50 jobs, memory)", asyncio.run(bench_engine.main())),
        ("Anthropic executor (against the scripted model endpoint)",
         asyncio.run(bench_executor.main())),
        ("HTTP API (uvicorn + Starlette, h11)", asyncio.run(bench_api.main())),
        ("Webhooks (GitHub deliveries through POST /webhook/github)",
         asyncio.run(bench_scm.main())),
        ("TUI (tmux start-up, key latency, plan mode, log pane)", asyncio.run(bench_tui.main())),
    ]  # fmt: skip
    for title, figures in sections:
        print(f"# {title}")
        for figure in figures:
            print(figure.line())
    if "--no-write" not in sys.argv:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        body = [INTRO, f"Last run: {stamp} on {machine()}.\n"]
        body += [_table(title, figures) for title, figures in sections]
        DOC.write_text("\n".join(body), encoding="utf-8")
        print(f"\nwrote {DOC.relative_to(ROOT)}")
    return 0 if all(f.ok for _, figures in sections for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
