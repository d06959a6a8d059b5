"""Session recording: points/s the Recorder writes, and what it costs ingest.

1. Recorder alone: stored rows (20 cars) appended in 400-point batches, as a
   busy UDP flush hands them over, flushed every 50,000 points (about one
   second at that rate) into Arrow IPC segments on disk, for each
   compression setting. Reported: points/s through append + flush + close,
   and bytes per point on disk.
2. Ingest with and without it, same run: ``Ingestor.ingest_payloads`` on
   40-point JSON datagrams, 50 datagrams per call, for a fixed time, on an
   event loop; with the recorder attached as a listener and flushed once a
   second either by ``Recorder.run`` (the server's way: the batch is built
   and compressed in a worker thread) or by ``flush()`` on the loop itself.
   Rounds alternate so drift in the machine hits all modes alike; the
   median round is reported.

    python bench/recording.py [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import datagrams, table

from pitwall_rt.ingest.pipeline import Ingestor
from pitwall_rt.recording import Recorder
from pitwall_rt.ring import RingBuffer
from pitwall_rt.schema import NUMERIC_FIELDS, SOURCE_ID, StringTable, empty_rows
from pitwall_rt.stats import IngestStats
from pitwall_rt.validate import Tables

CARS = 20
BATCH = 400
FLUSH_EVERY = 50_000
DEFAULT_COMPRESSION = inspect.signature(Recorder).parameters["compression"].default


def make_tables() -> Tables:
    tables = Tables(chassis=StringTable(1024), track=StringTable(256, reserved=("",)))
    for k in range(CARS):
        tables.chassis.intern(f"GR86-{k:03d}")
    tables.track.intern("barber")
    return tables


def synthetic_rows(n: int, seed: int = 1) -> np.ndarray:
    """Varied rows with every field set, so compression is not flattered."""
    rng = np.random.default_rng(seed)
    rows = empty_rows(n)
    rows["t"] = 1_757_184_000.0 + np.arange(n) * 0.0005
    rows["recv_t"] = rows["t"] + rng.uniform(0.0, 0.01, n)
    rows["chassis"] = np.arange(n) % CARS
    rows["track"] = 1
    rows["source"] = SOURCE_ID["udp"]
    for name in NUMERIC_FIELDS:
        rows[name] = np.round(rng.uniform(0, 100, n), 2)
    rows["lap"] = 1 + np.arange(n) // 50_000
    rows["gear"] = rng.integers(1, 7, n)
    return rows


def recorder_rate(rows: np.ndarray, compression: str | None) -> tuple[float, float]:
    """(points/s, bytes/point) for recording ``rows`` in BATCH-point appends."""
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(tmp, make_tables(), compression=compression)
        start = time.perf_counter()
        since_flush = 0
        for i in range(0, len(rows), BATCH):
            recorder.append(rows[i : i + BATCH])
            since_flush += BATCH
            if since_flush >= FLUSH_EVERY:
                recorder.flush()
                since_flush = 0
        recorder.close()
        elapsed = time.perf_counter() - start
        size = sum(p.stat().st_size for p in recorder.path.glob("*.arrows"))
    return len(rows) / elapsed, size / len(rows)


async def _ingest_for(
    ingestor: Ingestor, chunks: list[list[bytes]], seconds: float, recorder: Recorder | None
) -> float:
    """Ingest flat out on the event loop, yielding between calls as a server
    does between datagram flushes; the recorder's own flush task runs beside."""
    task = asyncio.create_task(recorder.run()) if recorder is not None else None
    accepted, k = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        accepted += ingestor.ingest_payloads(chunks[k % len(chunks)], "udp").accepted
        k += 1
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return accepted / elapsed


def ingest_rate(payloads: list[bytes], seconds: float, mode: str) -> float:
    """Points/s through ``ingest_payloads`` for ``seconds``. ``mode``: "off"
    (no recorder), "task" (the server's way: ``Recorder.run`` writes in a
    worker thread every second) or "inline" (``flush()`` on the loop)."""
    with tempfile.TemporaryDirectory() as tmp:
        tables = make_tables()
        ingestor = Ingestor(RingBuffer(20_000), tables, IngestStats())
        recorder = None if mode == "off" else Recorder(tmp, tables)
        if recorder is not None:
            ingestor.listeners.append(recorder.append)
        chunks = [payloads[i : i + 50] for i in range(0, len(payloads), 50)]
        if mode == "inline":
            assert recorder is not None
            rate = _inline(ingestor, chunks, seconds, recorder)
        else:
            rate = asyncio.run(_ingest_for(ingestor, chunks, seconds, recorder))
        if recorder is not None:
            recorder.close()
        return rate


def _inline(ingestor: Ingestor, chunks: list[list[bytes]], seconds: float, rec: Recorder) -> float:
    accepted, k = 0, 0
    start = time.perf_counter()
    next_flush = start + 1.0
    while (now := time.perf_counter()) - start < seconds:
        accepted += ingestor.ingest_payloads(chunks[k % len(chunks)], "udp").accepted
        k += 1
        if now >= next_flush:
            rec.flush()
            next_flush += 1.0
    return accepted / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0, help="per ingest round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--points", type=int, default=1_000_000, help="for the recorder alone")
    args = parser.parse_args()
    rows = synthetic_rows(args.points)
    out = []
    for compression in ("lz4", "zstd", None):
        rate, per_point = recorder_rate(rows, compression)
        label = f"Recorder alone, {compression or 'uncompressed'}"
        note = f"{per_point:.1f} bytes/point on disk" + (
            " (default)" if compression == DEFAULT_COMPRESSION else ""
        )
        out.append([label, f"{rate:,.0f}", note])
    payloads = datagrams(40, 2000)
    modes: dict[str, list[float]] = {"off": [], "task": [], "inline": []}
    for _ in range(args.rounds):
        for mode, rates in modes.items():
            rates.append(ingest_rate(payloads, args.seconds, mode))
    base = statistics.median(modes["off"])
    out.append(["ingest_payloads, no recorder", f"{base:,.0f}", "40-point JSON datagrams"])
    for mode, label in (("task", "flush task, worker thread"), ("inline", "flush() on the loop")):
        rate = statistics.median(modes[mode])
        note = f"{rate / base:.2f} of the rate without; flushed every second"
        out.append([f"ingest_payloads, recording ({label})", f"{rate:,.0f}", note])
    print(table("Session recording (points/s)", ["what", "points/s", "notes"], out))


if __name__ == "__main__":
    main()
