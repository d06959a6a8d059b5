"""Ingest throughput: UDP (single and 40-point datagrams) and HTTP, against ceilings.

For UDP a paced sender (its own process) steps up the rate; at each step we
check whether every point sent was accepted (server) or received and parsed
(the raw ceiling: a bare Python ``recv_into`` + orjson loop with the same
4 MB receive buffer). The highest lossless rate of each is reported, and ours
as a ratio to the ceiling measured in the same run. Both UDP receivers are
measured (``INGEST_PARSER=process``, the default, and ``loop``). For HTTP, 100-point
batches are posted on 8 keep-alive connections for a fixed time (by a bare
asyncio protocol, not aiohttp's client, to leave the server the CPU),
against a bare aiohttp handler that only reads and parses the body (the
ceiling), and against a bare asyncio protocol that only finds the body and
parses it (the loop thread's limit without an HTTP framework); the targets
take turns over several rounds and each reports its median.

    python bench/ingest.py            # full run, ~3 minutes
    python bench/ingest.py --quick    # fewer, shorter steps
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import statistics
import sys
import time
from functools import partial
from typing import Any

import orjson

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _harness import Server, cpu_seconds, datagrams, free_port, send_paced, table

RCVBUF = 4 * 1024 * 1024
CPU_RATE = {1: 50_000, 40: 100_000}  # steady rates for the CPU accounting, points/s
ROLES = ("server (event loop)", "parse processes", "compute workers")


def _raw_receiver(
    port: int, counter: Any, ready: Any, parse: bool = True, rcvbuf: int = RCVBUF
) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), rcvbuf)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.05)
    buf = bytearray(65536)
    view = memoryview(buf)
    loads = orjson.loads
    points = 0
    ready.set()
    while True:
        try:
            n = sock.recv_into(buf)
        except TimeoutError:
            counter.value = points
            continue
        if not parse:
            points += 1
            continue
        value = loads(view[:n])
        points += len(value) if type(value) is list else 1
        if points & 0xFF == 0:
            counter.value = points


class RawCeiling:
    """A bare receiver in its own process; counts points (or datagrams, with
    ``parse=False``, for binary payloads)."""

    def __init__(self, parse: bool = True, rcvbuf: int = RCVBUF) -> None:
        ctx = mp.get_context("fork")
        self.port = free_port(socket.SOCK_DGRAM)
        self.counter = ctx.Value("q", 0, lock=False)
        ready = ctx.Event()
        self.proc = ctx.Process(
            target=_raw_receiver, args=(self.port, self.counter, ready, parse, rcvbuf), daemon=True
        )
        self.proc.start()
        ready.wait(10)

    def received(self) -> int:
        return int(self.counter.value)

    def stop(self) -> None:
        self.proc.terminate()


def find_lossless(
    port: int,
    count: Any,
    payloads: list[bytes],
    per: int,
    rates: list[int],
    seconds: float,
    refine: int = 2,
) -> tuple[int, list[str]]:
    """Highest rate, in points/s sent, whose every point arrived.

    Steps up ``rates`` until two failed steps in a row, then halves the gap
    between the best lossless step and the first failed one above it
    ``refine`` times, so the figure is not just the step below the limit.
    A step fails when a point was lost or the sender fell short of its
    rate (it shares the cores); a short step that lost nothing still
    counts as a lossless measurement at the rate it reached."""
    best_rate, best, lossy, first_lossy, notes = 0, 0, 0, 0, []

    def probe(rate: int) -> bool:
        before = count()
        sent, achieved = send_paced(port, payloads, rate, seconds)
        time.sleep(0.3)
        got = count() - before
        lossless, short = got == sent * per, achieved < 0.97 * rate
        if not lossless:
            outcome = f"lost {sent * per - got:,}"
        else:
            outcome = "lossless, sender fell short" if short else "lossless"
        notes.append(f"{rate * per:,}/s target, {achieved * per:,.0f}/s sent: {outcome}")
        nonlocal best
        if lossless:
            best = max(best, int(achieved * per))
        return lossless and not short

    for rate in rates:
        if probe(rate):
            best_rate, lossy, first_lossy = rate, 0, 0
        else:
            first_lossy = first_lossy or rate
            lossy += 1
            if lossy == 2:
                break
    high = first_lossy
    for _ in range(refine if high else 0):
        middle = (best_rate + high) // 2
        if middle in (best_rate, high):
            break
        if probe(middle):
            best_rate = middle
        else:
            high = middle
    return best, notes


def cpu_per_point(
    srv: Server, payloads: list[bytes], per: int, rate: int, seconds: float
) -> dict[str, float]:
    """Microseconds of CPU per accepted point, by process, at a steady rate."""
    before, accepted = cpu_seconds(srv.proc.pid), srv.accepted("udp")
    send_paced(srv.udp_port, payloads, rate / per, seconds)
    time.sleep(0.5)
    after, got = cpu_seconds(srv.proc.pid), srv.accepted("udp") - accepted
    return {role: (after[role] - before.get(role, 0.0)) / max(got, 1) * 1e6 for role in after}


def _message(buffer: bytes | bytearray) -> tuple[bytes, int, int] | None:
    """The buffered HTTP message's head (lower-cased), and where its body
    starts and ends (the end may lie past what is buffered yet); None until
    the head is complete. Both sides of the HTTP bench frame by this."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buffer[: head_end + 2]).lower()
    start = head.index(b"content-length:") + 15
    length = int(head[start : head.index(b"\r\n", start)])
    return head, head_end + 4, head_end + 4 + length


class _Poster(asyncio.Protocol):
    """One keep-alive connection that posts the next body as soon as the
    previous answer is complete, until ``end``. A bare protocol rather than
    aiohttp's client, which took about as much CPU per request as the
    server: on two shared cores the load generator should take little."""

    def __init__(self, requests: list[bytes], done: asyncio.Future[int], end: float) -> None:
        self.requests, self.done, self.end = requests, done, end
        self.buffer = b""
        self.answered = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.requests[0])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (message := _message(self.buffer)) is not None:
            head, _, end = message
            if not head.startswith(b"http/1.1 200"):
                if not self.done.done():
                    self.done.set_exception(RuntimeError(f"ingest answered {head[:60]!r}"))
                self.transport.close()
                return
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            self.answered += 1
            if time.monotonic() >= self.end:
                self.transport.close()
                return
            self.transport.write(self.requests[self.answered % len(self.requests)])

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.answered)


async def _post_for(
    port: int, bodies: list[bytes], seconds: float, connections: int
) -> tuple[int, float]:
    """Requests answered, and the seconds from the first connection to the last close."""
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    requests = [
        b"POST /api/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
        for body in bodies
    ]
    end = time.monotonic() + seconds
    answered = []
    for k in range(connections):
        done: asyncio.Future[int] = loop.create_future()
        mine = requests[k:] + requests[:k]
        await loop.create_connection(partial(_Poster, mine, done, end), "127.0.0.1", port)
        answered.append(done)
    total = sum(await asyncio.gather(*answered))
    return total, time.perf_counter() - start


def _http_client(port: int, bodies: list[bytes], seconds: float, out: Any, took: Any) -> None:
    import uvloop

    out.value, took.value = uvloop.run(_post_for(port, bodies, seconds, 8))


def http_rate(port: int, bodies: list[bytes], seconds: float) -> float:
    """Points/s the server at ``port`` answered 200 for, 8 connections, over
    the time the load ran: the load generator's own start-up (a fork and
    importing uvloop, tens of ms) is not the server's time."""
    ctx = mp.get_context("fork")
    out, took = ctx.Value("q", 0), ctx.Value("d", 0.0)
    proc = ctx.Process(target=_http_client, args=(port, bodies, seconds, out, took))
    proc.start()
    proc.join()
    if proc.exitcode != 0 or took.value <= 0:
        raise RuntimeError("the HTTP load generator failed")
    if out.value == 0:
        raise RuntimeError(f"no request to port {port} was answered")
    return out.value * 100 / took.value


HTTP_ROUNDS = {False: 5, True: 3}
"""Rounds per HTTP target (full, --quick). This VM's speed swings by up to
2x within minutes, so the ceiling and each server take turns and the table
has each one's median."""


def interleaved_rates(
    ports: dict[str, int], bodies: list[bytes], seconds: float, rounds: int
) -> dict[str, list[float]]:
    """``http_rate`` of every target, ``rounds`` times, in turn (the order
    reversed every other round so no target always follows the same one)."""
    rates: dict[str, list[float]] = {name: [] for name in ports}
    for k in range(rounds):
        order = list(ports) if k % 2 == 0 else list(ports)[::-1]
        for name in order:
            rates[name].append(http_rate(ports[name], bodies, seconds))
    return rates


def _wait_listening(port: int, timeout_s: float = 20.0) -> None:
    """Until a TCP server on 127.0.0.1:``port`` accepts connections: the bare
    handler's process imports aiohttp first, which took over a second once."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _bare_http(port: int) -> None:
    import uvloop
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        value = orjson.loads(await request.read())
        return web.json_response({"accepted": len(value)})

    app = web.Application(client_max_size=8_000_000)
    app.router.add_post("/api/ingest", handler)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class _BareProtocol(asyncio.Protocol):
    """The least an HTTP/1.1 keep-alive server can do per ingest request:
    find the head's end and Content-Length, orjson-parse the body, answer.
    No routing, no validation, no storing: the loop thread's limit for this
    load without any HTTP framework."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while (message := _message(buffer)) is not None:
            _, body_start, body_end = message
            if len(buffer) < body_end:
                return
            value = orjson.loads(bytes(buffer[body_start:body_end]))
            del buffer[:body_end]
            answer = orjson.dumps({"accepted": len(value)})
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
            )


def _bare_protocol_http(port: int) -> None:
    import uvloop

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(_BareProtocol, "127.0.0.1", port)
        await asyncio.Event().wait()

    uvloop.run(serve())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--rcvbuf", type=int, default=RCVBUF, help="UDP receive buffer, bytes, for both receivers"
    )
    parser.add_argument(
        "--parsers",
        nargs="+",
        default=["process", "loop"],
        choices=["process", "loop"],
        help="INGEST_PARSER modes to measure (UDP and HTTP)",
    )
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 2.0
    single_rates = [50_000, 100_000, 150_000, 200_000, 250_000, 300_000, 350_000, 400_000, 500_000]
    batch_rates = [2_500, 5_000, 10_000, 12_500, 15_000, 17_500, 20_000, 25_000, 30_000]
    if args.quick:
        single_rates, batch_rates = single_rates[1::2], batch_rates[1::2]
    single, batched = datagrams(1), datagrams(40, 500)
    rows: list[list[str]] = []
    cpu_rows: list[list[str]] = []
    raw = RawCeiling(rcvbuf=args.rcvbuf)
    servers = {
        mode: Server(
            "--ringbuffer-size",
            "2000000",
            "--batch-ms",
            "600",
            "--udp-rcvbuf",
            str(args.rcvbuf),
            "--ingest-parser",
            mode,
        )
        for mode in args.parsers
    }
    try:
        for label, payloads, per, rates in (
            ("UDP, 1 point/datagram", single, 1, single_rates),
            ("UDP, 40 points/datagram", batched, 40, batch_rates),
        ):
            ceiling, raw_notes = find_lossless(
                raw.port, raw.received, payloads, per, rates, seconds
            )
            print(f"# {label}\n#  raw:  " + "\n#        ".join(raw_notes), file=sys.stderr)
            for mode, srv in servers.items():
                ours, our_notes = find_lossless(
                    srv.udp_port,
                    lambda srv=srv: srv.accepted("udp"),  # type: ignore[misc]
                    payloads,
                    per,
                    rates,
                    seconds,
                )
                drops = srv.health()["udp"]["kernel_drops"]
                cost = cpu_per_point(srv, payloads, per, CPU_RATE[per], seconds)
                cpu_rows.append(
                    [f"{label}, {mode} parser", f"{CPU_RATE[per]:,}"]
                    + [f"{cost.get(role, 0.0):.2f}" for role in ROLES]
                    + [f"{sum(cost.values()):.2f}"]
                )
                rows.append(
                    [
                        f"{label}, {mode} parser",
                        f"{ours:,}",
                        f"{ceiling:,}",
                        f"{ours / ceiling:.2f}" if ceiling else "n/a",
                        "highest lossless rate of a paced sender",
                    ]
                )
                print(
                    f"#  ours ({mode}): "
                    + "\n#        ".join(our_notes)
                    + f"\n#  kernel drops so far: {drops}",
                    file=sys.stderr,
                )
        bodies = [
            orjson.dumps(orjson.loads(b"[" + b",".join(single[i * 100 : (i + 1) * 100]) + b"]"))
            for i in range(len(single) // 100)
        ]
        ctx = mp.get_context("fork")
        bare_ports = {"ceiling": free_port(), "protocol": free_port()}
        bares = [
            ctx.Process(target=_bare_http, args=(bare_ports["ceiling"],), daemon=True),
            ctx.Process(target=_bare_protocol_http, args=(bare_ports["protocol"],), daemon=True),
        ]
        for bare in bares:
            bare.start()
        for port in bare_ports.values():
            _wait_listening(port)
        ports = {**bare_ports, **{mode: srv.port for mode, srv in servers.items()}}
        before = {mode: srv.accepted("http") for mode, srv in servers.items()}
        rates = interleaved_rates(ports, bodies, seconds, HTTP_ROUNDS[args.quick])
        ceiling = statistics.median(rates["ceiling"])
        protocol = statistics.median(rates["protocol"])
        print("# HTTP rounds, points/s:", file=sys.stderr)
        for name, got in rates.items():
            print(f"#  {name}: " + ", ".join(f"{r:,.0f}" for r in got), file=sys.stderr)
        for mode, srv in servers.items():
            ours_http = statistics.median(rates[mode])
            stored = srv.accepted("http") - before[mode]
            print(f"#  {mode}: {stored:,} points stored in all rounds", file=sys.stderr)
            rows.append(
                [
                    f"HTTP POST, 100 points/request, {mode} parser",
                    f"{ours_http:,.0f}",
                    f"{ceiling:,.0f}",
                    f"{ours_http / ceiling:.2f}",
                    f"8 keep-alive connections, median of {HTTP_ROUNDS[args.quick]} interleaved "
                    f"{seconds:.0f} s rounds; ceiling = bare aiohttp + orjson; "
                    f"{ours_http / protocol:.2f} of a bare asyncio protocol + orjson "
                    f"({protocol:,.0f})",
                ]
            )
        for bare in bares:
            bare.terminate()
    finally:
        for srv in servers.values():
            srv.stop()
        raw.stop()
    print(
        table(
            f"Ingest (points/s accepted, zero loss; UDP receive buffer {args.rcvbuf:,} bytes)",
            ["path", "pitwall-rt", "ceiling", "ratio", "how"],
            rows,
        )
    )
    print(
        table(
            "CPU per accepted point, by process (microseconds)",
            ["path", "rate, points/s", *ROLES, "total"],
            cpu_rows,
        )
    )


if __name__ == "__main__":
    main()
