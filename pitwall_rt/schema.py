"""The telemetry point: canonical fields, aliases, limits and the stored dtype.

Every interface (UDP, HTTP, S3, demo, F1 game) speaks the same field names,
listed in DESIGN.md. A stored point is one row of ``POINT_DTYPE``; strings
(chassis, track) are interned to small integers by a bounded ``StringTable``
so the ring buffer stays a fixed-size numpy array whatever the traffic.

Missing numeric fields are stored as NaN. Integer fields (lap, gear) are kept
as float64 too, so NaN can mean "absent"; they are written back as JSON ints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

# Numeric fields in the order they are stored and validated. Units follow the
# names: km/h, metres, G (+x accelerating, +y left), degrees, bar, rpm, percent.
NUMERIC_FIELDS: Final = (
    "lap",
    "lapdist_m",
    "speed_kmh",
    "accx_can",
    "accy_can",
    "Steering_Angle",
    "pbrake_f",
    "pbrake_r",
    "rpm",
    "throttle_pct",
    "gear",
)
INT_FIELDS: Final = frozenset({"lap", "gear"})

# Alias -> canonical name, as accepted on every interface (DESIGN.md).
ALIASES: Final = {
    "vehicle_id": "chassis",
    "speed": "speed_kmh",
    "nmot": "rpm",
    "aps": "throttle_pct",
}
ALIAS_OF: Final = {canon: alias for alias, canon in ALIASES.items()}
NUMBER_ALIASES: Final = tuple(alias for alias, canon in ALIASES.items() if canon in NUMERIC_FIELDS)
"""The aliases of numeric fields, in ``ALIASES`` order (the fast decoders' slots)."""

# Inclusive physical limits. A value outside is "physically impossible" and
# rejects the point. Ranges are generous where real sensors overshoot a little
# (throttle over 100 %, a few bar of negative brake-pressure offset).
LIMITS: Final[dict[str, tuple[float, float]]] = {
    "lap": (0, 100_000),
    "lapdist_m": (-100.0, 100_000.0),
    "speed_kmh": (0.0, 500.0),
    "accx_can": (-10.0, 10.0),
    "accy_can": (-10.0, 10.0),
    "Steering_Angle": (-1080.0, 1080.0),
    "pbrake_f": (-10.0, 500.0),
    "pbrake_r": (-10.0, 500.0),
    "rpm": (0.0, 30_000.0),
    "throttle_pct": (-5.0, 110.0),
    "gear": (-1, 12),
}


@dataclass(frozen=True)
class NumberKey:
    """A JSON key that carries a numeric field (its own name or an alias),
    with the checks the fast decoders make while they read it."""

    key: str
    field: str
    integer: bool  # JSON integers only: a whole float goes the general path
    low: float
    high: float


def _number_key(key: str) -> NumberKey:
    field = ALIASES.get(key, key)
    return NumberKey(key, field, field in INT_FIELDS, *LIMITS[field])


NUMBER_KEYS: Final = tuple(map(_number_key, (*NUMERIC_FIELDS, *NUMBER_ALIASES)))
"""Every numeric field, then every alias of one: the fast decoders' slots,
in that order."""
ALIAS_COLUMNS: Final = tuple(NUMERIC_FIELDS.index(ALIASES[a]) for a in NUMBER_ALIASES)
"""The numeric column each of ``NUMBER_ALIASES`` fills when its field is absent."""


LAP_SENTINEL: Final = 32768
"""``lap`` value the GR Cup loggers send when the lap is unknown. It is
stored as sent; lap timing reads it as no lap number, and the CSV repair
recovers the lap from distance wraps."""

MAX_NAME_LEN: Final = 64
"""Longest accepted chassis or track name, in characters."""

# Where a point came from, stored per row as a small int.
SOURCES: Final = ("udp", "http", "demo", "s3", "f1", "replay")
SOURCE_ID: Final = {name: i for i, name in enumerate(SOURCES)}

POINT_DTYPE: Final = np.dtype(
    [
        ("t", "f8"),  # sample time, epoch seconds UTC (meta_time)
        ("recv_t", "f8"),  # when the server accepted it, epoch seconds
        ("chassis", "i4"),  # index into the chassis StringTable
        ("track", "i4"),  # index into the track StringTable; 0 = unknown
        ("source", "u1"),  # index into SOURCES
    ]
    + [(name, "f8") for name in NUMERIC_FIELDS]
)


class TableFullError(Exception):
    """Raised when a StringTable would grow past its configured capacity."""


class StringTable:
    """Interns names to dense small ints, with a hard capacity.

    The capacity keeps memory bounded when a hostile sender invents a new
    chassis name for every datagram: past it, points with new names are
    rejected instead of growing the table.
    """

    def __init__(self, capacity: int, reserved: tuple[str, ...] = ()) -> None:
        self.capacity = capacity
        self._ids: dict[str, int] = {}
        self._names: list[str] = []
        self._array = np.empty(0, dtype=object)
        self.lookup = self._ids.get
        """name -> id or None; a bound dict method, cheap enough to map over a batch."""
        for name in reserved:
            self.intern(name)

    def __len__(self) -> int:
        return len(self._names)

    def get(self, name: str) -> int | None:
        return self._ids.get(name)

    def intern(self, name: str) -> int:
        """Return the id for ``name``, adding it if there is room."""
        found = self._ids.get(name)
        if found is not None:
            return found
        if len(self._names) >= self.capacity:
            raise TableFullError(name)
        new_id = len(self._names)
        self._ids[name] = new_id
        self._names.append(name)
        self._array = np.array(self._names, dtype=object)
        return new_id

    def name(self, ident: int) -> str:
        return self._names[ident]

    def names(self, ids: np.ndarray) -> np.ndarray:
        """Vectorised id -> name lookup (object array of str)."""
        return self._array[ids]

    def items(self) -> list[tuple[int, str]]:
        return list(enumerate(self._names))


RECORD_DTYPE: Final = np.dtype((np.void, POINT_DTYPE.itemsize))
"""A stored row seen as opaque bytes.

numpy copies a structured array field by field, for every row: copying,
masking or taking 5,000 rows costs 200-300 us that way, 15-20 us as opaque
records (numpy 2.4, this machine). Every bulk move of rows on the hot path
(ring writes and reads, the recorder's buffer, selections for a broadcast)
goes through these records; fields are read and written on the structured
view as usual."""


def id_order(ids: np.ndarray) -> np.ndarray:
    """``np.argsort(ids, kind="stable")`` for name ids (non-negative table indices).

    Ids that fit in 16 bits (any table up to 65,536 names, the default
    1,024 included) are sorted as ``uint16``, which numpy radix-sorts:
    about 4x faster than the int32 merge sort on a big tick's rows (90,000
    rows: 0.7 ms against 2.5 ms), and this runs in the event loop.
    """
    if len(ids) and int(ids.max()) <= 0xFFFF and int(ids.min()) >= 0:
        return np.argsort(ids.astype(np.uint16), kind="stable")
    return np.argsort(ids, kind="stable")


def as_records(rows: np.ndarray) -> np.ndarray:
    """``rows`` seen as opaque records, without a copy. Only stored rows
    (POINT_DTYPE): another dtype of the same size would be reinterpreted."""
    if rows.dtype != POINT_DTYPE:
        raise TypeError(f"expected stored rows ({POINT_DTYPE}), got {rows.dtype}")
    return rows.view(RECORD_DTYPE)


def copy_rows(rows: np.ndarray) -> np.ndarray:
    """A copy of ``rows``, moved as opaque records."""
    if rows.dtype != POINT_DTYPE:
        return rows.copy()
    return rows.view(RECORD_DTYPE).copy().view(POINT_DTYPE)


def take_rows(rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The rows at ``index`` (a boolean mask or integer indices), as a copy."""
    if rows.dtype != POINT_DTYPE:
        return rows[index]
    return rows.view(RECORD_DTYPE)[index].view(POINT_DTYPE)


def column_of(parts: Sequence[np.ndarray], name: str) -> np.ndarray:
    """Field ``name`` of the stored rows held in ``parts``, end to end, as one
    array (reading one column copies far less than joining the rows)."""
    if not parts:
        return np.zeros(0, POINT_DTYPE[name])
    return np.concatenate([part[name] for part in parts])


def take_across(parts: Sequence[np.ndarray], index: np.ndarray) -> np.ndarray:
    """The rows at ``index`` (sorted positions in ``parts`` read end to end),
    as one copy, without joining the parts first: ``parts`` may be views
    into the ring, and only the rows taken are copied."""
    starts = np.cumsum([0, *map(len, parts)])
    cuts = np.searchsorted(index, starts)
    return concat_rows(
        [take_rows(part, index[cuts[i] : cuts[i + 1]] - starts[i]) for i, part in enumerate(parts)]
    )


def concat_rows(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Stored rows from many batches as one array.

    ``np.concatenate`` also checks a structured dtype field by field for
    every part: 7 ms for 300 small batches. As records it is one copy
    (0.25 ms). Parts of another dtype take the general path."""
    if not parts:
        return empty_rows(0)
    if len(parts) == 1:
        return copy_rows(parts[0])
    if any(part.dtype != POINT_DTYPE for part in parts):
        return np.concatenate(parts)
    return np.concatenate([part.view(RECORD_DTYPE) for part in parts]).view(POINT_DTYPE)


def _numeric_run() -> tuple[int, int]:
    """Offset and length of the numeric fields in a row, which ``put_numeric``
    relies on being one packed run of float64 in ``NUMERIC_FIELDS`` order."""
    offsets = [POINT_DTYPE.fields[name][1] for name in NUMERIC_FIELDS]  # type: ignore[index]
    start, size = offsets[0], 8 * len(NUMERIC_FIELDS)
    if offsets != list(range(start, start + size, 8)):
        raise TypeError("POINT_DTYPE's numeric fields are no longer one packed float64 run")
    return start, size


NUMERIC_OFFSET, NUMERIC_BYTES = _numeric_run()
"""Where the packed float64 run of ``NUMERIC_FIELDS`` sits in a row, and its size
(``put_numeric`` and the C scanner write it whole)."""


def _numeric_fields(rows: np.ndarray) -> np.ndarray:
    """The packed numeric run of contiguous stored rows as an (n,
    len(NUMERIC_FIELDS)) float64 view: the one place that knows the layout."""
    raw = rows.view(np.uint8).reshape(len(rows), POINT_DTYPE.itemsize)
    return raw[:, NUMERIC_OFFSET : NUMERIC_OFFSET + NUMERIC_BYTES].view(np.float64)


def numeric_columns(rows: np.ndarray) -> np.ndarray:
    """The numeric fields of ``rows`` as a (len(NUMERIC_FIELDS), n) float64
    array, one contiguous row a field: one strided copy of the packed run,
    where reading the fields one by one is eleven."""
    if rows.dtype != POINT_DTYPE:
        raise ValueError("expected stored rows")
    return _numeric_fields(np.ascontiguousarray(rows)).T.copy()


def put_numeric(rows: np.ndarray, columns: np.ndarray) -> None:
    """Write every numeric field of ``rows`` from ``columns`` (n x
    len(NUMERIC_FIELDS), float64, fields in ``NUMERIC_FIELDS`` order).

    The numeric fields are one packed run of bytes in each row, so this is
    one strided copy where field-by-field assignment is eleven: 2 us
    against 11 for 100 rows. ``rows`` must be contiguous (a fresh block)."""
    n = len(rows)
    if rows.dtype != POINT_DTYPE or columns.shape != (n, len(NUMERIC_FIELDS)):
        raise ValueError(f"expected stored rows and {(n, len(NUMERIC_FIELDS))} columns")
    _numeric_fields(rows)[:] = columns


def empty_rows(n: int) -> np.ndarray:
    """A fresh block of ``n`` rows with every numeric field NaN, track 0."""
    return np.full(n, _EMPTY_RECORD, dtype=RECORD_DTYPE).view(POINT_DTYPE)


def _empty_record() -> np.void:
    row = np.zeros(1, dtype=POINT_DTYPE)
    for name in NUMERIC_FIELDS:
        row[name] = np.nan
    return row.view(RECORD_DTYPE)[0]


_EMPTY_RECORD: Final = _empty_record()
