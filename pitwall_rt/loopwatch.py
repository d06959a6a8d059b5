"""Event-loop stall watch: how late a short sleep wakes up is how long the loop was busy.

CPU work that blocks the loop for more than about a millisecond belongs in the
process pool; this is how we know it stayed there. The figures appear in
``/api/health`` under ``loop`` and in ``/metrics``.

The oversleep is timed with ``time.perf_counter``, not ``loop.time()``:
uvloop's clock ticks in whole milliseconds and is read once per loop
iteration, which rounded every stall to a millisecond.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

PROBE_S = 0.01


@dataclass
class LoopStats:
    probes: int = 0
    max_lag_ms: float = 0.0
    last_lag_ms: float = 0.0
    stalls_over_5ms: int = 0


async def watch_loop(stats: LoopStats, probe_s: float = PROBE_S) -> None:
    """Sleep ``probe_s`` again and again and record the oversleep, until cancelled."""
    clock = time.perf_counter
    while True:
        before = clock()
        await asyncio.sleep(probe_s)
        lag_ms = max(0.0, (clock() - before - probe_s) * 1000.0)
        stats.probes += 1
        stats.last_lag_ms = lag_ms
        stats.max_lag_ms = max(stats.max_lag_ms, lag_ms)
        if lag_ms > 5.0:
            stats.stalls_over_5ms += 1
