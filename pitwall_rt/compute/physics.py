"""Per-point tire load and stress proxies from CAN accelerations, in pure numpy.

Inputs are the stored columns (see :mod:`pitwall_rt.schema`): ``accx_can`` in
G (+ = accelerating), ``accy_can`` in G (+ = turning left), ``speed_kmh``,
``pbrake_f`` / ``pbrake_r`` in bar and the sample time ``t`` in epoch seconds.
A missing value (NaN) never poisons a result: a missing acceleration counts
as 0 G, a missing pressure as no braking. A missing speed holds the last
reading for up to ``SPEED_HOLD_S`` (GR Cup cars log speed at a fifth of the
rate of their accelerations: every 0.22 s against 0.04 in tests/data/grcup,
and counting the rows between as standing still cut every tire's stress to
a fifth); after that it counts as standing still.

Tire order everywhere is ``CORNERS`` = FL, FR, RL, RR.

Load model (quasi-static, rigid car, no aero: a GR86 makes no useful
downforce). With W = m*g and the static front fraction f:

* static corner load: front ``f*W/2``, rear ``(1-f)*W/2`` (N);
* longitudinal transfer ``dWx = m * a_x * h / wheelbase`` (N): accelerating
  (a_x > 0) moves dWx from the front axle to the rear, braking the reverse;
  each tire of an axle takes half;
* lateral transfer ``dWy = m * a_y * h / track_width`` (N): a left turn
  (a_y > 0) moves dWy from the left side to the right side, split between the
  axles in the static weight ratio (roll stiffness assumed to follow weight).

A tire cannot pull, so loads are clipped at 0 N (wheel lift).

Stress model: the force a tire transmits is about its share of the total
grip demand, ``N_i * |a| / g``, and the energy it dissipates in slip grows
with that force times the road speed. The per-tire stress rate is therefore
``load_norm_i * |G| * v`` in G*m/s, and its time integral is in "G*m": a tire
at its static load pulling 1 G over 1 m of road accumulates 1. Brake pressure
feeds the brake energy proxy and the hard-braking events, not the load: the
deceleration it causes is already measured by ``accx_can``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from ..row_fields import FieldSource

STANDARD_GRAVITY_MPS2: Final = 9.80665
KMH_TO_MPS: Final = 1.0 / 3.6
CORNERS: Final = ("fl", "fr", "rl", "rr")

MAX_DT_S: Final = 1.0
"""Longest interval (s) one sample is credited with: a gap in the stream
(a lost second of UDP, a car in the pits) must not integrate as if the car
kept pulling the last G it reported."""

SPEED_HOLD_S: Final = 1.0
"""How long a speed reading stands for the rows after it that have none."""

GAP_S: Final = 5.0
"""An interval longer than this (s) between two samples is a gap in the data."""

HARD_BRAKE_G: Final = 0.8
"""Deceleration (G, positive) above which braking is "hard"."""
HARD_BRAKE_BAR: Final = 40.0
"""Front brake pressure (bar) above which braking is "hard" even without G data."""
HARD_CORNER_G: Final = 1.0
"""Lateral acceleration magnitude (G) above which cornering is "hard"."""


@dataclass(frozen=True)
class CarParams:
    """Mass and geometry for the weight-transfer model (SI units)."""

    mass_kg: float = 1300.0
    cg_height_m: float = 0.46
    wheelbase_m: float = 2.575
    track_width_m: float = 1.52
    front_static_fraction: float = 0.53

    def static_corner_loads_n(self) -> np.ndarray:
        """Static vertical load per tire, N, in ``CORNERS`` order."""
        weight_n = self.mass_kg * STANDARD_GRAVITY_MPS2
        front = self.front_static_fraction * weight_n / 2.0
        rear = (1.0 - self.front_static_fraction) * weight_n / 2.0
        return np.array([front, front, rear, rear])


GR86: Final = CarParams()
"""A Toyota GR86 in GR Cup trim, with driver: the default car."""


def _zero_nan(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isnan(values), 0.0, values)


def corner_loads_n(accx_g: np.ndarray, accy_g: np.ndarray, car: CarParams = GR86) -> np.ndarray:
    """Vertical load per tire (N), shape ``(n, 4)`` in ``CORNERS`` order.

    Static split plus longitudinal and lateral weight transfer (module
    docstring); missing accelerations count as 0 G; clipped at 0 N.
    """
    ax_mps2 = _zero_nan(accx_g) * STANDARD_GRAVITY_MPS2
    ay_mps2 = _zero_nan(accy_g) * STANDARD_GRAVITY_MPS2
    dwx_n = car.mass_kg * ax_mps2 * car.cg_height_m / car.wheelbase_m
    dwy_n = car.mass_kg * ay_mps2 * car.cg_height_m / car.track_width_m
    f = car.front_static_fraction
    # Sign of each transfer per corner: +x loads the rear, +y (left turn) the right.
    x_sign = np.array([-0.5, -0.5, 0.5, 0.5])
    y_share = np.array([-f, f, -(1.0 - f), 1.0 - f])
    loads = car.static_corner_loads_n() + np.outer(dwx_n, x_sign) + np.outer(dwy_n, y_share)
    return np.maximum(loads, 0.0)


def normalised_loads(accx_g: np.ndarray, accy_g: np.ndarray, car: CarParams = GR86) -> np.ndarray:
    """Load per tire divided by its static load: 1.0 = parked, shape ``(n, 4)``."""
    return corner_loads_n(accx_g, accy_g, car) / car.static_corner_loads_n()


def stress_rate_g_mps(
    load_norm: np.ndarray, accx_g: np.ndarray, accy_g: np.ndarray, speed_kmh: np.ndarray
) -> np.ndarray:
    """Per-tire slip-energy proxy rate ``load_norm * |G| * v`` in G*m/s, shape ``(n, 4)``.

    ``|G| = hypot(accx, accy)`` is the total grip demand; ``v`` in m/s. Missing
    inputs count as 0, so they add no stress.
    """
    total_g = np.hypot(_zero_nan(accx_g), _zero_nan(accy_g))
    speed_mps = np.maximum(_zero_nan(speed_kmh), 0.0) * KMH_TO_MPS
    return load_norm * (total_g * speed_mps)[:, None]


def sample_dt_s(t_s: np.ndarray, prev_t_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Interval each sample is credited with, and where the stream had a gap.

    Sample ``i`` owns the interval ``(t[i-1], t[i]]``; the first sample's
    predecessor is ``prev_t_s`` (NaN for the first sample ever: it owns 0 s).
    Returns ``(dt_s clipped to [0, MAX_DT_S], gap = raw interval > GAP_S)``.
    """
    return _dt_after(t_s, np.concatenate(([prev_t_s], t_s[:-1])))


def _dt_after(t_s: np.ndarray, prev_t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sample_dt_s` given each sample's predecessor time."""
    raw_s = t_s - prev_t_s
    gap = raw_s > GAP_S  # NaN compares False
    return np.clip(_zero_nan(raw_s), 0.0, MAX_DT_S), gap


def rising_edges(flag: np.ndarray, prev_on: bool) -> np.ndarray:
    """True where ``flag`` turns on; ``prev_on`` is the flag before the first sample.

    Counting edges instead of samples makes an event count independent of
    the sample rate: one braking zone is one event at 10 Hz or at 100 Hz.
    """
    before = np.concatenate(([prev_on], flag[:-1]))
    return flag & ~before


def hard_braking_mask(accx_g: np.ndarray, pbrake_f_bar: np.ndarray) -> np.ndarray:
    """Hard braking: decel beyond ``HARD_BRAKE_G`` or front pressure over ``HARD_BRAKE_BAR``."""
    return (accx_g < -HARD_BRAKE_G) | (pbrake_f_bar > HARD_BRAKE_BAR)


def hard_cornering_mask(accy_g: np.ndarray) -> np.ndarray:
    """Hard cornering: lateral acceleration magnitude beyond ``HARD_CORNER_G``."""
    return np.abs(accy_g) > HARD_CORNER_G


def brake_pressure_bar(pbrake_f: np.ndarray, pbrake_r: np.ndarray) -> np.ndarray:
    """Mean of the available front/rear pressures (bar), negatives (sensor offset) and NaN as 0."""
    both = np.stack((pbrake_f, pbrake_r))
    present = np.isfinite(both)
    total = np.where(present, np.maximum(both, 0.0), 0.0).sum(axis=0)
    return total / np.maximum(present.sum(axis=0), 1)


@dataclass(frozen=True)
class PhysicsCarry:
    """What the next batch of one car needs from the previous one."""

    last_t: float = float("nan")
    braking: bool = False
    cornering: bool = False
    speed: tuple[float, float] = (float("nan"), float("nan"))  # the last reading: (t, km/h)


@dataclass(frozen=True)
class PointPhysics:
    """Per-sample results for one car's time-sorted rows (all length n).

    ``stress_g_m`` and ``brake_bar_s`` are already multiplied by ``dt_s``, so
    summing them over any set of samples gives that set's total.
    """

    dt_s: np.ndarray
    gap: np.ndarray
    load_norm: np.ndarray
    stress_g_m: np.ndarray
    brake_bar_s: np.ndarray
    hard_brake_edge: np.ndarray
    hard_corner_edge: np.ndarray

    def part(self, start: int, stop: int) -> PointPhysics:
        """Samples ``start:stop`` (views, not copies)."""
        return PointPhysics(
            self.dt_s[start:stop],
            self.gap[start:stop],
            self.load_norm[start:stop],
            self.stress_g_m[start:stop],
            self.brake_bar_s[start:stop],
            self.hard_brake_edge[start:stop],
            self.hard_corner_edge[start:stop],
        )


def point_physics(
    rows: np.ndarray, carry: PhysicsCarry, car: CarParams = GR86
) -> tuple[PointPhysics, PhysicsCarry]:
    """Physics for one car's rows (``POINT_DTYPE``, sorted by ``t``, no duplicates).

    Returns the per-sample results and the carry for the next batch, so a
    stream cut into batches anywhere gives the same sums as one batch.
    """
    phys, carries = point_physics_runs(rows, np.zeros(1, dtype=np.intp), [carry], car)
    return phys, carries[0]


def point_physics_runs(
    rows: FieldSource, starts: np.ndarray, carries: Sequence[PhysicsCarry], car: CarParams = GR86
) -> tuple[PointPhysics, list[PhysicsCarry]]:
    """:func:`point_physics` of several cars in one pass over their rows.

    Run ``k`` is ``rows[starts[k]:starts[k + 1]]`` (the last one to the end;
    ``starts`` non-decreasing from 0, so a run may be empty), one car's rows
    sorted by ``t``, continuing from ``carries[k]``. Every per-sample value is
    an element-wise function of the sample and its run predecessor, so
    ``result.part(starts[k], starts[k + 1])`` equals, bit for bit, what
    :func:`point_physics` gives for run ``k`` alone. Returns the results and
    each run's carry for the next batch (an empty run's carry unchanged).
    """
    t = rows["t"]
    ends = np.append(starts[1:], len(t))
    firsts = [int(i) for i, e in zip(starts, ends, strict=True) if e > i]
    runs = [c for c, i, e in zip(carries, starts, ends, strict=True) if e > i]
    accx, accy = rows["accx_can"], rows["accy_can"]
    prev_t = _after_runs(t, firsts, [c.last_t for c in runs])
    dt_s, gap = _dt_after(t, prev_t)
    load_norm = normalised_loads(accx, accy, car)
    speed, last_speed = held_speed(t, rows["speed_kmh"], starts, [c.speed for c in carries])
    rate = stress_rate_g_mps(load_norm, accx, accy, speed)
    braking = hard_braking_mask(accx, rows["pbrake_f"])
    cornering = hard_cornering_mask(accy)
    result = PointPhysics(
        dt_s=dt_s,
        gap=gap,
        load_norm=load_norm,
        stress_g_m=rate * dt_s[:, None],
        brake_bar_s=brake_pressure_bar(rows["pbrake_f"], rows["pbrake_r"]) * dt_s,
        hard_brake_edge=braking & ~_after_runs(braking, firsts, [c.braking for c in runs]),
        hard_corner_edge=cornering & ~_after_runs(cornering, firsts, [c.cornering for c in runs]),
    )
    new_carries = [
        PhysicsCarry(float(t[e - 1]), bool(braking[e - 1]), bool(cornering[e - 1]), held)
        if e > i
        else c
        for c, i, e, held in zip(carries, starts.tolist(), ends.tolist(), last_speed, strict=True)
    ]
    return result, new_carries


def held_speed(
    t: np.ndarray, speed_kmh: np.ndarray, starts: np.ndarray, carried: Sequence[tuple[float, float]]
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Speed per sample, a gap taking its run's last reading (``carried[k]``,
    (t, km/h), before run ``k``'s first sample) while that is at most
    ``SPEED_HOLD_S`` old, else NaN; and each run's last reading, to carry.
    A sample with a reading keeps it as it is."""
    n = len(t)
    counts = np.diff(np.append(starts, n))
    if np.isfinite(speed_kmh).all():  # the usual stream: every row has one
        filled, held_t, held_v = speed_kmh, t, speed_kmh
    else:
        index = np.maximum.accumulate(np.where(np.isfinite(speed_kmh), np.arange(n), -1))
        in_run = index >= np.repeat(starts, counts)
        at = np.maximum(index, 0)
        held_t = np.where(in_run, t[at], np.repeat([c[0] for c in carried], counts))
        held_v = np.where(in_run, speed_kmh[at], np.repeat([c[1] for c in carried], counts))
        with np.errstate(invalid="ignore"):
            filled = np.where(t - held_t <= SPEED_HOLD_S, held_v, np.nan)
    last = [
        (float(held_t[i + c - 1]), float(held_v[i + c - 1])) if c else carry
        for i, c, carry in zip(starts.tolist(), counts.tolist(), carried, strict=True)
    ]
    return filled, last


def _after_runs(values: np.ndarray, firsts: list[int], carried: list[object]) -> np.ndarray:
    """Each sample's predecessor in its run: the previous sample, or at a run's
    first sample the value carried from the run's previous batch."""
    prev = np.empty_like(values)
    prev[1:] = values[:-1]
    prev[firsts] = carried
    return prev
