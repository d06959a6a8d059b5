"""pitwall_rt.csvfmt.wide and .reader: the wide format, and what every CSV
goes through (format detection, gzip, chunks, line numbers for bad rows)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from pitwall_rt.csvfmt.reader import CsvReader, detect_format, parse_header, track_from_key
from pitwall_rt.schema import StringTable
from pitwall_rt.validate import Tables, rows_from_columns

from .test_csv_long import csv_bytes, long_table, read_all, synth, wide_table

HEADER = "chassis,meta_time,speed_kmh,lap,lapdist_m\n"
NOW = 1_757_184_000.0


def tables() -> Tables:
    return Tables(chassis=StringTable(64), track=StringTable(16, reserved=("",)))


def test_wide_and_long_files_of_the_same_samples_give_identical_points() -> None:
    samples = synth(500, cars=3)
    _, wide = read_all(csv_bytes(wide_table(samples)), track="barber", chunk_bytes=30_000)
    _, long = read_all(csv_bytes(long_table(samples)), track="barber", chunk_bytes=30_000)
    assert len(wide) == len(long) == 1500
    wide_order = np.lexsort((wide.columns["meta_time"], wide.chassis.astype(str)))
    long_order = np.lexsort((long.columns["meta_time"], long.chassis.astype(str)))
    assert sorted(wide.columns) == sorted(long.columns)
    for name, values in wide.columns.items():
        np.testing.assert_array_equal(values[wide_order], long.columns[name][long_order], name)
    assert list(wide.chassis[wide_order]) == list(long.chassis[long_order])
    stored = [
        rows_from_columns(
            {k: v[order] for k, v in batch.columns.items()},
            batch.chassis[order],
            "barber",
            tables(),
            NOW,
        )
        for batch, order in ((wide, wide_order), (long, long_order))
    ]
    assert stored[0].rejected == stored[1].rejected == 0
    for name in stored[0].rows.dtype.names or ():
        if name != "source":  # set when stored
            np.testing.assert_array_equal(stored[0].rows[name], stored[1].rows[name], name)


def test_wide_reads_aliases_and_every_time_form() -> None:
    data = (
        b"vehicle_id,meta_time,speed,nmot,aps,gear,notes\n"
        b"car1,2025-09-06T18:40:41.5Z,100.5,6000,55.5,3,hello\n"
        b"car1,2025-09-06 18:40:42.5,101,6100,56,3,\n"
        b"car2,1757184043.25,50,3000,0,2,x\n"
        b"car2,1757184044250,51,3100,1,2,x\n"
        b"car2,,52,3200,2,2,x\n"
    )
    reader, points = read_all(data)
    assert reader.format == "wide" and reader.issues.bad_rows == 0
    assert points.chassis.tolist() == ["car1", "car1", "car2", "car2", "car2"]
    t = points.columns["meta_time"]
    assert t[:4].tolist() == [1757184041.5, 1757184042.5, 1757184043.25, 1757184044.25]
    assert np.isnan(t[4])  # empty: the server's time is used; kept after the timed rows
    assert points.columns["speed_kmh"].tolist() == [100.5, 101, 50, 51, 52]
    assert points.columns["rpm"].tolist() == [6000, 6100, 3000, 3100, 3200]
    assert points.columns["throttle_pct"].tolist() == [55.5, 56, 0, 1, 2]


def test_wide_canonical_column_wins_over_its_alias() -> None:
    _, points = read_all(b"chassis,speed,speed_kmh\nc,1,2\n")
    assert points.columns["speed_kmh"].tolist() == [2.0]


def test_wide_track_column_splits_batches_by_track() -> None:
    data = b"chassis,track,speed_kmh\na,barber,1\nb,sebring,2\nc,,3\nd,barber,4\n"
    reader = CsvReader(track="vir")
    batches = reader.feed(data) + reader.close()
    by_track = {b.track: b.chassis.tolist() for b in batches}
    assert by_track == {"barber": ["a", "d"], "sebring": ["b"], "vir": ["c"]}


def test_wide_rows_are_ordered_per_car_by_time_and_laps_recovered() -> None:
    data = (
        HEADER + "a,100.2,10,1,3600\na,100.1,10,1,3590\na,100.3,10,32768,5\na,100.4,10,2,15\n"
    ).encode()
    reader, points = read_all(data)
    assert points.columns["meta_time"].tolist() == [100.1, 100.2, 100.3, 100.4]
    assert points.columns["lap"].tolist() == [1, 1, 2, 2]
    assert reader.repairs["time_backwards"] == 1
    assert reader.repairs["lap_sentinel"] == reader.repairs["lap_recovered"] == 1


# -- the reader, whatever the format -------------------------------------------


def test_reader_detects_the_format_from_the_header() -> None:
    long = parse_header(
        b"\xef\xbb\xbfexpire_at,lap,telemetry_name,telemetry_value,timestamp,vehicle_id\r"
    )
    assert detect_format(long) == "long"
    assert detect_format(parse_header(b'"chassis", "speed_kmh"')) == "wide"
    assert detect_format(parse_header(b"vehicle_id,meta_time")) == "wide"
    assert detect_format(parse_header(b"NUMBER; DRIVER_NUMBER; LAP_NUMBER")) is None
    assert detect_format(parse_header(b"chassis,colour")) is None


def test_reader_reports_bad_rows_with_their_line_and_keeps_the_good_ones() -> None:
    data = (
        HEADER
        + "a,100.0,10,1,5\n"  # 2
        + "a,100.1,11\n"  # 3: too few fields
        + "\n"  # 4: blank, skipped quietly
        + "a,100.2,fast,1,5\n"  # 5: not a number
        + "a,100.3,13,1,5\n"  # 6
        + ",100.4,14,1,5\n"  # 7: no chassis
        + "a,yesterday,15,1,5\n"  # 8: not a time
        + "a,100.6,16,1,5"  # 9, no final newline
    ).encode()
    reader, points = read_all(data)
    assert points.columns["speed_kmh"].tolist() == [10, 13, 16]
    assert points.lines.tolist() == [2, 6, 9]
    assert [(i.line, i.message) for i in reader.issues.first] == [
        (3, "3 fields, expected 5"),
        (5, "speed_kmh is not a number: 'fast'"),
        (7, "chassis is empty"),
        (8, "meta_time is not a time"),
    ]
    assert reader.issues.bad_rows == 4
    assert reader.lines == 9 and not reader.failed


def test_reader_line_numbers_stay_exact_across_chunks() -> None:
    rows = [f"a,{100 + i / 10:.1f},{i % 300},1,5" for i in range(3000)]
    rows[1234] = "a,1,2"  # line 1236
    rows[2500] = "a,100,x,1,5"  # line 2502
    data = (HEADER + "\n".join(rows) + "\n").encode()
    reader, points = read_all(data, piece=777, chunk_bytes=4096)
    assert [i.line for i in reader.issues.first] == [1236, 2502]
    assert len(points) == 2998 and reader.lines == 3001
    assert points.lines[0] == 2 and points.lines[-1] == 3001


def test_reader_reads_gzip_in_any_pieces_and_every_member() -> None:
    text = csv_bytes(wide_table(synth(300, cars=2)))
    half = text.index(b"\n", len(text) // 2) + 1
    data = gzip.compress(text[:half]) + gzip.compress(text[half:])
    _, plain = read_all(text, chunk_bytes=8192)
    reader, zipped = read_all(data, piece=100, chunk_bytes=8192)
    assert reader.issues.bad_rows == 0 and not reader.issues.first
    np.testing.assert_array_equal(plain.columns["meta_time"], zipped.columns["meta_time"])
    assert len(zipped) == 600


def test_reader_reports_a_truncated_gzip_and_keeps_what_it_read() -> None:
    rows = "".join(f"a,{i},{i * 7 % 300},1,{i * 13 % 3700}\n" for i in range(5000))
    data = gzip.compress((HEADER + rows).encode())
    reader, points = read_all(data[: len(data) // 2])
    assert 1000 < len(points) < 5000
    assert "gzip data ends early" in reader.issues.first[0].message


def test_reader_stops_at_a_header_it_does_not_know() -> None:
    reader, points = read_all(b"NUMBER;LAP;TIME\n1;2;3\n")
    assert len(points) == 0 and reader.failed
    assert reader.issues.first[0].line == 1
    assert "not a telemetry CSV header" in reader.issues.first[0].message


def test_reader_skips_a_line_longer_than_a_chunk() -> None:
    data = (HEADER + "a,1,10,1,5\n" + "b" * 10_000 + "\n" + "a,2,11,1,5\n").encode()
    reader, points = read_all(data, piece=500, chunk_bytes=1024)
    assert points.columns["speed_kmh"].tolist() == [10, 11]
    assert reader.issues.first[0].line == 3
    assert points.lines.tolist() == [2, 4]


@pytest.mark.parametrize(
    ("key", "track"),
    [
        ("2025/barber/R1_telemetry.csv", "barber"),
        ("R1_barber_telemetry_data.csv.gz", "barber"),
        ("road-america/race1.csv", "road_america"),
        ("Road_America_R1.csv", "road_america"),
        ("virtual/uploads/x.csv", None),
        ("COTA/Race 1/lap.csv", "cota"),
        ("circuit-of-the-americas/x.csv", "cota"),
    ],
)
def test_reader_track_from_key_matches_whole_words(key: str, track: str | None) -> None:
    assert track_from_key(key) == track
