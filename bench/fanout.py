"""WebSocket fan-out: 1,000 clients, 10,000 points/s in, delivery latency out.

A sender process stamps each 40-point UDP datagram with the wall clock
(``meta_time``) and sends 250 of them a second across 20 cars. A client
process holds 1,000 WebSocket connections, each subscribed to one car
(so the machine can carry the traffic: every car's frame still goes to 50
clients). Every 20th client parses its frames and records, per point, the
time from its sending to its delivery. Run at BATCH_MS=50 and 600.

    python bench/fanout.py [--clients 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import socket
import struct
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


def _sender(udp_port: int, seconds: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", udp_port))
    rate = POINTS_PER_S / PER_DATAGRAM
    start = time.perf_counter()
    sent = 0
    i = 0
    while (now := time.perf_counter()) - start < seconds:
        if sent >= (now - start) * rate:
            time.sleep(0.001)
            continue
        stamp = time.time()
        pts = []
        for _ in range(PER_DATAGRAM):
            pts.append(
                {
                    "chassis": f"CAR-{i % CARS:02d}",
                    "meta_time": stamp,
                    "lapdist_m": float(i % 4000),
                    "speed_kmh": 150.0,
                    "lap": 1,
                }
            )
            i += 1
        sock.send(json.dumps(pts).encode())
        sent += 1


class _Client(asyncio.Protocol):
    def __init__(
        self, chassis: str, sample: bool, latencies: list[float], done: asyncio.Event
    ) -> None:
        self.chassis = chassis
        self.sample = sample
        self.latencies = latencies
        self.buf = bytearray()
        self.upgraded = False
        self.connected = done
        self.bytes = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                "GET /ws/realtime HTTP/1.1\r\nHost: x\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        self.bytes += len(data)
        if not self.upgraded:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.upgraded = True
            rest = bytes(self.buf[end + 4 :])
            self.buf.clear()
            sub = json.dumps({"type": "subscribe", "chassis": [self.chassis]}).encode()
            mask = os.urandom(4)
            self.transport.write(
                struct.pack("!BB", 0x81, 0x80 | len(sub))
                + mask
                + bytes(b ^ mask[k % 4] for k, b in enumerate(sub))
            )
            self.connected.set()
            data = rest
        if self.sample:
            self.buf += data
            self._frames(time.time())

    def _frames(self, now: float) -> None:
        buf = self.buf
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            head = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, head = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, head = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < head + n:
                return
            msg = json.loads(bytes(buf[head : head + n]))
            del buf[: head + n]
            if msg.get("type") == "telemetry_update" and not msg.get("snapshot"):
                for p in msg["points"]:
                    t = p["meta_time"]
                    sent = (
                        time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S"))
                        - time.timezone
                        + float(t[19:-1] or 0)
                    )
                    self.latencies.append(now - sent)


async def _clients(port: int, n: int, seconds: float, out: Any, ready: Any) -> None:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    clients = []
    for k in range(n):
        done = asyncio.Event()
        _t, proto = await loop.create_connection(
            lambda k=k, done=done: _Client(f"CAR-{k % CARS:02d}", k % 20 == 0, latencies, done),
            "127.0.0.1",
            port,
        )
        clients.append(proto)
        await done.wait()
    ready.set()
    await asyncio.sleep(seconds)
    out.put((latencies, sum(c.bytes for c in clients)))


def _client_entry(port: int, n: int, seconds: float, out: Any, ready: Any) -> None:
    import uvloop

    uvloop.run(_clients(port, n, seconds, out, ready))


def run(batch_ms: int, n_clients: int, seconds: float) -> list[Any]:
    server = Server(
        "--batch-ms",
        str(batch_ms),
        "--ws-max-clients",
        str(n_clients + 10),
        "--ringbuffer-size",
        "200000",
        "--ws-max-points",
        "30",
    )
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    ready = ctx.Event()
    try:
        clients = ctx.Process(
            target=_client_entry, args=(server.port, n_clients, seconds + 2.0, out, ready)
        )
        clients.start()
        ready.wait(120)
        sender = ctx.Process(target=_sender, args=(server.udp_port, seconds))
        sender.start()
        sender.join()
        latencies, received = out.get(timeout=120)
        clients.join(30)
        health = server.health()
    finally:
        server.stop()
    lat_ms = np.array(latencies[len(latencies) // 10 :]) * 1000.0  # skip warm-up
    p50, p99 = np.percentile(lat_ms, [50, 99])
    ws = health["websocket"]
    return [
        f"{batch_ms} ms",
        n_clients,
        f"{health['accepted'].get('udp', 0) / seconds:,.0f}",
        f"{p50:.1f}",
        f"{p99:.1f}",
        f"{batch_ms + 25}",
        f"{p99 / (batch_ms + 25):.2f}",
        f"{ws['max_tick_ms']:.1f}",
        ws["frames_dropped"],
        f"{received / seconds / 1e6:.1f}",
    ]


def _raise_fd_limit() -> None:
    """1,000 clients need more than the usual 1,024 descriptors (inherited by the server)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def main() -> None:
    _raise_fd_limit()
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    rows = [run(b, args.clients, args.seconds) for b in (50, 600)]
    print(
        table(
            "WebSocket fan-out (point sent -> delivered to a client)",
            [
                "BATCH_MS",
                "clients",
                "points/s in",
                "p50 ms",
                "p99 ms",
                "target p99 ms",
                "p99/target",
                "longest tick ms",
                "frames dropped",
                "MB/s delivered",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
