"""pitwall_rt.validate (+ schema): accepted rows, one reason per rejection, limits.

Each rejection test sends the bad point between good ones and checks that
the good ones are all kept, in order, with their own values.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitwall_rt.schema import (
    LIMITS,
    MAX_NAME_LEN,
    NUMERIC_FIELDS,
    POINT_DTYPE,
    StringTable,
    TableFullError,
    empty_rows,
)
from pitwall_rt.validate import Tables, rows_from_columns, validate_points

NOW = 1_757_184_000.5

FULL_POINT: dict[str, Any] = {
    "meta_time": "2025-09-06T18:40:41.926Z",
    "track": "road_america",
    "chassis": "GR86-001",
    "lap": 7,
    "lapdist_m": 1234.5,
    "speed_kmh": 187.25,
    "accx_can": -1.5,
    "accy_can": 0.75,
    "Steering_Angle": -12.5,
    "pbrake_f": 42.0,
    "pbrake_r": 38.5,
    "rpm": 7150.0,
    "throttle_pct": 88.5,
    "gear": 4,
}
FULL_POINT_T = datetime(2025, 9, 6, 18, 40, 41, 926000, tzinfo=UTC).timestamp()


def make_tables(max_chassis: int = 64, max_tracks: int = 16) -> Tables:
    """Tables shaped like the server's: track id 0 reserved for 'unknown'."""
    return Tables(chassis=StringTable(max_chassis), track=StringTable(max_tracks, reserved=("",)))


def good(i: int) -> dict[str, Any]:
    return {"chassis": f"car-{i}", "speed_kmh": 100.0 + i, "lap": i}


def check_one_bad(bad: Any, reason: str, tables: Tables | None = None) -> None:
    """``bad`` among four good points: exactly it rejected, with ``reason``."""
    tables = tables or make_tables()
    points = [good(0), good(1), bad, good(2), good(3)]
    out = validate_points(points, tables, NOW)
    assert out.rejected == 1
    assert out.reasons == {reason: 1}
    assert len(out.first_errors) == 1
    assert out.first_errors[0].startswith("point 2: ")
    names = tables.chassis.names(out.rows["chassis"]).tolist()
    assert names == ["car-0", "car-1", "car-2", "car-3"]
    assert out.rows["speed_kmh"].tolist() == [100.0, 101.0, 102.0, 103.0]
    assert out.rows["lap"].tolist() == [0.0, 1.0, 2.0, 3.0]


# -- accepted points ----------------------------------------------------------


def test_validate_full_point_round_trips_every_field_into_the_row() -> None:
    tables = make_tables()
    out = validate_points([dict(FULL_POINT)], tables, NOW)
    assert out.rejected == 0 and out.reasons == {} and out.first_errors == []
    assert out.rows.dtype == POINT_DTYPE
    (row,) = out.rows
    assert row["t"] == pytest.approx(FULL_POINT_T, abs=1e-6)
    assert row["recv_t"] == NOW
    assert tables.chassis.name(int(row["chassis"])) == "GR86-001"
    assert tables.track.name(int(row["track"])) == "road_america"
    assert row["track"] != 0
    for name in NUMERIC_FIELDS:
        assert row[name] == FULL_POINT[name], name


@pytest.mark.parametrize(
    ("alias", "canonical", "value"),
    [
        ("speed", "speed_kmh", 123.5),
        ("nmot", "rpm", 6500.0),
        ("aps", "throttle_pct", 55.0),
    ],
)
def test_validate_numeric_alias_is_stored_under_canonical_name(
    alias: str, canonical: str, value: float
) -> None:
    out = validate_points(
        [{"chassis": "a", alias: value}, {"chassis": "b", canonical: value + 1}],
        make_tables(),
        NOW,
    )
    assert out.rejected == 0
    assert out.rows[canonical].tolist() == [value, value + 1]


def test_validate_vehicle_id_is_accepted_as_chassis() -> None:
    tables = make_tables()
    out = validate_points([{"vehicle_id": "GR86-002"}, {"chassis": "GR86-003"}], tables, NOW)
    assert out.rejected == 0
    assert tables.chassis.names(out.rows["chassis"]).tolist() == ["GR86-002", "GR86-003"]


def test_validate_canonical_name_wins_over_alias_in_the_same_point() -> None:
    out = validate_points([{"chassis": "a", "speed_kmh": 10.0, "speed": 20.0}], make_tables(), NOW)
    assert out.rows["speed_kmh"].tolist() == [10.0]


@pytest.mark.parametrize("neighbour", [None, {"chassis": "other"}])
def test_validate_alias_fills_a_null_canonical_field_whatever_the_batch_shape(
    neighbour: dict[str, Any] | None,
) -> None:
    # Alone, the batch is "uniform" (every point has the same known keys);
    # with a neighbour of other keys it is not. The answer must not change.
    tables = make_tables()
    point = {"chassis": None, "vehicle_id": "GR86-004", "speed_kmh": None, "speed": 20.0}
    out = validate_points([point] if neighbour is None else [point, neighbour], tables, NOW)
    assert out.rejected == 0, out.reasons
    assert tables.chassis.name(int(out.rows["chassis"][0])) == "GR86-004"
    assert out.rows["speed_kmh"][0] == 20.0


def test_validate_alias_value_is_checked_like_the_canonical_one() -> None:
    check_one_bad({"chassis": "x", "speed": -1.0}, "out_of_range:speed_kmh")
    check_one_bad({"vehicle_id": 12}, "bad_type:chassis")


def test_validate_missing_numeric_fields_are_nan_and_time_is_server_time() -> None:
    out = validate_points([{"chassis": "a"}, {"chassis": "b", "gear": 3}], make_tables(), NOW)
    assert out.rejected == 0
    for name in NUMERIC_FIELDS:
        if name != "gear":
            assert np.isnan(out.rows[name]).all(), name
    assert np.isnan(out.rows["gear"][0]) and out.rows["gear"][1] == 3
    assert out.rows["t"].tolist() == [NOW, NOW]
    assert out.rows["track"].tolist() == [0, 0]


def test_validate_null_value_counts_as_missing() -> None:
    out = validate_points(
        [{"chassis": "a", "speed_kmh": None, "meta_time": None}], make_tables(), NOW
    )
    assert out.rejected == 0
    assert np.isnan(out.rows["speed_kmh"][0])
    assert out.rows["t"][0] == NOW


def test_validate_ignores_unknown_fields() -> None:
    out = validate_points([{"chassis": "a", "tyre_colour": [1, 2], "x": None}], make_tables(), NOW)
    assert out.rejected == 0 and len(out.rows) == 1


def test_validate_accepts_values_on_the_limits() -> None:
    lows = {name: lo for name, (lo, _hi) in LIMITS.items()}
    highs = {name: hi for name, (_lo, hi) in LIMITS.items()}
    out = validate_points([{"chassis": "a", **lows}, {"chassis": "a", **highs}], make_tables(), NOW)
    assert out.rejected == 0, out.reasons
    assert out.rows["speed_kmh"].tolist() == [0.0, 500.0]


def test_validate_accepts_integral_float_for_lap_and_gear() -> None:
    out = validate_points([{"chassis": "a", "lap": 3.0, "gear": -1.0}], make_tables(), NOW)
    assert out.rejected == 0
    assert (out.rows["lap"][0], out.rows["gear"][0]) == (3.0, -1.0)


def test_validate_empty_batch_gives_no_rows() -> None:
    out = validate_points([], make_tables(), NOW)
    assert len(out.rows) == 0 and out.rejected == 0


def test_validate_reuses_ids_for_known_names() -> None:
    tables = make_tables()
    first = validate_points([{"chassis": "a", "track": "sebring"}], tables, NOW)
    second = validate_points([{"chassis": "a", "track": "sebring"}], tables, NOW)
    assert first.rows["chassis"][0] == second.rows["chassis"][0]
    assert first.rows["track"][0] == second.rows["track"][0]
    assert len(tables.chassis) == 1 and len(tables.track) == 2  # "" + sebring


# -- meta_time ----------------------------------------------------------------

T_2025 = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "meta_time",
    [
        "2025-01-02T03:04:05.678Z",
        "2025-01-02T03:04:05.678+00:00",
        "2025-01-02T05:04:05.678+02:00",
        "2025-01-01T22:04:05.678-05:00",
        "2025-01-02T03:04:05.678",  # naive: UTC
        "2025-01-02 03:04:05.678",
        T_2025,  # epoch seconds
        T_2025 * 1000.0,  # epoch milliseconds
    ],
)
def test_validate_meta_time_forms_give_the_same_epoch_seconds(meta_time: Any) -> None:
    out = validate_points([{"chassis": "a", "meta_time": meta_time}], make_tables(), NOW)
    assert out.rejected == 0, out.first_errors
    assert out.rows["t"][0] == pytest.approx(T_2025, abs=1e-3)


def test_validate_meta_time_integer_epoch_seconds_and_ms() -> None:
    out = validate_points(
        [
            {"chassis": "a", "meta_time": 1_735_689_600},
            {"chassis": "a", "meta_time": 1_735_689_600_123},
            {"chassis": "a"},
        ],
        make_tables(),
        NOW,
    )
    assert out.rejected == 0
    assert out.rows["t"].tolist() == pytest.approx([1_735_689_600.0, 1_735_689_600.123, NOW])


def test_validate_meta_time_mixed_iso_number_and_missing_in_one_batch() -> None:
    out = validate_points(
        [
            {"chassis": "a", "meta_time": "2025-01-02T03:04:05.678Z"},
            {"chassis": "a", "meta_time": T_2025 + 1},
            {"chassis": "a"},
        ],
        make_tables(),
        NOW,
    )
    assert out.rejected == 0
    assert out.rows["t"].tolist() == pytest.approx([T_2025, T_2025 + 1, NOW])


@pytest.mark.parametrize(
    "meta_time",
    [
        "yesterday",
        "",
        "2025-13-01T00:00:00Z",
        True,
        [2025],
        {"s": 1},
        0,
        -5.0,
        float("nan"),
        float("inf"),
        float("-inf"),
        1e300,
    ],
)
def test_validate_bad_meta_time_rejects_only_that_point(meta_time: Any) -> None:
    check_one_bad({"chassis": "x", "meta_time": meta_time}, "bad_value:meta_time")


@pytest.mark.parametrize("other_time", [None, "2025-01-02T03:04:05Z"])
def test_validate_huge_integer_meta_time_is_rejected_not_raised(other_time: Any) -> None:
    # Python-built points (CSV, replay) can carry ints too big for a float;
    # numeric fields already count these as out of range (_mark_huge). The
    # ISO string in the other point sends the batch down the per-value path.
    points = [{"chassis": "a", "meta_time": other_time}, {"chassis": "x", "meta_time": 10**400}]
    out = validate_points(points, make_tables(), NOW)
    assert out.reasons == {"bad_value:meta_time": 1}
    assert len(out.rows) == 1


# -- rejections -----------------------------------------------------------------


@pytest.mark.parametrize("bad", [7, "text", None, [1, 2], True, 3.5])
def test_validate_non_object_is_rejected_as_not_object(bad: Any) -> None:
    check_one_bad(bad, "not_object")


def test_validate_missing_chassis_is_rejected() -> None:
    check_one_bad({"speed_kmh": 10.0}, "missing:chassis")
    check_one_bad({"chassis": None}, "missing:chassis")


@pytest.mark.parametrize("bad", [12, True, ["a"], {"id": "a"}, 1.5, ""])
def test_validate_chassis_of_wrong_type_or_empty_is_bad_type(bad: Any) -> None:
    check_one_bad({"chassis": bad}, "bad_type:chassis")


def test_validate_chassis_over_max_length_is_too_long() -> None:
    tables = make_tables()
    check_one_bad({"chassis": "c" * (MAX_NAME_LEN + 1)}, "too_long:chassis", tables)
    assert tables.chassis.get("c" * (MAX_NAME_LEN + 1)) is None
    out = validate_points([{"chassis": "c" * MAX_NAME_LEN}], tables, NOW)
    assert out.rejected == 0


@pytest.mark.parametrize("bad", [5, False, ["road_america"], ""])
def test_validate_track_of_wrong_type_is_bad_type(bad: Any) -> None:
    check_one_bad({"chassis": "x", "track": bad}, "bad_type:track")


def test_validate_track_over_max_length_is_too_long() -> None:
    check_one_bad({"chassis": "x", "track": "t" * (MAX_NAME_LEN + 1)}, "too_long:track")


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
@pytest.mark.parametrize("bad", ["12", True, False, [1.0], {"v": 1}])
def test_validate_numeric_field_of_wrong_type_is_bad_type(field: str, bad: Any) -> None:
    check_one_bad({"chassis": "x", field: bad}, f"bad_type:{field}")


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), 10**400])
def test_validate_nan_inf_and_huge_values_are_out_of_range(field: str, bad: Any) -> None:
    check_one_bad({"chassis": "x", field: bad}, f"out_of_range:{field}")


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("speed_kmh", -0.001),
        ("speed_kmh", 500.001),
        ("accx_can", 10.5),
        ("accx_can", -10.5),
        ("accy_can", 11.0),
        ("accy_can", -11.0),
        ("lap", -1),
        ("rpm", -1.0),
        ("gear", 13),
        ("throttle_pct", 1000.0),
    ],
)
def test_validate_physically_impossible_value_is_out_of_range(field: str, bad: float) -> None:
    check_one_bad({"chassis": "x", field: bad}, f"out_of_range:{field}")


@pytest.mark.parametrize(("field", "bad"), [("lap", 2.5), ("gear", 3.01), ("lap", 0.5)])
def test_validate_non_integer_lap_or_gear_is_bad_type(field: str, bad: float) -> None:
    check_one_bad({"chassis": "x", field: bad}, f"bad_type:{field}")


def test_validate_nan_among_missing_values_is_still_rejected() -> None:
    out = validate_points(
        [{"chassis": "a"}, {"chassis": "b", "speed_kmh": float("nan")}, {"chassis": "c"}],
        make_tables(),
        NOW,
    )
    assert out.reasons == {"out_of_range:speed_kmh": 1}
    assert len(out.rows) == 2


def test_validate_first_failing_field_gives_the_one_reason() -> None:
    out = validate_points(
        [{"speed_kmh": "fast", "lap": -1}, {"chassis": "a", "lap": -1, "gear": 99}],
        make_tables(),
        NOW,
    )
    assert out.rejected == 2
    assert out.reasons == {"missing:chassis": 1, "out_of_range:lap": 1}


def test_validate_counts_many_rejections_and_keeps_only_the_first_messages() -> None:
    points: list[Any] = [{"chassis": "x", "speed_kmh": -1.0}] * 20 + [good(0)] + [42] * 3
    out = validate_points(points, make_tables(), NOW, max_messages=5)
    assert out.rejected == 23
    assert out.reasons == {"out_of_range:speed_kmh": 20, "not_object": 3}
    assert len(out.first_errors) == 5
    assert len(out.rows) == 1


def test_validate_reason_counts_add_up_when_many_points_fail_the_same_check() -> None:
    tables = make_tables(max_chassis=1)
    points: list[Any] = [
        {"speed_kmh": 1.0},  # missing:chassis
        good(0),
        {"lap": 2},  # missing:chassis
        {"chassis": 5},  # bad_type:chassis
        {"chassis": ""},  # bad_type:chassis
        {"chassis": "x", "lap": "one"},  # bad_type:lap (wrong type)
        {"chassis": "x", "lap": 1.5},  # bad_type:lap (not an integer)
        {"chassis": "x", "speed_kmh": float("nan")},  # out_of_range:speed_kmh (NaN)
        {"chassis": "x", "speed_kmh": 900.0},  # out_of_range:speed_kmh (range)
        {"chassis": "new-1"},  # table_full:chassis
        {"chassis": "new-2"},  # table_full:chassis
    ]
    out = validate_points(points, tables, NOW)
    assert out.rejected == 10
    assert out.reasons == {
        "missing:chassis": 2,
        "bad_type:chassis": 2,
        "bad_type:lap": 2,
        "out_of_range:speed_kmh": 2,
        "table_full:chassis": 2,
    }


def test_validate_table_full_rejects_only_new_names() -> None:
    tables = make_tables(max_chassis=3)
    validate_points([good(0), good(1)], tables, NOW)
    out = validate_points(
        [good(0), {"chassis": "new-1"}, {"chassis": "new-2"}, good(1), {"chassis": "new-1"}],
        tables,
        NOW,
    )
    assert out.reasons == {"table_full:chassis": 1}
    assert tables.chassis.names(out.rows["chassis"]).tolist() == [
        "car-0",
        "new-1",
        "car-1",
        "new-1",
    ]
    assert len(tables.chassis) == 3


def test_validate_table_full_for_tracks() -> None:
    tables = make_tables(max_tracks=2)  # "" + one
    out = validate_points(
        [{"chassis": "a", "track": "sebring"}, {"chassis": "a", "track": "monza"}], tables, NOW
    )
    assert out.reasons == {"table_full:track": 1}
    assert len(out.rows) == 1


def test_validate_rejected_points_do_not_intern_their_names() -> None:
    tables = make_tables()
    out = validate_points(
        [{"chassis": f"junk-{i}", "speed_kmh": "x"} for i in range(10)], tables, NOW
    )
    assert out.rejected == 10
    assert len(tables.chassis) == 0


def test_string_table_raises_when_full_and_keeps_existing_ids() -> None:
    table = StringTable(2)
    assert (table.intern("a"), table.intern("b"), table.intern("a")) == (0, 1, 0)
    with pytest.raises(TableFullError):
        table.intern("c")
    assert table.names(np.array([1, 0, 1])).tolist() == ["b", "a", "b"]
    assert table.get("c") is None and table.lookup("b") == 1


def test_empty_rows_are_nan_with_unknown_track() -> None:
    rows = empty_rows(3)
    for name in NUMERIC_FIELDS:
        assert np.isnan(rows[name]).all()
    assert rows["track"].tolist() == [0, 0, 0]


# -- never raises ---------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
field_names = st.sampled_from(
    [*NUMERIC_FIELDS, "chassis", "vehicle_id", "track", "meta_time", "speed", "nmot", "aps"]
)
# Mostly point-shaped objects with arbitrary values, some arbitrary JSON.
point_like = st.one_of(
    st.dictionaries(field_names, json_values, max_size=8),
    st.fixed_dictionaries(
        {"chassis": st.sampled_from(["a", "b", "c"])},
        optional={name: json_scalars for name in [*NUMERIC_FIELDS, "meta_time", "track"]},
    ),
    json_values,
)


@settings(max_examples=300, deadline=None)
@given(points=st.lists(point_like, max_size=12))
def test_validate_never_raises_and_accounts_for_every_point(points: list[Any]) -> None:
    tables = make_tables(max_chassis=4, max_tracks=4)
    out = validate_points(points, tables, NOW)
    assert len(out.rows) + out.rejected == len(points)
    assert sum(out.reasons.values()) == out.rejected
    assert len(out.first_errors) <= 5
    for name in NUMERIC_FIELDS:
        column = out.rows[name]
        lo, hi = LIMITS[name]
        present = column[~np.isnan(column)]
        assert ((present >= lo) & (present <= hi)).all(), name
    assert np.isfinite(out.rows["t"]).all()
    assert len(tables.chassis) <= 4


def row_key(row: np.void, tables: Tables) -> tuple[Any, ...]:
    """A NaN-safe, id-free view of one stored row, for comparing batches."""
    values = [None if math.isnan(row[n]) else float(row[n]) for n in ("t", *NUMERIC_FIELDS)]
    names = (tables.chassis.name(int(row["chassis"])), tables.track.name(int(row["track"])))
    return (*names, *values)


@settings(max_examples=300, deadline=None)
@given(points=st.lists(point_like, max_size=8))
def test_validate_a_batch_gives_what_its_points_give_one_by_one(points: list[Any]) -> None:
    # Big tables, so table_full can't make the outcome depend on order.
    batch_tables = make_tables(max_chassis=1000, max_tracks=1000)
    batch = validate_points(points, batch_tables, NOW)
    single_tables = make_tables(max_chassis=1000, max_tracks=1000)
    rows: list[tuple[Any, ...]] = []
    reasons: dict[str, int] = {}
    for point in points:
        one = validate_points([point], single_tables, NOW)
        rows.extend(row_key(r, single_tables) for r in one.rows)
        for code, count in one.reasons.items():
            reasons[code] = reasons.get(code, 0) + count
    assert batch.reasons == reasons
    assert [row_key(r, batch_tables) for r in batch.rows] == rows


# -- rows_from_columns ----------------------------------------------------------


def test_rows_from_columns_stores_columns_and_interns_names() -> None:
    tables = make_tables()
    chassis = np.array(["car-1", "car-2", "car-1"], dtype=object)
    out = rows_from_columns(
        {
            "meta_time": np.array([T_2025, np.nan, T_2025 + 1]),
            "speed_kmh": np.array([100.0, 200.0, 300.0]),
            "gear": np.array([3.0, 4.0, 5.0]),
            "not_a_field": np.array([1.0, 2.0, 3.0]),
        },
        chassis,
        "monza",
        tables,
        NOW,
    )
    assert out.rejected == 0
    assert out.rows["t"].tolist() == [T_2025, NOW, T_2025 + 1]
    assert out.rows["recv_t"].tolist() == [NOW] * 3
    assert out.rows["speed_kmh"].tolist() == [100.0, 200.0, 300.0]
    assert np.isnan(out.rows["rpm"]).all()
    assert tables.chassis.names(out.rows["chassis"]).tolist() == ["car-1", "car-2", "car-1"]
    assert {tables.track.name(int(i)) for i in out.rows["track"]} == {"monza"}


def test_rows_from_columns_applies_the_same_limits() -> None:
    out = rows_from_columns(
        {
            "speed_kmh": np.array([100.0, 501.0, 100.0, np.nan, 100.0]),
            "accy_can": np.array([0.0, 0.0, -12.0, 0.0, 0.0]),
            "gear": np.array([1.0, 1.0, 1.0, 2.5, 1.0]),
        },
        np.array(["a", "a", "a", "a", "a"], dtype=object),
        None,
        make_tables(),
        NOW,
    )
    assert out.rejected == 3
    assert out.reasons == {
        "out_of_range:speed_kmh": 1,
        "out_of_range:accy_can": 1,
        "bad_type:gear": 1,
    }
    assert len(out.rows) == 2
    assert out.rows["track"].tolist() == [0, 0]


def test_rows_from_columns_nan_means_absent_not_rejected() -> None:
    out = rows_from_columns(
        {"rpm": np.array([np.nan, 5000.0])},
        np.array(["a", "b"], dtype=object),
        None,
        make_tables(),
        NOW,
    )
    assert out.rejected == 0
    assert math.isnan(out.rows["rpm"][0]) and out.rows["rpm"][1] == 5000.0


def test_rows_from_columns_checks_chassis_names_and_table_capacity() -> None:
    tables = make_tables(max_chassis=2)
    out = rows_from_columns(
        {},
        np.array(["a", "", "b", "x" * (MAX_NAME_LEN + 1), "c", "a"], dtype=object),
        None,
        tables,
        NOW,
    )
    assert out.reasons == {"bad_type:chassis": 1, "too_long:chassis": 1, "table_full:chassis": 1}
    assert tables.chassis.names(out.rows["chassis"]).tolist() == ["a", "b", "a"]


def test_rows_from_columns_empty_input_gives_no_rows() -> None:
    out = rows_from_columns({}, np.array([], dtype=object), "monza", make_tables(), NOW)
    assert len(out.rows) == 0 and out.rejected == 0


_ANY_NUMBERISH = st.one_of(
    st.none(),
    st.integers(-5, 200),
    st.integers(-(2**70), 2**70),
    st.floats(-50, 800),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    columns=st.dictionaries(
        st.sampled_from(["lap", "gear", "speed_kmh", "rpm", "lapdist_m", "speed", "aps"]),
        st.lists(_ANY_NUMBERISH, min_size=3, max_size=3),
    ),
    clean=st.booleans(),
)
def test_all_at_once_and_field_by_field_checks_agree(
    columns: dict[str, list[Any]], clean: bool
) -> None:
    """The one-array check of a clean batch stores exactly what the
    field-by-field path stores, and defers every batch it can't vouch for."""
    import pitwall_rt.validate as validate

    if clean:  # mostly in-range values, so the all-at-once path is taken often
        columns = {
            k: [v if type(v) in (int, float) and 0 <= v <= 12 else None for v in vs]
            for k, vs in columns.items()
        }
    points = [{"chassis": f"C{i}", **{k: vs[i] for k, vs in columns.items()}} for i in range(3)]

    def run() -> Any:
        return validate_points([dict(p) for p in points], make_tables(), NOW)

    fast = run()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(validate, "_clean_matrix", lambda _present: None)
        slow = run()
    assert fast.reasons == slow.reasons
    assert fast.first_errors == slow.first_errors
    assert fast.rows.tobytes() == slow.rows.tobytes()
