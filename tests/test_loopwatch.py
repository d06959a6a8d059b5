"""The loop watch: oversleeps, and the part of them spent waiting for a core."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import pytest

from pitwall_rt.loopwatch import LoopStats, RunQueueClock, watch_loop


def test_record_splits_a_stall_into_own_time_and_waiting_for_a_core() -> None:
    stats = LoopStats()
    stats.record(lag_ms=9.0, wait_ms=7.0)  # a stall the machine caused
    stats.record(lag_ms=6.0, wait_ms=0.5)  # one the loop caused
    stats.record(lag_ms=1.0, wait_ms=3.0)  # waited, but the sleep absorbed it
    assert stats.probes == 3
    assert stats.max_lag_ms == 9.0
    assert stats.stalls_over_5ms == 2
    assert stats.max_own_lag_ms == 5.5
    assert stats.own_stalls_over_5ms == 1
    assert stats.cpu_wait_ms == 10.5
    assert stats.last_lag_ms == 1.0


def test_run_queue_clock_reads_the_second_schedstat_field(tmp_path: Path) -> None:
    fake = tmp_path / "schedstat"
    fake.write_text("123456789 2500000000 42\n")
    clock = RunQueueClock(str(fake))
    assert clock.known
    assert clock.waited_ms() == 2500.0
    fake.write_text("123456789 2512500000 43\n")
    assert clock.waited_ms() == 2512.5
    clock.close()
    assert not clock.known


@pytest.mark.parametrize("content", [None, "", "garbage\n"])
def test_run_queue_clock_without_a_readable_file_reports_no_wait(
    tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "schedstat"
    if content is not None:
        path.write_text(content)
    clock = RunQueueClock(str(path))
    assert not clock.known
    assert clock.waited_ms() == 0.0


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_run_queue_clock_sees_this_thread_wait_when_cores_are_oversubscribed() -> None:
    """On Linux the kernel reports the wait; elsewhere the clock says it can't
    (and health shows ``cpu_wait_known: false``) rather than report none."""
    clock = RunQueueClock()
    on_linux = sys.platform.startswith("linux")
    assert clock.known is on_linux
    spinners = [
        mp.get_context("fork").Process(target=_spin, args=(1.5,))
        for _ in range(os.cpu_count() or 1)
    ]
    for proc in spinners:
        proc.start()
    try:
        before = clock.waited_ms()
        _spin(0.8)  # one more runnable thread than cores: someone waits
        waited = clock.waited_ms() - before
    finally:
        for proc in spinners:
            proc.join()
    clock.close()
    if on_linux:
        assert waited > 5.0
    else:
        assert waited == 0.0


def test_a_blocking_callback_is_the_loops_own_stall() -> None:
    async def main() -> LoopStats:
        stats = LoopStats()
        watch = asyncio.create_task(watch_loop(stats, probe_s=0.005))
        await asyncio.sleep(0.05)
        time.sleep(0.03)  # the loop is held, but no thread is waiting for a core
        await asyncio.sleep(0.05)
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        return stats

    stats = asyncio.run(main())
    assert stats.probes >= 5
    assert stats.max_lag_ms >= 20.0
    assert stats.max_own_lag_ms >= 20.0
    assert stats.own_stalls_over_5ms >= 1
