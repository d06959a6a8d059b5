"""WebSocket fan-out: 1,000 clients, 10,000 points/s in, delivery latency out.

A sender process stamps each 40-point UDP datagram with the wall clock
(``meta_time``) and sends 250 of them a second across 20 cars. Client
processes (``--procs``, 2) hold 1,000 WebSocket connections between them,
each subscribed to one car (every car's frame goes to 50 clients). Run at
BATCH_MS=50 and 600.

What is measured, and why this way:

- Latency runs from the point's arrival, as the issue defines it: the time
  the server accepted it (``recv_t``, stamped when the UDP receiver
  validated it and kept in the server's recording; the bench reads the
  recording afterwards and matches points by sender stamp and
  ``lapdist_m``). The time from the sender's stamp, which adds the UDP
  queue and the receiver's 2 ms batching, is printed too ("from send").
- "Delivered" is the kernel's receive timestamp of the TCP segment that
  completed a frame (``SO_TIMESTAMPNS``): when the server's bytes reached
  the client's socket. The clients share the machine's two cores with the
  server, so the time a client *reads* a frame also includes its own
  scheduling; that figure is printed too ("read by client").
- One client in ``SAMPLE_EVERY`` reads each frame as it arrives and times
  every point in it. The step is coprime with the number of cars, so the
  sample covers every car's subscription group.
- The other clients are read in bulk every ``--drain-ms`` (100): on loopback
  a reader woken per frame makes the server's ``send`` pay for the wake-up,
  which in a deployment happens on the client's machine. Every client
  counts the frames it receives (WebSocket headers only, no JSON), so
  "clients served" proves the whole fan-out, not just the sample.

    python bench/fanout.py [--clients 1000] [--seconds 10] [--batch-ms 50 600]
                           [--procs 2] [--drain-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import calendar
import functools
import json
import multiprocessing as mp
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Server, table

CARS = 20
POINTS_PER_S = 10_000
PER_DATAGRAM = 40
WARM_UP = 0.1  # the first tenth of the run (start-up of the pool, first ticks) is left out
SAMPLE_EVERY = 19  # coprime with CARS: the sample spans every car's group
SO_TIMESTAMPNS = 35  # Linux asm-generic/socket.h; also the cmsg type
_POINT = re.compile(rb'"meta_time":"([^"]{19})\.(\d{3})Z"[^}]*?"lapdist_m":([0-9.]+)')
_TELEMETRY = b'{"type":"telemetry_update"'


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
        pts = []
        for _ in range(PER_DATAGRAM):
            pts.append(
                {
                    "chassis": f"CAR-{i % CARS:02d}",
                    "meta_time": 0.0,
                    "lapdist_m": float(i % 4000),
                    "speed_kmh": 150.0,
                    "lap": 1,
                }
            )
            i += 1
        stamp = time.time()  # the last thing before the send
        for p in pts:
            p["meta_time"] = stamp
        sock.send(json.dumps(pts).encode())
        sent += 1


# -- the WebSocket handshake, shared by both kinds of client --------------------


def _same(proto: _Counting) -> _Counting:
    return proto


def _upgrade_request() -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        "GET /ws/realtime HTTP/1.1\r\nHost: x\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _masked_text(payload: bytes) -> bytes:
    """A client frame must be masked (RFC 6455 section 5.3); payload < 126 bytes."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[k % 4] for k, b in enumerate(payload))
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + body


def _subscribe(chassis: str) -> bytes:
    return _masked_text(json.dumps({"type": "subscribe", "chassis": [chassis]}).encode())


class _FrameCounter:
    """Counts server frames in a byte stream by reading only their headers."""

    __slots__ = ("frames", "head", "skip")

    def __init__(self) -> None:
        self.frames = 0
        self.skip = 0  # payload bytes of the current frame still to come
        self.head = b""  # a frame header split across two reads

    def feed(self, data: bytes | memoryview) -> None:
        if self.head:
            data = self.head + bytes(data)
            self.head = b""
        end = len(data)
        pos = self.skip
        while pos < end:
            if end - pos < 2:
                break
            n = data[pos + 1] & 0x7F
            if n < 126:
                pos += 2 + n
            elif n == 126:
                if end - pos < 4:
                    break
                pos += 4 + int.from_bytes(data[pos + 2 : pos + 4], "big")
            else:
                if end - pos < 10:
                    break
                pos += 10 + int.from_bytes(data[pos + 2 : pos + 10], "big")
            self.frames += 1
        if pos >= end:
            self.skip = pos - end
        else:
            self.skip = 0
            self.head = bytes(data[pos:])


class _Counting(asyncio.Protocol):
    """A client that receives everything and counts frames, nothing more."""

    def __init__(self, chassis: str, connected: asyncio.Event) -> None:
        self.chassis = chassis
        self.connected = connected
        self.counter = _FrameCounter()
        self.upgraded = False
        self.pending = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(_upgrade_request())

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.pending += data
            end = self.pending.find(b"\r\n\r\n")
            if end < 0:
                return
            self.upgraded = True
            data, self.pending = self.pending[end + 4 :], b""
            self.transport.write(_subscribe(self.chassis))
            self.connected.set()
        self.counter.feed(data)


class _Draining:
    """A client read in bulk every ``--drain-ms``: no wake-up per frame.

    On loopback the server's ``send`` runs the receiving side's TCP input
    and, when a reader waits in epoll, its wake-up: client work that a real
    deployment does on the client's machine. Reading in bulk removes the
    wake-ups (the TCP input stays, so the server still pays that part) and
    still receives and counts every frame."""

    def __init__(self, sock: socket.socket, counter: _FrameCounter) -> None:
        self.sock = sock
        self.counter = counter

    def drain(self, buf: bytearray, view: memoryview) -> None:
        while True:
            try:
                n = self.sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            if not n:
                return
            self.counter.feed(view[:n])


class _Sampling:
    """A raw-socket client that times every point it gets: kernel receive
    timestamp (delivered) and the moment this process read it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.counter = _FrameCounter()
        self.buf = bytearray()
        # (sent ms, lapdist_m, delivered, read, newest of its frame) per point
        self.points: list[tuple[int, float, float, float, bool]] = []
        self._seconds: dict[bytes, int] = {}

    def on_readable(self) -> None:
        while True:
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(1 << 20, 64)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                return
            now = time.time()
            kernel = now
            for level, kind, raw in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    kernel = sec + nsec * 1e-9
            self.counter.feed(data)
            self.buf += data
            self._frames(kernel, now)

    def _frames(self, kernel: float, now: float) -> None:
        buf = self.buf
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            head = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, head = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, head = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < head + n:
                return
            payload = bytes(buf[head : head + n])
            del buf[: head + n]
            if payload.startswith(_TELEMETRY) and b'"snapshot":true' not in payload:
                found = _POINT.findall(payload)
                for k, (whole, millis, dist) in enumerate(found, 1 - len(found)):
                    sent_ms = self._epoch(whole) * 1000 + int(millis)
                    self.points.append((sent_ms, float(dist), kernel, now, k == 0))

    def _epoch(self, whole: bytes) -> int:
        seconds = self._seconds.get(whole)
        if seconds is None:
            parsed = time.strptime(whole.decode(), "%Y-%m-%dT%H:%M:%S")
            seconds = self._seconds[whole] = calendar.timegm(parsed)
        return seconds


def _open(port: int, chassis: str, timestamps: bool) -> tuple[socket.socket, bytes]:
    """A subscribed, non-blocking WebSocket and the bytes after its handshake."""
    sock = socket.create_connection(("127.0.0.1", port))
    if timestamps:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.sendall(_upgrade_request())
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(4096)
    sock.sendall(_subscribe(chassis))
    sock.setblocking(False)
    return sock, reply[reply.find(b"\r\n\r\n") + 4 :]


def _open_sampling(port: int, chassis: str) -> _Sampling:
    sock, rest = _open(port, chassis, timestamps=True)
    client = _Sampling(sock)
    client.counter.feed(rest)
    client.buf += rest
    return client


def _open_draining(port: int, chassis: str) -> _Draining:
    sock, rest = _open(port, chassis, timestamps=False)
    counter = _FrameCounter()
    counter.feed(rest)
    return _Draining(sock, counter)


async def _clients(
    port: int, ids: range, seconds: float, drain_s: float, out: Any, ready: Any
) -> None:
    loop = asyncio.get_running_loop()
    counters: list[_FrameCounter] = []
    sampling: list[_Sampling] = []
    draining: list[_Draining] = []
    for k in ids:
        chassis = f"CAR-{k % CARS:02d}"
        if k % SAMPLE_EVERY == 0:
            client = _open_sampling(port, chassis)
            loop.add_reader(client.sock.fileno(), client.on_readable)
            sampling.append(client)
            counters.append(client.counter)
        elif drain_s:
            draining.append(_open_draining(port, chassis))
            counters.append(draining[-1].counter)
        else:
            proto = _Counting(chassis, asyncio.Event())
            await loop.create_connection(functools.partial(_same, proto), "127.0.0.1", port)
            await proto.connected.wait()
            counters.append(proto.counter)
    ready.release()
    end = loop.time() + seconds
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while loop.time() < end:
        await asyncio.sleep(drain_s or seconds)
        for d in draining:
            d.drain(buf, view)
    out.put(([c.frames for c in counters], [x for s in sampling for x in s.points]))


def _client_entry(
    port: int, ids: range, seconds: float, drain_s: float, out: Any, ready: Any
) -> None:
    import uvloop

    uvloop.run(_clients(port, ids, seconds, drain_s, out, ready))


def _accepted_times(data_dir: Path) -> dict[tuple[int, float], float]:
    """(sender stamp in ms, lapdist_m) -> recv_t, from the server's recording."""
    from pitwall_rt.recording import epoch_seconds, read_session, sessions_dir

    accepted: dict[tuple[int, float], float] = {}
    for session in sessions_dir(data_dir).iterdir():
        recorded = read_session(session)
        sent_ms = np.round(epoch_seconds(recorded.column("meta_time")) * 1000.0)
        dist = recorded.column("lapdist_m").to_numpy()
        recv = epoch_seconds(recorded.column("recv_t"))
        keys = zip(sent_ms.astype(np.int64).tolist(), dist.tolist(), strict=True)
        accepted.update(zip(keys, recv.tolist(), strict=True))
    return accepted


def _latencies(
    points: list[tuple[int, float, float, float, bool]],
    accepted: dict[tuple[int, float], float],
    warm_s: float,
    end_s: float,
) -> dict[str, np.ndarray]:
    """Per point, in ms: from accepted and from sent to delivered, from
    accepted to read; and from accepted to delivered for each frame's
    newest point while points were still flowing (after the sender stops,
    the last frame's newest point waits for a tick)."""
    rows = []
    unmatched = 0
    for sent_ms, dist, delivered, read, newest in points:
        recv = accepted.get((sent_ms, dist))
        sent = sent_ms / 1000.0
        if recv is None:
            unmatched += 1
        elif sent >= warm_s:
            rows.append((delivered - recv, delivered - sent, read - recv, newest, delivered))
    table = np.array(rows)
    flowing = (table[:, 3] == 1.0) & (table[:, 4] < end_s)
    return {
        "accepted": table[:, 0] * 1000.0,
        "sent": table[:, 1] * 1000.0,
        "read": table[:, 2] * 1000.0,
        "newest": table[flowing, 0] * 1000.0,
        "unmatched": np.array([unmatched]),
    }


def run(batch_ms: int, n_clients: int, seconds: float, procs: int, drain_s: float) -> list[Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="fanout-"))
    server = Server(
        "--batch-ms",
        str(batch_ms),
        "--ws-max-clients",
        str(n_clients + 10),
        "--ringbuffer-size",
        "200000",
        "--ws-max-points",
        "30",
        "--data-dir",
        str(data_dir),
    )
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    ready = ctx.Semaphore(0)
    workers = []
    try:
        for p in range(procs):
            ids = range(p, n_clients, procs)
            proc = ctx.Process(
                target=_client_entry,
                args=(server.port, ids, seconds + 2.0, drain_s, out, ready),
            )
            proc.start()
            workers.append(proc)
        for _ in workers:
            if not ready.acquire(timeout=120):
                raise RuntimeError("clients did not connect")
        started = time.time()
        sender = ctx.Process(target=_sender, args=(server.udp_port, seconds))
        sender.start()
        sender.join()
        frames: list[int] = []
        points: list[tuple[int, float, float, float, bool]] = []
        for _ in workers:
            f, p = out.get(timeout=120)
            frames += f
            points += p
        for proc in workers:
            proc.join(30)
        health = server.health()
    finally:
        server.stop()
    try:
        accepted = _accepted_times(data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    lat = _latencies(points, accepted, started + WARM_UP * seconds, started + seconds)
    p50, p99 = np.percentile(lat["accepted"], [50, 99])
    median_frames = float(np.median(frames))
    served = sum(1 for f in frames if f >= 0.9 * median_frames)
    ws = health["websocket"]
    return [
        f"{batch_ms} ms",
        f"{served}/{n_clients}",
        f"{health['accepted'].get('udp', 0) / seconds:,.0f}",
        f"{p50:.1f}",
        f"{p99:.1f}",
        f"{batch_ms + 25}",
        f"{p99 / (batch_ms + 25):.2f}",
        f"{np.percentile(lat['sent'], 99):.1f}",
        f"{np.percentile(lat['read'], 99):.1f}",
        f"{np.percentile(lat['newest'], 99):.1f}",
        f"{ws['max_tick_ms']:.1f}",
        f"{health['loop']['max_lag_ms']:.1f}",
        ws["frames_dropped"],
        f"{ws['bytes_sent'] / seconds / 1e6:.1f}",
        int(lat["unmatched"][0]),
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
    parser.add_argument("--batch-ms", type=int, nargs="+", default=[50, 600])
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument(
        "--drain-ms",
        type=float,
        default=100.0,
        help="read the non-sampled clients in bulk this often; 0: on every wake-up",
    )
    args = parser.parse_args()
    rows = [
        run(b, args.clients, args.seconds, args.procs, args.drain_ms / 1000.0)
        for b in args.batch_ms
    ]
    print(
        table(
            "WebSocket fan-out (point accepted -> frame at the client's socket)",
            [
                "BATCH_MS",
                "clients served",
                "points/s in",
                "p50 ms",
                "p99 ms",
                "target p99 ms",
                "p99/target",
                "p99 from send ms",
                "p99 read by client ms",
                "newest point p99 ms",
                "longest tick ms",
                "longest loop stall ms",
                "frames dropped",
                "MB/s sent",
                "unmatched points",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
