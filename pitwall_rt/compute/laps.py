"""Lap and sector completion for one car, from its stream of samples.

Call :func:`advance` with a car's :class:`ChassisState` and the rows that
arrived for it (sorted by sample time ``t``); it returns the new state and
the sectors and laps completed by those rows. The state is a small plain
dataclass, so it can travel to a worker process and back every batch.

Policy for imperfect streams:

* times come from sample time ``t`` (``meta_time``), never from arrival:
  a boundary's crossing time is interpolated linearly in ``lapdist_m``
  between the samples either side of it, so a replay at any rate gives the
  same lap times;
* a row with the ``t`` of one already processed is a duplicate, one older
  than the last processed ``t`` is late: both are dropped and counted (a
  late row cannot change a lap already completed);
* a lap completes when the lap number increases; when a sample has no lap
  number, when ``lapdist_m`` drops by more than half the track length;
  a lap number that goes down is a reset (the lap in progress is dropped);
  ``schema.LAP_SENTINEL`` (a GR Cup logger's "unknown") is no lap number;
* a distance that goes back over the line (up by more than half the track
  within ``physics.GAP_S`` of the reading before: a noisy position near the
  line, a game's rewind) is a glitch: sectors wait until it comes back over
  the line, and that crossing is no new lap (before, a reading a metre
  behind the line completed every sector at once and the next one a lap);
* no lap is shorter than ``MIN_LAP_S``: sooner after the crossing or reset
  that began the lap in progress, a lap number that changes relabels it (as
  a partial lap: a rewind in a game can't make a 3 s lap) and a distance
  wrap is ignored, both counted as glitches (a counter flapping every
  sample would otherwise end or drop a lap per sample, each costing a
  record, a feature window and a prediction);
* a lap containing an interval over ``physics.GAP_S`` is still completed and
  flagged ``has_gap``; the first lap seen (car joined mid-lap) has no lap
  time and is flagged ``partial``;
* sectors follow ``lapdist_m`` and only move forward within a lap: the last
  sector ends at the lap crossing, and a sector skipped by missing points is
  completed with an interpolated time (or NaN when it cannot be placed).

Vectorised first (sector lookup, wraps, candidate boundaries, per-run
partials), then one Python step per candidate boundary, never per sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np

from ..row_fields import FieldSource, RowFields
from ..schema import LAP_SENTINEL, take_rows
from ..shallow import shallow_copy
from ..tracks import OVERSHOOT_TOLERANCE_M
from .aggregate import (
    EMPTY,
    Partial,
    PartialColumns,
    SectorRolling,
    json_float,
    merge,
    partial_columns,
    segment_partials,
)
from .physics import GAP_S, PhysicsCarry, PointPhysics, point_physics, point_physics_runs

NAN: Final = float("nan")

MIN_LAP_S: Final = 2.0
"""No lap is shorter. This soon after the crossing or reset that began the
lap in progress, a new lap number relabels it (its time becomes unknown: a
partial lap, never a wrong time) and a distance wrap is ignored; both count
in ``lap_glitches``. Real laps take ten seconds or more; the shortest any
bench or test drives is 4 s."""

LAP_WRAP_MATCH_S: Final = 5.0
"""A lap-number increase within this many seconds after a ``lapdist_m`` wrap
is the same crossing: the lap counter often trails the distance reset."""


class TrackShape(Protocol):
    """What lap timing needs of a track; ``tracks.Track`` fits."""

    @property
    def length_m(self) -> float: ...

    @property
    def sector_starts_m(self) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class TrackGeometry:
    """Lap length (m) and sector start distances (m, first is 0): all timing needs."""

    length_m: float
    sector_starts_m: np.ndarray


def sector_of(track: TrackShape, lapdist_m: np.ndarray) -> np.ndarray:
    """0-based sector index per lap distance (m); -1 for NaN, negative or far past the line.

    Same rule as ``tracks.sector_index``: up to ``OVERSHOOT_TOLERANCE_M`` past
    ``length_m`` still counts as the last sector (lap-trigger lag).
    """
    d = np.asarray(lapdist_m, dtype=np.float64)
    idx = np.searchsorted(track.sector_starts_m, d, side="right") - 1
    bad = ~(d >= 0.0) | (d > track.length_m + OVERSHOOT_TOLERANCE_M)
    return np.where(bad, -1, idx)


@dataclass(frozen=True)
class SectorRecord:
    """A completed sector: ``time_s`` NaN when its start or end could not be placed."""

    lap: int
    sector: int
    time_s: float
    start_t: float
    end_t: float
    aggregates: Partial

    def to_dict(self) -> dict[str, Any]:
        return {
            "lap": self.lap,
            "sector": self.sector,
            "time_s": json_float(self.time_s),
            "start_t": json_float(self.start_t),
            "end_t": json_float(self.end_t),
            **self.aggregates.to_dict(),
        }


@dataclass(frozen=True)
class LapRecord:
    """A completed lap. Times are epoch seconds / seconds of sample time."""

    lap: int
    lap_time_s: float
    sector_times_s: list[float]
    start_t: float
    end_t: float
    partial: bool
    has_gap: bool
    aggregates: Partial

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for ``GET /api/laps/{chassis}`` (NaN -> null)."""
        return {
            "lap": self.lap,
            "lap_time_s": json_float(self.lap_time_s),
            "sector_times_s": [json_float(x) for x in self.sector_times_s],
            "start_t": json_float(self.start_t),
            "end_t": json_float(self.end_t),
            "partial": self.partial,
            "has_gap": self.has_gap,
            **self.aggregates.to_dict(),
        }


@dataclass
class ChassisState:
    """Everything lap timing and aggregation remember about one car between batches.

    ``lap`` is the lap in progress (None before any lap number or wrap);
    ``sector`` its sector (-1 unknown); ``lap_start_t`` / ``sector_start_t``
    the crossing times that began them (NaN when not seen: partial).
    ``last_*`` describe the previous sample(s) so a boundary falling between
    two batches is found and interpolated exactly as within one batch.
    """

    track_id: int = 0
    last_t: float = NAN
    last_lap_raw: float = NAN
    last_lapdist_m: float = NAN
    last_lapdist_t: float = NAN
    last_sector: int = -1  # the sector of last_lapdist_m
    physics: PhysicsCarry = field(default_factory=PhysicsCarry)
    last_load_norm: tuple[float, ...] = (NAN, NAN, NAN, NAN)
    lap: int | None = None
    lap_start_t: float = NAN
    lap_first_t: float = NAN
    sector: int = -1
    sector_start_t: float = NAN
    sector_times_s: tuple[float, ...] = ()
    pending_wrap_t: float = NAN
    lap_agg: Partial = EMPTY
    sector_agg: Partial = EMPTY
    stint_agg: Partial = EMPTY
    sector_rolling: dict[int, SectorRolling] = field(default_factory=dict)
    laps_completed: int = 0
    last_lap_time_s: float = NAN
    best_lap_time_s: float = NAN
    late_rows: int = 0
    duplicate_rows: int = 0
    lap_glitches: int = 0
    lap_from_event: bool = False  # the lap in progress began at a crossing or a reset
    behind_line: bool = False  # the distance went back over the line and has not come back

    def copy(self) -> ChassisState:
        """An independent copy (the one mutable field, ``sector_rolling``, is copied)."""
        return shallow_copy(self, sector_rolling=dict(self.sector_rolling))


def _ffill_prev_runs(values: np.ndarray, run_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each sample, the index of the last finite value strictly before it
    in its own run (``run_start``: each sample's run's first index), clipped
    to 0, and whether there is one; several cars' runs in one pass."""
    idx = np.where(np.isfinite(values), np.arange(len(values)), -1)
    idx = np.maximum.accumulate(idx)
    prev = np.empty_like(idx)
    prev[:1] = -1
    prev[1:] = idx[:-1]
    has = prev >= run_start
    return np.maximum(prev, 0), has


PrevValues = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Per sample: the last finite ``lapdist_m`` before it, that sample's ``t``, and
the last finite lap number before it, carried from the car's state at its
first samples (:func:`fresh_rows`)."""


def _prev_values(
    states: Sequence[ChassisState], kept: FieldSource, starts: np.ndarray, counts: np.ndarray
) -> PrevValues:
    """:data:`PrevValues` for several cars' kept rows (car ``k`` from ``starts[k]``)."""
    t, d, lap = kept["t"], kept["lapdist_m"], kept["lap"]
    run_start = np.repeat(starts, counts)
    d_at, d_has = _ffill_prev_runs(d, run_start)
    lap_at, lap_has = _ffill_prev_runs(lap, run_start)
    last_d = np.repeat([st.last_lapdist_m for st in states], counts)
    last_d_t = np.repeat([st.last_lapdist_t for st in states], counts)
    last_lap = np.repeat([st.last_lap_raw for st in states], counts)
    return (
        np.where(d_has, d[d_at], last_d),
        np.where(d_has, t[d_at], last_d_t),
        np.where(lap_has, lap[lap_at], last_lap),
    )


@dataclass(frozen=True)
class _Stream:
    """One batch of a car's rows, with what boundary detection needs per sample."""

    t: np.ndarray
    lap: np.ndarray
    d: np.ndarray
    sector: np.ndarray
    d_prev: np.ndarray
    d_prev_t: np.ndarray
    wrap: np.ndarray
    unwrap: np.ndarray
    gap: np.ndarray
    candidate: np.ndarray


def _prepare(
    st: ChassisState,
    rows: FieldSource,
    phys: PointPhysics,
    track: TrackShape | None,
    prev: PrevValues,
) -> _Stream:
    t, lap, d = rows["t"], rows["lap"], rows["lapdist_m"]
    sector = sector_of(track, d) if track is not None else np.full(len(t), -1)
    d_prev, d_prev_t, lap_prev = prev
    half_lap_m = track.length_m / 2.0 if track is not None else np.inf  # no track: no wraps
    wrap = d < d_prev - half_lap_m
    # Back over the line: no car drives half a lap between two close readings.
    unwrap = d > d_prev + half_lap_m
    if unwrap.any():
        unwrap &= t - d_prev_t <= GAP_S
    lap_change = np.isfinite(lap) & (lap != lap_prev)
    sector_change = sector != _last_sector(track, d, d_prev, sector, st.last_sector)
    candidate = wrap | unwrap | lap_change | sector_change
    return _Stream(t, lap, d, sector, d_prev, d_prev_t, wrap, unwrap, phys.gap, candidate)


def _last_sector(
    track: TrackShape | None, d: np.ndarray, d_prev: np.ndarray, sector: np.ndarray, carried: int
) -> np.ndarray:
    """The sector of each row's last distance before it (``carried``, the
    state's, before the first row); a row with no distance gets its own
    sector (-1) back, so it changes none.

    GR Cup cars log the distance at a fifth of the rate of their
    accelerometers (105 of 516 timestamps in tests/data/grcup). Compared
    with the row just before, every gap was two sector changes (into -1 and
    back) for the walker to step through doing nothing: six times the cost."""
    if track is None:
        return sector
    if not np.isnan(d).any():  # usually: the row before's, and the carried one for the first
        last = np.empty_like(sector)
        last[1:] = sector[:-1]
        last[:1] = carried
        return last
    return np.where(np.isnan(d), sector, sector_of(track, d_prev))


@dataclass(frozen=True, eq=False)
class FreshRows:
    """The rows of one car's tick that lap timing keeps, with their physics.

    ``rows`` are sorted by ``t``, late and duplicate rows dropped (module
    docstring; ``late`` and ``duplicates`` count them); ``physics`` is
    :func:`~.physics.point_physics` of them, computed from ``carry_before``
    (the state's carry, whose ``last_t`` decided what is late) and ending in
    ``carry_after``. Feature extraction reuses them instead of sorting,
    deduplicating and computing the physics again; it may only when its own
    carry equals ``carry_before`` (:meth:`follows`).
    """

    rows: np.ndarray
    physics: PointPhysics
    late: int
    duplicates: int
    last_t_before: float
    carry_before: PhysicsCarry
    carry_after: PhysicsCarry
    columns: PartialColumns
    """The rows' :func:`~.aggregate.partial_columns`."""
    prev: PrevValues
    """What lap timing looks back to before each row."""
    fields: FieldSource
    """``rows``' fields, read from the tick's contiguous copies (:mod:`~pitwall_rt.row_fields`)."""
    extra: tuple[np.ndarray, ...] = ()
    """Per-sample arrays ``fresh_rows``' ``extra`` made for all cars at once, cut like ``rows``."""

    def follows(self, last_t: float, carry: PhysicsCarry) -> bool:
        """Whether a consumer whose last sample was ``last_t`` and whose physics
        carry is ``carry`` would select these rows and compute this physics."""
        return _same_float(last_t, self.last_t_before) and _same_carry(carry, self.carry_before)


def _same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _same_carry(a: PhysicsCarry, b: PhysicsCarry) -> bool:
    return (
        _same_float(a.last_t, b.last_t)
        and a.braking == b.braking
        and a.cornering == b.cornering
        and all(map(_same_float, a.speed, b.speed))
    )


SampleColumns = Callable[[FieldSource, PointPhysics], tuple[np.ndarray, ...]]
"""An element-wise function of samples and their physics, for :func:`fresh_rows`' ``extra``."""


def fresh_rows(
    states: Sequence[ChassisState],
    rows: np.ndarray,
    starts: np.ndarray,
    extra: SampleColumns | None = None,
) -> list[FreshRows]:
    """Drop late and duplicate rows of several cars at once, and compute the physics.

    Car ``k`` (state ``states[k]``) has the rows ``rows[starts[k]:starts[k + 1]]``
    (the last car to the end), non-empty and sorted by ``t`` as a stable sort
    does (NaN last). A row is late when older than the state's last ``t``, a
    duplicate when its ``t`` equals one already kept (first arrival wins);
    rows without a ``t`` are dropped with the duplicates.
    """
    t = rows["t"]
    counts = np.diff(np.append(starts, len(t)))
    last_t = np.repeat([st.last_t for st in states], counts)
    late = t < last_t
    keep = np.isfinite(t) & ~(t <= last_t)
    keep[1:] &= t[1:] != t[:-1]  # first arrival of an equal t wins (lexsort is stable)
    # a car's first row repeats no earlier row of its own: undo the test against the car before
    keep[starts[1:]] = np.isfinite(t[starts[1:]]) & ~(t[starts[1:]] <= last_t[starts[1:]])
    n_late = np.add.reduceat(late, starts, dtype=np.intp).tolist()
    n_kept = np.add.reduceat(keep, starts, dtype=np.intp)
    # Usually every row is kept: then the rows are read where they are, not copied.
    kept = rows if n_kept.sum() == len(rows) else take_rows(rows, keep)
    kept_starts = np.concatenate(([0], np.cumsum(n_kept)[:-1]))
    carries = [st.physics for st in states]
    fields = RowFields(kept)  # each pass below reads the same few fields of every row
    lap = fields["lap"]
    if (lap == LAP_SENTINEL).any():  # for every reader of the tick's lap numbers at once
        fields.set("lap", np.where(lap == LAP_SENTINEL, np.nan, lap))
    phys, after = point_physics_runs(fields, kept_starts, carries)
    sums, maxes = partial_columns(fields, phys)
    d_prev, d_prev_t, lap_prev = _prev_values(states, fields, kept_starts, n_kept)
    more = extra(fields, phys) if extra is not None else ()
    bounds = np.append(kept_starts, len(kept)).tolist()
    out = []
    for k, st in enumerate(states):
        lo, hi = bounds[k], bounds[k + 1]
        out.append(
            FreshRows(
                rows=kept[lo:hi],
                physics=phys.part(lo, hi),
                late=n_late[k],
                duplicates=int(counts[k]) - n_late[k] - (hi - lo),
                last_t_before=st.last_t,
                carry_before=st.physics,
                carry_after=after[k],
                columns=(sums[lo:hi], maxes[lo:hi]),
                prev=(d_prev[lo:hi], d_prev_t[lo:hi], lap_prev[lo:hi]),
                fields=fields.part(lo, hi),
                extra=tuple(column[lo:hi] for column in more),
            )
        )
    return out


def advance(
    state: ChassisState, rows: np.ndarray, track: TrackShape | None
) -> tuple[ChassisState, list[SectorRecord], list[LapRecord]]:
    """Feed one car's new rows (``POINT_DTYPE``, sorted by ``t``) through lap timing.

    Pure: ``state`` is not modified. ``track`` None (unknown track) means
    lap-number changes only and no sectors. Returns ``(new_state,
    completed_sectors, completed_laps)`` in time order.
    """
    st, sectors, laps, _ = advance_rows(state, rows, track)
    return st, sectors, laps


def advance_rows(
    state: ChassisState,
    rows: np.ndarray,
    track: TrackShape | None,
    fresh: FreshRows | None = None,
) -> tuple[ChassisState, list[SectorRecord], list[LapRecord], FreshRows]:
    """:func:`advance`, also returning the rows it kept and their physics
    (:class:`FreshRows`) for the feature windows of the same tick.

    ``fresh``, when given, is :func:`fresh_rows` of ``rows`` for ``state``
    (computed with other cars' in one pass): it must follow ``state``.
    """
    if fresh is None:
        fresh = _fresh_for(state, rows)
    elif not fresh.follows(state.last_t, state.physics):
        raise ValueError("fresh rows were selected for another state")
    st = state.copy()
    st.late_rows += fresh.late
    st.duplicate_rows += fresh.duplicates
    rows, phys = fresh.rows, fresh.physics
    if len(rows) == 0:
        return st, [], [], fresh
    stream = _prepare(st, fresh.fields, phys, track, fresh.prev)
    if math.isnan(st.lap_first_t):
        st.lap_first_t = float(stream.t[0])
    # Sorted and unique already: no union1d (a sort) for one leading 0.
    candidates = np.flatnonzero(stream.candidate)
    starts = candidates if len(candidates) and candidates[0] == 0 else np.append(0, candidates)
    walker = _Walker(st, stream, track)
    parts = segment_partials(rows, phys, starts, fresh.columns)
    for start, part in zip(starts, parts, strict=True):
        if stream.candidate[start]:
            walker.event(int(start))
        walker.absorb(part)
    _remember_last(st, stream, phys, fresh.carry_after)
    return st, walker.sectors, walker.laps, fresh


def _fresh_for(state: ChassisState, rows: np.ndarray) -> FreshRows:
    """:func:`fresh_rows` of one car's rows in any order."""
    t = rows["t"]
    if len(t) == 0:
        carry = state.physics
        phys, _ = point_physics(rows, carry)
        columns = partial_columns(rows, phys)
        prev = _prev_values([state], rows, np.zeros(1, dtype=np.intp), np.zeros(1, dtype=np.intp))
        return FreshRows(rows, phys, 0, 0, state.last_t, carry, carry, columns, prev, rows)
    if len(t) > 1 and not bool(np.all(t[1:] >= t[:-1])):
        rows = rows[np.argsort(t, kind="stable")]
    return fresh_rows([state], rows, np.zeros(1, dtype=np.intp))[0]


def _remember_last(st: ChassisState, s: _Stream, phys: PointPhysics, carry: PhysicsCarry) -> None:
    st.last_t = float(s.t[-1])
    st.physics = carry
    st.last_load_norm = tuple(float(x) for x in phys.load_norm[-1])
    if (i := last_finite(s.lap)) is not None:
        st.last_lap_raw = float(s.lap[i])
    if (i := last_finite(s.d)) is not None:
        st.last_lapdist_m = float(s.d[i])
        st.last_lapdist_t = float(s.t[i])
        st.last_sector = int(s.sector[i])


def last_finite(values: np.ndarray) -> int | None:
    """Index of the last finite value, or None: usually the last one, found
    without a pass over the column (a channel logged on few rows needs one)."""
    if len(values) and math.isfinite(values[-1]):
        return len(values) - 1
    at = np.flatnonzero(np.isfinite(values))
    return int(at[-1]) if len(at) else None


class _Walker:
    """Applies boundary events in time order to a (private copy of a) state."""

    def __init__(self, st: ChassisState, stream: _Stream, track: TrackShape | None) -> None:
        self.st = st
        self.s = stream
        self.track = track
        self.n_sectors = len(track.sector_starts_m) if track is not None else 0
        self.sectors: list[SectorRecord] = []
        self.laps: list[LapRecord] = []
        if len(st.sector_times_s) != self.n_sectors:
            st.sector_times_s = (NAN,) * self.n_sectors

    def absorb(self, part: Partial) -> None:
        st = self.st
        st.lap_agg = merge(st.lap_agg, part)
        st.sector_agg = merge(st.sector_agg, part)
        st.stint_agg = merge(st.stint_agg, part)

    def event(self, b: int) -> None:
        """Sample ``b`` may start a lap or sector: decide and complete what ended."""
        st, s = self.st, self.s
        wrap_t = NAN
        wrap = bool(s.wrap[b])
        if wrap:
            wrap_t = float(self._crossing_times(b, np.array([self._line_m(b)]), unwrap=True)[0])
            wrap = not st.behind_line  # over the line again after going back over it: no new lap
            st.behind_line = False
        elif s.unwrap[b]:
            st.behind_line = True
            st.lap_glitches += 1
        if math.isfinite(s.lap[b]):
            lap_no = int(s.lap[b])
            if st.lap is None:
                st.lap = lap_no
            elif lap_no != st.lap and self._too_soon(b):
                # Relabel, end nothing; and the lap's time can no longer be trusted.
                st.lap, st.lap_start_t = lap_no, NAN
                st.lap_glitches += 1
            elif lap_no > st.lap:
                self._lap_boundary(b, self._lap_crossing_t(b, wrap_t), lap_no)
                return
            elif lap_no < st.lap:
                self._reset(b, lap_no)
                return
            elif wrap:
                st.pending_wrap_t = wrap_t  # distance reset before the lap counter
        elif wrap:
            if st.lap is None:
                st.lap = 0
            if not self._too_soon(b):
                self._lap_boundary(b, wrap_t, st.lap + 1)
                return
            st.lap_glitches += 1
        self._advance_sectors(b)

    def _too_soon(self, b: int) -> bool:
        """Whether sample ``b`` comes under ``MIN_LAP_S`` after the crossing
        or reset that began the lap in progress (not one the car was already
        in when its data began: it may be about to cross)."""
        st = self.st
        return st.lap_from_event and float(self.s.t[b]) - st.lap_first_t < MIN_LAP_S

    def _lap_crossing_t(self, b: int, wrap_t: float) -> float:
        """When the lap number went up at ``b``: the interpolated wrap in the
        same pair, else a recent wrap the counter trailed, else ``t[b]``;
        NaN (unknown) when ``b`` ends a gap and nothing placed the line."""
        st, t_b = self.st, float(self.s.t[b])
        if math.isfinite(wrap_t):
            return wrap_t
        pending = st.pending_wrap_t
        if pending >= st.lap_first_t and t_b - pending <= LAP_WRAP_MATCH_S:
            return pending
        return NAN if self.s.gap[b] else t_b

    def _line_m(self, b: int) -> float:
        """Where the old lap ended in its own metres: the track length, or
        further when the distance overshot it (lap-trigger lag)."""
        assert self.track is not None
        return max(self.track.length_m, float(self.s.d_prev[b]))

    def _crossing_times(self, b: int, bounds_m: np.ndarray, unwrap: bool) -> np.ndarray:
        """Interpolated times (s) at which the car passed ``bounds_m`` before sample ``b``.

        Linear in distance between the last sample with a lap distance and
        ``b``. With ``unwrap`` the segment crosses the line: ``b``'s distance
        is moved past ``_line_m`` so old-lap metres stay as they are and a
        new-lap distance ``x`` is ``x + _line_m(b)``. NaN where the segment
        has no positive length (no earlier distance, or distance went back).
        """
        s = self.s
        a_d, a_t, b_d = s.d_prev[b], s.d_prev_t[b], s.d[b]
        if unwrap:
            b_d = b_d + self._line_m(b)
        span_m = b_d - a_d
        if not span_m > 0.0:
            return np.full(len(bounds_m), NAN)
        frac = np.clip((bounds_m - a_d) / span_m, 0.0, 1.0)
        return a_t + frac * (s.t[b] - a_t)

    def _complete_sector(self, k: int, end_t: float) -> None:
        st = self.st
        time_s = end_t - st.sector_start_t
        lap = st.lap if st.lap is not None else 0
        record = SectorRecord(lap, k, time_s, st.sector_start_t, end_t, st.sector_agg)
        self.sectors.append(record)
        times = list(st.sector_times_s)
        times[k] = time_s
        st.sector_times_s = tuple(times)
        if math.isfinite(time_s):
            rolling = st.sector_rolling.get(k, SectorRolling())
            st.sector_rolling[k] = rolling.add(time_s, st.sector_agg)
        st.sector, st.sector_start_t, st.sector_agg = k + 1, end_t, EMPTY

    def _advance_sectors(self, b: int) -> None:
        """Within a lap: complete every sector between the current one and ``b``'s."""
        st, target = self.st, int(self.s.sector[b])
        if self.track is None or target < 0 or st.behind_line:
            return
        if st.sector < 0:  # first distance seen in this lap: joined mid-sector
            st.sector, st.sector_start_t, st.sector_agg = target, NAN, EMPTY
            return
        if target <= st.sector:
            return
        bounds = self.track.sector_starts_m[st.sector + 1 : target + 1]
        ends = self._crossing_times(b, bounds, unwrap=False)
        for k, end_t in zip(range(st.sector, target), ends, strict=True):
            self._complete_sector(k, float(end_t))

    def _finish_lap_sectors(self, b: int, end_t: float) -> None:
        """The lap ended at ``end_t`` (NaN: unknown): complete its remaining sectors."""
        st = self.st
        if self.track is None or not 0 <= st.sector < self.n_sectors:
            return
        inner = self.track.sector_starts_m[st.sector + 1 :]
        if self.s.wrap[b] and math.isfinite(end_t):
            ends = self._crossing_times(b, inner, unwrap=True)
        else:
            ends = np.full(len(inner), NAN)
        for k, sector_end_t in zip(range(st.sector, self.n_sectors), [*ends, end_t], strict=True):
            self._complete_sector(k, float(sector_end_t))

    def _enter_lap_sectors(self, b: int) -> None:
        """A lap began: place the car, completing sectors it already passed."""
        st, s = self.st, self.s
        if self.track is None:
            return
        if math.isnan(st.lap_start_t):  # start unknown: join wherever the car is
            self._advance_sectors(b)
            return
        st.sector, st.sector_start_t, st.sector_agg = 0, st.lap_start_t, EMPTY
        target = int(s.sector[b])
        if target <= 0 or (not s.wrap[b] and s.d[b] > self.track.length_m / 2.0):
            return  # at the line, or the distance has not reset yet
        bounds = self.track.sector_starts_m[1 : target + 1]
        if s.wrap[b]:
            ends = self._crossing_times(b, bounds + self._line_m(b), unwrap=True)
        else:
            ends = np.full(target, NAN)
        for k, end_t in zip(range(target), ends, strict=True):
            self._complete_sector(k, float(end_t))

    def _lap_boundary(self, b: int, cross_t: float, new_lap: int) -> None:
        """Lap ``st.lap`` ended and ``new_lap`` began at ``cross_t`` (NaN: unknown).

        A lap number jumping by more than one means laps without data: the old
        lap's end is unknown, and so is the new lap's start if ``b`` ends a gap.
        Unknown ends make partial laps (no lap time), never wrong ones.
        """
        st, t_b = self.st, float(self.s.t[b])
        skipped = st.lap is not None and new_lap > st.lap + 1
        end_t = NAN if skipped else cross_t
        start_t = NAN if skipped and self.s.gap[b] else cross_t
        self._finish_lap_sectors(b, end_t)
        record = self._lap_record(b, end_t)
        self.laps.append(record)
        if not record.partial:
            st.laps_completed += 1
            st.last_lap_time_s = record.lap_time_s
            st.best_lap_time_s = float(np.fmin(st.best_lap_time_s, record.lap_time_s))
        self._start_lap(new_lap, start_t, start_t if math.isfinite(start_t) else t_b)
        self._enter_lap_sectors(b)

    def _lap_record(self, b: int, end_t: float) -> LapRecord:
        st = self.st
        partial = math.isnan(st.lap_start_t) or math.isnan(end_t)
        return LapRecord(
            lap=st.lap if st.lap is not None else 0,
            lap_time_s=NAN if partial else end_t - st.lap_start_t,
            sector_times_s=list(st.sector_times_s),
            start_t=st.lap_first_t if math.isnan(st.lap_start_t) else st.lap_start_t,
            end_t=end_t if math.isfinite(end_t) else float(self.s.t[b]),
            partial=partial,
            has_gap=st.lap_agg.gaps > 0 or bool(self.s.gap[b]) or math.isnan(end_t),
            aggregates=st.lap_agg,
        )

    def _start_lap(self, lap: int, start_t: float, first_t: float) -> None:
        st = self.st
        st.lap, st.lap_start_t, st.lap_first_t = lap, start_t, first_t
        st.lap_from_event = True
        st.lap_agg, st.sector_agg, st.pending_wrap_t = EMPTY, EMPTY, NAN
        st.sector_times_s = (NAN,) * self.n_sectors
        st.sector, st.sector_start_t = -1, NAN

    def _reset(self, b: int, lap: int) -> None:
        """The lap number went down (new session, counter reset): drop the lap in progress."""
        self._start_lap(lap, NAN, float(self.s.t[b]))
        self._advance_sectors(b)
