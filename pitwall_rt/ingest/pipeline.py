"""The shared ingest path: decoded values -> validated rows -> ring buffer.

Every source hands its batch here, so validation, counting and storage are
the same whether a point came by UDP, HTTP, the demo or S3. Listeners (the
session recorder, for one) see each accepted batch right after the ring does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..payload import Decoded, decode_payloads
from ..ring import RingBuffer
from ..schema import SOURCE_ID
from ..stats import IngestStats
from ..validate import Tables, validate_points

RowsListener = Callable[[np.ndarray], None]


@dataclass
class IngestResult:
    """What one request or flush did: the numbers a sender gets back."""

    accepted: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


class Ingestor:
    """Validates batches from any source into the ring and counts the outcome."""

    def __init__(
        self,
        ring: RingBuffer,
        tables: Tables,
        stats: IngestStats,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ring = ring
        self.tables = tables
        self.stats = stats
        self.clock = clock
        self.listeners: list[RowsListener] = []

    def ingest_payloads(self, payloads: list[bytes], source: str) -> IngestResult:
        """Decode and store raw JSON/NDJSON payloads."""
        decoded = decode_payloads(payloads)
        self.stats.payloads[source] += len(payloads)
        return self.ingest_decoded(decoded, source)

    def ingest_decoded(self, decoded: Decoded, source: str) -> IngestResult:
        if decoded.empty:
            self.stats.empty_payloads[source] += decoded.empty
        result = self.ingest_values(decoded.values, source)
        if decoded.errors:
            self.stats.count_rejections(source, decoded.errors)
            result.rejected += decoded.failed
            result.errors = (decoded.first_errors + result.errors)[:5]
        return result

    def ingest_values(self, values: list[Any], source: str) -> IngestResult:
        """Validate decoded values (dicts) and store the good ones."""
        if not values:
            return IngestResult()
        checked = validate_points(values, self.tables, self.clock())
        if checked.rejected:
            self.stats.count_rejections(source, checked.reasons)
        self.store(checked.rows, source)
        return IngestResult(len(checked.rows), checked.rejected, checked.first_errors)

    def store(self, rows: np.ndarray, source: str) -> None:
        """Write already-valid rows (from a decoder that built them itself)."""
        if not len(rows):
            return
        rows["source"] = SOURCE_ID[source]
        self.ring.write(rows)
        self.stats.accepted[source] += len(rows)
        for listener in self.listeners:
            listener(rows)
