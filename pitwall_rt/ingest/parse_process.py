"""The loop's side of a parse process (``parse_worker``).

The server runs two: one for the UDP socket and one for HTTP bodies, so a
big body being parsed never leaves datagrams waiting. The parent keeps the
bound UDP socket (for the port number and kernel drop counts) and lends a
duplicate to the child. Finished UDP batches and HTTP
replies arrive over a socket pair the loop reads as a stream; storing one
is a remap of name ids and a ring write, whatever the number of points.

If the child dies it is started again on the same socket, so datagrams the
kernel queued meanwhile are still read; restarts are counted in health.
HTTP requests it was holding are answered 503, so their senders retry.
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

from ..payload import BodyError
from ..schema import StringTable, TableFullError, take_rows
from .parse_worker import (
    FRAME_HEADER,
    HttpReply,
    HttpRequest,
    Parsed,
    Stop,
    UdpBatch,
    WorkerLimits,
    frame,
    run_worker,
)
from .pipeline import Ingestor, IngestResult
from .udp import BinaryHandler, UdpStats, pass_binary

log = logging.getLogger(__name__)

HTTP_REPLY_TIMEOUT_S = 30.0
"""A body not parsed by then (the largest allowed takes well under a second)
is answered 503 rather than held forever by a wedged child."""


class ParserUnavailable(Exception):
    """The parse process died (or is stopping) before answering."""


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


def remap(parsed: Parsed, chassis: IdMap, track: IdMap) -> tuple[np.ndarray, dict[str, int]]:
    """Rows with the parent's ids, and the points dropped for a full table, by reason.

    The maps must already have learned the names of every message the child
    sent up to this one (``learn_names``)."""
    rows = parsed.rows
    if not len(rows):
        return rows, {}
    chassis_ids = chassis(rows["chassis"])
    track_ids = track(rows["track"])
    no_chassis = chassis_ids < 0
    no_track = (track_ids < 0) & ~no_chassis
    rows["chassis"] = chassis_ids
    rows["track"] = track_ids
    dropped = {"table_full:chassis": int(no_chassis.sum()), "table_full:track": int(no_track.sum())}
    if not any(dropped.values()):
        return rows, {}
    return take_rows(rows, ~(no_chassis | no_track)), {k: v for k, v in dropped.items() if v}


def learn_names(parsed: Parsed, chassis: IdMap, track: IdMap) -> None:
    """Learn a message's new names. Done as each message arrives, in order,
    because a later UDP batch may use a name an HTTP reply introduced before
    that reply's request is resumed (or after it timed out)."""
    chassis.learn(parsed.new_chassis)
    track.learn(parsed.new_tracks)


class ParseProcess:
    """Runs ``parse_worker``: stores its UDP batches (given a socket), answers
    HTTP bodies through it (``ingest_http``)."""

    def __init__(
        self,
        sock: socket.socket | None,
        ingestor: Ingestor,
        binary_handler: BinaryHandler | None = None,
        outbox_bytes: int = WorkerLimits.max_outbox_bytes,
    ) -> None:
        self.sock = sock
        self.ingestor = ingestor
        self.binary_handler = binary_handler
        self.limits = WorkerLimits(
            max_chassis=ingestor.tables.chassis.capacity,
            max_tracks=ingestor.tables.track.capacity,
            max_outbox_bytes=outbox_bytes,
        )
        self.stats = UdpStats()
        # spawn, not the compute pool's forkserver: this starts first, and
        # must not start that server without the pool's preloads.
        self._ctx = mp.get_context("spawn")
        self._proc: BaseProcess | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[HttpReply]] = {}
        self._next_ident = 0
        self._closing = False
        self._ids = (IdMap(ingestor.tables.chassis), IdMap(ingestor.tables.track, reserved=1))

    async def start(self) -> None:
        """Start the child and the task that stores what it sends."""
        ours, theirs = socket.socketpair()
        proc = self._ctx.Process(
            target=run_worker,
            args=(self.sock, theirs, self.limits),
            name="pitwall-parse",
            daemon=True,
        )
        proc.start()
        theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        # A new child starts with empty tables: its ids start from scratch.
        self._ids = (IdMap(self.ingestor.tables.chassis), IdMap(self.ingestor.tables.track, 1))
        self._proc, self._writer = proc, writer
        self._task = asyncio.create_task(self._read(reader), name="parse-process-reader")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(FRAME_HEADER.size)
                (size,) = FRAME_HEADER.unpack(header)
                message = pickle.loads(await reader.readexactly(size))
                try:
                    self._handle(message)
                except Exception:  # a bug here must not stop UDP ingest for good
                    log.exception("could not store a message from the parse process")
                # A backlog of batches is already buffered: without a yield
                # they would all be stored in one step of the loop.
                await asyncio.sleep(0)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        # No await from here to ``_writer = None``: a request either is in
        # ``_waiting`` now and fails, or finds no writer and fails.
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ParserUnavailable())
        self._waiting.clear()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if not self._closing:
            await self._restart()

    def _handle(self, message: UdpBatch | HttpReply) -> None:
        if isinstance(message, UdpBatch):
            learn_names(message.parsed, *self._ids)
            self.store_udp(message)
            return
        if message.parsed is not None:
            learn_names(message.parsed, *self._ids)
        future = self._waiting.pop(message.ident, None)
        if future is not None and not future.done():
            future.set_result(message)

    async def _restart(self) -> None:
        code = None
        if self._proc is not None:
            await asyncio.to_thread(self._proc.join, 1.0)
            code = self._proc.exitcode
        log.error("parse process exited (code %s); starting another", code)
        await self.start()
        # Counted once the new child is taking work, so a restart seen in
        # health means bodies are accepted again.
        self.stats.receiver_restarts += 1

    def _store(self, parsed: Parsed, source: str) -> tuple[int, int]:
        """Count and store parsed rows; returns (accepted, rejected)."""
        rows, dropped = remap(parsed, *self._ids)
        reasons = parsed.reasons
        for reason, count in dropped.items():
            reasons[reason] = reasons.get(reason, 0) + count
        self.ingestor.accept(rows, source, reasons, parsed.empty_payloads)
        return len(rows), sum(reasons.values())

    def store_udp(self, batch: UdpBatch) -> None:
        """Count and store one flush of datagrams from the child."""
        self.stats.flushes += 1
        self.stats.datagrams += batch.datagrams
        self.stats.bytes += batch.size_bytes
        self.stats.parse_backlog_bytes_max = max(
            self.stats.parse_backlog_bytes_max, batch.backlog_bytes
        )
        self.ingestor.stats.payloads["udp"] += batch.json_payloads
        self._store(batch.parsed, "udp")
        if batch.binary:
            pass_binary(batch.binary, self.binary_handler, self.stats, self.ingestor)

    async def ingest_http(self, body: bytes, ndjson: bool) -> IngestResult:
        """Parse an HTTP body in the child and store it.

        Raises BodyError when the body is not JSON at all, and
        ParserUnavailable when the child died meanwhile or did not answer
        within ``HTTP_REPLY_TIMEOUT_S``."""
        writer = self._writer
        if writer is None or self._closing:
            raise ParserUnavailable()
        self._next_ident += 1
        ident = self._next_ident
        future: asyncio.Future[HttpReply] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        with contextlib.suppress(ConnectionError):
            # If the child is gone, the reader task sees it too and fails
            # every waiting future, this one included.
            writer.write(frame(HttpRequest(ident, body, ndjson)))
            await writer.drain()
        try:
            reply = await asyncio.wait_for(future, HTTP_REPLY_TIMEOUT_S)
        except TimeoutError:
            self._waiting.pop(ident, None)
            raise ParserUnavailable() from None
        if reply.parsed is None:
            raise BodyError(reply.error or "body is not JSON")
        self.ingestor.stats.payloads["http"] += 1
        accepted, rejected = self._store(reply.parsed, "http")
        return IngestResult(accepted, rejected, reply.parsed.first_errors)

    async def close(self, timeout_s: float = 1.0) -> None:
        """Stop the child and store everything it had received. Idempotent."""
        if self._closing:
            return
        self._closing = True
        writer, task, proc = self._writer, self._task, self._proc
        if task is None or proc is None:
            return
        if writer is not None:
            with contextlib.suppress(ConnectionError):
                writer.write(frame(Stop()))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            task.cancel()
        if self._writer is not None:
            self._writer.close()
        await asyncio.to_thread(proc.join, timeout_s)
        if proc.is_alive():
            proc.kill()
            await asyncio.to_thread(proc.join, timeout_s)
