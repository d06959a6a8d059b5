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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..payload import BodyError, split_json
from ..schema import StringTable
from ..validate import Tables
from .pipeline import Checked, check_body, check_payloads

try:
    from ._drain import drain as _c_drain
except ImportError:  # installed without a C compiler
    _c_drain = None

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
    backlog_bytes: int = 0
    """Bytes of earlier frames still waiting in the child's outbox when this
    one was queued: how far the event loop is behind taking batches."""


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
    """How a UDP flush is bounded (as in the in-loop receiver), the table
    sizes, and how many bytes of frames may wait for the parent (``Outbox``)."""

    flush_delay_s: float = 0.002
    max_pending: int = 2048
    max_pending_bytes: int = 1 << 20
    max_chassis: int = 1024
    max_tracks: int = 256
    max_outbox_bytes: int = 32 << 20


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


class Outbox:
    """Frames for the parent, in order, sent without ever blocking this process.

    The event loop reads the socket pair between its other work, and at high
    rates a compute tick can hold it for tens of milliseconds. A blocking
    send then stopped this process too: measured at 200k points/s of
    40-point datagrams, sends blocked for up to 49 ms while the UDP socket
    went unread, and a 4 MiB receive buffer overflowed. Frames wait here
    instead, and the socket keeps being drained. Past ``max_bytes`` waiting
    the worker stops reading UDP until the parent catches up, so memory stays
    bounded and the kernel buffer takes the overflow, as before.
    """

    def __init__(self, conn: socket.socket, max_bytes: int) -> None:
        self.conn = conn
        self._queue: deque[memoryview] = deque()
        self.max_bytes = max_bytes
        self.bytes = 0

    def __bool__(self) -> bool:
        return bool(self._queue)

    @property
    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    def put(self, message: object) -> bool:
        """Queue a message and send what the socket takes now; False when the parent is gone."""
        data = memoryview(frame(message))
        self._queue.append(data)
        self.bytes += len(data)
        return self.flush()

    def flush(self) -> bool:
        """Send queued bytes until the socket would block; False when the parent is gone."""
        queue, send = self._queue, self.conn.send
        while queue:
            head = queue[0]
            try:
                sent = send(head, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return True
            except OSError:
                return False
            self.bytes -= sent
            if sent == len(head):
                queue.popleft()
            else:
                queue[0] = head[sent:]
        return True

    def finish(self) -> bool:
        """Send everything left, waiting as long as it takes; False when the parent is gone."""
        try:
            while self._queue:
                self.conn.sendall(self._queue.popleft())
        except OSError:
            return False
        self.bytes = 0
        return True


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
    one starts at once, without a window. What is parsed goes to the parent
    through an :class:`Outbox`, so a busy parent never stops the draining.
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
    outbox = Outbox(conn, limits.max_outbox_bytes)
    sock_fd, conn_fd = sock.fileno(), conn.fileno()
    backlog = False
    stopping = False
    while not stopping:
        writing = [conn_fd] if outbox else []
        if backlog and not outbox.full:
            readable, writable, _ = select.select([conn_fd], writing, [], 0)
        else:
            reading = [conn_fd] if outbox.full else [sock_fd, conn_fd]
            readable, writable, _ = select.select(reading, writing, [], IDLE_CHECK_S)
        if writable and not outbox.flush():
            return
        if conn_fd in readable and not _serve(outbox, interner):
            stopping = True
        elif sock_fd in readable:
            stopping = not _window(outbox, interner, limits.flush_delay_s)
        elif not (backlog or readable or writable) and os.getppid() != parent:
            return
        if outbox.full:
            continue
        batch, backlog = drain(sock, limits)
        if batch and not outbox.put(_batch(batch, interner, outbox)):
            return
    # Whatever the kernel still holds was sent before the stop: take it too.
    while backlog:
        batch, backlog = drain(sock, limits)
        if batch and not outbox.put(_batch(batch, interner, outbox)):
            return
    if outbox.finish():
        conn.close()


def _batch(datagrams: list[bytes], interner: Interner, outbox: Outbox) -> UdpBatch:
    batch = parse_datagrams(datagrams, interner)
    batch.backlog_bytes = outbox.bytes
    return batch


def _serve_only(conn: socket.socket, interner: Interner, parent: int) -> None:
    """Parse HTTP bodies only: with no UDP to keep draining, each reply is
    sent whole before the next request is read."""
    outbox = Outbox(conn, max_bytes=0)
    while True:
        readable, _, _ = select.select([conn], [], [], IDLE_CHECK_S)
        if readable and not (_serve(outbox, interner) and outbox.finish()):
            break
        if not readable and os.getppid() != parent:
            return
    conn.close()


def _window(outbox: Outbox, interner: Interner, seconds: float) -> bool:
    """Let datagrams queue for ``seconds``, serving the parent and sending
    it what waits meanwhile; False when the parent asked to stop or went away."""
    conn_fd = outbox.conn.fileno()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        writing = [conn_fd] if outbox else []
        readable, writable, _ = select.select([conn_fd], writing, [], left)
        if writable and not outbox.flush():
            return False
        if readable and not _serve(outbox, interner):
            return False
    return True


def _serve(outbox: Outbox, interner: Interner) -> bool:
    """Answer one message from the parent through ``outbox``, in order with
    the UDP batches; False for a stop (or its end closed)."""
    message = read_frame(outbox.conn)
    if not isinstance(message, HttpRequest):
        return False
    return outbox.put(parse_http(message, interner))


def drain(sock: socket.socket, limits: WorkerLimits) -> tuple[list[bytes], bool]:
    """Datagrams queued now, up to the flush limits; and whether more are left.
    In C (``_drain``) when it was compiled: about 1.1 us of CPU a
    single-point datagram against 1.6 (the kernel's share is 1.0)."""
    if _c_drain is not None:
        return _c_drain(sock.fileno(), limits.max_pending, limits.max_pending_bytes)
    return drain_python(sock.recv, limits)


def drain_python(recv: Callable[[int], bytes], limits: WorkerLimits) -> tuple[list[bytes], bool]:
    """``drain`` without the C extension."""
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
