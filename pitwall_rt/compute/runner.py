"""The compute stage's I/O edge: ring -> process pool -> per-chassis state -> insights.

Every ``BATCH_MS`` the runner submits the rows that arrived since its
cursor, all cars at once, to a ``ProcessPoolExecutor`` running the pure
``compute_batch``: one round trip per worker per tick, never per point or
per car. With several idle workers the tick is split into shards of whole
cars, one per worker (``job.assign_cars``), so it takes the time of its
largest shard. The event loop only awaits the futures.

The server's ring is shared with the workers (``ring_share``): a tick sends
each worker the span of sequence numbers and its cars, and the worker reads
the rows itself, so the loop copies nothing. With a private ring (or where
the workers could not map it) the tick copies its rows and ships them.

Ordering and loss rules:

* one batch in flight at a time (states pass from one tick to the next);
  rows that arrive meanwhile wait and go into the next call, which gives
  the same result however the stream is cut;
* rows wait in the ring, or (copied) in a queue bounded by the ring's
  capacity; rows overwritten in the ring before they were read, and queued
  rows past that bound, are dropped and counted (``points_lost``);
* a dead worker breaks the pool: the pool is rebuilt and the batch (each
  of its shards) retried once (``compute_batch`` is pure, so a retry is
  safe); a shard that fails again is dropped, its cars keep their states
  from before the tick, and the batch counts in ``batches_failed``.

The tick's pool job is :func:`.job.tick_job`: ``compute_batch`` plus, for
the cars that completed a lap or sector, tire-wear inference, explanations
and the driver fingerprint, in one round trip, with each car's state
travelling as an opaque carry the loop never unpickles. Each worker loads the
ONNX model once, in the pool's initializer. Coaching alerts go out on the
hub's ``alerts`` channel as they fire.

The pit-window Monte Carlo costs more than the rest of a tick, so it is a
pool job of its own (:func:`pitwall_rt.strategy.live_pit_windows`) that runs
beside the ticks: a car's ``pit_window`` reaches its insight when the job
ends (an ``insight_update`` of its own, usually within the next tick).
At most one such job is in flight; cars that finish laps meanwhile wait in
one pending set, a car's newer lap replacing its older one. A dead worker
rebuilds the pool (once, whichever job saw it first) and the job is retried
once, as a batch is (``pit_jobs_retried``, ``pit_jobs_failed``).

This module is the only one in ``compute`` that knows about asyncio and
processes; the rest is pure numpy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import fingerprint, ring_share
from ..model import infer
from ..ring import RingBuffer
from ..ring_share import RingHandle, Span
from ..schema import column_of, concat_rows
from ..strategy import RaceState, live_pit_windows
from ..ticker import run_every
from ..tracks import Track, resolve_track
from ..validate import Tables
from . import worker
from .batch import track_table
from .job import (
    Carry,
    TickOutput,
    assign_cars,
    join_outputs,
    span_tick_job,
    split_cars,
    tick_job,
    warm,
)

log = logging.getLogger(__name__)

MAX_LAPS_KEPT = 1000
"""Completed laps kept per chassis for /api/laps (bounded memory)."""
ALERTS_PER_CAR = 5
"""Latest coaching alerts carried in each car's insight."""
ALERTS_KEPT = 500
"""Latest coaching alerts kept in memory, all cars."""
TIMINGS_KEPT = 1024
"""Latest job times the p50/p99 figures in health are taken over."""
OFF_LOOP_ROWS = 200_000
"""A tick at least this big (ticks that queued behind a slow one) is joined and
split in a thread, not the loop: fresh memory for it is faulted in page by
page, and a 2M-row join plus split took over a second here. numpy releases
the GIL while it copies, so the loop runs meanwhile."""

Publish = Callable[[dict[str, Any]], None]


@dataclass
class ComputeStats:
    batches: int = 0
    shards: int = 0
    rows: int = 0
    merged_ticks: int = 0
    points_lost: int = 0
    pool_restarts: int = 0
    batches_retried: int = 0
    batches_failed: int = 0
    late_rows: int = 0
    duplicate_rows: int = 0
    lap_glitches: int = 0
    insights_sent: int = 0
    windows: int = 0
    predictions: int = 0
    coaching_alerts: int = 0
    infer_max_ms: float = 0.0
    strategy_max_ms: float = 0.0
    job_max_ms: float = 0.0
    pit_jobs: int = 0
    pit_windows: int = 0
    pit_jobs_retried: int = 0
    pit_jobs_failed: int = 0


class Timings:
    """Job times (ms): the last, the longest, and the latest ``kept`` for the
    percentiles in health, which are worked out when health asks, not per job."""

    def __init__(self, kept: int = TIMINGS_KEPT) -> None:
        self._ms = np.zeros(kept)
        self._n = 0
        self.last_ms = 0.0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        self._ms[self._n % len(self._ms)] = ms
        self._n += 1
        self.last_ms = ms
        self.max_ms = max(self.max_ms, ms)

    def percentile(self, q: float) -> float:
        if self._n == 0:
            return 0.0
        return float(np.percentile(self._ms[: min(self._n, len(self._ms))], q))


@dataclass
class _Outcome:
    """What a pool call came to: its value when ``ok``; whether it was retried."""

    value: Any = None
    ok: bool = False
    retried: bool = False


def _shards_of(parts: list[np.ndarray], workers: int) -> list[tuple[np.ndarray, list[int]]]:
    """The queued rows as one tick, cut into shards for ``workers`` workers."""
    rows = parts[0] if len(parts) == 1 else concat_rows(parts)
    return split_cars(rows, workers)


def _track_ids(parts: list[np.ndarray]) -> set[int]:
    return set().union(*(np.flatnonzero(np.bincount(p["track"])).tolist() for p in parts))


@dataclass
class _Shard:
    """One pool call of a tick: the job, its leading arguments (rows, or a
    span and cars), its cars (for their carries) and its row count."""

    job: Callable[..., TickOutput]
    head: tuple[Any, ...]
    cars: list[int]
    rows: int


class ComputeRunner:
    """Owns the pool, the per-chassis states, the latest insights and the laps."""

    def __init__(
        self,
        ring: RingBuffer,
        tables: Tables,
        tracks: dict[str, Track],
        workers: int,
        publish: Publish,
        publish_alert: Publish | None = None,
        intel_options: infer.IntelOptions | None = None,
        priority: str = "normal",
    ) -> None:
        self.ring = ring
        self.tables = tables
        self.tracks = tracks
        self.workers = workers
        self.priority = priority
        self.publish = publish
        self.publish_alert = publish_alert
        self.intel_options = intel_options or infer.IntelOptions()
        self.cursor = ring.written
        self.carries: dict[int, Carry] = {}
        self.track_ids: dict[int, int] = {}
        self.intel_view: dict[int, dict[str, Any]] = {}
        self.insights: dict[int, dict[str, Any]] = {}
        self.laps: dict[int, deque[dict[str, Any]]] = {}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=ALERTS_KEPT)
        self._car_alerts: dict[int, deque[dict[str, Any]]] = {}
        self.stats = ComputeStats()
        self._queued: list[np.ndarray] = []
        self._queued_rows = 0
        self._ticks_waiting = 0
        self._shared: RingHandle | None = None
        """Set once the workers could map the ring (``start``); else ticks are copied."""
        self._inflight: asyncio.Task[None] | None = None
        self.pit_job: Callable[..., dict[int, dict[str, Any]]] = live_pit_windows
        """The pit-window pool job (a test may put a slower one here)."""
        self._pit_pending: dict[int, RaceState] = {}
        self._pit_task: asyncio.Task[None] | None = None
        self.off_loop_rows = OFF_LOOP_ROWS
        self._pool_ms = Timings()
        self._pit_ms = Timings()
        self._track_of_id: dict[int, Track | None] = {}
        self.pool = self._new_pool()

    # -- lifecycle ------------------------------------------------------------

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["pitwall_rt.compute.job", "onnxruntime"])
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=worker.init_worker,
            initargs=(os.getpid(), self.priority),
        )

    async def start(self) -> None:
        """Start the workers now rather than on the first batch."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.pool, warm) for _ in range(self.workers)))
        handle = self.ring.handle
        if handle is not None:
            try:
                await loop.run_in_executor(self.pool, ring_share.probe, handle)
            except OSError as exc:
                log.warning("compute workers cannot map the ring (%s): ticks are copied", exc)
            else:
                self._shared = handle

    async def close(self, timeout_s: float = 1.0) -> None:
        """Stop the pool and wait for its workers (briefly): leaving them to
        the interpreter's exit hook makes it write to a closed pipe."""
        for task in (self._inflight, self._pit_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        pids = self.worker_pids()
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self.pool.shutdown, wait=True, cancel_futures=True), timeout_s
            )
        except TimeoutError:
            log.warning("compute workers did not stop in %.1f s; killing them", timeout_s)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def timings(self) -> dict[str, float]:
        """Pool times for health: the tick job's and the pit-window job's."""
        pool, pit = self._pool_ms, self._pit_ms
        return {
            "last_ms": round(pool.last_ms, 3),
            "max_ms": round(pool.max_ms, 3),
            "pool_p50_ms": pool.percentile(50),
            "pool_p99_ms": pool.percentile(99),
            "pit_last_ms": pit.last_ms,
            "pit_p50_ms": pit.percentile(50),
            "pit_max_ms": pit.max_ms,
        }

    @property
    def reads_ring_in_place(self) -> bool:
        """True when workers read each tick from the shared ring; False when
        ticks are copied to them (a private ring, or sharing failed at start)."""
        return self._shared is not None

    def worker_pids(self) -> list[int]:
        return [p.pid for p in (self.pool._processes or {}).values() if p.pid]

    async def run(self, interval_s: float) -> None:
        """Tick every ``interval_s`` until cancelled (see ``ticker``)."""
        await run_every(interval_s, self.tick, "compute")

    def tick(self) -> None:
        if self._inflight is not None and not self._inflight.done():
            self._wait()
        elif self._shared is not None:
            self._send_span(self._shared)
        else:
            self._read_queue()
            if self._queued:
                parts = self._take_queue()
                self._inflight = asyncio.get_running_loop().create_task(self._compute_copy(parts))

    def _wait(self) -> None:
        """A tick while a batch is in flight: its rows wait for the next call."""
        if self._shared is not None:
            waiting = self.ring.written > self.cursor
        else:
            self._read_queue()
            waiting = bool(self._queued)
        self._ticks_waiting = self._ticks_waiting + 1 if waiting else 0
        if self._ticks_waiting > 1:
            self.stats.merged_ticks += 1

    # -- a span of the shared ring ---------------------------------------------------

    def _send_span(self, handle: RingHandle) -> None:
        """Send the workers the sequences since the cursor; they read the rows
        themselves. Only the chassis and track columns are read here, in place."""
        views = self.ring.views_since(self.cursor)
        self.stats.points_lost += views.missed
        self.cursor = views.cursor
        self._ticks_waiting = 0
        if not views.parts:
            return
        counts = np.bincount(column_of(views.parts, "chassis"))
        track_ids = _track_ids(views.parts)
        span = Span(handle, views.cursor - len(views), views.cursor)
        cars_of = assign_cars(counts, self._idle_workers())
        whole = len(cars_of) == 1  # one shard: the worker needn't pick its cars out
        shards = [
            _Shard(span_tick_job, (span, None if whole else cars), cars, int(counts[cars].sum()))
            for cars in cars_of
        ]
        self._inflight = asyncio.get_running_loop().create_task(self._compute(shards, track_ids))

    # -- copies, where the ring is not shared ------------------------------------------

    def _read_queue(self) -> None:
        read = self.ring.read_since(self.cursor)
        self.cursor = read.cursor
        self.stats.points_lost += read.missed
        if len(read.rows):
            self._enqueue(read.rows)

    def _enqueue(self, rows: np.ndarray) -> None:
        self._queued.append(rows)
        self._queued_rows += len(rows)
        while self._queued_rows > self.ring.capacity and len(self._queued) > 1:
            dropped = self._queued.pop(0)
            self._queued_rows -= len(dropped)
            self.stats.points_lost += len(dropped)

    def _take_queue(self) -> list[np.ndarray]:
        parts = self._queued
        self._queued = []
        self._queued_rows = 0
        self._ticks_waiting = 0
        return parts

    async def _compute_copy(self, parts: list[np.ndarray]) -> None:
        total = sum(map(len, parts))
        workers = self._idle_workers()
        if total >= self.off_loop_rows:
            split = await asyncio.to_thread(_shards_of, parts, workers)
        else:
            split = _shards_of(parts, workers)
        shards = [_Shard(tick_job, (rows,), cars, len(rows)) for rows, cars in split]
        await self._compute(shards, _track_ids(parts))

    # -- one batch ----------------------------------------------------------------

    async def _compute(self, shards: list[_Shard], track_ids: set[int]) -> None:
        tracks = self._track_table(sorted(track_ids))
        self.stats.shards += len(shards)
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(
                self._in_pool(
                    shard.job, *shard.head, tracks, self._carries_of(shard.cars), self.intel_options
                )
                for shard in shards
            )
        )
        self._pool_ms.add((time.perf_counter() - started) * 1000.0)
        if any(outcome.retried for outcome in outcomes):
            self.stats.batches_retried += 1
        done = [outcome.value for outcome in outcomes if outcome.ok]
        if len(done) < len(outcomes):
            lost = sum(s.rows for s, o in zip(shards, outcomes, strict=True) if not o.ok)
            total = sum(s.rows for s in shards)
            log.error("compute batch: %d of its %d rows dropped", lost, total)
            self.stats.batches_failed += 1
        if done:
            self._merge(join_outputs(done))

    def _idle_workers(self) -> int:
        """Workers a tick can be split over: all but the one a pit-window job holds."""
        busy = self._pit_task is not None and not self._pit_task.done()
        return max(1, self.workers - busy)

    def _carries_of(self, cars: list[int]) -> dict[int, Carry]:
        carries = self.carries
        return {c: carries[c] for c in cars if c in carries}

    async def _in_pool(self, fn: Callable[..., Any], *args: Any) -> _Outcome:
        """Run ``fn(*args)`` in the pool. A dead worker breaks the pool: rebuild it
        and retry once (every job is pure). Any other error fails the call."""
        loop = asyncio.get_running_loop()
        outcome = _Outcome()
        for attempt in (1, 2):
            pool = self.pool
            try:
                outcome.value = await loop.run_in_executor(pool, fn, *args)
                outcome.ok = True
                return outcome
            except BrokenProcessPool:
                log.warning("compute worker died (attempt %d of %s)", attempt, fn.__name__)
                self._rebuild(pool)
                outcome.retried = True
            except Exception:
                log.exception("pool job %s failed", fn.__name__)
                break
        return outcome

    def _rebuild(self, broken: ProcessPoolExecutor) -> None:
        """Replace ``broken`` with a new pool, unless another job already did."""
        if broken is not self.pool:
            return
        broken.shutdown(wait=False, cancel_futures=True)
        self.pool = self._new_pool()
        self.stats.pool_restarts += 1

    # -- pit windows ----------------------------------------------------------------

    def _plan_pits(self, races: dict[int, RaceState]) -> None:
        """Queue pit windows; start the job unless one is in flight (it takes these next)."""
        self._pit_pending.update(races)
        if self._pit_pending and (self._pit_task is None or self._pit_task.done()):
            self._pit_task = asyncio.get_running_loop().create_task(self._pit_jobs())

    async def _pit_jobs(self) -> None:
        while self._pit_pending:
            races, self._pit_pending = self._pit_pending, {}
            started = time.perf_counter()
            outcome = await self._in_pool(self.pit_job, races, self.intel_options)
            self._pit_ms.add((time.perf_counter() - started) * 1000.0)
            self.stats.pit_jobs += 1
            if outcome.retried:
                self.stats.pit_jobs_retried += 1
            if not outcome.ok:
                self.stats.pit_jobs_failed += 1  # the car's next lap plans again
                continue
            self._merge_pits(outcome.value)

    def _merge_pits(self, windows: dict[int, dict[str, Any]]) -> None:
        """Put each car's new pit window in its insight and publish those insights."""
        changed = []
        for cid, window in windows.items():
            self.intel_view.setdefault(cid, {})["pit_window"] = window
            if cid in self.insights:  # a new dict: the published one stays as it was sent
                self.insights[cid] = {**self.insights[cid], "pit_window": window}
                changed.append(self.insights[cid])
        self.stats.pit_windows += len(windows)
        if changed:
            self.stats.insights_sent += len(changed)
            self.publish({"type": "insight_update", "insights": changed})

    def _track_table(self, track_ids: list[int]) -> dict[int, tuple[float, np.ndarray]]:
        known = {}
        for tid in track_ids:
            if tid not in self._track_of_id:
                name = self.tables.track.name(tid) if tid else None
                self._track_of_id[tid] = resolve_track(name, self.tracks) if name else None
            track = self._track_of_id[tid]
            if track is not None:
                known[tid] = track
        return track_table(known)

    def _merge(self, tick: TickOutput) -> None:
        self.stats.batches += 1
        self.stats.points_lost += tick.lost
        self.stats.rows += tick.rows
        self.stats.late_rows += tick.late
        self.stats.duplicate_rows += tick.duplicates
        self.stats.lap_glitches += tick.lap_glitches
        self._count_intel(tick)
        changed = []
        for cid, car in tick.cars.items():
            self.carries[cid] = car.carry
            self.track_ids[cid] = car.track_id
            if car.laps:
                self.laps.setdefault(cid, deque(maxlen=MAX_LAPS_KEPT)).extend(car.laps)
            if car.intel:
                self.intel_view.setdefault(cid, {}).update(car.intel)
            insight = self._decorate(cid, car.insight)
            self.insights[cid] = insight
            changed.append(insight)
        for alert in tick.alerts:  # after the insights: names and sectors are known
            self._alert(alert)
        if changed:
            self.stats.insights_sent += len(changed)
            self.publish({"type": "insight_update", "insights": changed})
        if tick.pit_races:
            self._plan_pits(tick.pit_races)

    def _count_intel(self, tick: TickOutput) -> None:
        self.stats.windows += sum(car.windows for car in tick.cars.values())
        self.stats.predictions += int(tick.stats.get("windows", 0))
        self.stats.infer_max_ms = max(self.stats.infer_max_ms, tick.stats.get("infer_ms", 0.0))
        self.stats.strategy_max_ms = max(
            self.stats.strategy_max_ms, tick.stats.get("strategy_ms", 0.0)
        )
        self.stats.job_max_ms = max(self.stats.job_max_ms, tick.stats.get("job_ms", 0.0))

    def _alert(self, raw: dict[str, Any]) -> None:
        """Name a coaching alert, keep it, attach it to the car's insight, publish it."""
        cid = raw.pop("chassis_id")
        insight = self.insights.get(cid, {})
        sector_name = self._sector_name(cid, raw.get("sector"))
        alert = {
            "id": f"coach-{cid}-{raw['lap']}-{raw.get('sector')}-{raw['metric']}",
            "chassis": self.tables.chassis.name(cid),
            "track": insight.get("track"),
            "sector_name": sector_name,
            "message": fingerprint.message(raw, sector_name),
            **raw,
        }
        self.stats.coaching_alerts += 1
        self.alerts.append(alert)
        mine = self._car_alerts.setdefault(cid, deque(maxlen=ALERTS_PER_CAR))
        mine.append(alert)
        if cid in self.insights:
            self.insights[cid]["alerts"] = list(mine)
        if self.publish_alert is not None:
            self.publish_alert({"type": "alert", "alert": alert})

    def _decorate(self, cid: int, piece: dict[str, Any]) -> dict[str, Any]:
        """Add names the pool doesn't know (chassis, track, sector name) and the
        latest model prediction, pit window, explanations and coaching alerts."""
        tid = self.track_ids.get(cid, 0)
        track = self._track_of_id.get(tid)
        return {
            "chassis": self.tables.chassis.name(cid),
            "track": track.id if track is not None else (self.tables.track.name(tid) or None),
            "sector_name": self._sector_name(cid, piece.get("sector")),
            **piece,
            **self.intel_view.get(cid, {}),
            "alerts": list(self._car_alerts.get(cid, ())),
        }

    def _sector_name(self, cid: int, sector: int | None) -> str | None:
        tid = self.track_ids.get(cid)
        track = self._track_of_id.get(tid) if tid is not None else None
        if track is None or sector is None or not 0 <= sector < len(track.sector_names):
            return None
        return track.sector_names[sector]

    def laps_for(self, chassis: str) -> list[dict[str, Any]] | None:
        cid = self.tables.chassis.lookup(chassis)
        if cid is None:
            return None
        return list(self.laps.get(cid, ()))
