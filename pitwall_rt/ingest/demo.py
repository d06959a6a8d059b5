"""The demo source: replay demo_data.json in a loop, at real time, as live cars.

Points go through the same ``Ingestor`` as UDP, stamped with the wall clock
when they are sent, so a new user sees cars lapping within seconds. Each
pass of the loop adds the file's lap count to the lap numbers, so laps keep
counting up instead of jumping back to 1.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .pipeline import Ingestor

log = logging.getLogger(__name__)

TICK_S = 0.05  # send cadence; finer than any BATCH_MS


def plan_demo(points: list[dict[str, Any]]) -> tuple[list[float], int, float]:
    """Sample times (s from start), laps per pass and the pass length (s)."""
    times = [float(p["t_s"]) for p in points]
    laps = [int(p["lap"]) for p in points if p.get("lap") is not None]
    lap_span = (max(laps) - min(laps) + 1) if laps else 0
    period = (times[-1] + (times[-1] - times[0]) / max(1, len(times) - 1)) if times else 0.0
    return times, lap_span, period


def stamp(point: dict[str, Any], wall_s: float, lap_offset: int) -> dict[str, Any]:
    """The point as sent live: wall-clock meta_time, lap shifted by the pass."""
    out = {k: v for k, v in point.items() if k != "t_s"}
    out["meta_time"] = wall_s
    if lap_offset and out.get("lap") is not None:
        out["lap"] = int(out["lap"]) + lap_offset
    return out


async def run_demo(ingestor: Ingestor, path: str, speed: float = 1.0) -> None:
    """Replay forever (until cancelled) at ``speed`` times real time."""
    from ..demo_gen import load_demo

    points = await asyncio.to_thread(load_demo, path)
    if not points:
        log.warning("demo file %s holds no points", path)
        return
    times, lap_span, period_s = plan_demo(points)
    log.info("demo: %d points from %s, %.0f s per pass", len(points), path, period_s)
    passes = 0
    while True:
        start_wall = time.time()
        start = time.monotonic()
        i = 0
        while i < len(points):
            elapsed = (time.monotonic() - start) * speed
            j = i
            while j < len(points) and times[j] <= elapsed:
                j += 1
            if j > i:
                wall = time.time()
                batch = [stamp(p, wall, passes * lap_span) for p in points[i:j]]
                ingestor.ingest_values(batch, "demo")
                i = j
            await asyncio.sleep(TICK_S)
        passes += 1
        # Wait out the last sample interval so the next pass starts on time.
        rest = period_s / speed - (time.monotonic() - start)
        await asyncio.sleep(max(0.0, rest))
        log.debug("demo pass %d done in %.1f s", passes, time.time() - start_wall)
