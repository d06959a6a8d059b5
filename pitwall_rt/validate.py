"""Validation of decoded points: Python objects in, stored rows and reasons out.

Pure and batch-shaped: a datagram flush or an HTTP body is validated as one
batch, column by column, so the per-point Python work is a few C-level
``map`` calls per field instead of a loop with branches. Only a field whose
values are not all of a clean type (a string where a number belongs, a bool,
a NaN) falls back to a per-value check, and only for that field.

Each rejected point gets one reason code, the first failing check in field
order; codes are a small fixed set (``bad_type:<field>`` ...) so counters
keyed on them stay bounded.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np

from .schema import (
    ALIAS_OF,
    ALIASES,
    INT_FIELDS,
    LIMITS,
    MAX_NAME_LEN,
    NUMERIC_FIELDS,
    StringTable,
    TableFullError,
    empty_rows,
    take_rows,
)

_NONE = type(None)
_NUMBER_TYPES = frozenset({int, float, _NONE})
EPOCH_MS_THRESHOLD = 1e11  # epoch seconds pass this in the year 5138; above it means ms

_get = dict.get


@dataclass
class Validated:
    """The outcome of validating one batch.

    ``rows`` holds the accepted points in input order; ``reasons`` counts the
    rejected ones by code; ``first_errors`` keeps readable messages for the
    first few, which is what a sender needs to fix its data.
    """

    rows: np.ndarray
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)


@dataclass
class Tables:
    """The interning tables a batch writes names into."""

    chassis: StringTable
    track: StringTable


class _Rejector:
    """Collects per-point reject codes for a batch, first reason wins."""

    def __init__(self, n: int, max_messages: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.codes: list[str] = []
        self.index_of: dict[str, int] = {}
        self.code_of = np.full(n, -1, dtype=np.int32)
        self.messages: dict[int, str] = {}
        self.max_messages = max_messages

    def mark(self, mask: np.ndarray, code: str, message: Any = None) -> None:
        fresh = mask & ~self.bad
        if not fresh.any():
            return
        self.bad |= fresh
        index = self.index_of.get(code)
        if index is None:
            index = self.index_of[code] = len(self.codes)
            self.codes.append(code)
        self.code_of[fresh] = index
        if message is not None and len(self.messages) < self.max_messages:
            for i in np.flatnonzero(fresh)[: self.max_messages]:
                self.messages.setdefault(int(i), message(int(i)))

    def mark_indices(self, indices: list[int], code: str, message: str) -> None:
        if indices:
            mask = np.zeros(self.bad.shape, dtype=bool)
            mask[indices] = True
            self.mark(mask, code, lambda _i: message)


def validate_points(
    points: list[Any],
    tables: Tables,
    now_s: float,
    max_messages: int = 5,
) -> Validated:
    """Validate decoded JSON values into stored rows.

    ``now_s`` is the server time used for points without ``meta_time`` and
    stored as every row's ``recv_t``.
    """
    n = len(points)
    rows = empty_rows(n)
    if n == 0:
        return Validated(rows=rows)
    rej = _Rejector(n, max_messages)
    if set(map(type, points)) != {dict}:
        points = _mark_non_objects(points, rej)
    source = _Source(points)
    chassis, chassis_kinds = source.column("chassis")
    _check_names(chassis, chassis_kinds, "chassis", rej, required=True)
    _fill_numeric(source, rows, rej)
    _fill_time(source, rows, rej, now_s)
    track, track_kinds = source.column("track")
    if track_kinds != {_NONE}:
        _check_names(track, track_kinds, "track", rej, required=False)
        _intern_names(track, rows, rej, "track", tables.track)
    _intern_names(chassis, rows, rej, "chassis", tables.chassis)
    rows["recv_t"] = now_s
    return _finish(rows, rej)


def _finish(rows: np.ndarray, rej: _Rejector) -> Validated:
    if not rej.bad.any():
        return Validated(rows=rows)
    counts = np.bincount(rej.code_of[rej.bad], minlength=len(rej.codes))
    reasons = {code: int(c) for code, c in zip(rej.codes, counts, strict=True) if c}
    messages = [f"point {i}: {msg}" for i, msg in sorted(rej.messages.items())]
    return Validated(
        rows=take_rows(rows, ~rej.bad),
        rejected=int(rej.bad.sum()),
        reasons=reasons,
        first_errors=messages[: rej.max_messages],
    )


def _mark_non_objects(points: list[Any], rej: _Rejector) -> list[Any]:
    """Reject non-dict entries and swap them for empty dicts so columns line up."""
    not_dict = np.fromiter((type(p) is not dict for p in points), dtype=bool, count=len(points))
    rej.mark(not_dict, "not_object", lambda i: f"not a JSON object ({type(points[i]).__name__})")
    return [p if type(p) is dict else {} for p in points]


_KNOWN_KEYS = frozenset(NUMERIC_FIELDS) | {"chassis", "track", "meta_time"} | set(ALIAS_OF.values())


class _Source:
    """Column access over a batch of decoded points.

    When every point has the same keys and all of them are known (one sender,
    one format: the common case), one ``itemgetter`` call per point pulls
    every field at once and ``zip`` transposes; otherwise each column is
    pulled with ``dict.get``, aliases resolved.
    """

    def __init__(self, points: list[dict[str, Any]]) -> None:
        self.points = points
        self.absent = (None,) * len(points)
        self.uniform = _uniform_columns(points)

    def column(self, name: str) -> tuple[Sequence[Any], set[type]]:
        """Values of ``name`` per point (None where absent) and their types."""
        if self.uniform is not None:
            values = self.uniform.get(name, self.absent)
            return values, set(map(type, values))
        return _column(self.points, name)


def _uniform_columns(points: list[dict[str, Any]]) -> dict[str, Sequence[Any]] | None:
    keys = tuple(points[0])
    if not keys or not _KNOWN_KEYS.issuperset(keys) or len(set(map(len, points))) != 1:
        return None
    try:
        if len(keys) == 1:
            return _dealias({keys[0]: list(map(itemgetter(keys[0]), points))})
        rows = list(map(itemgetter(*keys), points))
    except KeyError:
        return None
    return _dealias(dict(zip(keys, zip(*rows, strict=True), strict=True)))


def _dealias(columns: dict[str, Sequence[Any]]) -> dict[str, Sequence[Any]]:
    """Rename alias columns to canonical names; a canonical column wins."""
    for alias, canonical in ALIASES.items():
        if alias not in columns:
            continue
        values = columns.pop(alias)
        present = columns.get(canonical)
        if present is None:
            columns[canonical] = values
        elif None in present:
            columns[canonical] = [
                a if v is None else v for v, a in zip(present, values, strict=True)
            ]
    return columns


def _column(points: list[dict[str, Any]], name: str) -> tuple[list[Any], set[type]]:
    """Values of ``name`` (or its alias) per point, None where absent, and the
    set of their types (the cheap test that picks the fast path)."""
    values = list(map(_get, points, repeat(name)))
    kinds = set(map(type, values))
    alias = ALIAS_OF.get(name)
    if alias is not None and _NONE in kinds:
        alias_values = list(map(_get, points, repeat(alias)))
        alias_kinds = set(map(type, alias_values))
        if alias_kinds != {_NONE}:
            values = [a if v is None else v for v, a in zip(values, alias_values, strict=True)]
            kinds = set(map(type, values))
    return values, kinds


_Column = tuple[str, Sequence[Any], set[type]]
_FIELD_INDEX = {name: i for i, name in enumerate(NUMERIC_FIELDS)}
_LO = np.array([LIMITS[name][0] for name in NUMERIC_FIELDS], dtype=np.float64)
_HI = np.array([LIMITS[name][1] for name in NUMERIC_FIELDS], dtype=np.float64)


def _fill_numeric(source: _Source, rows: np.ndarray, rej: _Rejector) -> None:
    """Numeric columns into ``rows``: all at once when every value passes,
    else field by field so each point gets its first failing check.

    A column at a time costs about 10 us of numpy calls whatever the batch
    size: over 100 us a batch for 11 fields, which is most of the work for
    a 100-point HTTP body or a small UDP flush. The clean case (every value
    a number, in range, integral where it must be) is checked on one 2-D
    array instead."""
    present = [(name, *source.column(name)) for name in NUMERIC_FIELDS]
    present = [column for column in present if column[2] != {_NONE}]
    if not present:
        return
    matrix = _clean_matrix(present)
    if matrix is not None:
        for (name, _, _), values in zip(present, matrix, strict=True):
            rows[name] = values
        return
    for name, values, kinds in present:
        _fill_field(name, values, kinds, rows, rej)


def _clean_matrix(present: list[_Column]) -> np.ndarray | None:
    """The columns as one float array (None -> NaN) if every value passes
    every check; None if any may fail, for the field-by-field path."""
    if not all(kinds <= _NUMBER_TYPES for _, _, kinds in present):
        return None
    try:
        matrix = np.array([values for _, values, _ in present], dtype=np.float64)
    except (OverflowError, ValueError):
        return None
    index = [_FIELD_INDEX[name] for name, _, _ in present]
    with np.errstate(invalid="ignore"):
        outside = (matrix < _LO[index, None]) | (matrix > _HI[index, None])
        if outside.any():
            return None
        nans = np.isnan(matrix)
        counts = np.count_nonzero(nans, axis=1).tolist()
        for count, (_, values, kinds) in zip(counts, present, strict=True):
            if count and count != (values.count(None) if _NONE in kinds else 0):
                return None  # a NaN was sent, not a None
        ints = [row for row, (name, _, _) in enumerate(present) if name in INT_FIELDS]
        if ints:
            whole = matrix[ints]
            if ((whole != np.floor(whole)) & ~nans[ints]).any():
                return None
    return matrix


def _fill_field(
    name: str, values: Sequence[Any], kinds: set[type], rows: np.ndarray, rej: _Rejector
) -> None:
    """One numeric column, each failing value marked with its reason."""
    if not kinds <= _NUMBER_TYPES:
        values = _mark_bad_types(values, name, rej)
        kinds = set(map(type, values))
    try:
        column = np.array(values, dtype=np.float64)
    except OverflowError:
        values = _mark_huge(values, name, rej)
        column = np.array(values, dtype=np.float64)
    if float in kinds:
        _mark_nan(values, kinds, column, name, rej)
    _mark_outside(column, name, rej)
    rows[name] = column


def _mark_nan(
    values: Sequence[Any], kinds: set[type], column: np.ndarray, name: str, rej: _Rejector
) -> None:
    """A NaN that was sent (not a None that became NaN) is a bad value.

    JSON can't carry NaN, but points built in Python (CSV, replay) can."""
    nans = np.count_nonzero(np.isnan(column))
    if nans == 0 or (_NONE in kinds and nans == values.count(None)):
        return
    sent_nan = np.fromiter(
        (isinstance(v, float) and math.isnan(v) for v in values), bool, len(values)
    )
    rej.mark(sent_nan, f"out_of_range:{name}", lambda _i: f"{name} is NaN")


def _mark_outside(column: np.ndarray, name: str, rej: _Rejector) -> None:
    lo, hi = LIMITS[name]
    with np.errstate(invalid="ignore"):
        inside = (column >= lo) & (column <= hi)
    outside = ~inside & ~np.isnan(column)
    if outside.any():
        rej.mark(
            outside,
            f"out_of_range:{name}",
            lambda i: f"{name}={float(column[i]):g} outside [{lo:g}, {hi:g}]",
        )
    if name in INT_FIELDS:
        fractional = inside & (column != np.floor(column))
        if fractional.any():
            rej.mark(fractional, f"bad_type:{name}", lambda _i: f"{name} must be an integer")


def _mark_bad_types(values: Sequence[Any], name: str, rej: _Rejector) -> list[Any]:
    bad = np.fromiter((type(v) not in _NUMBER_TYPES for v in values), bool, len(values))
    rej.mark(
        bad,
        f"bad_type:{name}",
        lambda i: f"{name} must be a number, got {type(values[i]).__name__}",
    )
    return [None if b else v for v, b in zip(values, bad.tolist(), strict=True)]


def _mark_huge(values: Sequence[Any], name: str, rej: _Rejector) -> list[Any]:
    huge = np.fromiter((type(v) is int and abs(v) > 2**62 for v in values), bool, len(values))
    rej.mark(huge, f"out_of_range:{name}", lambda _i: f"{name} is out of range")
    return [None if h else v for v, h in zip(values, huge.tolist(), strict=True)]


def _fill_time(source: _Source, rows: np.ndarray, rej: _Rejector, now_s: float) -> None:
    values, kinds = source.column("meta_time")
    t, bad = meta_time_column(values, kinds, now_s)
    if bad is not None:
        rej.mark(
            bad,
            "bad_value:meta_time",
            lambda i: f"meta_time {values[i]!r} is not ISO-8601 or epoch seconds",
        )
    rows["t"] = t


def meta_time_column(
    values: Sequence[Any], kinds: set[type], now_s: float
) -> tuple[np.ndarray | float, np.ndarray | None]:
    """``meta_time`` values (of types ``kinds``) as the stored ``t`` column,
    ``now_s`` where absent, and which values were sent but can't be a time
    (None when there is nothing to check).

    The usual batch, every point stamped in epoch seconds, is checked with a
    min and a max: three numpy calls, where the general checks take ten,
    which were a tenth of a 100-point HTTP body's time in the loop."""
    if kinds == {_NONE}:
        return now_s, None
    if kinds == {float}:
        seconds = np.array(values, dtype=np.float64)
        if seconds.min() > 0 and seconds.max() <= EPOCH_MS_THRESHOLD:
            return seconds, None
    try:
        if not kinds <= _NUMBER_TYPES:
            raise TypeError
        seconds = epoch_numbers_to_seconds(np.array(values, dtype=np.float64))
    except (TypeError, OverflowError):
        seconds = np.array([_time_value(v) for v in values], dtype=np.float64)
    if _NONE in kinds:
        present = np.fromiter((v is not None for v in values), bool, len(values))
    else:
        present = np.ones(len(values), dtype=bool)
    bad = _impossible_epoch(seconds) | (present & np.isnan(seconds))
    return np.where(present, seconds, now_s), bad


def epoch_numbers_to_seconds(numbers: np.ndarray) -> np.ndarray:
    """Epoch numbers to seconds: values past 1e11 are taken as milliseconds."""
    with np.errstate(invalid="ignore"):
        return np.where(numbers > EPOCH_MS_THRESHOLD, numbers / 1000.0, numbers)


def _impossible_epoch(seconds: np.ndarray) -> np.ndarray:
    """Times that can't be real: not after 1970, infinite, or past the year 5138."""
    with np.errstate(invalid="ignore"):
        return (seconds <= 0) | np.isinf(seconds) | (seconds > EPOCH_MS_THRESHOLD)


def _time_value(value: Any) -> float:
    """One meta_time as epoch seconds; NaN when it can't be read."""
    if value is None:
        return math.nan
    kind = type(value)
    if kind is float or kind is int:
        try:
            number = float(value)
        except OverflowError:
            return math.nan
        return number / 1000.0 if number > EPOCH_MS_THRESHOLD else number
    if kind is str:
        return parse_iso(value)
    return math.nan


@lru_cache(maxsize=4096)
def parse_iso(text: str) -> float:
    """ISO-8601 to epoch seconds; naive times are UTC. Cached: loggers batch
    many samples under one receive timestamp."""
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return math.nan
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _check_names(
    values: Sequence[Any], kinds: set[type], name: str, rej: _Rejector, required: bool
) -> None:
    """Reject absent (when required), non-string, empty and over-long names."""
    if kinds == {str} and max(map(len, values)) <= MAX_NAME_LEN and all(values):
        return
    missing, wrong, too_long = [], [], []
    for i, value in enumerate(values):
        if value is None:
            if required:
                missing.append(i)
        elif type(value) is not str or not value:
            wrong.append(i)
        elif len(value) > MAX_NAME_LEN:
            too_long.append(i)
    rej.mark_indices(missing, f"missing:{name}", f"{name} is required")
    rej.mark_indices(wrong, f"bad_type:{name}", f"{name} must be a non-empty string")
    rej.mark_indices(too_long, f"too_long:{name}", f"{name} is over {MAX_NAME_LEN} characters")


def _intern_names(
    values: Sequence[Any], rows: np.ndarray, rej: _Rejector, name: str, table: StringTable
) -> None:
    """Store name ids; new names are interned only for otherwise valid points,
    so garbage can't fill the bounded table."""
    if not set(map(type, values)) <= {str, _NONE}:
        values = [v if type(v) is str else None for v in values]
    ids, full = name_ids(values, table, skip=rej.bad)
    rej.mark_indices(full, f"table_full:{name}", f"too many distinct {name} names")
    rows[name] = ids


def name_ids(
    names: Sequence[Any], table: StringTable, skip: np.ndarray | None = None
) -> tuple[np.ndarray, list[int]]:
    """Table ids of ``names`` (int32), interning new ones; 0 for None, for
    points ``skip`` marks (new names of those are not interned) and for new
    names the full table has no room for, whose indices come second.

    A batch's names are nearly all known already, and often one name for
    every point (a track, one car's stream): then the ids go straight into
    an array, from one lookup or a ``fromiter`` over the lookups, instead of
    a list numpy converts (100 points: 0.7 or 3.8 us against 5.6)."""
    n = len(names)
    if n and names[-1] == names[0] and names.count(names[0]) == n:
        one = 0 if names[0] is None else table.lookup(names[0])
        if one is not None:
            return np.full(n, one, dtype=np.int32), []
    else:
        with contextlib.suppress(TypeError):  # a new name or None: its lookup gave None
            return np.fromiter(map(table.lookup, names), np.int32, n), []
    ids: list[Any] = list(map(table.lookup, names))
    full: list[int] = []
    skipped = skip.tolist() if skip is not None else [False] * n
    for i, (name, ident) in enumerate(zip(names, ids, strict=True)):
        if ident is not None or name is None or skipped[i]:
            ids[i] = ident or 0
            continue
        try:
            ids[i] = table.intern(name)
        except TableFullError:
            ids[i] = 0
            full.append(i)
    return np.array(ids, dtype=np.int32), full


def rows_from_columns(
    columns: dict[str, np.ndarray],
    chassis: np.ndarray,
    track: str | None,
    tables: Tables,
    now_s: float,
) -> Validated:
    """Validate points a decoder already holds as columns (F1 game, CSV).

    Keys outside the schema are ignored; NaN means absent, as in storage.
    The same limits as for JSON apply, vectorised; only names are interned
    one by one, and there are few of them per batch.
    """
    n = len(chassis)
    rows = empty_rows(n)
    if n == 0:
        return Validated(rows=rows)
    rej = _Rejector(n, 5)
    for name in NUMERIC_FIELDS:
        column = columns.get(name)
        if column is None:
            continue
        column = np.asarray(column, dtype=np.float64)
        _mark_outside(column, name, rej)
        rows[name] = column
    times = columns.get("meta_time")
    if times is None:
        rows["t"] = now_s
    else:
        seconds = epoch_numbers_to_seconds(np.asarray(times, dtype=np.float64))
        rej.mark(
            _impossible_epoch(seconds), "bad_value:meta_time", lambda _i: "meta_time out of range"
        )
        rows["t"] = np.where(np.isnan(seconds), now_s, seconds)
    names = chassis.tolist()
    _check_names(names, set(map(type, names)), "chassis", rej, required=True)
    _intern_names(names, rows, rej, "chassis", tables.chassis)
    if track:
        _intern_names([track] * n, rows, rej, "track", tables.track)
    rows["recv_t"] = now_s
    return _finish(rows, rej)
