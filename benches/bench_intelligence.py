"""Benchmark: re-resolving an unchanged 200-file, 3-layer intelligence overlay.

The phase loop re-resolves a job's overlay at every phase boundary, so the unchanged case must
be cheap (budget: 30 ms). This builds base/tenant/repo layers that merge into 200 files,
resolves once cold, then times 50 warm re-resolves against a bare baseline measured in the same
run: ``os.walk`` + ``stat`` over the same three trees, the least any resolver must do.

Run: ``.venv/bin/python benches/bench_intelligence.py``
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.intelligence import IntelligenceResolver, Layer

RUNS = 50
BUDGET_MS = 30.0


def build(root: Path, *, settled: bool) -> list[Layer]:
    """Three layers whose merge holds exactly 200 files (some appended, some replaced)."""
    rng = random.Random(7)
    base = [".claude/CLAUDE.md"]
    base += [f"memory/{name}.md" for name in ("MEMORY", "known-pitfalls", "library-choices")]
    base += [f"agents/agent-{i:02}.md" for i in range(19)]
    base += [f"workflows/wf-{i}/workflow.md" for i in range(8)]
    base += [f".claude/skills/skill-{i:02}/SKILL.md" for i in range(27)]
    base += [f".claude/skills/skill-{i:02}/ref-{j}.md" for i in range(27) for j in range(3)]
    base += [f"snippets/snippet-{i}.md" for i in range(150 - len(base))]
    tenant = base[:4] + base[10:36] + [f"tenant/doc-{i:02}.md" for i in range(30)]
    repo = base[:2] + tenant[40:48] + [f"repo/doc-{i:02}.md" for i in range(20)]
    layers = []
    for name, paths in (("base", base), ("tenant:team-abc", tenant), ("repo:svc", repo)):
        layer_root = root / name.replace(":", "-")
        for relpath in paths:
            path = layer_root / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"# {relpath} from {name}\n" + "lorem ipsum " * rng.randint(40, 500))
        layers.append(Layer(name, layer_root))
    if settled:  # an overlay that has sat on disk a while: installed base, cloned tenant
        past = time.time() - 3600
        for layer in layers:
            for path in layer.root.rglob("*"):
                os.utime(path, (past, past))
    return layers


def walk_and_stat(layers: list[Layer]) -> None:
    for layer in layers:
        for directory, _, names in os.walk(layer.root):
            for name in names:
                os.stat(os.path.join(directory, name))


def write_plain_copies(layers: list[Layer], out: Path) -> None:
    """The cold baseline: each layer file written once, with no merging, hashing or manifest."""
    for layer in layers:
        for directory, _, names in os.walk(layer.root):
            target = out / layer.name.replace(":", "-") / os.path.relpath(directory, layer.root)
            target.mkdir(parents=True, exist_ok=True)
            for name in names:
                (target / name).write_bytes(Path(directory, name).read_bytes())


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def measure(label: str, *, settled: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="coro-bench-") as tmp:
        layers = build(Path(tmp), settled=settled)
        dest = Path(tmp) / "working" / "job-1" / "_intelligence"
        resolver = IntelligenceResolver()
        cold_ms = timed(lambda: resolver.resolve("job-1", layers, dest))
        files = sum(1 for p in dest.rglob("*") if p.is_file()) - 1  # minus the manifest
        copy_ms = timed(lambda: write_plain_copies(layers, Path(tmp) / "plain"))
        warm: list[float] = []
        base: list[float] = []
        for _ in range(RUNS):  # interleaved, so drift hits both series alike
            base.append(timed(lambda: walk_and_stat(layers)))
            start = time.perf_counter()
            result = resolver.resolve("job-1", layers, dest)
            warm.append((time.perf_counter() - start) * 1000)
            assert result.written == result.removed == 0, result
        median = statistics.median(warm)
        print(f"{label}: {files} files in the overlay")
        print(f"  cold resolve {cold_ms:.1f} ms; plain copy of every layer file {copy_ms:.1f} ms")
        print(f"  warm re-resolve   median {median:6.2f} ms   p95 {p95(warm):6.2f} ms")
        base_median = statistics.median(base)
        print(f"  os.walk + stat    median {base_median:6.2f} ms   p95 {p95(base):6.2f} ms")
        print(f"  ratio (medians)   {median / base_median:.1f}x the baseline")
        return median


def main() -> None:
    median = measure("settled layers (the phase-boundary case)", settled=True)
    print()
    measure("just-written layers (every file re-read and hashed: the racy path)", settled=False)
    verdict = "within" if median < BUDGET_MS else "OVER"
    print(f"\nunchanged re-resolve: {median:.2f} ms median ({verdict} the {BUDGET_MS:g} ms budget)")


if __name__ == "__main__":
    main()
