"""A point-mass lap model that turns a track's curvature into GR86-like telemetry.

Used by the demo generator (and any test that needs plausible channels); the
numbers are meant to look and behave like a GR Cup car, not to predict lap
times. Pure numpy plus two sequential Python loops (the forward and backward
passes cannot be vectorised); no I/O.

Method (the usual quasi-steady-state lap simulation):

1. Lateral limit: a car at the grip limit on curvature kappa (1/m) can do
   ``v_max = sqrt(a_lat_mps2 / |kappa|)`` (m/s), capped at top speed.
2. Forward pass (acceleration): ``v[i+1]^2 <= v[i]^2 + 2 * a_drive * ds`` where
   ``a_drive = max(min(traction * ellipse, P / (m v)) - drag/m, 0)``.
3. Backward pass (braking): ``v[i-1]^2 <= v[i]^2 + 2 * a_brake * ds`` where
   ``a_brake = brake_g * g * ellipse + drag/m``.

``ellipse = sqrt(1 - (a_y / a_lat_max)^2)`` is the friction ellipse: grip used
sideways is not available for braking or driving. Signs follow the telemetry
contract: ``accx_can`` + = accelerating, ``accy_can`` + = left turn (kappa > 0),
steering + = left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

G_MPS2 = 9.80665


@dataclass(frozen=True)
class CarParams:
    """A GR86 Cup car, roughly: 1,350 kg with driver, ~130 kW at the wheels, 6-speed."""

    mass_kg: float = 1350.0
    lat_grip_g: float = 1.30
    brake_g: float = 1.30
    traction_g: float = 0.60
    wheel_power_w: float = 130_000.0
    drag_area_m2: float = 0.75  # Cd * frontal area
    air_density_kg_m3: float = 1.20
    rolling_coeff: float = 0.015
    top_speed_kmh: float = 220.0
    wheelbase_m: float = 2.575
    steering_ratio: float = 13.5
    gear_ratios: tuple[float, ...] = (3.626, 2.188, 1.541, 1.213, 1.000, 0.767)
    final_drive: float = 4.30
    tire_radius_m: float = 0.318
    upshift_rpm: float = 7200.0
    brake_bar_per_g: float = 100.0 / 1.3  # front line pressure per G of braking
    brake_front_share: float = 0.60


@dataclass(frozen=True)
class DrivingStyle:
    """How a driver uses the car. ``*_use`` are fractions of the car's limits."""

    name: str
    grip_use: float
    brake_use: float
    throttle_use: float
    tire_wear_pct_per_lap: float  # lateral/braking grip lost per lap of the stint, %
    lap_noise_pct: float  # standard deviation of lap-to-lap grip use, %
    pedal_smoothing_s: float  # moving-average width applied to accx (pedal ramps), s


STYLES: dict[str, DrivingStyle] = {
    "smooth": DrivingStyle("smooth", 0.97, 0.92, 0.95, 0.35, 0.15, 0.30),
    "aggressive": DrivingStyle("aggressive", 1.00, 1.00, 1.00, 0.55, 0.30, 0.10),
    "conservative": DrivingStyle("conservative", 0.93, 0.85, 0.90, 0.30, 0.15, 0.35),
}


def resistance_mps2(car: CarParams, speed_mps: np.ndarray | float) -> np.ndarray:
    """Deceleration from aero drag and rolling resistance, m/s^2 (positive number)."""
    v = np.asarray(speed_mps, dtype=np.float64)
    drag_n = 0.5 * car.air_density_kg_m3 * car.drag_area_m2 * v * v
    return drag_n / car.mass_kg + car.rolling_coeff * G_MPS2


def drive_limit_mps2(car: CarParams, speed_mps: np.ndarray | float) -> np.ndarray:
    """Largest tractive acceleration before drag, m/s^2: min(traction, P / (m v))."""
    v = np.maximum(np.asarray(speed_mps, dtype=np.float64), 1.0)
    return np.minimum(car.traction_g * G_MPS2, car.wheel_power_w / (car.mass_kg * v))


def lateral_limit_mps(
    kappa_per_m: np.ndarray, a_lat_mps2: np.ndarray | float, top_mps: float
) -> np.ndarray:
    """Cornering speed limit ``sqrt(a_lat / |kappa|)``, m/s, capped at ``top_mps``."""
    k = np.maximum(np.abs(np.asarray(kappa_per_m, dtype=np.float64)), 1e-9)
    return np.minimum(np.sqrt(np.asarray(a_lat_mps2) / k), top_mps)


def speed_profile_mps(
    kappa_per_m: np.ndarray,
    step_m: float,
    car: CarParams,
    a_lat_mps2: np.ndarray | float,
    brake_mps2: np.ndarray | float,
    drive_scale: float = 1.0,
    closed: bool = True,
) -> np.ndarray:
    """Speed (m/s) at each point of a curvature profile sampled every ``step_m`` metres.

    ``a_lat_mps2`` and ``brake_mps2`` are the grip the driver uses, per point or
    scalar (they vary per lap as tyres wear). ``closed=True`` treats the
    profile as one lap of a loop: the passes start at the slowest corner, where
    the speed is known, and wrap. ``closed=False`` treats it as an open path.
    """
    kappa = np.asarray(kappa_per_m, dtype=np.float64)
    n = len(kappa)
    a_lat = np.broadcast_to(np.asarray(a_lat_mps2, dtype=np.float64), (n,))
    brake = np.broadcast_to(np.asarray(brake_mps2, dtype=np.float64), (n,))
    v_lim = lateral_limit_mps(kappa, a_lat, car.top_speed_kmh / 3.6)
    shift = int(np.argmin(v_lim)) if closed else 0
    idx = np.roll(np.arange(n), -shift)
    if closed:
        idx = np.append(idx, idx[0])  # come back to the start point to close the loop
    v = v_lim[idx].copy()
    _forward_pass(v, kappa[idx], a_lat[idx], step_m, car, drive_scale)
    _backward_pass(v, kappa[idx], a_lat[idx], brake[idx], step_m, car)
    out = np.empty(n)
    out[idx[:n]] = v[:n]
    return out


def _ellipse(v: float, kappa: float, a_lat: float) -> float:
    """Share of longitudinal grip left after cornering: sqrt(1 - (v^2 kappa / a_lat)^2)."""
    used = v * v * abs(kappa) / a_lat
    return math.sqrt(1.0 - used * used) if used < 1.0 else 0.0


def _forward_pass(
    v: np.ndarray,
    kappa: np.ndarray,
    a_lat: np.ndarray,
    step_m: float,
    car: CarParams,
    drive_scale: float,
) -> None:
    """Cap v[i+1] by accelerating from v[i] over step_m (in place)."""
    trac = car.traction_g * G_MPS2 * drive_scale
    power = car.wheel_power_w * drive_scale / car.mass_kg
    drag = 0.5 * car.air_density_kg_m3 * car.drag_area_m2 / car.mass_kg
    roll = car.rolling_coeff * G_MPS2
    vl, kl, al = v.tolist(), kappa.tolist(), a_lat.tolist()  # Python floats: ~10x faster here
    for i in range(len(vl) - 1):
        vi = vl[i]
        a = min(trac * _ellipse(vi, kl[i], al[i]), power / max(vi, 1.0))
        # Never force a slowdown here: at the grip limit the car trades a little
        # lateral grip to hold speed against drag (top speed is capped separately).
        a = max(a - drag * vi * vi - roll, 0.0)
        v_next = math.sqrt(vi * vi + 2.0 * a * step_m)
        if v_next < vl[i + 1]:
            vl[i + 1] = v_next
    v[:] = vl


def _backward_pass(
    v: np.ndarray,
    kappa: np.ndarray,
    a_lat: np.ndarray,
    brake: np.ndarray,
    step_m: float,
    car: CarParams,
) -> None:
    """Cap v[i-1] so the car can brake down to v[i] over step_m (in place)."""
    drag = 0.5 * car.air_density_kg_m3 * car.drag_area_m2 / car.mass_kg
    roll = car.rolling_coeff * G_MPS2
    vl, kl, al, bl = v.tolist(), kappa.tolist(), a_lat.tolist(), brake.tolist()
    for i in range(len(vl) - 1, 0, -1):
        vi = vl[i]
        a = bl[i] * _ellipse(vi, kl[i], al[i]) + drag * vi * vi + roll
        v_prev = math.sqrt(vi * vi + 2.0 * a * step_m)
        if v_prev < vl[i - 1]:
            vl[i - 1] = v_prev
    v[:] = vl


def lap_time_s(speed_mps: np.ndarray, step_m: float) -> float:
    """Time round a closed profile, s: sum of ds / mean segment speed (constant acceleration)."""
    v = np.asarray(speed_mps, dtype=np.float64)
    return float(np.sum(2.0 * step_m / (v + np.roll(v, -1))))


@dataclass(frozen=True)
class Stint:
    """A car's drive on the distance grid (every ``step_m``), from its start offset.

    ``t_s``, ``dist_m``, ``speed_mps`` and ``kappa_per_m`` are per grid point;
    ``accel_mps2`` is per segment (one fewer), exact dv/dt for constant
    acceleration between points.
    """

    lap_length_m: float
    start_offset_m: float
    step_m: float
    t_s: np.ndarray
    dist_m: np.ndarray
    speed_mps: np.ndarray
    kappa_per_m: np.ndarray
    accel_mps2: np.ndarray
    style: DrivingStyle

    def time_at_distance_s(self, dist_m: float) -> float:
        """Session time (s) when the car had driven ``dist_m`` metres from its start."""
        return float(np.interp(dist_m, self.dist_m, self.t_s))


def lap_grip_factors(style: DrivingStyle, laps: int, rng: np.random.Generator) -> np.ndarray:
    """Grip multiplier per lap (index 0 = lap 1): linear tyre wear times per-lap noise."""
    wear = 1.0 - style.tire_wear_pct_per_lap / 100.0 * np.arange(laps)
    noise = 1.0 + style.lap_noise_pct / 100.0 * rng.standard_normal(laps)
    return wear * noise


def simulate_stint(
    kappa_lap: np.ndarray,
    step_m: float,
    car: CarParams,
    style: DrivingStyle,
    laps: int,
    start_offset_m: float,
    rng: np.random.Generator,
    skill: float = 1.0,
) -> Stint:
    """Drive ``laps`` laps of distance from ``start_offset_m`` (a flying start).

    ``kappa_lap`` is one lap of curvature (1/m) every ``step_m`` metres, from
    the start/finish line. ``skill`` (about 0.95-1.0) scales grip use. Grip
    falls each lap by the style's tyre wear. A lead-in lap before and a spare
    lap after the stint let the open-path passes settle.
    """
    n = len(kappa_lap)
    total_laps = laps + 3  # lead-in lap, `laps` laps starting mid-lap (so laps + 1), spare
    factors = lap_grip_factors(style, total_laps - 1, rng)
    per_lap = np.concatenate([factors[:1], factors])  # lead-in uses lap 1's grip
    grip = np.repeat(per_lap, n)
    kappa = np.tile(np.asarray(kappa_lap, dtype=np.float64), total_laps)
    a_lat = car.lat_grip_g * G_MPS2 * style.grip_use * skill * grip
    brake = car.brake_g * G_MPS2 * style.brake_use * skill * grip
    v = speed_profile_mps(kappa, step_m, car, a_lat, brake, style.throttle_use, closed=False)
    j0 = n + round(start_offset_m / step_m) % n
    j1 = j0 + laps * n + 1
    v, kappa = v[j0:j1], kappa[j0:j1]
    dt = 2.0 * step_m / (v[:-1] + v[1:])
    return Stint(
        lap_length_m=n * step_m,
        start_offset_m=(j0 - n) * step_m,
        step_m=step_m,
        t_s=np.concatenate([[0.0], np.cumsum(dt)]),
        dist_m=np.arange(len(v)) * step_m,
        speed_mps=v,
        kappa_per_m=kappa,
        accel_mps2=(v[1:] ** 2 - v[:-1] ** 2) / (2.0 * step_m),
        style=style,
    )


def gear_and_rpm(car: CarParams, speed_mps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gear (1..6) and engine rpm for road speeds (m/s).

    rpm = wheel rev/s * 60 * gear ratio * final drive, wheel rev/s = v / (2 pi r).
    The gear is the lowest one that keeps rpm at or under ``upshift_rpm``
    (highest power); rpm is clamped to 1000..7500.
    """
    v = np.asarray(speed_mps, dtype=np.float64)
    wheel_rpm = v / (2.0 * math.pi * car.tire_radius_m) * 60.0
    ratios = np.asarray(car.gear_ratios) * car.final_drive
    rpm_all = wheel_rpm[:, None] * ratios[None, :]
    fits = rpm_all <= car.upshift_rpm
    gear_idx = np.where(fits.any(axis=1), fits.argmax(axis=1), len(ratios) - 1)
    rpm = np.clip(rpm_all[np.arange(len(v)), gear_idx], 1000.0, 7500.0)
    return gear_idx + 1, rpm


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average with edge values repeated, same length as ``x``."""
    if width <= 1:
        return x
    padded = np.concatenate([np.full(width, x[0]), x, np.full(width, x[-1])])
    return np.convolve(padded, np.ones(width) / width, mode="same")[width:-width]


def sample_stint(
    stint: Stint, car: CarParams, rate_hz: float, duration_s: float
) -> dict[str, np.ndarray]:
    """Telemetry channels every 1/``rate_hz`` s from t = 0 for ``duration_s`` seconds.

    Units: t_s s, lapdist_m m, speed_kmh km/h, accx_can/accy_can G,
    Steering_Angle degrees at the wheel rim (kinematic: kappa * wheelbase *
    steering ratio), pbrake_f/pbrake_r bar, throttle_pct 0-100, rpm 1/min.
    ``lap`` starts at 1 and counts start/finish crossings.
    """
    t = np.arange(round(duration_s * rate_hz)) / rate_hz
    t = t[t <= stint.t_s[-1]]
    dist = np.interp(t, stint.t_s, stint.dist_m)
    v = np.interp(t, stint.t_s, stint.speed_mps)
    kappa = np.interp(t, stint.t_s, stint.kappa_per_m)
    seg = np.clip(np.searchsorted(stint.t_s, t, side="right") - 1, 0, len(stint.accel_mps2) - 1)
    smooth_n = round(stint.style.pedal_smoothing_s * rate_hz)
    ax = _moving_average(stint.accel_mps2[seg], smooth_n)
    resist = resistance_mps2(car, v)
    brake_g = np.maximum(-(ax + resist), 0.0) / G_MPS2
    pbrake_f = brake_g * car.brake_bar_per_g
    throttle = np.clip((ax + resist) / drive_limit_mps2(car, v), 0.0, 1.0) * 100.0
    pos = stint.start_offset_m + dist
    lap_idx = np.floor(pos / stint.lap_length_m)
    gear, rpm = gear_and_rpm(car, v)
    return {
        "t_s": t,
        "lap": lap_idx.astype(np.int64) + 1,
        "lapdist_m": pos - lap_idx * stint.lap_length_m,
        "speed_kmh": v * 3.6,
        "accx_can": ax / G_MPS2,
        "accy_can": v * v * kappa / G_MPS2,
        "Steering_Angle": np.degrees(kappa * car.wheelbase_m * car.steering_ratio),
        "pbrake_f": pbrake_f,
        "pbrake_r": pbrake_f * (1.0 - car.brake_front_share) / car.brake_front_share,
        "rpm": rpm,
        "throttle_pct": throttle,
        "gear": gear,
    }
