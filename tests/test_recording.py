"""Session recording: append, flush, rotate, read back; torn tails; listing; history."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest

from pitwall_rt.ingest.pipeline import Ingestor
from pitwall_rt.points import rows_to_points
from pitwall_rt.recording import (
    SCHEMA,
    BatchBuilder,
    Recorder,
    iter_batches,
    list_sessions,
    read_session,
    segment_paths,
    table_to_rows,
)
from pitwall_rt.ring import RingBuffer
from pitwall_rt.schema import NUMERIC_FIELDS, SOURCE_ID, StringTable
from pitwall_rt.stats import IngestStats
from pitwall_rt.validate import Tables, validate_points

T0 = 1_757_184_000.0  # 2025-09-06T18:40:00Z


def make_tables() -> Tables:
    return Tables(chassis=StringTable(64), track=StringTable(16, reserved=("",)))


def make_points(n: int, start: int = 0, cars: int = 3) -> list[dict[str, Any]]:
    """Varied points: some without track, some fields missing, ints and floats."""
    points = []
    for i in range(start, start + n):
        p: dict[str, Any] = {
            "meta_time": T0 + i * 0.0125,
            "chassis": f"GR86-{i % cars:03d}",
            "lap": 1 + i // 40,
            "lapdist_m": (i * 7.5) % 3700,
            "speed_kmh": 100.0 + (i % 97) * 1.01,
            "accx_can": -0.5 + (i % 11) * 0.1,
            "gear": 1 + i % 6,
        }
        if i % 3:
            p["track"] = "barber"
        if i % 5:
            p["rpm"] = 4000.0 + i % 20_000
        points.append(p)
    return points


def make_rows(tables: Tables, n: int, start: int = 0, source: str = "udp") -> np.ndarray:
    checked = validate_points(make_points(n, start), tables, now_s=T0 + 3600)
    assert checked.rejected == 0, checked.first_errors
    checked.rows["source"] = SOURCE_ID[source]
    return checked.rows


def assert_same_rows(got: np.ndarray, got_tables: Tables, want: np.ndarray, tables: Tables) -> None:
    assert len(got) == len(want)
    np.testing.assert_array_equal(got["t"], want["t"])
    np.testing.assert_array_equal(got["recv_t"], want["recv_t"])
    np.testing.assert_array_equal(got["source"], want["source"])
    for name in NUMERIC_FIELDS:
        np.testing.assert_array_equal(got[name], want[name])  # NaN == NaN here
    names = got_tables.chassis.names(got["chassis"]).tolist()
    assert names == tables.chassis.names(want["chassis"]).tolist()
    tracks = got_tables.track.names(got["track"]).tolist()
    assert tracks == tables.track.names(want["track"]).tolist()


def test_recorder_round_trip_gives_identical_values_after_several_flushes(tmp_path: Path) -> None:
    tables = make_tables()
    recorder = Recorder(tmp_path, tables)
    batches = [make_rows(tables, 50, 0), make_rows(tables, 1, 50), make_rows(tables, 120, 51)]
    for rows in batches:
        recorder.append(rows)
        recorder.flush()
    recorder.close()
    table = read_session(recorder.path)
    assert table.schema.equals(SCHEMA)
    got, got_tables = table_to_rows(table)
    assert_same_rows(got, got_tables, np.concatenate(batches), tables)


def test_recorder_stores_names_as_strings_and_absent_values_as_null(tmp_path: Path) -> None:
    tables = make_tables()
    recorder = Recorder(tmp_path, tables)
    recorder.append(make_rows(tables, 6, source="http"))
    recorder.close()
    table = read_session(recorder.path).drop_columns(["meta_time", "recv_t"])  # ns: not datetime
    first, second = table.slice(0, 2).to_pylist()
    assert first["chassis"] == "GR86-000" and first["track"] is None and first["rpm"] is None
    assert second["track"] == "barber" and second["rpm"] == 4001.0
    assert first["lap"] == 1 and first["gear"] == 1 and first["source"] == "http"
    assert first["throttle_pct"] is None


def test_recorder_output_formats_like_the_ring_when_read_back(tmp_path: Path) -> None:
    tables = make_tables()
    rows = make_rows(tables, 30)
    recorder = Recorder(tmp_path, tables)
    recorder.append(rows)
    recorder.close()
    got, got_tables = table_to_rows(read_session(recorder.path))
    want = orjson.dumps(rows_to_points(rows, tables.chassis, tables.track))  # NaN -> null
    assert orjson.dumps(rows_to_points(got, got_tables.chassis, got_tables.track)) == want


def test_recorder_gives_back_the_same_float_times_to_the_last_bit(tmp_path: Path) -> None:
    tables = make_tables()
    rows = make_rows(tables, 200)
    rng = np.random.default_rng(5)
    rows["t"] = rng.uniform(1.0e9, 4.0e9, len(rows))
    rows["recv_t"] = rows["t"] + rng.uniform(0.0, 1.0, len(rows))
    recorder = Recorder(tmp_path, tables)
    recorder.append(rows)
    recorder.close()
    got, _ = table_to_rows(read_session(recorder.path))
    np.testing.assert_array_equal(got["t"], rows["t"])
    np.testing.assert_array_equal(got["recv_t"], rows["recv_t"])


def test_recorder_keeps_a_copy_when_the_caller_reuses_its_array(tmp_path: Path) -> None:
    tables = make_tables()
    rows = make_rows(tables, 10)
    want = rows.copy()
    recorder = Recorder(tmp_path, tables)
    recorder.append(rows)
    rows["speed_kmh"] = 0.0
    recorder.close()
    got, _ = table_to_rows(read_session(recorder.path))
    np.testing.assert_array_equal(got["speed_kmh"], want["speed_kmh"])


def test_recorder_writes_nothing_before_the_first_point(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, make_tables())
    assert recorder.flush() == 0
    recorder.close()
    assert not recorder.path.exists()
    assert list_sessions(tmp_path) == []


def test_recorder_buffers_until_flush(tmp_path: Path) -> None:
    tables = make_tables()
    recorder = Recorder(tmp_path, tables)
    recorder.append(make_rows(tables, 10))
    assert recorder.buffered == 10
    assert read_session(recorder.path).num_rows == 0
    assert recorder.flush() == 10
    assert recorder.buffered == 0
    assert read_session(recorder.path).num_rows == 10  # readable while still open


def test_recorder_flushes_on_the_spot_when_the_buffer_passes_its_limit(tmp_path: Path) -> None:
    tables = make_tables()
    recorder = Recorder(tmp_path, tables, max_buffer_points=25)
    recorder.append(make_rows(tables, 20))
    assert recorder.stats.flushes == 0
    recorder.append(make_rows(tables, 10, 20))
    assert recorder.stats.flushes == 1 and recorder.buffered == 0
    assert read_session(recorder.path).num_rows == 30


def test_recorder_rotates_segments_by_size(tmp_path: Path) -> None:
    tables = make_tables()
    recorder = Recorder(tmp_path, tables, segment_bytes=1)  # every flush closes its segment
    for k in range(3):
        recorder.append(make_rows(tables, 10, k * 10))
        recorder.flush()
    recorder.close()
    segments = segment_paths(recorder.path)
    assert [s.name for s in segments] == [f"seg-00000{k}.arrows" for k in (1, 2, 3)]
    assert all(s.with_suffix(".json").exists() for s in segments)
    assert [sum(b.num_rows for b in iter_batches(s)) for s in segments] == [10, 10, 10]
    assert read_session(recorder.path).num_rows == 30


def test_recorder_rotates_segments_by_age(tmp_path: Path) -> None:
    tables = make_tables()
    now = [0.0]
    recorder = Recorder(tmp_path, tables, segment_s=60.0, monotonic=lambda: now[0])
    recorder.append(make_rows(tables, 5))
    recorder.flush()
    now[0] = 59.0
    recorder.append(make_rows(tables, 5, 5))
    recorder.flush()
    assert len(segment_paths(recorder.path)) == 1
    now[0] = 61.0
    recorder.flush()  # nothing buffered, but the segment is due to close
    recorder.append(make_rows(tables, 5, 10))
    recorder.close()
    assert len(segment_paths(recorder.path)) == 2
    assert recorder.stats.segments == 2 and recorder.stats.points_written == 15


def test_recorder_counts_lost_points_when_the_disk_fails(tmp_path: Path) -> None:
    tables = make_tables()
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data dir should be")
    recorder = Recorder(blocker, tables)
    recorder.append(make_rows(tables, 7))
    assert recorder.flush() == 0
    recorder.close()
    assert recorder.stats.write_errors >= 1 and recorder.stats.points_lost == 7
    assert recorder.health()["points_lost"] == 7


def test_recorder_records_every_batch_an_ingestor_accepts(tmp_path: Path) -> None:
    tables = make_tables()
    ingestor = Ingestor(RingBuffer(1000), tables, IngestStats(), clock=lambda: T0)
    recorder = Recorder(tmp_path, tables)
    ingestor.listeners.append(recorder.append)
    good = [json.dumps(p).encode() for p in make_points(40)]
    result = ingestor.ingest_payloads([*good, b'{"speed_kmh": 5}'], "udp")
    assert (result.accepted, result.rejected) == (40, 1)
    recorder.close()
    got, got_tables = table_to_rows(read_session(recorder.path))
    assert_same_rows(got, got_tables, ingestor.ring.newest(40), tables)


def test_recorder_run_flushes_every_interval(tmp_path: Path) -> None:
    tables = make_tables()
    recorder = Recorder(tmp_path, tables)

    async def scenario() -> int:
        task = asyncio.create_task(recorder.run(interval_s=0.01))
        recorder.append(make_rows(tables, 5))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if recorder.stats.flushes:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return recorder.stats.points_written

    assert asyncio.run(scenario()) == 5


def _write_open_segment(tmp_path: Path, batches: list[int]) -> tuple[Path, list[int]]:
    """A segment left open (no end-of-stream marker), as after kill -9, and
    the file size after each batch."""
    tables = make_tables()
    recorder = Recorder(tmp_path, tables, compression=None)
    ends, start = [], 0
    for n in batches:
        recorder.append(make_rows(tables, n, start))
        recorder.flush()
        start += n
        ends.append(segment_paths(recorder.path)[0].stat().st_size)
    return segment_paths(recorder.path)[0], ends


def test_read_session_keeps_every_complete_batch_when_cut_at_any_byte(tmp_path: Path) -> None:
    segment, ends = _write_open_segment(tmp_path, [3, 4, 5])
    data = segment.read_bytes()
    torn = tmp_path / "torn.arrows"
    near_ends = {end + d for end in ends for d in range(-16, 17)}
    cuts = sorted({*range(0, len(data), 5), *near_ends, len(data)} & set(range(len(data) + 1)))
    for cut in cuts:
        torn.write_bytes(data[:cut])
        complete = sum(1 for end in ends if end <= cut)
        assert read_session(torn).num_rows == [0, 3, 7, 12][complete], cut


def test_read_session_skips_a_torn_tail_and_garbage_after_it(tmp_path: Path) -> None:
    segment, ends = _write_open_segment(tmp_path, [6, 6])
    data = segment.read_bytes()
    segment.write_bytes(data[: ends[0] + 10] + b"\x00garbage")
    table = read_session(segment.parent)
    assert table.num_rows == 6
    assert table.column("chassis").to_pylist()[:3] == ["GR86-000", "GR86-001", "GR86-002"]


def test_read_session_of_an_empty_segment_is_an_empty_table(tmp_path: Path) -> None:
    (tmp_path / "seg-000001.arrows").write_bytes(b"")
    table = read_session(tmp_path)
    assert table.num_rows == 0 and table.schema.equals(SCHEMA)


def _record(data_dir: Path, session_id: str, n: int, start: int = 0, **kw: Any) -> Recorder:
    tables = make_tables()
    recorder = Recorder(data_dir, tables, session_id=session_id, **kw)
    recorder.append(make_rows(tables, n, start))
    recorder.close()
    return recorder


def test_list_sessions_reports_each_session_oldest_first(tmp_path: Path) -> None:
    _record(tmp_path, "20250906T184000Z-aaaaaa", 30)
    _record(tmp_path, "20250907T090000Z-bbbbbb", 12, start=100)
    first, second = list_sessions(tmp_path)
    assert first["id"] == "20250906T184000Z-aaaaaa"
    assert first["points"] == 30 and first["segments"] == 1
    assert first["start"] == "2025-09-06T18:40:00.000Z"
    assert first["end"] == "2025-09-06T18:40:00.362Z"  # 29 * 12.5 ms, to the ms
    assert first["chassis"] == ["GR86-000", "GR86-001", "GR86-002"]
    assert first["bytes"] == sum(p.stat().st_size for p in segment_paths(first_path(tmp_path)))
    assert second["points"] == 12 and second["start"] == "2025-09-06T18:40:01.250Z"


def first_path(data_dir: Path) -> Path:
    return sorted((data_dir / "sessions").iterdir())[0]


def test_list_sessions_reads_segments_without_a_summary(tmp_path: Path) -> None:
    recorder = _record(tmp_path, "20250906T184000Z-aaaaaa", 30, segment_bytes=1)
    with_sidecars = list_sessions(tmp_path)
    for sidecar in recorder.path.glob("*.json"):
        sidecar.unlink()
    assert list_sessions(tmp_path) == with_sidecars


def test_recording_schema_carries_its_format_tag() -> None:
    assert SCHEMA.metadata[b"format"] == b"pitwall-recording/1"
    assert SCHEMA.field("meta_time").type == pa.timestamp("ns", tz="UTC")


def test_recorder_past_its_limit_wakes_the_writer_task_instead_of_writing_in_the_loop(
    tmp_path: Path,
) -> None:
    async def scenario() -> tuple[int, float, int]:
        tables = make_tables()
        recorder = Recorder(tmp_path, tables, max_buffer_points=25)
        task = asyncio.create_task(recorder.run(interval_s=60.0))
        await asyncio.sleep(0)
        start = time.monotonic()
        recorder.append(make_rows(tables, 30))
        inline = recorder.stats.flushes  # 0: append only woke the task
        while recorder.stats.flushes == 0:
            await asyncio.sleep(0.005)
        waited = time.monotonic() - start
        # Four times the limit at once means the writer can't keep up: write now.
        recorder.append(make_rows(tables, 100, 30))
        on_the_spot = recorder.stats.flushes
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return inline, waited, on_the_spot

    inline, waited, on_the_spot = asyncio.run(scenario())
    assert inline == 0 and waited < 30.0  # long before the 60 s interval
    assert on_the_spot == 2


def test_recorder_writes_a_big_flush_as_several_record_batches_that_read_back_whole(
    tmp_path: Path,
) -> None:
    from pitwall_rt.recording import BATCH_ROWS

    tables = make_tables()
    recorder = Recorder(tmp_path, tables, max_buffer_points=4 * BATCH_ROWS)
    rows = make_rows(tables, 2 * BATCH_ROWS + 5)
    recorder.append(rows)
    assert recorder.flush() == len(rows)
    recorder.close()
    segment = segment_paths(recorder.path)[0]
    assert [b.num_rows for b in iter_batches(segment)] == [BATCH_ROWS, BATCH_ROWS, 5]
    back, _ = table_to_rows(read_session(recorder.path))
    assert back["lapdist_m"].tolist() == rows["lapdist_m"].tolist()


def test_built_columns_are_what_arrow_makes_of_each_field(tmp_path: Path) -> None:
    """BatchBuilder wraps the numeric fields itself (one copy, one bitmap
    pass); each column must equal ``pa.array`` of the field with NaN as
    null, cast to the schema's type: gaps, all-null and no-null columns,
    integer fields with nulls, and no rows at all."""
    tables = make_tables()
    rows = make_rows(tables, 3000)
    rows["lap"][::7] = np.nan
    rows["gear"][5] = np.nan
    rows["speed_kmh"][::3] = np.nan
    rows["pbrake_r"] = np.nan
    rows["rpm"][-1] = -0.0
    builder = BatchBuilder(tables)
    for part in (rows, rows[1::2], rows[:0]):
        batch = builder.build(part)
        batch.validate(full=True)
        for name in NUMERIC_FIELDS:
            want = pa.array(part[name], from_pandas=True).cast(batch.schema.field(name).type)
            got = batch.column(name)
            assert got.equals(want), name
            assert got.null_count == want.null_count, name
    assert np.signbit(builder.build(rows).column("rpm")[-1].as_py())  # -0.0 kept
