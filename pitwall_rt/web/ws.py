"""The WebSocket endpoint on ``WS_PATH``: register with the hub, read subscriptions.

Outbound traffic never goes through this handler: the hub writes shared
frames straight to the transport. This handler only reads what the client
sends (subscribe messages, pings) and answers a bad message with
``{"type": "error", "error": ...}`` without dropping the connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from ..broadcast.hub import Client
from ..broadcast.subscription import SubscriptionError, apply_message
from .keys import HUB, SETTINGS, WEBSOCKETS

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE = 64 * 1024
CLOSE_GRACE_S = 2.0


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    app = request.app
    hub = app[HUB]
    if len(hub.clients) >= app[SETTINGS].WS_MAX_CLIENTS:
        return web.json_response({"error": "too many WebSocket clients"}, status=503)
    ws = web.WebSocketResponse(compress=False, heartbeat=30.0, max_msg_size=MAX_CLIENT_MESSAGE)
    await ws.prepare(request)
    transport = request.transport
    if transport is None:
        return ws
    sockets = app[WEBSOCKETS]
    sockets.add(ws)
    client = Client(transport, close=lambda code, reason: _close_later(ws, transport, code, reason))
    hub.add(client)
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                hub.reply(client, _handle_text(client, message.data))
            elif message.type == WSMsgType.BINARY:
                hub.reply(client, {"type": "error", "error": "send JSON text frames"})
    finally:
        hub.remove(client)
        sockets.discard(ws)
    return ws


def _handle_text(client: Client, text: str) -> dict[str, Any]:
    """Apply a client message; returns the answer to send back."""
    try:
        message: Any = orjson.loads(text)
        client.subscription = apply_message(client.subscription, message)
    except orjson.JSONDecodeError:
        return {"type": "error", "error": "message is not JSON"}
    except SubscriptionError as exc:
        return {"type": "error", "error": str(exc)}
    return {"type": "subscribed", "subscription": _describe(client)}


def _describe(client: Client) -> dict[str, Any]:
    sub = client.subscription
    return {
        "chassis": None if sub.chassis is None else sorted(sub.chassis),
        "channels": sorted(sub.channels),
        "full_rate": sub.full_rate,
    }


_closing: set[asyncio.Task[None]] = set()


def _close_later(
    ws: web.WebSocketResponse, transport: asyncio.BaseTransport, code: int, reason: str
) -> None:
    task = asyncio.get_running_loop().create_task(_close(ws, code, reason, transport))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def _close(
    ws: web.WebSocketResponse,
    code: int,
    reason: str,
    transport: asyncio.BaseTransport | None = None,
) -> None:
    """Close politely, but never wait on a client that does not read."""
    try:
        await asyncio.wait_for(ws.close(code=code, message=reason.encode()), CLOSE_GRACE_S)
    except (TimeoutError, ConnectionError, RuntimeError):
        if transport is not None and not transport.is_closing():
            transport.abort()  # type: ignore[attr-defined]


async def close_all(app: web.Application) -> None:
    """On shutdown: every client gets 1001 (going away), all at once."""
    registered: set[web.WebSocketResponse] = app[WEBSOCKETS]
    sockets = list(registered)
    if sockets:
        await asyncio.gather(
            *(_close(ws, WSCloseCode.GOING_AWAY, "server shutting down") for ws in sockets)
        )
