"""F1 game packets: decode rate in one process, and what the server takes lossless.

A 60 Hz grid sends car telemetry, motion and lap data for 22 cars each
frame: about 3 datagrams a frame, ~180-300 datagrams/s. The bench replays a
real F1 25 capture (motion, lap data, car telemetry, with the frame
counters advanced) and reports:

* the pure decoder's packets/s and points/s in this process;
* the highest datagram rate the server accepts with zero loss, beside a bare
  Python ``recv_into`` receiver of the same datagrams in the same run, as
  grids (300 datagrams/s each).

    python bench/f1.py
"""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Server, table
from ingest import RawCeiling, find_lossless

from pitwall_rt.f1 import F1Decoder

DATA = (
    Path(__file__).resolve().parents[1] / "tests" / "data" / "f1" / "f1-telemetry-client" / "2025"
)
GRID_DATAGRAMS_S = 300
# Header offsets (F1 25): frameIdentifier at 23, overallFrameIdentifier at 27.
_FRAME_AT, _OVERALL_AT = 23, 27


def frames(count: int) -> list[bytes]:
    """``count`` frames of (motion, lap data, telemetry), frame ids counting up."""
    motion = (DATA / "L01_id00_motion.bin").read_bytes()
    lap = (DATA / "L03_id02_lapData.bin").read_bytes()
    telemetry = (DATA / "L07_id06_carTelemetry.bin").read_bytes()
    out = []
    for frame in range(count):
        for packet in (motion, lap, telemetry):
            buf = bytearray(packet)
            struct.pack_into("<II", buf, _FRAME_AT, frame, frame)
            out.append(bytes(buf))
    return out


def decode_rate(packets: list[bytes], seconds: float = 2.0) -> tuple[float, float]:
    decoder = F1Decoder()
    done, points = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for packet in packets:
            batch = decoder.feed(packet, 1.7e9)
            if batch is not None:
                points += len(batch)
        done += len(packets)
    elapsed = time.perf_counter() - start
    return done / elapsed, points / elapsed


def main() -> None:
    packets = frames(600)
    pps, points_s = decode_rate(packets)
    rates = [300, 1_500, 3_000, 6_000, 9_000, 12_000, 15_000, 20_000, 30_000]
    raw = RawCeiling(parse=False)
    server = Server("--ringbuffer-size", "2000000")
    try:
        ceiling, raw_notes = find_lossless(raw.port, raw.received, packets, 1, rates, 2.0)
        before = server.accepted("f1")
        ours, notes = find_lossless(
            server.udp_port, lambda: int(server.health()["f1"]["packets"]), packets, 1, rates, 2.0
        )
        points_per_datagram = (server.accepted("f1") - before) / max(
            1, server.health()["f1"]["packets"]
        )
    finally:
        server.stop()
        raw.stop()
    print("# raw:    " + "\n#         ".join(raw_notes), file=sys.stderr)
    print("# server: " + "\n#         ".join(notes), file=sys.stderr)
    rows = [
        [
            "decoder alone, in-process",
            f"{pps:,.0f}",
            f"{points_s:,.0f}",
            f"{pps / GRID_DATAGRAMS_S:,.0f}",
            "",
        ],
        [
            "server, zero loss",
            f"{ours:,}",
            f"{ours * points_per_datagram:,.0f}",
            f"{ours / GRID_DATAGRAMS_S:,.0f}",
            f"{ours / ceiling:.2f}" if ceiling else "n/a",
        ],
        [
            "bare recv_into, zero loss",
            f"{ceiling:,}",
            "",
            f"{ceiling / GRID_DATAGRAMS_S:,.0f}",
            "1.00",
        ],
    ]
    print(
        table(
            "F1 25 packets (motion + lap data + car telemetry, 22 cars)",
            ["path", "datagrams/s", "points/s", "60 Hz grids", "vs bare receiver"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
