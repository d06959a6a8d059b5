"""Mergeable aggregates: per-sector / per-lap partials and Welford running stats.

Everything here is a small frozen value with a ``merge``: a stream can be
cut into batches (or a batch into chunks for different worker processes)
anywhere, each piece summarised on its own, and the summaries merged in time
order give the same numbers as one pass over everything (up to float
rounding in the sums).

* :class:`Partial` summarises a run of samples of one car: counts, sums and
  maxima, so merging is addition and ``fmax``.
* :class:`Welford` holds count / mean / M2 of a value seen once per lap
  (a sector time, a sector's top speed); two states combine with Chan et
  al.'s parallel formula, so rolling stats merge like partials do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..row_fields import FieldSource
from .physics import CORNERS, PointPhysics

NAN = float("nan")


def json_float(value: float) -> float | None:
    """``value`` as a JSON-safe float: NaN/inf (meaning "not known") become None."""
    return float(value) if math.isfinite(value) else None


def _fmax(a: float, b: float) -> float:
    """Max ignoring NaN (NaN = "no sample had this value"); plain floats, no numpy call."""
    if b != b or a >= b:  # b is NaN, or a wins
        return a
    return b


@dataclass(frozen=True)
class Partial:
    """Summary of a run of one car's samples.

    Units: ``time_s`` is the sum of the samples' credited intervals (s,
    gaps clipped, see ``physics.MAX_DT_S``); speeds km/h; accelerations G as
    positive magnitudes (``brake_max_g`` is the strongest deceleration);
    ``brake_energy_bar_s`` is pressure integrated over time; ``tire_stress_g_m``
    per tire in ``CORNERS`` order (see :mod:`physics`). Maxima are NaN when
    no sample carried the value. ``gaps`` counts intervals over ``GAP_S``.
    """

    count: int = 0
    time_s: float = 0.0
    speed_sum_kmh: float = 0.0
    speed_n: int = 0
    speed_max_kmh: float = NAN
    accy_abs_max_g: float = NAN
    brake_max_g: float = NAN
    accel_max_g: float = NAN
    brake_energy_bar_s: float = 0.0
    hard_braking: int = 0
    hard_cornering: int = 0
    gaps: int = 0
    tire_stress_g_m: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @property
    def mean_speed_kmh(self) -> float:
        """Sample mean of the speeds present (km/h), NaN when none."""
        return self.speed_sum_kmh / self.speed_n if self.speed_n else NAN

    def tire_stress_dict(self) -> dict[str, float]:
        return dict(zip(CORNERS, self.tire_stress_g_m, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN -> None)."""
        return {
            "samples": self.count,
            "time_s": self.time_s,
            "mean_speed_kmh": json_float(self.mean_speed_kmh),
            "max_speed_kmh": json_float(self.speed_max_kmh),
            "max_lat_g": json_float(self.accy_abs_max_g),
            "max_brake_g": json_float(self.brake_max_g),
            "max_accel_g": json_float(self.accel_max_g),
            "brake_energy_bar_s": self.brake_energy_bar_s,
            "hard_braking": self.hard_braking,
            "hard_cornering": self.hard_cornering,
            "gaps": self.gaps,
            "tire_stress": self.tire_stress_dict(),
        }


EMPTY: Partial = Partial()


def merge(a: Partial, b: Partial) -> Partial:
    """Combine two partials (order does not matter: sums and NaN-ignoring maxima)."""
    return Partial(
        count=a.count + b.count,
        time_s=a.time_s + b.time_s,
        speed_sum_kmh=a.speed_sum_kmh + b.speed_sum_kmh,
        speed_n=a.speed_n + b.speed_n,
        speed_max_kmh=_fmax(a.speed_max_kmh, b.speed_max_kmh),
        accy_abs_max_g=_fmax(a.accy_abs_max_g, b.accy_abs_max_g),
        brake_max_g=_fmax(a.brake_max_g, b.brake_max_g),
        accel_max_g=_fmax(a.accel_max_g, b.accel_max_g),
        brake_energy_bar_s=a.brake_energy_bar_s + b.brake_energy_bar_s,
        hard_braking=a.hard_braking + b.hard_braking,
        hard_cornering=a.hard_cornering + b.hard_cornering,
        gaps=a.gaps + b.gaps,
        tire_stress_g_m=(
            a.tire_stress_g_m[0] + b.tire_stress_g_m[0],
            a.tire_stress_g_m[1] + b.tire_stress_g_m[1],
            a.tire_stress_g_m[2] + b.tire_stress_g_m[2],
            a.tire_stress_g_m[3] + b.tire_stress_g_m[3],
        ),
    )


def merge_all(parts: Iterable[Partial]) -> Partial:
    total = EMPTY
    for part in parts:
        total = merge(total, part)
    return total


PartialColumns = tuple[np.ndarray, np.ndarray]
"""Per-sample sums ``(n, 11)`` and maxima ``(n, 4)`` that :class:`Partial` totals are made of."""


def partial_columns(rows: FieldSource, phys: PointPhysics) -> PartialColumns:
    """What each sample adds to a :class:`Partial`, as sums and maxima columns.

    Element-wise in the samples, so the columns of several cars' rows computed
    at once, cut at a car's bounds, equal that car's alone: a tick builds them
    once for all its cars instead of once per car.
    """
    speed = rows["speed_kmh"]
    accx, accy = rows["accx_can"], rows["accy_can"]
    has_speed = np.isfinite(speed)
    sums = np.empty((len(rows), 11))
    sums[:, 0] = phys.dt_s
    sums[:, 1] = np.where(has_speed, speed, 0.0)
    sums[:, 2] = has_speed
    sums[:, 3] = phys.brake_bar_s
    sums[:, 4] = phys.hard_brake_edge
    sums[:, 5] = phys.hard_corner_edge
    sums[:, 6] = phys.gap
    sums[:, 7:11] = phys.stress_g_m
    maxes = np.empty((len(rows), 4))
    maxes[:, 0] = speed
    maxes[:, 1] = np.abs(accy)
    # np.clip keeps NaN: a missing value stays "not seen" for fmax.
    np.clip(-accx, 0, None, out=maxes[:, 2])
    np.clip(accx, 0, None, out=maxes[:, 3])
    return sums, maxes


def segment_partials(
    rows: np.ndarray,
    phys: PointPhysics,
    starts: np.ndarray,
    columns: PartialColumns | None = None,
) -> list[Partial]:
    """One :class:`Partial` per run ``rows[starts[k]:starts[k+1]]``, vectorised.

    ``rows`` are one car's time-sorted rows, ``phys`` their physics, and
    ``starts`` strictly increasing indices beginning at 0; ``columns`` their
    :func:`partial_columns` when already computed. Sums and maxima for all
    runs come from one ``reduceat`` each; only building the result objects
    loops, once per run.
    """
    sums, maxes = partial_columns(rows, phys) if columns is None else columns
    total = np.add.reduceat(sums, starts, axis=0)
    peak = np.fmax.reduceat(maxes, starts, axis=0)
    counts = np.diff(np.append(starts, len(rows))).tolist()
    # Python lists: indexing a numpy row makes a numpy scalar per field, and
    # round() of one costs microseconds.
    return [
        _partial_from(n, s, m)
        for n, s, m in zip(counts, total.tolist(), peak.tolist(), strict=True)
    ]


def _partial_from(count: int, s: list[float], m: list[float]) -> Partial:
    return Partial(
        count=count,
        time_s=s[0],
        speed_sum_kmh=s[1],
        speed_n=round(s[2]),
        speed_max_kmh=m[0],
        accy_abs_max_g=m[1],
        brake_max_g=m[2],
        accel_max_g=m[3],
        brake_energy_bar_s=s[3],
        hard_braking=round(s[4]),
        hard_cornering=round(s[5]),
        gaps=round(s[6]),
        tire_stress_g_m=(s[7], s[8], s[9], s[10]),
    )


@dataclass(frozen=True)
class Welford:
    """Running count, mean and M2 (sum of squared deviations) of a scalar.

    Welford's update is numerically stable for long runs; Chan's formula
    (:func:`merge_welford`) combines two states exactly as if one had seen
    both sequences.
    """

    n: int = 0
    mean: float = NAN
    m2: float = 0.0

    def add(self, x: float) -> Welford:
        """A new state with ``x`` included; a NaN ``x`` is ignored."""
        if not math.isfinite(x):
            return self
        n = self.n + 1
        if n == 1:
            return Welford(1, float(x), 0.0)
        delta = x - self.mean
        mean = self.mean + delta / n
        return Welford(n, mean, self.m2 + delta * (x - mean))

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1), NaN below two values."""
        return self.m2 / (self.n - 1) if self.n > 1 else NAN

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1), NaN below two values."""
        return math.sqrt(self.variance) if self.n > 1 else NAN

    @classmethod
    def of(cls, values: Iterable[float]) -> Welford:
        state = cls()
        for x in values:
            state = state.add(x)
        return state


def merge_welford(a: Welford, b: Welford) -> Welford:
    """Chan et al. (1979): combine the states of two disjoint sequences."""
    if a.n == 0:
        return b
    if b.n == 0:
        return a
    n = a.n + b.n
    delta = b.mean - a.mean
    mean = a.mean + delta * b.n / n
    m2 = a.m2 + b.m2 + delta * delta * a.n * b.n / n
    return Welford(n, mean, m2)


@dataclass(frozen=True)
class SectorRolling:
    """Rolling stats of one sector across a car's laps (timed sectors only)."""

    time_s: Welford = Welford()
    max_speed_kmh: Welford = Welford()
    best_time_s: float = NAN
    last_time_s: float = NAN
    last: Partial = EMPTY

    def add(self, time_s: float, part: Partial) -> SectorRolling:
        """Fold in one completed, timed sector run (time in s, its partial)."""
        return SectorRolling(
            time_s=self.time_s.add(time_s),
            max_speed_kmh=self.max_speed_kmh.add(part.speed_max_kmh),
            best_time_s=float(np.fmin(self.best_time_s, time_s)),
            last_time_s=time_s,
            last=part,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "laps": self.time_s.n,
            "time_mean_s": json_float(self.time_s.mean),
            "time_std_s": json_float(self.time_s.std),
            "time_best_s": json_float(self.best_time_s),
            "time_last_s": json_float(self.last_time_s),
            "max_speed_mean_kmh": json_float(self.max_speed_kmh.mean),
            "max_speed_std_kmh": json_float(self.max_speed_kmh.std),
            "last": self.last.to_dict(),
        }


def merge_rolling(a: SectorRolling, b: SectorRolling) -> SectorRolling:
    """Combine rolling stats; ``b`` is the later one (its last sector wins)."""
    later = b if b.time_s.n else a
    return SectorRolling(
        time_s=merge_welford(a.time_s, b.time_s),
        max_speed_kmh=merge_welford(a.max_speed_kmh, b.max_speed_kmh),
        best_time_s=float(np.fmin(a.best_time_s, b.best_time_s)),
        last_time_s=later.last_time_s,
        last=later.last,
    )
