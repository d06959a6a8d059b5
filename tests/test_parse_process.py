"""pitwall_rt.ingest.parse_worker / parse_process: UDP and HTTP parsed in a child.

The pure parts (one flush -> a batch; local ids -> the server's ids) are
tested directly; the process itself with a real UDP socket on 127.0.0.1, a
real child process, and a real kill.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from pitwall_rt.ingest.parse_process import (
    IdMap,
    ParseProcess,
    ParserUnavailable,
    learn_names,
    remap,
)
from pitwall_rt.ingest.parse_worker import (
    HttpRequest,
    Interner,
    Outbox,
    Parsed,
    UdpBatch,
    WorkerLimits,
    parse_datagrams,
    parse_http,
    read_frame,
    run_worker,
)
from pitwall_rt.ingest.pipeline import Ingestor
from pitwall_rt.payload import BodyError
from pitwall_rt.ring import RingBuffer
from pitwall_rt.schema import StringTable, empty_rows
from pitwall_rt.stats import IngestStats

from .serverproc import UNIT_S
from .test_validate import make_tables

F1_DATA = Path(__file__).parent / "data" / "f1" / "f1-telemetry-client" / "2024"


def pt(chassis: str, i: int, **extra: Any) -> dict[str, Any]:
    return {"chassis": chassis, "track": "barber", "lap": 1, "lapdist_m": float(i), **extra}


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


# -- one flush in the child -------------------------------------------------------


def test_parse_datagrams_validates_json_and_passes_binary_through_untouched() -> None:
    interner = Interner(64, 16)
    binary = b"\xe8\x07" + b"\x00" * 40
    datagrams = [
        dumps(pt("A", 0)),
        dumps([pt("B", 1), pt("A", 2)]),
        b"{not json",
        binary,
        dumps(pt("A", 3, speed_kmh="fast")),
        b"[]",
    ]
    batch = parse_datagrams(datagrams, interner)
    parsed = batch.parsed
    assert parsed.rows["lapdist_m"].tolist() == [0.0, 1.0, 2.0]
    assert batch.binary == [binary]
    assert parsed.reasons == {"bad_json": 1, "bad_type:speed_kmh": 1} and parsed.rejected == 2
    assert len(parsed.first_errors) == 2
    assert (batch.datagrams, batch.json_payloads, parsed.empty_payloads) == (6, 5, 1)
    assert batch.size_bytes == sum(map(len, datagrams))
    assert parsed.new_chassis == ["A", "B"] and parsed.new_tracks == ["barber"]


def test_parse_datagrams_reports_each_new_name_once() -> None:
    interner = Interner(64, 16)
    first = parse_datagrams([dumps(pt("A", 0))], interner).parsed
    second = parse_datagrams([dumps(pt("A", 1)), dumps(pt("C", 2))], interner).parsed
    assert first.new_chassis == ["A"] and second.new_chassis == ["C"]
    assert second.new_tracks == []
    assert second.rows["chassis"].tolist() == [0, 1]


def test_parse_datagrams_of_only_garbage_has_no_rows_and_counts_it() -> None:
    parsed = parse_datagrams([b"[1,", b"{"], Interner(64, 16)).parsed
    assert len(parsed.rows) == 0 and parsed.reasons == {"bad_json": 2}


def test_parse_http_refuses_an_unreadable_body_and_keeps_good_ndjson_lines() -> None:
    interner = Interner(64, 16)
    bad = parse_http(HttpRequest(1, b"{nope", ndjson=False), interner)
    assert bad.ident == 1 and bad.parsed is None and bad.error is not None
    assert bad.error.startswith("body is not JSON")
    lines = dumps(pt("A", 0)) + b"\n{oops\n" + dumps(pt("A", 1))
    good = parse_http(HttpRequest(2, lines, ndjson=True), interner)
    assert good.parsed is not None and good.parsed.rows["lapdist_m"].tolist() == [0.0, 1.0]
    assert good.parsed.reasons == {"bad_json": 1}
    assert good.parsed.first_errors[0].startswith("line 2")


# -- local ids -> the server's ids ---------------------------------------------------


def _parsed(rows: np.ndarray, chassis: list[str], tracks: list[str]) -> Parsed:
    return Parsed(rows, new_chassis=chassis, new_tracks=tracks)


def _remap(parsed: Parsed, chassis: IdMap, track: IdMap) -> tuple[np.ndarray, dict[str, int]]:
    learn_names(parsed, chassis, track)
    return remap(parsed, chassis, track)


def test_remap_translates_child_ids_to_the_servers_tables() -> None:
    server = make_tables()
    server.chassis.intern("HTTP-CAR")  # the server already knows a name the child doesn't
    server.track.intern("sebring")
    chassis, track = IdMap(server.chassis), IdMap(server.track, reserved=1)
    rows = empty_rows(3)
    rows["chassis"] = [0, 1, 0]
    rows["track"] = [1, 0, 1]
    out, dropped = _remap(_parsed(rows, ["A", "B"], ["barber"]), chassis, track)
    names = [server.chassis.name(i) for i in out["chassis"]]
    assert names == ["A", "B", "A"] and dropped == {}
    assert [server.track.name(i) for i in out["track"]] == ["barber", "", "barber"]
    later = empty_rows(1)
    later["chassis"] = [1]
    later["track"] = [0]
    out, _ = _remap(_parsed(later, [], []), chassis, track)
    assert server.chassis.name(int(out["chassis"][0])) == "B"


def test_remap_drops_and_counts_points_whose_name_the_full_table_cannot_take() -> None:
    server = make_tables(max_chassis=2)
    server.chassis.intern("X")
    chassis, track = IdMap(server.chassis), IdMap(server.track, reserved=1)
    rows = empty_rows(4)
    rows["chassis"] = [0, 1, 2, 1]
    rows["track"] = 0
    rows["lapdist_m"] = [0.0, 1.0, 2.0, 3.0]
    out, dropped = _remap(_parsed(rows, ["A", "B", "X"], []), chassis, track)
    assert out["lapdist_m"].tolist() == [0.0, 2.0]  # "A" took the last slot; "B" has none
    assert dropped == {"table_full:chassis": 2}
    assert [server.chassis.name(i) for i in out["chassis"]] == ["A", "X"]


# -- the real process ---------------------------------------------------------------


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _until(predicate: Callable[[], bool], what: str, timeout_s: float = 10 * UNIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def _with_receiver(
    scenario: Callable[[ParseProcess, Ingestor, socket.socket, list[list[bytes]]], Awaitable[None]],
    max_chassis: int = 64,
) -> None:
    async def main() -> None:
        sock = _udp_socket()
        ingestor = Ingestor(
            RingBuffer(100_000), make_tables(max_chassis=max_chassis), IngestStats()
        )
        binaries: list[list[bytes]] = []
        receiver = ParseProcess(sock, ingestor, binary_handler=binaries.append)
        await receiver.start()
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.connect(sock.getsockname())
        try:
            await scenario(receiver, ingestor, sender, binaries)
        finally:
            await receiver.close()
            sender.close()
            sock.close()

    asyncio.run(main())


def _points(ingestor: Ingestor, chassis: str) -> list[float]:
    rows = ingestor.ring.newest(ingestor.ring.capacity)
    ident = ingestor.tables.chassis.get(chassis)
    return rows["lapdist_m"][rows["chassis"] == ident].tolist()


def test_process_receiver_stores_points_counts_garbage_and_forwards_f1_packets() -> None:
    f1 = next(F1_DATA.glob("*_id06_*.bin")).read_bytes()

    async def scenario(
        receiver: ParseProcess, ingestor: Ingestor, sender: socket.socket, binaries: Any
    ) -> None:
        for i in range(500):
            sender.send(dumps(pt("GOOD", i)))
            if i % 100 == 0:
                sender.send(b"\x00garbage" if i % 200 else dumps({"chassis": "W", "gear": True}))
        sender.send(f1)
        await _until(lambda: ingestor.stats.accepted["udp"] == 500 and binaries, "500 points")
        assert _points(ingestor, "GOOD") == [float(i) for i in range(500)]
        assert receiver.stats.datagrams == 506 and receiver.stats.binary_datagrams == 3
        assert [d for batch in binaries for d in batch] == [b"\x00garbage", b"\x00garbage", f1]
        assert dict(ingestor.stats.reasons) == {("udp", "bad_type:gear"): 3}
        assert ingestor.stats.payloads["udp"] == 503

    _with_receiver(scenario)


def test_process_receiver_restarts_a_killed_child_and_loses_nothing_queued() -> None:
    async def scenario(
        receiver: ParseProcess, ingestor: Ingestor, sender: socket.socket, _b: Any
    ) -> None:
        sender.send(dumps(pt("A", 0)))
        await _until(lambda: ingestor.stats.accepted["udp"] == 1, "first point")
        assert receiver._proc is not None and receiver._proc.pid is not None
        os.kill(receiver._proc.pid, signal.SIGKILL)
        # Sent while no child is reading: the kernel queues them on the shared socket.
        for i in range(1, 201):
            sender.send(dumps(pt("A", i)))
        await _until(lambda: receiver.stats.receiver_restarts == 1, "restart")
        await _until(lambda: ingestor.stats.accepted["udp"] == 201, "points after restart")
        assert _points(ingestor, "A") == [float(i) for i in range(201)]
        sender.send(dumps(pt("NEW", 7)))  # names still map right in the new child
        await _until(lambda: _points(ingestor, "NEW") == [7.0], "a new name after restart")

    _with_receiver(scenario)


def test_process_receiver_close_stores_everything_sent_before_it() -> None:
    async def main() -> tuple[int, list[float]]:
        sock = _udp_socket()
        ingestor = Ingestor(RingBuffer(10_000), make_tables(), IngestStats())
        receiver = ParseProcess(sock, ingestor)
        await receiver.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for i in range(3000):
                sender.sendto(dumps(pt("A", i)), sock.getsockname())
        await receiver.close()
        await receiver.close()  # idempotent
        alive = receiver._proc is not None and receiver._proc.is_alive()
        sock.close()
        assert not alive
        return ingestor.stats.accepted["udp"], _points(ingestor, "A")

    accepted, points = asyncio.run(main())
    assert accepted == 3000 and points == [float(i) for i in range(3000)]


def test_process_receiver_rejects_new_names_once_the_servers_table_is_full() -> None:
    async def scenario(
        receiver: ParseProcess, ingestor: Ingestor, sender: socket.socket, _b: Any
    ) -> None:
        for i in range(5):
            sender.send(dumps(pt(f"CAR-{i}", i)))
        await _until(lambda: sum(ingestor.stats.rejected.values()) == 3, "rejections")
        assert ingestor.stats.accepted["udp"] == 2
        assert ingestor.stats.reasons[("udp", "table_full:chassis")] == 3

    _with_receiver(scenario, max_chassis=2)


def test_child_exits_when_the_parent_end_closes() -> None:
    import multiprocessing as mp

    sock = _udp_socket()
    ours, theirs = socket.socketpair()
    proc = mp.get_context("spawn").Process(
        target=run_worker, args=(sock, theirs, WorkerLimits()), daemon=True
    )
    proc.start()
    theirs.close()
    ours.close()  # what the parent's death looks like from the child
    proc.join(10 * UNIT_S)
    sock.close()
    assert proc.exitcode == 0


def test_idmap_reserved_ids_map_to_themselves() -> None:
    table = StringTable(8, reserved=("",))
    ids = IdMap(table, reserved=1)
    ids.learn(["x"])
    assert ids(np.array([0, 1])).tolist() == [0, 1] and table.name(1) == "x"


def test_http_bodies_are_parsed_in_the_child_and_share_names_with_udp() -> None:
    async def scenario(
        parser: ParseProcess, ingestor: Ingestor, sender: socket.socket, _b: Any
    ) -> None:
        sender.send(dumps(pt("SHARED", 0)))
        await _until(lambda: ingestor.stats.accepted["udp"] == 1, "udp point")
        result = await parser.ingest_http(
            dumps([pt("SHARED", 1), pt("HTTP-ONLY", 2), pt("X", 3, lap=-1)]), ndjson=False
        )
        assert (result.accepted, result.rejected) == (2, 1)
        assert "lap" in result.errors[0]
        assert _points(ingestor, "SHARED") == [0.0, 1.0] and _points(ingestor, "HTTP-ONLY") == [2.0]
        assert ingestor.stats.reasons[("http", "out_of_range:lap")] == 1
        assert ingestor.stats.payloads["http"] == 1
        try:
            await parser.ingest_http(b"[1, 2", ndjson=False)
        except BodyError as exc:
            assert str(exc).startswith("body is not JSON")
        else:
            raise AssertionError("an unreadable body was accepted")
        assert ingestor.stats.payloads["http"] == 1  # refused bodies are not payloads

    _with_receiver(scenario)


def test_http_request_held_by_a_dying_child_is_refused_and_the_next_one_works() -> None:
    big = dumps([pt("BIG", i) for i in range(300_000)])

    async def scenario(
        parser: ParseProcess, ingestor: Ingestor, sender: socket.socket, _b: Any
    ) -> None:
        pending = asyncio.create_task(parser.ingest_http(big, ndjson=False))
        await asyncio.sleep(0.05)
        assert parser._proc is not None and parser._proc.pid is not None
        os.kill(parser._proc.pid, signal.SIGKILL)
        try:
            await pending
        except ParserUnavailable:
            pass
        else:
            raise AssertionError("a body the dead child held was reported stored")
        await _until(lambda: parser.stats.receiver_restarts == 1, "restart")
        result = await parser.ingest_http(dumps(pt("AFTER", 1)), ndjson=False)
        assert result.accepted == 1 and _points(ingestor, "AFTER") == [1.0]

    _with_receiver(scenario)


def test_a_wedged_child_gets_503_after_the_timeout_and_its_late_names_still_map(
    monkeypatch: Any,
) -> None:
    import pitwall_rt.ingest.parse_process as parse_process

    monkeypatch.setattr(parse_process, "HTTP_REPLY_TIMEOUT_S", 0.3)

    async def scenario(
        parser: ParseProcess, ingestor: Ingestor, sender: socket.socket, _b: Any
    ) -> None:
        assert parser._proc is not None and parser._proc.pid is not None
        os.kill(parser._proc.pid, signal.SIGSTOP)
        try:
            try:
                await parser.ingest_http(dumps(pt("LATE-NAME", 0)), ndjson=False)
            except ParserUnavailable:
                pass
            else:
                raise AssertionError("a wedged child's body was reported stored")
        finally:
            os.kill(parser._proc.pid, signal.SIGCONT)
        # The child still parses that body and interns LATE-NAME; a datagram
        # using the name right after must map to it, not to a stranger.
        sender.send(dumps(pt("LATE-NAME", 1)))
        sender.send(dumps(pt("OTHER", 2)))
        await _until(lambda: ingestor.stats.accepted["udp"] == 2, "points after the stall")
        assert _points(ingestor, "LATE-NAME") == [1.0] and _points(ingestor, "OTHER") == [2.0]
        assert ingestor.stats.accepted["http"] == 0  # the timed-out body was not stored

    _with_receiver(scenario)


def test_a_parse_process_without_a_socket_serves_http_bodies_only() -> None:
    async def main() -> tuple[int, list[float], bool]:
        ingestor = Ingestor(RingBuffer(1000), make_tables(), IngestStats())
        parser = ParseProcess(None, ingestor)
        await parser.start()
        result = await parser.ingest_http(dumps([pt("H", 0), pt("H", 1)]), ndjson=False)
        await parser.close()
        alive = parser._proc is not None and parser._proc.is_alive()
        return result.accepted, _points(ingestor, "H"), alive

    accepted, points, alive = asyncio.run(main())
    assert accepted == 2 and points == [0.0, 1.0] and not alive


# -- the child never blocks on a parent that is not reading ------------------------


def test_outbox_queues_what_the_socket_will_not_take_and_delivers_it_in_order() -> None:
    ours, theirs = socket.socketpair()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    outbox = Outbox(theirs, max_bytes=200_000)
    messages = [{"seq": i, "pad": bytes(5000)} for i in range(100)]
    for message in messages:
        assert outbox.put(message)  # returns at once though nobody reads
    assert outbox and 0 < outbox.bytes <= 100 * 5100
    assert outbox.full  # more than max_bytes wait: the worker stops reading UDP
    got: list[Any] = []
    ours.settimeout(10 * UNIT_S)
    while len(got) < len(messages):
        assert outbox.flush()
        got.append(read_frame(ours))
    assert [m["seq"] for m in got] == list(range(100))
    assert not outbox and outbox.bytes == 0 and not outbox.full
    theirs.close()
    ours.close()


def _child_with_small_buffers(
    limits: WorkerLimits, rcvbuf: int
) -> tuple[Any, socket.socket, socket.socket]:
    """A parse child whose socket pair holds only a few KB, and whose UDP socket
    ``rcvbuf`` bytes: a child that waited on its parent would lose datagrams
    once the stream outgrew the two."""
    import multiprocessing as mp

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind(("127.0.0.1", 0))
    ours, theirs = socket.socketpair()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    proc = mp.get_context("spawn").Process(target=run_worker, args=(sock, theirs, limits))
    proc.start()
    theirs.close()
    return proc, sock, ours


def _send_slowly(port: int, first: int, datagrams: int, per: int = 10) -> None:
    """Datagrams of ``per`` points (about 1 KB), 1 ms apart: slow enough for a
    child that keeps reading, more than the buffers alone hold."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for d in range(datagrams):
        base = first + d * per
        sender.sendto(dumps([pt("SLOW", base + k) for k in range(per)]), ("127.0.0.1", port))
        time.sleep(0.001)
    sender.close()


def _read_batches(conn: socket.socket, expected: int, timeout_s: float) -> list[UdpBatch]:
    """What the child sends until ``expected`` points arrived or it goes quiet."""
    conn.settimeout(timeout_s)
    got: list[UdpBatch] = []
    while sum(len(b.parsed.rows) for b in got) < expected:
        batch = read_frame(conn)  # a Stop when nothing came within the timeout
        if not isinstance(batch, UdpBatch):
            break
        got.append(batch)
    return got


def _lapdists(batches: list[UdpBatch]) -> list[float]:
    return [x for b in batches for x in b.parsed.rows["lapdist_m"].tolist()]


def _read_points(conn: socket.socket, expected: int, timeout_s: float) -> list[float]:
    return _lapdists(_read_batches(conn, expected, timeout_s))


def test_child_keeps_draining_udp_while_the_parent_is_not_reading() -> None:
    # 256 KB of receive buffer lets the child fall a quarter second behind,
    # but holds well under the 600 KB sent: only a child that keeps reading
    # while its parent does not can deliver every point.
    proc, sock, ours = _child_with_small_buffers(WorkerLimits(), 256 * 1024)
    try:
        time.sleep(0.5 * UNIT_S)  # the child is up and waiting on the socket
        _send_slowly(sock.getsockname()[1], 0, 600)  # the parent reads nothing meanwhile
        batches = _read_batches(ours, 6000, 10 * UNIT_S)
        assert _lapdists(batches) == [float(i) for i in range(6000)]
        # Each batch says how much waited before it: the parent sees the backlog.
        backlog = [b.backlog_bytes for b in batches]
        assert backlog[0] == 0 and max(backlog) > 100_000
    finally:
        ours.close()
        proc.join(10 * UNIT_S)
        sock.close()
    assert proc.exitcode == 0


def test_a_full_outbox_bounds_the_child_and_it_resumes_once_the_parent_reads() -> None:
    proc, sock, ours = _child_with_small_buffers(WorkerLimits(max_outbox_bytes=16_384), 8192)
    port = sock.getsockname()[1]
    try:
        time.sleep(0.5 * UNIT_S)
        _send_slowly(port, 0, 300)
        held = _read_batches(ours, 3000, 1 * UNIT_S)
        stalled = _lapdists(held)
        # Only what the small buffers and the outbox held survived the stall.
        assert 0 < len(stalled) < 1500
        assert stalled == sorted(stalled)
        assert all(b.backlog_bytes < 16_384 for b in held)
        # The parent reads again, as it sends, and the kernel buffer has
        # room for a quarter second of slack: nothing is lost.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        with ThreadPoolExecutor(1) as reader:
            resumed = reader.submit(_read_points, ours, 500, 10 * UNIT_S)
            _send_slowly(port, 10_000, 50)
            assert resumed.result() == [float(10_000 + i) for i in range(500)]
    finally:
        ours.close()
        proc.join(10 * UNIT_S)
        sock.close()
    assert proc.exitcode == 0
