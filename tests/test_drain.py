"""The parse process's UDP drain: C (``ingest._drain``) and Python agree.

Real sockets on 127.0.0.1: both drains must return the same datagrams in
order (empty and maximum-size ones included), stop at the same limits,
and report an empty socket, or an error the socket reports once, as no
more to read.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pitwall_rt.ingest import parse_worker
from pitwall_rt.ingest.parse_worker import WorkerLimits, drain, drain_python


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    yield receiver, sender
    receiver.close()
    sender.close()


def test_the_c_drain_is_built() -> None:
    assert parse_worker._c_drain is not None, (
        "pitwall_rt.ingest._drain was not compiled: install gcc and python3-dev, "
        "then pip install -e . again"
    )


SIZES = [0, 1, 241, 9_658, 65_507, 3]


def datagrams_of(sizes: list[int]) -> list[bytes]:
    return [bytes([k % 251]) * size for k, size in enumerate(sizes)]


def send_all(sender: socket.socket, sizes: list[int]) -> list[bytes]:
    sent = datagrams_of(sizes)
    for datagram in sent:
        sender.send(datagram)
    return sent


@pytest.mark.parametrize("use_c", [True, False])
def test_a_drain_takes_every_datagram_in_order_then_says_empty(
    pair: tuple[socket.socket, socket.socket], use_c: bool
) -> None:
    receiver, sender = pair
    sent = send_all(sender, SIZES)
    limits = WorkerLimits()
    got, more = drain(receiver, limits) if use_c else drain_python(receiver.recv, limits)
    assert got == sent and more is False
    again = drain(receiver, limits) if use_c else drain_python(receiver.recv, limits)
    assert again == ([], False)


@pytest.mark.parametrize(
    ("max_pending", "max_pending_bytes"), [(2, 1 << 20), (100, 242), (1, 1), (0, 10)]
)
def test_both_drains_stop_at_the_same_limits(
    pair: tuple[socket.socket, socket.socket], max_pending: int, max_pending_bytes: int
) -> None:
    receiver, sender = pair
    limits = WorkerLimits(max_pending=max_pending, max_pending_bytes=max_pending_bytes)

    def steps(use_c: bool) -> list[tuple[list[bytes], bool]]:
        send_all(sender, SIZES * 2)
        out = []
        for _ in range(2 * len(SIZES) + 1):
            step = drain(receiver, limits) if use_c else drain_python(receiver.recv, limits)
            out.append(step)
            if not step[1]:
                break
        return out

    by_c = steps(use_c=True)
    if max_pending == 0:  # nothing may be read: empty the socket for the other run
        drain(receiver, WorkerLimits())
    assert by_c == steps(use_c=False)
    if max_pending:
        assert [d for batch, _ in by_c for d in batch] == datagrams_of(SIZES * 2)
        assert all(len(batch) <= max_pending for batch, _ in by_c)


@pytest.mark.parametrize("use_c", [True, False])
def test_an_error_reported_once_ends_the_drain_and_the_next_one_reads_on(
    pair: tuple[socket.socket, socket.socket], use_c: bool
) -> None:
    """A connected UDP socket gets ECONNREFUSED once after an ICMP port
    unreachable; a drain stops there, and the next one goes on reading."""
    receiver, _ = pair
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    gone = closed.getsockname()
    closed.close()
    receiver.connect(gone)
    receiver.send(b"to nobody")
    limits = WorkerLimits()

    def step() -> tuple[list[bytes], bool]:
        return drain(receiver, limits) if use_c else drain_python(receiver.recv, limits)

    assert step() == ([], False)
    talker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    talker.bind(gone)
    talker.sendto(b"back", receiver.getsockname())
    got: list[bytes] = []
    for _ in range(3):
        got += step()[0]
    talker.close()
    assert got == [b"back"]
