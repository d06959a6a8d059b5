"""The parse process: receives UDP, decodes and validates UDP and HTTP payloads.

JSON decoding and validation cost about 2 µs a point; in the event loop that
is time the loop can't broadcast, merge compute or drain the UDP socket. At
200k datagrams/s a 4 MiB receive buffer covers about 20 ms, so loop pauses
alone lost datagrams, and an 8 MB HTTP body held the loop for ~80 ms. This
process owns the UDP socket's reading and all payload parsing: it batches
the datagrams that arrive within ``flush_delay_s``, takes HTTP bodies the
loop forwards, and hands back validated rows, so the loop only stores them.

Names are interned into tables local to this process; each message carries
the names first seen since the previous one, so the parent can map local ids
to its own (see ``parse_process``). Both directions of the socket pair carry
frames: a 4-byte big-endian length and a pickle.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..payload import BodyError, split_json
from ..schema import StringTable
from ..validate import Tables
from .pipeline import Checked, check_body, check_payloads

FRAME_HEADER = struct.Struct("!I")
IDLE_CHECK_S = 0.5
MAX_DATAGRAM = 65536


@dataclass
class Parsed(Checked):
    """Checked rows, with the names this process interned since its last
    message: the parent needs them to map the rows' local name ids."""

    new_chassis: list[str] = field(default_factory=list)
    new_tracks: list[str] = field(default_factory=list)


@dataclass
class UdpBatch:
    """One flush of datagrams."""

    parsed: Parsed
    datagrams: int
    size_bytes: int
    json_payloads: int
    binary: list[bytes] = field(default_factory=list)


@dataclass
class HttpRequest:
    """A body the loop forwards; ``ident`` pairs it with its reply."""

    ident: int
    body: bytes
    ndjson: bool


@dataclass
class HttpReply:
    """The parsed body, or ``error`` (the 400 message) when it was unreadable."""

    ident: int
    parsed: Parsed | None
    error: str | None = None


@dataclass
class Stop:
    """Store what is pending and exit."""


@dataclass
class WorkerLimits:
    """How a UDP flush is bounded (as in the in-loop receiver) and the table sizes."""

    flush_delay_s: float = 0.002
    max_pending: int = 2048
    max_pending_bytes: int = 1 << 20
    max_chassis: int = 1024
    max_tracks: int = 256


class Interner:
    """Local name tables, and which of their names the parent hasn't seen."""

    def __init__(self, max_chassis: int, max_tracks: int) -> None:
        self.tables = Tables(
            chassis=StringTable(max_chassis), track=StringTable(max_tracks, reserved=("",))
        )
        self._sent = (len(self.tables.chassis), len(self.tables.track))

    def fresh(self) -> tuple[list[str], list[str]]:
        chassis, track = self.tables.chassis, self.tables.track
        names = (
            [chassis.name(i) for i in range(self._sent[0], len(chassis))],
            [track.name(i) for i in range(self._sent[1], len(track))],
        )
        self._sent = (len(chassis), len(track))
        return names


def _parsed(checked: Checked, interner: Interner) -> Parsed:
    chassis, tracks = interner.fresh()
    return Parsed(**vars(checked), new_chassis=chassis, new_tracks=tracks)


def parse_datagrams(datagrams: list[bytes], interner: Interner) -> UdpBatch:
    """One flush: JSON datagrams validated, binary ones passed through.
    Pure apart from interning."""
    json_payloads, binary = split_json(datagrams)
    checked = check_payloads(json_payloads, interner.tables, time.time())
    return UdpBatch(
        parsed=_parsed(checked, interner),
        datagrams=len(datagrams),
        size_bytes=sum(map(len, datagrams)),
        json_payloads=len(json_payloads),
        binary=binary,
    )


def parse_http(request: HttpRequest, interner: Interner) -> HttpReply:
    try:
        checked = check_body(request.body, request.ndjson, interner.tables, time.time())
    except BodyError as exc:
        return HttpReply(request.ident, None, str(exc))
    return HttpReply(request.ident, _parsed(checked, interner))


def run_worker(sock: socket.socket | None, conn: socket.socket, limits: WorkerLimits) -> None:
    """Process entry point: work until the parent says stop or goes away.

    With no socket the process only parses what the parent sends (HTTP
    bodies): a big body then never keeps the UDP socket undrained.

    Datagrams are not read as they arrive: the first one opens a window of
    ``flush_delay_s`` (the parent's requests are served meanwhile), then
    the socket is drained in one go. The kernel queue does the batching, so
    a flush costs one wake-up and one EAGAIN however many datagrams it
    holds. While a drain stops at the flush limits (a backlog), the next
    one starts at once, without a window.
    """
    # Ctrl-C in a terminal signals the whole process group. The parent
    # stops this process itself (a Stop, or its end closing) once it has
    # taken what is pending, so the signals are left to it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    interner = Interner(limits.max_chassis, limits.max_tracks)
    parent = os.getppid()
    conn.setblocking(True)
    if sock is None:
        _serve_only(conn, interner, parent)
        return
    sock.setblocking(False)
    sock_fd, conn_fd = sock.fileno(), conn.fileno()
    backlog = False
    stopping = False
    while not stopping:
        if backlog:
            readable, _, _ = select.select([conn_fd], [], [], 0)
            stopping = bool(readable) and not _serve(conn, interner)
        else:
            readable, _, _ = select.select([sock_fd, conn_fd], [], [], IDLE_CHECK_S)
            if conn_fd in readable and not _serve(conn, interner):
                stopping = True
            elif sock_fd in readable:
                stopping = not _window(conn, conn_fd, interner, limits.flush_delay_s)
            elif not readable and os.getppid() != parent:
                return
        batch, backlog = _drain(sock.recv, limits)
        if batch and not send_frame(conn, parse_datagrams(batch, interner)):
            return
    # Whatever the kernel still holds was sent before the stop: take it too.
    while backlog:
        batch, backlog = _drain(sock.recv, limits)
        if batch and not send_frame(conn, parse_datagrams(batch, interner)):
            return
    conn.close()


def _serve_only(conn: socket.socket, interner: Interner, parent: int) -> None:
    while True:
        readable, _, _ = select.select([conn], [], [], IDLE_CHECK_S)
        if readable and not _serve(conn, interner):
            break
        if not readable and os.getppid() != parent:
            return
    conn.close()


def _window(conn: socket.socket, conn_fd: int, interner: Interner, seconds: float) -> bool:
    """Let datagrams queue for ``seconds``, serving the parent meanwhile;
    False when the parent asked to stop or went away."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([conn_fd], [], [], left)
        if readable and not _serve(conn, interner):
            return False
    return True


def _serve(conn: socket.socket, interner: Interner) -> bool:
    """Answer one message from the parent; False for a stop (or its end closed)."""
    message = read_frame(conn)
    if isinstance(message, HttpRequest):
        return send_frame(conn, parse_http(message, interner))
    return False


def _drain(recv: Callable[[int], bytes], limits: WorkerLimits) -> tuple[list[bytes], bool]:
    """Datagrams queued now, up to the flush limits; and whether more are left."""
    out: list[bytes] = []
    size = 0
    while len(out) < limits.max_pending and size < limits.max_pending_bytes:
        try:
            data = recv(MAX_DATAGRAM)
        except OSError:  # EAGAIN, or an ICMP error reported once
            return out, False
        out.append(data)
        size += len(data)
    return out, True


def frame(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(payload)) + payload


def send_frame(conn: socket.socket, message: object) -> bool:
    """False when the parent is gone."""
    try:
        conn.sendall(frame(message))
    except OSError:
        return False
    return True


def read_frame(conn: socket.socket) -> Any:
    """The next message from the parent, or a Stop when its end is closed."""
    header = _read_exactly(conn, FRAME_HEADER.size)
    if header is None:
        return Stop()
    body = _read_exactly(conn, FRAME_HEADER.unpack(header)[0])
    return Stop() if body is None else pickle.loads(body)


def _read_exactly(conn: socket.socket, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        try:
            n = conn.recv_into(view[got:])
        except OSError:
            return None
        if n == 0:
            return None
        got += n
    return buffer
