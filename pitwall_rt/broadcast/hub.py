"""The WebSocket hub: one encode per tick, the same bytes to every client.

Every ``BATCH_MS`` the hub reads the rows that arrived since its cursor,
builds one ``telemetry_update`` per distinct subscription (decimated for
display, or full rate), frames it once, and writes that frame to each client's
transport without awaiting anything. A client is never awaited, so a slow one
can't delay the others.

Cost: with 1,000 clients nearly all of a tick is the 1,000 ``send`` system
calls that ``transport.write`` makes, so the per-client loop (``_fan_out``)
does no more than two C calls and the write, and keeps the backpressure
policy on a separate slow path; client groups are kept between ticks and
rows are split by chassis once (``groups``). Insights and alerts go out
through an ``Outbox`` that yields to the loop between slices of clients, so
a message from the process pool never holds up a tick that falls due.

Backpressure policy (DESIGN.md): a client whose unsent bytes (its transport's
write buffer) would pass ``MAX_WS_BUFFER`` gets no frame this tick; the drop
is counted and the client is marked for resync. When its buffer is back
under half the limit it first gets a snapshot (the newest point of every
chassis), then the live stream again. A client stuck over the limit for
``WS_STUCK_S`` is closed with 1013 (try again later). Memory per client is
thus bounded by ``MAX_WS_BUFFER`` plus one frame.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from ..points import decimate, rows_to_points
from ..ring import RingBuffer
from ..schema import as_records, column_of, concat_rows, empty_rows, take_across, take_rows
from ..ticker import run_every
from ..validate import Tables
from .frames import text_frame
from .groups import ChassisIndex, Groups
from .outbox import Outbox
from .subscription import Subscription

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = 1013


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def get_write_buffer_size(self) -> int: ...

    def is_closing(self) -> bool: ...


class Client:
    """One connected WebSocket: its transport, subscription and drop state."""

    def __init__(
        self,
        transport: Transport,
        close: Callable[[int, str], None],
        subscription: Subscription | None = None,
    ) -> None:
        self.transport = transport
        self._subscription = subscription or Subscription()
        self.on_resubscribe: Callable[[], None] | None = None  # set by the hub
        self.dropped = 0
        self.stuck_since: float | None = None
        self.needs_resync = False
        self.closing = False
        self._close = close

    @property
    def subscription(self) -> Subscription:
        return self._subscription

    @subscription.setter
    def subscription(self, value: Subscription) -> None:
        self._subscription = value
        if self.on_resubscribe is not None:
            self.on_resubscribe()  # the hub regroups its clients

    def close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            self._close(code, reason)


@dataclass
class HubStats:
    ticks: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_dropped: int = 0
    clients_closed_slow: int = 0
    replies_dropped: int = 0
    clients_total: int = 0
    points_lost: int = 0  # overwritten in the ring before the hub read them
    last_tick_ms: float = 0.0
    max_tick_ms: float = 0.0


class Hub:
    """Owns the client set and the broadcast tick."""

    def __init__(
        self,
        ring: RingBuffer,
        tables: Tables,
        *,
        max_buffer_bytes: int,
        max_points_per_chassis: int,
        stuck_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ring = ring
        self.tables = tables
        self.max_buffer_bytes = max_buffer_bytes
        self.max_points = max_points_per_chassis
        self.stuck_s = stuck_s
        self.clock = clock
        self.clients: set[Client] = set()
        self.stats = HubStats()
        self.cursor = ring.written
        self._latest = empty_rows(tables.chassis.capacity)
        self._has_latest = np.zeros(tables.chassis.capacity, dtype=bool)
        self.outbox: Outbox[Client] = Outbox(self._fan_out)
        self.groups: Groups[Client] = Groups(self.clients)

    # -- clients ----------------------------------------------------------

    def add(self, client: Client) -> None:
        """Register a client and send it the newest state to start from."""
        self.clients.add(client)
        client.on_resubscribe = self.groups.changed
        self.groups.changed()
        self.stats.clients_total += 1
        if "telemetry" in client.subscription.channels:
            self._write(client, self._snapshot_frame(client.subscription))

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
        client.on_resubscribe = None
        self.groups.changed()

    # -- the tick -----------------------------------------------------------

    def tick(self) -> None:
        """Read new rows, send them to every client that wants them, police
        slow clients. Synchronous: nothing here awaits a client."""
        started = time.perf_counter()
        # Views, not a copy: only full-rate clients need every row copied.
        read = self.ring.views_since(self.cursor)
        self.cursor = read.cursor
        self.stats.points_lost += read.missed
        for part in read.parts:  # oldest first, so each chassis' newest row wins
            self._remember_latest(part)
        if read.parts:
            self._broadcast_telemetry(read.parts)
        self._police(self.clock())
        self.stats.ticks += 1
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self.stats.last_tick_ms = elapsed_ms
        self.stats.max_tick_ms = max(self.stats.max_tick_ms, elapsed_ms)

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Send one message (insight_update, alert) to the clients on ``channel``.

        Same drop policy as telemetry: a client over its buffer misses it and
        is resynced (the latest insights are always in ``/api/insights``).
        """
        members = self.groups.everyone_on(channel)
        self.outbox.send(text_frame(orjson.dumps(message)), members)

    def publish_insights(self, insights: list[dict[str, Any]]) -> None:
        """Send insight_update, each client only the chassis it subscribed to.

        Encoded once per distinct chassis filter, like telemetry."""
        frames: dict[frozenset[str] | None, bytes | None] = {}
        for (chassis, _full_rate), members in self.groups.on("insights").items():
            if chassis not in frames:
                wanted = (
                    insights
                    if chassis is None
                    else [i for i in insights if i.get("chassis") in chassis]
                )
                message = {"type": "insight_update", "insights": wanted}
                frames[chassis] = text_frame(orjson.dumps(message)) if wanted else None
            frame = frames[chassis]
            if frame is not None:
                self.outbox.send(frame, members)

    def reply(self, client: Client, message: dict[str, Any]) -> bool:
        """Answer one client (subscribed, error). Skipped when the client is
        over its buffer, so a client that writes but never reads can't grow
        our memory by making us answer it."""
        if client.closing or client.transport.is_closing():
            return False
        if client.transport.get_write_buffer_size() > self.max_buffer_bytes:
            self.stats.replies_dropped += 1
            return False
        self._write(client, text_frame(orjson.dumps(message)))
        return True

    async def run(self, interval_s: float) -> None:
        """Tick every ``interval_s`` until cancelled (see ``ticker``)."""
        await run_every(interval_s, self.tick, "broadcast")

    # -- internals ----------------------------------------------------------

    def _remember_latest(self, rows: np.ndarray) -> None:
        # Each chassis' last row: a running maximum of row numbers per id,
        # linear in the rows (np.unique's sort took 3 ms for a 90,000-row tick).
        last = np.full(len(self._latest), -1, dtype=np.intp)
        np.maximum.at(last, rows["chassis"], np.arange(len(rows)))
        seen = np.flatnonzero(last >= 0)
        as_records(self._latest)[seen] = as_records(rows)[last[seen]]
        self._has_latest[seen] = True

    def _broadcast_telemetry(self, parts: list[np.ndarray]) -> None:
        """Send a tick's rows (``parts``: views into the ring, oldest first)."""
        groups = self.groups.on("telemetry")
        if not groups:
            return
        # Full-rate and decimated rows, each split by chassis once per tick.
        batches: dict[bool, tuple[np.ndarray, ChassisIndex | None]] = {}
        for (chassis, full_rate), members in groups.items():
            if full_rate not in batches:
                kept = concat_rows(parts) if full_rate else self._decimated(parts)
                batches[full_rate] = (kept, None)
            selected, index = batches[full_rate]
            if chassis is not None:
                if index is None:
                    index = ChassisIndex(selected["chassis"])
                    batches[full_rate] = (selected, index)
                selected = take_rows(
                    selected, index.select(map(self.tables.chassis.lookup, chassis))
                )
            if len(selected):
                self._fan_out(self._telemetry_frame(selected), members)

    def _decimated(self, parts: list[np.ndarray]) -> np.ndarray:
        """At most ``max_points`` rows a chassis, copied out of the views:
        only the chassis ids of the whole tick are read."""
        return take_across(parts, decimate(column_of(parts, "chassis"), self.max_points))

    def _filter_chassis(self, rows: np.ndarray, chassis: frozenset[str] | None) -> np.ndarray:
        if chassis is None:
            return rows
        ids = [i for i in map(self.tables.chassis.lookup, chassis) if i is not None]
        return take_rows(rows, np.isin(rows["chassis"], ids))

    def _telemetry_frame(self, rows: np.ndarray, **extra: Any) -> bytes:
        points = rows_to_points(rows, self.tables.chassis, self.tables.track)
        message = {"type": "telemetry_update", "points": points, **extra}
        return text_frame(orjson.dumps(message))

    def _snapshot_frame(self, subscription: Subscription) -> bytes:
        rows = self._filter_chassis(self._latest[self._has_latest], subscription.chassis)
        return self._telemetry_frame(rows, snapshot=True)

    def _fan_out(self, frame: bytes, members: Sequence[Client]) -> None:
        """Write ``frame`` to every member that can take it: the hot loop.

        A client that is behind or over its buffer goes to ``_offer``, which
        applies the drop and resync policy; the rest cost two C calls and
        the write."""
        limit = self.max_buffer_bytes - len(frame)
        written = 0
        for client in members:
            transport = client.transport
            if client.closing or transport.is_closing():
                continue
            if client.needs_resync or transport.get_write_buffer_size() > limit:
                self._offer(client, frame)
                continue
            try:
                transport.write(frame)
            except (ConnectionError, RuntimeError):
                continue
            written += 1
        self.stats.frames_sent += written
        self.stats.bytes_sent += written * len(frame)

    def _offer(self, client: Client, frame: bytes) -> None:
        """One client, the whole policy: drop and count when over the
        limit, a snapshot first when it is catching up."""
        if client.closing or client.transport.is_closing():
            return
        pending = client.transport.get_write_buffer_size()
        if pending + len(frame) > self.max_buffer_bytes:
            client.dropped += 1
            client.needs_resync = True
            self.stats.frames_dropped += 1
            if client.stuck_since is None:
                client.stuck_since = self.clock()
            return
        if client.needs_resync:
            if pending > self.max_buffer_bytes // 2:
                client.dropped += 1
                self.stats.frames_dropped += 1
                return
            client.needs_resync = False
            if "telemetry" in client.subscription.channels:
                self._write(client, self._snapshot_frame(client.subscription))
        client.stuck_since = None
        self._write(client, frame)

    def _write(self, client: Client, frame: bytes) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            client.transport.write(frame)
            self.stats.frames_sent += 1
            self.stats.bytes_sent += len(frame)

    def _police(self, now: float) -> None:
        for client in list(self.clients):
            if client.stuck_since is None or client.closing:
                continue
            if client.transport.get_write_buffer_size() <= self.max_buffer_bytes // 2:
                client.stuck_since = None
            elif now - client.stuck_since > self.stuck_s:
                self.stats.clients_closed_slow += 1
                log.warning("closing WebSocket client stuck for %.1f s", now - client.stuck_since)
                client.close(CLOSE_TRY_AGAIN_LATER, "client too slow")
                self.remove(client)
