"""A small WebSocket test client (aiohttp) that records every message."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Recording:
    messages: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None

    def points(self, kind: str = "telemetry_update") -> list[dict[str, Any]]:
        return [
            p
            for m in self.messages
            if m["type"] == kind and not m.get("snapshot")
            for p in m["points"]
        ]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]


async def record(
    url: str,
    seconds: float,
    subscribe: dict[str, Any] | None = None,
    until: Any = None,
    headers: dict[str, str] | None = None,
) -> Recording:
    """Connect, optionally subscribe, and record messages for ``seconds``
    (or until ``until(recording)`` is true, or the server closes)."""
    out = Recording()
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers) as ws:
        if subscribe is not None:
            await ws.send_str(json.dumps(subscribe))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            try:
                msg = await asyncio.wait_for(ws.receive(), remaining)
            except TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.TEXT:
                out.messages.append(json.loads(msg.data))
                if until is not None and until(out):
                    break
            elif msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.ERROR,
            ):
                break
        out.close_code = ws.close_code
    return out
