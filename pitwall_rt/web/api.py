"""HTTP API handlers: health, recent points, ingest, Prometheus metrics.

Handlers are thin: read the request, call the core, shape the JSON. Errors
are raised as aiohttp HTTP exceptions and turned into ``{"error": ...}`` by
the error middleware.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from .. import row_scan
from ..config import Settings
from ..history import history_query, read_history
from ..ingest.udp import kernel_drops
from ..loopwatch import LoopStats
from ..points import rows_to_points
from ..recording import list_sessions
from .ingest_answer import answer_here, answer_in_parser, is_ndjson, parser_for
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
    UDP,
    UDP_SOCKET,
    WEBSOCKETS,
)
from .metrics import Exposition


def add_routes(app: web.Application, settings: Settings) -> None:
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/recent/{n}", recent)
    app.router.add_post("/api/ingest", ingest)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/insights", insights)
    app.router.add_get("/api/laps/{chassis}", laps)
    app.router.add_get("/api/sessions", sessions)
    app.router.add_get("/api/history", history)


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def health_counters(app: web.Application) -> dict[str, object]:
    """Everything an operator needs to see where points went."""
    ring = app[RING]
    hub = app[HUB]
    stats = app[INGESTOR].stats
    return {
        "status": "ok",
        "uptime_s": round(stats.uptime_s, 3),
        **stats.snapshot(),
        "ring": {
            "size": ring.size,
            "capacity": ring.capacity,
            "written": ring.written,
            "overwritten": ring.overwritten,
            "lost_before_broadcast": hub.stats.points_lost,
            "bytes": ring.nbytes,
        },
        "websocket": {
            "clients": len(hub.clients),
            "clients_total": hub.stats.clients_total,
            "ticks": hub.stats.ticks,
            "frames_sent": hub.stats.frames_sent,
            "bytes_sent": hub.stats.bytes_sent,
            "frames_dropped": hub.stats.frames_dropped,
            "replies_dropped": hub.stats.replies_dropped,
            "clients_closed_slow": hub.stats.clients_closed_slow,
            # Per client: frames it missed, for the clients that missed any.
            "dropped_per_client": sorted(
                (c.dropped for c in hub.clients if c.dropped), reverse=True
            )[:50],
            "last_tick_ms": round(hub.stats.last_tick_ms, 3),
            "max_tick_ms": round(hub.stats.max_tick_ms, 3),
        },
        # False when the C scanner was not compiled: ingest works, slower.
        "json_scanner_compiled": row_scan.AVAILABLE,
        "udp": _udp_counters(app),
        "f1": app[F1].decoder.stats(),
        "chassis": len(app[TABLES].chassis),
        "compute": _compute_counters(app),
        "recording": app[RECORDER].health() if RECORDER in app else {},
        "s3": app[S3].stats() if S3 in app else {},
        "loop": _loop_counters(app[LOOP_STATS]),
        "http": vars(app[LEAN_HTTP]),
    }


def _loop_counters(loop: LoopStats) -> dict[str, object]:
    return {
        "max_lag_ms": round(loop.max_lag_ms, 3),
        "last_lag_ms": round(loop.last_lag_ms, 3),
        "stalls_over_5ms": loop.stalls_over_5ms,
        "max_own_lag_ms": round(loop.max_own_lag_ms, 3),
        "own_stalls_over_5ms": loop.own_stalls_over_5ms,
        "cpu_wait_ms": round(loop.cpu_wait_ms, 1),
        "cpu_wait_known": loop.cpu_wait_known,
    }


def _compute_counters(app: web.Application) -> dict[str, object]:
    runner = app.get(COMPUTE)
    if runner is None:
        return {}
    return {
        **vars(runner.stats),
        **runner.timings(),
        "workers": runner.workers,
        "worker_priority": runner.priority,
        "reads_ring_in_place": runner.reads_ring_in_place,
    }


async def sessions(request: web.Request) -> web.Response:
    data_dir = request.app[SETTINGS].DATA_DIR
    return _json(await asyncio.to_thread(list_sessions, data_dir))


async def history(request: web.Request) -> web.Response:
    try:
        query = history_query(request.query)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    recorder = request.app[RECORDER]
    await asyncio.to_thread(recorder.flush)
    points = await asyncio.to_thread(read_history, request.app[SETTINGS].DATA_DIR, query)
    return _json(points)


async def insights(request: web.Request) -> web.Response:
    runner = request.app[COMPUTE]
    return _json(list(runner.insights.values()))


async def laps(request: web.Request) -> web.Response:
    chassis = request.match_info["chassis"]
    found = request.app[COMPUTE].laps_for(chassis)
    if found is None:
        raise web.HTTPNotFound(text=f"unknown chassis {chassis!r}")
    return _json(found)


def _udp_counters(app: web.Application) -> dict[str, int | None]:
    udp = app.get(UDP)
    sock = app.get(UDP_SOCKET)
    parser = app.get(PARSER)
    return {
        "datagrams": udp.stats.datagrams if udp else 0,
        "binary_datagrams": udp.stats.binary_datagrams if udp else 0,
        "kernel_drops": kernel_drops(sock) if sock else None,
        "receiver_restarts": udp.stats.receiver_restarts if udp else 0,
        "http_parser_restarts": parser.stats.receiver_restarts if parser else 0,
        "parse_backlog_bytes_max": udp.stats.parse_backlog_bytes_max if udp else 0,
    }


async def health(request: web.Request) -> web.Response:
    return _json(health_counters(request.app))


async def recent(request: web.Request) -> web.Response:
    text = request.match_info["n"]
    try:
        n = int(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"n must be a non-negative integer, got {text!r}") from None
    if n < 0:
        raise web.HTTPBadRequest(text=f"n must be a non-negative integer, got {n}")
    ring = request.app[RING]
    tables = request.app[TABLES]
    rows = ring.newest(min(n, ring.capacity))
    return _json(rows_to_points(rows, tables.chassis, tables.track))


async def ingest(request: web.Request) -> web.Response:
    limit = request.app[SETTINGS].MAX_BODY_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = await request.read()
    ndjson = is_ndjson(request.headers.get("Content-Type", ""))
    parser = parser_for(request.app.get(PARSER), body)
    if parser is None:
        answer = answer_here(request.app[INGESTOR], body, ndjson)
    else:
        answer = await answer_in_parser(parser, body, ndjson)
    headers = {} if answer.retry_after_s is None else {"Retry-After": str(answer.retry_after_s)}
    return web.Response(
        body=answer.body, status=answer.status, content_type="application/json", headers=headers
    )


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    stats = app[INGESTOR].stats
    hub = app[HUB].stats
    ring = app[RING]
    out = Exposition()
    out.counter(
        "pitwall_points_accepted_total",
        "Points accepted into the ring, by source.",
        [({"source": s}, v) for s, v in sorted(stats.accepted.items())],
    )
    out.counter(
        "pitwall_points_rejected_total",
        "Points or payloads rejected, by source and reason.",
        [({"source": s, "reason": r}, v) for (s, r), v in sorted(stats.reasons.items())],
    )
    out.counter(
        "pitwall_payloads_total",
        "Datagrams and request bodies received, by source.",
        [({"source": s}, v) for s, v in sorted(stats.payloads.items())],
    )
    out.gauge("pitwall_ring_size", "Points held in the ring buffer.", ring.size)
    out.gauge("pitwall_ring_capacity", "Ring buffer capacity in points.", ring.capacity)
    out.counter(
        "pitwall_ring_overwritten_total", "Points pushed out of the ring.", [({}, ring.overwritten)]
    )
    out.counter(
        "pitwall_ring_lost_total",
        "Points overwritten before the broadcast read them.",
        [({}, hub.points_lost)],
    )
    out.gauge("pitwall_ws_clients", "Connected WebSocket clients.", len(app[WEBSOCKETS]))
    out.counter(
        "pitwall_ws_frames_sent_total", "WebSocket frames written.", [({}, hub.frames_sent)]
    )
    out.counter(
        "pitwall_ws_frames_dropped_total",
        "Frames not sent to a client whose buffer was full.",
        [({}, hub.frames_dropped)],
    )
    out.counter(
        "pitwall_ws_clients_closed_slow_total",
        "Clients closed with 1013 after staying over the buffer limit.",
        [({}, hub.clients_closed_slow)],
    )
    udp = _udp_counters(app)
    out.counter(
        "pitwall_udp_datagrams_total", "UDP datagrams received.", [({}, udp["datagrams"] or 0)]
    )
    if udp["kernel_drops"] is not None:
        out.counter(
            "pitwall_udp_kernel_drops_total",
            "Datagrams the kernel dropped (receive buffer full).",
            [({}, udp["kernel_drops"])],
        )
    out.counter(
        "pitwall_udp_receiver_restarts_total",
        "Times the UDP receiver process died and was started again.",
        [({}, udp["receiver_restarts"] or 0)],
    )
    out.counter(
        "pitwall_http_parser_restarts_total",
        "Times the HTTP body parse process died and was started again.",
        [({}, udp["http_parser_restarts"] or 0)],
    )
    out.gauge(
        "pitwall_udp_parse_backlog_bytes_max",
        "Most parsed UDP bytes seen waiting for the event loop (limit: UDP_RCVBUF).",
        udp["parse_backlog_bytes_max"] or 0,
    )
    out.gauge(
        "pitwall_json_scanner_compiled",
        "1 when the C JSON scanner was compiled at install; 0: ingest parses in Python.",
        int(row_scan.AVAILABLE),
    )
    out.gauge("pitwall_uptime_seconds", "Seconds since start.", stats.uptime_s)
    f1: dict[str, Any] = app[F1].decoder.stats()
    out.counter(
        "pitwall_f1_packets_total",
        "F1 game datagrams fed to the decoder.",
        [({}, float(f1["packets"]))],
    )
    out.counter(
        "pitwall_f1_frame_gaps_total",
        "Gaps in F1 frame identifiers (sim-side loss).",
        [({}, float(f1["frame_gaps"]))],
    )
    out.counter(
        "pitwall_f1_truncated_total",
        "F1 datagrams shorter than their packet.",
        [({}, float(f1["truncated"]))],
    )
    if RECORDER in app:
        recording = app[RECORDER].health()
        out.counter(
            "pitwall_recording_points_written_total",
            "Points written to session recordings.",
            [({}, recording["points_written"])],
        )
        out.counter(
            "pitwall_recording_points_lost_total",
            "Points the recorder could not write.",
            [({}, recording["points_lost"])],
        )
    if S3 in app:
        for name, kind, help_text, samples in app[S3].metric_samples():
            out.add(name, kind, help_text, samples)
    loop = app[LOOP_STATS]
    out.gauge("pitwall_loop_max_lag_ms", "Longest event-loop stall seen, ms.", loop.max_lag_ms)
    out.gauge(
        "pitwall_loop_max_own_lag_ms",
        "Longest event-loop stall less its wait for a CPU core, ms.",
        loop.max_own_lag_ms,
    )
    out.counter(
        "pitwall_loop_cpu_wait_seconds_total",
        "Time the event-loop thread waited for a CPU core.",
        [({}, loop.cpu_wait_ms / 1000.0)],
    )
    compute = app[COMPUTE].stats
    out.counter("pitwall_compute_batches_total", "Compute batches merged.", [({}, compute.batches)])
    out.counter(
        "pitwall_compute_pool_restarts_total",
        "Process pools rebuilt after a worker died.",
        [({}, compute.pool_restarts)],
    )
    out.counter(
        "pitwall_compute_points_lost_total",
        "Points the compute stage never saw.",
        [({}, compute.points_lost)],
    )
    lean = app[LEAN_HTTP]
    out.counter(
        "pitwall_http_lean_requests_total",
        "Ingest requests answered by the lean keep-alive path.",
        [({}, lean.lean_requests)],
    )
    out.counter(
        "pitwall_http_handed_over_total",
        "HTTP connections handed to aiohttp at a request the lean path does not answer.",
        [({}, lean.handed_over)],
    )
    return web.Response(
        text=out.render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Prometheus-Format": "0.0.4"},
    )
