"""pitwall_rt.rowchunks: the recorder's buffer of reusable fixed-size chunks."""

from __future__ import annotations

import numpy as np
import pytest

from pitwall_rt.rowchunks import RowChunks
from pitwall_rt.schema import concat_rows, empty_rows


def _rows(start: int, n: int) -> np.ndarray:
    rows = empty_rows(n)
    rows["t"] = np.arange(start, start + n, dtype=np.float64)
    rows["chassis"] = np.arange(start, start + n) % 5
    return rows


def _times(parts: list[np.ndarray]) -> list[float]:
    return concat_rows(parts)["t"].tolist() if parts else []


def test_rows_come_back_in_order_in_chunks_of_the_chunk_size() -> None:
    buffer = RowChunks(chunk_rows=8, max_spare=4)
    start = 0
    for n in (3, 7, 1, 12, 0, 2):
        buffer.append(_rows(start, n))
        start += n
    assert len(buffer) == 25
    parts = buffer.take()
    assert [len(p) for p in parts] == [8, 8, 8, 1]
    assert _times(parts) == list(range(25))
    assert len(buffer) == 0 and buffer.take() == []


def test_the_callers_array_can_be_reused_after_append() -> None:
    buffer = RowChunks(chunk_rows=16, max_spare=1)
    rows = _rows(0, 4)
    buffer.append(rows)
    rows["t"] = -1.0
    assert _times(buffer.take()) == [0.0, 1.0, 2.0, 3.0]


def test_rows_appended_after_a_take_do_not_touch_what_was_taken() -> None:
    buffer = RowChunks(chunk_rows=8, max_spare=4)
    buffer.append(_rows(0, 3))
    taken = buffer.take()
    buffer.append(_rows(100, 6))
    assert _times(taken) == [0.0, 1.0, 2.0]
    assert _times(buffer.take()) == [100.0 + i for i in range(6)]


def test_chunks_given_back_are_reused_up_to_max_spare() -> None:
    buffer = RowChunks(chunk_rows=4, max_spare=2)
    buffer.append(_rows(0, 14))  # three full chunks and a partial one
    parts = buffer.take()
    owners = [p if p.base is None else p.base for p in parts]
    buffer.give_back(parts)
    buffer.append(_rows(50, 12))
    again = buffer.take()
    reused = [p.base if p.base is not None else p for p in again]
    assert sum(any(r is o for o in owners) for r in reused) == 2  # max_spare
    assert _times(again) == [50.0 + i for i in range(12)]


def test_give_back_ignores_arrays_that_are_not_chunks() -> None:
    buffer = RowChunks(chunk_rows=4, max_spare=2)
    stranger = _rows(0, 3)
    buffer.give_back([stranger, np.zeros(4)])
    buffer.append(_rows(10, 4))
    (part,) = buffer.take()
    assert part is not stranger and part.base is not stranger


def test_chunk_rows_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RowChunks(chunk_rows=0, max_spare=1)
