"""End to end: the real server process, real UDP/HTTP/WebSocket sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pitwall_rt.recording import read_session

from .serverproc import REPO, UNIT_S, ServerProcess, running, wait_for
from .wsclient import record

FULL_POINT: dict[str, Any] = {
    "meta_time": "2025-09-06T18:40:41.926Z",
    "track": "barber",
    "chassis": "GR86-002",
    "lap": 7,
    "lapdist_m": 1234.5,
    "speed_kmh": 187.25,
    "accx_can": -1.125,
    "accy_can": 0.875,
    "Steering_Angle": -12.5,
    "pbrake_f": 88.5,
    "pbrake_r": 41.25,
    "rpm": 6850.0,
    "throttle_pct": 12.5,
    "gear": 4,
}


def point(chassis: str, i: int, **extra: Any) -> dict[str, Any]:
    return {
        "chassis": chassis,
        "meta_time": 1_757_184_000 + i * 0.05,
        "lap": 1,
        "lapdist_m": float(i),
        "speed_kmh": 100.0 + (i % 50),
        **extra,
    }


async def _subscribed(ws: aiohttp.ClientWebSocketResponse, sub: dict[str, Any]) -> None:
    await ws.send_str(json.dumps(sub))
    while True:
        msg = await asyncio.wait_for(ws.receive_json(), 5 * UNIT_S)
        if msg["type"] == "subscribed":
            return


async def _collect_points(
    ws: aiohttp.ClientWebSocketResponse, want: int, timeout_s: float
) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(points) < want:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            break
        try:
            msg = await asyncio.wait_for(ws.receive_json(), remaining)
        except TimeoutError:
            break
        if msg["type"] == "telemetry_update" and not msg.get("snapshot"):
            points.extend(msg["points"])
    return points


def test_server_roundtrip_every_field_survives_udp_http_and_websocket(tmp_path: Path) -> None:
    with running(tmp_path, "--batch-ms", "50") as srv:

        async def scenario() -> list[dict[str, Any]]:
            async with aiohttp.ClientSession() as session, session.ws_connect(srv.ws_url) as ws:
                await _subscribed(ws, {"type": "subscribe", "full_rate": True})
                srv.send_udp(json.dumps(FULL_POINT).encode())
                wait_for(lambda: srv.health()["accepted"].get("udp") == 1, 5 * UNIT_S, "udp point")
                batch = [dict(FULL_POINT, chassis=f"GR86-{i:03d}") for i in range(10, 15)]
                status, body = srv.post_json("/api/ingest", batch)
                assert (status, body["accepted"], body["rejected"]) == (200, 5, 0)
                return await _collect_points(ws, 6, 5 * UNIT_S)

        ws_points = asyncio.run(scenario())
        status, recent = srv.get("/api/recent/6")
        assert status == 200
        assert [p["chassis"] for p in recent] == ["GR86-002"] + [
            f"GR86-{i:03d}" for i in range(10, 15)
        ]
        for got in (recent[0], ws_points[0]):
            assert got == FULL_POINT
        assert [p["chassis"] for p in ws_points] == [p["chassis"] for p in recent]
        assert isinstance(recent[0]["lap"], int) and isinstance(recent[0]["gear"], int)
        assert srv.health()["json_scanner_compiled"] is True


def test_server_ndjson_body_and_ndjson_datagram_both_ingest(server: ServerProcess) -> None:
    lines = "\n".join(json.dumps(point("NDJ-1", i)) for i in range(3)).encode()
    status, body = server.request(
        "POST", "/api/ingest", lines, {"Content-Type": "application/x-ndjson"}
    )
    assert (status, body["accepted"]) == (200, 3)
    server.send_udp(lines)
    wait_for(lambda: server.health()["accepted"].get("udp") == 3, 5 * UNIT_S, "ndjson datagram")


@pytest.fixture(params=["process", "loop"])
def either_parser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """The server parsing UDP and HTTP in its parse process (default), or in the loop."""
    with running(tmp_path, "--ingest-parser", request.param) as srv:
        yield srv


def test_server_bad_input_is_counted_and_good_points_all_kept(
    either_parser: ServerProcess,
) -> None:
    server = either_parser
    good = [point("GOOD-1", i) for i in range(200)]
    garbage = [b"\xff\x00garbage" + bytes([i % 256]) for i in range(10_000)]
    bad_json = [b'{"chassis": "x", "speed_kmh": NaN}', b'{"chassis": "trunc', b"[not json at all"]
    wrong = [
        json.dumps({"chassis": "W", "speed_kmh": "fast"}).encode(),
        json.dumps({"chassis": "W", "gear": True}).encode(),
        json.dumps({"speed_kmh": 10}).encode(),
        json.dumps({"chassis": "W", "accy_can": 11.0}).encode(),
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i, datagram in enumerate(garbage):
            sock.sendto(datagram, ("127.0.0.1", server.udp_port))
            if i % 50 == 0:
                sock.sendto(json.dumps(good[i // 50]).encode(), ("127.0.0.1", server.udp_port))
            if i % 1000 == 0:
                time.sleep(0.01)  # stay under the kernel buffer: loss here would be ours to explain
        for datagram in bad_json + wrong:
            sock.sendto(datagram, ("127.0.0.1", server.udp_port))

    status, body = server.request(
        "POST", "/api/ingest", b"{not json", {"Content-Type": "application/json"}
    )
    assert status == 400 and "not JSON" in body["error"]
    status, body = server.request(
        "POST", "/api/ingest", b"x" * 10_000_001, {"Content-Type": "application/json"}
    )
    assert status == 413 and "too large" in body["error"]
    status, body = server.post_json("/api/ingest", [])
    assert (status, body["accepted"], body["rejected"]) == (200, 0, 0)
    status, body = server.post_json("/api/ingest", [*good[:100], {"chassis": "W", "lap": -1}, 5])
    assert (status, body["accepted"], body["rejected"]) == (200, 100, 2)
    assert any("lap" in e for e in body["errors"]) and any(
        "not a JSON object" in e for e in body["errors"]
    )

    health = wait_for(
        lambda: (h := server.health())["rejected"].get("udp", 0) >= 10_007 and h,
        10 * UNIT_S,
        "udp counters",
    )
    udp_reasons = health["rejected_by_reason"]["udp"]
    assert udp_reasons["bad_datagram"] == 10_000
    assert udp_reasons["bad_json"] == 3
    assert udp_reasons["bad_type:speed_kmh"] == 1
    assert udp_reasons["bad_type:gear"] == 1
    assert udp_reasons["missing:chassis"] == 1
    assert udp_reasons["out_of_range:accy_can"] == 1
    assert health["accepted"]["udp"] == 200 and health["accepted"]["http"] == 100
    assert health["empty_payloads"]["http"] == 1
    assert health["udp"]["kernel_drops"] == 0
    _, recent = server.get("/api/recent/1000")
    assert [p["lapdist_m"] for p in recent if p["chassis"] == "GOOD-1"][:200] == [
        float(i) for i in range(200)
    ]
    status, metrics = server.get("/metrics")
    assert 'pitwall_points_rejected_total{reason="bad_datagram",source="udp"} 10000' in metrics


def test_server_recent_rejects_bad_n_and_caps_at_capacity(tmp_path: Path) -> None:
    with running(tmp_path, "--ringbuffer-size", "64") as srv:
        srv.post_json("/api/ingest", [point("CAP", i) for i in range(100)])
        for bad in ("abc", "-1", "1.5"):
            status, body = srv.get(f"/api/recent/{bad}")
            assert status == 400 and "n must be" in body["error"]
        status, body = srv.get("/api/recent/1000000")
        assert status == 200 and len(body) == 64
        assert body[-1]["lapdist_m"] == 99.0
        ring = srv.health()["ring"]
        assert (ring["capacity"], ring["size"], ring["overwritten"]) == (64, 64, 36)


def test_server_unknown_route_and_method_answer_json_errors(server: ServerProcess) -> None:
    status, body = server.get("/api/nope")
    assert status == 404 and "error" in body
    status, body = server.request("DELETE", "/api/ingest")
    assert status == 405 and "error" in body


def test_server_api_key_guards_ingest_and_websocket_but_not_health(tmp_path: Path) -> None:
    with running(tmp_path, env={"API_KEY": "s3cret"}) as srv:
        assert srv.get("/api/health")[0] == 200
        status, body = srv.post_json("/api/ingest", point("K", 1))
        assert status == 401 and "API key" in body["error"]
        assert (
            srv.post_json("/api/ingest", point("K", 1), {"Authorization": "Bearer wrong"})[0] == 401
        )
        assert (
            srv.post_json("/api/ingest", point("K", 1), {"Authorization": "Bearer s3cret"})[0]
            == 200
        )
        assert srv.post_json("/api/ingest", point("K", 2), {"X-API-Key": "s3cret"})[0] == 200
        assert srv.get("/api/recent/5")[0] == 401

        async def ws_status(url: str) -> int:
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.ws_connect(url) as ws:
                        await ws.close()
                        return 101
                except aiohttp.WSServerHandshakeError as exc:
                    return exc.status

        assert asyncio.run(ws_status(srv.ws_url)) == 401
        assert asyncio.run(ws_status(srv.ws_url + "?token=s3cret")) == 101
        assert srv.health()["accepted"]["http"] == 2


def test_server_without_api_key_accepts_unauthenticated_ingest(server: ServerProcess) -> None:
    assert server.post_json("/api/ingest", point("OPEN", 1))[0] == 200
    rec = asyncio.run(record(server.ws_url, 1.5 * UNIT_S, until=lambda r: bool(r.messages)))
    assert rec.messages and rec.messages[0]["type"] == "telemetry_update"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_server_signal_closes_clients_with_1001_and_exits_zero(tmp_path: Path, sig: int) -> None:
    srv = ServerProcess(tmp_path).start()
    try:

        async def scenario() -> int | None:
            async with aiohttp.ClientSession() as session, session.ws_connect(srv.ws_url) as ws:
                await _subscribed(ws, {"type": "subscribe", "full_rate": True})
                srv.proc.send_signal(sig)  # type: ignore[union-attr]
                while True:
                    msg = await asyncio.wait_for(ws.receive(), 10 * UNIT_S)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        return ws.close_code

        assert asyncio.run(scenario()) == 1001
        assert srv.proc.wait(10 * UNIT_S) == 0  # type: ignore[union-attr]
        assert "Traceback" not in srv.log()
    finally:
        srv.stop()


def test_server_shutdown_flushes_points_received_just_before_the_signal(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, "--batch-ms", "5000").start()
    try:

        async def scenario() -> list[dict[str, Any]]:
            async with aiohttp.ClientSession() as session, session.ws_connect(srv.ws_url) as ws:
                await _subscribed(ws, {"type": "subscribe", "full_rate": True})
                srv.post_json("/api/ingest", [point("LAST", i) for i in range(20)])
                srv.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
                return await _collect_points(ws, 20, 10 * UNIT_S)

        assert [p["lapdist_m"] for p in asyncio.run(scenario())] == [float(i) for i in range(20)]
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("args", "env", "name"),
    [
        (["--batch-ms", "soon"], {}, "BATCH_MS"),
        ([], {"PORT": "99999"}, "PORT"),
        (["--ws-path", "ws"], {}, "WS_PATH"),
        (["--loop", "tokio"], {}, "LOOP"),
    ],
)
def test_cli_bad_setting_stops_startup_with_one_line_naming_it(
    args: list[str], env: dict[str, str], name: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pitwall_rt", *args],
        cwd=REPO,
        env={**_clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=30 * UNIT_S,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], result.stderr


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("PORT", "API_KEY", "BATCH_MS")}


def test_server_f1_packet_and_json_datagram_on_one_port_both_land(server: ServerProcess) -> None:
    data = Path(__file__).parent / "data" / "f1" / "f1-telemetry-client" / "2024"
    telemetry = next(data.glob("*_id06_*.bin")).read_bytes()
    parsed = json.loads(next(data.glob("*_id06_*.parsed.json")).read_text())
    server.send_udp(telemetry, json.dumps(point("JSON-1", 1)).encode())
    health = wait_for(
        lambda: (h := server.health())["accepted"].get("f1") and h["accepted"].get("udp") and h,
        5 * UNIT_S,
        "both the F1 and the JSON datagram",
    )
    cars = parsed["m_carTelemetryData"]
    active = [c for c in cars if any(v for k, v in c.items() if not isinstance(v, list))]
    assert health["accepted"]["udp"] == 1
    assert health["accepted"]["f1"] == len(active)
    _, recent = server.get(f"/api/recent/{len(active) + 1}")
    f1_speeds = sorted(p["speed_kmh"] for p in recent if p["chassis"].startswith("F1-"))
    assert f1_speeds == sorted(float(c["m_speed"]) for c in active)


def test_server_metrics_expose_loss_at_every_hop(server: ServerProcess) -> None:
    server.post_json("/api/ingest", [point("M", 1)])
    status, text = server.get("/metrics")
    assert status == 200
    for name in (
        "pitwall_points_rejected_total",
        "pitwall_ring_overwritten_total",
        "pitwall_ring_lost_total",
        "pitwall_ws_frames_dropped_total",
        "pitwall_udp_kernel_drops_total",
        "pitwall_f1_frame_gaps_total",
        "pitwall_recording_points_lost_total",
        "pitwall_compute_points_lost_total",
        "pitwall_loop_cpu_wait_seconds_total",
    ):
        assert f"# TYPE {name} counter" in text, name
    assert "\npitwall_json_scanner_compiled 1\n" in text
    health = server.health()
    assert "dropped_per_client" in health["websocket"]
    loop = health["loop"]
    assert loop["cpu_wait_known"] is sys.platform.startswith("linux")
    assert 0 <= loop["max_own_lag_ms"] <= loop["max_lag_ms"]
    assert 0 <= loop["own_stalls_over_5ms"] <= loop["stalls_over_5ms"]
    assert "# TYPE pitwall_loop_max_own_lag_ms gauge" in text


def _parse_child_pids(server_pid: int) -> list[int]:
    """The spawned parse processes (UDP and HTTP) among the server's children."""
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def test_server_survives_its_parse_processes_being_killed(server: ServerProcess) -> None:
    server.send_udp(json.dumps(point("BEFORE", 0)).encode())
    wait_for(lambda: server.health()["accepted"].get("udp") == 1, 5 * UNIT_S, "first point")
    children = _parse_child_pids(server.proc.pid)  # type: ignore[union-attr]
    assert len(children) == 2
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    server.send_udp(*(json.dumps(point("AFTER", i)).encode() for i in range(50)))
    wait_for(lambda: server.health()["accepted"].get("udp") == 51, 10 * UNIT_S, "restart")
    _, recent = server.get("/api/recent/100")
    assert [p["lapdist_m"] for p in recent if p["chassis"] == "AFTER"] == [
        float(i) for i in range(50)
    ]
    big = [point("HTTP-AFTER", i) for i in range(1000)]  # over 64 KiB: the HTTP parse process
    _, body = wait_for(
        lambda: (r := server.post_json("/api/ingest", big))[0] == 200 and r,
        10 * UNIT_S,
        "the HTTP parse process back",
    )
    assert body["accepted"] == 1000
    health = server.health()
    assert health["udp"]["receiver_restarts"] == 1
    assert health["udp"]["http_parser_restarts"] == 1
    _, metrics = server.get("/metrics")
    assert "pitwall_udp_receiver_restarts_total 1" in metrics
    assert "pitwall_http_parser_restarts_total 1" in metrics


def test_server_big_http_body_is_parsed_and_answered_like_a_small_one(
    either_parser: ServerProcess,
) -> None:
    """Over 64 KiB a body goes to the parse process (by default): same answers."""
    server = either_parser
    body = [point("BIG", i) for i in range(1000)]
    body[10]["speed_kmh"] = "fast"
    body[500]["accy_can"] = 42.0
    encoded = json.dumps(body).encode()
    assert len(encoded) > 64 * 1024
    status, reply = server.request(
        "POST", "/api/ingest", encoded, {"Content-Type": "application/json"}
    )
    assert (status, reply["accepted"], reply["rejected"]) == (200, 998, 2)
    assert any("speed_kmh" in e for e in reply["errors"])
    status, reply = server.request(
        "POST", "/api/ingest", encoded[:-1], {"Content-Type": "application/json"}
    )
    assert status == 400 and reply["error"].startswith("body is not JSON")
    lines = b"\n".join(json.dumps(p).encode() for p in body[:900]) + b"\n{broken"
    status, reply = server.request(
        "POST", "/api/ingest", lines, {"Content-Type": "application/x-ndjson"}
    )
    assert (status, reply["accepted"], reply["rejected"]) == (200, 898, 3)
    health = server.health()
    assert health["accepted"]["http"] == 998 + 898
    assert health["rejected_by_reason"]["http"] == {
        "bad_type:speed_kmh": 2,
        "out_of_range:accy_can": 2,
        "bad_json": 1,
    }
    _, recent = server.get("/api/recent/2000")
    kept = [p["lapdist_m"] for p in recent if p["chassis"] == "BIG"]
    assert len(kept) == 998 + 898 and kept[:3] == [0.0, 1.0, 2.0]


def test_ctrl_c_to_the_whole_process_group_stops_cleanly_and_keeps_the_last_points(
    tmp_path: Path,
) -> None:
    """A terminal's Ctrl-C reaches the parse processes too: the server must
    still take what they hold and stop them itself, not restart them."""
    srv = ServerProcess(tmp_path).start()
    try:
        srv.send_udp(*(json.dumps(point("LAST", i)).encode() for i in range(100)))
        wait_for(lambda: srv.health()["accepted"].get("udp") == 100, 5 * UNIT_S, "points")
        assert len(_parse_child_pids(srv.proc.pid)) == 2  # type: ignore[union-attr]
        os.killpg(srv.proc.pid, signal.SIGINT)  # type: ignore[union-attr]
        assert srv.proc.wait(10 * UNIT_S) == 0  # type: ignore[union-attr]
        log = srv.log()
        assert "starting another" not in log and "Traceback" not in log
        (session,) = (tmp_path / "data" / "sessions").iterdir()
        recorded = read_session(session).column("chassis").to_pylist()
        assert recorded.count("LAST") == 100  # the recorder's last flush ran
    finally:
        srv.stop()


def test_server_paused_event_loop_loses_no_datagrams_and_reports_the_backlog(
    tmp_path: Path,
) -> None:
    """SIGSTOP holds the server's event loop while its UDP parse process runs on:
    the child queues the batches the loop cannot take, every point lands once
    the loop resumes, and health says how much waited."""
    with running(tmp_path, "--ringbuffer-size", "20000") as srv:
        srv.send_udp(json.dumps(point("WARM", 0)).encode())
        wait_for(lambda: srv.health()["accepted"].get("udp") == 1, 5 * UNIT_S, "first point")
        assert srv.proc is not None
        datagrams = [
            json.dumps([point("PAUSED", d * 40 + k) for k in range(40)]).encode()
            for d in range(200)
        ]
        os.kill(srv.proc.pid, signal.SIGSTOP)
        try:
            for i in range(0, len(datagrams), 10):
                srv.send_udp(*datagrams[i : i + 10])
                time.sleep(0.002)
            time.sleep(0.5 * UNIT_S)  # the child parses it all meanwhile
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        wait_for(lambda: srv.health()["accepted"].get("udp") == 8001, 10 * UNIT_S, "every point")
        udp = srv.health()["udp"]
        # About 1 MB of rows waited: far more than the socket pair to the loop holds.
        assert udp["parse_backlog_bytes_max"] > 100_000
        assert udp["kernel_drops"] in (0, None)
        _, metrics = srv.get("/metrics")
        assert f"pitwall_udp_parse_backlog_bytes_max {udp['parse_backlog_bytes_max']}" in metrics
