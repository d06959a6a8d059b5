"""compute.job: a tick split into shards of whole cars gives what the whole tick gives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitwall_rt.compute import track_table
from pitwall_rt.compute.job import TickOutput, join_outputs, split_cars, tick_job
from pitwall_rt.demo_gen import DEFAULT_TRACKS_PATH
from pitwall_rt.model import infer, train
from pitwall_rt.schema import concat_rows, empty_rows
from pitwall_rt.tracks import load_tracks

OPTIONS = infer.IntelOptions(iterations=200)


def _rows_of(chassis: list[int]) -> np.ndarray:
    rows = empty_rows(len(chassis))
    rows["chassis"] = chassis
    rows["t"] = np.arange(len(chassis), dtype=np.float64)
    return rows


@settings(max_examples=60, deadline=None)
@given(
    chassis=st.lists(st.integers(0, 12), min_size=0, max_size=300),
    parts=st.integers(1, 5),
)
def test_split_cars_puts_each_car_whole_in_one_shard_and_keeps_every_row(
    chassis: list[int], parts: int
) -> None:
    rows = _rows_of(chassis)
    shards = split_cars(rows, parts)
    cars = set(chassis)
    assert len(shards) == max(1, min(parts, len(cars)))
    assert sorted(t for s, _ in shards for t in s["t"].tolist()) == rows["t"].tolist()
    owners: dict[int, int] = {}
    for i, (shard, ids) in enumerate(shards):
        assert np.all(np.diff(shard["t"]) > 0), "rows keep their input order"
        assert ids == sorted(set(shard["chassis"].tolist())), "the shard's car ids"
        for car in ids:
            assert owners.setdefault(car, i) == i, f"car {car} in two shards"
    if len(shards) > 1:
        assert all(len(s) for s, _ in shards), "no empty shard"


def test_split_cars_balances_rows_largest_car_first() -> None:
    # cars of 50, 40, 30, 20, 10 rows over two shards: 50+20+10 / 40+30
    chassis = [1] * 50 + [2] * 40 + [3] * 30 + [4] * 20 + [5] * 10
    shards = split_cars(_rows_of(chassis), 2)
    assert sorted(ids for _, ids in shards) == [[1, 4, 5], [2, 3]]
    assert sorted(len(s) for s, _ in shards) == [70, 80]


@pytest.fixture(scope="module")
def three_cars() -> np.ndarray:
    """Three laps of Barber for three cars of different styles (track id 1)."""
    barber = load_tracks(DEFAULT_TRACKS_PATH)["barber"]
    cars = []
    for car, style in enumerate(("smooth", "aggressive", "smooth"), start=1):
        spec = train.StintSpec("barber", style, 25.0, 0.98, 3, 20.0, 4, car)
        stint, _ = train.simulate(spec, barber)
        rows = train.telemetry_rows(spec, stint)
        rows["chassis"] = car
        cars.append(rows)
    both = concat_rows(cars)
    return both[np.argsort(both["t"], kind="stable")]


def _ticks(rows: np.ndarray, parts: int) -> TickOutput:
    """Two ticks over ``rows`` (so carries round-trip), each split over ``parts``."""
    tracks = track_table({1: load_tracks(DEFAULT_TRACKS_PATH)["barber"]})
    carries: dict[int, bytes] = {}
    half = rows["t"] < np.median(rows["t"])
    out = TickOutput()
    for tick in (rows[half], rows[~half]):
        outputs = [
            tick_job(part, tracks, {c: carries[c] for c in cars if c in carries}, OPTIONS)
            for part, cars in split_cars(tick, parts)
        ]
        out = join_outputs(outputs)
        carries.update({cid: car.carry for cid, car in out.cars.items()})
    return out


def test_shards_joined_equal_the_whole_tick(three_cars: np.ndarray) -> None:
    whole, split = _ticks(three_cars, 1), _ticks(three_cars, 2)
    assert sorted(split.cars) == sorted(whole.cars) == [1, 2, 3]
    for cid, car in whole.cars.items():
        other = split.cars[cid]
        assert other.carry == car.carry, cid
        assert other.insight == car.insight and other.laps == car.laps, cid
        assert other.intel == car.intel and other.windows == car.windows, cid
    assert (split.rows, split.late, split.duplicates) == (whole.rows, whole.late, whole.duplicates)
    assert split.stats["windows"] == whole.stats["windows"] > 0
    assert sorted(split.pit_races) == sorted(whole.pit_races)

    def key(alert: dict[str, object]) -> str:
        return repr(sorted(alert.items()))

    assert sorted(map(key, split.alerts)) == sorted(map(key, whole.alerts))


def test_join_outputs_keeps_the_slowest_shard_time_and_sums_counts() -> None:
    a = TickOutput(rows=10, late=1, duplicates=2, stats={"job_ms": 4.0, "windows": 2.0})
    b = TickOutput(rows=5, late=0, duplicates=1, stats={"job_ms": 9.0, "windows": 3.0})
    joined = join_outputs([a, b])
    assert (joined.rows, joined.late, joined.duplicates) == (15, 1, 3)
    assert joined.stats == {"job_ms": 9.0, "windows": 5.0}
