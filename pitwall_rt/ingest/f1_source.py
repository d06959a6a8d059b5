"""F1 game packets on the shared UDP port, into the common ingest path.

The decoder (``pitwall_rt.f1``) is sans-I/O and returns columns; this adapter
validates those columns like any other point and stores them with source
``f1``. A binary datagram that is not an F1 packet is counted as
``bad_datagram`` under source ``udp``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..f1 import F1Decoder, looks_like_f1
from ..validate import rows_from_columns
from .pipeline import Ingestor


class F1Ingest:
    """Callable handed to the UDP receiver for non-JSON datagrams."""

    def __init__(self, ingestor: Ingestor, clock: Callable[[], float] = time.time) -> None:
        self.ingestor = ingestor
        self.decoder = F1Decoder()
        self.clock = clock

    def __call__(self, datagrams: list[bytes]) -> None:
        now = self.clock()
        garbage = 0
        for data in datagrams:
            if not looks_like_f1(data):
                garbage += 1
                continue
            batch = self.decoder.feed(data, now)
            if batch is None or not len(batch):
                continue
            checked = rows_from_columns(
                batch.columns, batch.chassis, batch.track, self.ingestor.tables, now
            )
            self.ingestor.accept(checked.rows, "f1", checked.reasons)
        if garbage:
            self.ingestor.stats.count_rejections("udp", {"bad_datagram": garbage})
