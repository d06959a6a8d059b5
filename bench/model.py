"""Race intelligence speed: tire-wear inference and the pit-window Monte Carlo.

Measures, in this process, single-threaded like one pool worker:

* onnxruntime inference of the shipped ``tire_wear.onnx``: latency p50/p99
  at batch 1 (one car completing a lap), throughput at batch 1000 (a big
  field's windows in one tick), and one lap's explanation (1 + 25 occlusion
  rows in one call);
* the Monte Carlo: 4 strategies x 10,000 iterations x 30 laps, and the
  default comparison (no stop + one stop on each of 12 window laps);
* one whole ``run_tick`` for 6 cars completing a lap: timing, features,
  inference, explanations, fingerprint and a pit window each (2,000
  iterations: the live setting, ``IntelOptions.iterations``).

    python bench/model.py [--runs 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import table

from pitwall_rt.model import explain
from pitwall_rt.model.features import N_FEATURES
from pitwall_rt.model.infer import WearModel
from pitwall_rt.strategy import RaceState, Strategy, simulate

RACE = RaceState(
    lap=10,
    race_laps=40,
    wear_pct=30.0,
    wear_rate_pct_per_lap=2.2,
    base_lap_s=100.0,
    position=5,
    gaps_ahead_s=(1.5, 4.0),
    gaps_behind_s=(2.0, 6.0),
)


def timings_ms(fn: Callable[[], object], runs: int, warm: int = 20) -> np.ndarray:
    for _ in range(warm):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - start) * 1000.0
    return out


def row(what: str, ms: np.ndarray, note: str = "") -> list[str]:
    p50, p99 = np.percentile(ms, (50, 99))
    return [what, _fmt(p50), _fmt(p99), note]


def _fmt(ms: float) -> str:
    return f"{ms * 1000:.0f} us" if ms < 1.0 else f"{ms:.1f} ms"


def inference_rows(runs: int) -> list[list[str]]:
    model = WearModel()
    rng = np.random.default_rng(0)
    base = model.baseline_lap
    one = (base * rng.uniform(0.8, 1.2, (1, N_FEATURES))).astype(np.float32)
    many = (base * rng.uniform(0.8, 1.2, (1000, N_FEATURES))).astype(np.float32)
    single = timings_ms(lambda: model.predict(one), runs)
    bulk = timings_ms(lambda: model.predict(many), max(20, runs // 40))
    per_s = 1000.0 / np.median(bulk) * 1000.0
    why = timings_ms(lambda: explain.explain(model.predict, one, base[None]), runs // 4)
    return [
        row("inference, batch 1", single),
        row("inference, batch 1000", bulk, f"{per_s:,.0f} windows/s"),
        row("explanation, 1 lap (26 rows, one call)", why),
    ]


def montecarlo_rows(runs: int) -> list[list[str]]:
    four = [Strategy("no_stop"), Strategy("early", (15,)), Strategy("mid", (20,))]
    four.append(Strategy("late", (25,)))
    state = RaceState(**{**RACE.__dict__, "race_laps": RACE.lap + 30})
    mc4 = timings_ms(lambda: simulate(state, four, 10_000), max(10, runs // 50), warm=3)
    full = simulate(state, iterations=10_000)
    n = len(full.strategies)
    mcn = timings_ms(lambda: simulate(state, iterations=10_000), max(10, runs // 100), warm=2)
    return [
        row("Monte Carlo, 4 strategies x 10,000 x 30 laps", mc4),
        row(f"Monte Carlo, {n} strategies x 10,000 x 30 laps", mcn, "default window"),
    ]


def tick_rows(runs: int) -> list[list[str]]:
    """One pool tick in which 6 demo-like cars each complete a lap."""
    from pitwall_rt.compute import track_table
    from pitwall_rt.demo_gen import DEFAULT_TRACKS_PATH
    from pitwall_rt.model import infer, train
    from pitwall_rt.tracks import load_tracks

    track = load_tracks(DEFAULT_TRACKS_PATH)["barber"]
    table_ = track_table({1: track})
    parts: list[np.ndarray] = []
    for car in range(1, 7):
        spec = train.StintSpec("barber", "smooth", 30.0, 0.98, 6, 20.0, 0, car)
        rows = train.telemetry_rows(spec, train.simulate(spec, track)[0])
        rows["chassis"] = car
        parts.append(rows)
    rows = np.concatenate(parts)
    lap, near_end = rows["lap"], rows["lapdist_m"] > track.length_m - 150.0
    history = (lap < 5) | ((lap == 5) & ~near_end)  # four laps and most of the fifth
    warm = infer.run_tick(rows[history], table_, {}, {})
    tick = rows[((lap == 5) & near_end) | ((lap == 6) & (rows["lapdist_m"] < 50.0))]
    done = infer.run_tick(tick, table_, warm.batch.states, warm.intel)
    windows = sum(1 for p in done.pieces.values() if p.get("pit_window"))
    ms = timings_ms(
        lambda: infer.run_tick(tick, table_, warm.batch.states, warm.intel), max(5, runs // 200), 2
    )
    return [row("run_tick, 6 cars completing a lap", ms, f"{windows} pit windows of 2,000 iter.")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    rows = inference_rows(args.runs) + montecarlo_rows(args.runs) + tick_rows(args.runs)
    print(table("Race intelligence (one process)", ["what", "p50", "p99", "note"], rows))


if __name__ == "__main__":
    main()
