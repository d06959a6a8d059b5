"""The server's lifecycle: serve -> start-up -> run until a signal -> shut down.

Shutdown, in order, within about two seconds:
1. stop ingest: close the UDP endpoint and ingest what it already received;
2. flush: one last broadcast tick so clients get every accepted point;
3. stop the HTTP site (a lean ingest connection first writes the answer it
   is waiting for), close WebSocket clients with 1001 (going away);
4. tear down the rest (broadcast task, demo) in reverse start-up order.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from functools import partial
from typing import Any

import numpy as np
from aiohttp import web

from .config import Settings
from .web.app import create_app, stop_udp
from .web.keys import HUB, INGESTOR, LEAN_HTTP, PARSER, SETTINGS, UDP_SOCKET
from .web.lean_http import KEEPALIVE_S, LeanIngest, LeanSite
from .web.middleware import JsonErrorProtocol

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 1.0
PROTOCOL_ARGS: dict[str, Any] = {"access_log": None, "keepalive_timeout": KEEPALIVE_S}
"""aiohttp's per-connection protocol arguments, for the runner's own factory
and for the lean path's hand-over alike (None turns the access log off)."""


def install_loop(choice: str) -> str:
    """Pick the event loop implementation by name; returns the one in use."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    return "asyncio"


def tune_gc() -> None:
    """Keep the garbage collector from stalling the loop.

    Ingest allocates a dict per point, so the default thresholds run a
    collection every few hundred points and, now and then, a full one over
    every object the server holds (the model, the tables, the laps): measured
    at 10,000 points/s that alone stalled the loop for up to ~35 ms. After
    start-up, ``gc.freeze`` moves what exists into a generation the collector
    never scans, and larger thresholds make collections rarer. Reference
    counting still frees almost everything at once; only cycles wait longer.
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


GIL_SWITCH_S = 0.001


def tune_gil() -> None:
    """Hand the GIL to the event loop within 1 ms, not 5.

    The loop shares the GIL with the recorder's writer thread (building
    Arrow batches) and the process pool's feeder and result threads
    (pickling). A thread that wants the GIL waits up to the switch interval
    for one running Python code to let go of it; at the default 5 ms those
    waits were the longest event-loop stalls left (4-15 ms with the loop
    thread neither running nor waiting for a core). At 1 ms, bench/e2e.py
    saw no stall of the loop's own over 5 ms in 12 runs, against 5 in 12."""
    sys.setswitchinterval(GIL_SWITCH_S)


def warm_lazy_imports() -> None:
    """Pay numpy's lazy imports before serving, not on the first tick.

    The first plain ``np.unique`` imports ``numpy.ma``: 12 ms, measured as
    the first compute tick's stall of the event loop. Calling it once here
    moves that to start-up (and ``gc.freeze`` then keeps the module out of
    collections)."""
    ids = np.zeros(2, dtype=np.int32)
    np.unique(ids)
    np.unique(ids, return_index=True)


async def serve(settings: Settings, demo: bool = False) -> None:
    app = create_app(settings, demo=demo)
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S, **PROTOCOL_ARGS
    )
    await runner.setup()
    warm_lazy_imports()
    tune_gc()
    tune_gil()
    try:
        site = LeanSite(
            runner,
            _lean_ingest(app, runner),
            settings.HOST,
            settings.PORT,
            shutdown_timeout_s=SHUTDOWN_TIMEOUT_S,
        )
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        _announce(runner, app, settings, demo)
        await stop.wait()
        log.info("shutting down")
        await stop_udp(app)
        app[HUB].tick()
    finally:
        await runner.cleanup()


def _lean_ingest(app: web.Application, runner: web.AppRunner) -> LeanIngest:
    settings = app[SETTINGS]
    assert runner.server is not None  # set up
    return LeanIngest(
        app[INGESTOR],
        app.get(PARSER),
        app[LEAN_HTTP],
        max_body_bytes=settings.MAX_BODY_BYTES,
        api_key=settings.API_KEY,
        aiohttp_protocol=partial(
            JsonErrorProtocol, runner.server, loop=asyncio.get_running_loop(), **PROTOCOL_ARGS
        ),
    )


def _announce(runner: web.AppRunner, app: web.Application, settings: Settings, demo: bool) -> None:
    ports = [addr[1] for addr in runner.addresses if isinstance(addr, tuple)]
    http_port = ports[0] if ports else settings.PORT
    udp_port = app[UDP_SOCKET].getsockname()[1]
    log.info(
        "pitwall-rt listening on http://%s:%d (WebSocket %s, UDP %d)%s",
        settings.HOST,
        http_port,
        settings.WS_PATH,
        udp_port,
        " with demo" if demo else "",
    )
    print(f"pitwall-rt ready: http://localhost:{http_port}  udp:{udp_port}", flush=True)
