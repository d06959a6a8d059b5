"""Mergeable partials and Welford/Chan running stats on hand-computed arrays."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pitwall_rt.compute.aggregate import (
    EMPTY,
    Partial,
    SectorRolling,
    Welford,
    merge,
    merge_all,
    merge_rolling,
    merge_welford,
    segment_partials,
)
from pitwall_rt.compute.physics import PhysicsCarry, point_physics
from pitwall_rt.schema import empty_rows


def _rows() -> np.ndarray:
    rows = empty_rows(6)
    rows["t"] = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    rows["speed_kmh"] = [100.0, 110.0, np.nan, 130.0, 90.0, 80.0]
    rows["accx_can"] = [0.2, -0.9, -1.1, 0.3, np.nan, 0.1]
    rows["accy_can"] = [0.5, -1.2, 1.3, 0.2, 1.1, np.nan]
    rows["pbrake_f"] = [0.0, 50.0, 60.0, 0.0, 0.0, 0.0]
    rows["pbrake_r"] = [0.0, 30.0, 40.0, 0.0, 0.0, 0.0]
    return rows


def _parts(starts: list[int]) -> list[Partial]:
    rows = _rows()
    phys, _ = point_physics(rows, PhysicsCarry())
    return segment_partials(rows, phys, np.array(starts))


def test_segment_partials_match_hand_computed_sums_and_maxima() -> None:
    (whole,) = _parts([0])
    assert whole.count == 6
    assert whole.time_s == pytest.approx(2.5)
    assert whole.mean_speed_kmh == pytest.approx((100 + 110 + 130 + 90 + 80) / 5)
    assert whole.speed_max_kmh == 130.0
    assert whole.accy_abs_max_g == 1.3
    assert whole.brake_max_g == pytest.approx(1.1)
    assert whole.accel_max_g == pytest.approx(0.3)
    assert whole.brake_energy_bar_s == pytest.approx(40 * 0.5 + 50 * 0.5)
    assert whole.hard_braking == 1  # samples 1 and 2 are one braking zone
    assert whole.hard_cornering == 2  # -1.2 then 1.3 is one run (|accy| > 1), 1.1 another
    assert all(x > 0 for x in whole.tire_stress_g_m)


def test_segment_partials_merge_to_the_whole() -> None:
    (whole,) = _parts([0])
    pieces = _parts([0, 2, 3, 5])
    assert [p.count for p in pieces] == [2, 1, 2, 1]
    total = merge_all(pieces)
    assert total.count == whole.count
    assert total.hard_braking == whole.hard_braking
    assert total.speed_max_kmh == whole.speed_max_kmh
    assert total.time_s == pytest.approx(whole.time_s)
    assert total.tire_stress_g_m == pytest.approx(whole.tire_stress_g_m)


def test_partial_maxima_stay_nan_when_no_sample_had_the_value() -> None:
    rows = empty_rows(2)
    rows["t"] = [0.0, 1.0]
    phys, _ = point_physics(rows, PhysicsCarry())
    (part,) = segment_partials(rows, phys, np.array([0]))
    assert math.isnan(part.speed_max_kmh) and math.isnan(part.mean_speed_kmh)
    assert merge(part, EMPTY).speed_max_kmh != merge(part, EMPTY).speed_max_kmh
    assert merge(part, Partial(speed_max_kmh=50.0)).speed_max_kmh == 50.0
    assert part.to_dict()["max_speed_kmh"] is None
    orjson.dumps(part.to_dict())


def test_merge_is_order_independent() -> None:
    a, b, c = _parts([0, 2, 4])
    one, other = merge(a, merge(b, c)), merge(merge(c, a), b)
    assert one.tire_stress_g_m == pytest.approx(other.tire_stress_g_m)
    assert one.to_dict() | {"tire_stress": None} == pytest.approx(
        other.to_dict() | {"tire_stress": None}
    )


def test_welford_add_equals_two_pass_mean_and_std() -> None:
    values = [61.2, 60.8, 62.5, 61.0, 60.9]
    w = Welford.of(values)
    assert w.n == 5
    assert w.mean == pytest.approx(np.mean(values))
    assert w.std == pytest.approx(np.std(values, ddof=1))


def test_welford_ignores_nan_and_reports_nan_std_below_two() -> None:
    w = Welford().add(float("nan")).add(3.0)
    assert w.n == 1 and w.mean == 3.0 and math.isnan(w.std)


finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False)


@given(st.lists(finite, min_size=0, max_size=40), st.lists(finite, min_size=0, max_size=40))
def test_welford_chan_merge_equals_two_pass_when_split_anywhere(
    left: list[float], right: list[float]
) -> None:
    merged = merge_welford(Welford.of(left), Welford.of(right))
    both = left + right
    assert merged.n == len(both)
    if both:
        assert merged.mean == pytest.approx(np.mean(both), rel=1e-9, abs=1e-9)
    if len(both) > 1:
        assert merged.variance == pytest.approx(np.var(both, ddof=1), rel=1e-7, abs=1e-6)


def test_sector_rolling_tracks_best_last_and_merges() -> None:
    times = [30.0, 29.5, 31.0]
    parts = [Partial(speed_max_kmh=v) for v in (180.0, 182.0, 178.0)]
    a = SectorRolling().add(times[0], parts[0]).add(times[1], parts[1])
    b = SectorRolling().add(times[2], parts[2])
    merged = merge_rolling(a, b)
    assert merged.best_time_s == 29.5 and merged.last_time_s == 31.0
    assert merged.time_s.mean == pytest.approx(np.mean(times))
    assert merged.max_speed_kmh.std == pytest.approx(np.std([180, 182, 178], ddof=1))
    out = merged.to_dict()
    assert out["laps"] == 3 and out["time_best_s"] == 29.5
