"""Tire load / stress proxies, brake energy and event edges on hand-computed arrays."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pitwall_rt.compute.physics import (
    GR86,
    MAX_DT_S,
    SPEED_HOLD_S,
    PhysicsCarry,
    brake_pressure_bar,
    corner_loads_n,
    hard_braking_mask,
    hard_cornering_mask,
    normalised_loads,
    point_physics,
    point_physics_runs,
    rising_edges,
    sample_dt_s,
    stress_rate_g_mps,
)
from pitwall_rt.schema import empty_rows

G = 9.80665
W_N = 1300.0 * G
STATIC_FRONT_N = 0.53 * W_N / 2  # 3378.39 N per front tire
STATIC_REAR_N = 0.47 * W_N / 2  # 2995.93 N per rear tire
DWX_PER_G_N = 1300.0 * G * 0.46 / 2.575  # 2277.4 N moved between axles per G
DWY_PER_G_N = 1300.0 * G * 0.46 / 1.52  # 3858.1 N moved between sides per G

FL, FR, RL, RR = range(4)


def arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def test_corner_loads_equal_static_split_when_car_is_steady() -> None:
    loads = corner_loads_n(arr(0.0), arr(0.0))[0]
    assert loads == pytest.approx([STATIC_FRONT_N, STATIC_FRONT_N, STATIC_REAR_N, STATIC_REAR_N])
    assert loads.sum() == pytest.approx(W_N)
    assert normalised_loads(arr(0.0), arr(0.0))[0] == pytest.approx([1, 1, 1, 1])


def test_corner_loads_load_right_tires_in_steady_left_turn() -> None:
    loads = corner_loads_n(arr(0.0), arr(1.0))[0]  # +1 G = turning left
    assert loads[FR] > loads[FL] and loads[RR] > loads[RL]
    assert loads[FR] == pytest.approx(STATIC_FRONT_N + 0.53 * DWY_PER_G_N)
    assert loads[FL] == pytest.approx(STATIC_FRONT_N - 0.53 * DWY_PER_G_N)
    assert loads[RR] == pytest.approx(STATIC_REAR_N + 0.47 * DWY_PER_G_N)
    assert loads[RL] == pytest.approx(STATIC_REAR_N - 0.47 * DWY_PER_G_N)
    assert loads.sum() == pytest.approx(W_N)


def test_corner_loads_load_left_tires_in_right_turn() -> None:
    loads = corner_loads_n(arr(0.0), arr(-0.8))[0]
    assert loads[FL] > loads[FR] and loads[RL] > loads[RR]


def test_corner_loads_load_fronts_when_braking_hard() -> None:
    loads = corner_loads_n(arr(-1.2), arr(0.0))[0]
    assert loads[FL] == pytest.approx(STATIC_FRONT_N + 1.2 * DWX_PER_G_N / 2)
    assert loads[RL] == pytest.approx(STATIC_REAR_N - 1.2 * DWX_PER_G_N / 2)
    assert loads[FL] == loads[FR] and loads[RL] == loads[RR]
    assert loads[FL] > loads[RL]


def test_corner_loads_load_rears_when_accelerating() -> None:
    norm = normalised_loads(arr(0.4), arr(0.0))[0]
    assert norm[RL] > 1.0 > norm[FL]
    assert norm[RR] == pytest.approx(1 + 0.4 * DWX_PER_G_N / 2 / STATIC_REAR_N)


def test_corner_loads_clip_at_zero_when_inner_wheel_lifts() -> None:
    loads = corner_loads_n(arr(0.0), arr(3.0))[0]
    assert loads[FL] == 0.0 and loads[RL] == 0.0


def test_corner_loads_treat_missing_acceleration_as_zero() -> None:
    norm = normalised_loads(arr(np.nan, 1.0), arr(np.nan, np.nan))
    assert norm[0] == pytest.approx([1, 1, 1, 1])
    assert norm[1] == pytest.approx(normalised_loads(arr(1.0), arr(0.0))[0])


def test_stress_rate_is_load_times_total_g_times_speed() -> None:
    accx, accy, speed = arr(0.3), arr(0.4), arr(72.0)  # |G| = 0.5, v = 20 m/s
    norm = normalised_loads(accx, accy)
    rate = stress_rate_g_mps(norm, accx, accy, speed)
    assert rate[0] == pytest.approx(norm[0] * 0.5 * 20.0)


def test_stress_rate_is_zero_when_speed_or_g_missing() -> None:
    accx, accy, speed = arr(np.nan, 0.5), arr(np.nan, 0.5), arr(100.0, np.nan)
    rate = stress_rate_g_mps(normalised_loads(accx, accy), accx, accy, speed)
    assert np.all(rate == 0.0)


def test_sample_dt_clips_long_intervals_and_flags_gaps() -> None:
    dt, gap = sample_dt_s(arr(10.0, 10.1, 10.6, 12.6, 20.0), prev_t_s=np.nan)
    assert dt == pytest.approx([0.0, 0.1, 0.5, MAX_DT_S, MAX_DT_S])
    assert gap.tolist() == [False, False, False, False, True]
    dt, _ = sample_dt_s(arr(10.2), prev_t_s=10.0)
    assert dt == pytest.approx([0.2])


def test_rising_edges_count_events_not_samples() -> None:
    flag = np.array([True, True, False, True, True, True, False, True])
    assert rising_edges(flag, prev_on=False).sum() == 3
    assert rising_edges(flag, prev_on=True).sum() == 2


def test_hard_braking_fires_on_g_or_front_pressure() -> None:
    accx = arr(-0.9, -0.5, np.nan, -0.5, np.nan)
    pbrake = arr(0.0, 45.0, 50.0, 10.0, np.nan)
    assert hard_braking_mask(accx, pbrake).tolist() == [True, True, True, False, False]


def test_hard_cornering_fires_either_way() -> None:
    assert hard_cornering_mask(arr(1.1, -1.2, 0.9, np.nan)).tolist() == [True, True, False, False]


def test_brake_pressure_averages_available_sensors() -> None:
    p = brake_pressure_bar(arr(40.0, 30.0, np.nan, -2.0), arr(20.0, np.nan, np.nan, -2.0))
    assert p == pytest.approx([30.0, 30.0, 0.0, 0.0])


def _rows(n: int) -> np.ndarray:
    rows = empty_rows(n)
    rows["t"] = 100.0 + 0.05 * np.arange(n)
    rows["accx_can"] = np.sin(np.arange(n) / 3.0) * 1.1
    rows["accy_can"] = np.cos(np.arange(n) / 5.0) * 1.3
    rows["speed_kmh"] = 120.0
    rows["pbrake_f"] = np.where(rows["accx_can"] < 0, 60.0, 0.0)
    return rows


def test_point_physics_gives_same_sums_when_split_with_carry() -> None:
    rows = _rows(40)
    whole, _ = point_physics(rows, PhysicsCarry())
    first, carry = point_physics(rows[:17], PhysicsCarry())
    second, _ = point_physics(rows[17:], carry)
    for name in ("dt_s", "stress_g_m", "brake_bar_s", "hard_brake_edge", "hard_corner_edge"):
        joined = np.concatenate((getattr(first, name), getattr(second, name)))
        np.testing.assert_allclose(joined, getattr(whole, name))


def test_point_physics_integrates_brake_pressure_over_time() -> None:
    rows = empty_rows(3)
    rows["t"] = [0.0, 0.5, 1.0]
    rows["pbrake_f"] = [50.0, 50.0, 0.0]
    rows["pbrake_r"] = [30.0, 30.0, 0.0]
    phys, carry = point_physics(rows, PhysicsCarry())
    assert phys.brake_bar_s.sum() == pytest.approx(40.0 * 0.5)  # first sample owns 0 s
    assert phys.hard_brake_edge.sum() == 1 and carry.braking is False
    assert carry.last_t == 1.0


def test_gr86_static_loads_match_spec() -> None:
    assert GR86.static_corner_loads_n().sum() == pytest.approx(W_N)


def _one_car(rows: np.ndarray, carry: PhysicsCarry) -> list[np.ndarray]:
    """Per-sample physics of one car from the public pieces, independently of
    ``point_physics_runs``: what ``point_physics`` computed before runs existed."""
    accx, accy = rows["accx_can"], rows["accy_can"]
    dt, gap = sample_dt_s(rows["t"], carry.last_t)
    load = normalised_loads(accx, accy)
    rate = stress_rate_g_mps(load, accx, accy, rows["speed_kmh"])
    return [
        dt,
        gap,
        load,
        rate * dt[:, None],
        brake_pressure_bar(rows["pbrake_f"], rows["pbrake_r"]) * dt,
        rising_edges(hard_braking_mask(accx, rows["pbrake_f"]), carry.braking),
        rising_edges(hard_cornering_mask(accy), carry.cornering),
    ]


def test_point_physics_runs_equal_each_car_alone_bit_for_bit() -> None:
    rows = np.concatenate((_rows(40), _rows(0), _rows(23), _rows(1), _rows(0)))
    starts = np.array([0, 40, 40, 63, 64])
    carries = [
        PhysicsCarry(),
        PhysicsCarry(99.0, True, True),
        PhysicsCarry(99.9, True, False),
        PhysicsCarry(99.5, False, True),
        PhysicsCarry(1.0, True, True),
    ]
    phys, after = point_physics_runs(rows, starts, carries)
    ends = [*starts[1:], len(rows)]
    for k, (i, j) in enumerate(zip(starts, ends, strict=True)):
        part = phys.part(i, j)
        got = [getattr(part, f.name) for f in dataclasses.fields(part)]
        for a, b in zip(got, _one_car(rows[i:j], carries[k]), strict=True):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), k
        _, carry = point_physics(rows[i:j], carries[k])
        assert after[k] == carry
    assert after[1] is carries[1] and after[4] is carries[4]  # empty runs: carry unchanged
    assert after[3] == PhysicsCarry(100.0, False, True, (100.0, 120.0))  # no braking, 1.3 G


def test_point_physics_holds_a_speed_logged_at_a_fifth_of_the_rate() -> None:
    """GR Cup cars log speed on about one row in five: the rows between take
    the last reading, so the stress is that of the full stream, bit for bit
    at a constant speed (it was a fifth), and the same however it is split."""
    full = _rows(60)
    sparse = full.copy()
    sparse["speed_kmh"][np.arange(60) % 5 != 0] = np.nan
    want, _ = point_physics(full, PhysicsCarry())
    got, _ = point_physics(sparse, PhysicsCarry())
    assert got.stress_g_m.tobytes() == want.stress_g_m.tobytes()
    first, carry = point_physics(sparse[:23], PhysicsCarry())  # rows 20-22 lean on row 20
    second, _ = point_physics(sparse[23:], carry)  # rows 23-24 on the carried reading
    joined = np.concatenate((first.stress_g_m, second.stress_g_m))
    assert joined.tobytes() == want.stress_g_m.tobytes()


def test_point_physics_a_speed_reading_older_than_the_hold_counts_for_nothing() -> None:
    """A reading stands for SPEED_HOLD_S; after that a row with no speed is
    standing still, as a row of a car that never sent one."""
    rows = _rows(3)
    rows["t"] = [0.0, SPEED_HOLD_S, SPEED_HOLD_S + 0.5]
    rows["speed_kmh"] = [100.0, np.nan, np.nan]
    phys, carry = point_physics(rows, PhysicsCarry())
    assert phys.stress_g_m[1].sum() > 0.0
    assert phys.stress_g_m[2].sum() == 0.0
    assert carry.speed == (0.0, 100.0)
    later = _rows(1)
    later["t"] = 0.5
    later["speed_kmh"] = np.nan
    held, _ = point_physics(later, PhysicsCarry(last_t=0.4, speed=(0.0, 100.0)))
    assert held.stress_g_m.sum() > 0.0
