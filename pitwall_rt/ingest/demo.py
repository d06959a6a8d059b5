"""The demo source: replay demo_data.json in a loop, at real time, as live cars.

Points go through the same ``Ingestor`` as UDP, stamped with the wall clock
when they are sent, so a new user sees cars lapping within seconds.

Each car loops on its own: its recording is cut where the car is back at
the lap distance it started from, after as many whole laps as the file
holds, so a pass ends where the next begins and lap numbers just keep
counting (no jump in lap distance that lap timing would read as a short lap).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from .pipeline import Ingestor

log = logging.getLogger(__name__)

TICK_S = 0.05  # send cadence; finer than any BATCH_MS


@dataclass
class CarLoop:
    """One car's points (times relative to its first) and how it repeats."""

    points: list[dict[str, Any]]
    times_s: list[float]
    period_s: float
    laps_per_pass: int
    index: int = 0
    passes: int = 0


def whole_laps(points: list[dict[str, Any]]) -> tuple[int, int]:
    """(samples, laps): the prefix ending where the car is back at its start
    distance after the most whole laps, and that lap count (0 if none)."""
    first = points[0]
    lap0, d0 = first.get("lap"), first.get("lapdist_m")
    if lap0 is None or d0 is None:
        return len(points), 0
    best = (len(points), 0)
    target = int(lap0) + 1
    for i, p in enumerate(points):
        lap, dist = p.get("lap"), p.get("lapdist_m")
        if lap is not None and dist is not None and (int(lap), dist) >= (target, d0):
            best = (i, target - int(lap0))
            target += 1
    return best


def plan_loops(points: list[dict[str, Any]]) -> list[CarLoop]:
    """Split the file by chassis and cut each car to whole laps."""
    by_car: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        by_car.setdefault(point["chassis"], []).append(point)
    loops = []
    for car_points in by_car.values():
        end, laps = whole_laps(car_points)
        kept = car_points[: max(end, 1)]
        start = float(kept[0]["t_s"])
        times = [float(p["t_s"]) - start for p in kept]
        step = times[-1] / max(1, len(times) - 1)
        period = (
            float(car_points[end]["t_s"]) - start if end < len(car_points) else times[-1] + step
        )
        loops.append(CarLoop(kept, times, max(period, step), laps))
    return loops


def stamp(point: dict[str, Any], wall_s: float, lap_offset: int) -> dict[str, Any]:
    """The point as sent live: wall-clock meta_time, lap shifted by the pass."""
    out = {k: v for k, v in point.items() if k != "t_s"}
    out["meta_time"] = wall_s
    if lap_offset and out.get("lap") is not None:
        out["lap"] = int(out["lap"]) + lap_offset
    return out


def due_points(
    loop: CarLoop, elapsed_s: float, start_wall_s: float, speed: float = 1.0
) -> list[dict[str, Any]]:
    """Every point of ``loop`` due by ``elapsed_s`` (demo seconds since start).

    Each point is stamped with the wall-clock moment it was due, so samples
    keep their spacing (divided by ``speed``) even when several go out in
    one tick."""
    out: list[dict[str, Any]] = []
    while True:
        if loop.index >= len(loop.points):
            loop.index = 0
            loop.passes += 1
            continue
        due_s = loop.passes * loop.period_s + loop.times_s[loop.index]
        if due_s > elapsed_s:
            return out
        point = loop.points[loop.index]
        out.append(stamp(point, start_wall_s + due_s / speed, loop.passes * loop.laps_per_pass))
        loop.index += 1


async def run_demo(ingestor: Ingestor, path: str, speed: float = 1.0) -> None:
    """Replay forever (until cancelled) at ``speed`` times real time."""
    from ..demo_gen import load_demo

    points = await asyncio.to_thread(load_demo, path)
    if not points:
        log.warning("demo file %s holds no points", path)
        return
    loops = plan_loops(points)
    log.info("demo: %d cars, %d points from %s", len(loops), len(points), path)
    start, start_wall = time.monotonic(), time.time()
    while True:
        elapsed = (time.monotonic() - start) * speed
        batch = [p for loop in loops for p in due_points(loop, elapsed, start_wall, speed)]
        if batch:
            ingestor.ingest_values(batch, "demo")
        await asyncio.sleep(TICK_S)
