"""pitwall_rt.points: rows back to point objects, ISO times, display decimation."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pitwall_rt.points import decimate, iso_times, rows_to_points
from pitwall_rt.validate import Tables, validate_points

from .test_validate import FULL_POINT, make_tables

NOW = 1_757_184_000.5


def validated(points: list[dict[str, Any]], tables: Tables) -> np.ndarray:
    out = validate_points(points, tables, NOW)
    assert out.rejected == 0, out.first_errors
    return out.rows


# -- iso_times --------------------------------------------------------------------


def test_iso_times_gives_utc_milliseconds_with_z() -> None:
    got = iso_times(np.array([0.0, 1_757_184_041.926, 1_757_184_041.9264, 1_757_184_041.9996]))
    assert got == [
        "1970-01-01T00:00:00.000Z",
        "2025-09-06T18:40:41.926Z",
        "2025-09-06T18:40:41.926Z",
        "2025-09-06T18:40:42.000Z",
    ]


def test_iso_times_of_empty_array_is_empty() -> None:
    assert iso_times(np.array([], dtype=np.float64)) == []


# -- rows_to_points -------------------------------------------------------------


def test_rows_to_points_is_the_inverse_of_validation_for_a_full_point() -> None:
    tables = make_tables()
    rows = validated([dict(FULL_POINT)], tables)
    (point,) = rows_to_points(rows, tables.chassis, tables.track)
    assert point == FULL_POINT
    assert type(point["lap"]) is int and type(point["gear"]) is int
    assert type(point["speed_kmh"]) is float


def test_rows_to_points_round_trip_through_json_keeps_every_field() -> None:
    tables = make_tables()
    sent = [dict(FULL_POINT), {**FULL_POINT, "chassis": "GR86-002", "lap": 8, "gear": -1}]
    points = rows_to_points(validated(sent, tables), tables.chassis, tables.track)
    assert orjson.loads(orjson.dumps(points)) == sent


def test_rows_to_points_writes_aliases_back_under_canonical_names() -> None:
    tables = make_tables()
    rows = validated([{"vehicle_id": "a", "speed": 12.5, "nmot": 3000, "aps": 40}], tables)
    (point,) = rows_to_points(rows, tables.chassis, tables.track)
    assert point == {
        "meta_time": "2025-09-06T18:40:00.500Z",
        "chassis": "a",
        "speed_kmh": 12.5,
        "rpm": 3000.0,
        "throttle_pct": 40.0,
    }


def test_rows_to_points_omits_track_when_unknown_and_all_nan_columns() -> None:
    tables = make_tables()
    rows = validated([{"chassis": "a"}, {"chassis": "b", "speed_kmh": 5.0}], tables)
    points = rows_to_points(rows, tables.chassis, tables.track)
    assert [set(p) for p in points] == [{"meta_time", "chassis", "speed_kmh"}] * 2
    assert [p["speed_kmh"] for p in orjson.loads(orjson.dumps(points))] == [None, 5.0]


def test_rows_to_points_partial_nan_is_null_for_ints_and_floats() -> None:
    tables = make_tables()
    rows = validated(
        [
            {"chassis": "a", "lap": 2, "gear": 3, "rpm": 5000.0, "track": "sebring"},
            {"chassis": "a"},
        ],
        tables,
    )
    points = rows_to_points(rows, tables.chassis, tables.track)
    # Ints are None in the dict; floats stay NaN there, which orjson (used by
    # every writer: /api/recent and the hub) writes as null.
    assert (points[1]["lap"], points[1]["gear"], points[1]["track"]) == (None, None, None)
    assert np.isnan(points[1]["rpm"])
    first, second = orjson.loads(orjson.dumps(points))
    assert (first["lap"], first["gear"], first["rpm"], first["track"]) == (2, 3, 5000.0, "sebring")
    assert (second["lap"], second["gear"], second["rpm"], second["track"]) == (None,) * 4
    assert type(points[0]["lap"]) is int


def test_rows_to_points_of_no_rows_is_empty() -> None:
    tables = make_tables()
    assert rows_to_points(validated([], tables), tables.chassis, tables.track) == []


def test_rows_to_points_keeps_row_order() -> None:
    tables = make_tables()
    sent = [{"chassis": f"c{i % 3}", "lapdist_m": float(i)} for i in range(10)]
    points = rows_to_points(validated(sent, tables), tables.chassis, tables.track)
    assert [(p["chassis"], p["lapdist_m"]) for p in points] == [
        (s["chassis"], s["lapdist_m"]) for s in sent
    ]


# -- decimate --------------------------------------------------------------------


def test_decimate_keeps_everything_when_under_the_limit() -> None:
    ids = np.array([0, 1, 0, 1, 2])
    assert decimate(ids, 2).tolist() == [0, 1, 2, 3, 4]


def test_decimate_empty_input() -> None:
    assert decimate(np.array([], dtype=np.int32), 5).tolist() == []


def test_decimate_one_chassis_keeps_newest_and_spreads_evenly() -> None:
    kept = decimate(np.zeros(100, dtype=np.int32), 10).tolist()
    assert kept == list(range(9, 100, 10))
    kept = decimate(np.zeros(10, dtype=np.int32), 3).tolist()
    assert len(kept) == 3 and kept[-1] == 9
    gaps = np.diff(kept)
    assert gaps.max() - gaps.min() <= 1


def test_decimate_limit_one_keeps_only_the_newest_of_each_chassis() -> None:
    ids = np.array([3, 1, 3, 1, 2, 3, 1])
    assert decimate(ids, 1).tolist() == [4, 5, 6]


def test_decimate_interleaved_chassis_are_limited_separately() -> None:
    ids = np.array([0, 1] * 50 + [2])
    kept = decimate(ids, 5)
    counts = np.bincount(ids[kept])
    assert counts.tolist() == [5, 5, 1]
    assert {98, 99, 100} <= set(kept.tolist())


@settings(max_examples=300, deadline=None)
@given(
    ids=st.lists(st.integers(0, 5), max_size=200),
    limit=st.integers(1, 40),
)
def test_decimate_properties_hold_for_any_arrival_order(ids: list[int], limit: int) -> None:
    chassis = np.array(ids, dtype=np.int32)
    kept = decimate(chassis, limit)
    assert kept.tolist() == sorted(set(kept.tolist()))  # sorted, no repeats
    for cid in set(ids):
        positions = [i for i, c in enumerate(ids) if c == cid]
        mine = [i for i in kept.tolist() if ids[i] == cid]
        if len(positions) <= limit:
            assert mine == positions
            continue
        assert len(mine) == limit
        assert mine[-1] == positions[-1]  # newest kept
        # Evenly spread: each kept row stands for a run of ceil/floor(n/limit).
        ranks = [positions.index(i) for i in mine]
        gaps = np.diff([-1, *ranks])
        n = len(positions)
        assert gaps.min() >= n // limit
        assert gaps.max() <= -(-n // limit)
