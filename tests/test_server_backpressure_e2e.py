"""End to end: a WebSocket client that never reads, beside one that does.

The real server process, real sockets. The stuck client must cost bounded
memory, must not delay the reading client, and must be dropped, counted and
closed; the reading client must get every point.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from .serverproc import UNIT_S, running, wait_for


def _masked_text_frame(payload: bytes) -> bytes:
    """A client->server text frame; RFC 6455 5.3 requires clients to mask."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + body


def _stuck_client(port: int) -> socket.socket:
    """Handshake, subscribe at full rate, then never read again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/realtime HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.sendall(_masked_text_frame(b'{"type":"subscribe","full_rate":true}'))
    return sock


def _sender(srv: Any, stop: threading.Event, sent: list[int]) -> None:
    i = 0
    while not stop.is_set():
        batch = [
            {
                "chassis": f"BP-{k % 4}",
                "meta_time": 1.7e9 + i + k * 1e-3,
                "lapdist_m": float(i + k),
                "speed_kmh": 150.0,
                "lap": 1,
                "rpm": 6000.0,
                "throttle_pct": 50.0,
            }
            for k in range(200)
        ]
        status, body = srv.post_json("/api/ingest", batch)
        assert status == 200 and body["accepted"] == 200
        sent.append(200)
        i += 200
        time.sleep(0.05)


def test_server_stuck_client_is_dropped_and_closed_while_reader_gets_every_point(
    tmp_path: Path,
) -> None:
    args = (
        "--batch-ms",
        "50",
        "--max-ws-buffer",
        "300000",
        "--ws-stuck-s",
        "2",
        "--ringbuffer-size",
        "200000",
    )
    with running(tmp_path, *args) as srv:

        async def reader(stop: threading.Event) -> tuple[int, list[float]]:
            count, gaps, last = 0, [], None
            async with aiohttp.ClientSession() as session, session.ws_connect(srv.ws_url) as ws:
                await ws.send_str(
                    json.dumps({"type": "subscribe", "full_rate": True, "channels": ["telemetry"]})
                )
                deadline = time.monotonic() + 60 * UNIT_S
                while not (stop.is_set() and count >= sum(sent)):
                    assert time.monotonic() < deadline, f"reader got {count} of {sum(sent)}"
                    try:
                        msg = await asyncio.wait_for(ws.receive(), 0.5)
                    except TimeoutError:
                        continue
                    data = json.loads(msg.data)
                    if data["type"] != "telemetry_update" or data.get("snapshot"):
                        continue
                    now = time.monotonic()
                    if last is not None:
                        gaps.append(now - last)
                    last = now
                    count += len(data["points"])
            return count, gaps

        sent: list[int] = []
        stop = threading.Event()
        stuck = _stuck_client(srv.port)
        rss_before = srv.rss_bytes()
        sender = threading.Thread(target=_sender, args=(srv, stop, sent))
        loop_result: dict[str, Any] = {}

        def run_reader() -> None:
            loop_result["value"] = asyncio.run(reader(stop))

        reader_thread = threading.Thread(target=run_reader)
        reader_thread.start()
        time.sleep(0.3)
        sender.start()
        wait_for(
            lambda: srv.health()["websocket"]["clients_closed_slow"] == 1,
            30 * UNIT_S,
            "the stuck client to be closed",
        )
        rss_peak = srv.rss_bytes()
        stop.set()
        sender.join()
        reader_thread.join(30 * UNIT_S)
        count, gaps = loop_result["value"]

        health = srv.health()
        assert count == sum(sent) == health["accepted"]["http"]
        assert health["websocket"]["frames_dropped"] > 0
        wait_for(
            lambda: srv.health()["websocket"]["clients"] == 0, 10 * UNIT_S, "both clients gone"
        )
        assert health["ring"]["lost_before_broadcast"] == 0
        # Bounded memory: the stuck client may hold at most MAX_WS_BUFFER plus a frame.
        assert rss_peak - rss_before < 64 * 1024 * 1024
        # The reader kept getting batches while the other client was stuck.
        assert max(gaps) < 2 * UNIT_S
        stuck.settimeout(10 * UNIT_S)
        closed = False
        try:
            while stuck.recv(65536):
                pass
            closed = True
        except ConnectionResetError:
            closed = True
        assert closed
        stuck.close()
