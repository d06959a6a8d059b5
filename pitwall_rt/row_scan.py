"""The first of ingest's three JSON tiers: clean payloads to stored rows in C.

``strict_decode`` has msgspec build a struct and a float object for every
value, then copies them into columns: 1.4 to 1.7 µs a point on the 2-core
test VM (``bench/parse.py``), most of the parse process's time. ``_row_scan``
(C, built with the package) reads the bytes once and writes the doubles
straight into the rows, in about 0.3.

It refuses, payload by payload, anything but the plainest JSON (see the C
file's header), and the refused payloads take the strict and general tiers
as before. A point is accepted or rejected exactly as without it, so a
machine that could not compile it (no C compiler at install) is only slower;
``AVAILABLE`` says which, and health reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import powers_of_five
from .schema import (
    ALIAS_COLUMNS,
    ALIAS_OF,
    MAX_NAME_LEN,
    NUMBER_KEYS,
    NUMERIC_FIELDS,
    NUMERIC_OFFSET,
    POINT_DTYPE,
    TableFullError,
    empty_rows,
)
from .validate import EPOCH_MS_THRESHOLD, Tables

try:
    from . import _row_scan  # type: ignore[attr-defined]
except ImportError:  # installed without a C compiler
    _row_scan = None
else:
    _row_scan.set_powers_of_five(powers_of_five.table())

AVAILABLE = _row_scan is not None

# Key kinds, as the C scanner numbers them.
_CHASSIS, _VEHICLE_ID, _TRACK, _TIME, _FLOAT, _INT = range(6)
_REFUSED = 2
_EMPTY = 1


@dataclass
class Scanned:
    """Rows for the payloads the scanner took (names as table ids, ``t`` and
    ``recv_t`` filled in), and the payloads it left, in order."""

    rows: np.ndarray
    refused: list[bytes]
    empty_payloads: int


def _make_scanner() -> Any:
    if _row_scan is None:
        return None
    # In the order senders usually write them: the scanner tries the key
    # after the last one matched first.
    keys: list[tuple[str, int, int, float, float]] = [
        ("meta_time", _TIME, 0, 0.0, 0.0),
        ("track", _TRACK, 0, 0.0, 0.0),
        ("chassis", _CHASSIS, 0, 0.0, 0.0),
        (ALIAS_OF["chassis"], _VEHICLE_ID, 0, 0.0, 0.0),
        *(
            (k.key, _INT if k.integer else _FLOAT, slot, float(k.low), float(k.high))
            for slot, k in enumerate(NUMBER_KEYS)
        ),
    ]
    fields: Any = POINT_DTYPE.fields
    return _row_scan.Scanner(
        keys=keys,
        alias_columns=list(ALIAS_COLUMNS),
        row_size=POINT_DTYPE.itemsize,
        off_t=fields["t"][1],
        off_recv_t=fields["recv_t"][1],
        off_chassis=fields["chassis"][1],
        off_track=fields["track"][1],
        off_source=fields["source"][1],
        off_numeric=NUMERIC_OFFSET,
        ncolumns=len(NUMERIC_FIELDS),
        max_name_len=MAX_NAME_LEN,
        ms_threshold=EPOCH_MS_THRESHOLD,
    )


_SCANNER = _make_scanner()


def scan(
    payloads: list[bytes], tables: Tables, now_s: float, *, lines: bool = True
) -> Scanned | None:
    """Rows for every payload the C scanner accepts; None without the scanner.

    ``now_s`` is stored as ``recv_t`` and stands in for an absent
    ``meta_time``, as in the other tiers. ``lines`` takes NDJSON too (a
    datagram, an NDJSON body), one value a line; a JSON body must be one
    value. When a name table is full, every payload is left to the Python
    tiers, which reject point by point."""
    if _SCANNER is None:
        return None
    try:
        buffer, status = _SCANNER.scan(
            payloads,
            tables.chassis.intern,
            tables.chassis.capacity,
            tables.track.intern,
            tables.track.capacity,
            now_s,
            lines,
        )
    except TableFullError:
        return Scanned(empty_rows(0), payloads, 0)
    refused = (
        [p for p, code in zip(payloads, status, strict=True) if code == _REFUSED]
        if _REFUSED in status
        else []
    )
    rows = np.frombuffer(buffer, dtype=POINT_DTYPE)
    return Scanned(rows, refused, status.count(_EMPTY))
