"""The hub's fan-out over real sockets: ``web.ws`` handler, aiohttp clients.

The server side is the real WebSocket endpoint and hub in this process, on
127.0.0.1; the clients are real aiohttp WebSocket clients. This covers what
fake transports cannot: frames written straight to uvloop/asyncio transports
arrive whole and in order, and insights that go out in slices across loop
iterations still reach every client, oldest first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from pitwall_rt.broadcast.hub import Hub
from pitwall_rt.config import Settings
from pitwall_rt.ring import RingBuffer
from pitwall_rt.validate import validate_points
from pitwall_rt.web import ws
from pitwall_rt.web.keys import HUB, SETTINGS, WEBSOCKETS

from .serverproc import UNIT_S
from .test_validate import make_tables

NOW = 1_757_184_000.0


@asynccontextmanager
async def serving(hub: Hub) -> AsyncIterator[str]:
    """The WebSocket endpoint on a free port; yields its URL."""
    app = web.Application()
    app[SETTINGS] = Settings()
    app[HUB] = hub
    app[WEBSOCKETS] = set()
    app.router.add_get("/ws", ws.websocket_handler)
    app.on_shutdown.append(ws.close_all)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/ws"
    finally:
        await runner.cleanup()


def make_hub() -> Hub:
    return Hub(
        RingBuffer(1000),
        make_tables(),
        max_buffer_bytes=1_000_000,
        max_points_per_chassis=5,
        stuck_s=10.0,
    )


async def connect(
    session: aiohttp.ClientSession, url: str, subscribe: dict[str, Any]
) -> aiohttp.ClientWebSocketResponse:
    """A client whose subscription the server has applied."""
    sock = await session.ws_connect(url)
    await sock.send_str(json.dumps({"type": "subscribe", **subscribe}))
    while (await receive(sock))["type"] != "subscribed":
        pass
    return sock


async def receive(sock: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await sock.receive(timeout=5 * UNIT_S)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    data: dict[str, Any] = json.loads(message.data)
    return data


async def next_of(sock: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while (data := await receive(sock))["type"] != kind:
        pass
    return data


def test_ws_fanout_sliced_insights_reach_every_client_oldest_first() -> None:
    async def scenario() -> list[list[int]]:
        hub = make_hub()
        hub.outbox.slice_clients = 3  # 25 clients: many loop iterations per message
        async with serving(hub) as url, aiohttp.ClientSession() as session:
            socks = [
                await connect(session, url, {"chassis": ["A"], "channels": ["insights"]})
                for _ in range(25)
            ]
            for lap in (1, 2, 3):
                hub.publish_insights([{"chassis": "A", "lap": lap}, {"chassis": "B", "lap": 0}])
            laps = []
            for sock in socks:
                got = [await next_of(sock, "insight_update") for _ in range(3)]
                laps.append([i["lap"] for m in got for i in m["insights"]])
            return laps

    assert asyncio.run(scenario()) == [[1, 2, 3]] * 25


def test_ws_fanout_tick_sends_each_group_its_own_frame() -> None:
    async def scenario() -> tuple[list[list[str]], list[int], int]:
        hub = make_hub()
        async with serving(hub) as url, aiohttp.ClientSession() as session:
            only_a = [await connect(session, url, {"chassis": ["A"]}) for _ in range(5)]
            full = [await connect(session, url, {"full_rate": True}) for _ in range(5)]
            points = [
                {"chassis": "AB"[k % 2], "lapdist_m": float(k), "meta_time": NOW + k}
                for k in range(20)
            ]
            hub.ring.write(validate_points(points, hub.tables, NOW).rows)
            hub.tick()
            a_frames = [await next_of(s, "telemetry_update") for s in only_a]
            full_frames = [await next_of(s, "telemetry_update") for s in full]
            chassis = [sorted({p["chassis"] for p in m["points"]}) for m in a_frames]
            sizes = [len(m["points"]) for m in full_frames]
            return chassis, sizes, hub.stats.frames_dropped

    chassis, sizes, dropped = asyncio.run(scenario())
    assert chassis == [["A"]] * 5
    assert sizes == [20] * 5
    assert dropped == 0
