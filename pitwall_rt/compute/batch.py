"""One tick of compute: every new row of every car in, new states and insight pieces out.

:func:`compute_batch` is the function the process pool runs once per
``BATCH_MS`` tick. Its arguments and result are plain picklable values
(a structured numpy array, small dataclasses, dicts), it imports nothing
heavier than numpy, and it is pure: the states passed in are not modified, so
a batch whose worker died can be submitted again with the same arguments.

Contract for the caller:

* pass the rows of the tick (``POINT_DTYPE``, any order, all cars) and the
  states of the cars in it; a car without a state starts fresh;
* keep the returned ``states`` as the cars' states and pass them to the next
  call: ticks must run one after another, never two at once with the same
  states. Rows of ticks that queued while one was computing can be
  concatenated into one call: the results are the same however the stream
  is cut (up to float rounding in sums);
* ``tracks`` maps a row's track id to ``(length_m, sector_starts_m)``; a car
  whose track is unknown gets lap-number timing and no sectors;
* pass ``windows`` (per-car :class:`~pitwall_rt.model.features.WindowCarry`,
  may be empty) to also get each car's completed lap/sector feature windows
  for the tire-wear model; keep the returned ``window_carry`` like the state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model import features as wf  # a module object: safe in the compute <-> model cycle
from ..schema import take_rows
from .aggregate import json_float
from .laps import (
    ChassisState,
    FreshRows,
    LapRecord,
    SectorRecord,
    TrackGeometry,
    TrackShape,
    advance_rows,
    fresh_rows,
)
from .physics import CORNERS

TrackTable = Mapping[int, tuple[float, np.ndarray]]
"""track id (``StringTable`` int) -> (lap length m, sector start distances m)."""


def track_table(tracks: Mapping[int, TrackShape]) -> dict[int, tuple[float, np.ndarray]]:
    """Build the small picklable track table from ``tracks.Track`` objects keyed by track id."""
    return {
        tid: (float(tr.length_m), np.asarray(tr.sector_starts_m, dtype=np.float64))
        for tid, tr in tracks.items()
    }


@dataclass
class ChassisResult:
    """What one tick produced for one car (ids are ``StringTable`` ints)."""

    chassis: int
    state: ChassisState
    insight: dict[str, Any]
    laps: list[LapRecord]
    sectors: list[SectorRecord]
    rows: int
    late: int
    duplicates: int
    windows: list[wf.Window] = field(default_factory=list)
    window_carry: wf.WindowCarry | None = None


@dataclass
class BatchResult:
    """Per-car results of one tick, and totals for health counters."""

    chassis: dict[int, ChassisResult] = field(default_factory=dict)
    rows: int = 0
    late: int = 0
    duplicates: int = 0
    lap_glitches: int = 0

    @property
    def states(self) -> dict[int, ChassisState]:
        return {cid: res.state for cid, res in self.chassis.items()}


def compute_batch(
    rows: np.ndarray,
    tracks: TrackTable,
    states: Mapping[int, ChassisState],
    windows: Mapping[int, wf.WindowCarry] | None = None,
) -> BatchResult:
    """Run physics, lap timing and aggregation for one tick's rows, grouped per car.

    Rows are grouped by chassis and sorted by sample time with one stable
    ``lexsort`` (equal times keep arrival order, so the first arrival wins
    deduplication); late and duplicate rows are dropped and the physics
    computed for all cars in one pass (:func:`laps.fresh_rows`); then one
    :func:`laps.advance_rows` per car, and with ``windows`` one
    :func:`~pitwall_rt.model.features.advance_windows` on the same rows and
    physics.
    """
    result = BatchResult(rows=len(rows))
    if len(rows) == 0:
        return result
    ordered = take_rows(rows, np.lexsort((rows["t"], rows["chassis"])))
    chassis = ordered["chassis"]
    starts = np.flatnonzero(np.concatenate(([True], chassis[1:] != chassis[:-1])))
    per_car = [
        (int(car_rows["chassis"][0]), car_rows) for car_rows in np.split(ordered, starts[1:])
    ]
    begun = [_state_for(states.get(cid), car_rows) for cid, car_rows in per_car]
    kept = fresh_rows(begun, ordered, starts, wf.sample_columns if windows is not None else None)
    for (cid, car_rows), state, fresh in zip(per_car, begun, kept, strict=True):
        geom = _geometry(tracks, state.track_id)
        new_state, sectors, laps, fresh = advance_rows(state, car_rows, geom, fresh)
        late = new_state.late_rows - state.late_rows
        dups = new_state.duplicate_rows - state.duplicate_rows
        carry, done = _feature_windows(
            windows, states.get(cid), state, (car_rows, fresh), (sectors, laps)
        )
        result.chassis[cid] = ChassisResult(
            chassis=cid,
            state=new_state,
            insight=insight_piece(new_state),
            laps=laps,
            sectors=sectors,
            rows=len(car_rows),
            late=late,
            duplicates=dups,
            windows=done,
            window_carry=carry,
        )
        result.late += late
        result.duplicates += dups
        result.lap_glitches += new_state.lap_glitches - state.lap_glitches
    return result


def _feature_windows(
    carries: Mapping[int, wf.WindowCarry] | None,
    prev: ChassisState | None,
    state: ChassisState,
    tick: tuple[np.ndarray, FreshRows],
    done: tuple[list[SectorRecord], list[LapRecord]],
) -> tuple[wf.WindowCarry | None, list[wf.Window]]:
    """The car's completed feature windows, when the caller asked (``carries`` not None).

    A car that moved to another known track starts a new stint of windows, as
    :func:`_state_for` starts a new state. The windows reuse the rows and
    physics lap timing kept (``fresh``) whenever the carry and the state agree.
    """
    if carries is None:
        return None, []
    car_rows, fresh = tick
    moved = prev is not None and prev.track_id not in (0, state.track_id)
    old = None if moved else carries.get(int(car_rows["chassis"][0]))
    return wf.advance_windows(old or wf.WindowCarry(), car_rows, *done, fresh=fresh)


def _state_for(state: ChassisState | None, car_rows: np.ndarray) -> ChassisState:
    """The car's state, fresh when it is new or has moved to another known track.

    Track id 0 is "unknown" and never changes the state's track.
    """
    known = car_rows["track"][car_rows["track"] != 0]
    track_id = int(known[-1]) if len(known) else 0
    if state is None:
        return ChassisState(track_id=track_id)
    if track_id and track_id != state.track_id:
        if state.track_id:
            return ChassisState(track_id=track_id)  # new session elsewhere: new stint
        fresh = state.copy()
        fresh.track_id = track_id
        return fresh
    return state


def _geometry(tracks: TrackTable, track_id: int) -> TrackGeometry | None:
    entry = tracks.get(track_id) if track_id else None
    if entry is None:
        return None
    length_m, starts_m = entry
    return TrackGeometry(float(length_m), np.asarray(starts_m, dtype=np.float64))


def insight_piece(state: ChassisState) -> dict[str, Any]:
    """The compute part of a car's ``insight_update`` entry (JSON-ready, NaN -> null).

    The caller adds ``chassis`` and ``track`` names. ``tire_stress`` is the
    stint total per tire in G*m (see ``physics``); ``tire_stress_lap`` the
    lap in progress; ``tire_load`` the latest normalised load (1.0 = static).
    """
    return {
        "t": json_float(state.last_t),
        "lap": state.lap,
        "sector": state.sector if state.sector >= 0 else None,
        "lap_partial": bool(np.isnan(state.lap_start_t)),
        "laps_completed": state.laps_completed,
        "last_lap_time_s": json_float(state.last_lap_time_s),
        "best_lap_time_s": json_float(state.best_lap_time_s),
        "tire_stress": state.stint_agg.tire_stress_dict(),
        "tire_stress_lap": state.lap_agg.tire_stress_dict(),
        "tire_load": {c: json_float(x) for c, x in zip(CORNERS, state.last_load_norm, strict=True)},
        "stint": state.stint_agg.to_dict(),
        "sector_stats": [
            {"sector": k, **state.sector_rolling[k].to_dict()} for k in sorted(state.sector_rolling)
        ],
        "late_rows": state.late_rows,
        "duplicate_rows": state.duplicate_rows,
        "lap_glitches": state.lap_glitches,
    }
