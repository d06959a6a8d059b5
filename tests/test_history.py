"""GET /api/history's reader: queries over session recordings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pitwall_rt.history import HistoryQuery, history_query, read_history

from .test_recording import T0, _record


def test_read_history_filters_by_chassis_and_time_across_sessions(tmp_path: Path) -> None:
    _record(tmp_path, "20250906T184000Z-aaaaaa", 30)
    _record(tmp_path, "20250906T184100Z-bbbbbb", 30, start=30)
    points = read_history(tmp_path, HistoryQuery(chassis="GR86-001"))
    assert len(points) == 20 and {p["chassis"] for p in points} == {"GR86-001"}
    assert [p["meta_time"] for p in points] == sorted(p["meta_time"] for p in points)
    window = HistoryQuery(from_s=T0 + 10 * 0.0125, to_s=T0 + 49 * 0.0125)
    assert len(read_history(tmp_path, window)) == 40
    assert len(read_history(tmp_path, HistoryQuery(limit=7))) == 7
    assert read_history(tmp_path, HistoryQuery(chassis="nobody")) == []
    assert read_history(tmp_path / "missing", HistoryQuery()) == []


def test_history_query_reads_iso_and_epoch_times() -> None:
    query = history_query({"chassis": "GR86-001", "from": "2025-09-06T18:40:00Z", "to": "1e10"})
    assert query == HistoryQuery("GR86-001", T0, 1e10)
    assert history_query({}) == HistoryQuery()
    assert history_query({"from": "2025-09-06T18:40:00"}).from_s == T0  # naive is UTC


@pytest.mark.parametrize(
    ("params", "message"),
    [({"from": "yesterday"}, "from must be"), ({"limit": "x"}, "limit"), ({"limit": "0"}, "limit")],
)
def test_history_query_rejects_bad_parameters(params: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        history_query(params)
