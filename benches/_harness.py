"""Shared benchmark plumbing: a figure type, timing helpers, and the machine description."""

from __future__ import annotations

import gc
import os
import platform
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure, compared with a target and (when there is one) a baseline."""

    name: str
    value: float
    unit: str
    target: str
    ok: bool
    baseline: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    def line(self) -> str:
        ratio = f"  ({self.ratio:.2f}x baseline {self.baseline:,.1f})" if self.ratio else ""
        mark = "ok  " if self.ok else "MISS"
        return f"{mark} {self.name}: {self.value:,.2f} {self.unit}{ratio}  target {self.target}"


def p(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) of the samples, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            kb = int(fh.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


@contextmanager
def runner_gc() -> Iterator[None]:
    """The garbage-collector set-up of a running runner (:mod:`engine.gcpolicy`, applied by
    ``coro start --headless`` and the TUI once started), undone afterwards so the benchmarks
    that follow in the same process start from Python's defaults."""
    from engine.gcpolicy import settle_after_start

    threshold = gc.get_threshold()
    settle_after_start()
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
