"""End to end: the lean ingest path in the real server process, on raw sockets.

The same request answered by the lean path and by aiohttp (made to take
aiohttp's path by a chunked body) must get the same status and JSON.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from .serverproc import UNIT_S, ServerProcess
from .test_lean_http import answer_head, chunked, post
from .test_server_e2e import point


class Client:
    """A blocking keep-alive HTTP/1.1 connection that reads whole answers."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10 * UNIT_S)
        self.pending = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> tuple[int, dict[str, str], Any]:
        while b"\r\n\r\n" not in self.pending:
            self._more()
        head, self.pending = self.pending.split(b"\r\n\r\n", 1)
        status, fields = answer_head(head)
        length = int(fields["content-length"])
        while len(self.pending) < length:
            self._more()
        body, self.pending = self.pending[:length], self.pending[length:]
        return status, fields, json.loads(body)

    def at_eof(self) -> bool:
        return self.pending == b"" and self.sock.recv(1) == b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError("the server closed the connection")
        self.pending += data

    def close(self) -> None:
        self.sock.close()


def body_of(n: int, chassis: str, **extra: Any) -> bytes:
    return json.dumps([point(chassis, i, **extra) for i in range(n)]).encode()


def test_lean_big_body_waits_for_the_parse_process_and_answers_stay_in_order(
    server: ServerProcess,
) -> None:
    big = body_of(1000, "BIG")
    assert len(big) > 64 * 1024  # goes to the parse process
    client = Client(server.port)
    client.send(post(big) + post(body_of(3, "SMALL")) + post(b"{not json"))
    client.sock.shutdown(socket.SHUT_WR)  # the answers are still owed
    answers = [client.answer() for _ in range(3)]
    assert [(a[0], a[2].get("accepted")) for a in answers] == [(200, 1000), (200, 3), (400, None)]
    assert client.at_eof()
    client.close()
    health = server.health()  # each health GET is a connection handed to aiohttp
    assert health["http"]["lean_requests"] == 3
    assert health["accepted"]["http"] == 1003
    metrics = server.get("/metrics")[1]
    assert "\npitwall_http_lean_requests_total 3\n" in metrics
    handed_over = health["http"]["handed_over"] + 1  # and the metrics GET
    assert f"\npitwall_http_handed_over_total {handed_over}\n" in metrics


@pytest.mark.parametrize(
    "body",
    [
        body_of(5, "SAME"),
        body_of(5, "SAME", speed_kmh="fast"),
        b"[" + b"{" * 10,
        b"",
        b"{}\n{}",
    ],
    ids=["good", "rejected", "not-json", "empty", "ndjson-as-json"],
)
def test_lean_and_aiohttp_paths_answer_a_body_alike(server: ServerProcess, body: bytes) -> None:
    before = server.health()["http"]
    lean, handed = Client(server.port), Client(server.port)
    lean.send(post(body, "Content-Type: application/json"))
    handed.send(chunked(body, "Content-Type: application/json"))
    (lean_status, _, lean_json), (aiohttp_status, _, aiohttp_json) = lean.answer(), handed.answer()
    assert (lean_status, lean_json) == (aiohttp_status, aiohttp_json)
    lean.close()
    handed.close()
    after = server.health()["http"]
    assert after["lean_requests"] - before["lean_requests"] == 1
    # The chunked request, and the health GET that read this.
    assert after["handed_over"] - before["handed_over"] == 2


def test_lean_path_leaves_oversized_and_unkeyed_requests_to_aiohttp_errors(
    tmp_path: Path,
) -> None:
    srv = ServerProcess(tmp_path, "--max-body-bytes", "5000", env={"API_KEY": "k3y"}).start()
    try:
        client = Client(srv.port)
        client.send(post(body_of(2, "A"), "X-API-Key: k3y"))
        assert client.answer()[2]["accepted"] == 2
        client.send(post(b"x" * 5001, "X-API-Key: k3y"))
        status, _, answer = client.answer()
        assert status == 413 and "MAX_BODY_BYTES" in answer["error"]
        client.close()
        client = Client(srv.port)
        client.send(post(body_of(2, "A"), "X-API-Key: wrong"))
        status, _, answer = client.answer()
        assert status == 401 and "API key" in answer["error"]
        client.close()
        health = srv.get("/api/health")[1]
        assert health["accepted"]["http"] == 2
        assert health["http"]["lean_requests"] == 1
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("request_bytes", "why"),
    [
        (b"0\r\n\r\n", "Invalid method"),
        (b"GET /api/health HTTP/1.1\r\nX-Long: " + b"a" * 10_000 + b"\r\n\r\n", "Got more than"),
        (b"POST /api/ingest HTTP/1.1\r\nContent-Length: 2\r\nbad header\r\n\r\n{}", "header"),
    ],
    ids=["not-http", "line-too-long", "malformed-header"],
)
def test_lean_unparseable_requests_get_a_json_400_and_other_clients_are_unaffected(
    server: ServerProcess, request_bytes: bytes, why: str
) -> None:
    good = Client(server.port)
    bad = Client(server.port)
    bad.send(request_bytes)
    status, fields, answer = bad.answer()
    assert status == 400 and fields["content-type"].startswith("application/json")
    assert answer["error"].startswith("bad HTTP request: ") and why in answer["error"]
    assert "\n" not in answer["error"]
    assert bad.at_eof()
    bad.close()
    good.send(post(body_of(2, "GOOD")))
    assert good.answer()[2]["accepted"] == 2
    good.close()


def test_lean_keep_alive_connection_does_not_delay_shutdown(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path).start()
    try:
        client = Client(srv.port)
        client.send(post(body_of(3, "LAST")))
        assert client.answer()[2]["accepted"] == 3
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert srv.proc.wait(10 * UNIT_S) == 0  # type: ignore[union-attr]
        took_s = time.monotonic() - started
        assert client.at_eof()
        client.close()
        assert took_s < 2.0 * UNIT_S, f"shutdown took {took_s:.2f} s with a client connected"
        assert "Traceback" not in srv.log()
    finally:
        srv.stop()
