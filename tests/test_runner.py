"""compute.runner with a real process pool: the pit window as a job of its own.

The tick's insights go out without waiting for the Monte Carlo; the pit
window follows in an insight_update of its own, equal to the one the inline
``run_tick`` computes. Merging the compact tick output gives the same
insight and laps as the direct call; a worker killed during the pit-window
job rebuilds the pool and the job is retried once; pit windows that queue
behind a running job are coalesced per car.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from pitwall_rt.compute import runner as runner_module
from pitwall_rt.compute import track_table
from pitwall_rt.compute.runner import ComputeRunner
from pitwall_rt.compute.worker import yield_cpu
from pitwall_rt.demo_gen import DEFAULT_TRACKS_PATH
from pitwall_rt.model import infer, train
from pitwall_rt.ring import RingBuffer
from pitwall_rt.schema import StringTable, concat_rows
from pitwall_rt.strategy import RaceState, live_pit_windows
from pitwall_rt.tracks import load_tracks
from pitwall_rt.validate import Tables

from .serverproc import UNIT_S

OPTIONS = infer.IntelOptions(iterations=500)
CAR = "GR86-RUN"
SLOW_JOB_S = 1.0


def _slow_pit_windows(races: dict[int, RaceState], options: infer.IntelOptions) -> Any:
    """A pit-window job long enough to be caught in flight (runs in a pool worker)."""
    time.sleep(SLOW_JOB_S)
    return live_pit_windows(races, options)


@pytest.fixture(scope="module")
def stint_rows() -> np.ndarray:
    """Three simulated laps of Barber, car id 1 on track id 1 (as test_model_train)."""
    spec = train.StintSpec("barber", "smooth", 25.0, 0.98, 3, 20.0, 4, 3)
    stint, _ = train.simulate(spec, load_tracks(DEFAULT_TRACKS_PATH)["barber"])
    return train.telemetry_rows(spec, stint)


@pytest.fixture(scope="module")
def twin_rows(stint_rows: np.ndarray) -> np.ndarray:
    """The same stint driven by GR86-OTHER (car id 0)."""
    twin = stint_rows.copy()
    twin["chassis"] = 0
    return twin


@pytest.fixture(scope="module")
def inline(stint_rows: np.ndarray) -> infer.TickResult:
    """The same rows through ``run_tick`` directly, pit window computed inline."""
    table = track_table({1: load_tracks(DEFAULT_TRACKS_PATH)["barber"]})
    return infer.run_tick(stint_rows, table, {}, {}, OPTIONS)


@pytest.fixture
def tables() -> Iterator[Tables]:
    chassis = StringTable(8)
    chassis.intern("GR86-OTHER")  # id 0, so CAR gets id 1 like the rows
    assert chassis.intern(CAR) == 1
    track = StringTable(8, reserved=("",))
    assert track.intern("barber") == 1
    yield Tables(chassis=chassis, track=track)


async def _until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s * UNIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _runner(
    tables: Tables,
    sent: list[dict[str, Any]],
    workers: int = 2,
    priority: str = "normal",
    shared: bool = True,
) -> ComputeRunner:
    """A runner whose workers read ticks from the shared ring, as the server's
    do (``shared``), or are shipped copies of them."""
    tracks = load_tracks(DEFAULT_TRACKS_PATH)
    return ComputeRunner(
        RingBuffer(50_000, shared=shared),
        tables,
        tracks,
        workers,
        publish=sent.append,
        intel_options=OPTIONS,
        priority=priority,
    )


def _feed(runner: ComputeRunner, rows: np.ndarray) -> None:
    runner.ring.write(rows)
    runner.tick()


def _one_tick(runner: ComputeRunner, steps: Callable[[ComputeRunner], None]) -> ComputeRunner:
    """Start ``runner``, run ``steps`` (which tick it), wait for the one batch, close it."""

    async def scenario() -> ComputeRunner:
        await runner.start()
        try:
            steps(runner)
            await _until(lambda: runner.stats.batches == 1, "the tick")
        finally:
            await runner.close()
        return runner

    return asyncio.run(scenario())


def test_runner_pit_window_follows_the_tick_insight_and_equals_the_inline_one(
    tables: Tables, stint_rows: np.ndarray, inline: infer.TickResult
) -> None:
    expected = inline.pieces[1]["pit_window"]
    sent: list[dict[str, Any]] = []

    async def scenario() -> None:
        runner = _runner(tables, sent)
        await runner.start()
        try:
            _feed(runner, stint_rows)
            await _until(lambda: runner.stats.pit_jobs >= 1, "the pit-window job")
        finally:
            await runner.close()
        assert runner.stats.pit_windows == 1 and runner.stats.pit_jobs_failed == 0
        assert runner.insights[1]["pit_window"] == expected

    asyncio.run(scenario())
    assert [m["type"] for m in sent] == ["insight_update", "insight_update"]
    tick_insight, pit_insight = sent[0]["insights"][0], sent[1]["insights"][0]
    assert "pit_window" not in tick_insight  # the tick did not wait for the Monte Carlo
    assert tick_insight["chassis"] == pit_insight["chassis"] == CAR
    assert pit_insight["pit_window"] == expected
    assert {k: v for k, v in pit_insight.items() if k != "pit_window"} == tick_insight


@pytest.mark.parametrize("shared", [True, False], ids=["in-place", "copied"])
def test_runner_merge_gives_the_insight_and_laps_of_a_direct_run_tick(
    tables: Tables, stint_rows: np.ndarray, inline: infer.TickResult, shared: bool
) -> None:
    sent: list[dict[str, Any]] = []

    async def scenario() -> ComputeRunner:
        runner = _runner(tables, sent, workers=1, shared=shared)
        await runner.start()
        assert runner.reads_ring_in_place is shared
        try:
            half = len(stint_rows) // 2  # two ticks: the carries must round-trip
            _feed(runner, stint_rows[:half])
            await _until(lambda: runner.stats.batches == 1, "the first tick")
            _feed(runner, stint_rows[half:])
            await _until(lambda: runner.stats.batches == 2, "the second tick")
            await _until(lambda: runner.stats.pit_jobs >= 1, "the pit-window job")
        finally:
            await runner.close()
        return runner

    runner = asyncio.run(scenario())
    res = inline.batch.chassis[1]
    insight = runner.insights[1]
    assert insight["chassis"] == CAR and insight["track"] == "barber"
    for key in ("lap", "sector", "laps_completed", "last_lap_time_s", "best_lap_time_s"):
        assert insight[key] == res.insight[key], key
    for key, value in res.insight["tire_stress"].items():
        assert insight["tire_stress"][key] == pytest.approx(value, rel=1e-9)
    assert insight["prediction"]["lap"] == inline.pieces[1]["prediction"]["lap"]
    assert insight["explanations"] and "pit_window" in insight
    laps, direct = runner.laps_for(CAR) or [], [lap.to_dict() for lap in res.laps]
    assert [(lap["lap"], lap["lap_time_s"]) for lap in laps] == [
        (lap["lap"], lap["lap_time_s"]) for lap in direct
    ]
    assert [set(lap) for lap in laps] == [set(lap) for lap in direct]
    assert runner.laps_for("NO-SUCH-CAR") is None


@pytest.mark.parametrize("shared", [True, False], ids=["in-place", "copied"])
def test_runner_splits_a_tick_of_two_cars_over_two_workers_and_merges_both(
    tables: Tables,
    stint_rows: np.ndarray,
    twin_rows: np.ndarray,
    inline: infer.TickResult,
    shared: bool,
) -> None:
    sent: list[dict[str, Any]] = []

    def steps(runner: ComputeRunner) -> None:
        assert runner.reads_ring_in_place is shared
        runner.ring.write(twin_rows)
        _feed(runner, stint_rows)

    runner = _one_tick(_runner(tables, sent, workers=2, shared=shared), steps)
    assert runner.stats.shards == 2 and runner.stats.rows == 2 * len(stint_rows)
    expected = inline.batch.chassis[1].insight
    for cid, name in ((0, "GR86-OTHER"), (1, CAR)):
        insight = runner.insights[cid]
        assert insight["chassis"] == name
        assert insight["laps_completed"] == expected["laps_completed"] > 0
        assert insight["last_lap_time_s"] == expected["last_lap_time_s"]
        assert insight["prediction"] == runner.insights[1]["prediction"]
    assert len(runner.laps_for("GR86-OTHER") or []) == len(runner.laps_for(CAR) or []) > 0
    assert sorted(i["chassis"] for i in sent[0]["insights"]) == ["GR86-OTHER", CAR]


def test_runner_counts_a_span_overwritten_before_the_workers_read_it_as_lost(
    tables: Tables, stint_rows: np.ndarray
) -> None:
    """The tick sends only sequence numbers; rows the loop overwrites before a
    worker gets to them are counted lost, not computed from whatever replaced them."""

    def steps(runner: ComputeRunner) -> None:
        _feed(runner, stint_rows)  # the job is created, not yet sent
        laps = runner.ring.capacity // len(stint_rows) + 1
        filler = concat_rows([stint_rows] * laps)[: runner.ring.capacity]
        filler["chassis"] = 0
        runner.ring.write(filler)  # every slot of the span is replaced

    runner = _one_tick(_runner(tables, [], workers=1), steps)
    assert runner.stats.points_lost == len(stint_rows)
    assert runner.stats.rows == 0 and not runner.insights


def test_runner_copies_ticks_when_the_workers_cannot_map_the_ring(
    tables: Tables, stint_rows: np.ndarray, inline: infer.TickResult
) -> None:
    """A worker that can't map the ring (here: a handle naming the wrong
    ring) fails the start-up probe; the runner then ships copies, and says so."""

    runner = _runner(tables, [], workers=1)
    handle = runner.ring.handle
    assert handle is not None
    runner.ring.handle = dataclasses.replace(handle, token=handle.token + 1)

    def steps(runner: ComputeRunner) -> None:
        assert not runner.reads_ring_in_place
        _feed(runner, stint_rows)

    runner = _one_tick(runner, steps)
    assert runner.stats.rows == len(stint_rows) and runner.stats.points_lost == 0
    expected = inline.batch.chassis[1].insight
    assert runner.insights[1]["laps_completed"] == expected["laps_completed"] > 0


def test_runner_joins_and_splits_a_big_merged_tick_off_the_event_loop(
    tables: Tables,
    stint_rows: np.ndarray,
    twin_rows: np.ndarray,
    inline: infer.TickResult,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ticks that queued behind a slow one are joined (and split) in a thread
    once they pass ``off_loop_rows``, and computed exactly as one tick."""
    prepared_on: list[bool] = []
    real = runner_module._shards_of

    def spy(parts: list[np.ndarray], workers: int) -> Any:
        prepared_on.append(threading.current_thread() is threading.main_thread())
        return real(parts, workers)

    monkeypatch.setattr(runner_module, "_shards_of", spy)

    async def scenario() -> ComputeRunner:
        runner = _runner(tables, [], workers=2, shared=False)
        runner.off_loop_rows = len(stint_rows)  # the two cars' rows together pass it
        await runner.start()
        try:
            half = len(stint_rows) // 2  # two queued parts: the join is real
            runner._enqueue(concat_rows([stint_rows[:half], twin_rows[:half]]))
            runner._enqueue(concat_rows([stint_rows[half:], twin_rows[half:]]))
            runner.tick()
            await _until(lambda: runner.stats.batches == 1, "the merged tick")
        finally:
            await runner.close()
        return runner

    runner = asyncio.run(scenario())
    assert prepared_on == [False]
    assert runner.stats.rows == 2 * len(stint_rows) and runner.stats.shards == 2
    expected = inline.batch.chassis[1].insight
    for cid in (0, 1):
        assert runner.insights[cid]["laps_completed"] == expected["laps_completed"] > 0
        assert runner.insights[cid]["last_lap_time_s"] == expected["last_lap_time_s"]


def test_runner_worker_killed_during_pit_window_job_pool_rebuilt_and_job_retried(
    tables: Tables, stint_rows: np.ndarray, inline: infer.TickResult
) -> None:
    sent: list[dict[str, Any]] = []

    async def scenario() -> ComputeRunner:
        runner = _runner(tables, sent, workers=1)
        runner.pit_job = _slow_pit_windows
        await runner.start()
        try:
            _feed(runner, stint_rows)
            await _until(lambda: runner.stats.batches == 1, "the tick")
            assert runner.stats.pit_jobs == 0, "the pit-window job ended too soon to kill"
            for pid in runner.worker_pids():
                os.kill(pid, signal.SIGKILL)
            await _until(lambda: runner.stats.pit_jobs >= 1, "the retried pit-window job")
        finally:
            await runner.close()
        return runner

    runner = asyncio.run(scenario())
    assert runner.stats.pool_restarts == 1
    assert runner.stats.pit_jobs_retried == 1 and runner.stats.pit_jobs_failed == 0
    assert runner.stats.batches_failed == 0
    assert runner.insights[1]["pit_window"] == inline.pieces[1]["pit_window"]
    assert sent[-1]["insights"][0]["pit_window"] == inline.pieces[1]["pit_window"]


def _race(race_laps: int) -> RaceState:
    return RaceState(
        lap=5, race_laps=race_laps, wear_pct=20.0, wear_rate_pct_per_lap=3.0, base_lap_s=98.0
    )


def test_runner_pit_windows_queued_behind_a_running_job_coalesce_per_car(
    tables: Tables,
) -> None:
    sent: list[dict[str, Any]] = []

    async def scenario() -> ComputeRunner:
        runner = _runner(tables, sent, workers=1)
        runner.pit_job = _slow_pit_windows
        runner.insights = {1: {"chassis": CAR}, 0: {"chassis": "GR86-OTHER"}}
        await runner.start()
        try:
            runner._plan_pits({1: _race(20)})  # starts a job
            await _until(lambda: not runner._pit_pending, "the first job to take its car")
            runner._plan_pits({1: _race(21), 0: _race(30)})  # wait behind it...
            runner._plan_pits({1: _race(22)})  # ...and car 1's newer lap replaces its older
            await _until(lambda: runner.stats.pit_jobs >= 2, "two pit-window jobs")
        finally:
            await runner.close()
        return runner

    runner = asyncio.run(scenario())
    assert runner.stats.pit_jobs == 2 and runner.stats.pit_windows == 3
    laps_planned = [
        (i["chassis"], i["pit_window"]["race_laps"]) for m in sent for i in m["insights"]
    ]
    assert laps_planned == [(CAR, 20), (CAR, 22), ("GR86-OTHER", 30)]


@pytest.mark.parametrize("priority", ["idle", "normal"])
def test_runner_workers_run_at_the_configured_priority(tables: Tables, priority: str) -> None:
    """WORKER_PRIORITY=idle puts the workers under SCHED_IDLE (preempted whenever
    the event loop wakes); normal leaves them as started. A platform without
    SCHED_IDLE says so instead."""
    idle = getattr(os, "SCHED_IDLE", None)
    if idle is None:
        assert not yield_cpu()
        return

    async def scenario() -> list[int]:
        runner = _runner(tables, [], workers=2, priority=priority)
        await runner.start()
        try:
            return [os.sched_getscheduler(pid) for pid in runner.worker_pids()]
        finally:
            await runner.close()

    policies = asyncio.run(scenario())
    expected = idle if priority == "idle" else os.SCHED_OTHER
    assert policies == [expected, expected]
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the server itself is untouched
