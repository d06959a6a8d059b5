"""Replay without a server: reading every input format, pacing with a fake clock,
datagram sizing, and the synthetic session generator."""

from __future__ import annotations

import gzip
import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from pitwall_rt.recording import Recorder, list_sessions, read_session
from pitwall_rt.replay import (
    UDP_MAX_BYTES,
    Points,
    Progress,
    ReplayError,
    UdpSender,
    _datagrams,
    due_offsets_s,
    load_points,
    main,
    main_generate,
    paced_slices,
    run_replay,
)
from pitwall_rt.schema import SOURCE_ID, StringTable
from pitwall_rt.validate import Tables, validate_points

T0 = 1_757_184_000.0  # 2025-09-06T18:40:00Z
NOW = 1_800_000_000.0


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "slept without need"
        self.sleeps.append(seconds)
        self.now += seconds


class FakeSender:
    """Records what was sent and when (on the fake clock)."""

    def __init__(self, clock: FakeClock, max_points: int) -> None:
        self.clock = clock
        self.max_points = max_points
        self.sent: list[tuple[float, list[dict[str, Any]]]] = []

    def send(self, points: list[dict[str, Any]]) -> None:
        self.sent.append((self.clock.now, points))

    def finish(self, timeout_s: float) -> tuple[int | None, int | None]:
        return sum(len(p) for _, p in self.sent), 0


def all_points(points: Points) -> list[dict[str, Any]]:
    return points.get(0, len(points))


# -- pacing -----------------------------------------------------------------------------


def test_due_offsets_divide_sample_spacing_by_the_rate() -> None:
    times = T0 + np.array([0.0, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(due_offsets_s(times, 1.0), [0.0, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(due_offsets_s(times, 4.0), [0.0, 0.125, 0.25, 0.75])


def test_due_offsets_shorten_gaps_longer_than_max_gap() -> None:
    times = T0 + np.array([0.0, 1.0, 3601.0, 3602.0])
    np.testing.assert_allclose(due_offsets_s(times, 2.0, max_gap_s=10.0), [0, 0.5, 5.5, 6.0])


def test_due_offsets_give_missing_times_the_previous_time() -> None:
    times = np.array([np.nan, T0, np.nan, T0 + 2.0])
    np.testing.assert_allclose(due_offsets_s(times, 1.0), [0.0, 0.0, 0.0, 2.0])
    np.testing.assert_array_equal(due_offsets_s(np.full(3, np.nan), 1.0), np.zeros(3))


def test_due_offsets_are_all_zero_at_rate_zero() -> None:
    np.testing.assert_array_equal(due_offsets_s(T0 + np.arange(5.0), 0.0), np.zeros(5))


def test_paced_slices_sleep_until_each_point_is_due() -> None:
    clock = FakeClock()
    offsets = np.array([0.0, 0.0, 0.5, 0.5, 0.5, 2.0])
    slices = list(paced_slices(offsets, 2, clock, clock.sleep))
    assert slices == [(0, 2), (2, 4), (4, 5), (5, 6)]
    assert clock.sleeps == pytest.approx([0.5, 1.5])


def test_paced_slices_never_sends_a_point_early() -> None:
    clock = FakeClock()
    rng = np.random.default_rng(3)
    offsets = np.sort(rng.uniform(0, 10, 500))
    start = clock.now
    for i, j in paced_slices(offsets, 40, clock, clock.sleep):
        assert j - i <= 40
        assert clock.now - start >= offsets[j - 1] - 1e-9
    assert clock.now - start == pytest.approx(offsets[-1])


def test_run_replay_paces_by_meta_time_at_the_rate(tmp_path: Path) -> None:
    clock = FakeClock()
    points = load_points(_json_file(tmp_path, _spaced_points(10, spacing_s=1.0)), NOW)
    sender = FakeSender(clock, max_points=40)
    summary = run_replay(points, sender, 2.0, Progress(10, None), clock=clock, sleep=clock.sleep)
    assert summary["sent"] == 10 and summary["accepted"] == 10 and summary["rejected"] == 0
    assert [t - 100.0 for t, _ in sender.sent] == pytest.approx([0.5 * k for k in range(10)])
    assert summary["seconds"] == pytest.approx(4.5)


def test_run_replay_at_rate_zero_sends_full_batches_without_sleeping(tmp_path: Path) -> None:
    clock = FakeClock()
    points = load_points(_json_file(tmp_path, _spaced_points(1000, spacing_s=1.0)), NOW)
    sender = FakeSender(clock, max_points=40)
    run_replay(points, sender, 0.0, Progress(1000, None), clock=clock, sleep=clock.sleep)
    assert [len(p) for _, p in sender.sent] == [40] * 25 and clock.sleeps == []


# -- reading each format ------------------------------------------------------------------


def _spaced_points(n: int, spacing_s: float = 0.1) -> list[dict[str, Any]]:
    return [
        {
            "meta_time": T0 + i * spacing_s,
            "chassis": f"GR86-{i % 2:03d}",
            "track": "barber",
            "lap": 1 + i // 100,
            "speed_kmh": 120.0 + i,
            "gear": 3,
        }
        for i in range(n)
    ]


def _json_file(tmp_path: Path, points: list[Any]) -> Path:
    path = tmp_path / "points.json"
    path.write_bytes(orjson.dumps(points))
    return path


def _recording(tmp_path: Path, points: list[dict[str, Any]], batches: int = 2) -> Path:
    tables = Tables(chassis=StringTable(16), track=StringTable(4, reserved=("",)))
    recorder = Recorder(tmp_path / "data", tables, segment_bytes=1)
    for part in np.array_split(np.arange(len(points)), batches):
        rows = validate_points([points[k] for k in part], tables, NOW).rows
        rows["source"] = SOURCE_ID["http"]
        recorder.append(rows)
        recorder.flush()
    recorder.close()
    return recorder.path


def test_load_points_reads_a_recording_as_the_points_that_were_sent(tmp_path: Path) -> None:
    sent = _spaced_points(50)
    path = _recording(tmp_path, sent)
    assert all_points(load_points(path, NOW)) == sent
    first_segment = sorted(path.glob("*.arrows"))[0]
    assert all_points(load_points(first_segment, NOW)) == sent[:25]


def test_load_points_orders_a_recording_by_sample_time(tmp_path: Path) -> None:
    sent = _spaced_points(20)
    path = _recording(tmp_path, sent[10:] + sent[:10])  # arrival order != sample order
    points = load_points(path, NOW)
    assert all_points(points) == sent
    assert np.all(np.diff(points.times_s) > 0)


def test_load_points_leaves_absent_fields_out(tmp_path: Path) -> None:
    sent = [{"meta_time": T0, "chassis": "A"}, {"meta_time": T0 + 1, "chassis": "B", "rpm": 5e3}]
    assert all_points(load_points(_recording(tmp_path, sent, batches=1), NOW)) == sent


def test_load_points_sends_a_json_array_as_it_is_even_invalid_points(tmp_path: Path) -> None:
    sent = [
        {"meta_time": "2025-09-06T18:40:01Z", "chassis": "A", "speed_kmh": -5},
        {"meta_time": T0, "chassis": "B"},
        "not a point",
    ]
    points = load_points(_json_file(tmp_path, sent), NOW)
    assert all_points(points) == [sent[1], sent[0], sent[2]]  # by time; no time goes last
    np.testing.assert_array_equal(points.times_s[:2], [T0, T0 + 1])


def test_load_points_anchors_demo_json_at_now(tmp_path: Path) -> None:
    doc = {
        "format": "pitwall-demo/1",
        "track": "barber",
        "fields": ["t_s", "lap", "speed_kmh"],
        "cars": [
            {"chassis": "GR86-001", "rows": [[0.0, 1, 100.0], [0.5, 1, 110.0]]},
            {"chassis": "GR86-002", "rows": [[0.25, 1, 90.0]]},
        ],
    }
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(doc))
    points = all_points(load_points(path, NOW))
    assert [(p["chassis"], p["meta_time"], p["speed_kmh"]) for p in points] == [
        ("GR86-001", NOW, 100.0),
        ("GR86-002", NOW + 0.25, 90.0),
        ("GR86-001", NOW + 0.5, 110.0),
    ]
    assert all(p["track"] == "barber" and p["lap"] == 1 for p in points)


WIDE_CSV = """meta_time,vehicle_id,track,lap,speed,nmot,aps,gear,Steering_Angle
2025-09-06T18:40:00.500Z,GR86-002,barber,3,150.5,6000,80.5,4,-10.5
2025-09-06T18:40:00.000Z,GR86-002,barber,3,149.0,5900,,4,-9.0
"""

# The same two samples in the GR Cup long format: one row per channel, keyed
# on the ECU timestamp; meta_time is the receiver's batch time.
LONG_HEADER = (
    "expire_at,lap,meta_event,meta_session,meta_source,meta_time,original_vehicle_id,"
    "outing,telemetry_name,telemetry_value,timestamp,vehicle_id,vehicle_number\n"
)
LONG_ROW = ",3,I_R06,R1,kafka,{meta},GR86-002-000,0,{name},{value},{ecu},GR86-002-000,0\n"


def _long_csv(samples: list[tuple[str, dict[str, float]]]) -> str:
    meta = "2025-09-06T18:40:00.500Z"
    return LONG_HEADER + "".join(
        LONG_ROW.format(meta=meta, name=name, value=value, ecu=ecu)
        for ecu, channels in samples
        for name, value in channels.items()
    )


def test_load_points_reads_wide_csv_with_aliases(tmp_path: Path) -> None:
    path = tmp_path / "barber_wide.csv"
    path.write_text(WIDE_CSV)
    first, second = all_points(load_points(path, NOW))
    assert first == {
        "meta_time": T0,
        "chassis": "GR86-002",
        "track": "barber",
        "lap": 3,
        "speed_kmh": 149.0,
        "rpm": 5900.0,
        "gear": 4,
        "Steering_Angle": -9.0,
    }
    assert second["meta_time"] == T0 + 0.5 and second["throttle_pct"] == 80.5


def test_load_points_reads_gzipped_csv_with_epoch_times(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv.gz"
    path.write_bytes(gzip.compress(b"meta_time,chassis,speed_kmh\n1757184000.25,7,99.5\n"))
    (point,) = all_points(load_points(path, NOW))
    assert point == {
        "meta_time": pytest.approx(T0 + 0.25, abs=1e-6),
        "chassis": "7",
        "speed_kmh": 99.5,
    }


def test_load_points_pivots_the_long_format_into_one_point_per_sample(tmp_path: Path) -> None:
    path = tmp_path / "R1_barber_telemetry.csv"
    samples = [
        ("2025-09-06T18:40:00.000Z", {"speed": 149.0, "nmot": 5900, "gear": 4}),
        ("2025-09-06T18:40:00.100Z", {"speed": 150.5, "nmot": 6000, "gear": 4}),
    ]
    path.write_text(_long_csv(samples))
    points = all_points(load_points(path, NOW))
    assert [(p["chassis"], p["speed_kmh"], p["rpm"], p["gear"]) for p in points] == [
        ("GR86-002", 149.0, 5900.0, 4),
        ("GR86-002", 150.5, 6000.0, 4),
    ]
    assert all(p["track"] == "barber" and p["lap"] == 3 for p in points)
    assert points[1]["meta_time"] - points[0]["meta_time"] == pytest.approx(0.1)


@pytest.mark.parametrize("name", ["missing.json", "notes.txt", "broken.json", "bad_demo.json"])
def test_load_points_reports_what_it_cannot_read(tmp_path: Path, name: str) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "bad_demo.json").write_text('{"format": "pitwall-demo/1", "cars": 3}')
    with pytest.raises(ReplayError, match=name):
        load_points(tmp_path / name, NOW)


# -- sending ------------------------------------------------------------------------------


def test_datagrams_stay_under_the_size_limit() -> None:
    big = [{"chassis": "X" * 64, "meta_time": T0 + i, "pad": "y" * 3000} for i in range(40)]
    datagrams = list(_datagrams(big))
    assert len(datagrams) > 1 and all(len(d) <= UDP_MAX_BYTES for d in datagrams)
    assert [p for d in datagrams for p in orjson.loads(d)] == big
    assert len(list(_datagrams(_spaced_points(40)))) == 1


def test_udp_sender_without_health_sends_every_point_blind() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5.0)
        port = receiver.getsockname()[1]
        sender = UdpSender(f"udp://127.0.0.1:{port}", "http://127.0.0.1:1")  # nothing listens
        sender.send(_spaced_points(50)[:40])
        sender.send(_spaced_points(50)[40:])
        got = [p for _ in range(2) for p in orjson.loads(receiver.recv(65536))]
        assert got == _spaced_points(50)
        assert sender.finish(timeout_s=0.1) == (None, None)


@pytest.mark.parametrize(
    "args",
    [["--to", "ftp://host:1"], ["--to", "http://"], ["--rate", "-1"], ["--to", "udp://h"]],
)
def test_replay_main_fails_with_one_line_on_bad_arguments(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _json_file(tmp_path, _spaced_points(3))
    assert main([str(path), *args, "--quiet"]) == 1
    assert "pitwall-rt replay:" in capsys.readouterr().err


# -- generate -----------------------------------------------------------------------------


def test_generate_writes_a_recording_that_replay_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    argv = ["--out", str(data), "--cars", "2", "--laps", "1", "--start", "2025-09-06T18:40:00Z"]
    assert main_generate(argv) == 0
    session = Path(capsys.readouterr().out.strip())
    (listed,) = list_sessions(data)
    assert listed["id"] == session.name and listed["start"] == "2025-09-06T18:40:00.000Z"
    assert len(listed["chassis"]) == 2
    table = read_session(session)
    assert table.num_rows == listed["points"] > 500
    tables = Tables(chassis=StringTable(8), track=StringTable(2, reserved=("",)))
    assert validate_points(all_points(load_points(session, NOW)), tables, NOW).rejected == 0
    assert set(table.column("source").to_pylist()) == {"demo"}
    assert len(load_points(session, NOW)) == table.num_rows


def test_generate_writes_demo_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.json"
    assert main_generate(["--out", str(out), "--cars", "2", "--laps", "1", "--hz", "2"]) == 0
    doc = json.loads(out.read_text())
    assert doc["format"] == "pitwall-demo/1" and len(doc["cars"]) == 2
    assert len(load_points(out, NOW)) == sum(len(c["rows"]) for c in doc["cars"])
