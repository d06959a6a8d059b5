"""pitwall_rt.f1.layout: dtypes against published sizes and real captured packets.

Every field of every per-car dtype is compared, for every one of the 22 car
slots, with the decode that the capturing project asserts (tests/data/f1,
see SOURCE.md there).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pitwall_rt.f1.layout import (
    CAR_MOTION_DTYPE,
    CAR_TELEMETRY_DTYPE,
    HEADER_DTYPE,
    HEADER_SIZE,
    LAP_DATA_DTYPE_2023,
    LAP_DATA_DTYPE_2024,
    LAYOUTS,
    NUM_CARS,
    SESSION_PREFIX_DTYPE,
    PacketId,
    track_name,
)

DATA = Path(__file__).parent / "data" / "f1"
CLIENT = DATA / "f1-telemetry-client"
REAL_PACKETS = sorted(CLIENT.glob("*/*.bin"))

# f1-telemetry-client names a few lap data fields differently from the spec.
_JSON_NAME = {
    "sector1TimeMSPart": "m_sector1TimeInMS",
    "sector1TimeMinutesPart": "m_sector1TimeMinutes",
    "sector2TimeMSPart": "m_sector2TimeInMS",
    "sector2TimeMinutesPart": "m_sector2TimeMinutes",
    "deltaToCarInFrontMSPart": "m_deltaToCarInFrontInMS",
    "deltaToCarInFrontMinutesPart": "m_deltaToCarInFrontMinutes",
    "deltaToRaceLeaderMSPart": "m_deltaToRaceLeaderInMS",
    "deltaToRaceLeaderMinutesPart": "m_deltaToRaceLeaderMinutes",
}


def _parsed(path: Path) -> dict:
    return json.loads(path.with_suffix(".parsed.json").read_text())


def _same(actual: object, expected: object) -> bool:
    if isinstance(expected, list):
        return all(_same(a, e) for a, e in zip(np.asarray(actual).tolist(), expected, strict=True))
    if isinstance(expected, float):
        return math.isclose(float(actual), expected, rel_tol=1e-6, abs_tol=1e-9)  # type: ignore[arg-type]
    return bool(actual == expected)


def test_f1_layout_records_have_published_sizes_when_built() -> None:
    assert HEADER_DTYPE.itemsize == HEADER_SIZE == 29
    assert CAR_MOTION_DTYPE.itemsize == 60
    assert CAR_TELEMETRY_DTYPE.itemsize == 60
    assert LAP_DATA_DTYPE_2023.itemsize == 50
    assert LAP_DATA_DTYPE_2024.itemsize == 57
    assert _offset(LAP_DATA_DTYPE_2023, "lapDistance") == 18
    assert _offset(LAP_DATA_DTYPE_2024, "lapDistance") == 20
    assert _offset(SESSION_PREFIX_DTYPE, "trackId") + HEADER_SIZE == 36


def _offset(dtype: np.dtype, name: str) -> int:
    assert dtype.fields is not None
    return int(dtype.fields[name][1])


@pytest.mark.parametrize(
    ("packet_format", "sizes"),
    [
        (2023, {0: 1349, 1: 644, 2: 1131, 6: 1352}),
        (2024, {0: 1349, 1: 753, 2: 1285, 6: 1352}),
        (2025, {0: 1349, 1: 753, 2: 1285, 6: 1352}),
    ],
)
def test_f1_layout_packet_sizes_match_spec_when_looked_up(
    packet_format: int, sizes: dict[int, int]
) -> None:
    assert LAYOUTS[packet_format].packet_sizes == sizes


def test_f1_layout_real_packets_have_published_sizes_when_captured() -> None:
    for path in REAL_PACKETS:
        data = path.read_bytes()
        header = np.frombuffer(data, HEADER_DTYPE, count=1)[0]
        sizes = LAYOUTS[int(header["packetFormat"])].packet_sizes
        if int(header["packetId"]) in sizes:
            assert len(data) == sizes[int(header["packetId"])], path.name


@pytest.mark.parametrize("path", REAL_PACKETS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_f1_layout_header_matches_parsed_json_when_real_packet(path: Path) -> None:
    header = np.frombuffer(path.read_bytes(), HEADER_DTYPE, count=1)[0]
    expected = _parsed(path)["m_header"]
    for name in HEADER_DTYPE.names or ():
        want = expected[f"m_{name}"]
        want = int(want) if name == "sessionUID" else want  # JSON string (64-bit)
        assert _same(header[name], want), name


_CAR_PACKETS = [
    (p, key)
    for p in REAL_PACKETS
    for tag, key in (
        ("_id00_", "m_carMotionData"),
        ("_id02_", "m_lapData"),
        ("_id06_", "m_carTelemetryData"),
    )
    if tag in p.name
]


@pytest.mark.parametrize(
    ("path", "key"),
    _CAR_PACKETS,
    ids=lambda v: f"{v.parent.name}/{v.stem}" if isinstance(v, Path) else "",
)
def test_f1_layout_every_field_of_every_car_matches_parsed_json_when_real_packet(
    path: Path, key: str
) -> None:
    data = path.read_bytes()
    header = np.frombuffer(data, HEADER_DTYPE, count=1)[0]
    dtype = {
        "m_carMotionData": CAR_MOTION_DTYPE,
        "m_carTelemetryData": CAR_TELEMETRY_DTYPE,
        "m_lapData": LAYOUTS[int(header["packetFormat"])].lap_data_dtype,
    }[key]
    cars = np.frombuffer(data, dtype, count=NUM_CARS, offset=HEADER_SIZE)
    expected = _parsed(path)[key]
    assert len(expected) == NUM_CARS
    for i, want in enumerate(expected):
        for name in dtype.names or ():
            if name.endswith("MSPart"):
                _check_split_time(cars[i], name, want)
            elif not name.endswith("MinutesPart"):
                assert _same(cars[i][name], want[f"m_{name}"]), (i, name)


def _check_split_time(car: np.void, ms_name: str, want: dict) -> None:
    """F1 24+ split times: ``<x>MSPart`` + ``<x>MinutesPart`` (whole minutes).

    f1-telemetry-client reports them as ``InMS`` + ``Minutes``; where the
    minute part is not 0 its JSON folds it into ``InMS`` and drops the
    ``Minutes`` key (2024 L07 car 19, 2024 L12 car 19).
    """
    min_name = ms_name.replace("MSPart", "MinutesPart")
    ms, minutes = int(car[ms_name]), int(car[min_name])
    json_ms, json_min = _JSON_NAME[ms_name], _JSON_NAME[min_name]
    if json_min in want:
        assert (ms, minutes) == (want[json_ms], want[json_min]), ms_name
    else:
        assert ms + 60_000 * minutes == want[json_ms], ms_name


@pytest.mark.parametrize("path", sorted(CLIENT.glob("*/*_id01_session.bin")), ids=lambda p: p.stem)
def test_f1_layout_session_prefix_matches_parsed_json_when_real_packet(path: Path) -> None:
    prefix = np.frombuffer(path.read_bytes(), SESSION_PREFIX_DTYPE, count=1, offset=HEADER_SIZE)[0]
    expected = _parsed(path)
    for name in SESSION_PREFIX_DTYPE.names or ():
        assert _same(prefix[name], expected[f"m_{name}"]), name


@pytest.mark.parametrize(
    ("track_id", "name"),
    [(7, "silverstone"), (16, "brazil"), (31, "las_vegas"), (10, "spa"), (40, "austria_reverse")],
)
def test_f1_layout_track_name_maps_spec_ids_when_known(track_id: int, name: str) -> None:
    assert track_name(track_id) == name


def test_f1_layout_track_name_is_none_or_generic_when_unknown() -> None:
    assert track_name(-1) is None
    assert track_name(37) == "f1_track_37"


def test_f1_layout_packet_ids_follow_spec_when_listed() -> None:
    assert PacketId.MOTION == 0
    assert PacketId.LAP_DATA == 2
    assert PacketId.CAR_TELEMETRY == 6
    assert PacketId.MOTION_EX == 13
