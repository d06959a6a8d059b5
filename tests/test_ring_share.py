"""pitwall_rt.ring_share: compute workers read the ring in place.

A span's rows come back exactly as written, across the ring's end; rows
overwritten before (or while) a reader copies them are dropped and counted,
never returned torn. The last test reads spans from another process while
this one keeps writing, as a pool worker does beside the event loop.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any

import numpy as np
import pytest

from pitwall_rt import ring_share
from pitwall_rt.ring import RingBuffer
from pitwall_rt.ring_share import RingHandle, Span, probe, read_span

from .test_ring import seq_rows, seqs


def shared_ring(capacity: int) -> RingBuffer:
    ring = RingBuffer(capacity, shared=True)
    assert ring.handle is not None, "memfd sharing is available on Linux"
    return ring


def test_shared_ring_reads_like_a_private_one() -> None:
    shared, private = shared_ring(10), RingBuffer(10)
    for start, n in ((0, 4), (4, 5), (9, 3), (12, 1)):
        shared.write(seq_rows(start, n))
        private.write(seq_rows(start, n))
    assert seqs(shared.newest(10)) == seqs(private.newest(10)) == list(range(3, 13))
    assert shared.read_since(5).missed == private.read_since(5).missed


def test_read_span_returns_the_span_across_the_end_of_the_storage() -> None:
    ring = shared_ring(8)
    ring.write(seq_rows(0, 6))
    ring.write(seq_rows(6, 5))  # sequences 8..10 wrap to slots 0..2
    assert ring.handle is not None
    rows, lost = read_span(Span(ring.handle, 4, 11))
    assert seqs(rows) == list(range(4, 11)) and lost == 0
    assert rows.flags.writeable  # a copy, not a view of the shared memory
    rows, lost = read_span(Span(ring.handle, 7, 7))
    assert len(rows) == 0 and lost == 0


def test_read_span_drops_and_counts_rows_overwritten_before_the_read() -> None:
    ring = shared_ring(8)
    ring.write(seq_rows(0, 6))
    assert ring.handle is not None
    span = Span(ring.handle, 0, 6)  # a tick sent, then more rows arrive
    ring.write(seq_rows(6, 5))  # overwrites sequences 0..2
    rows, lost = read_span(span)
    assert seqs(rows) == [3, 4, 5] and lost == 3
    ring.write(seq_rows(11, 20))  # the whole span is gone
    rows, lost = read_span(span)
    assert len(rows) == 0 and lost == 6


def test_read_span_of_some_cars_copies_only_theirs_and_cuts_by_the_same_mark() -> None:
    ring = shared_ring(8)
    ring.write(seq_rows(0, 6))  # chassis = sequence % 7
    assert ring.handle is not None
    span = Span(ring.handle, 0, 6)
    rows, lost = read_span(span, [1, 4])
    assert seqs(rows) == [1, 4] and lost == 0
    ring.write(seq_rows(6, 5))  # overwrites sequences 0..2, car 1's row among them
    rows, lost = read_span(span, [1, 4])
    assert seqs(rows) == [4] and lost == 3
    ring.write(seq_rows(11, 20))
    rows, lost = read_span(span, [1, 4])
    assert len(rows) == 0 and lost == 6
    rows, lost = read_span(Span(ring.handle, 31, 31), [1])
    assert len(rows) == 0 and lost == 0


def test_read_span_counts_rows_a_write_in_progress_is_overwriting() -> None:
    """The ring marks how far a write reaches before it changes any row, so
    a reader that copies meanwhile drops the rows that write may have torn."""
    ring = shared_ring(8)
    ring.write(seq_rows(0, 8))
    assert ring.handle is not None and ring._mark is not None
    assert int(ring._mark[0]) == ring.written == 8
    ring._mark[0] = 11  # a 3-row write has begun and not finished
    rows, lost = read_span(Span(ring.handle, 0, 8))
    assert seqs(rows) == [3, 4, 5, 6, 7] and lost == 3


def test_probe_fails_clearly_for_a_ring_that_is_not_there() -> None:
    ring = shared_ring(4)
    assert ring.handle is not None
    assert probe(ring.handle) == 0
    with pytest.raises(OSError):
        probe(RingHandle(os.getpid(), 10_000, 4, ring.handle.token))  # no such descriptor
    with pytest.raises(OSError, match="not this ring"):
        probe(RingHandle(os.getpid(), ring.handle.fd, 4, ring.handle.token + 1))


def test_a_cpu_that_may_reorder_stores_keeps_the_ring_private(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ring_share.platform, "machine", lambda: "aarch64")
    ring = RingBuffer(8, shared=True)
    assert ring.handle is None
    ring.write(seq_rows(0, 3))
    assert seqs(ring.newest(8)) == [0, 1, 2]


BATCH = 1500


def _reader(handle: RingHandle, rounds: int, out: Any) -> None:
    """In another process: read the newest half of the ring again and again
    while the parent writes; every row returned must be the one its sequence
    says, and some reads must have lost rows to the writer."""
    bad = lost_total = read_total = 0
    for _ in range(rounds):
        end = max(0, probe(handle) - BATCH)  # rows a write has finished, as a tick's end is
        begin = max(0, end - handle.capacity // 2)
        rows, lost = read_span(Span(handle, begin, end))
        expected = np.arange(begin + lost, end, dtype=np.float64)
        if len(rows) != end - begin - lost or not np.array_equal(rows["t"], expected):
            bad += 1
        chassis_ok = np.array_equal(rows["chassis"], expected.astype(np.int64) % 7)
        bad += not chassis_ok
        lost_total += lost
        read_total += len(rows)
    out.put((bad, lost_total, read_total))


def test_a_reader_process_never_gets_a_row_the_writer_is_replacing() -> None:
    capacity = 4096
    ring = shared_ring(capacity)
    assert ring.handle is not None
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    reader = ctx.Process(target=_reader, args=(ring.handle, 3000, out))
    reader.start()
    written = 0
    while reader.is_alive():  # a read is often overtaken
        ring.write(seq_rows(written, BATCH))
        written += BATCH
    reader.join()
    bad, lost_total, read_total = out.get(timeout=5)
    assert bad == 0
    assert read_total > 0 and lost_total > 0
