"""Strict decoding: clean JSON payloads straight to stored rows.

The general path (``payload`` then ``validate``) has orjson build a dict per
point and then checks the dicts column by column: about 2.2 µs a point on
this project's 2-core test VM, the largest single cost of ingest. msgspec
decodes into typed structs instead, checking each value's type and limits
in C as it parses (0.6 µs a point there), which leaves only the copy into
columns.

It only ever accepts: a payload msgspec refuses (a wrong type, a value out
of range, a whole float for ``lap``, NDJSON over UDP, garbage) goes the
general way, which gives every point its reason. A batch whose structs fail
a check msgspec can't express (no chassis under either name, an impossible
``meta_time``, a full name table) is also handed back whole. So a point is
accepted or rejected the same either way; only the cost differs.
"""

from __future__ import annotations

from itertools import chain
from operator import attrgetter
from typing import Annotated, Any

import msgspec
import numpy as np

from .schema import (
    ALIAS_COLUMNS,
    ALIAS_OF,
    MAX_NAME_LEN,
    NUMBER_ALIASES,
    NUMBER_KEYS,
    NUMERIC_FIELDS,
    NumberKey,
    empty_rows,
    put_numeric,
)
from .validate import Tables, meta_time_column, name_ids

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LEN)]


def _number(key: NumberKey) -> Any:
    """The key's JSON type: a number within its field's limits, or null
    (absent). Integer fields take JSON integers only; a whole float
    (``3.0``) is refused here and accepted by the general path."""
    kind = int if key.integer else float
    return Annotated[kind, msgspec.Meta(ge=key.low, le=key.high)] | None


_NAME_ALIAS = ALIAS_OF["chassis"]

StrictPoint = msgspec.defstruct(
    "StrictPoint",
    [
        ("chassis", _Name | None, None),
        (_NAME_ALIAS, _Name | None, None),
        ("track", _Name | None, None),
        ("meta_time", float | str | None, None),
        *((key.key, _number(key), None) for key in NUMBER_KEYS),
    ],
    gc=False,
)
"""One point as the strict decoder reads it; keys outside the schema are ignored."""

_decoder = msgspec.json.Decoder(StrictPoint | list[StrictPoint])  # type: ignore[valid-type]
_decode = _decoder.decode
_decode_lines = _decoder.decode_lines
_Refused = msgspec.MsgspecError

_numbers = attrgetter(*NUMERIC_FIELDS)
_aliases = attrgetter(_NAME_ALIAS, *NUMBER_ALIASES)
_NO_ALIAS = (None,) * (1 + len(NUMBER_ALIASES))
_chassis = attrgetter("chassis")
_track = attrgetter("track")
_meta_time = attrgetter("meta_time")


def decode_into(payload: bytes, points: list[Any]) -> int | None:
    """Append a payload's points (one JSON value) to ``points``.

    Returns how many empty arrays it held (0 or 1), or None when the strict
    decoder refused it and nothing was appended."""
    try:
        value = _decode(payload)
    except _Refused:
        return None
    if type(value) is list:
        if not value:
            return 1
        points.extend(value)
    else:
        points.append(value)
    return 0


def decode_lines(body: bytes) -> list[Any] | None:
    """An NDJSON body's points, or None when any line is refused.

    Bodies with a carriage return, or an empty array on a line, go the
    general way too: msgspec also ends a line at a lone CR, which the
    general path's split does not, and only the general path counts empty
    arrays."""
    if b"\r" in body:
        return None
    try:
        lines = _decode_lines(body)
    except _Refused:
        return None
    points: list[Any] = []
    for value in lines:
        if type(value) is list:
            if not value:
                return None
            points.extend(value)
        else:
            points.append(value)
    return points


def rows_from_points(points: list[Any], tables: Tables, now_s: float) -> np.ndarray | None:
    """Stored rows for strictly decoded points, in order; None when any point
    fails a check left to this step, for the general path to take the batch.

    ``now_s`` is stored as ``recv_t`` and stands in for an absent
    ``meta_time``, as in ``validate.validate_points``."""
    n = len(points)
    chassis = list(map(_chassis, points))
    aliased = list(map(_aliases, points))
    has_aliases = aliased.count(_NO_ALIAS) != n
    if has_aliases:
        chassis = [a[0] if c is None else c for c, a in zip(chassis, aliased, strict=True)]
    if None in chassis:
        return None
    times = list(map(_meta_time, points))
    t, impossible = meta_time_column(times, set(map(type, times)), now_s)
    if impossible is not None and impossible.any():
        return None
    rows = empty_rows(n)
    rows["t"] = t
    rows["recv_t"] = now_s
    # fromiter over one flat run of the values (None, an absent field, becomes
    # NaN): 40 us per 100 real points against 51 for np.array over a list of tuples.
    count = n * len(NUMERIC_FIELDS)
    matrix = np.fromiter(chain.from_iterable(map(_numbers, points)), np.float64, count)
    matrix = matrix.reshape(n, -1)
    if has_aliases:
        _fill_aliases(matrix, aliased)
    put_numeric(rows, matrix)
    tracks = list(map(_track, points))
    if tracks.count(None) != n:
        track_ids, full = name_ids(tracks, tables.track)
        if full:
            return None
        rows["track"] = track_ids
    chassis_ids, full = name_ids(chassis, tables.chassis)
    if full:
        return None
    rows["chassis"] = chassis_ids
    return rows


def _fill_aliases(matrix: np.ndarray, aliased: list[tuple[Any, ...]]) -> None:
    """Alias values where the canonical field is absent (the canonical one wins)."""
    values = np.array([a[1:] for a in aliased], dtype=np.float64).reshape(len(aliased), -1)
    for k, column in enumerate(ALIAS_COLUMNS):
        missing = np.isnan(matrix[:, column])
        matrix[missing, column] = values[missing, k]
