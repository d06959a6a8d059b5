"""Race strategy: when to pit.

:mod:`.montecarlo` compares pit strategies over thousands of simulated race
endings (vectorised numpy, seeded). It is pure: the server runs it in the
compute pool, per car when a lap completes and on ``POST /api/strategy``.

The live pit window comes in two steps so the Monte Carlo never delays a
tick: :func:`pit_race_state` (cheap, in the tick's job) builds a car's race
state from what the server knows (its predicted wear, best lap, the cars
around it on the road); :func:`live_pit_windows` (the costly part, a pool
job of its own) simulates it. :func:`live_pit_window` does both at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..compute.batch import BatchResult, TrackTable
from .montecarlo import (
    Comparison,
    RaceState,
    Strategy,
    StrategyResult,
    default_strategies,
    parse_request,
    simulate,
)

if TYPE_CHECKING:
    from ..model.infer import IntelOptions

NEAREST_CARS = 3
"""Cars ahead and behind that the live pit window races against."""

__all__ = [
    "Comparison",
    "RaceState",
    "Strategy",
    "StrategyResult",
    "default_strategies",
    "field_gaps",
    "live_pit_window",
    "live_pit_windows",
    "parse_request",
    "pit_race_state",
    "pit_window",
    "simulate",
]


def field_gaps(
    cid: int, batch: BatchResult, tracks: TrackTable, lap_s: float
) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """Position on the road and time gaps (s) to the nearest cars ahead and behind.

    Estimated from the cars in this tick on the same track: distance covered
    (lap number and lap distance) apart, times this car's lap time. Cars on a
    track without known length are ignored.
    """

    def progress(c: int) -> float:
        st = batch.chassis[c].state
        entry = tracks.get(st.track_id)
        if entry is None or st.lap is None or not math.isfinite(st.last_lapdist_m):
            return math.nan
        return st.lap + st.last_lapdist_m / float(entry[0])

    mine = progress(cid)
    track = batch.chassis[cid].state.track_id
    if not math.isfinite(mine):
        return 1, (), ()
    others = [c for c in batch.chassis if c != cid and batch.chassis[c].state.track_id == track]
    ahead_laps = [progress(c) - mine for c in others]
    gaps = sorted(g * lap_s for g in ahead_laps if math.isfinite(g))
    ahead = [g for g in gaps if g > 0]
    behind = [-g for g in reversed(gaps) if g <= 0]
    return 1 + len(ahead), tuple(ahead[:NEAREST_CARS]), tuple(behind[:NEAREST_CARS])


def pit_race_state(
    cid: int,
    batch: BatchResult,
    tracks: TrackTable,
    prediction: dict[str, Any],
    options: IntelOptions,
) -> RaceState | None:
    """The race state a car that just completed a lap is re-planned from, or None.

    Race length is unknown to telemetry: without ``options.race_laps`` the
    window looks ``options.horizon_laps`` ahead (:func:`pit_window` says so).
    """
    state = batch.chassis[cid].state
    lap, rate = prediction["lap"], prediction["wear_rate_pct_per_lap"]
    lap_s = state.best_lap_time_s
    if rate is None or not math.isfinite(lap_s):
        return None
    race_laps = options.race_laps or lap + options.horizon_laps
    if race_laps <= lap + 1:
        return None
    position, ahead, behind = field_gaps(cid, batch, tracks, lap_s)
    return RaceState(
        lap=lap,
        race_laps=race_laps,
        wear_pct=max(prediction["wear_pct"].values()),
        wear_rate_pct_per_lap=rate,
        base_lap_s=lap_s,
        cliff_pct=options.cliff_pct,
        pit_loss_s=options.pit_loss_s,
        safety_car_prob=options.safety_car_prob,
        position=position,
        gaps_ahead_s=ahead,
        gaps_behind_s=behind,
    )


def pit_window(cid: int, race: RaceState, options: IntelOptions) -> dict[str, Any]:
    """The insight's ``pit_window`` for ``race``: the Monte Carlo, seeded by car and lap
    so the same car and lap always get the same window, whenever it is computed."""
    seed = (cid * 100_003 + race.lap) % 2**32
    result = simulate(race, iterations=options.iterations, seed=seed)
    return _summary(result, options)


def live_pit_windows(
    races: Mapping[int, RaceState], options: IntelOptions
) -> dict[int, dict[str, Any]]:
    """The pit-window pool job: :func:`pit_window` for each car (id -> race state).

    Pure and seeded, so a job whose worker died can be submitted again.
    """
    return {cid: pit_window(cid, race, options) for cid, race in races.items()}


def live_pit_window(
    cid: int,
    batch: BatchResult,
    tracks: TrackTable,
    prediction: dict[str, Any],
    options: IntelOptions,
) -> dict[str, Any] | None:
    """The insight's ``pit_window`` for a car that just completed a lap, or None
    (:func:`pit_race_state` then :func:`pit_window`, in one call)."""
    race = pit_race_state(cid, batch, tracks, prediction, options)
    return None if race is None else pit_window(cid, race, options)


def _summary(result: Comparison, options: IntelOptions) -> dict[str, Any]:
    """The short form an insight carries (the full one is ``POST /api/strategy``'s)."""
    keep = ("name", "pit_lap", "expected_time_s", "expected_position")
    return {
        "recommended_lap": result.recommended.pit_lap,
        "recommended": result.recommended.name,
        "window": list(result.window) if result.window else None,
        "strategies": [{k: s.to_dict()[k] for k in keep} for s in result.strategies],
        "race_laps": result.state.race_laps,
        "race_laps_assumed": options.race_laps is None,
        "position": result.state.position,
        "iterations": result.iterations,
    }
