"""pitwall_rt.vehicle_model: hand-checkable cases for the lap model and its channels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pitwall_rt import vehicle_model as vm

G = vm.G_MPS2
CAR = vm.CarParams()
STEP_M = 2.0
# A driver at exactly the car's limits, with no tyre wear and no lap-to-lap noise.
EXACT = vm.DrivingStyle("exact", 1.0, 1.0, 1.0, 0.0, 0.0, 0.0)


def circle_kappa(radius_m: float, sign: float = 1.0) -> np.ndarray:
    n = round(2 * math.pi * radius_m / STEP_M)
    return np.full(n, sign / radius_m)


def stadium_kappa(straight_m: float = 600.0, radius_m: float = 30.0) -> np.ndarray:
    """Straight, 180-degree left hairpin, straight, hairpin: a closed oval (1/m per 2 m)."""
    straight = np.zeros(round(straight_m / STEP_M))
    hairpin = np.full(round(math.pi * radius_m / STEP_M), 1.0 / radius_m)
    return np.concatenate([straight, hairpin, straight, hairpin])


def run(
    kappa: np.ndarray,
    style: vm.DrivingStyle = EXACT,
    laps: int = 2,
    offset_m: float = 0.0,
    seed: int = 1,
) -> tuple[vm.Stint, dict[str, np.ndarray]]:
    stint = vm.simulate_stint(
        kappa, STEP_M, CAR, style, laps, offset_m, np.random.default_rng(seed)
    )
    return stint, vm.sample_stint(stint, CAR, 20, stint.t_s[-1])


def test_speed_profile_is_sqrt_a_lat_r_when_track_is_a_circle() -> None:
    a_lat = CAR.lat_grip_g * G
    v = vm.speed_profile_mps(circle_kappa(100.0), STEP_M, CAR, a_lat, CAR.brake_g * G)
    assert v == pytest.approx(math.sqrt(a_lat * 100.0), rel=1e-9)


def test_speed_profile_is_capped_at_top_speed_when_track_is_straightish() -> None:
    v = vm.speed_profile_mps(circle_kappa(5000.0), STEP_M, CAR, 12.0, 12.0)
    assert v.max() == pytest.approx(CAR.top_speed_kmh / 3.6)


@pytest.mark.parametrize(("sign", "expected_sign"), [(1.0, 1.0), (-1.0, -1.0)])
def test_channels_on_a_circle_are_constant_with_lateral_g_signed_left(
    sign: float, expected_sign: float
) -> None:
    radius_m = 80.0
    _, ch = run(circle_kappa(radius_m, sign))
    expected_kmh = math.sqrt(CAR.lat_grip_g * G * radius_m) * 3.6
    assert ch["speed_kmh"] == pytest.approx(expected_kmh, rel=1e-6)
    assert ch["accy_can"] == pytest.approx(expected_sign * CAR.lat_grip_g, rel=1e-6)
    assert ch["accx_can"] == pytest.approx(0.0, abs=1e-9)
    assert np.all(ch["pbrake_f"] == 0.0) and np.all(ch["pbrake_r"] == 0.0)
    # kinematic steering: kappa * wheelbase * ratio, in degrees at the wheel rim
    steer = math.degrees(CAR.wheelbase_m * CAR.steering_ratio / radius_m)
    assert ch["Steering_Angle"] == pytest.approx(expected_sign * steer, rel=1e-6)


def test_brakes_before_a_tight_corner_when_coming_off_a_straight() -> None:
    _, ch = run(stadium_kappa())
    d, lap = ch["lapdist_m"], ch["lap"]
    approach = (lap == 1) & (d > 350.0) & (d < 600.0)  # hairpin starts at 600 m
    assert ch["accx_can"][approach].min() < -1.0
    assert ch["pbrake_f"][approach].max() > 70.0
    braking = approach & (ch["pbrake_f"] > 1.0)
    assert np.all(ch["throttle_pct"][braking] == 0.0)
    # rear pressure follows the 60/40 front bias
    assert ch["pbrake_r"][braking] == pytest.approx(ch["pbrake_f"][braking] * 40 / 60)
    # ~100 bar front at 1.3 G of braking (drag adds a little deceleration on top)
    assert ch["pbrake_f"].max() == pytest.approx(100.0, abs=2.0)


def test_accelerates_on_full_throttle_when_leaving_a_hairpin() -> None:
    _, ch = run(stadium_kappa())
    d, lap = ch["lapdist_m"], ch["lap"]
    exit_zone = (lap == 1) & (d > 700.0) & (d < 800.0)
    assert ch["accx_can"][exit_zone].max() > 0.3
    assert ch["throttle_pct"][exit_zone].max() == 100.0
    assert np.all(ch["pbrake_f"][exit_zone] == 0.0)


def test_hairpin_speed_is_the_lateral_limit_when_at_the_apex() -> None:
    _, ch = run(stadium_kappa(radius_m=30.0))
    in_corner = (ch["lapdist_m"] > 650.0) & (ch["lapdist_m"] < 680.0)
    assert ch["speed_kmh"][in_corner].min() == pytest.approx(
        math.sqrt(CAR.lat_grip_g * G * 30.0) * 3.6, rel=0.01
    )


def test_lap_increments_when_lapdist_wraps() -> None:
    stint, ch = run(stadium_kappa(), laps=3, offset_m=500.0)
    assert ch["lap"][0] == 1 and ch["lapdist_m"][0] == pytest.approx(500.0)
    steps = np.diff(ch["lap"])
    assert set(steps.tolist()) <= {0, 1}
    wraps = np.nonzero(steps)[0]
    assert len(wraps) == 3
    assert np.all(ch["lapdist_m"][wraps] > ch["lapdist_m"][wraps + 1])
    assert stint.dist_m[-1] == pytest.approx(3 * stint.lap_length_m)


def test_gear_and_rpm_follow_speed_and_stay_in_range() -> None:
    speeds_kmh = np.array([0.0, 30.0, 60.0, 100.0, 150.0, 200.0, 260.0])
    gear, rpm = vm.gear_and_rpm(CAR, speeds_kmh / 3.6)
    assert gear[0] == 1 and rpm[0] == 1000.0
    assert np.all(np.diff(gear) >= 0)
    assert gear[-1] == 6
    assert np.all((rpm >= 1000.0) & (rpm <= 7500.0))
    # 100 km/h in 3rd: v / (2 pi r) * 60 * 1.541 * 4.30
    wheel_rpm = 100 / 3.6 / (2 * math.pi * CAR.tire_radius_m) * 60
    assert gear[3] == 3 and rpm[3] == pytest.approx(wheel_rpm * 1.541 * 4.30)


def test_lap_times_rise_with_tyre_wear_when_noise_is_off() -> None:
    worn = vm.DrivingStyle("worn", 1.0, 1.0, 1.0, 0.6, 0.0, 0.0)
    stint, _ = run(stadium_kappa(straight_m=300.0), style=worn, laps=5)
    crossings = [stint.time_at_distance_s(k * stint.lap_length_m) for k in range(6)]
    lap_times = np.diff(crossings)
    assert np.all(np.diff(lap_times) > 0.0)


def test_lap_grip_factors_are_reproducible_for_a_seed_and_differ_between_seeds() -> None:
    style = vm.STYLES["aggressive"]
    a = vm.lap_grip_factors(style, 5, np.random.default_rng(3))
    b = vm.lap_grip_factors(style, 5, np.random.default_rng(3))
    c = vm.lap_grip_factors(style, 5, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(np.abs(a - 1.0) < 0.05)


def test_aggressive_style_laps_faster_than_conservative() -> None:
    kappa = stadium_kappa()
    times = {}
    for name in ("aggressive", "smooth", "conservative"):
        style = vm.STYLES[name]
        v = vm.speed_profile_mps(
            kappa,
            STEP_M,
            CAR,
            CAR.lat_grip_g * G * style.grip_use,
            CAR.brake_g * G * style.brake_use,
        )
        times[name] = vm.lap_time_s(v, STEP_M)
    assert times["aggressive"] < times["smooth"] < times["conservative"]


def test_lap_time_of_a_circle_is_circumference_over_speed() -> None:
    kappa = circle_kappa(100.0)
    v = np.full(len(kappa), 20.0)
    assert vm.lap_time_s(v, STEP_M) == pytest.approx(len(kappa) * STEP_M / 20.0)
