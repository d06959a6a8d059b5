"""Event-loop stall watch: how late a short sleep wakes up is how long the loop was busy.

CPU work that blocks the loop for more than about a millisecond belongs in the
process pool; this is how we know it stayed there. The figures appear in
``/api/health`` under ``loop`` and in ``/metrics``.

The oversleep is timed with ``time.perf_counter``, not ``loop.time()``:
uvloop's clock ticks in whole milliseconds and is read once per loop
iteration, which rounded every stall to a millisecond.

A late wake-up is not always the loop's own doing. When more threads want a
core than there are cores, the kernel makes the loop thread wait its turn,
and on a two-core machine under load that wait alone reaches 8-12 ms. On
Linux the kernel counts that wait per thread (``/proc/thread-self/schedstat``,
second field); each oversleep is split into the part spent waiting for a core
and the rest (running callbacks, or waiting for the GIL), so a stall can be
put down to the code or to the machine.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

PROBE_S = 0.01
STALL_MS = 5.0
SCHEDSTAT = "/proc/thread-self/schedstat"


@dataclass
class LoopStats:
    probes: int = 0
    max_lag_ms: float = 0.0
    last_lag_ms: float = 0.0
    stalls_over_5ms: int = 0
    # The same, less the time the loop thread waited for a core: what the
    # process itself held the loop for. Equal to the above where the
    # platform doesn't report run-queue waits.
    max_own_lag_ms: float = 0.0
    own_stalls_over_5ms: int = 0
    cpu_wait_ms: float = 0.0
    """Time the loop thread spent runnable but waiting for a core, in all."""
    cpu_wait_known: bool = False

    def record(self, lag_ms: float, wait_ms: float) -> None:
        """One probe's oversleep and how much of it was a wait for a core."""
        own_ms = max(0.0, lag_ms - wait_ms)
        self.probes += 1
        self.last_lag_ms = lag_ms
        self.max_lag_ms = max(self.max_lag_ms, lag_ms)
        self.max_own_lag_ms = max(self.max_own_lag_ms, own_ms)
        self.stalls_over_5ms += lag_ms > STALL_MS
        self.own_stalls_over_5ms += own_ms > STALL_MS
        self.cpu_wait_ms += wait_ms


class RunQueueClock:
    """The calling thread's total run-queue wait, in ms; always 0 where the
    kernel doesn't report it. The file stays open (it names the thread that
    opened it): a ``pread`` is a few microseconds, cheap at one probe per
    10 ms."""

    def __init__(self, path: str = SCHEDSTAT) -> None:
        self._fd: int | None = None
        try:
            self._fd = os.open(path, os.O_RDONLY)
            self.waited_ms()
        except (OSError, ValueError, IndexError):
            self.close()

    @property
    def known(self) -> bool:
        return self._fd is not None

    def waited_ms(self) -> float:
        if self._fd is None:
            return 0.0
        return int(os.pread(self._fd, 128, 0).split()[1]) / 1e6

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


async def watch_loop(stats: LoopStats, probe_s: float = PROBE_S) -> None:
    """Sleep ``probe_s`` again and again and record the oversleep, until cancelled."""
    clock = time.perf_counter
    run_queue = RunQueueClock()
    waited = run_queue.waited_ms
    stats.cpu_wait_known = run_queue.known
    try:
        while True:
            before, waited_before = clock(), waited()
            await asyncio.sleep(probe_s)
            lag_ms = max(0.0, (clock() - before - probe_s) * 1000.0)
            stats.record(lag_ms, waited() - waited_before)
    finally:
        run_queue.close()
