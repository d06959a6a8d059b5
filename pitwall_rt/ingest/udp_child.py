"""The UDP receiver process: receive, decode and validate, then hand rows over.

The event loop also broadcasts, merges compute results and serves HTTP; each
of those holds it for milliseconds, and while it is held nothing drains the
socket. At 200k datagrams/s a 4 MiB receive buffer covers about 20 ms, so
loop pauses alone cost datagrams. This process does nothing but drain the
socket on its own core, batch what arrived within ``flush_delay_s``, and run
the same decode and validation the loop would, so the parent only stores
finished rows.

Names are interned into tables local to this process; each message carries
the names first seen since the previous one, so the parent can map local ids
to its own (see ``udp_process``).
"""

from __future__ import annotations

import os
import pickle
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..payload import decode_payloads
from ..schema import StringTable, empty_rows
from ..validate import Tables, validate_points

# First bytes of a JSON payload; anything else (an F1 packet starts with its
# little-endian packet format, 0xE8 0x07 for 2024) is binary.
JSON_START = frozenset([b"{", b"[", b" ", b"\t", b"\r", b"\n", b""])

STOP = b"S"
FRAME_HEADER = struct.Struct("!I")
"""Each batch goes over the pair as a 4-byte big-endian length and a pickle."""
IDLE_CHECK_S = 0.5
MAX_DATAGRAM = 65536


@dataclass
class ChildBatch:
    """One flush, as sent to the parent: rows plus everything it must count."""

    rows: np.ndarray
    new_chassis: list[str]
    new_tracks: list[str]
    datagrams: int
    size_bytes: int
    json_payloads: int
    empty_payloads: int
    reasons: dict[str, int] = field(default_factory=dict)
    binary: list[bytes] = field(default_factory=list)


@dataclass
class ReceiverLimits:
    """How a flush is bounded; the same numbers as the in-loop receiver."""

    flush_delay_s: float = 0.002
    max_pending: int = 2048
    max_pending_bytes: int = 1 << 20
    max_chassis: int = 1024
    max_tracks: int = 256


class _NameLog:
    """Remembers how many names of a table the parent has been told about."""

    def __init__(self, table: StringTable) -> None:
        self.table = table
        self.sent = len(table)

    def fresh(self) -> list[str]:
        names = [self.table.name(i) for i in range(self.sent, len(self.table))]
        self.sent = len(self.table)
        return names


def build_batch(
    datagrams: list[bytes], tables: Tables, logs: tuple[_NameLog, _NameLog]
) -> ChildBatch:
    """Decode and validate one flush of datagrams. Pure apart from interning."""
    json_payloads = [d for d in datagrams if d[:1] in JSON_START]
    binary = []
    if len(json_payloads) < len(datagrams):
        binary = [d for d in datagrams if d[:1] not in JSON_START]
    decoded = decode_payloads(json_payloads)
    checked = validate_points(decoded.values, tables, time.time()) if decoded.values else None
    reasons = dict(decoded.errors)
    if checked is not None:
        for reason, count in checked.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    rows = checked.rows if checked is not None else empty_rows(0)
    return ChildBatch(
        rows=rows,
        new_chassis=logs[0].fresh(),
        new_tracks=logs[1].fresh(),
        datagrams=len(datagrams),
        size_bytes=sum(map(len, datagrams)),
        json_payloads=len(json_payloads),
        empty_payloads=decoded.empty,
        reasons=reasons,
        binary=binary,
    )


def run_receiver(sock: socket.socket, conn: socket.socket, limits: ReceiverLimits) -> None:
    """Process entry point: receive until the parent says stop or goes away."""
    tables = Tables(
        chassis=StringTable(limits.max_chassis),
        track=StringTable(limits.max_tracks, reserved=("",)),
    )
    logs = (_NameLog(tables.chassis), _NameLog(tables.track))
    parent = os.getppid()
    sock.setblocking(False)
    conn.setblocking(True)
    recv = sock.recv
    pending: list[bytes] = []
    pending_bytes = 0
    deadline = 0.0
    stopping = False
    sock_fd, conn_fd = sock.fileno(), conn.fileno()
    watched = [sock_fd, conn_fd]
    while not stopping:
        timeout = max(0.0, deadline - time.monotonic()) if pending else IDLE_CHECK_S
        readable, _, _ = select.select(watched, [], [], timeout)
        if conn_fd in readable:
            stopping = _control(conn)
        if sock_fd in readable:
            if not pending:
                deadline = time.monotonic() + limits.flush_delay_s
            while len(pending) < limits.max_pending and pending_bytes < limits.max_pending_bytes:
                try:
                    data = recv(MAX_DATAGRAM)
                except OSError:  # EAGAIN, or an ICMP error reported once
                    break
                pending.append(data)
                pending_bytes += len(data)
        full = len(pending) >= limits.max_pending or pending_bytes >= limits.max_pending_bytes
        if pending and (stopping or full or time.monotonic() >= deadline):
            if not _send(conn, build_batch(pending, tables, logs)):
                return
            pending, pending_bytes = [], 0
        elif not pending and not readable and os.getppid() != parent:
            return
    # Whatever the kernel still holds was sent before the stop: take it too.
    while batch := _drain(recv, limits):
        if not _send(conn, build_batch(batch, tables, logs)):
            return
    conn.close()


def _drain(recv: Callable[[int], bytes], limits: ReceiverLimits) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < limits.max_pending:
        try:
            out.append(recv(MAX_DATAGRAM))
        except OSError:
            break
    return out


def _send(conn: socket.socket, batch: ChildBatch) -> bool:
    payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        conn.sendall(FRAME_HEADER.pack(len(payload)) + payload)
    except OSError:  # the parent is gone
        return False
    return True


def _control(conn: socket.socket) -> bool:
    """True when the parent asked to stop or closed its end."""
    try:
        message = conn.recv(1)
    except OSError:
        return True
    return message in (STOP, b"")
