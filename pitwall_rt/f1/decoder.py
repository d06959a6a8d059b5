"""Sans-I/O decoder: F1 game UDP datagrams in, columns of telemetry points out.

The game sends one packet type per datagram, each for all 22 car slots.
A pitwall_rt point needs fields from three of them: car telemetry (id 6:
speed, pedals, gear, rpm), motion (id 0: G-forces, world position) and lap
data (id 2: lap number, lap distance). `F1Decoder` keeps the latest motion
and lap data of each session and emits one batch, one row per active car,
each time a car telemetry packet arrives: that packet carries the fastest
changing fields, and it is sent at the rate chosen in the game's menu.

Sign conventions, checked against real F1 25 captures (cars at the same
frame, see tests/data/f1/SOURCE.md): ``gForceLateral`` is positive when the
car turns left (steer < 0, heading turning away from ``worldRightDir``) and
``gForceLongitudinal`` is positive under throttle and negative under
braking. Both already match the pitwall_rt contract (``accy_can`` + = left,
``accx_can`` + = accelerating), so they are passed through unchanged.

Bad data policy: a datagram that is too short, has an unknown packet
format or packet id, or is otherwise unusable is counted in `stats()` and
dropped; `feed` never raises on input bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from pitwall_rt.f1.layout import (
    CAR_MOTION_DTYPE,
    CAR_TELEMETRY_DTYPE,
    HEADER_DTYPE,
    HEADER_SIZE,
    LAYOUTS,
    NUM_CARS,
    SESSION_PREFIX_DTYPE,
    SUPPORTED_FORMATS,
    FormatLayout,
    PacketId,
    track_name,
)

_TEXT_START = frozenset(b"{[ \t\r\n")
_DECODED_IDS = frozenset(
    {PacketId.MOTION, PacketId.SESSION, PacketId.LAP_DATA, PacketId.CAR_TELEMETRY}
)
_KNOWN_IDS = frozenset(int(p) for p in PacketId)
MAX_SESSIONS = 8
"""Sessions whose state is kept; the least recently seen goes first (bounded memory)."""

_WHEELS = ("rl", "rr", "fl", "fr")  # spec order of every wheel array
_NAN = float("nan")


def looks_like_f1(data: bytes) -> bool:
    """True when ``data`` starts with an F1 23/24/25 packet header.

    Cheap enough to run on every datagram of the shared UDP port: JSON
    datagrams start with ``{``, ``[`` or whitespace, F1 packets with the
    little-endian ``packetFormat`` (2023 = ``e7 07``).
    """
    if len(data) < HEADER_SIZE or data[0] in _TEXT_START:
        return False
    return int.from_bytes(data[:2], "little") in SUPPORTED_FORMATS


@dataclass(frozen=True, slots=True)
class F1Batch:
    """One row per active car, from one car telemetry packet.

    ``columns`` maps pitwall_rt field names to float64 arrays (NaN where the
    game gives no value): meta_time (epoch s), speed_kmh, throttle_pct,
    brake_pct and steer_pct (pedal / steering travel, 0..100 and -100
    (left) .. 100 (right)), pbrake_f/pbrake_r and Steering_Angle (always
    NaN: the game sends no brake pressure or steering wheel angle), rpm,
    gear (-1 = R, 0 = N), drs, accx_can / accy_can (G), lap, lapdist_m
    (NaN before the car first crosses the line), race_position, sector
    (1..3), pit_status and result_status (spec codes), last_lap_s,
    current_lap_s, world_x_m / world_y_m / world_z_m (y is up), and
    tyre_surface_temp_<wheel>_c / brake_temp_<wheel>_c (Celsius) for
    wheels fl, fr, rl, rr.
    """

    columns: dict[str, np.ndarray]
    chassis: np.ndarray  # dtype object (str): "F1-<uid % 100000>-<car index>"
    track: str
    session_uid: int
    car_index: np.ndarray  # int64, index into the game's 22-car arrays

    def __len__(self) -> int:
        return len(self.chassis)


@dataclass(slots=True)
class _Session:
    """What one ``sessionUID`` has told us so far."""

    uid: int
    chassis: np.ndarray
    track: str = "f1"
    motion: np.ndarray | None = None  # (22,) CAR_MOTION_DTYPE, latest packet
    lap: np.ndarray | None = None  # (22,) lap data dtype, latest packet
    last_frame: int | None = None
    stride: int | None = None  # smallest forward frame step seen
    frame_gaps: int = 0


@dataclass(slots=True)
class _Counters:
    packets: int = 0
    batches: int = 0
    points: int = 0
    truncated: int = 0
    unsupported_format: int = 0
    unknown_id: int = 0
    ignored: int = 0
    no_active_cars: int = 0
    frame_gaps: int = 0
    frames_skipped: int = 0
    frames_late: int = 0
    by_id: dict[int, int] = field(default_factory=dict)


class F1Decoder:
    """Stateful, pure decoder of F1 game UDP datagrams.

    Call `feed` with every datagram for which `looks_like_f1` is true,
    with the time it was received. No I/O, no clock, no threads: one
    instance belongs to one receiving task.
    """

    def __init__(self) -> None:
        self._sessions: OrderedDict[int, _Session] = OrderedDict()
        self._n = _Counters()

    def feed(self, data: bytes, recv_time_s: float) -> F1Batch | None:
        """Decode one datagram; return a batch when it was car telemetry.

        ``recv_time_s`` (epoch seconds) becomes every row's meta_time: the
        game's own ``sessionTime`` is relative to the session start.
        Returns None for every other packet, and for input that is
        truncated or not understood (counted in `stats`).
        """
        n = self._n
        n.packets += 1
        if len(data) < HEADER_SIZE:
            n.truncated += 1
            return None
        header = np.frombuffer(data, HEADER_DTYPE, count=1)[0]
        layout = LAYOUTS.get(int(header["packetFormat"]))
        if layout is None:
            n.unsupported_format += 1
            return None
        packet_id = int(header["packetId"])
        n.by_id[packet_id] = n.by_id.get(packet_id, 0) + 1
        if packet_id not in _KNOWN_IDS:
            n.unknown_id += 1
            return None
        if packet_id in _DECODED_IDS and len(data) < layout.packet_sizes[packet_id]:
            n.truncated += 1
            return None
        session = self._session(int(header["sessionUID"]))
        self._track_frame(session, int(header["overallFrameIdentifier"]))
        return self._dispatch(session, layout, packet_id, data, recv_time_s)

    def stats(self) -> dict[str, object]:
        """Counters since creation, as a plain JSON-ready dict.

        packets: datagrams fed. batches / points: batches returned and rows
        in them. truncated: shorter than the header or than the published
        size of a packet we decode. unsupported_format: packetFormat other
        than 2023/2024/2025 (older or newer games, or not F1 at all).
        unknown_id: packetId not in the spec. ignored: valid packets of a
        type we do not use (event, participants, car status ...).
        no_active_cars: telemetry packets with no car to report.
        frame_gaps: jumps forward in overallFrameIdentifier larger than the
        session's usual step (lost or late datagrams); frames_skipped: frame
        ids inside those jumps beyond the usual step; frames_late: packets
        whose frame is older than one already seen. by_packet_id: count per
        packet type; frame_gaps_by_session: per tracked sessionUID.
        """
        n = self._n
        out: dict[str, object] = {
            k: getattr(n, k) for k in _Counters.__dataclass_fields__ if k != "by_id"
        }
        out["by_packet_id"] = {_id_name(k): v for k, v in sorted(n.by_id.items())}
        out["sessions"] = len(self._sessions)
        out["frame_gaps_by_session"] = {str(s.uid): s.frame_gaps for s in self._sessions.values()}
        return out

    def _session(self, uid: int) -> _Session:
        """State of ``uid``; the least recently seen session is forgotten first."""
        session = self._sessions.get(uid)
        if session is not None:
            self._sessions.move_to_end(uid)
            return session
        chassis = np.array([f"F1-{uid % 100000:05d}-{i:02d}" for i in range(NUM_CARS)], object)
        session = self._sessions[uid] = _Session(uid, chassis)
        if len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def _track_frame(self, session: _Session, frame: int) -> None:
        """Count gaps in overallFrameIdentifier (several packets share a frame).

        The game may send every n-th frame (send rate below frame rate), so a
        gap is a forward step larger than the smallest step seen so far.
        """
        last = session.last_frame
        if last is None:
            session.last_frame = frame
            return
        step = frame - last
        if step < 0:
            self._n.frames_late += 1
            return
        if step == 0:
            return
        session.last_frame = frame
        stride = session.stride
        if stride is None or step < stride:
            session.stride = step
        elif step > stride:
            session.frame_gaps += 1
            self._n.frame_gaps += 1
            self._n.frames_skipped += step - stride

    def _dispatch(
        self, session: _Session, layout: FormatLayout, packet_id: int, data: bytes, now: float
    ) -> F1Batch | None:
        if packet_id == PacketId.CAR_TELEMETRY:
            return self._telemetry_batch(session, data, now)
        if packet_id == PacketId.MOTION:
            session.motion = _cars(data, CAR_MOTION_DTYPE)
        elif packet_id == PacketId.LAP_DATA:
            session.lap = _cars(data, layout.lap_data_dtype)
        elif packet_id == PacketId.SESSION:
            prefix = np.frombuffer(data, SESSION_PREFIX_DTYPE, count=1, offset=HEADER_SIZE)[0]
            session.track = track_name(int(prefix["trackId"])) or "f1"
        else:
            self._n.ignored += 1
        return None

    def _telemetry_batch(self, session: _Session, data: bytes, now: float) -> F1Batch | None:
        idx = _active_cars(data, session.lap)
        if idx.size == 0:
            self._n.no_active_cars += 1
            return None
        columns = {"meta_time": np.full(idx.size, now, dtype=np.float64)}
        columns.update(_telemetry_columns(_cars(data, CAR_TELEMETRY_DTYPE)[idx]))
        columns.update(_motion_columns(session.motion, idx))
        columns.update(_lap_columns(session.lap, idx))
        self._n.batches += 1
        self._n.points += idx.size
        chassis = session.chassis[idx]
        return F1Batch(columns, chassis, session.track, session.uid, idx.astype(np.int64))


def _id_name(packet_id: int) -> str:
    try:
        return PacketId(packet_id).name.lower()
    except ValueError:
        return f"unknown_{packet_id}"


def _cars(data: bytes, dtype: np.dtype) -> np.ndarray:
    """The 22-car array that follows the header, as a read-only view (no copy)."""
    return np.frombuffer(data, dtype, count=NUM_CARS, offset=HEADER_SIZE)


def _active_cars(data: bytes, lap: np.ndarray | None) -> np.ndarray:
    """Indices of car slots worth a row.

    Unused slots are all zero bytes. When lap data is known, a car whose
    ``resultStatus`` is 0 (invalid) is skipped too.
    """
    size = CAR_TELEMETRY_DTYPE.itemsize
    raw = np.frombuffer(data, np.uint8, count=NUM_CARS * size, offset=HEADER_SIZE)
    active = raw.reshape(NUM_CARS, size).any(axis=1)
    if lap is not None:
        active &= lap["resultStatus"] != 0
    return np.flatnonzero(active)


def _f64(values: np.ndarray, scale: float = 1.0) -> np.ndarray:
    out = values.astype(np.float64)
    if scale != 1.0:
        out *= scale
    return out


def _telemetry_columns(cars: np.ndarray) -> dict[str, np.ndarray]:
    """Columns from CarTelemetryData rows; pedals and steer become percent."""
    nan = np.full(len(cars), _NAN)
    cols = {
        "speed_kmh": _f64(cars["speed"]),
        "throttle_pct": _f64(cars["throttle"], 100.0),
        "brake_pct": _f64(cars["brake"], 100.0),
        "steer_pct": _f64(cars["steer"], 100.0),
        "pbrake_f": nan,
        "pbrake_r": nan.copy(),
        "Steering_Angle": nan.copy(),
        "rpm": _f64(cars["engineRPM"]),
        "gear": _f64(cars["gear"]),
        "drs": _f64(cars["drs"]),
    }
    surface, brakes = cars["tyresSurfaceTemperature"], cars["brakesTemperature"]
    for i, wheel in enumerate(_WHEELS):
        cols[f"tyre_surface_temp_{wheel}_c"] = _f64(surface[:, i])
        cols[f"brake_temp_{wheel}_c"] = _f64(brakes[:, i])
    return cols


_MOTION_KEYS = {
    "accx_can": "gForceLongitudinal",  # + = accelerating (see module doc)
    "accy_can": "gForceLateral",  # + = turning left (see module doc)
    "world_x_m": "worldPositionX",
    "world_y_m": "worldPositionY",
    "world_z_m": "worldPositionZ",
}


def _motion_columns(motion: np.ndarray | None, idx: np.ndarray) -> dict[str, np.ndarray]:
    if motion is None:
        return {key: np.full(idx.size, _NAN) for key in _MOTION_KEYS}
    rows = motion[idx]
    return {key: _f64(rows[name]) for key, name in _MOTION_KEYS.items()}


_LAP_KEYS = (
    "lap",
    "lapdist_m",
    "race_position",
    "sector",
    "pit_status",
    "result_status",
    "last_lap_s",
    "current_lap_s",
)


def _lap_columns(lap: np.ndarray | None, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Lap fields in pitwall_rt units: seconds, metres, 1-based sector.

    lapdist_m is NaN while negative (car has not crossed the line yet) and
    last_lap_s is NaN while 0 (no lap completed).
    """
    if lap is None:
        return {key: np.full(idx.size, _NAN) for key in _LAP_KEYS}
    rows = lap[idx]
    lapdist = _f64(rows["lapDistance"])
    lapdist[lapdist < 0] = _NAN
    last = _f64(rows["lastLapTimeInMS"], 1e-3)
    last[last == 0] = _NAN
    return {
        "lap": _f64(rows["currentLapNum"]),
        "lapdist_m": lapdist,
        "race_position": _f64(rows["carPosition"]),
        "sector": _f64(rows["sector"]) + 1.0,
        "pit_status": _f64(rows["pitStatus"]),
        "result_status": _f64(rows["resultStatus"]),
        "last_lap_s": last,
        "current_lap_s": _f64(rows["currentLapTimeInMS"], 1e-3),
    }
