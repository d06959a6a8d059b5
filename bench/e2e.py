"""End to end: UDP point in -> insight_update out, at 10,000 points/s across 20 cars.

A sender process sends 40-point datagrams stamped with the wall clock; a
WebSocket client subscribed to insights measures, for every insight, the
time from the sending of the newest point it covers (its ``t``) to its
arrival. The server's own health gives the time each tick's job spent in
the pool (round trip p50/p99/max, and the worker's own compute time), the
separate pit-window jobs, and the event loop's longest stall plus how many
stalls passed 5 ms while the stream ran (the longest-stall figure also
covers start-up and the idle second before the stream). Each stall figure is
given twice: as measured, and less the time the loop thread was runnable
but waiting for a core ("own"), which the bench's other processes (sender,
listener, pool workers, parse process) compete for on a small machine.
On a VM the host may also run something else on our CPUs ("steal"): no
thread runs then and none is counted as waiting, so the bench reports the
VM's steal time during the stream beside the stalls.

Cars run at 45 m/s, so a lap of Barber takes 82 s and a short run sees no
lap end: ``--lap-s 10`` makes every car cross the line every 10 s (same
speed channel, faster lap distance), which exercises the laps, the model
and the pit windows. By default both workloads run at BATCH_MS=50 and 600.

    python bench/e2e.py [--seconds 10] [--batch-ms 50 600] [--lap-s 82 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
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
REAL_LAP_S = LAP_M / 45.0


def _sender(udp_port: int, seconds: float, lap_s: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", udp_port))
    rate = POINTS_PER_S / PER_DATAGRAM
    hz_per_car = POINTS_PER_S / CARS
    speed_mps = LAP_M / lap_s
    spacing_m = LAP_M / CARS
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
            travelled_m = k / hz_per_car * speed_mps + car * spacing_m
            dist = travelled_m % LAP_M
            pts.append(
                {
                    "chassis": f"CAR-{car:02d}",
                    "track": "barber",
                    "meta_time": stamp,
                    "lap": 1 + int(travelled_m // LAP_M),
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


def _ms(counters: dict[str, Any], name: str) -> str:
    """A health figure in ms, or "-" where this server does not report it."""
    value = counters.get(name)
    return "-" if value is None else f"{value:.1f}"


def host_steal_ms() -> float:
    """Time the hypervisor ran something else on this VM's CPUs (all of them,
    since boot; /proc/stat's steal column, 10 ms resolution), or NaN off Linux.

    While a CPU is stolen no thread on it runs and none is counted as waiting
    for a core, so a stall it causes looks like the loop's own."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) * 1000.0 / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _delta(after: dict[str, Any], before: dict[str, Any], name: str) -> str:
    """How much a health counter grew during the stream, or "-"."""
    if name not in after:
        return "-"
    return f"{after[name] - before[name]:.0f}"


def run(batch_ms: int, seconds: float, lap_s: float) -> list[Any]:
    server = Server("--batch-ms", str(batch_ms), "--ringbuffer-size", "200000")
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    try:
        listener = ctx.Process(
            target=_listen_entry,
            args=(f"ws://127.0.0.1:{server.port}/ws/realtime", seconds + 1, out),
        )
        listener.start()
        time.sleep(1.0)
        before = server.health()["loop"]
        steal_before = host_steal_ms()
        sender = ctx.Process(target=_sender, args=(server.udp_port, seconds, lap_s))
        sender.start()
        sender.join()
        steal = host_steal_ms() - steal_before
        lat = np.array(out.get(timeout=60)) * 1000.0
        listener.join(10)
        health = server.health()
    finally:
        server.stop()
    lat = lat[len(lat) // 10 :]
    p50, p99 = np.percentile(lat, [50, 99]) if len(lat) else (np.nan, np.nan)
    comp, loop = health["compute"], health["loop"]
    mean_batch = comp["rows"] / max(1, comp["batches"])
    return [
        f"{batch_ms}",
        f"{lap_s:.0f}",
        f"{health['accepted'].get('udp', 0) / seconds:,.0f}",
        f"{mean_batch:,.0f}",
        f"{_ms(comp, 'pool_p50_ms')} / {_ms(comp, 'pool_p99_ms')} / {_ms(comp, 'max_ms')}",
        _ms(comp, "job_max_ms"),
        f"{comp.get('pit_windows', '-')} in {comp.get('pit_jobs', '-')} jobs",
        f"{_ms(comp, 'pit_p50_ms')} / {_ms(comp, 'pit_max_ms')}",
        f"{loop['max_lag_ms']:.1f} / {_ms(loop, 'max_own_lag_ms')}",
        f"{loop['stalls_over_5ms'] - before['stalls_over_5ms']}"
        f" / {_delta(loop, before, 'own_stalls_over_5ms')}",
        f"{_delta(loop, before, 'cpu_wait_ms')}",
        f"{steal:.0f}",
        f"{p50:.1f} / {p99:.1f}",
        comp["points_lost"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="stream length per run")
    parser.add_argument("--batch-ms", type=int, nargs="+", default=[50, 600])
    parser.add_argument(
        "--lap-s", type=float, nargs="+", default=[REAL_LAP_S, 4.0], help="lap time per car"
    )
    args = parser.parse_args()
    rows = [run(b, args.seconds, lap) for lap in args.lap_s for b in args.batch_ms]
    print(
        table(
            f"UDP in -> insight_update out (20 cars, 10,000 points/s, {args.seconds:g} s per run)",
            [
                "BATCH_MS",
                "lap s",
                "points/s in",
                "rows/tick",
                "tick pool ms p50 / p99 / max",
                "tick worker max ms",
                "pit windows",
                "pit job ms p50 / max",
                "loop max stall ms since start: all / own",
                "stalls > 5 ms in run: all / own",
                "loop waited for a core, ms",
                "host steal ms (all CPUs)",
                "latency ms p50 / p99",
                "points lost",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
