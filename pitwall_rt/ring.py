"""A preallocated numpy ring buffer of stored points.

The ring is the one place recent telemetry lives. It is allocated once at
start-up (``capacity`` rows of ``POINT_DTYPE``) and never grows: a burst
larger than the ring overwrites the oldest rows and is counted, so memory is
bounded by configuration whatever the traffic.

Positions are absolute sequence numbers: the n-th point ever written has
sequence n, and lives at ``n % capacity`` while it survives. A consumer keeps
the sequence it has read up to (its cursor); ``read_since`` returns what came
after and how many points were overwritten before the consumer got to them.
"""

from __future__ import annotations

import logging
import mmap
from dataclasses import dataclass

import numpy as np

from .ring_share import RingHandle, SharedRows, fence, wrapped_views
from .schema import POINT_DTYPE, as_records, concat_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinceRead:
    """Rows newer than a cursor, the cursor to use next time, and how many
    points the reader missed because they were overwritten first."""

    rows: np.ndarray
    cursor: int
    missed: int


@dataclass(frozen=True)
class SinceViews:
    """``SinceRead`` as views into the ring (see ``RingBuffer.views_since``)."""

    parts: list[np.ndarray]
    cursor: int
    missed: int

    def __len__(self) -> int:
        return sum(map(len, self.parts))


def resident_rows(n: int) -> np.ndarray:
    """``n`` rows of zeroed memory whose pages are all mapped in now.

    A fresh allocation is mapped lazily: the first write into each page then
    takes a page fault, about 10 us each on the development VM, and they
    came in bursts that held a 40-row write (and the event loop) for up to
    7 ms, every couple of MB through the ring's first lap. So the pages are
    mapped at start-up. Where the platform has ``MAP_POPULATE`` (Linux) the
    kernel maps them in one call, 0.36 s per GiB here against 2.7 s for
    touching each page from Python, which is what a 50M-point ring (5.6 GB)
    made users wait for; elsewhere every page is touched.
    """
    nbytes = max(1, n * POINT_DTYPE.itemsize)
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if populate:
        try:
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate
            return np.frombuffer(mmap.mmap(-1, nbytes, flags=flags), POINT_DTYPE, count=n)
        except OSError:
            pass  # an mmap refused (a locked-down sandbox): allocate and touch instead
    rows = np.empty(n, dtype=POINT_DTYPE)
    rows.view(np.uint8).fill(0)
    return rows


class RingBuffer:
    """Fixed-capacity store of the newest points, written in vectorised batches."""

    def __init__(self, capacity: int, shared: bool = False) -> None:
        """``shared``: keep the rows where pool workers can read them in place
        (see ``ring_share``); where the platform can't, the ring stays private
        and ``handle`` is None."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.handle: RingHandle | None = None
        self._mark: np.ndarray | None = None
        self._shared: SharedRows | None = None
        if shared:
            try:
                self._shared = SharedRows(capacity)
            except OSError as exc:
                log.warning("ring not shared with the compute workers (%s): ticks are copied", exc)
        if self._shared is not None:
            self._data = self._shared.rows
            self._mark = self._shared.mark
            self.handle = self._shared.handle
        else:
            self._data = resident_rows(capacity)
        # Rows are written as opaque records: see schema.RECORD_DTYPE.
        self._records = as_records(self._data)
        self._written = 0

    @property
    def written(self) -> int:
        """Total points ever written; also the sequence of the next point."""
        return self._written

    @property
    def size(self) -> int:
        """Points currently held."""
        return min(self._written, self.capacity)

    @property
    def overwritten(self) -> int:
        """Points pushed out of the ring by newer ones."""
        return max(0, self._written - self.capacity)

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)

    def write(self, rows: np.ndarray) -> None:
        """Append a batch: at most two slice copies, no per-row work.

        A batch longer than the ring keeps only its newest ``capacity`` rows
        (the rest count as written and overwritten at once).
        """
        n = len(rows)
        if n == 0:
            return
        if n > self.capacity:
            self._written += n - self.capacity
            rows = rows[n - self.capacity :]
            n = self.capacity
        records = as_records(rows)
        if self._mark is not None:  # before the rows change: see ring_share
            self._mark[0] = self._written + n
            fence()
        start = self._written % self.capacity
        first = min(n, self.capacity - start)
        self._records[start : start + first] = records[:first]
        if first < n:
            self._records[: n - first] = records[first:]
        self._written += n

    def _views(self, begin: int, end: int) -> list[np.ndarray]:
        return wrapped_views(self._data, begin, end)

    def views_since(self, cursor: int) -> SinceViews:
        """``read_since`` without the copy: the held points at or after
        ``cursor`` as views into the ring, oldest first.

        A copy of a broadcast tick at 400k points/s is 240,000 rows of fresh
        memory, and its page faults held the event loop for 70 to 100 ms.
        The views are only valid until the next ``write``: read them in the
        same synchronous step (the loop is the only writer).

        A cursor older than the oldest held point gets everything held and
        the gap as ``missed``; a cursor from the future (a consumer bug, or a
        ring replaced underneath it) reads nothing."""
        oldest = self._written - self.size
        cursor = min(cursor, self._written)
        begin = max(cursor, oldest)
        return SinceViews(self._views(begin, self._written), self._written, max(0, oldest - cursor))

    def newest(self, n: int) -> np.ndarray:
        """The newest ``n`` points (fewer if the ring holds fewer), oldest first."""
        n = max(0, min(n, self.size))
        return concat_rows(self._views(self._written - n, self._written))

    def read_since(self, cursor: int) -> SinceRead:
        """Points written at or after sequence ``cursor``, as a copy (see
        ``views_since`` for what an old or future cursor gets)."""
        views = self.views_since(cursor)
        return SinceRead(concat_rows(views.parts), views.cursor, views.missed)
