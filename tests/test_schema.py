"""pitwall_rt.schema: making, copying, selecting and joining stored rows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitwall_rt.schema import (
    NUMERIC_FIELDS,
    POINT_DTYPE,
    column_of,
    concat_rows,
    copy_rows,
    empty_rows,
    id_order,
    put_numeric,
    take_across,
    take_rows,
)

ALL_FIELDS = ("t", "recv_t", "chassis", "track", "source", *NUMERIC_FIELDS)


def _rows(n: int, start: int) -> np.ndarray:
    rows = empty_rows(n)
    rows["t"] = 1_757_184_000.0 + np.arange(start, start + n)
    rows["chassis"] = np.arange(start, start + n) % 7
    rows["source"] = 2
    rows["speed_kmh"] = np.where(np.arange(n) % 3 == 0, np.nan, np.arange(n) * 1.5)
    return rows


def test_concat_rows_equals_numpys_concatenate_field_for_field() -> None:
    parts = [_rows(n, 10 * k) for k, n in enumerate([3, 0, 1, 40, 7])]
    parts.append(_rows(20, 500)[::3])  # a strided view, not a copy
    joined = concat_rows(parts)
    expected = np.concatenate(parts)
    assert joined.dtype == POINT_DTYPE and len(joined) == len(expected) == 58
    _assert_same_rows(joined, expected)


def test_concat_rows_of_nothing_and_of_another_dtype() -> None:
    assert len(concat_rows([])) == 0 and concat_rows([]).dtype == POINT_DTYPE
    other = np.zeros(2, dtype=[("t", "f8")])
    assert concat_rows([other, other])["t"].tolist() == [0.0] * 4


def _assert_same_rows(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == POINT_DTYPE and len(got) == len(expected)
    for name in ALL_FIELDS:
        np.testing.assert_array_equal(got[name], expected[name])


def test_empty_rows_are_nan_in_every_numeric_field_and_zero_elsewhere() -> None:
    rows = empty_rows(4)
    assert rows.dtype == POINT_DTYPE and len(rows) == 4
    for name in NUMERIC_FIELDS:
        assert np.isnan(rows[name]).all(), name
    for name in ("t", "recv_t", "chassis", "track", "source"):
        assert (rows[name] == 0).all(), name
    rows["speed_kmh"] = 1.0  # each call is a fresh block
    assert np.isnan(empty_rows(4)["speed_kmh"]).all()
    assert len(empty_rows(0)) == 0


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 300), st.integers(0, 2**32 - 1))
def test_put_numeric_equals_field_by_field_assignment(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    columns = rng.normal(size=(n, len(NUMERIC_FIELDS))) * 1000
    columns[rng.random(columns.shape) < 0.2] = np.nan
    ours, expected = _rows(n, 0), _rows(n, 0)
    put_numeric(ours, columns)
    for k, name in enumerate(NUMERIC_FIELDS):
        expected[name] = columns[:, k]
    assert ours.tobytes() == expected.tobytes()  # the other fields untouched too


def test_put_numeric_refuses_a_wrong_shape_or_dtype() -> None:
    with pytest.raises(ValueError):
        put_numeric(empty_rows(3), np.zeros((3, len(NUMERIC_FIELDS) - 1)))
    with pytest.raises(ValueError):
        put_numeric(np.zeros(3, dtype=[("t", "f8")]), np.zeros((3, len(NUMERIC_FIELDS))))


def test_copy_rows_is_an_independent_equal_copy() -> None:
    rows = _rows(9, 3)
    copied = copy_rows(rows)
    _assert_same_rows(copied, rows)
    rows["speed_kmh"] = -1.0
    assert not (copied["speed_kmh"] == -1.0).any()
    strided = _rows(20, 0)[1::4]
    _assert_same_rows(copy_rows(strided), strided.copy())


def test_take_rows_equals_structured_indexing_by_mask_and_by_index() -> None:
    rows = _rows(30, 100)
    mask = rows["chassis"] % 2 == 0
    _assert_same_rows(take_rows(rows, mask), rows[mask])
    index = np.array([29, 0, 5, 5])
    _assert_same_rows(take_rows(rows, index), rows[index])
    assert len(take_rows(rows, np.zeros(30, dtype=bool))) == 0


def test_copy_and_take_of_another_dtype_take_the_general_path() -> None:
    other = np.zeros(3, dtype=[("t", "f8"), ("k", "i4")])
    other["k"] = [1, 2, 3]
    assert copy_rows(other)["k"].tolist() == [1, 2, 3]
    assert take_rows(other, np.array([2, 0]))["k"].tolist() == [3, 1]


@settings(max_examples=80, deadline=None)
@given(
    ids=st.lists(st.integers(0, 70_000), max_size=400),
    narrow=st.booleans(),
)
def test_id_order_is_the_stable_argsort_for_small_and_wide_ids(
    ids: list[int], narrow: bool
) -> None:
    values = np.array([i % 1024 if narrow else i for i in ids], dtype=np.int32)
    assert id_order(values).tolist() == np.argsort(values, kind="stable").tolist()


@given(st.lists(st.integers(0, 6), max_size=4), st.data())
def test_take_across_parts_equals_taking_from_the_joined_rows(
    sizes: list[int], data: st.DataObject
) -> None:
    joined = empty_rows(sum(sizes))
    joined["lapdist_m"] = np.arange(len(joined))
    joined["chassis"] = np.arange(len(joined)) % 3
    bounds = np.cumsum([0, *sizes])
    parts = [joined[a:b] for a, b in itertools.pairwise(bounds)]
    index = np.array(
        sorted(data.draw(st.sets(st.integers(0, max(0, len(joined) - 1)), max_size=len(joined)))),
        dtype=np.intp,
    )
    taken = take_across(parts, index)
    assert taken["lapdist_m"].tolist() == joined["lapdist_m"][index].tolist()
    assert column_of(parts, "chassis").tolist() == joined["chassis"].tolist()
