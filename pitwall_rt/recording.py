"""Session recording: every accepted point, kept on disk as Arrow IPC streams.

A session is one server run. Its points go to ``DATA_DIR/sessions/<id>/`` as
numbered segments, each an Arrow IPC *stream* (``seg-000001.arrows``) holding
one record batch per flush::

    sessions/20250906T184041Z-3fa2c1/
        seg-000001.arrows   closed: ends with the end-of-stream marker
        seg-000001.json     written when the segment closed (points, time range, chassis)
        seg-000002.arrows   open: grows by one record batch per flush

Why streams: a stream is appended message by message and is readable up to
the last complete message, so a ``kill -9`` mid-write leaves a torn tail that
``read_session`` skips, not a broken file. The listener on the ingest path
only buffers rows; ``flush()`` (called at least every ``FLUSH_INTERVAL_S`` by
``Recorder.run``) writes them, so a crash loses at most one flush interval.
Rows reach the kernel on every flush (no fsync: that survives a process
crash, not a power cut).

Columns are the point's canonical fields with chassis and track as strings,
``meta_time`` and ``recv_t`` as UTC timestamps (ns: exact for our float
seconds), ``source`` as a string, lap and gear as integers; absent values
are nulls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .points import iso_times
from .rowchunks import RowChunks
from .schema import (
    INT_FIELDS,
    NUMERIC_FIELDS,
    POINT_DTYPE,
    SOURCES,
    StringTable,
    empty_rows,
    numeric_columns,
)
from .validate import Tables

log = logging.getLogger(__name__)

FORMAT = "pitwall-recording/1"
FLUSH_INTERVAL_S = 1.0
OVERFLOW_FACTOR = 4
"""A buffer this many times ``max_buffer_points`` is written on the spot."""
BATCH_ROWS = 65_536
"""Rows per record batch written (and per buffer chunk): the default
``max_buffer_points``, so a flush woken by a full buffer is one batch.

The writer thread shares the GIL with the event loop. Each time it takes
the GIL back (after numpy or Arrow released it) while the loop is busy, it
waits out the switch interval (1 ms in the server) and then stops the loop
while it runs: on the 2-core VM, about a millisecond of the loop's time
each. What matters is how many a point causes. Offline, with the server's
interval, a 65,536-row flush cost a busy loop 23 to 47 ms at 8,192 rows a
batch, and 5 to 13 ms at 65,536 rows with ``BatchBuilder`` making few
calls. (Compressing does not hold the GIL: ``write_batch`` releases it.)"""
SEGMENT_SUFFIX = ".arrows"
_INT_TYPES = {"lap": pa.int32(), "gear": pa.int8()}
_TIME = pa.timestamp("ns", tz="UTC")
_NS_PER_S = 1_000_000_000

SCHEMA = pa.schema(
    [
        pa.field("meta_time", _TIME),
        pa.field("chassis", pa.string()),
        pa.field("track", pa.string()),
        *(pa.field(n, _INT_TYPES.get(n, pa.float64())) for n in NUMERIC_FIELDS),
        pa.field("recv_t", _TIME),
        pa.field("source", pa.string()),
    ],
    metadata={"format": FORMAT, "units": "see DESIGN.md: km/h, m, G, deg, bar, rpm, %"},
)


def sessions_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "sessions"


# -- rows <-> Arrow ---------------------------------------------------------------


def epoch_ns(seconds: np.ndarray) -> pa.Array:
    """Float epoch seconds -> ns timestamps, exact to the ns: whole seconds and
    the fraction are scaled apart (``seconds * 1e9`` would round to 256 ns),
    so ``epoch_seconds`` gives back the very same floats."""
    whole = np.floor(seconds)
    fraction_ns = np.round((seconds - whole) * 1e9).astype(np.int64)
    return pa.array(whole.astype(np.int64) * _NS_PER_S + fraction_ns, type=_TIME)


def epoch_seconds(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """ns timestamps -> float epoch seconds, the inverse of ``epoch_ns``."""
    ns = np.asarray(column.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False))
    whole, fraction_ns = np.divmod(ns, _NS_PER_S)
    return whole.astype(np.float64) + fraction_ns / 1e9


class _NameArrays:
    """Arrow string arrays of a StringTable's names, rebuilt only when it grew,
    so turning ids into strings is one vectorised ``take`` per column."""

    def __init__(self, table: StringTable, blank_is_null: bool) -> None:
        self.table = table
        self.blank_is_null = blank_is_null
        self._names = pa.array([], pa.string())

    def take(self, ids: np.ndarray) -> pa.Array:
        if len(self._names) != len(self.table):
            names = [name for _, name in self.table.items()]
            self._names = pa.array([n or None for n in names] if self.blank_is_null else names)
        return self._names.take(pa.array(ids))


class BatchBuilder:
    """Stored rows -> a record batch of ``SCHEMA`` (names decoded at write time).

    Few calls a batch (see ``BATCH_ROWS``): the numeric fields are one
    strided copy, one NaN test and one bit-packing for all of them, then
    wrapped as Arrow arrays without a copy, where ``pa.array`` per field
    was a dozen more GIL hand-overs."""

    def __init__(self, tables: Tables) -> None:
        self._chassis = _NameArrays(tables.chassis, blank_is_null=False)
        self._track = _NameArrays(tables.track, blank_is_null=True)
        self._sources = pa.array(SOURCES)

    def build(self, rows: np.ndarray) -> pa.RecordBatch:
        columns: list[pa.Array] = [
            epoch_ns(rows["t"]),
            self._chassis.take(rows["chassis"]),
            self._track.take(rows["track"]),
            *numeric_arrays(numeric_columns(rows)),
            epoch_ns(rows["recv_t"]),
            self._sources.take(pa.array(rows["source"])),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


def numeric_arrays(block: np.ndarray) -> list[pa.Array]:
    """``numeric_columns`` as Arrow arrays of ``SCHEMA``'s types, NaN as
    null; the float columns share ``block``'s memory."""
    n = block.shape[1]
    present = ~np.isnan(block)
    complete = present.all(axis=1)
    bitmaps = np.packbits(present, axis=1, bitorder="little")
    arrays = []
    for i, name in enumerate(NUMERIC_FIELDS):
        kind = _INT_TYPES.get(name, pa.float64())
        values = block[i]
        if name in INT_FIELDS:  # validated integers; 0 under a null
            values = np.where(present[i], values, 0.0).astype(kind.to_pandas_dtype())
        if complete[i]:
            buffers, nulls = [None, pa.py_buffer(values)], 0
        else:  # -1: Arrow counts them (in C) when it needs to
            buffers, nulls = [pa.py_buffer(bitmaps[i]), pa.py_buffer(values)], -1
        arrays.append(pa.Array.from_buffers(kind, n, buffers, null_count=nulls))
    return arrays


def _intern_column(column: pa.ChunkedArray, table: StringTable) -> np.ndarray:
    """Ids of a string column's values in ``table`` (grown to fit); null -> ''."""
    column = column.fill_null("")
    names = pc.unique(column)
    table.capacity = len(table) + len(names)
    lookup = np.array([table.intern(name) for name in names.to_pylist()], dtype=np.int32)
    return lookup[np.asarray(pc.index_in(column, value_set=names).to_numpy(), dtype=np.intp)]


def table_to_rows(table: pa.Table) -> tuple[np.ndarray, Tables]:
    """A recording back to stored rows, with fresh name tables sized to fit,
    so ``rows_to_points`` formats it exactly as ``/api/recent`` would."""
    rows = np.empty(table.num_rows, dtype=POINT_DTYPE)
    rows["t"] = epoch_seconds(table.column("meta_time"))
    rows["recv_t"] = epoch_seconds(table.column("recv_t"))
    tables = Tables(chassis=StringTable(0), track=StringTable(1, reserved=("",)))
    rows["chassis"] = _intern_column(table.column("chassis"), tables.chassis)
    rows["track"] = _intern_column(table.column("track"), tables.track)
    source = pc.index_in(table.column("source"), value_set=pa.array(SOURCES))
    rows["source"] = source.fill_null(0).to_numpy()
    for name in NUMERIC_FIELDS:
        rows[name] = table.column(name).to_numpy().astype(float)
    return rows, tables


# -- writing ----------------------------------------------------------------------


def new_session_id(now_s: float) -> str:
    """Sortable by start time; the random tail keeps two servers that share a
    data directory and start in the same second apart."""
    stamp = datetime.fromtimestamp(now_s, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass
class SegmentSummary:
    """What a segment holds: kept beside a closed segment as JSON so listing
    sessions does not read their data. Times are epoch seconds."""

    points: int = 0
    t_min: float = float("inf")
    t_max: float = float("-inf")
    chassis: set[str] = field(default_factory=set)
    bytes: int = 0

    def add(self, times: np.ndarray, chassis: Iterable[str]) -> None:
        """Count a written batch from its rows' ``meta_time`` seconds and
        chassis names: reading them back out of the Arrow batch cost the
        writer more GIL hand-overs than building it."""
        if not len(times):
            return
        self.points += len(times)
        self.t_min = min(self.t_min, float(np.nanmin(times)))
        self.t_max = max(self.t_max, float(np.nanmax(times)))
        self.chassis.update(chassis)

    def merge(self, other: SegmentSummary) -> None:
        self.points += other.points
        self.bytes += other.bytes
        self.t_min, self.t_max = min(self.t_min, other.t_min), max(self.t_max, other.t_max)
        self.chassis |= other.chassis

    def to_json(self) -> dict[str, Any]:
        """Only closed segments get one, and a segment opens with its first
        batch, so the times are finite."""
        return {**asdict(self), "chassis": sorted(self.chassis)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SegmentSummary:
        return cls(**{**data, "chassis": set(data["chassis"])})


class _Segment:
    """One open Arrow IPC stream file, written a record batch at a time."""

    def __init__(self, path: Path, compression: str | None, opened_mono_s: float) -> None:
        self.path = path
        self.opened_mono_s = opened_mono_s
        self.summary = SegmentSummary()
        self._sink = pa.OSFile(str(path), "wb")  # unbuffered: each batch reaches the kernel
        # Compress in the writer thread itself: Arrow's own pool would put
        # two more busy threads on a two-core machine, beside the event loop.
        options = pa.ipc.IpcWriteOptions(compression=compression, use_threads=False)
        self._writer = pa.ipc.new_stream(self._sink, SCHEMA, options=options)

    def write(self, batch: pa.RecordBatch, times: np.ndarray, chassis: Iterable[str]) -> None:
        self._writer.write_batch(batch)
        self.summary.add(times, chassis)
        self.summary.bytes = self._sink.tell()

    def close(self) -> None:
        """End the stream and leave the summary beside it (atomically)."""
        self._writer.close()
        self.summary.bytes = self._sink.tell()
        self._sink.close()
        sidecar = self.path.with_suffix(".json")
        tmp = sidecar.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.summary.to_json()))
        os.replace(tmp, sidecar)


@dataclass
class RecorderStats:
    """Counters for /api/health: what reached disk and what was lost."""

    points_written: int = 0
    bytes_written: int = 0
    segments: int = 0
    flushes: int = 0
    write_errors: int = 0
    points_lost: int = 0


@functools.cache
def warm_arrow() -> None:
    """Build one full record batch, once per process, before the writer thread does.

    The first build pays pyarrow's lazy set-up (its compute kernels): about
    30 ms, most of it holding the GIL. In the writer thread that held the
    event loop for up to 16 ms in the first second of recording."""
    tables = Tables(chassis=StringTable(1), track=StringTable(1, reserved=("",)))
    tables.chassis.intern("warm-up")
    BatchBuilder(tables).build(empty_rows(BATCH_ROWS))


class Recorder:
    """Appends every accepted batch to the current session's segments.

    Use ``append`` as an ``Ingestor`` listener; run ``run()`` as a task (it
    flushes every ``FLUSH_INTERVAL_S``, building and compressing the batch in
    a worker thread so the event loop only hands the rows over) and call
    ``close()`` at shutdown. Segments rotate after ``segment_bytes`` bytes or
    ``segment_s`` seconds. When the buffer passes ``max_buffer_points`` rows
    (about 130 bytes each) ``append`` wakes ``run()`` to write early, still
    in the thread; only if the buffer reaches ``OVERFLOW_FACTOR`` times that
    (the disk or the thread can't keep up) does ``append`` write on the spot,
    so memory stays bounded whatever the ingest rate. A disk error is logged
    once, counted, and the rows it held are counted as lost: recording never
    breaks ingest.
    """

    def __init__(
        self,
        data_dir: str | Path,
        tables: Tables,
        *,
        session_id: str | None = None,
        segment_bytes: int = 64 << 20,
        segment_s: float = 600.0,
        max_buffer_points: int = 65_536,
        compression: str | None = "lz4",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session_id = session_id or new_session_id(clock())
        self.path = sessions_dir(data_dir) / self.session_id
        self.segment_bytes = segment_bytes
        self.segment_s = segment_s
        self.max_buffer_points = max_buffer_points
        self.compression = compression
        self.monotonic = monotonic
        self.stats = RecorderStats()
        self._builder = BatchBuilder(tables)
        self._chassis = tables.chassis
        warm_arrow()
        # Whole chunks of BATCH_ROWS: each is one record batch when written.
        self._buffer = RowChunks(BATCH_ROWS, max_spare=max_buffer_points // BATCH_ROWS + 2)
        self._segment: _Segment | None = None
        self._lock = threading.Lock()  # one writer at a time: flush task vs overflow/close
        self._closed = False
        self._full = asyncio.Event()  # set by append: flush before the interval is up
        self._running = False  # whether run() is there to be woken

    @property
    def buffered(self) -> int:
        """Points accepted but not yet written."""
        return len(self._buffer)

    def append(self, rows: np.ndarray) -> None:
        """Ingest listener: keep a copy of the batch (the caller may reuse its array)."""
        if self._closed or not len(rows):
            return
        self._buffer.append(rows)
        buffered = len(self._buffer)
        if buffered >= self.max_buffer_points:
            if buffered >= OVERFLOW_FACTOR * self.max_buffer_points or not self._running:
                self.flush()
            else:
                self._full.set()

    def _take(self) -> list[np.ndarray]:
        """The buffered rows, chunk by chunk, leaving the buffer empty (loop thread)."""
        return self._buffer.take()

    def flush(self) -> int:
        """Write what is buffered, now; returns points written."""
        return self._write(self._take())

    def _write(self, parts: list[np.ndarray]) -> int:
        """Build, compress and write ``parts`` (a record batch each, in order);
        safe from a worker thread. The chunks go back to the buffer after."""
        rows = sum(map(len, parts))
        try:
            with self._lock:
                if rows:
                    try:
                        segment = self._segment or self._open_segment()
                        before = segment.summary.bytes
                        for part in parts:
                            seen = np.flatnonzero(np.bincount(part["chassis"]))
                            chassis = self._chassis.names(seen)
                            segment.write(self._builder.build(part), part["t"], chassis)
                    except OSError as exc:
                        self._fail(exc, rows)
                        return 0
                    self.stats.points_written += rows
                    self.stats.bytes_written += segment.summary.bytes - before
                    self.stats.flushes += 1
                self._rotate_if_due()
            return rows
        finally:
            self._buffer.give_back(parts)

    def _open_segment(self) -> _Segment:
        self.path.mkdir(parents=True, exist_ok=True)
        self.stats.segments += 1
        name = f"seg-{self.stats.segments:06d}{SEGMENT_SUFFIX}"
        self._segment = _Segment(self.path / name, self.compression, self.monotonic())
        return self._segment

    def _rotate_if_due(self) -> None:
        segment = self._segment
        if segment is None:
            return
        too_big = segment.summary.bytes >= self.segment_bytes
        too_old = self.monotonic() - segment.opened_mono_s >= self.segment_s
        if too_big or too_old:
            self._close_segment()

    def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is not None:
            try:
                segment.close()
            except OSError as exc:
                self._fail(exc, 0)

    def _fail(self, exc: OSError, rows: int) -> None:
        if not self.stats.write_errors:
            log.error("recording to %s failed: %s (counting lost points from now)", self.path, exc)
        self.stats.write_errors += 1
        self.stats.points_lost += rows
        self._segment = None  # start a fresh segment on the next flush

    def close(self) -> None:
        """Write what is buffered and end the open segment. Idempotent."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        with self._lock:
            self._close_segment()

    async def run(self, interval_s: float = FLUSH_INTERVAL_S) -> None:
        """Flush every ``interval_s`` seconds until cancelled, on a fixed
        schedule so the gap between flushes does not creep past it."""
        loop = asyncio.get_running_loop()
        due = loop.time() + interval_s
        self._running = True
        try:
            while True:
                try:
                    await asyncio.wait_for(self._full.wait(), max(0.0, due - loop.time()))
                except TimeoutError:
                    due = max(due + interval_s, loop.time())
                self._full.clear()
                await asyncio.to_thread(self._write, self._take())
        finally:
            self._running = False

    def health(self) -> dict[str, Any]:
        return {"session": self.session_id, "buffered": len(self._buffer), **vars(self.stats)}


# -- reading ----------------------------------------------------------------------


def segment_paths(path: str | Path) -> list[Path]:
    """The segments of a session directory in order, or ``[path]`` for one file."""
    path = Path(path)
    if path.is_dir():
        return sorted(path.glob(f"seg-*{SEGMENT_SUFFIX}"))
    return [path]


def iter_batches(segment: Path) -> Iterator[pa.RecordBatch]:
    """Every complete record batch of a segment; a torn tail ends it quietly.

    A process killed mid-write leaves a partial message at the end (or a file
    with no complete schema yet); everything before it is intact.
    """
    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(segment)))
    except (pa.ArrowInvalid, OSError):
        return
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError):
            log.info("%s: torn tail after the last complete batch, ignored", segment)
            return


def read_session(path: str | Path) -> pa.Table:
    """A whole session (directory) or one segment as one table, arrival order."""
    batches = [b for seg in segment_paths(path) for b in iter_batches(seg)]
    return pa.Table.from_batches(batches, schema=SCHEMA)


def segment_summary(segment: Path) -> SegmentSummary:
    """From the sidecar of a closed segment, else by reading it (open or torn)."""
    sidecar = segment.with_suffix(".json")
    with contextlib.suppress(OSError, ValueError, KeyError):
        return SegmentSummary.from_json(json.loads(sidecar.read_text()))
    summary = SegmentSummary()
    for batch in iter_batches(segment):
        chassis = pc.unique(batch.column("chassis")).to_pylist()
        summary.add(epoch_seconds(batch.column("meta_time")), chassis)
    summary.bytes = segment.stat().st_size
    return summary


def _iso(epoch_s: float) -> str | None:
    return iso_times(np.array([epoch_s]))[0] if np.isfinite(epoch_s) else None


def list_sessions(data_dir: str | Path) -> list[dict[str, Any]]:
    """Recordings under ``data_dir``, oldest first: id, start and end (sample
    time, ISO-8601 UTC), points, bytes, segments, chassis."""
    root = sessions_dir(data_dir)
    if not root.is_dir():
        return []
    sessions = []
    for session in sorted(p for p in root.iterdir() if p.is_dir()):
        total = SegmentSummary()
        segments = segment_paths(session)
        for seg in segments:
            total.merge(segment_summary(seg))
        sessions.append(
            {
                "id": session.name,
                "start": _iso(total.t_min),
                "end": _iso(total.t_max),
                "points": total.points,
                "bytes": total.bytes,
                "segments": len(segments),
                "chassis": sorted(total.chassis),
            }
        )
    return sessions
