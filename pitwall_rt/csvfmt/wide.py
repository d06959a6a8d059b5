"""The wide format: one row per sample, the canonical columns of DESIGN.md.

Columns are the point fields (``chassis`` or its alias ``vehicle_id``,
``meta_time``, ``track``, ``lap``, ``speed_kmh`` ...; the aliases ``speed``,
``nmot`` and ``aps`` too, a canonical column winning over its alias) plus
``lon_deg``/``lat_deg``. Unknown columns are skipped by the parser.
``vehicle_id`` is taken as the chassis as-is, as on every other interface.
``meta_time`` may be ISO-8601 (UTC when naive) or epoch seconds (epoch
milliseconds above 1e11, as for JSON points); empty means server time.

Wide rows are one sample each, so there is nothing to pivot or de-duplicate;
within each parsed chunk a car's rows are ordered by time and the lap and gap
repairs of :mod:`.repair` apply, as for the long format.

This module also holds the value coercions the reader falls back to when a
column has text where a number or time belongs: vectorised, they say which
rows were bad instead of failing the whole chunk.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import ALIASES, NUMERIC_FIELDS
from ..validate import epoch_numbers_to_seconds
from . import GPS_COLUMNS, TIME_COLUMN, IssueLog, PointBatch
from .repair import BackwardSteps, GapCounter, LapTracker, Repairs

NO_TIME: Final = np.iinfo(np.int64).min
"""Epoch-nanosecond value that marks an empty or unreadable time."""

_NULLS: Final = pa.array(
    ["", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "null", "NULL", "None", "#N/A"]
)
_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_DATE_TIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
_ZONED = _DATE_TIME + r"(Z|[+-]\d{2}(:?\d{2})?)$"
_NAIVE = _DATE_TIME + "$"
_TIME_ZONED = pa.timestamp("ns", tz="UTC")
_TIME_NAIVE = pa.timestamp("ns")

_NAMES = pa.dictionary(pa.int32(), pa.string())
NUMERIC_COLUMNS: Final = (*NUMERIC_FIELDS, *GPS_COLUMNS)
_NUMERIC_SOURCES: Final = {
    **{name: name for name in NUMERIC_COLUMNS},
    **{alias: canon for alias, canon in ALIASES.items() if canon in NUMERIC_FIELDS},
}


def is_wide(names: list[str]) -> bool:
    """A header is wide when it names the car and at least one point field."""
    has_car = "chassis" in names or "vehicle_id" in names
    return has_car and any(n in _NUMERIC_SOURCES or n == TIME_COLUMN for n in names)


def column_types(names: list[str]) -> dict[str, pa.DataType]:
    """Types to parse the known columns of a wide header as."""
    types: dict[str, pa.DataType] = {}
    for name in names:
        if name in _NUMERIC_SOURCES:
            types[name] = pa.float64()
        elif name in ("chassis", "vehicle_id", "track"):
            types[name] = _NAMES
        elif name == TIME_COLUMN:
            types[name] = pa.string()
    return types


def to_float(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Text to float64 (NaN for empty); also the mask of unreadable rows."""
    try:
        values = pc.cast(column, pa.float64()).to_numpy()
        return values, np.zeros(len(values), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    empty = _filled(pc.or_(pc.is_null(text), pc.is_in(text, value_set=_NULLS)), True)
    number = _filled(pc.match_substring_regex(text, _NUMBER), False)
    values = pc.cast(pc.if_else(pa.chunked_array([pa.array(number)]), text, None), pa.float64())
    return values.to_numpy(), ~empty & ~number


def to_time_ns(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Times (ISO-8601, naive = UTC, or epoch s/ms) to epoch ns, ``NO_TIME``
    where empty; also the mask of unreadable rows."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        return _filled(column.cast(pa.int64()), NO_TIME), np.zeros(len(column), dtype=bool)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind):
        return _epoch_ns(column.cast(pa.float64()).to_numpy()), np.zeros(len(column), dtype=bool)
    for target in (_TIME_ZONED, _TIME_NAIVE, pa.float64()):
        try:
            cast = pc.cast(column, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return to_time_ns(cast)
    return _mixed_times_ns(pc.utf8_trim_whitespace(column.cast(pa.string())))


def _mixed_times_ns(text: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The slow path: every row matched against each accepted form."""
    out = np.full(len(text), NO_TIME, dtype=np.int64)
    empty = _filled(pc.or_(pc.is_null(text), pc.is_in(text, value_set=_NULLS)), True)
    readable = empty.copy()
    for pattern, target in ((_ZONED, _TIME_ZONED), (_NAIVE, _TIME_NAIVE), (_NUMBER, None)):
        match = _filled(pc.match_substring_regex(text, pattern), False) & ~readable
        if not match.any():
            continue
        picked = pc.filter(text, pa.chunked_array([pa.array(match)]))
        if target is None:
            out[match] = _epoch_ns(pc.cast(picked, pa.float64()).to_numpy())
        else:
            out[match] = _filled(pc.cast(picked, target).cast(pa.int64()), NO_TIME)
        readable |= match
    return out, ~readable


def _epoch_ns(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds (or ms above 1e11) as float -> int64 ns, rounded to whole
    µs (exact in float64, unlike ns); NaN -> NO_TIME."""
    with np.errstate(invalid="ignore"):
        seconds = epoch_numbers_to_seconds(seconds)
        ok = np.isfinite(seconds) & (np.abs(seconds) < 9e9)
    micros = np.round(np.where(ok, seconds, 0.0) * 1e6).astype(np.int64)
    return np.where(ok, micros * 1000, NO_TIME)


def _filled(values: pa.ChunkedArray | pa.Array, fill: object) -> np.ndarray:
    return np.asarray(pc.fill_null(values, fill).to_numpy(zero_copy_only=False))


class WideDecoder:
    """Decodes wide tables chunk by chunk; see the module docstring."""

    def __init__(
        self, names: list[str], track: str | None, repairs: Repairs, issues: IssueLog
    ) -> None:
        self.column_types = column_types(names)
        self.track = track
        self.repairs = repairs
        self.issues = issues
        self._car_column = "chassis" if "chassis" in names else "vehicle_id"
        self._codes: dict[str, int] = {}
        self.chassis_names: list[str] = []
        self._backwards = BackwardSteps()
        self._laps = LapTracker()
        self._gaps = GapCounter()

    def decode(self, table: pa.Table, lines: np.ndarray) -> list[PointBatch]:
        """One parsed chunk in, its points out, ordered by car then time."""
        car = self._car_codes(table[self._car_column])
        time_ns, bad_time = self._times(table)
        good = (car >= 0) & ~bad_time
        if not good.all():
            no_car = (car < 0) & ~_blank_rows(table, time_ns)
            self.issues.add_lines(lines[no_car], f"{self._car_column} is empty")
            self.issues.add_lines(lines[(car >= 0) & bad_time], "meta_time is not a time")
        timed = good & (time_ns != NO_TIME)
        self.repairs["time_backwards"] += self._backwards.count(car[timed], time_ns[timed])
        untimed_last = np.where(time_ns == NO_TIME, np.iinfo(np.int64).max, time_ns)
        order = np.lexsort((untimed_last, car))
        order = order[good[order]]
        car, time_ns = car[order], time_ns[order]
        time_s = np.where(time_ns == NO_TIME, np.nan, (time_ns // 1000) / 1e6)  # whole µs
        columns = self._numeric(table, order)
        columns[TIME_COLUMN] = time_s
        self.repairs["gap"] += self._gaps.count(car, time_s)
        if "lap" in columns:
            lapdist = columns.get("lapdist_m", np.full(len(car), np.nan))
            columns["lap"] = self._laps.repair(car, columns["lap"], lapdist, self.repairs)
        batch = PointBatch(
            columns=columns,
            chassis=np.array(self.chassis_names, dtype=object)[car],
            track=self.track,
            lines=lines[order],
        )
        if "track" not in table.column_names:
            return [batch] if len(batch) else []
        return _split_by_track(batch, table["track"], order, self.track)

    def finish(self) -> list[PointBatch]:
        """Wide rows are final as read: nothing is held back."""
        return []

    def _car_codes(self, column: pa.ChunkedArray) -> np.ndarray:
        parts = []
        for chunk in dictionary_chunks(column):
            names = [self._code_of(name) for name in chunk.dictionary.to_pylist()]
            table = np.array([*names, -1], dtype=np.int64)
            parts.append(table[pc.fill_null(chunk.indices, -1).to_numpy()])
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def _code_of(self, name: str) -> int:
        name = name.strip()
        if not name:
            return -1
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self.chassis_names)
            self.chassis_names.append(name)
        return code

    def _times(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        if TIME_COLUMN not in table.column_names:
            return np.full(table.num_rows, NO_TIME), np.zeros(table.num_rows, dtype=bool)
        return to_time_ns(table[TIME_COLUMN])

    def _numeric(self, table: pa.Table, order: np.ndarray) -> dict[str, np.ndarray]:
        columns: dict[str, np.ndarray] = {}
        for name in table.column_names:
            canon = _NUMERIC_SOURCES.get(name)
            if canon is None or (canon != name and canon in table.column_names):
                continue
            columns[canon] = table[name].to_numpy()[order]
        return columns


def _blank_rows(table: pa.Table, time_ns: np.ndarray) -> np.ndarray:
    """Rows with no value at all: blank lines, which are dropped quietly."""
    blank = time_ns == NO_TIME
    for column in table.columns:
        if pa.types.is_floating(column.type):
            blank &= np.isnan(column.to_numpy())
        else:
            blank &= _filled(pc.is_null(column), True)
    return blank


def dictionary_chunks(column: pa.ChunkedArray) -> list[pa.DictionaryArray]:
    """A text column's chunks as dictionary arrays (the parser's, or encoded
    here for columns that came through the text fallback)."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column.cast(pa.string()))
    return list(column.chunks)


def _split_by_track(
    batch: PointBatch, column: pa.ChunkedArray, order: np.ndarray, default: str | None
) -> list[PointBatch]:
    """One batch per distinct track in the file's ``track`` column (empty = default)."""
    parts: list[np.ndarray] = []
    names: list[str] = []
    for chunk in dictionary_chunks(column):
        offset = len(names)
        names += [name.strip() for name in chunk.dictionary.to_pylist()]
        codes = pc.fill_null(chunk.indices, -1 - offset).to_numpy() + offset
        parts.append(codes)
    codes = np.concatenate(parts)[order] if parts else np.empty(0, dtype=np.int64)
    by_name: dict[str | None, list[int]] = {}
    for code, name in enumerate(names):
        by_name.setdefault(name or None, []).append(code)
    by_name.setdefault(None, []).append(-1)
    out = []
    for track, track_codes in by_name.items():
        index = np.flatnonzero(np.isin(codes, track_codes))
        if len(index):
            out.append(
                PointBatch(
                    columns={k: v[index] for k, v in batch.columns.items()},
                    chassis=batch.chassis[index],
                    track=track or default,
                    lines=batch.lines[index],
                )
            )
    return out
