"""End to end: UDP point in -> insight_update out, at 10,000 points/s across 20 cars.

A sender process sends 40-point datagrams stamped with the wall clock; a
WebSocket client subscribed to insights measures, for every insight, the
time from the sending of the newest point it covers (its ``t``) to its
arrival. The server's own health gives the time each batch spent in the
pool and the longest event-loop stall. Run at BATCH_MS=50 and 600.

    python bench/e2e.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Server, table

CARS = 20
POINTS_PER_S = 10_000
PER_DATAGRAM = 40
LAP_M = 3674.67  # Barber, TRD centre line


def _sender(udp_port: int, seconds: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", udp_port))
    rate = POINTS_PER_S / PER_DATAGRAM
    hz_per_car = POINTS_PER_S / CARS
    start = time.perf_counter()
    sent, i = 0, 0
    while (now := time.perf_counter()) - start < seconds:
        if sent >= (now - start) * rate:
            time.sleep(0.0005)
            continue
        stamp = time.time()
        pts = []
        for _ in range(PER_DATAGRAM):
            car, k = i % CARS, i // CARS
            dist = (k / hz_per_car * 45.0 + car * 150.0) % LAP_M  # 45 m/s
            pts.append(
                {
                    "chassis": f"CAR-{car:02d}",
                    "track": "barber",
                    "meta_time": stamp,
                    "lap": 1 + int((k / hz_per_car * 45.0 + car * 150.0) // LAP_M),
                    "lapdist_m": dist,
                    "speed_kmh": 162.0,
                    "accx_can": -0.3,
                    "accy_can": 0.9 * np.sin(dist / 200.0),
                    "pbrake_f": 10.0,
                }
            )
            i += 1
        sock.send(json.dumps(pts).encode())
        sent += 1


async def _listen(url: str, seconds: float) -> list[float]:
    import aiohttp

    lat: list[float] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"type": "subscribe", "channels": ["insights"]}))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                msg = await asyncio.wait_for(ws.receive(), 1.0)
            except TimeoutError:
                continue
            data = json.loads(msg.data)
            if data.get("type") == "insight_update":
                now = time.time()
                lat.extend(now - ins["t"] for ins in data["insights"] if ins.get("t"))
    return lat


def _listen_entry(url: str, seconds: float, out: Any) -> None:
    out.put(asyncio.run(_listen(url, seconds)))


def run(batch_ms: int, seconds: float) -> list[Any]:
    server = Server("--batch-ms", str(batch_ms), "--ringbuffer-size", "200000")
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    try:
        listener = ctx.Process(
            target=_listen_entry,
            args=(f"ws://127.0.0.1:{server.port}/ws/realtime", seconds + 1, out),
        )
        listener.start()
        time.sleep(0.5)
        sender = ctx.Process(target=_sender, args=(server.udp_port, seconds))
        sender.start()
        sender.join()
        lat = np.array(out.get(timeout=60)) * 1000.0
        listener.join(10)
        health = server.health()
    finally:
        server.stop()
    lat = lat[len(lat) // 10 :]
    p50, p99 = np.percentile(lat, [50, 99])
    comp = health["compute"]
    mean_batch = comp["rows"] / max(1, comp["batches"])
    return [
        f"{batch_ms}",
        f"{health['accepted'].get('udp', 0) / seconds:,.0f}",
        f"{p50:.1f}",
        f"{p99:.1f}",
        f"{mean_batch:,.0f}",
        f"{comp['max_ms']:.1f}",
        f"{comp['last_ms']:.1f}",
        f"{health['loop']['max_lag_ms']:.1f}",
        comp["points_lost"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    rows = [run(b, args.seconds) for b in (50, 600)]
    print(
        table(
            "UDP in -> insight_update out (20 cars, 10,000 points/s)",
            [
                "BATCH_MS",
                "points/s in",
                "p50 ms",
                "p99 ms",
                "rows/batch",
                "pool max ms",
                "pool last ms",
                "loop max stall ms",
                "points lost",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
