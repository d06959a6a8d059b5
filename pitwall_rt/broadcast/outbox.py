"""Event-driven messages (insight_update, alert), fanned out in slices.

A telemetry tick must start on time: its wait is already up to ``BATCH_MS``,
and everything that holds the loop when the tick falls due adds to every
point's delivery time. Writing one message to 1,000 clients costs about as
much as the tick itself (one ``send`` system call each, ~10-15 us on
loopback), and insights arrive whenever the process pool returns, so they
often land on a tick. The outbox writes ``slice_clients`` clients, then lets
the loop run (timers, UDP, the tick) before the next slice.

Order is kept per client: a message is only written directly when nothing is
queued, so a client never gets a newer insight before an older one. Memory
is bounded: past ``max_queued`` messages the backlog is written at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

C = TypeVar("C")

SLICE_CLIENTS = 100
MAX_QUEUED = 64


class Outbox(Generic[C]):
    """Writes (frame, recipients) through ``fan_out``, a slice at a time."""

    def __init__(
        self,
        fan_out: Callable[[bytes, Sequence[C]], None],
        *,
        slice_clients: int = SLICE_CLIENTS,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self._fan_out = fan_out
        self.slice_clients = slice_clients
        self.max_queued = max_queued
        self._queue: deque[tuple[bytes, Sequence[C], int]] = deque()
        self._budget = slice_clients  # clients this loop iteration may still get
        self._scheduled = False

    def __len__(self) -> int:
        """Messages not yet written to all their recipients."""
        return len(self._queue)

    def send(self, frame: bytes, recipients: Sequence[C]) -> None:
        """Write ``frame`` to ``recipients``: now while this loop iteration's
        slice lasts and nothing older is queued, the rest later."""
        if not recipients:
            return
        self._queue.append((frame, recipients, 0))
        if len(self._queue) > self.max_queued:
            self.flush()
        elif not self._scheduled:
            self._write_slice()

    def flush(self) -> None:
        """Write everything queued now (bounded memory; no running loop)."""
        while self._queue:
            frame, recipients, start = self._queue.popleft()
            self._fan_out(frame, recipients[start:])

    def _write_slice(self) -> None:
        while self._queue and self._budget > 0:
            frame, recipients, start = self._queue[0]
            end = min(len(recipients), start + self._budget)
            self._fan_out(frame, recipients[start:end])
            self._budget -= end - start
            if end == len(recipients):
                self._queue.popleft()
            else:
                self._queue[0] = (frame, recipients, end)
        if self._budget <= 0:
            self._schedule()

    def _resume(self) -> None:
        """The loop ran once since the last slice: a new slice may go."""
        self._scheduled = False
        self._budget = self.slice_clients
        self._write_slice()

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a synchronous caller (no loop): finish now
            self.flush()
            self._budget = self.slice_clients
            return
        self._scheduled = True
        loop.call_soon(self._resume)
