"""pitwall_rt.ring: wrap-around, newest, read_since cursors, bounded memory.

Rows are tagged by their sequence number in the ``t`` field, so every read
can be checked against the exact sequences it should return.
"""

from __future__ import annotations

import mmap
import resource

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitwall_rt.ring import RingBuffer, resident_rows
from pitwall_rt.schema import POINT_DTYPE, empty_rows


def seq_rows(start: int, n: int) -> np.ndarray:
    """``n`` rows whose ``t`` is their sequence number, from ``start``."""
    rows = empty_rows(n)
    rows["t"] = np.arange(start, start + n, dtype=np.float64)
    rows["chassis"] = np.arange(start, start + n) % 7
    return rows


def seqs(rows: np.ndarray) -> list[int]:
    return rows["t"].astype(int).tolist()


def filled(capacity: int, total: int, batch: int) -> RingBuffer:
    ring = RingBuffer(capacity)
    for start in range(0, total, batch):
        ring.write(seq_rows(start, min(batch, total - start)))
    return ring


def test_ring_rejects_capacity_below_one() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RingBuffer(0)


def test_ring_starts_empty() -> None:
    ring = RingBuffer(8)
    assert (ring.written, ring.size, ring.overwritten) == (0, 0, 0)
    assert len(ring.newest(5)) == 0
    read = ring.read_since(0)
    assert (len(read.rows), read.cursor, read.missed) == (0, 0, 0)


def test_ring_newest_keeps_order_after_wrap() -> None:
    ring = filled(capacity=10, total=27, batch=4)
    assert seqs(ring.newest(10)) == list(range(17, 27))
    assert seqs(ring.newest(3)) == [24, 25, 26]
    assert ring.newest(10).dtype == POINT_DTYPE


def test_ring_newest_is_capped_at_size_and_capacity() -> None:
    ring = filled(capacity=10, total=6, batch=6)
    assert seqs(ring.newest(100)) == list(range(6))
    ring.write(seq_rows(6, 20))
    assert seqs(ring.newest(100)) == list(range(16, 26))
    assert len(ring.newest(0)) == 0
    assert len(ring.newest(-3)) == 0


def test_ring_newest_returns_a_copy_not_a_view() -> None:
    ring = filled(capacity=4, total=4, batch=4)
    got = ring.newest(4)
    ring.write(seq_rows(4, 4))
    assert seqs(got) == [0, 1, 2, 3]


def test_ring_overwritten_counts_points_pushed_out() -> None:
    ring = filled(capacity=10, total=10, batch=3)
    assert (ring.size, ring.overwritten) == (10, 0)
    ring.write(seq_rows(10, 7))
    assert (ring.written, ring.size, ring.overwritten) == (17, 10, 7)


def test_ring_write_of_batch_larger_than_capacity_keeps_its_newest_rows() -> None:
    ring = RingBuffer(5)
    ring.write(seq_rows(0, 3))
    ring.write(seq_rows(3, 12))
    assert ring.written == 15
    assert ring.overwritten == 10
    assert seqs(ring.newest(5)) == [10, 11, 12, 13, 14]
    # And the next small write still lands after them, in order.
    ring.write(seq_rows(15, 2))
    assert seqs(ring.newest(5)) == [12, 13, 14, 15, 16]


def test_ring_write_of_empty_batch_changes_nothing() -> None:
    ring = filled(capacity=5, total=3, batch=3)
    ring.write(seq_rows(3, 0))
    assert ring.written == 3
    assert seqs(ring.newest(5)) == [0, 1, 2]


def test_ring_read_since_returns_rows_after_cursor_and_next_cursor() -> None:
    ring = filled(capacity=10, total=8, batch=8)
    read = ring.read_since(5)
    assert seqs(read.rows) == [5, 6, 7]
    assert (read.cursor, read.missed) == (8, 0)
    again = ring.read_since(read.cursor)
    assert (len(again.rows), again.cursor, again.missed) == (0, 8, 0)


def test_ring_read_since_reports_missed_points_after_wrap() -> None:
    ring = filled(capacity=10, total=5, batch=5)
    cursor = ring.read_since(0).cursor
    ring.write(seq_rows(5, 18))  # 23 written, oldest held is 13
    read = ring.read_since(cursor)
    assert read.missed == 13 - 5
    assert seqs(read.rows) == list(range(13, 23))
    assert read.cursor == 23


def test_ring_read_since_a_future_cursor_reads_nothing() -> None:
    ring = filled(capacity=10, total=5, batch=5)
    read = ring.read_since(99)
    assert (len(read.rows), read.cursor, read.missed) == (0, 5, 0)


def test_ring_memory_never_grows_after_many_writes() -> None:
    ring = RingBuffer(64)
    array_before = ring._data
    nbytes_before = ring.nbytes
    assert nbytes_before == 64 * POINT_DTYPE.itemsize
    start = 0
    for n in [1, 63, 64, 65, 500, 7, 3] * 20:
        ring.write(seq_rows(start, n))
        start += n
    assert ring._data is array_before
    assert ring.nbytes == nbytes_before
    assert ring._data.shape == (64,)
    assert seqs(ring.newest(64)) == list(range(start - 64, start))


class ListModel:
    """The ring's contract as a plain list: everything ever written, and the
    newest ``capacity`` of it held."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.all: list[int] = []

    def held(self) -> list[int]:
        return self.all[-self.capacity :]


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(1, 40),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("write"), st.integers(0, 100)),
            st.tuples(st.just("read"), st.integers(-5, 300)),
            st.tuples(st.just("newest"), st.integers(-2, 60)),
        ),
        max_size=40,
    ),
)
def test_ring_matches_a_list_model_under_random_writes_and_reads(
    capacity: int, ops: list[tuple[str, int]]
) -> None:
    ring = RingBuffer(capacity)
    model = ListModel(capacity)
    for op, arg in ops:
        if op == "write":
            ring.write(seq_rows(len(model.all), arg))
            model.all.extend(range(len(model.all), len(model.all) + arg))
        elif op == "read":
            read = ring.read_since(arg)
            written = len(model.all)
            oldest = written - len(model.held())
            cursor = min(arg, written)
            expected = [s for s in model.held() if s >= cursor]
            assert seqs(read.rows) == expected
            assert read.cursor == written
            assert read.missed == max(0, oldest - cursor)
            # Missed + read covers every sequence from the cursor on.
            if 0 <= arg <= written:
                assert read.missed + len(read.rows) == written - arg
            # The views hold the same rows, in at most two pieces, uncopied.
            views = ring.views_since(arg)
            assert (views.cursor, views.missed, len(views)) == (
                read.cursor,
                read.missed,
                len(read.rows),
            )
            assert [q for part in views.parts for q in seqs(part)] == expected
            assert len(views.parts) <= 2
            assert all(part.base is not None for part in views.parts)
        else:
            assert seqs(ring.newest(arg)) == (model.held()[-arg:] if arg > 0 else [])
        assert ring.written == len(model.all)
        assert ring.size == len(model.held())
        assert ring.overwritten == len(model.all) - len(model.held())


def _page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.parametrize("populate", [True, False], ids=["map_populate", "touched"])
def test_ring_first_lap_of_writes_takes_no_page_faults(
    populate: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its memory is faulted in when the ring is made, not by the writes on
    the event loop (each fault ~10 us on a VM, in bursts of milliseconds),
    whether the kernel maps it in (MAP_POPULATE) or every page is touched
    (platforms without it)."""
    if not populate:
        monkeypatch.setattr(mmap, "MAP_POPULATE", 0, raising=False)
    # 8 MB: well past malloc's mmap threshold, so the ring is fresh memory.
    ring = RingBuffer(8_000_000 // POINT_DTYPE.itemsize)
    assert not ring.newest(ring.capacity).size  # nothing written yet
    batch = empty_rows(ring.capacity // 16)
    pages = ring.nbytes // 4096
    before = _page_faults()
    for _ in range(16):
        ring.write(batch)
    assert _page_faults() - before < pages // 10
    assert ring.size == 16 * len(batch) and not ring.overwritten


def test_resident_rows_are_zeroed_and_writable_on_either_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mapped = resident_rows(1000)
    monkeypatch.setattr(mmap, "MAP_POPULATE", 0, raising=False)
    touched = resident_rows(1000)
    for rows in (mapped, touched):
        assert rows.dtype == POINT_DTYPE and rows.shape == (1000,)
        assert not rows.view(np.uint8).any()
        rows["speed_kmh"] = 1.5
        assert (rows["speed_kmh"] == 1.5).all()
