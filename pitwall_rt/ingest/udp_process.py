"""The loop's side of the UDP receiver process (``udp_child``).

The parent keeps the bound socket (for the port number and kernel drop
counts) and lends a duplicate to the child. Finished batches arrive over a
socket pair the loop reads as a stream; storing one is a remap of name
ids and a ring write, whatever the number of points in it.

If the child dies it is started again on the same socket, so datagrams the
kernel queued meanwhile are still read; restarts are counted in health.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import pickle
import socket
from multiprocessing.process import BaseProcess

import numpy as np

from ..schema import StringTable, TableFullError
from .pipeline import Ingestor
from .udp import BinaryHandler, UdpStats
from .udp_child import FRAME_HEADER, STOP, ChildBatch, ReceiverLimits, run_receiver

log = logging.getLogger(__name__)


class IdMap:
    """Maps a child's local name ids to the parent's table ids.

    A name the parent's bounded table has no room for maps to -1, and points
    carrying it are rejected as ``table_full``, as they would be in the loop.
    """

    def __init__(self, table: StringTable, reserved: int = 0) -> None:
        self.table = table
        self._ids = np.arange(reserved, dtype=np.int64)

    def learn(self, names: list[str]) -> None:
        if not names:
            return
        new = np.empty(len(names), dtype=np.int64)
        for i, name in enumerate(names):
            try:
                new[i] = self.table.intern(name)
            except TableFullError:
                new[i] = -1
        self._ids = np.concatenate([self._ids, new])

    def __call__(self, local: np.ndarray) -> np.ndarray:
        return self._ids[local]


def remap(batch: ChildBatch, chassis: IdMap, track: IdMap) -> tuple[np.ndarray, int, int]:
    """Rows with the parent's ids, and how many were dropped for a full table
    (chassis, track)."""
    chassis.learn(batch.new_chassis)
    track.learn(batch.new_tracks)
    rows = batch.rows
    if not len(rows):
        return rows, 0, 0
    chassis_ids = chassis(rows["chassis"])
    track_ids = track(rows["track"])
    no_chassis = chassis_ids < 0
    no_track = (track_ids < 0) & ~no_chassis
    rows["chassis"] = chassis_ids
    rows["track"] = track_ids
    if no_chassis.any() or no_track.any():
        rows = rows[~(no_chassis | no_track)]
    return rows, int(no_chassis.sum()), int(no_track.sum())


class UdpProcessReceiver:
    """Runs ``udp_child`` and stores what it sends."""

    def __init__(
        self,
        sock: socket.socket,
        ingestor: Ingestor,
        binary_handler: BinaryHandler | None = None,
        limits: ReceiverLimits | None = None,
    ) -> None:
        self.sock = sock
        self.ingestor = ingestor
        self.binary_handler = binary_handler
        self.limits = limits or ReceiverLimits(
            max_chassis=ingestor.tables.chassis.capacity,
            max_tracks=ingestor.tables.track.capacity,
        )
        self.stats = UdpStats()
        self._ctx = mp.get_context("spawn")
        self._proc: BaseProcess | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Start the child and the task that stores its batches."""
        ours, theirs = socket.socketpair()
        proc = self._ctx.Process(
            target=run_receiver,
            args=(self.sock, theirs, self.limits),
            name="pitwall-udp",
            daemon=True,
        )
        proc.start()
        theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        self._proc, self._writer = proc, writer
        self._task = asyncio.create_task(self._read(reader), name="udp-child-reader")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        # A new child starts with empty tables: its ids start from scratch.
        chassis = IdMap(self.ingestor.tables.chassis)
        track = IdMap(self.ingestor.tables.track, reserved=1)
        try:
            while True:
                header = await reader.readexactly(FRAME_HEADER.size)
                (size,) = FRAME_HEADER.unpack(header)
                self.apply(pickle.loads(await reader.readexactly(size)), chassis, track)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        if not self._closing:
            await self._restart()

    async def _restart(self) -> None:
        code = None
        if self._proc is not None:
            await asyncio.to_thread(self._proc.join, 1.0)
            code = self._proc.exitcode
        log.error("UDP receiver process exited (code %s); starting another", code)
        self.stats.receiver_restarts += 1
        if self._writer is not None:
            self._writer.close()
        await self.start()

    def apply(self, batch: ChildBatch, chassis: IdMap, track: IdMap) -> None:
        """Count and store one batch from the child."""
        stats, ingest_stats = self.stats, self.ingestor.stats
        stats.flushes += 1
        stats.datagrams += batch.datagrams
        stats.bytes += batch.size_bytes
        ingest_stats.payloads["udp"] += batch.json_payloads
        if batch.empty_payloads:
            ingest_stats.empty_payloads["udp"] += batch.empty_payloads
        rows, no_chassis, no_track = remap(batch, chassis, track)
        reasons = dict(batch.reasons)
        if no_chassis:
            reasons["table_full:chassis"] = reasons.get("table_full:chassis", 0) + no_chassis
        if no_track:
            reasons["table_full:track"] = reasons.get("table_full:track", 0) + no_track
        if reasons:
            ingest_stats.count_rejections("udp", reasons)
        self.ingestor.store(rows, "udp")
        if batch.binary:
            stats.binary_datagrams += len(batch.binary)
            if self.binary_handler is not None:
                self.binary_handler(batch.binary)
            else:
                ingest_stats.count_rejections("udp", {"unknown_binary": len(batch.binary)})

    async def close(self, timeout_s: float = 1.0) -> None:
        """Stop the child and store everything it had received. Idempotent."""
        if self._closing:
            return
        self._closing = True
        writer, task, proc = self._writer, self._task, self._proc
        if writer is None or task is None or proc is None:
            return
        with contextlib.suppress(ConnectionError):
            writer.write(STOP)
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            task.cancel()
        writer.close()
        await asyncio.to_thread(proc.join, timeout_s)
        if proc.is_alive():
            proc.kill()
            await asyncio.to_thread(proc.join, timeout_s)
