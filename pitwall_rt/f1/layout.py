"""Byte layouts of the EA SPORTS F1 game UDP packets, as numpy structured dtypes.

Facts come from EA's published "Data Output from F1 23 / F1 24 / F1 25"
UDP specifications. All packets are little-endian and packed (no padding),
so every dtype below is built from an explicit field list (numpy then packs
it exactly) and its ``itemsize`` is asserted against the published size.

Field names are the spec's ``m_`` names without the prefix, so a reader can
grep the spec for them. Units are the spec's: speed km/h, pedals 0.0..1.0,
steer -1.0 (full lock left) .. +1.0 (full lock right), G-forces in G,
distances in metres, lap times in milliseconds, temperatures in Celsius,
tyre pressures in PSI. Every wheel array is ordered RL, RR, FL, FR.

What differs between the formats we support:

* F1 23 (2023) ``LapData`` is 50 bytes: the deltas to the car in front and
  to the leader are plain uint16 milliseconds, so ``lapDistance`` sits at
  offset 18. F1 24 (2024) and F1 25 (2025) split each delta into a uint16
  millisecond part plus a uint8 minute part, add ``speedTrapFastestSpeed``
  and ``speedTrapFastestLap``, and the record grows to 57 bytes
  (``lapDistance`` at offset 20).
* The session packet is 644 bytes in F1 23 and 753 bytes in F1 24/25. We
  read only its fixed prefix (``trackId`` is at offset 36 in all three).
* Car motion (60 B) and car telemetry (60 B) records are identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

NUM_CARS = 22
"""Every car array in F1 23/24/25 has 22 slots; unused slots are zero bytes."""


class PacketId(IntEnum):
    """``m_packetId`` values (spec table "Packet IDs")."""

    MOTION = 0
    SESSION = 1
    LAP_DATA = 2
    EVENT = 3
    PARTICIPANTS = 4
    CAR_SETUPS = 5
    CAR_TELEMETRY = 6
    CAR_STATUS = 7
    FINAL_CLASSIFICATION = 8
    LOBBY_INFO = 9
    CAR_DAMAGE = 10
    SESSION_HISTORY = 11
    TYRE_SETS = 12
    MOTION_EX = 13
    TIME_TRIAL = 14
    LAP_POSITIONS = 15


# struct PacketHeader (29 bytes, same in F1 23, F1 24 and F1 25).
HEADER_DTYPE = np.dtype(
    [
        ("packetFormat", "<u2"),  # 2023, 2024, 2025
        ("gameYear", "u1"),  # last two digits, e.g. 25
        ("gameMajorVersion", "u1"),  # "X.00"
        ("gameMinorVersion", "u1"),  # "1.XX"
        ("packetVersion", "u1"),  # version of this packet type, from 1
        ("packetId", "u1"),  # see PacketId
        ("sessionUID", "<u8"),  # unique identifier for the session
        ("sessionTime", "<f4"),  # session timestamp, seconds
        ("frameIdentifier", "<u4"),  # frame the data was retrieved on
        ("overallFrameIdentifier", "<u4"),  # does not go back after flashbacks
        ("playerCarIndex", "u1"),  # index of the player's car; 255 when spectating
        ("secondaryPlayerCarIndex", "u1"),  # splitscreen player, 255 if none
    ]
)
HEADER_SIZE = 29

# struct CarMotionData (60 bytes), m_carMotionData[22] in PacketMotionData.
CAR_MOTION_DTYPE = np.dtype(
    [
        ("worldPositionX", "<f4"),  # world space X position, metres
        ("worldPositionY", "<f4"),  # world space Y position, metres (up)
        ("worldPositionZ", "<f4"),  # world space Z position, metres
        ("worldVelocityX", "<f4"),  # velocity in world space X, m/s
        ("worldVelocityY", "<f4"),
        ("worldVelocityZ", "<f4"),
        ("worldForwardDirX", "<i2"),  # forward direction, normalised: divide by 32767
        ("worldForwardDirY", "<i2"),
        ("worldForwardDirZ", "<i2"),
        ("worldRightDirX", "<i2"),  # right direction, normalised: divide by 32767
        ("worldRightDirY", "<i2"),
        ("worldRightDirZ", "<i2"),
        ("gForceLateral", "<f4"),  # lateral G-force component
        ("gForceLongitudinal", "<f4"),  # longitudinal G-force component
        ("gForceVertical", "<f4"),  # vertical G-force component
        ("yaw", "<f4"),  # radians
        ("pitch", "<f4"),  # radians
        ("roll", "<f4"),  # radians
    ]
)

# struct CarTelemetryData (60 bytes), m_carTelemetryData[22] in PacketCarTelemetryData.
CAR_TELEMETRY_DTYPE = np.dtype(
    [
        ("speed", "<u2"),  # km/h
        ("throttle", "<f4"),  # 0.0 .. 1.0
        ("steer", "<f4"),  # -1.0 full lock left .. 1.0 full lock right
        ("brake", "<f4"),  # 0.0 .. 1.0
        ("clutch", "u1"),  # 0 .. 100
        ("gear", "i1"),  # 1-8, N = 0, R = -1
        ("engineRPM", "<u2"),
        ("drs", "u1"),  # 0 = off, 1 = on
        ("revLightsPercent", "u1"),
        ("revLightsBitValue", "<u2"),  # bit 0 = leftmost LED
        ("brakesTemperature", "<u2", (4,)),  # Celsius, RL RR FL FR
        ("tyresSurfaceTemperature", "u1", (4,)),  # Celsius, RL RR FL FR
        ("tyresInnerTemperature", "u1", (4,)),  # Celsius, RL RR FL FR
        ("engineTemperature", "<u2"),  # Celsius
        ("tyresPressure", "<f4", (4,)),  # PSI, RL RR FL FR
        ("surfaceType", "u1", (4,)),  # driving surface, see spec appendix
    ]
)


def _lap_data_dtype(split_minutes: bool) -> np.dtype:
    """struct LapData; ``split_minutes`` is the F1 24+ layout (see module doc)."""
    fields: list[tuple] = [
        ("lastLapTimeInMS", "<u4"),  # last lap time, ms
        ("currentLapTimeInMS", "<u4"),  # current time around the lap, ms
        ("sector1TimeMSPart", "<u2"),  # sector 1 time, ms part
        ("sector1TimeMinutesPart", "u1"),  # sector 1 whole minute part
        ("sector2TimeMSPart", "<u2"),
        ("sector2TimeMinutesPart", "u1"),
    ]
    if split_minutes:
        fields += [
            ("deltaToCarInFrontMSPart", "<u2"),
            ("deltaToCarInFrontMinutesPart", "u1"),
            ("deltaToRaceLeaderMSPart", "<u2"),
            ("deltaToRaceLeaderMinutesPart", "u1"),
        ]
    else:
        fields += [("deltaToCarInFrontInMS", "<u2"), ("deltaToRaceLeaderInMS", "<u2")]
    fields += [
        ("lapDistance", "<f4"),  # metres around the lap; negative before the line
        ("totalDistance", "<f4"),  # metres in session; negative before the line
        ("safetyCarDelta", "<f4"),  # seconds
        ("carPosition", "u1"),  # race position
        ("currentLapNum", "u1"),  # 1-based
        ("pitStatus", "u1"),  # 0 none, 1 pitting, 2 in pit area
        ("numPitStops", "u1"),
        ("sector", "u1"),  # 0 = sector 1, 1 = sector 2, 2 = sector 3
        ("currentLapInvalid", "u1"),  # 0 valid, 1 invalid
        ("penalties", "u1"),  # accumulated time penalties, seconds
        ("totalWarnings", "u1"),
        ("cornerCuttingWarnings", "u1"),
        ("numUnservedDriveThroughPens", "u1"),
        ("numUnservedStopGoPens", "u1"),
        ("gridPosition", "u1"),
        ("driverStatus", "u1"),  # 0 garage, 1 flying lap, 2 in lap, 3 out lap, 4 on track
        ("resultStatus", "u1"),  # 0 invalid, 1 inactive, 2 active, 3 finished, ...
        ("pitLaneTimerActive", "u1"),
        ("pitLaneTimeInLaneInMS", "<u2"),
        ("pitStopTimerInMS", "<u2"),
        ("pitStopShouldServePen", "u1"),
    ]
    if split_minutes:
        fields += [
            ("speedTrapFastestSpeed", "<f4"),  # km/h
            ("speedTrapFastestLap", "u1"),  # 255 = not set
        ]
    return np.dtype(fields)


LAP_DATA_DTYPE_2023 = _lap_data_dtype(split_minutes=False)
LAP_DATA_DTYPE_2024 = _lap_data_dtype(split_minutes=True)

# Fixed prefix of struct PacketSessionData (after the header); the rest
# (marshal zones, forecast samples, assists ...) is not needed here.
SESSION_PREFIX_DTYPE = np.dtype(
    [
        ("weather", "u1"),  # 0 clear .. 5 storm
        ("trackTemperature", "i1"),  # Celsius
        ("airTemperature", "i1"),  # Celsius
        ("totalLaps", "u1"),
        ("trackLength", "<u2"),  # metres
        ("sessionType", "u1"),  # see spec appendix
        ("trackId", "i1"),  # -1 unknown, see TRACK_NAMES
    ]
)

assert HEADER_DTYPE.itemsize == HEADER_SIZE
assert CAR_MOTION_DTYPE.itemsize == 60
assert CAR_TELEMETRY_DTYPE.itemsize == 60
assert LAP_DATA_DTYPE_2023.itemsize == 50
assert LAP_DATA_DTYPE_2024.itemsize == 57


@dataclass(frozen=True)
class FormatLayout:
    """What one ``packetFormat`` needs: per-car dtypes and full packet sizes.

    ``packet_sizes`` are the published sizes in bytes, header included; a
    datagram shorter than its size is truncated. Longer ones are accepted so
    a patch that appends fields does not stop decoding.
    """

    packet_format: int
    lap_data_dtype: np.dtype
    packet_sizes: dict[int, int]


def _layout(packet_format: int, lap_dtype: np.dtype, session_size: int) -> FormatLayout:
    cars = HEADER_SIZE + NUM_CARS * CAR_TELEMETRY_DTYPE.itemsize
    sizes = {
        PacketId.MOTION: HEADER_SIZE + NUM_CARS * CAR_MOTION_DTYPE.itemsize,  # 1349
        PacketId.SESSION: session_size,
        # + m_timeTrialPBCarIdx, m_timeTrialRivalCarIdx
        PacketId.LAP_DATA: HEADER_SIZE + NUM_CARS * lap_dtype.itemsize + 2,
        # + m_mfdPanelIndex, m_mfdPanelIndexSecondaryPlayer, m_suggestedGear
        PacketId.CAR_TELEMETRY: cars + 3,  # 1352
    }
    return FormatLayout(packet_format, lap_dtype, {int(k): v for k, v in sizes.items()})


LAYOUTS: dict[int, FormatLayout] = {
    2023: _layout(2023, LAP_DATA_DTYPE_2023, 644),
    2024: _layout(2024, LAP_DATA_DTYPE_2024, 753),
    2025: _layout(2025, LAP_DATA_DTYPE_2024, 753),
}
SUPPORTED_FORMATS = frozenset(LAYOUTS)

# Spec appendix "Track IDs" (F1 23/24/25), as pitwall_rt track ids
# (lower case, underscores). Ids missing here map to "f1_track_<id>".
TRACK_NAMES: dict[int, str] = {
    0: "melbourne",
    1: "paul_ricard",
    2: "shanghai",
    3: "sakhir",
    4: "catalunya",
    5: "monaco",
    6: "montreal",
    7: "silverstone",
    8: "hockenheim",
    9: "hungaroring",
    10: "spa",
    11: "monza",
    12: "singapore",
    13: "suzuka",
    14: "abu_dhabi",
    15: "texas",
    16: "brazil",
    17: "austria",
    18: "sochi",
    19: "mexico",
    20: "baku",
    21: "sakhir_short",
    22: "silverstone_short",
    23: "texas_short",
    24: "suzuka_short",
    25: "hanoi",
    26: "zandvoort",
    27: "imola",
    28: "portimao",
    29: "jeddah",
    30: "miami",
    31: "las_vegas",
    32: "losail",
    39: "silverstone_reverse",
    40: "austria_reverse",
    41: "zandvoort_reverse",
}


def track_name(track_id: int) -> str | None:
    """pitwall_rt track id for the spec's ``m_trackId``; None when unknown (-1)."""
    if track_id < 0:
        return None
    return TRACK_NAMES.get(track_id, f"f1_track_{track_id}")
