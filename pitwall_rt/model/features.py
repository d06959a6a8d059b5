"""The model's input: one feature vector per completed lap and per completed sector.

This module owns the feature list and its order (:data:`FEATURES`); the
training script writes the list into the ONNX file's metadata and the
server refuses a model whose list differs. Pure numpy, no I/O: the pool runs
:func:`advance_windows` inside ``compute_batch`` right after lap timing.

A *window* is the run of one car's samples between two timing-line
crossings: a whole lap (``sector`` = -1) or one sector of it. Crossing times
come from :func:`pitwall_rt.compute.laps.advance` (interpolated in sample
time); a sample belongs to the window it was taken in (``t < end_t``).
Every sum is a time integral (each sample weighted by its credited interval,
``physics.sample_dt_s``) and event counts are rising edges, so the features
do not depend on the sample rate: a lap at 10 Hz and at 20 Hz gives about
the same vector.

Per window, besides the model features, the accumulator keeps what the
driver fingerprint needs: :data:`PROFILE_METRICS` (sector time, peak
pressure and lateral G, mean throttle) and the window's brake applications
(``stops``): where each one began (lap distance, m) and its peak pressure.
A brake application runs from front pressure rising over
:data:`BRAKE_ON_BAR` until it falls back; it counts as a stop when it peaks
over :data:`BRAKE_STOP_BAR`, so a dab or a lift is not a braking point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar, Final

import numpy as np

from ..compute.laps import FreshRows, LapRecord, SectorRecord, last_finite
from ..compute.physics import (
    CORNERS,
    GR86,
    PhysicsCarry,
    PointPhysics,
    point_physics,
)
from ..row_fields import FieldSource
from ..shallow import shallow_copy
from ..small_arrays import SmallArrays

FEATURES: Final = (
    "window_time_s",
    "lap",
    "stint_laps",
    "sector",
    "speed_mean_kmh",
    "speed_std_kmh",
    "lat_g_s",
    "lon_g_s",
    "peak_lat_g",
    "peak_brake_g",
    "peak_accel_g",
    "peak_total_g",
    "brake_energy_bar_s",
    "hard_braking",
    "hard_cornering",
    "front_rear_load_ratio",
    "left_right_load_ratio",
    "stress_fl_g_m",
    "stress_fr_g_m",
    "stress_rl_g_m",
    "stress_rr_g_m",
    "stint_stress_fl_g_m",
    "stint_stress_fr_g_m",
    "stint_stress_rl_g_m",
    "stint_stress_rr_g_m",
)
"""Model inputs, in the order of the model's input columns. Units follow the names."""

FEATURE_DOC: Final = {
    "window_time_s": "duration of the lap or sector, s (sample time)",
    "lap": "lap number the window belongs to",
    "stint_laps": "timing-line crossings since the stint began, before this window",
    "sector": "0-based sector index; -1 for a whole lap",
    "speed_mean_kmh": "time-weighted mean speed, km/h",
    "speed_std_kmh": "time-weighted standard deviation of speed, km/h",
    "lat_g_s": "cumulative lateral acceleration, integral of abs(accy) dt, G*s",
    "lon_g_s": "cumulative longitudinal acceleration, integral of abs(accx) dt, G*s",
    "peak_lat_g": "largest abs(accy), G",
    "peak_brake_g": "largest deceleration, G",
    "peak_accel_g": "largest forward acceleration, G",
    "peak_total_g": "largest combined hypot(accx, accy), G",
    "brake_energy_bar_s": "brake pressure integrated over time, bar*s",
    "hard_braking": "hard-braking events (rising edges, physics.HARD_BRAKE_G / _BAR)",
    "hard_cornering": "hard-cornering events (rising edges, physics.HARD_CORNER_G)",
    "front_rear_load_ratio": "time-mean front axle load / rear axle load (N/N)",
    "left_right_load_ratio": "time-mean left side load / right side load (N/N)",
    "stress_fl_g_m": "front-left tire stress in the window, G*m (see compute.physics)",
    "stress_fr_g_m": "front-right tire stress in the window, G*m",
    "stress_rl_g_m": "rear-left tire stress in the window, G*m",
    "stress_rr_g_m": "rear-right tire stress in the window, G*m",
    "stint_stress_fl_g_m": "front-left stress of the stint before this window, G*m",
    "stint_stress_fr_g_m": "front-right stress of the stint before this window, G*m",
    "stint_stress_rl_g_m": "rear-left stress of the stint before this window, G*m",
    "stint_stress_rr_g_m": "rear-right stress of the stint before this window, G*m",
}
N_FEATURES: Final = len(FEATURES)
INDEX: Final = {name: i for i, name in enumerate(FEATURES)}

PROFILE_METRICS: Final = ("time_s", "brake_peak_bar", "peak_lat_g", "throttle_pct")
"""Per-window driver metrics for :mod:`pitwall_rt.fingerprint` (s, bar, G, %)."""

BRAKE_ON_BAR: Final = 15.0
"""Front pressure (bar) where a brake application begins and ends (over sensor offset)."""
BRAKE_STOP_BAR: Final = 40.0
"""Peak front pressure (bar) that makes an application a stop (``physics.HARD_BRAKE_BAR``)."""
MAX_STOPS: Final = 64
"""Stops kept per window: a lap that never ends (no lap data) must not grow without bound."""

# Column layout of the per-sample sums (each already multiplied by dt where it is a rate).
_DT, _V, _V2, _VDT, _LAT, _LON, _BRAKE, _HB, _HC = range(9)
_LOAD = slice(9, 13)  # load per corner * dt, N*s
_STRESS = slice(13, 17)  # stress per corner, G*m
_THR, _THRDT, _GAPS = 17, 18, 19
N_SUMS: Final = 20
# Per-sample maxima: |accy|, braking G, accel G, combined G, front pressure.
_MLAT, _MBRAKE, _MACCEL, _MTOTAL, _MPBRAKE = range(5)
N_MAXES: Final = 5


@dataclass
class WindowAcc(SmallArrays):
    """Running sums of one open window (a lap or a sector) of one car."""

    _small_arrays: ClassVar[tuple[str, ...]] = ("sums", "maxes", "stint_stress_g_m")

    sums: np.ndarray = field(default_factory=lambda: np.zeros(N_SUMS))
    maxes: np.ndarray = field(default_factory=lambda: np.full(N_MAXES, np.nan))
    stops: list[tuple[float, float]] = field(default_factory=list)
    open_stop: tuple[float, float] | None = None
    first_t: float = math.nan
    stint_laps: int = 0
    stint_stress_g_m: np.ndarray = field(default_factory=lambda: np.zeros(4))

    def copy(self) -> WindowAcc:
        return shallow_copy(
            self,
            sums=self.sums.copy(),
            maxes=self.maxes.copy(),
            stint_stress_g_m=self.stint_stress_g_m.copy(),
            stops=list(self.stops),
        )

    def close_stop(self) -> None:
        """The application in progress ended (or the window did): keep it if it was a stop."""
        stop = self.open_stop
        if stop is not None and stop[1] >= BRAKE_STOP_BAR and len(self.stops) < MAX_STOPS:
            self.stops.append(stop)
        self.open_stop = None


@dataclass
class WindowCarry(SmallArrays):
    """What feature extraction remembers about one car between ticks (picklable)."""

    _small_arrays: ClassVar[tuple[str, ...]] = ("stint_stress_g_m",)

    last_t: float = math.nan
    physics: PhysicsCarry = field(default_factory=PhysicsCarry)
    brake_on: bool = False  # front pressure over BRAKE_ON_BAR at the last sample
    last_lapdist: tuple[float, float] = (math.nan, math.nan)  # the last reading: (t, metres)
    lap_acc: WindowAcc = field(default_factory=WindowAcc)
    sector_acc: WindowAcc = field(default_factory=WindowAcc)
    stint: int = 0
    stint_laps: int = 0
    stint_stress_g_m: np.ndarray = field(default_factory=lambda: np.zeros(4))
    last_lap: int = -1

    def copy(self) -> WindowCarry:
        return shallow_copy(
            self,
            lap_acc=self.lap_acc.copy(),
            sector_acc=self.sector_acc.copy(),
            stint_stress_g_m=self.stint_stress_g_m.copy(),
        )


@dataclass(frozen=True)
class Window:
    """A completed lap (``sector`` -1) or sector of one car, as model input.

    ``usable``: no data gap inside, so a wear prediction is meaningful (a
    partial first lap is usable: it is the wear of the part we saw).
    ``full``: also complete and timed, so it may shape a driver's averages.
    ``stint`` counts stints of this car (a lap-number reset starts one).
    """

    kind: str
    lap: int
    sector: int
    start_t: float
    end_t: float
    time_s: float
    stint: int
    usable: bool
    full: bool
    x: np.ndarray
    profile: dict[str, float]
    stops: tuple[tuple[float, float], ...] = ()


def _zero_nan(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, 0.0)


def sample_columns(rows: FieldSource, phys: PointPhysics) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample sums (n, N_SUMS) and maxima (n, N_MAXES) for time-sorted rows.

    Element-wise in the samples, so a tick computes them once for all its cars
    (:func:`~pitwall_rt.compute.laps.fresh_rows`' ``extra``) and cuts them per car.
    """
    dt = phys.dt_s
    speed = rows["speed_kmh"]
    has_v = np.isfinite(speed)
    v = np.where(has_v, speed, 0.0)
    thr = rows["throttle_pct"]
    has_thr = np.isfinite(thr)
    raw_x, raw_y = rows["accx_can"], rows["accy_can"]
    sums = np.empty((len(rows), N_SUMS))
    sums[:, _DT] = dt
    np.multiply(v, dt, out=sums[:, _V])
    sums[:, _V2] = v * v * dt
    sums[:, _VDT] = has_v * dt
    sums[:, _LAT] = np.abs(_zero_nan(raw_y)) * dt
    sums[:, _LON] = np.abs(_zero_nan(raw_x)) * dt
    sums[:, _BRAKE] = phys.brake_bar_s
    sums[:, _HB] = phys.hard_brake_edge
    sums[:, _HC] = phys.hard_corner_edge
    np.multiply(phys.load_norm * GR86.static_corner_loads_n(), dt[:, None], out=sums[:, _LOAD])
    sums[:, _STRESS] = phys.stress_g_m
    sums[:, _THR] = np.where(has_thr, thr, 0.0) * dt
    sums[:, _THRDT] = has_thr * dt
    sums[:, _GAPS] = phys.gap
    maxes = np.empty((len(rows), N_MAXES))
    np.abs(raw_y, out=maxes[:, _MLAT])
    np.clip(-raw_x, 0, None, out=maxes[:, _MBRAKE])
    np.clip(raw_x, 0, None, out=maxes[:, _MACCEL])
    np.hypot(raw_x, raw_y, out=maxes[:, _MTOTAL])
    maxes[:, _MPBRAKE] = rows["pbrake_f"]
    return sums, maxes


def _fresh(carry: WindowCarry, rows: np.ndarray) -> np.ndarray:
    """Rows after the last one seen, first arrival of an equal ``t`` (as ``laps.advance``)."""
    rows = rows[np.argsort(rows["t"], kind="stable")]
    t = rows["t"]
    keep = np.isfinite(t) & ~(t <= carry.last_t)
    keep[1:] &= t[1:] != t[:-1]
    return rows[keep]


@dataclass(frozen=True)
class _Tick:
    """One tick's fresh samples of a car, ready to be cut at crossing times.

    Most ticks of a car cross no timing line, so its windows take the whole
    tick: that total is a plain sum, and the running sums that cutting needs
    are only built when a crossing asks for them.
    """

    t: np.ndarray
    sums: np.ndarray
    maxes: np.ndarray
    pbrake_bar: np.ndarray
    onset_idx: np.ndarray  # brake applications begin here
    release_idx: np.ndarray  # and end here (first sample back under BRAKE_ON_BAR)
    lapdist_m: np.ndarray

    @cached_property
    def _prefix(self) -> np.ndarray:
        return np.vstack((np.zeros(N_SUMS), np.cumsum(self.sums, axis=0)))

    @cached_property
    def _whole(self) -> tuple[np.ndarray, np.ndarray]:
        return self.sums.sum(axis=0), np.fmax.reduce(self.maxes, axis=0)

    def span(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """The sums and maxima of samples ``i:j`` (``j > i``), read-only."""
        if i == 0 and j == len(self.t):
            return self._whole
        return self._prefix[j] - self._prefix[i], np.fmax.reduce(self.maxes[i:j], axis=0)

    def absorb(self, acc: WindowAcc, i: int, j: int, span: tuple[np.ndarray, np.ndarray]) -> None:
        """Add samples ``i:j``, whose :meth:`span` is ``span``, to ``acc`` (in place)."""
        sums, maxes = span
        acc.sums += sums
        acc.maxes = np.fmax(acc.maxes, maxes)
        if math.isnan(acc.first_t):
            acc.first_t = float(self.t[i])
        self._stops(acc, i, j)

    def _stops(self, acc: WindowAcc, i: int, j: int) -> None:
        """Follow brake applications through samples ``i:j``.

        The applications that begin here are taken together: a noisy
        pressure signal that crosses :data:`BRAKE_ON_BAR` back and forth
        starts hundreds in a tick, and stepping through them one by one
        (a search and a ``nanmax`` each) made such a tick 2.5 times slower."""
        if acc.open_stop is not None:
            self._extend(acc, i, j)
        lo, hi = np.searchsorted(self.onset_idx, (i, j))
        if lo == hi:
            return
        acc.close_stop()
        onsets = self.onset_idx[lo:hi]
        # Each ends at its release (the first at or after it), or at j.
        after = np.searchsorted(self.release_idx, onsets)
        ends = np.full(len(onsets), j)
        released = after < len(self.release_idx)
        ends[released] = np.minimum(self.release_idx[after[released]], j)
        peaks = _segment_max(self.pbrake_bar, onsets, ends)  # each over BRAKE_ON_BAR: never NaN
        starts_m = self.lapdist_m[onsets]
        still_on = bool(ends[-1] == j)
        closed = len(onsets) - still_on
        stop = peaks[:closed] >= BRAKE_STOP_BAR
        room = max(MAX_STOPS - len(acc.stops), 0)
        kept_m, kept_bar = starts_m[:closed][stop][:room], peaks[:closed][stop][:room]
        acc.stops += zip(kept_m.tolist(), kept_bar.tolist(), strict=True)
        if still_on:
            acc.open_stop = (float(starts_m[-1]), float(peaks[-1]))

    def _extend(self, acc: WindowAcc, start: int, j: int) -> None:
        """Carry the application open before ``start`` on to its release or ``j``."""
        assert acc.open_stop is not None
        k = np.searchsorted(self.release_idx, start)  # released at or after start
        end = min(int(self.release_idx[k]), j) if k < len(self.release_idx) else j
        if end > start:
            peak = float(np.nanmax(self.pbrake_bar[start:end]))
            acc.open_stop = (acc.open_stop[0], max(acc.open_stop[1], peak))
        if end < j:
            acc.close_stop()


def placed_lapdist(
    lapdist_m: np.ndarray, t: np.ndarray, last: tuple[float, float] = (math.nan, math.nan)
) -> np.ndarray:
    """Lap distance with the gaps filled, to place brake applications.

    GR Cup cars log the distance on about one row in five (105 of 516
    timestamps in tests/data/grcup), so most applications began on a row
    without one and could not be placed: a sector kept one stop in seven.
    A gap takes the distance interpolated in time between the readings
    either side, ``last`` (t, metres) standing before the first row; or
    the reading before it when the line was crossed in between (the lap
    length is not known here) or none follows in the tick. Only rows with
    no reading before them stay unknown."""
    missing = np.isnan(lapdist_m)
    if not missing.any():
        return lapdist_m
    first = 0
    if not math.isnan(last[1]):  # the carried reading stands as row -1
        lapdist_m, t = np.append(last[1], lapdist_m), np.append(last[0], t)
        missing, first = np.append(False, missing), 1
    index = np.arange(len(lapdist_m))
    known = np.where(missing, -1, index)
    before = np.maximum.accumulate(known)
    after = np.minimum.accumulate(np.where(missing, len(index), index)[::-1])[::-1]
    out = lapdist_m.copy()
    has_before = missing & (before >= 0)
    out[has_before] = lapdist_m[before[has_before]]
    between = has_before & (after < len(index))
    a, b = before[between], after[between]
    d_a, d_b = lapdist_m[a], lapdist_m[b]
    forward = d_b >= d_a  # no crossing of the line between the two readings
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip((t[between] - t[a]) / (t[b] - t[a]), 0.0, 1.0)
    out[between] = np.where(forward & np.isfinite(frac), d_a + frac * (d_b - d_a), d_a)
    return out[first:]


def brake_edges(
    pbrake_bar: np.ndarray, lapdist_m: np.ndarray, brake_on: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Where brake applications begin (at a known lap distance, or they
    can't be placed) and where they end (the first sample back under
    :data:`BRAKE_ON_BAR`), given whether the brake was on before the first sample."""
    on = pbrake_bar > BRAKE_ON_BAR
    before = np.concatenate(([brake_on], on[:-1]))
    return np.flatnonzero(on & ~before & np.isfinite(lapdist_m)), np.flatnonzero(~on & before)


def _segment_max(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """NaN-ignoring maximum of each ``values[starts[k]:ends[k]]``: one ``reduceat``.

    The segments must be non-empty, in order and apart (``ends[k] <
    starts[k + 1]``), as brake applications are; a last end at
    ``len(values)`` is left out, so that segment runs to the end."""
    bounds = np.empty(2 * len(starts), dtype=np.intp)
    bounds[0::2] = starts
    bounds[1::2] = ends
    if bounds[-1] >= len(values):
        bounds = bounds[:-1]
    return np.fmax.reduceat(values, bounds)[0::2]


def advance_windows(
    carry: WindowCarry,
    rows: np.ndarray,
    sectors: list[SectorRecord],
    laps: list[LapRecord],
    fresh: FreshRows | None = None,
) -> tuple[WindowCarry, list[Window]]:
    """Feed one car's rows of a tick and the crossings ``laps.advance`` found in them.

    Pure: ``carry`` is not modified. Returns the new carry and the windows
    completed by this tick in time order (a lap's last sector before the lap).
    ``fresh``, from :func:`~pitwall_rt.compute.laps.advance_rows` on the same
    rows, saves sorting, deduplicating and the physics; it is used only when
    ``carry`` has seen exactly what the lap-timing state had (same last sample,
    same physics carry), so the result is the same with or without it.
    """
    c = carry.copy()
    fields, c.physics, (sums, maxes) = _tick_rows(carry, rows, fresh)
    if len(fields) == 0:
        return c, []
    pbrake_bar, t = fields["pbrake_f"], fields["t"]
    lapdist_m = placed_lapdist(fields["lapdist_m"], t, carry.last_lapdist)
    onset_idx, release_idx = brake_edges(pbrake_bar, lapdist_m, carry.brake_on)
    tick = _Tick(
        t=fields["t"],
        sums=sums,
        maxes=maxes,
        pbrake_bar=pbrake_bar,
        onset_idx=onset_idx,
        release_idx=release_idx,
        lapdist_m=lapdist_m,
    )
    windows: list[Window] = []
    pos = 0
    for end_t, record in _crossings(sectors, laps):
        cut = max(pos, int(np.searchsorted(tick.t, end_t, side="left")))
        _absorb(c, tick, pos, cut)
        pos = cut
        if isinstance(record, SectorRecord):
            windows.append(_close_sector(c, record))
        else:
            windows.append(_close_lap(c, record))
    _absorb(c, tick, pos, len(fields))
    c.last_t = float(tick.t[-1])
    c.brake_on = bool(pbrake_bar[-1] > BRAKE_ON_BAR)
    if (i := last_finite(fields["lapdist_m"])) is not None:
        c.last_lapdist = (float(t[i]), float(fields["lapdist_m"][i]))
    return c, windows


def _tick_rows(
    carry: WindowCarry, rows: np.ndarray, fresh: FreshRows | None
) -> tuple[FieldSource, PhysicsCarry, tuple[np.ndarray, ...]]:
    """The tick's fresh rows (their fields), the physics carry after them and
    their :func:`sample_columns`: lap timing's when it started from the same
    place as ``carry`` (the columns made for the whole tick when it has them),
    else computed here."""
    if fresh is not None and fresh.follows(carry.last_t, carry.physics):
        after = fresh.carry_after if len(fresh.rows) else carry.physics
        columns = fresh.extra or sample_columns(fresh.fields, fresh.physics)
        return fresh.fields, after, columns
    rows = _fresh(carry, rows)
    phys, after = point_physics(rows, carry.physics)
    return rows, after, sample_columns(rows, phys)


def _crossings(
    sectors: list[SectorRecord], laps: list[LapRecord]
) -> list[tuple[float, SectorRecord | LapRecord]]:
    """Timing-line crossings in time order, a lap's last sector before the lap itself.

    A sector whose end could not be placed (NaN) is skipped: its samples go to
    the next sector's window, which is then not timed either.
    """
    events: list[tuple[float, int, SectorRecord | LapRecord]] = [
        (r.end_t, 0, r) for r in sectors if math.isfinite(r.end_t)
    ]
    events += [(r.end_t, 1, r) for r in laps]
    events.sort(key=lambda e: (e[0], e[1]))
    return [(t, r) for t, _, r in events]


def _absorb(c: WindowCarry, tick: _Tick, i: int, j: int) -> None:
    """Samples ``i:j`` into the open lap and sector windows and the stint,
    from one reduction of them."""
    if j <= i:
        return
    span = tick.span(i, j)
    tick.absorb(c.lap_acc, i, j, span)
    tick.absorb(c.sector_acc, i, j, span)
    c.stint_stress_g_m += span[0][_STRESS]


def _open(c: WindowCarry) -> WindowAcc:
    return WindowAcc(stint_laps=c.stint_laps, stint_stress_g_m=c.stint_stress_g_m.copy())


def _close_sector(c: WindowCarry, record: SectorRecord) -> Window:
    acc = c.sector_acc
    c.sector_acc = _open(c)
    start_t = record.start_t if math.isfinite(record.start_t) else acc.first_t
    timed = math.isfinite(record.time_s)
    span = (start_t, record.end_t, record.time_s)
    return _window(acc, "sector", record.lap, record.sector, span, c.stint, timed)


def _close_lap(c: WindowCarry, record: LapRecord) -> Window:
    if 0 <= record.lap < c.last_lap:  # lap counter went back: a new session / stint
        c.stint += 1
        c.stint_laps = 0
        c.stint_stress_g_m = np.zeros(4)
        c.lap_acc.stint_laps, c.lap_acc.stint_stress_g_m = 0, np.zeros(4)
    acc = c.lap_acc
    span = (record.start_t, record.end_t, record.lap_time_s)
    window = _window(acc, "lap", record.lap, -1, span, c.stint, not record.partial)
    c.last_lap = record.lap
    c.stint_laps += 1
    c.lap_acc = _open(c)
    return window


def _window(
    acc: WindowAcc,
    kind: str,
    lap: int,
    sector: int,
    span: tuple[float, float, float],
    stint: int,
    timed: bool,
) -> Window:
    """Close ``acc``; ``span`` is (start_t, end_t, time_s) from the timing record."""
    start_t, end_t, time_s = span
    usable = acc.sums[_GAPS] == 0 and acc.sums[_DT] > 0
    acc.close_stop()  # an application running over the line counts up to the line
    return Window(
        kind=kind,
        lap=lap,
        sector=sector,
        start_t=start_t,
        end_t=end_t,
        time_s=time_s,
        stint=stint,
        usable=bool(usable),
        full=bool(usable and timed),
        x=feature_vector(acc, lap, sector),
        profile=profile_metrics(acc, time_s),
        stops=tuple(acc.stops),
    )


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 1.0


def feature_vector(acc: WindowAcc, lap: int, sector: int) -> np.ndarray:
    """The window's :data:`FEATURES` as float32; missing data gives 0 (ratios 1)."""
    s, m = acc.sums, np.nan_to_num(acc.maxes, nan=0.0)
    v_dt = s[_VDT]
    mean = s[_V] / v_dt if v_dt > 0 else 0.0
    var = s[_V2] / v_dt - mean * mean if v_dt > 0 else 0.0
    load = s[_LOAD]
    values = (
        s[_DT],
        lap,
        acc.stint_laps,
        sector,
        mean,
        math.sqrt(max(var, 0.0)),
        s[_LAT],
        s[_LON],
        m[_MLAT],
        m[_MBRAKE],
        m[_MACCEL],
        m[_MTOTAL],
        s[_BRAKE],
        s[_HB],
        s[_HC],
        _ratio(load[0] + load[1], load[2] + load[3]),
        _ratio(load[0] + load[2], load[1] + load[3]),
        *s[_STRESS],
        *acc.stint_stress_g_m,
    )
    return np.asarray(values, dtype=np.float32)


def profile_metrics(acc: WindowAcc, time_s: float) -> dict[str, float]:
    """:data:`PROFILE_METRICS` of a window (NaN where the data had none)."""
    thr_dt = acc.sums[_THRDT]
    return {
        "time_s": float(time_s),
        "brake_peak_bar": float(acc.maxes[_MPBRAKE]),
        "peak_lat_g": float(acc.maxes[_MLAT]),
        "throttle_pct": float(acc.sums[_THR] / thr_dt) if thr_dt > 0 else math.nan,
    }


def corner_feature(corner: str, stint: bool = False) -> str:
    """Feature name of a tire's stress: ``corner_feature("fl")`` -> ``"stress_fl_g_m"``."""
    if corner not in CORNERS:
        raise ValueError(f"unknown corner {corner!r}")
    return f"{'stint_' if stint else ''}stress_{corner}_g_m"
