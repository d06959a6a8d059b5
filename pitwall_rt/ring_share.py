"""Ring memory the compute workers read in place, instead of a copy shipped per tick.

Shipping a tick to the pool cost the event loop three copies of its rows:
out of the ring, into per-worker shards, and into the pickle the pool's
feeder thread writes to the pipe, holding the GIL the loop needs. At 400k
points/s that was 31 MB every tick, and the first copy into fresh memory
held the loop for 60 to 100 ms when the kernel compacted memory for it.

So the ring's rows live in a ``memfd`` (anonymous shared memory: no name
in ``/dev/shm`` to leak if the server is killed), and a tick sends the
workers only a :class:`Span` of sequence numbers. A worker opens the
server's descriptor through ``/proc/<pid>/fd/<fd>`` once, maps it read-only
and copies its span out itself, on its own core.

The loop keeps writing while a worker copies. Before each write the ring
stores, in the mapping's first word, the sequence its write reaches
(``writing_to``). A worker reads that word after its copy: any row older
than ``writing_to - capacity`` may have been overwritten under it, so it is
dropped and counted lost, as rows overwritten before a copying reader got
to them always were. This relies on the writer's stores staying in
program order (the mark before the rows) and the reader's loads too (the
rows before the mark), and on the 8-byte mark being stored in one piece:
x86-64 guarantees all three for ordinary moves. Big copies may use
fast-string or non-temporal stores, which x86 does not keep in order with
other stores, so both sides put a ``fence`` between the mark and the rows.
On other CPUs the ring is not shared.
"""

from __future__ import annotations

import mmap
import os
import platform
import secrets
import threading
import weakref
from dataclasses import dataclass

import numpy as np

from .schema import POINT_DTYPE, column_of, concat_rows, take_across

ORDERED_MACHINES = frozenset({"x86_64", "amd64"})
"""CPUs that keep stores in program order, and loads too, and store the
8-byte mark whole (x86-64). On ARM64 the mark could become visible after
the rows it guards, so the ring is not shared there and ticks are copied."""

HEADER_BYTES = mmap.PAGESIZE
"""The first page holds ``writing_to`` and the ring's token; rows start
page-aligned after it."""


_FENCE = threading.Lock()


def fence() -> None:
    """A full memory barrier: taking a lock is an atomic read-modify-write,
    which no earlier or later load or store on x86 is reordered across
    (about 60 ns)."""
    with _FENCE:
        pass


@dataclass(frozen=True)
class RingHandle:
    """Where a worker finds a shared ring: the server's pid and descriptor."""

    pid: int
    fd: int
    capacity: int
    token: int
    """Random, also in the mapping's second word: a descriptor number reused
    for another ring (in tests, one process makes many) is told apart."""


@dataclass(frozen=True)
class Span:
    """Ring sequences ``[begin, end)``: what a tick's job reads."""

    ring: RingHandle
    begin: int
    end: int


class SharedRows:
    """``capacity`` rows in shared memory, mapped in now, plus the write mark.

    Mapping shared memory in costs more than private (1.4 s per GiB here
    against 0.45 s), paid once at start-up.

    Raises OSError where the platform has no ``memfd_create`` or refuses the
    mapping; the caller then keeps the ring private and ships copies."""

    def __init__(self, capacity: int) -> None:
        if not hasattr(os, "memfd_create"):
            raise OSError("no memfd_create on this platform")
        if platform.machine().lower() not in ORDERED_MACHINES:
            raise OSError(f"{platform.machine()} may reorder the ring's stores")
        fd = os.memfd_create("pitwall-ring", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, _nbytes(capacity))
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            self._map = mmap.mmap(fd, _nbytes(capacity), flags=flags)
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        weakref.finalize(self, os.close, fd)  # workers open it by number while the ring lives
        self.handle = RingHandle(os.getpid(), fd, capacity, secrets.randbits(63))
        self.rows, header = _layout(self._map, capacity)
        header[1] = self.handle.token
        self.mark = header[:1]


def _nbytes(capacity: int) -> int:
    return HEADER_BYTES + max(1, capacity * POINT_DTYPE.itemsize)


def _layout(memory: mmap.mmap, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """A ring mapping as its rows and its header words (the write mark, the
    token): the one place that knows where each sits."""
    rows = np.frombuffer(memory, POINT_DTYPE, count=capacity, offset=HEADER_BYTES)
    return rows, np.frombuffer(memory, np.int64, count=2)


@dataclass
class _Attached:
    rows: np.ndarray
    mark: np.ndarray


_attached: dict[RingHandle, _Attached] = {}


def _attach(handle: RingHandle) -> _Attached:
    """Map ``handle``'s memory read-only, once per worker process."""
    found = _attached.get(handle)
    if found is not None:
        return found
    fd = os.open(f"/proc/{handle.pid}/fd/{handle.fd}", os.O_RDONLY)
    try:
        memory = mmap.mmap(fd, _nbytes(handle.capacity), flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    rows, header = _layout(memory, handle.capacity)
    if int(header[1]) != handle.token:
        raise OSError(f"descriptor {handle.fd} of process {handle.pid} is not this ring")
    found = _Attached(rows, header[:1])
    _attached[handle] = found
    return found


def probe(handle: RingHandle) -> int:
    """Attach to ``handle`` and return its write mark: a worker's start-up check
    that sharing works here (raises OSError where it doesn't)."""
    return int(_attach(handle).mark[0])


def read_span(span: Span, cars: list[int] | None = None) -> tuple[np.ndarray, int]:
    """The span's rows that are still intact, as one copy, and how many of
    its oldest rows were overwritten before (or while) they were copied.

    ``cars``: only these chassis' rows are copied (a shard of a split tick),
    so a worker never copies the other shards' rows to throw them away."""
    shared = _attach(span.ring)
    capacity = span.ring.capacity
    begin = max(span.begin, span.end - capacity)
    parts = wrapped_views(shared.rows, begin, span.end)
    if cars is None:
        rows, offsets = concat_rows(parts), None
    else:  # each kept row's offset from ``begin``, to cut by the mark below
        offsets = np.flatnonzero(np.isin(column_of(parts, "chassis"), cars))
        rows = take_across(parts, offsets)
    fence()  # the copy's loads complete before the mark is read
    oldest_intact = int(shared.mark[0]) - capacity
    lost = max(0, min(oldest_intact, span.end) - span.begin)
    cut = oldest_intact - begin
    first = max(0, cut) if offsets is None else int(np.searchsorted(offsets, cut))
    return rows[first:], lost


def wrapped_views(rows: np.ndarray, begin: int, end: int) -> list[np.ndarray]:
    """Sequences [begin, end) of a ring stored in ``rows`` as views: none when
    empty, two when they wrap past the end of the storage. The caller makes
    sure they are all still held."""
    capacity = len(rows)
    n = max(0, end - begin)
    if n == 0:
        return []
    start = begin % capacity
    if start + n <= capacity:
        return [rows[start : start + n]]
    return [rows[start:], rows[: start + n - capacity]]
