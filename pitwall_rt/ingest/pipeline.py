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
from ..schema import SOURCE_ID, empty_rows
from ..stats import IngestStats
from ..validate import Tables, validate_points

RowsListener = Callable[[np.ndarray], None]
MAX_ERRORS = 5
"""Readable rejection messages returned to a sender."""


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
        checked = check_decoded(decoded, self.tables, self.clock())
        self.accept(checked.rows, source, checked.reasons, checked.empty_payloads)
        return IngestResult(len(checked.rows), checked.rejected, checked.first_errors)

    def ingest_values(self, values: list[Any], source: str) -> IngestResult:
        """Validate decoded values (dicts) and store the good ones."""
        return self.ingest_decoded(Decoded(values=values), source)

    def accept(
        self, rows: np.ndarray, source: str, reasons: dict[str, int], empty_payloads: int = 0
    ) -> None:
        """Count what a parser made of a batch and store its rows: the one place
        parsed points are accounted, whichever process or decoder parsed them."""
        if empty_payloads:
            self.stats.empty_payloads[source] += empty_payloads
        if reasons:
            self.stats.count_rejections(source, reasons)
        self.store(rows, source)

    def store(self, rows: np.ndarray, source: str) -> None:
        """Write already-valid rows (from a decoder that built them itself)."""
        if not len(rows):
            return
        rows["source"] = SOURCE_ID[source]
        self.ring.write(rows)
        self.stats.accepted[source] += len(rows)
        for listener in self.listeners:
            listener(rows)


@dataclass
class Checked:
    """Decoded values after validation: rows, and every rejection by reason
    (payloads that were not JSON and points that failed a check alike)."""

    rows: np.ndarray
    reasons: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    empty_payloads: int = 0

    @property
    def rejected(self) -> int:
        return sum(self.reasons.values())


def check_decoded(decoded: Decoded, tables: Tables, now_s: float) -> Checked:
    """Validate what a decoder read. Pure apart from interning names."""
    reasons = dict(decoded.errors)
    errors = list(decoded.first_errors)
    rows = empty_rows(0)
    if decoded.values:
        checked = validate_points(decoded.values, tables, now_s)
        rows = checked.rows
        for reason, count in checked.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
        errors += checked.first_errors
    return Checked(rows, reasons, errors[:MAX_ERRORS], decoded.empty)
