"""UDP ingest on ``UDP_PORT``: JSON points, arrays, NDJSON and F1 game packets.

``datagram_received`` only appends the bytes to a list; a flush a couple of
milliseconds later validates everything that arrived in between as one
batch. At high rates that turns hundreds of datagrams into one vectorised
validation; at low rates it costs a datagram at most ``flush_delay_s`` of
latency, far below a broadcast tick. The pending list is capped, so a flood
is flushed early (at ``max_pending`` datagrams or ``max_pending_bytes``)
rather than held, which also bounds how long one flush holds the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from ..payload import split_json
from .pipeline import Ingestor

log = logging.getLogger(__name__)


BinaryHandler = Callable[[list[bytes]], None]


@dataclass
class UdpStats:
    datagrams: int = 0
    bytes: int = 0
    flushes: int = 0
    binary_datagrams: int = 0
    socket_errors: int = 0
    receiver_restarts: int = 0
    # The parse process's outbox (INGEST_PARSER=process): the most parsed
    # bytes seen waiting for the loop when a batch was queued.
    parse_backlog_bytes_max: int = 0


class UdpSource(Protocol):
    """What the app needs of a UDP receiver, in the loop or in a process."""

    stats: UdpStats

    async def close(self) -> None: ...


class UdpReceiver(asyncio.DatagramProtocol):
    """Collects datagrams and hands them to the ingest path in batches."""

    def __init__(
        self,
        ingestor: Ingestor,
        binary_handler: BinaryHandler | None = None,
        flush_delay_s: float = 0.002,
        max_pending: int = 2048,
        max_pending_bytes: int = 1 << 20,
    ) -> None:
        self.ingestor = ingestor
        self.binary_handler = binary_handler
        self.flush_delay_s = flush_delay_s
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self._pending_bytes = 0
        self.stats = UdpStats()
        self.transport: asyncio.DatagramTransport | None = None
        self._pending: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not a subclass of asyncio's, so no isinstance.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        pending = self._pending
        pending.append(data)
        self._pending_bytes += len(data)
        if len(pending) >= self.max_pending or self._pending_bytes >= self.max_pending_bytes:
            self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_later(self.flush_delay_s, self.flush)

    async def close(self) -> None:
        """Stop receiving and store what is pending. Idempotent."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.flush()

    def error_received(self, exc: Exception) -> None:
        self.stats.socket_errors += 1

    def flush(self) -> None:
        """Validate and store everything received since the last flush."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        self.stats.bytes += self._pending_bytes
        self._pending_bytes = 0
        if not batch:
            return
        self.stats.flushes += 1
        self.stats.datagrams += len(batch)
        batch, binary = split_json(batch)
        if binary:
            pass_binary(binary, self.binary_handler, self.stats, self.ingestor)
        if batch:
            self.ingestor.ingest_payloads(batch, "udp")


def pass_binary(
    binary: list[bytes], handler: BinaryHandler | None, stats: UdpStats, ingestor: Ingestor
) -> None:
    """Hand non-JSON datagrams to the F1 decoder, or count them unknown."""
    stats.binary_datagrams += len(binary)
    if handler is not None:
        handler(binary)
    else:
        ingestor.stats.count_rejections("udp", {"unknown_binary": len(binary)})


def make_socket(host: str, port: int, rcvbuf_bytes: int) -> socket.socket:
    """A bound UDP socket with a large receive buffer.

    The kernel may cap SO_RCVBUF at net.core.rmem_max; as root we try
    SO_RCVBUFFORCE first. What we got is logged so an operator knows.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf_bytes:
        # SO_RCVBUFFORCE (Linux, 33) lets root pass net.core.rmem_max.
        force = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform == "linux" else None)
        try:
            if force is None:
                raise PermissionError
            sock.setsockopt(socket.SOL_SOCKET, force, rcvbuf_bytes)
        except (PermissionError, OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
    sock.bind((host, port))
    sock.setblocking(False)
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    log.info("UDP on %s:%d, receive buffer %d bytes", host, port, got)
    return sock


def kernel_drops(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped for this socket (receive buffer full).

    Linux reports it per socket in the last column of /proc/net/udp{,6},
    matched here by the socket's inode. None where the platform doesn't say.
    """
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return None
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        path = Path(name)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 13 and cols[9] == inode:
                return int(cols[-1])
    return None
