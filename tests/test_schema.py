"""pitwall_rt.schema: joining stored rows."""

from __future__ import annotations

import numpy as np

from pitwall_rt.schema import NUMERIC_FIELDS, POINT_DTYPE, concat_rows, empty_rows


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
    for name in ("t", "recv_t", "chassis", "track", "source", *NUMERIC_FIELDS):
        np.testing.assert_array_equal(joined[name], expected[name])


def test_concat_rows_of_nothing_and_of_another_dtype() -> None:
    assert len(concat_rows([])) == 0 and concat_rows([]).dtype == POINT_DTYPE
    other = np.zeros(2, dtype=[("t", "f8")])
    assert concat_rows([other, other])["t"].tolist() == [0.0] * 4
