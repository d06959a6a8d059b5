"""The compute stage's I/O edge: ring -> process pool -> per-chassis state -> insights.

Every ``BATCH_MS`` the runner reads the rows that arrived since its cursor
and submits them, all cars at once, to a ``ProcessPoolExecutor`` running the
pure ``compute_batch``: one round trip per tick, never per point or per car.
The event loop only awaits the future.

Ordering and loss rules:

* one batch in flight at a time (states pass from one tick to the next);
  rows that arrive meanwhile queue and are concatenated into the next call,
  which gives the same result however the stream is cut;
* the queue is bounded by the ring capacity: past it the oldest queued rows
  are dropped and counted (``points_lost``), as are rows overwritten in the
  ring before the runner read them;
* a dead worker breaks the pool: the pool is rebuilt and the batch retried
  once (``compute_batch`` is pure, so a retry is safe); a second failure
  drops the batch, counted in ``batches_failed``.

The pool job is :func:`pitwall_rt.model.infer.run_tick`: ``compute_batch``
plus, for the cars that completed a lap or sector, tire-wear inference,
explanations, the driver fingerprint and the pit window, in the same round
trip. Each worker loads the ONNX model once, in the pool's initializer.
Coaching alerts go out on the hub's ``alerts`` channel as they fire.

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

from .. import fingerprint
from ..model import infer
from ..ring import RingBuffer
from ..ticker import run_every
from ..tracks import Track, resolve_track
from ..validate import Tables
from . import worker
from .batch import track_table
from .laps import ChassisState

log = logging.getLogger(__name__)

MAX_LAPS_KEPT = 1000
"""Completed laps kept per chassis for /api/laps (bounded memory)."""
ALERTS_PER_CAR = 5
"""Latest coaching alerts carried in each car's insight."""
ALERTS_KEPT = 500
"""Latest coaching alerts kept in memory, all cars."""

Publish = Callable[[dict[str, Any]], None]


@dataclass
class ComputeStats:
    batches: int = 0
    rows: int = 0
    merged_ticks: int = 0
    points_lost: int = 0
    pool_restarts: int = 0
    batches_retried: int = 0
    batches_failed: int = 0
    late_rows: int = 0
    duplicate_rows: int = 0
    last_ms: float = 0.0
    max_ms: float = 0.0
    insights_sent: int = 0
    windows: int = 0
    predictions: int = 0
    coaching_alerts: int = 0
    infer_max_ms: float = 0.0
    strategy_max_ms: float = 0.0


def _warm() -> int:
    """Imported in each worker at start so the first real batch pays no import."""
    return 0


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
    ) -> None:
        self.ring = ring
        self.tables = tables
        self.tracks = tracks
        self.workers = workers
        self.publish = publish
        self.publish_alert = publish_alert
        self.intel_options = intel_options or infer.IntelOptions()
        self.cursor = ring.written
        self.states: dict[int, ChassisState] = {}
        self.intel: dict[int, infer.CarIntel] = {}
        self.intel_view: dict[int, dict[str, Any]] = {}
        self.insights: dict[int, dict[str, Any]] = {}
        self.laps: dict[int, deque[dict[str, Any]]] = {}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=ALERTS_KEPT)
        self._car_alerts: dict[int, deque[dict[str, Any]]] = {}
        self.stats = ComputeStats()
        self._queued: list[np.ndarray] = []
        self._queued_rows = 0
        self._inflight: asyncio.Task[None] | None = None
        self._track_of_id: dict[int, Track | None] = {}
        self.pool = self._new_pool()

    # -- lifecycle ------------------------------------------------------------

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["pitwall_rt.model.infer", "onnxruntime"])
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=worker.init_worker,
            initargs=(os.getpid(),),
        )

    async def start(self) -> None:
        """Start the workers now rather than on the first batch."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.pool, _warm) for _ in range(self.workers)))

    async def close(self, timeout_s: float = 1.0) -> None:
        """Stop the pool and wait for its workers (briefly): leaving them to
        the interpreter's exit hook makes it write to a closed pipe."""
        if self._inflight is not None:
            self._inflight.cancel()
            await asyncio.gather(self._inflight, return_exceptions=True)
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

    def worker_pids(self) -> list[int]:
        return [p.pid for p in (self.pool._processes or {}).values() if p.pid]

    async def run(self, interval_s: float) -> None:
        """Tick every ``interval_s`` until cancelled (see ``ticker``)."""
        await run_every(interval_s, self.tick, "compute")

    def tick(self) -> None:
        read = self.ring.read_since(self.cursor)
        self.cursor = read.cursor
        self.stats.points_lost += read.missed
        if len(read.rows):
            self._enqueue(read.rows)
        if self._queued and (self._inflight is None or self._inflight.done()):
            rows = self._take_queue()
            self._inflight = asyncio.get_running_loop().create_task(self._compute(rows))
        elif self._queued and len(self._queued) > 1:
            self.stats.merged_ticks += 1

    # -- queue ------------------------------------------------------------------

    def _enqueue(self, rows: np.ndarray) -> None:
        self._queued.append(rows)
        self._queued_rows += len(rows)
        while self._queued_rows > self.ring.capacity and len(self._queued) > 1:
            dropped = self._queued.pop(0)
            self._queued_rows -= len(dropped)
            self.stats.points_lost += len(dropped)

    def _take_queue(self) -> np.ndarray:
        rows = self._queued[0] if len(self._queued) == 1 else np.concatenate(self._queued)
        self._queued.clear()
        self._queued_rows = 0
        return rows

    # -- one batch ----------------------------------------------------------------

    async def _compute(self, rows: np.ndarray) -> None:
        chassis_ids = np.unique(rows["chassis"]).tolist()
        states = {c: self.states[c] for c in chassis_ids if c in self.states}
        intel = {c: self.intel[c] for c in chassis_ids if c in self.intel}
        tracks = self._track_table(np.unique(rows["track"]).tolist())
        started = time.perf_counter()
        result = await self._submit(rows, tracks, states, intel)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self.stats.last_ms = elapsed_ms
        self.stats.max_ms = max(self.stats.max_ms, elapsed_ms)
        if result is not None:
            self._merge(result)

    async def _submit(
        self,
        rows: np.ndarray,
        tracks: dict[int, tuple[float, np.ndarray]],
        states: dict[int, ChassisState],
        intel: dict[int, infer.CarIntel],
    ) -> infer.TickResult | None:
        loop = asyncio.get_running_loop()
        job = (rows, tracks, states, intel, self.intel_options)
        for attempt in (1, 2):
            try:
                return await loop.run_in_executor(self.pool, infer.run_tick, *job)
            except BrokenProcessPool:
                log.warning("compute worker died (attempt %d); rebuilding the pool", attempt)
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = self._new_pool()
                self.stats.pool_restarts += 1
                if attempt == 1:
                    self.stats.batches_retried += 1
            except Exception:
                log.exception("compute batch of %d rows failed", len(rows))
                break
        self.stats.batches_failed += 1
        return None

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

    def _merge(self, tick: infer.TickResult) -> None:
        result = tick.batch
        self.stats.batches += 1
        self.stats.rows += result.rows
        self.stats.late_rows += result.late
        self.stats.duplicate_rows += result.duplicates
        self._count_intel(tick)
        changed = []
        for cid, res in result.chassis.items():
            self.states[cid] = res.state
            self.intel[cid] = tick.intel[cid]
            if res.laps:
                kept = self.laps.setdefault(cid, deque(maxlen=MAX_LAPS_KEPT))
                kept.extend(lap.to_dict() for lap in res.laps)
            self.intel_view.setdefault(cid, {}).update(tick.pieces.get(cid, {}))
            insight = self._decorate(cid, res.insight)
            self.insights[cid] = insight
            changed.append(insight)
        for alert in tick.alerts:  # after the insights: names and sectors are known
            self._alert(alert)
        if changed:
            self.stats.insights_sent += len(changed)
            self.publish({"type": "insight_update", "insights": changed})

    def _count_intel(self, tick: infer.TickResult) -> None:
        self.stats.windows += sum(len(r.windows) for r in tick.batch.chassis.values())
        self.stats.predictions += int(tick.stats.get("windows", 0))
        self.stats.infer_max_ms = max(self.stats.infer_max_ms, tick.stats.get("infer_ms", 0.0))
        self.stats.strategy_max_ms = max(
            self.stats.strategy_max_ms, tick.stats.get("strategy_ms", 0.0)
        )

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
        state = self.states[cid]
        tid = getattr(state, "track_id", 0) or 0
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
        state = self.states.get(cid)
        track = self._track_of_id.get(state.track_id) if state is not None else None
        if track is None or sector is None or not 0 <= sector < len(track.sector_names):
            return None
        return track.sector_names[sector]

    def laps_for(self, chassis: str) -> list[dict[str, Any]] | None:
        cid = self.tables.chassis.lookup(chassis)
        if cid is None:
            return None
        return list(self.laps.get(cid, ()))
