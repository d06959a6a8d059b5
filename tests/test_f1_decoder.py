"""pitwall_rt.f1.decoder: packets built from the published layout, real captures, bad input.

Synthetic packets are packed here with `struct` straight from the spec's
field lists, independently of the numpy dtypes under test.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pitwall_rt.f1 import F1Batch, F1Decoder, looks_like_f1
from pitwall_rt.f1.decoder import MAX_SESSIONS

DATA = Path(__file__).parent / "data" / "f1"
CLIENT = DATA / "f1-telemetry-client"
PNG = DATA / "pits-n-giggles"
UID = 1234567890123456789  # % 100000 == 56789
NOW = 1_700_000_000.25

# struct formats from the spec (little-endian, packed)
HEADER = "<HBBBBBQfIIBB"  # PacketHeader, 29 B
TELEMETRY_CAR = "<HfffBbHBBH4H4B4BH4f4B"  # CarTelemetryData, 60 B
MOTION_CAR = "<6f6h6f"  # CarMotionData, 60 B
LAP_CAR = {  # LapData: F1 23 = 50 B, F1 24/25 = 57 B
    2023: "<IIHBHBHHfff" + "B" * 15 + "HHB",
    2024: "<IIHBHBHBHBfff" + "B" * 15 + "HHBfB",
    2025: "<IIHBHBHBHBfff" + "B" * 15 + "HHBfB",
}
SESSION_SIZE = {2023: 644, 2024: 753, 2025: 753}


def header(fmt: int, packet_id: int, uid: int = UID, frame: int = 100) -> bytes:
    return struct.pack(HEADER, fmt, fmt % 100, 1, 2, 1, packet_id, uid, 12.5, frame, frame, 0, 255)


def telemetry_car(
    speed: int = 0,
    throttle: float = 0.0,
    steer: float = 0.0,
    brake: float = 0.0,
    gear: int = 0,
    rpm: int = 0,
    surface: tuple[int, ...] = (0, 0, 0, 0),
) -> bytes:
    brakes = (400, 410, 420, 430)
    return struct.pack(
        TELEMETRY_CAR, speed, throttle, steer, brake, 0, gear, rpm, 1, 50, 7,
        *brakes, *surface, 90, 91, 92, 93, 110, 21.5, 21.5, 24.5, 24.5, 0, 0, 0, 0,
    )  # fmt: skip


def motion_car(
    x: float = 0.0, y: float = 0.0, z: float = 0.0, g_lat: float = 0.0, g_lon: float = 0.0
) -> bytes:
    return struct.pack(
        MOTION_CAR, x, y, z, 1, 2, 3, 0, 0, 32767, 32767, 0, 0, g_lat, g_lon, 1, 0, 0, 0
    )


def lap_car(
    fmt: int,
    lap: int = 0,
    dist: float = 0.0,
    last_ms: int = 0,
    cur_ms: int = 0,
    pos: int = 0,
    sector: int = 0,
    pit: int = 0,
    result: int = 0,
) -> bytes:
    # F1 23: deltas are uint16 ms; F1 24+: uint16 ms part + uint8 minutes part each
    deltas = (5, 6) if fmt == 2023 else (5, 0, 6, 0)
    # pitLaneTimerActive, pitLaneTimeInLaneInMS, pitStopTimerInMS, pitStopShouldServePen
    tail = (0, 0, 0, 0) if fmt == 2023 else (0, 0, 0, 0, 301.5, 2)  # + speed trap
    return struct.pack(
        LAP_CAR[fmt], last_ms, cur_ms, 1000, 0, 2000, 0, *deltas, dist, dist + 5000.0, 0.0,
        pos, lap, pit, 0, sector, 0, 0, 0, 0, 0, 0, pos, 4, result, *tail,
    )  # fmt: skip


def cars_packet(head: bytes, cars: dict[int, bytes], size: int, trailer: bytes) -> bytes:
    slots = b"".join(cars.get(i, b"\0" * size) for i in range(22))
    return head + slots + trailer


def telemetry_packet(fmt: int, cars: dict[int, bytes], uid: int = UID, frame: int = 100) -> bytes:
    return cars_packet(header(fmt, 6, uid, frame), cars, 60, bytes([255, 255, 0]))


def motion_packet(fmt: int, cars: dict[int, bytes], uid: int = UID, frame: int = 100) -> bytes:
    return cars_packet(header(fmt, 0, uid, frame), cars, 60, b"")


def lap_packet(fmt: int, cars: dict[int, bytes], uid: int = UID, frame: int = 100) -> bytes:
    return cars_packet(header(fmt, 2, uid, frame), cars, struct.calcsize(LAP_CAR[fmt]), b"\xff\xff")


def session_packet(fmt: int, track_id: int, uid: int = UID, frame: int = 100) -> bytes:
    body = header(fmt, 1, uid, frame) + struct.pack("<BbbBHBb", 0, 30, 22, 5, 4323, 10, track_id)
    return body.ljust(SESSION_SIZE[fmt], b"\0")


def all_cars_telemetry(fmt: int, uid: int, frame: int = 100) -> bytes:
    """A telemetry packet where every slot is in use, to read back merged state."""
    return telemetry_packet(fmt, {i: telemetry_car(rpm=4000 + i) for i in range(22)}, uid, frame)


def test_f1_decoder_test_builders_pack_published_sizes_when_empty() -> None:
    assert struct.calcsize(HEADER) == 29
    assert struct.calcsize(TELEMETRY_CAR) == struct.calcsize(MOTION_CAR) == 60
    assert [struct.calcsize(LAP_CAR[f]) for f in (2023, 2024)] == [50, 57]
    assert len(telemetry_packet(2024, {})) == 1352
    assert len(motion_packet(2024, {})) == 1349
    assert [len(lap_packet(f, {})) for f in (2023, 2024)] == [1131, 1285]


# (a) packets built byte by byte ------------------------------------------------

# car index -> (telemetry, motion, lap) kwargs; every value is exact in float32
THREE: dict[int, tuple[dict, dict, dict]] = {
    0: (
        dict(speed=301, throttle=1.0, steer=-0.5, gear=8, rpm=11800, surface=(90, 91, 92, 93)),
        dict(x=-100.5, y=12.25, z=400.0, g_lat=1.5, g_lon=0.25),
        dict(lap=3, dist=1200.5, last_ms=90500, cur_ms=30250, pos=1, sector=1, result=2),
    ),
    5: (
        dict(speed=88, steer=0.25, brake=0.75, gear=2, rpm=6500, surface=(70, 71, 72, 73)),
        dict(x=5.0, y=-1.5, z=-20.75, g_lat=-2.25, g_lon=-3.5),
        dict(lap=3, dist=-20.0, cur_ms=1000, pos=2, sector=0, pit=1, result=2),
    ),
    21: (
        dict(speed=150, throttle=0.5, steer=0.75, brake=0.125, gear=-1, rpm=9000,
             surface=(60, 61, 62, 63)),
        dict(x=0.5, y=0.0, z=1.0, g_lat=0.5, g_lon=1.0),
        dict(lap=1, dist=4000.25, last_ms=61250, cur_ms=70000, pos=3, sector=2, result=3),
    ),
}  # fmt: skip


def _feed_three(fmt: int) -> tuple[F1Decoder, F1Batch | None]:
    dec = F1Decoder()
    dec.feed(session_packet(fmt, 10), NOW)
    dec.feed(motion_packet(fmt, {i: motion_car(**m) for i, (_, m, _) in THREE.items()}), NOW)
    dec.feed(lap_packet(fmt, {i: lap_car(fmt, **lp) for i, (_, _, lp) in THREE.items()}), NOW)
    batch = dec.feed(
        telemetry_packet(fmt, {i: telemetry_car(**t) for i, (t, _, _) in THREE.items()}), NOW
    )
    return dec, batch


@pytest.mark.parametrize("fmt", [2023, 2024, 2025])
def test_f1_decoder_returns_exact_values_for_every_car_when_packets_built_from_spec(
    fmt: int,
) -> None:
    _, batch = _feed_three(fmt)
    assert batch is not None
    assert batch.car_index.tolist() == [0, 5, 21]
    assert batch.chassis.tolist() == ["F1-56789-00", "F1-56789-05", "F1-56789-21"]
    assert batch.track == "spa"
    c = batch.columns
    assert all(v.dtype == np.float64 and v.shape == (3,) for v in c.values())
    assert c["meta_time"].tolist() == [NOW] * 3
    assert c["speed_kmh"].tolist() == [301, 88, 150]
    assert c["throttle_pct"].tolist() == [100, 0, 50]
    assert c["brake_pct"].tolist() == [0, 75, 12.5]
    assert c["steer_pct"].tolist() == [-50, 25, 75]
    assert c["gear"].tolist() == [8, 2, -1]
    assert c["rpm"].tolist() == [11800, 6500, 9000]
    assert c["tyre_surface_temp_rl_c"].tolist() == [90, 70, 60]
    assert c["tyre_surface_temp_fr_c"].tolist() == [93, 73, 63]
    assert c["accx_can"].tolist() == [0.25, -3.5, 1.0]
    assert c["accy_can"].tolist() == [1.5, -2.25, 0.5]
    assert c["world_x_m"].tolist() == [-100.5, 5.0, 0.5]
    assert c["world_z_m"].tolist() == [400.0, -20.75, 1.0]
    assert c["lap"].tolist() == [3, 3, 1]
    assert c["lapdist_m"][[0, 2]].tolist() == [1200.5, 4000.25]
    assert np.isnan(c["lapdist_m"][1])  # negative: before the line
    assert c["last_lap_s"][[0, 2]].tolist() == [90.5, 61.25]
    assert np.isnan(c["last_lap_s"][1])
    assert c["current_lap_s"].tolist() == [30.25, 1.0, 70.0]
    assert c["race_position"].tolist() == [1, 2, 3]
    assert c["sector"].tolist() == [2, 1, 3]
    assert c["pit_status"].tolist() == [0, 1, 0]
    for key in ("pbrake_f", "pbrake_r", "Steering_Angle"):
        assert np.isnan(c[key]).all()


def test_f1_decoder_skips_car_when_result_status_invalid() -> None:
    dec = F1Decoder()
    dec.feed(lap_packet(2024, {0: lap_car(2024, lap=1, result=2), 1: lap_car(2024, result=0)}), NOW)
    batch = dec.feed(
        telemetry_packet(2024, {0: telemetry_car(rpm=5000), 1: telemetry_car(rpm=4000)}), NOW
    )
    assert batch is not None and batch.car_index.tolist() == [0]


def test_f1_decoder_leaves_motion_and_lap_nan_when_not_yet_received() -> None:
    batch = F1Decoder().feed(telemetry_packet(2025, {3: telemetry_car(speed=10, rpm=5000)}), NOW)
    assert batch is not None and batch.track == "f1" and batch.car_index.tolist() == [3]
    for key in ("accx_can", "accy_can", "lap", "lapdist_m", "world_x_m"):
        assert np.isnan(batch.columns[key]).all(), key


def test_f1_decoder_keeps_sessions_apart_when_uids_differ() -> None:
    dec = F1Decoder()
    dec.feed(motion_packet(2024, {0: motion_car(g_lat=2.0)}, uid=1), NOW)
    batch = dec.feed(telemetry_packet(2024, {0: telemetry_car(rpm=5000)}, uid=2), NOW)
    assert batch is not None and np.isnan(batch.columns["accy_can"][0])
    assert batch.chassis.tolist() == ["F1-00002-00"]


def test_f1_decoder_returns_none_when_no_car_active() -> None:
    dec = F1Decoder()
    assert dec.feed(telemetry_packet(2024, {}), NOW) is None
    assert dec.stats()["no_active_cars"] == 1


def test_f1_decoder_forgets_oldest_session_when_too_many() -> None:
    dec = F1Decoder()
    for uid in range(MAX_SESSIONS + 3):
        dec.feed(telemetry_packet(2024, {0: telemetry_car(rpm=1)}, uid=uid), NOW)
    assert dec.stats()["sessions"] == MAX_SESSIONS


# (b) real captured packets -----------------------------------------------------


def _parsed(path: Path) -> dict:
    return json.loads(path.with_suffix(".parsed.json").read_text())


def _check_telemetry(batch: F1Batch, cars: list[dict]) -> None:
    for row, idx in enumerate(batch.car_index.tolist()):
        want, c = cars[idx], batch.columns
        assert c["speed_kmh"][row] == want["speed"]
        assert c["gear"][row] == want["gear"]
        assert c["rpm"][row] == want["rpm"]
        for key, name in (
            ("throttle_pct", "throttle"),
            ("brake_pct", "brake"),
            ("steer_pct", "steer"),
        ):
            assert c[key][row] == pytest.approx(want[name] * 100, abs=1e-9), (idx, key)


def _client_cars(cars: list[dict]) -> list[dict]:
    names = {"speed": "m_speed", "gear": "m_gear", "rpm": "m_engineRPM", "throttle": "m_throttle"}
    names |= {"brake": "m_brake", "steer": "m_steer"}
    return [{k: car[v] for k, v in names.items()} for car in cars]


@pytest.mark.parametrize("path", sorted(CLIENT.glob("*/*_id06_*.bin")), ids=lambda p: p.parent.name)
def test_f1_decoder_matches_parsed_json_for_every_car_when_real_telemetry(path: Path) -> None:
    cars = _parsed(path)["m_carTelemetryData"]
    batch = F1Decoder().feed(path.read_bytes(), NOW)
    assert batch is not None
    nonzero = [i for i, car in enumerate(cars) if car["m_engineRPM"] or car["m_speed"]]
    assert batch.car_index.tolist() == nonzero
    _check_telemetry(batch, _client_cars(cars))
    temps = batch.columns["tyre_surface_temp_rl_c"]
    assert temps.tolist() == [cars[i]["m_tyresSurfaceTemperature"][0] for i in nonzero]


def _fmt_uid(data: bytes) -> tuple[int, int]:
    fmt, uid = struct.unpack_from("<H5xQ", data)
    return fmt, uid


@pytest.mark.parametrize("path", sorted(CLIENT.glob("*/*_id00_*.bin")), ids=lambda p: p.parent.name)
def test_f1_decoder_merges_g_forces_for_every_car_when_real_motion(path: Path) -> None:
    data, cars = path.read_bytes(), _parsed(path)["m_carMotionData"]
    dec = F1Decoder()
    assert dec.feed(data, NOW) is None
    batch = dec.feed(all_cars_telemetry(*_fmt_uid(data)), NOW)
    assert batch is not None and len(batch) == 22
    for key, name in (("accx_can", "m_gForceLongitudinal"), ("accy_can", "m_gForceLateral")):
        assert batch.columns[key] == pytest.approx([car[name] for car in cars], rel=1e-6)
    assert batch.columns["world_x_m"] == pytest.approx([car["m_worldPositionX"] for car in cars])


@pytest.mark.parametrize("path", sorted(CLIENT.glob("*/*_id02_*.bin")), ids=lambda p: p.stem)
def test_f1_decoder_merges_lap_data_for_every_active_car_when_real_lap_data(path: Path) -> None:
    data, cars = path.read_bytes(), _parsed(path)["m_lapData"]
    dec = F1Decoder()
    dec.feed(data, NOW)
    batch = dec.feed(all_cars_telemetry(*_fmt_uid(data)), NOW)
    assert batch is not None
    active = [i for i, car in enumerate(cars) if car["m_resultStatus"] != 0]
    assert batch.car_index.tolist() == active
    rows = [cars[i] for i in active]
    c = batch.columns
    assert c["lap"].tolist() == [car["m_currentLapNum"] for car in rows]
    assert c["race_position"].tolist() == [car["m_carPosition"] for car in rows]
    assert c["current_lap_s"] == pytest.approx([car["m_currentLapTimeInMS"] / 1000 for car in rows])
    dist = [car["m_lapDistance"] if car["m_lapDistance"] >= 0 else np.nan for car in rows]
    np.testing.assert_allclose(c["lapdist_m"], dist, rtol=1e-6)


def test_f1_decoder_nans_negative_lap_distance_when_real_f1_24_car_before_line() -> None:
    data = (CLIENT / "2024" / "L06_id02_lapData.bin").read_bytes()  # car 19: -1505.86 m
    dec = F1Decoder()
    dec.feed(data, NOW)
    batch = dec.feed(all_cars_telemetry(*_fmt_uid(data)), NOW)
    assert batch is not None and np.isnan(batch.columns["lapdist_m"][19])


def test_f1_decoder_merges_one_real_f1_25_session_when_fed_in_order() -> None:
    """Motion, session, lap data and telemetry of one F1 25 session, frames 10794-10807."""
    dec = F1Decoder()
    paths = sorted((CLIENT / "2025").glob("*.bin"))
    batches = [b for p in paths if (b := dec.feed(p.read_bytes(), NOW)) is not None]
    assert len(batches) == 1
    batch = batches[0]
    assert batch.track == "las_vegas" and len(batch) == 7
    assert batch.chassis[0] == "F1-22946-00"  # sessionUID 4340488702485922946
    motion = _parsed(paths[0])["m_carMotionData"]
    lap = _parsed(paths[2])["m_lapData"]
    assert batch.columns["accy_can"] == pytest.approx([m["m_gForceLateral"] for m in motion[:7]])
    assert batch.columns["lap"].tolist() == [car["m_currentLapNum"] for car in lap[:7]]


def test_f1_decoder_lateral_g_positive_when_real_car_steers_left() -> None:
    """Sign check behind accy_can (+ = left): steer < 0 is left per spec."""
    dec = F1Decoder()
    for name in ("L01_id00_motion.bin", "L07_id06_carTelemetry.bin"):
        batch = dec.feed((CLIENT / "2025" / name).read_bytes(), NOW)
    assert batch is not None
    steer, acc_y = batch.columns["steer_pct"], batch.columns["accy_can"]
    turning = np.abs(steer) > 5
    assert turning.sum() >= 5
    assert (np.sign(acc_y[turning]) == -np.sign(steer[turning])).all()


def _png_packet(fmt: int, packet_id: int, payload: str, uid: int = UID) -> bytes:
    return header(fmt, packet_id, uid) + (PNG / payload).read_bytes()


def _png(name: str) -> dict:
    return json.loads((PNG / name).read_text())


@pytest.mark.parametrize("year", [23, 24, 25])
def test_f1_decoder_matches_pits_n_giggles_values_when_real_payloads(year: int) -> None:
    fmt, dec = 2000 + year, F1Decoder()
    dec.feed(_png_packet(fmt, 1, f"01_session_payload_test_f1_{year}.bin"), NOW)
    dec.feed(_png_packet(fmt, 0, "00_motion_payload_test_f1_23_actual.bin"), NOW)
    dec.feed(_png_packet(fmt, 2, f"02_lap_data_payload_test_f1_{year}_actual.bin"), NOW)
    batch = dec.feed(
        _png_packet(fmt, 6, f"06_car_telemetry_payload_test_f1_{year}_actual.bin"), NOW
    )
    assert batch is not None
    assert batch.track == {23: "austria", 24: "spa", 25: "austria_reverse"}[year]
    tele = _png(f"06_car_telemetry_test_f1_{year}_actual.expected.json")["car-telemetry-data"]
    laps = _png(f"02_lap_data_test_f1_{year}_actual.expected.json")["lap-data"]
    motion = _png(f"00_motion_test_f1_{year}_actual.expected.json")["car-motion-data"]
    active = [i for i, lap in enumerate(laps) if lap["result-status"] != "INVALID"]
    assert batch.car_index.tolist() == active
    _check_telemetry(batch, [dict(t, rpm=t["engine-rpm"]) for t in tele])
    rows = [laps[i] for i in active]
    assert batch.columns["lap"].tolist() == [lap["current-lap-num"] for lap in rows]
    dist = [d if (d := lap["lap-distance"]) >= 0 else np.nan for lap in rows]
    np.testing.assert_allclose(batch.columns["lapdist_m"], dist, rtol=1e-6)
    g_lat = [motion[i]["g-force"]["lateral"] for i in active]
    assert batch.columns["accy_can"] == pytest.approx(g_lat, rel=1e-6)


# (c) bad input is counted, never raised -----------------------------------------


def test_f1_decoder_counts_truncated_when_shorter_than_format_needs() -> None:
    dec = F1Decoder()
    real = (CLIENT / "2025" / "L07_id06_carTelemetry.bin").read_bytes()
    for data in (real[:-1], real[:29], real[:10], b""):
        assert dec.feed(data, NOW) is None
    stats = dec.stats()
    assert stats["truncated"] == 4 and stats["batches"] == 0


def test_f1_decoder_counts_ignored_and_unknown_when_packet_id_not_decoded() -> None:
    dec = F1Decoder()
    for name in ("L15_id03_event_FTLP.bin", "L09_id07_carStatus.bin"):
        assert dec.feed((CLIENT / "2024" / name).read_bytes(), NOW) is None
    assert dec.feed(header(2024, 99) + b"\0" * 100, NOW) is None
    stats = dec.stats()
    assert (stats["ignored"], stats["unknown_id"]) == (2, 1)
    assert stats["by_packet_id"] == {"event": 1, "car_status": 1, "unknown_99": 1}


def test_f1_decoder_counts_unsupported_format_when_other_game() -> None:
    dec = F1Decoder()
    f1_26 = (PNG / "06_car_telemetry_fullpacket_test_f1_26_actual.bin").read_bytes()
    f1_22 = struct.pack("<HBBBBQfIBBB", 2022, 1, 0, 1, 6, UID, 1.0, 5, 0, 255, 0) + b"\1" * 1320
    for data in (f1_26, f1_22):
        assert not looks_like_f1(data)
        assert dec.feed(data, NOW) is None
    assert dec.stats()["unsupported_format"] == 2


@given(st.binary(max_size=1500))
def test_f1_decoder_never_raises_when_fed_garbage(data: bytes) -> None:
    assert F1Decoder().feed(data, NOW) is None


@given(st.sampled_from([2023, 2024, 2025]), st.integers(0, 255), st.binary(max_size=1400))
def test_f1_decoder_never_raises_when_valid_header_has_garbage_body(
    fmt: int, packet_id: int, body: bytes
) -> None:
    dec = F1Decoder()
    dec.feed(header(fmt, packet_id) + body, NOW)
    assert sum(dec.stats()["by_packet_id"].values()) == 1  # type: ignore[attr-defined]


# (d) frame gaps ---------------------------------------------------------------


def _frames(frames: list[int], uid: int = UID) -> dict[str, object]:
    dec = F1Decoder()
    for frame in frames:
        dec.feed(motion_packet(2024, {}, uid=uid, frame=frame), NOW)
    return dec.stats()


def test_f1_decoder_counts_frame_gap_when_frames_skipped() -> None:
    stats = _frames([100, 100, 101, 102, 105, 105, 106])
    assert (stats["frame_gaps"], stats["frames_skipped"]) == (1, 2)
    assert stats["frame_gaps_by_session"] == {str(UID): 1}


def test_f1_decoder_counts_gap_against_usual_step_when_game_sends_every_other_frame() -> None:
    stats = _frames([10, 12, 14, 18, 20])
    assert (stats["frame_gaps"], stats["frames_skipped"]) == (1, 2)


def test_f1_decoder_counts_late_frame_without_gap_when_reordered() -> None:
    stats = _frames([50, 51, 49, 52])
    assert (stats["frame_gaps"], stats["frames_late"]) == (0, 1)


def test_f1_decoder_tracks_frames_per_session_when_sessions_interleave() -> None:
    dec = F1Decoder()
    for frame in range(5):
        dec.feed(motion_packet(2024, {}, uid=1, frame=frame), NOW)
        dec.feed(motion_packet(2024, {}, uid=2, frame=1000 + frame), NOW)
    assert dec.stats()["frame_gaps"] == 0


# (e) JSON shares the port -------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'{"chassis":"x"}',
        b'{"chassis": "GR86-001", "speed_kmh": 120.5, "lap": 3}',
        b'[{"chassis": "GR86-001", "speed_kmh": 120.5}, {"chassis": "y"}]',
        b'\n {"chassis": "GR86-001", "speed_kmh": 120.5, "lap": 3}',
        b"\xe8\x07" + b"\0" * 20,  # F1 24 format but shorter than a header
    ],
)
def test_f1_decoder_does_not_recognise_f1_when_json_or_short(data: bytes) -> None:
    assert not looks_like_f1(data)


def test_f1_decoder_recognises_f1_when_real_packets() -> None:
    assert all(looks_like_f1(p.read_bytes()) for p in CLIENT.glob("*/*.bin"))
