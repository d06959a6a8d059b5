"""pitwall_rt.broadcast.outbox: slices, order per client, bounded backlog.

A recording ``fan_out`` stands in for the hub's write loop; the loop is a
real asyncio loop, turned by ``asyncio.sleep(0)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pitwall_rt.broadcast.outbox import Outbox


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, list[int]]] = []

    def __call__(self, frame: bytes, recipients: Sequence[int]) -> None:
        self.calls.append((frame, list(recipients)))

    def received(self, client: int) -> list[bytes]:
        return [frame for frame, members in self.calls if client in members]

    def written(self) -> int:
        return sum(len(members) for _, members in self.calls)


def test_outbox_writes_a_small_message_at_once_without_a_loop() -> None:
    rec = Recorder()
    box: Outbox[int] = Outbox(rec, slice_clients=10)
    box.send(b"m", [1, 2, 3])
    assert rec.calls == [(b"m", [1, 2, 3])]
    assert len(box) == 0


def test_outbox_without_a_running_loop_finishes_a_large_message_at_once() -> None:
    rec = Recorder()
    box: Outbox[int] = Outbox(rec, slice_clients=2)
    box.send(b"m", list(range(7)))
    assert rec.written() == 7 and len(box) == 0
    box.send(b"n", [1])  # the slice budget was restored
    assert rec.received(1) == [b"m", b"n"]


def test_outbox_writes_one_slice_per_loop_iteration() -> None:
    async def scenario() -> list[int]:
        rec = Recorder()
        box: Outbox[int] = Outbox(rec, slice_clients=3)
        box.send(b"m", list(range(8)))
        progress = [rec.written()]
        while len(box):
            await asyncio.sleep(0)
            progress.append(rec.written())
        return progress

    assert asyncio.run(scenario()) == [3, 6, 8]


def test_outbox_slice_budget_spans_messages_of_one_iteration() -> None:
    async def scenario() -> tuple[int, int]:
        rec = Recorder()
        box: Outbox[int] = Outbox(rec, slice_clients=4)
        for chassis in range(3):  # like publish_insights: one message per group
            box.send(bytes([chassis]), [10 * chassis + k for k in range(2)])
        now = rec.written()
        while len(box):
            await asyncio.sleep(0)
        return now, rec.written()

    assert asyncio.run(scenario()) == (4, 6)


def test_outbox_never_lets_a_newer_message_overtake_an_older_one() -> None:
    async def scenario() -> Recorder:
        rec = Recorder()
        box: Outbox[int] = Outbox(rec, slice_clients=2)
        box.send(b"old", [1, 2, 3, 4])
        box.send(b"new", [1, 2, 3, 4])
        while len(box):
            await asyncio.sleep(0)
        return rec

    rec = asyncio.run(scenario())
    for client in (1, 2, 3, 4):
        assert rec.received(client) == [b"old", b"new"]


def test_outbox_lets_other_callbacks_run_between_slices() -> None:
    async def scenario() -> list[str]:
        events: list[str] = []
        box: Outbox[int] = Outbox(
            lambda frame, members: events.extend(f"w{m}" for m in members), slice_clients=2
        )
        asyncio.get_running_loop().call_later(0.0, events.append, "tick")  # falls due now
        box.send(b"m", [1, 2, 3, 4, 5, 6])
        while len(box):
            await asyncio.sleep(0)
        return events

    events = asyncio.run(scenario())
    assert events[:2] == ["w1", "w2"]
    assert events.index("tick") < events.index("w6")  # not held until the end
    assert sorted(e for e in events if e != "tick") == [f"w{k}" for k in range(1, 7)]


def test_outbox_backlog_past_its_bound_is_written_at_once() -> None:
    async def scenario() -> tuple[int, int]:
        rec = Recorder()
        box: Outbox[int] = Outbox(rec, slice_clients=1, max_queued=3)
        for k in range(4):
            box.send(bytes([k]), [1, 2])
        return len(box), rec.written()

    queued, written = asyncio.run(scenario())
    assert queued == 0 and written == 8


def test_outbox_ignores_a_message_without_recipients() -> None:
    rec = Recorder()
    box: Outbox[int] = Outbox(rec)
    box.send(b"m", [])
    assert rec.calls == [] and len(box) == 0
