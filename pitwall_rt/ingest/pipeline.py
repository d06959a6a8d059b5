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

from .. import row_scan, strict_decode
from ..payload import Decoded, decode_body, decode_payloads
from ..ring import RingBuffer
from ..schema import SOURCE_ID, concat_rows, empty_rows
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
        self.stats.payloads[source] += len(payloads)
        return self._ingest_checked(check_payloads(payloads, self.tables, self.clock()), source)

    def ingest_body(self, body: bytes, ndjson: bool, source: str) -> IngestResult:
        """Decode and store one HTTP body; raises BodyError when it is not JSON."""
        checked = check_body(body, ndjson, self.tables, self.clock())
        self.stats.payloads[source] += 1
        return self._ingest_checked(checked, source)

    def ingest_decoded(self, decoded: Decoded, source: str) -> IngestResult:
        return self._ingest_checked(check_decoded(decoded, self.tables, self.clock()), source)

    def _ingest_checked(self, checked: Checked, source: str) -> IngestResult:
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


def check_payloads(payloads: list[bytes], tables: Tables, now_s: float) -> Checked:
    """Decode and validate datagrams' payloads in three tiers: the C scanner
    (``row_scan``) takes the plainest, the strict decoder the other clean
    ones (a JSON value, or NDJSON lines), the general path the rest (and
    the strict tier's whole share when its rows fail a late check). Rows
    come in that order."""
    scanned = row_scan.scan(payloads, tables, now_s)
    if scanned is None:
        return _check_python(payloads, tables, now_s)
    return _then(
        scanned.rows,
        scanned.empty_payloads,
        scanned.refused,
        lambda rest: _check_python(rest, tables, now_s),
    )


def _check_python(payloads: list[bytes], tables: Tables, now_s: float) -> Checked:
    """The strict and general tiers of ``check_payloads``."""
    points: list[Any] = []
    empty = 0
    refused: list[bytes] = []
    for payload in payloads:
        found = strict_decode.decode_into(payload, points)
        if found is None and b"\n" in payload:
            lines = strict_decode.decode_lines(payload)
            if lines:  # none: blank lines only, which the general path counts as empty
                points.extend(lines)
                found = 0
        if found is None:
            refused.append(payload)
        else:
            empty += found
    rows = strict_decode.rows_from_points(points, tables, now_s) if points else empty_rows(0)
    if rows is None:
        return check_decoded(decode_payloads(payloads), tables, now_s)
    return _then(
        rows, empty, refused, lambda rest: check_decoded(decode_payloads(rest), tables, now_s)
    )


def _then(
    rows: np.ndarray,
    empty_payloads: int,
    refused: list[bytes],
    next_tier: Callable[[list[bytes]], Checked],
) -> Checked:
    """One tier's outcome: its rows, then what ``next_tier`` makes of the
    payloads it refused."""
    if not refused:
        return Checked(rows, empty_payloads=empty_payloads)
    rest = next_tier(refused)
    if len(rows):
        rest.rows = concat_rows([rows, rest.rows]) if len(rest.rows) else rows
    rest.empty_payloads += empty_payloads
    return rest


def check_body(body: bytes, ndjson: bool, tables: Tables, now_s: float) -> Checked:
    """Decode and validate one HTTP body, strictly when it is clean; raises
    BodyError when it is not JSON (or, for NDJSON, no line is). A body with
    no points at all goes the general way, which counts it as empty."""
    scanned = row_scan.scan([body], tables, now_s, lines=ndjson)
    if scanned is not None and not scanned.refused:
        return Checked(scanned.rows, empty_payloads=scanned.empty_payloads)
    if ndjson:
        points = strict_decode.decode_lines(body)
    else:
        points = []
        if strict_decode.decode_into(body, points) is None:
            points = None
    if points:
        rows = strict_decode.rows_from_points(points, tables, now_s)
        if rows is not None:
            return Checked(rows)
    return check_decoded(decode_body(body, ndjson), tables, now_s)
