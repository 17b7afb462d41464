"""How a process that runs coro's engine sets up Python's cyclic garbage collector.

Called once the runner has started (``coro start --headless``, the TUI with its in-process
engine, and the benchmarks that stand in for them):

- what is loaded by then (modules, the config, the engine, the SDKs) lives as long as the
  process, so it is frozen out of the collector's passes (:func:`gc.freeze`); a full pass over
  it took 30-170 ms, a stall every job and key waited out;
- the young generation is collected every 10,000 new container objects instead of 700. With
  50 jobs running, the default meant a collection about every millisecond and the older
  generations' passes that follow from them: 6-8 % of the runner's time, measured in
  ``benches/bench_engine.py``. Reference cycles are still collected, a little later.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle_after_start"]

YOUNG_THRESHOLD = 10_000


def settle_after_start() -> None:
    """Freeze what is loaded now and collect the young generation less often (idempotent)."""
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young and young < YOUNG_THRESHOLD:  # 0 means the collector is off: leave it off
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)
