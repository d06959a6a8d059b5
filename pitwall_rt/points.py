"""Stored rows back to JSON point objects, and display decimation.

The inverse of validation: rows of ``POINT_DTYPE`` become the same point
objects a sender posted (canonical names, ``meta_time`` as ISO-8601 UTC with
milliseconds, lap and gear as integers). Work is done per column with numpy;
the only per-point step is zipping columns into dicts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .schema import INT_FIELDS, NUMERIC_FIELDS, StringTable, id_order


def iso_times(epoch_s: np.ndarray) -> list[str]:
    """Epoch seconds -> ``2025-09-06T18:40:41.926Z`` strings, vectorised."""
    stamps = np.round(epoch_s * 1000.0).astype("datetime64[ms]")
    return [text + "Z" for text in np.datetime_as_string(stamps, unit="ms").tolist()]


def _int_list(column: np.ndarray) -> list[int | None]:
    if not np.isnan(column).any():
        return column.astype(np.int64).tolist()
    return [None if v != v else int(v) for v in column.tolist()]


def rows_to_points(
    rows: np.ndarray, chassis: StringTable, tracks: StringTable
) -> list[dict[str, Any]]:
    """Point objects for ``rows``, oldest first.

    A field that is NaN in every row of the batch is left out; a field NaN in
    some rows is ``null`` there (orjson writes NaN as null).
    """
    if not len(rows):
        return []
    keys: list[str] = ["meta_time", "chassis"]
    columns: list[list[Any]] = [iso_times(rows["t"]), chassis.names(rows["chassis"]).tolist()]
    track_ids = rows["track"]
    if track_ids.any():
        keys.append("track")
        columns.append([name or None for name in tracks.names(track_ids).tolist()])
    for name in NUMERIC_FIELDS:
        column = rows[name]
        if np.isnan(column).all():
            continue
        keys.append(name)
        columns.append(_int_list(column) if name in INT_FIELDS else column.tolist())
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]


def decimate(chassis_ids: np.ndarray, max_per_chassis: int) -> np.ndarray:
    """Indices to keep so each chassis has at most ``max_per_chassis`` rows.

    Rows of one chassis are split into ``max_per_chassis`` buckets counted back
    from the newest; the newest row of each bucket is kept, so the newest row
    always survives and the kept rows are evenly spread. Returns sorted
    indices into the original (arrival-ordered) rows.
    """
    n = len(chassis_ids)
    if n == 0:
        return np.arange(0)
    order = id_order(chassis_ids)
    sorted_ids = chassis_ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    sizes = np.diff(np.r_[starts, n])
    size_of = np.repeat(sizes, sizes)
    end_of = np.repeat(starts + sizes, sizes)
    back = end_of - 1 - np.arange(n)  # 0 = newest row of its chassis
    bucket = (back * max_per_chassis) // size_of
    prev_bucket = ((back - 1) * max_per_chassis) // size_of
    keep = (size_of <= max_per_chassis) | (back == 0) | (bucket != prev_bucket)
    return np.sort(order[keep])
