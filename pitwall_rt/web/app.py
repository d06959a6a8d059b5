"""The aiohttp application: state in typed keys, one cleanup context per resource.

``create_app(settings)`` builds the in-memory core (tables, ring, ingest,
hub) and registers each I/O resource as a cleanup context, so a resource is
torn down exactly when its start-up succeeded, in reverse order:
UDP receiver -> broadcast tick -> demo source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from .. import row_scan
from ..broadcast.hub import Hub
from ..compute.runner import ComputeRunner
from ..config import ConfigError, Settings
from ..ingest.f1_source import F1Ingest
from ..ingest.parse_process import ParseProcess
from ..ingest.pipeline import Ingestor
from ..ingest.s3 import S3Poller
from ..ingest.udp import UdpReceiver, UdpSource, make_socket
from ..loopwatch import LoopStats, watch_loop
from ..recording import FLUSH_INTERVAL_S, Recorder
from ..ring import RingBuffer
from ..schema import StringTable
from ..stats import IngestStats
from ..tracks import Track, TrackFileError, load_tracks
from ..validate import Tables
from . import api, api_strategy, ws
from .keys import (
    COMPUTE,
    F1,
    HUB,
    INGESTOR,
    LEAN_HTTP,
    LOOP_STATS,
    PARSER,
    RECORDER,
    RING,
    S3,
    SETTINGS,
    TABLES,
    TRACKS,
    UDP,
    UDP_SOCKET,
    WEBSOCKETS,
)
from .lean_http import LeanStats
from .middleware import error_middleware, make_auth_middleware

log = logging.getLogger(__name__)


def create_app(settings: Settings, demo: bool = False) -> web.Application:
    """Build the application; nothing binds or starts until it runs.

    Raises ConfigError for a track file that exists but can't be read."""
    tracks = _load_tracks(settings.TRACK_SECTORS_PATH)
    middlewares = [error_middleware]
    if settings.API_KEY:
        middlewares.append(make_auth_middleware(settings.API_KEY, ("/api/", settings.WS_PATH)))
    app = web.Application(client_max_size=settings.MAX_BODY_BYTES, middlewares=middlewares)
    tables = Tables(
        chassis=StringTable(settings.MAX_CHASSIS),
        track=StringTable(settings.MAX_TRACKS, reserved=("",)),
    )
    ring = RingBuffer(settings.RINGBUFFER_SIZE, shared=True)
    ingestor = Ingestor(ring, tables, IngestStats())
    app[SETTINGS] = settings
    app[TABLES] = tables
    app[RING] = ring
    app[INGESTOR] = ingestor
    app[F1] = F1Ingest(ingestor)
    app[LOOP_STATS] = LoopStats()
    app[WEBSOCKETS] = set()
    app[HUB] = Hub(
        ring,
        tables,
        max_buffer_bytes=settings.MAX_WS_BUFFER,
        max_points_per_chassis=settings.WS_MAX_POINTS,
        stuck_s=settings.WS_STUCK_S,
    )
    app[TRACKS] = tracks
    app[LEAN_HTTP] = LeanStats()
    app.cleanup_ctx.append(recording_context)
    app.cleanup_ctx.append(http_parser_context)
    app.cleanup_ctx.append(udp_context)
    app.cleanup_ctx.append(broadcast_context)
    app.cleanup_ctx.append(compute_context)
    app.cleanup_ctx.append(s3_context)
    if demo:
        app.cleanup_ctx.append(demo_context)
    app.cleanup_ctx.append(loopwatch_context)
    app.on_shutdown.append(ws.close_all)
    api.add_routes(app, settings)
    api_strategy.add_routes(app)
    app.router.add_get(settings.WS_PATH, ws.websocket_handler)
    _add_static(app, Path(settings.PUBLIC_DIR))
    if not row_scan.AVAILABLE:
        log.warning(
            "pitwall_rt._row_scan was not compiled (no C compiler at install): "
            "JSON ingest takes its Python tiers only, about 5x the CPU a point"
        )
    return app


def _add_static(app: web.Application, public: Path) -> None:
    """Serve the dashboard. Our own handler rather than ``add_static`` so a
    missing file is a JSON 404 like every other error."""
    if not public.is_dir():
        log.warning("PUBLIC_DIR %s not found: the dashboard is not served", public)
        return
    root = public.resolve()

    async def static_file(request: web.Request) -> web.StreamResponse:
        relative = request.match_info.get("path", "") or "index.html"
        target = (root / relative).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise web.HTTPNotFound(text=f"no such file: /{relative}")
        return web.FileResponse(target, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", static_file)
    app.router.add_get("/{path:(?!api/|metrics).+}", static_file)


async def recording_context(app: web.Application) -> AsyncIterator[None]:
    """Record every accepted point to DATA_DIR. Registered before UDP so it is
    torn down after UDP's final flush and records those points too."""
    recorder = Recorder(app[SETTINGS].DATA_DIR, app[TABLES])
    app[RECORDER] = recorder
    ingestor = app[INGESTOR]
    ingestor.listeners.append(recorder.append)
    task = asyncio.create_task(recorder.run(FLUSH_INTERVAL_S), name="recorder")
    yield
    await _cancel(task)
    ingestor.listeners.remove(recorder.append)
    await asyncio.to_thread(recorder.close)


async def udp_context(app: web.Application) -> AsyncIterator[None]:
    """Bind the UDP port and start receiving, in a parse process or in the
    loop (``INGEST_PARSER``); on the way out stop and store what is pending."""
    settings = app[SETTINGS]
    sock = make_socket(settings.HOST, settings.UDP_PORT, settings.UDP_RCVBUF)
    receiver: UdpSource
    if settings.INGEST_PARSER == "process":
        # Parsed batches may wait for the loop in the child up to the receive
        # buffer's size again: the same budget for riding out a pause.
        parser = ParseProcess(
            sock, app[INGESTOR], binary_handler=app[F1], outbox_bytes=settings.UDP_RCVBUF
        )
        await parser.start()
        receiver = parser
    else:
        loop = asyncio.get_running_loop()
        _transport, receiver = await loop.create_datagram_endpoint(
            lambda: UdpReceiver(app[INGESTOR], binary_handler=app[F1]), sock=sock
        )
    app[UDP] = receiver
    app[UDP_SOCKET] = sock
    yield
    await stop_udp(app)
    sock.close()


async def stop_udp(app: web.Application) -> None:
    """Stop receiving and ingest what was already received. Idempotent."""
    receiver = app.get(UDP)
    if receiver is not None:
        await receiver.close()


async def http_parser_context(app: web.Application) -> AsyncIterator[None]:
    """With ``INGEST_PARSER=process``, a parse process of its own for big
    HTTP bodies; stopped after the HTTP server, so no body is left waiting."""
    if app[SETTINGS].INGEST_PARSER != "process":
        yield
        return
    parser = ParseProcess(None, app[INGESTOR])
    await parser.start()
    app[PARSER] = parser
    yield
    await parser.close()


def _load_tracks(path: str) -> dict[str, Track]:
    if not Path(path).exists():
        log.warning("TRACK_SECTORS_PATH %s not found: laps are timed without sectors", path)
        return {}
    try:
        return load_tracks(path)
    except TrackFileError as exc:
        raise ConfigError(f"TRACK_SECTORS_PATH {path}: {exc}") from None


async def compute_context(app: web.Application) -> AsyncIterator[None]:
    """Start the process pool and the compute tick; on the way out stop both."""
    settings = app[SETTINGS]
    hub = app[HUB]
    runner = ComputeRunner(
        app[RING],
        app[TABLES],
        app[TRACKS],
        settings.WORKERS,
        publish=lambda message: hub.publish_insights(message["insights"]),
        publish_alert=lambda message: hub.publish("alerts", message),
        priority=settings.WORKER_PRIORITY,
    )
    app[COMPUTE] = runner
    await runner.start()
    task = asyncio.create_task(runner.run(settings.BATCH_MS / 1000.0), name="compute")
    yield
    await _cancel(task)
    await runner.close()


async def s3_context(app: web.Application) -> AsyncIterator[None]:
    """Poll S3_BUCKET for CSV files (does nothing when S3_BUCKET is empty)."""
    poller = S3Poller(app[INGESTOR], app[SETTINGS])
    app[S3] = poller
    task = asyncio.create_task(poller.run(), name="s3")
    yield
    await _cancel(task)


async def broadcast_context(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB]
    task = asyncio.create_task(hub.run(app[SETTINGS].BATCH_MS / 1000.0), name="broadcast")
    yield
    await _cancel(task)


async def loopwatch_context(app: web.Application) -> AsyncIterator[None]:
    """Watch for stalls once everything has started: starting the pool
    (forkserver, model) holds the loop for ~13 ms once, before the server
    takes requests, and would otherwise be the longest "stall" on record."""
    watch = asyncio.create_task(watch_loop(app[LOOP_STATS]), name="loopwatch")
    yield
    await _cancel(watch)


async def demo_context(app: web.Application) -> AsyncIterator[None]:
    from ..ingest.demo import run_demo

    settings = app[SETTINGS]
    task = asyncio.create_task(
        run_demo(app[INGESTOR], settings.DEMO_DATA_PATH, settings.DEMO_SPEED), name="demo"
    )
    yield
    await _cancel(task)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
