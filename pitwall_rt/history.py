"""Recorded history: ``GET /api/history`` reads points back from session recordings.

Segments whose summary can't match (other chassis, other times) are skipped
without opening them; the rest are filtered with pyarrow compute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .points import rows_to_points
from .recording import (
    SCHEMA,
    SEGMENT_SUFFIX,
    SegmentSummary,
    epoch_ns,
    read_session,
    segment_summary,
    sessions_dir,
    table_to_rows,
)
from .validate import parse_iso

HISTORY_LIMIT = 10_000
HISTORY_MAX_LIMIT = 100_000


@dataclass(frozen=True)
class HistoryQuery:
    """``GET /api/history`` parameters; times are epoch seconds, None = open."""

    chassis: str | None = None
    from_s: float | None = None
    to_s: float | None = None
    limit: int = HISTORY_LIMIT


def parse_time(text: str) -> float:
    """ISO-8601 (naive = UTC) or epoch seconds -> epoch seconds; ValueError if neither."""
    try:
        return float(text)
    except ValueError:
        pass
    seconds = parse_iso(text.strip())
    if math.isnan(seconds):
        raise ValueError(f"not ISO-8601 or epoch seconds: {text!r}")
    return seconds


def history_query(params: Mapping[str, str]) -> HistoryQuery:
    """Read query parameters; raises ValueError with a message fit for a 400."""
    times: dict[str, float | None] = {}
    for key in ("from", "to"):
        text = params.get(key)
        try:
            times[key] = parse_time(text) if text else None
        except ValueError:
            raise ValueError(f"{key} must be ISO-8601 or epoch seconds, got {text!r}") from None
    try:
        limit = int(params.get("limit", HISTORY_LIMIT))
    except ValueError:
        raise ValueError(f"limit must be an integer, got {params.get('limit')!r}") from None
    if not 1 <= limit <= HISTORY_MAX_LIMIT:
        raise ValueError(f"limit must be in [1, {HISTORY_MAX_LIMIT}], got {limit}")
    return HistoryQuery(params.get("chassis") or None, times["from"], times["to"], limit)


def _wanted(summary: SegmentSummary, query: HistoryQuery) -> bool:
    if not summary.points or (query.chassis and query.chassis not in summary.chassis):
        return False
    if query.from_s is not None and summary.t_max < query.from_s:
        return False
    return not (query.to_s is not None and summary.t_min > query.to_s)


def _matches(query: HistoryQuery) -> pc.Expression:
    expr = pc.scalar(True)
    if query.chassis:
        expr &= pc.field("chassis") == query.chassis
    if query.from_s is not None:
        expr &= pc.field("meta_time") >= epoch_ns(np.array([query.from_s]))[0]
    if query.to_s is not None:
        expr &= pc.field("meta_time") <= epoch_ns(np.array([query.to_s]))[0]
    return expr


def read_history(data_dir: str | Path, query: HistoryQuery) -> list[dict[str, Any]]:
    """Recorded points matching ``query`` across all sessions, oldest first
    (by sample time), at most ``query.limit`` (the oldest ones: page on by
    passing the last ``meta_time`` as ``from``). Blocking disk I/O: run it in
    a thread from the event loop."""
    root = sessions_dir(data_dir)
    segments = sorted(root.glob(f"*/seg-*{SEGMENT_SUFFIX}")) if root.is_dir() else []
    matches = _matches(query)
    parts = [
        read_session(seg).filter(matches)
        for seg in segments
        if _wanted(segment_summary(seg), query)
    ]
    table = pa.concat_tables(parts) if parts else SCHEMA.empty_table()
    if not table.num_rows:
        return []
    order = pc.sort_indices(table, sort_keys=[("meta_time", "ascending")])
    rows, tables = table_to_rows(table.take(order.slice(0, query.limit)))
    return rows_to_points(rows, tables.chassis, tables.track)
