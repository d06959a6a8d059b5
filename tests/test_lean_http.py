"""The lean ingest path on a real socket, in front of a real aiohttp runner.

The runner's one handler answers everything aiohttp gets with
``{"via": "aiohttp", ...}``, so each test sees which path answered.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiohttp import web

from pitwall_rt.ingest.parse_process import ParseProcess, ParserUnavailable
from pitwall_rt.ingest.pipeline import Ingestor
from pitwall_rt.ring import RingBuffer
from pitwall_rt.stats import IngestStats
from pitwall_rt.web.ingest_answer import LOOP_PARSE_MAX_BYTES, answer_here
from pitwall_rt.web.lean_http import LeanIngest, LeanSite, LeanStats

from .serverproc import UNIT_S
from .test_ingest_answer import FakeParser
from .test_pipeline import make_ingestor
from .test_validate import make_tables

MAX_BODY = 100_000


@dataclass
class Lean:
    port: int
    ingestor: Ingestor
    stats: LeanStats
    site: LeanSite
    seen_by_aiohttp: list[tuple[str, str, bytes]]


@asynccontextmanager
async def lean_server(
    api_key: str = "", keepalive_s: float = 75.0, parser: ParseProcess | None = None
) -> AsyncIterator[Lean]:
    seen: list[tuple[str, str, bytes]] = []

    async def aiohttp_handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((request.method, request.path_qs, body))
        return web.json_response({"via": "aiohttp", "bytes": len(body)})

    app = web.Application(client_max_size=MAX_BODY * 2)
    app.router.add_route("*", "/{tail:.*}", aiohttp_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    assert runner.server is not None
    ingestor = Ingestor(RingBuffer(100_000), make_tables(), IngestStats())
    stats = LeanStats()
    shared = LeanIngest(
        ingestor,
        parser,
        stats,
        max_body_bytes=MAX_BODY,
        api_key=api_key,
        aiohttp_protocol=runner.server,
        keepalive_s=keepalive_s,
    )
    site = LeanSite(runner, shared, "127.0.0.1", 0, shutdown_timeout_s=1.0)
    await site.start()
    try:
        yield Lean(runner.addresses[0][1], ingestor, stats, site, seen)
    finally:
        await runner.cleanup()


def run_lean(scenario: Callable[[Lean], Awaitable[None]], **options: Any) -> None:
    """Run ``scenario`` against a fresh lean server made with ``options``."""

    async def main() -> None:
        async with lean_server(**options) as lean:
            await scenario(lean)

    asyncio.run(main())


def points(n: int, chassis: str = "GR86-004", start: int = 0) -> bytes:
    return orjson.dumps(
        [
            {"chassis": chassis, "lap": 1, "lapdist_m": float(i), "speed_kmh": 150.0}
            for i in range(start, start + n)
        ]
    )


def post(body: bytes, *fields: str, path: str = "/api/ingest") -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", *fields]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(body: bytes, *fields: str) -> bytes:
    head = ["POST /api/ingest HTTP/1.1", "Host: test", "Transfer-Encoding: chunked", *fields]
    chunk = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
    return ("\r\n".join(head) + "\r\n\r\n").encode() + chunk + b"0\r\n\r\n"


def answer_head(head: bytes) -> tuple[int, dict[str, str]]:
    """An answer's status and fields (names lower-cased) from its head."""
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    fields = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), fields


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * UNIT_S)
    status, fields = answer_head(head)
    if status == 100:
        return await read_answer(reader)
    body = await reader.readexactly(int(fields["content-length"]))
    return status, fields, orjson.loads(body)


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def stored(ingestor: Ingestor) -> list[float]:
    return [float(x) for x in ingestor.ring.newest(ingestor.ring.size)["lapdist_m"]]


def test_lean_keep_alive_requests_are_answered_in_order_without_aiohttp() -> None:
    async def scenario(lean: Lean) -> None:
        reader, writer = await connect(lean.port)
        for k in range(3):
            writer.write(post(points(10, start=10 * k)))
            status, fields, body = await read_answer(reader)
            assert (status, body) == (200, {"accepted": 10, "rejected": 0, "errors": []})
            assert fields["content-type"] == "application/json"
            assert "date" in fields and "connection" not in fields
        writer.close()
        assert stored(lean.ingestor) == [float(i) for i in range(30)]
        assert (lean.stats.lean_requests, lean.stats.handed_over) == (3, 0)
        assert lean.seen_by_aiohttp == []

    run_lean(scenario)


def test_lean_pipelined_requests_with_a_bad_body_between_answer_each_in_order() -> None:
    bad = b'[{"chassis": "GR86-004", "lap": 1,'
    expected_error = orjson.loads(answer_here(make_ingestor()[0], bad, False).body)

    async def scenario(lean: Lean) -> None:
        reader, writer = await connect(lean.port)
        writer.write(post(points(5)) + post(bad) + post(points(5, start=5)))
        answers = [await read_answer(reader) for _ in range(3)]
        assert [a[0] for a in answers] == [200, 400, 200]
        assert answers[1][2] == expected_error and "error" in expected_error
        assert stored(lean.ingestor) == [float(i) for i in range(10)]
        writer.close()

    run_lean(scenario)


def test_lean_request_arriving_a_byte_at_a_time_is_answered_once_complete() -> None:
    async def scenario(lean: Lean) -> None:
        reader, writer = await connect(lean.port)
        request = post(points(3), "Content-Type: application/x-ndjson")
        request = request.replace(b"[", b"").replace(b"]", b"").replace(b"},{", b"}\n{")
        request = request.replace(
            b"Content-Length: %d" % len(points(3)),
            b"Content-Length: %d" % (len(request) - request.index(b"\r\n\r\n") - 4),
        )
        for i in range(len(request)):
            writer.write(request[i : i + 1])
            await writer.drain()
            if i % 50 == 0:
                await asyncio.sleep(0.001)
        status, _, body = await read_answer(reader)
        assert (status, body["accepted"]) == (200, 3)
        assert lean.stats.lean_requests == 1
        writer.close()

    run_lean(scenario)


def test_lean_first_unusual_request_hands_the_connection_to_aiohttp_for_good() -> None:
    async def scenario(lean: Lean) -> None:
        reader, writer = await connect(lean.port)
        get = b"GET /api/health HTTP/1.1\r\nHost: test\r\n\r\n"
        writer.write(post(points(2)) + get + post(points(2, start=2)))
        answers = [await read_answer(reader) for _ in range(3)]
        assert answers[0][2]["accepted"] == 2
        assert [a[2].get("via") for a in answers] == [None, "aiohttp", "aiohttp"]
        assert [(m, p) for m, p, _ in lean.seen_by_aiohttp] == [
            ("GET", "/api/health"),
            ("POST", "/api/ingest"),
        ]
        assert lean.seen_by_aiohttp[1][2] == points(2, start=2)
        assert (lean.stats.lean_requests, lean.stats.handed_over) == (1, 1)
        writer.close()

    run_lean(scenario)


def test_lean_chunked_expect_and_oversized_requests_go_to_aiohttp_intact() -> None:
    body = points(4)
    expect = post(body, "Expect: 100-continue")
    oversized = post(b"x" * (MAX_BODY + 1))

    async def scenario() -> None:
        for request in (chunked(body), expect, oversized):
            async with lean_server() as lean:
                reader, writer = await connect(lean.port)
                writer.write(request)
                status, _, answer = await read_answer(reader)
                assert (status, answer["via"]) == (200, "aiohttp")
                assert lean.seen_by_aiohttp[0][2] in (body, b"x" * (MAX_BODY + 1))
                assert lean.stats.handed_over == 1 and lean.ingestor.ring.size == 0
                writer.close()

    asyncio.run(scenario())


def test_lean_big_body_waits_for_the_parse_process_then_the_next_is_answered() -> None:
    big = points(LOOP_PARSE_MAX_BYTES // 50)
    assert len(big) > LOOP_PARSE_MAX_BYTES
    parser = cast(ParseProcess, FakeParser(ParserUnavailable()))

    async def scenario(lean: Lean) -> None:
        reader, writer = await connect(lean.port)
        writer.write(post(big) + post(points(2)))
        status, fields, body = await read_answer(reader)
        assert (status, fields["retry-after"]) == (503, "1")
        assert "send it again" in body["error"]
        status, _, body = await read_answer(reader)
        assert (status, body["accepted"]) == (200, 2)
        assert lean.stats.lean_requests == 2
        writer.close()

    run_lean(scenario, parser=parser)


def test_lean_connection_close_answers_then_closes_and_reads_nothing_after() -> None:
    async def scenario(lean: Lean) -> None:
        reader, writer = await connect(lean.port)
        writer.write(post(points(2), "Connection: close") + post(points(2, start=2)))
        status, fields, body = await read_answer(reader)
        assert (status, body["accepted"], fields["connection"]) == (200, 2, "close")
        assert await asyncio.wait_for(reader.read(), 5 * UNIT_S) == b""
        assert stored(lean.ingestor) == [0.0, 1.0]
        writer.close()

    run_lean(scenario)


def test_lean_half_closed_client_gets_every_answer_then_eof() -> None:
    async def scenario(lean: Lean) -> None:
        reader, writer = await connect(lean.port)
        writer.write(post(points(2)) + post(points(2, start=2)))
        writer.write_eof()
        answers = [await read_answer(reader) for _ in range(2)]
        assert [a[2]["accepted"] for a in answers] == [2, 2]
        assert await asyncio.wait_for(reader.read(), 5 * UNIT_S) == b""
        writer.close()

    run_lean(scenario)


def test_lean_api_key_right_is_answered_lean_and_wrong_goes_to_aiohttp() -> None:
    async def scenario(lean: Lean) -> None:
        for fields, via in (
            (("Authorization: Bearer s3cret",), None),
            (("X-API-Key: s3cret",), None),
            (("X-API-Key: wrong",), "aiohttp"),
            ((), "aiohttp"),
        ):
            reader, writer = await connect(lean.port)
            writer.write(post(points(1), *fields))
            _, _, answer = await read_answer(reader)
            assert answer.get("via") == via, fields
            writer.close()
        assert (lean.stats.lean_requests, lean.stats.handed_over) == (2, 2)

    run_lean(scenario, api_key="s3cret")


def test_lean_idle_connection_is_closed_after_the_keep_alive_time() -> None:
    async def scenario(lean: Lean) -> None:
        idle_reader, idle_writer = await connect(lean.port)
        busy_reader, busy_writer = await connect(lean.port)
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.0
        while loop.time() < end:  # the busy one keeps posting
            busy_writer.write(post(points(1)))
            await read_answer(busy_reader)
            await asyncio.sleep(0.05)
        assert await asyncio.wait_for(idle_reader.read(), 5 * UNIT_S) == b""
        busy_writer.write(post(points(1)))
        assert (await read_answer(busy_reader))[0] == 200
        assert lean.stats.idle_closed == 1
        idle_writer.close()
        busy_writer.close()

    run_lean(scenario, keepalive_s=0.2)


def test_lean_client_that_never_reads_is_paused_and_others_are_served() -> None:
    total = 30_000
    one = post(points(1))

    async def scenario(lean: Lean) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", lean.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(one * total)  # and read nothing yet
        writer.write_eof()  # the answers are still owed
        last, still = -1, 0
        while still < 3:  # until the server stops answering it
            await asyncio.sleep(0.1)
            still = still + 1 if lean.stats.lean_requests == last else 0
            last = lean.stats.lean_requests
        assert 0 < last < total
        other_reader, other_writer = await connect(lean.port)
        other_writer.write(post(points(1, chassis="GR86-013")))
        assert (await read_answer(other_reader))[0] == 200
        other_writer.close()
        answers = [await read_answer(reader) for _ in range(total)]
        assert all(a[2]["accepted"] == 1 for a in answers)
        assert lean.stats.lean_requests == total + 1
        assert await asyncio.wait_for(reader.read(), 5 * UNIT_S) == b""
        writer.close()

    run_lean(scenario)


def test_lean_site_stop_closes_idle_keep_alive_connections() -> None:
    async def scenario(lean: Lean) -> None:
        reader, writer = await connect(lean.port)
        writer.write(post(points(1)))
        await read_answer(reader)
        await lean.site.stop()
        assert await asyncio.wait_for(reader.read(), 5 * UNIT_S) == b""
        writer.close()
        try:
            await connect(lean.port)
        except OSError:
            pass
        else:
            raise AssertionError("the site still accepts connections after stop")

    run_lean(scenario)
