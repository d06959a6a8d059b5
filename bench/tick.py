"""The compute tick job offline: what one pool worker spends on a tick.

Issue 3's budget is 20 ms for a 600 ms tick of 6,000 points. This runs
``compute.job.tick_job`` in this process, single-threaded like one pool
worker, over simulated stints of Barber (the vehicle model the shipped
tire-wear model was trained on): ``--cars`` cars at ``--hz`` samples/s
each, cut into ticks of ``--tick-s`` of sample time and fed in order with
each car's carry passed back, as the server's runner does. It reports the
job's time per tick, and the part of it spent unpickling and pickling the
cars' carries (their state between ticks). The first ticks (model set-up,
the first laps' allocations) are left out.

``--glitch`` spoils one channel of every car, to see what bad data costs:
``lap`` a lap number drawn from 1 to 4 for every sample, ``lapdist`` a lap
distance drawn anywhere on the track, ``brake`` +-20 bar of noise on the
front brake pressure; and ``sparse`` keeps the lap distance, speed and
rpm on one row in five only, as GR Cup cars log them (105, 104 and 105 of
516 timestamps in tests/data/grcup).

    python bench/tick.py [--cars 20] [--hz 500] [--tick-s 0.6] [--ticks 60]
                         [--glitch lap|lapdist|brake|sparse]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import table

from pitwall_rt.compute import job, track_table
from pitwall_rt.demo_gen import DEFAULT_TRACKS_PATH
from pitwall_rt.model import infer, train
from pitwall_rt.schema import concat_rows, take_rows
from pitwall_rt.tracks import load_tracks

WARM_TICKS = 5


def stints(cars: int, hz: float, laps: int) -> list[np.ndarray]:
    """One simulated stint per car (different seeds), as stored rows."""
    barber = load_tracks(DEFAULT_TRACKS_PATH)["barber"]
    out = []
    for car in range(cars):
        spec = train.StintSpec("barber", "smooth", 25.0, 0.98, laps, hz, 0, car)
        stint, _ = train.simulate(spec, barber)
        rows = train.telemetry_rows(spec, stint)
        rows["chassis"] = car + 1
        out.append(rows)
    return out


def spoil(cars: list[np.ndarray], glitch: str, seed: int = 0) -> None:
    """Replace or disturb one channel of every car in place (see the module docstring)."""
    rng = np.random.default_rng(seed)
    length_m = load_tracks(DEFAULT_TRACKS_PATH)["barber"].length_m
    for rows in cars:
        n = len(rows)
        if glitch == "lap":
            rows["lap"] = rng.integers(1, 5, n)
        elif glitch == "lapdist":
            rows["lapdist_m"] = rng.uniform(0.0, length_m, n)
        elif glitch == "sparse":
            for name in ("lapdist_m", "speed_kmh", "rpm"):
                rows[name][np.arange(n) % 5 != 0] = np.nan
        elif glitch == "brake":
            rows["pbrake_f"] = np.clip(rows["pbrake_f"] + rng.uniform(-20.0, 20.0, n), -10, 500)


def ticks(cars: list[np.ndarray], tick_s: float, count: int) -> list[np.ndarray]:
    """The stints cut into ticks of ``tick_s`` of sample time, all cars
    interleaved in time order, as the ring buffer hands them to the runner."""
    start = max(float(rows["t"][0]) for rows in cars)
    out = []
    for k in range(count):
        lo, hi = start + k * tick_s, start + (k + 1) * tick_s
        tick = concat_rows([take_rows(r, (r["t"] >= lo) & (r["t"] < hi)) for r in cars])
        out.append(take_rows(tick, np.argsort(tick["t"], kind="stable")))
    return out


class CarryTimer:
    """Wraps ``job.pack_carry``/``unpack_carry`` to time them per tick."""

    def __init__(self) -> None:
        self.pack_s = self.unpack_s = 0.0
        self.sizes: list[int] = []
        self._pack, self._unpack = job.pack_carry, job.unpack_carry
        job.pack_carry = self._timed(self._pack, "pack_s")  # type: ignore[assignment]
        job.unpack_carry = self._timed(self._unpack, "unpack_s")  # type: ignore[assignment]

    def _timed(self, fn: Callable[..., Any], slot: str) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            started = time.perf_counter()
            out = fn(*args)
            setattr(self, slot, getattr(self, slot) + time.perf_counter() - started)
            if slot == "pack_s":
                self.sizes.append(len(out))
            return out

        return timed

    def take(self) -> tuple[float, float]:
        spent = (self.unpack_s, self.pack_s)
        self.pack_s = self.unpack_s = 0.0
        return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cars", type=int, default=20)
    parser.add_argument("--hz", type=float, default=500.0, help="samples per second per car")
    parser.add_argument("--tick-s", type=float, default=0.6)
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--glitch", choices=["lap", "lapdist", "brake", "sparse"])
    args = parser.parse_args()
    laps = max(1, int(args.ticks * args.tick_s / 80.0) + 1)
    cars = stints(args.cars, args.hz, laps)
    if args.glitch:
        spoil(cars, args.glitch)
    batches = ticks(cars, args.tick_s, args.ticks)
    tracks = track_table({1: load_tracks(DEFAULT_TRACKS_PATH)["barber"]})
    options = infer.IntelOptions()
    timer = CarryTimer()
    carries: dict[int, bytes] = {}
    job_ms, carry_ms = [], []
    for k, rows in enumerate(batches):
        started = time.perf_counter()
        out = job.tick_job(rows, tracks, carries, options)
        elapsed = time.perf_counter() - started
        unpack_s, pack_s = timer.take()
        carries = {cid: car.carry for cid, car in out.cars.items()}
        if k >= WARM_TICKS:
            job_ms.append(elapsed * 1000.0)
            carry_ms.append((unpack_s + pack_s) * 1000.0)
    job_a, carry_a = np.array(job_ms), np.array(carry_ms)
    print(
        table(
            f"tick_job, one worker ({args.cars} cars x {args.hz:g} Hz, "
            f"{args.tick_s:g} s ticks, {len(job_ms)} ticks measured"
            + (f", {args.glitch} spoilt)" if args.glitch else ")"),
            [
                "rows/tick",
                "job ms p50 / p90 / max",
                "carries unpickle + pickle ms p50",
                "share of the job",
                "carry bytes/car p50",
            ],
            [
                [
                    f"{np.median([len(b) for b in batches]):,.0f}",
                    f"{np.median(job_a):.1f} / {np.percentile(job_a, 90):.1f} / {job_a.max():.1f}",
                    f"{np.median(carry_a):.2f}",
                    f"{np.median(carry_a / job_a):.0%}",
                    f"{np.median(timer.sizes):,.0f}",
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
