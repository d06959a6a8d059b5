"""pitwall_rt.broadcast.hub: ticks, groups, backpressure, with fake transports.

A fake transport records the exact bytes objects written to it and reports
whatever write-buffer size the test sets; a fake clock stands in for
``time.monotonic``. Nothing here opens a socket or sleeps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from pitwall_rt.broadcast.hub import CLOSE_TRY_AGAIN_LATER, Client, Hub
from pitwall_rt.broadcast.subscription import Subscription
from pitwall_rt.points import decimate
from pitwall_rt.ring import RingBuffer
from pitwall_rt.validate import Tables, validate_points

from .test_frames import decode_frame
from .test_validate import make_tables

MAX_BUFFER = 100_000
STUCK_S = 5.0
MAX_POINTS = 3
NOW = 1_757_184_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    """Records written frames; its unsent-bytes count is set by the test."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.buffer = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffer

    def is_closing(self) -> bool:
        return self.closing

    def messages(self) -> list[dict[str, Any]]:
        out = []
        for frame in self.frames:
            fin, opcode, masked, payload, _ = decode_frame(frame)
            assert (fin, opcode, masked) == (True, 1, False)
            out.append(orjson.loads(payload))
        return out

    def take(self) -> list[dict[str, Any]]:
        """Messages written since the last take."""
        got = self.messages()
        self.frames.clear()
        return got


class Setup:
    def __init__(self, capacity: int = 1000) -> None:
        self.clock = FakeClock()
        self.ring = RingBuffer(capacity)
        self.tables: Tables = make_tables()
        self.hub = Hub(
            self.ring,
            self.tables,
            max_buffer_bytes=MAX_BUFFER,
            max_points_per_chassis=MAX_POINTS,
            stuck_s=STUCK_S,
            clock=self.clock,
        )
        self.closed: dict[FakeTransport, list[tuple[int, str]]] = {}

    def client(self, **subscribe: Any) -> tuple[Client, FakeTransport]:
        transport = FakeTransport()
        calls: list[tuple[int, str]] = []
        self.closed[transport] = calls
        subscription = Subscription(**subscribe)
        client = Client(transport, lambda code, reason: calls.append((code, reason)), subscription)
        self.hub.add(client)
        return client, transport

    def send(self, *points: dict[str, Any]) -> None:
        out = validate_points(list(points), self.tables, NOW)
        assert out.rejected == 0, out.first_errors
        self.ring.write(out.rows)


def pt(chassis: str, dist: float) -> dict[str, Any]:
    return {"chassis": chassis, "lapdist_m": dist, "meta_time": NOW + dist}


def dists(message: dict[str, Any]) -> list[tuple[str, float]]:
    return [(p["chassis"], p["lapdist_m"]) for p in message["points"]]


@pytest.fixture
def s() -> Setup:
    return Setup()


# -- joining ----------------------------------------------------------------------


def test_hub_add_sends_a_snapshot_of_the_newest_point_per_chassis(s: Setup) -> None:
    _, first = s.client()
    s.send(pt("a", 1), pt("b", 2), pt("a", 3))
    s.hub.tick()
    _, late = s.client()
    (snapshot,) = late.take()
    assert snapshot["type"] == "telemetry_update"
    assert snapshot["snapshot"] is True
    assert sorted(dists(snapshot)) == [("a", 3.0), ("b", 2.0)]
    assert first.take()[0]["snapshot"] is True  # its own, empty, on joining


def test_hub_add_sends_nothing_to_a_client_without_the_telemetry_channel(s: Setup) -> None:
    _, transport = s.client(channels=frozenset({"insights"}))
    s.send(pt("a", 1))
    s.hub.tick()
    assert transport.frames == []


# -- ticks ----------------------------------------------------------------------


def test_hub_tick_sends_one_update_with_the_new_points(s: Setup) -> None:
    _, t = s.client()
    t.take()
    s.send(pt("a", 1), pt("b", 2))
    s.hub.tick()
    (message,) = t.take()
    assert message["type"] == "telemetry_update"
    assert "snapshot" not in message
    assert dists(message) == [("a", 1.0), ("b", 2.0)]
    assert message["points"][0]["meta_time"] == "2025-09-06T18:40:01.000Z"
    s.hub.tick()  # nothing new: no frame
    assert t.take() == []
    s.send(pt("a", 3))
    s.hub.tick()
    assert [dists(m) for m in t.take()] == [[("a", 3.0)]]
    assert s.hub.stats.ticks == 3


def test_hub_points_written_before_the_hub_existed_are_not_sent() -> None:
    s = Setup()
    s.send(pt("a", 1))
    hub = Hub(s.ring, s.tables, max_buffer_bytes=MAX_BUFFER, max_points_per_chassis=3, stuck_s=1)
    s.hub = hub
    _, t = s.client()
    t.take()
    s.send(pt("a", 2))
    hub.tick()
    assert [dists(m) for m in t.take()] == [[("a", 2.0)]]


def test_hub_decimates_per_chassis_unless_full_rate(s: Setup) -> None:
    _, slow = s.client()
    _, full = s.client(full_rate=True)
    slow.take(), full.take()
    s.send(*[pt("a", i) for i in range(10)], *[pt("b", 100 + i) for i in range(2)])
    s.hub.tick()
    (decimated,) = slow.take()
    (everything,) = full.take()
    assert len(everything["points"]) == 12
    a_points = [d for c, d in dists(decimated) if c == "a"]
    assert len(a_points) == MAX_POINTS
    assert a_points[-1] == 9.0  # newest kept
    assert [d for c, d in dists(decimated) if c == "b"] == [100.0, 101.0]


def test_hub_tick_across_the_rings_wrap_sends_what_a_copy_would() -> None:
    """The tick reads the ring as views, in two pieces when the new points
    wrap around its end; decimated and full-rate clients get exactly what
    decimating and sending a copy of the same rows gives."""
    s = Setup(capacity=16)
    _, slow = s.client()
    _, full = s.client(full_rate=True)
    _, only_b = s.client(chassis=frozenset({"b"}))
    s.send(*[pt("a", i) for i in range(10)])
    s.hub.tick()
    slow.take(), full.take(), only_b.take()
    new = [pt("ab"[i % 2] if i % 3 else "c", 20 + i) for i in range(14)]
    s.send(*new)
    assert len(s.ring.views_since(s.hub.cursor).parts) == 2  # the case under test
    rows = s.ring.read_since(s.hub.cursor).rows
    s.hub.tick()
    (everything,) = full.take()
    (decimated,) = slow.take()
    (b_only,) = only_b.take()
    assert dists(everything) == [(p["chassis"], p["lapdist_m"]) for p in new]
    kept = rows[decimate(rows["chassis"], MAX_POINTS)]
    names = s.tables.chassis.names(kept["chassis"]).tolist()
    assert dists(decimated) == list(zip(names, kept["lapdist_m"].tolist(), strict=True))
    assert dists(b_only) == [(c, d) for c, d in dists(decimated) if c == "b"]
    assert s.hub.stats.points_lost == 0
    _, late = s.client()  # its snapshot: each chassis' newest row, from either piece
    (snapshot,) = late.take()
    newest = {p["chassis"]: p["lapdist_m"] for p in new}
    assert sorted(dists(snapshot)) == sorted(newest.items())


def test_hub_chassis_filter_sends_only_those_chassis(s: Setup) -> None:
    _, only_a = s.client(chassis=frozenset({"a"}), full_rate=True)
    _, ghost = s.client(chassis=frozenset({"never-seen"}))
    only_a.take(), ghost.take()
    s.send(pt("a", 1), pt("b", 2), pt("a", 3))
    s.hub.tick()
    assert [dists(m) for m in only_a.take()] == [[("a", 1.0), ("a", 3.0)]]
    assert ghost.take() == []  # no empty frames


def test_hub_chassis_filter_applies_to_the_snapshot(s: Setup) -> None:
    s.send(pt("a", 1), pt("b", 2))
    s.hub.tick()
    _, t = s.client(chassis=frozenset({"b"}))
    (snapshot,) = t.take()
    assert snapshot["snapshot"] is True and dists(snapshot) == [("b", 2.0)]


def test_hub_writes_the_same_bytes_object_to_every_client_of_a_group(s: Setup) -> None:
    group_a = [s.client()[1] for _ in range(3)]
    group_b = [s.client(full_rate=True)[1] for _ in range(2)]
    for t in group_a + group_b:
        t.frames.clear()
    s.send(*[pt("a", i) for i in range(10)])
    s.hub.tick()
    assert all(len(t.frames) == 1 for t in group_a + group_b)
    assert group_a[0].frames[0] is group_a[1].frames[0] is group_a[2].frames[0]
    assert group_b[0].frames[0] is group_b[1].frames[0]
    assert group_a[0].frames[0] != group_b[0].frames[0]


def test_hub_does_not_write_to_a_closing_transport(s: Setup) -> None:
    _, t = s.client()
    t.take()
    t.closing = True
    s.send(pt("a", 1))
    s.hub.tick()
    assert t.frames == []


def test_hub_counts_points_overwritten_before_it_read_them_as_lost() -> None:
    s = Setup(capacity=10)
    _, t = s.client(full_rate=True)
    t.take()
    s.send(*[pt("a", i) for i in range(25)])
    s.hub.tick()
    assert s.hub.stats.points_lost == 15
    (message,) = t.take()
    assert [d for _, d in dists(message)] == [float(i) for i in range(15, 25)]
    s.send(pt("a", 99))
    s.hub.tick()
    assert s.hub.stats.points_lost == 15


def test_hub_tick_without_clients_still_advances_its_cursor(s: Setup) -> None:
    s.send(pt("a", 1))
    s.hub.tick()
    _, t = s.client(full_rate=True)
    t.take()
    s.send(pt("a", 2))
    s.hub.tick()
    assert [dists(m) for m in t.take()] == [[("a", 2.0)]]


# -- backpressure -------------------------------------------------------------------


def test_hub_slow_client_gets_no_frames_then_a_snapshot_then_live_frames(s: Setup) -> None:
    client, t = s.client()
    t.take()
    t.buffer = MAX_BUFFER + 1
    for i in range(3):
        s.send(pt("a", i), pt("b", 10 + i))
        s.hub.tick()
    assert t.frames == []
    assert client.dropped == 3 and s.hub.stats.frames_dropped == 3
    assert client.needs_resync

    t.buffer = 0  # the client caught up
    s.send(pt("a", 100))
    s.hub.tick()
    snapshot, live = t.take()
    assert snapshot["snapshot"] is True
    assert sorted(dists(snapshot)) == [("a", 100.0), ("b", 12.0)]
    assert "snapshot" not in live and dists(live) == [("a", 100.0)]
    assert not client.needs_resync and client.stuck_since is None

    s.send(pt("b", 200))
    s.hub.tick()
    assert [dists(m) for m in t.take()] == [[("b", 200.0)]]
    assert client.dropped == 3


def test_hub_resync_waits_until_the_buffer_is_under_half_the_limit(s: Setup) -> None:
    client, t = s.client()
    t.take()
    t.buffer = MAX_BUFFER
    s.send(pt("a", 1))
    s.hub.tick()
    t.buffer = MAX_BUFFER // 2 + 1  # room for the frame, but not drained enough
    s.send(pt("a", 2))
    s.hub.tick()
    assert t.frames == [] and client.dropped == 2
    t.buffer = MAX_BUFFER // 2
    s.send(pt("a", 3))
    s.hub.tick()
    assert [m.get("snapshot", False) for m in t.take()] == [True, False]


def test_hub_frame_that_would_pass_the_limit_is_dropped(s: Setup) -> None:
    client, t = s.client()
    t.take()
    t.buffer = MAX_BUFFER - 10  # under the limit, but the frame does not fit
    s.send(pt("a", 1))
    s.hub.tick()
    assert t.frames == [] and client.dropped == 1


def test_hub_stuck_client_is_closed_with_1013_exactly_once(s: Setup) -> None:
    client, t = s.client()
    t.take()
    t.buffer = MAX_BUFFER * 2
    s.send(pt("a", 0))
    s.hub.tick()  # first drop starts the stuck timer
    for step in range(1, 5):
        s.clock.now += 1.0
        s.send(pt("a", step))
        s.hub.tick()
    assert s.closed[t] == []  # 4 s stuck, under STUCK_S
    s.clock.now += STUCK_S
    s.hub.tick()
    assert s.closed[t] == [(CLOSE_TRY_AGAIN_LATER, "client too slow")]
    assert client.closing
    for step in range(10):
        s.clock.now += STUCK_S
        s.send(pt("a", 10 + step))
        s.hub.tick()
    assert s.closed[t] == [(CLOSE_TRY_AGAIN_LATER, "client too slow")]
    assert s.hub.stats.clients_closed_slow == 1
    assert t.frames == []


def test_hub_client_that_drains_in_time_is_not_closed(s: Setup) -> None:
    client, t = s.client()
    t.take()
    t.buffer = MAX_BUFFER * 2
    s.send(pt("a", 0))
    s.hub.tick()
    s.clock.now += STUCK_S - 1
    t.buffer = 0
    s.hub.tick()  # no new rows, but the police sees the drained buffer
    assert client.stuck_since is None
    t.buffer = MAX_BUFFER * 2
    s.clock.now += 2
    s.send(pt("a", 1))
    s.hub.tick()  # stuck again: the timer starts over
    s.clock.now += STUCK_S - 1
    s.hub.tick()
    assert s.closed[t] == []
    assert s.hub.stats.clients_closed_slow == 0


def test_hub_fast_client_gets_every_tick_while_another_is_stuck(s: Setup) -> None:
    _, fast = s.client()
    _, stuck = s.client()
    fast.take(), stuck.take()
    stuck.buffer = MAX_BUFFER * 10
    for i in range(20):
        s.clock.now += 1.0
        s.send(pt("a", i))
        s.hub.tick()
        assert [dists(m) for m in fast.take()] == [[("a", float(i))]]
    assert stuck.frames == []
    assert s.closed[stuck] == [(CLOSE_TRY_AGAIN_LATER, "client too slow")]
    assert s.closed[fast] == []


def test_client_close_calls_back_only_once() -> None:
    calls: list[tuple[int, str]] = []
    client = Client(FakeTransport(), lambda code, reason: calls.append((code, reason)))
    client.close(1001, "going away")
    client.close(1013, "again")
    assert calls == [(1001, "going away")]


# -- publish ----------------------------------------------------------------------


def test_hub_publish_goes_only_to_clients_on_that_channel(s: Setup) -> None:
    _, everything = s.client()
    _, insights = s.client(channels=frozenset({"insights"}))
    _, telemetry = s.client(channels=frozenset({"telemetry"}))
    everything.take(), insights.take(), telemetry.take()
    message = {"type": "insight_update", "insights": [{"chassis": "a", "lap": 2}]}
    s.hub.publish("insights", message)
    assert everything.take() == [message]
    assert insights.take() == [message]
    assert telemetry.take() == []
    s.hub.publish("alerts", {"type": "alert", "alert": {"id": 1}})
    assert [m["type"] for m in everything.take()] == ["alert"]
    assert insights.take() == [] and telemetry.take() == []


def test_hub_publish_sends_one_bytes_object_to_all(s: Setup) -> None:
    transports = [s.client()[1] for _ in range(3)]
    for t in transports:
        t.frames.clear()
    s.hub.publish("alerts", {"type": "alert", "alert": {}})
    assert transports[0].frames[0] is transports[1].frames[0] is transports[2].frames[0]


def test_hub_publish_drops_for_a_full_client(s: Setup) -> None:
    client, t = s.client()
    t.take()
    t.buffer = MAX_BUFFER
    s.hub.publish("insights", {"type": "insight_update", "insights": []})
    assert t.frames == [] and client.dropped == 1


def test_hub_telemetry_only_goes_to_clients_on_the_telemetry_channel(s: Setup) -> None:
    _, alerts_only = s.client(channels=frozenset({"alerts"}))
    s.send(pt("a", 1))
    s.hub.tick()
    assert alerts_only.frames == []


def test_hub_resync_of_an_insights_only_client_sends_no_telemetry(s: Setup) -> None:
    s.send(pt("a", 1))
    s.hub.tick()
    client, t = s.client(channels=frozenset({"insights"}))
    t.buffer = MAX_BUFFER
    s.hub.publish("insights", {"type": "insight_update", "insights": [{"lap": 1}]})
    assert client.needs_resync
    t.buffer = 0
    message = {"type": "insight_update", "insights": [{"lap": 2}]}
    s.hub.publish("insights", message)
    # The client never asked for telemetry, so catching up must not send it any.
    assert [m["type"] for m in t.take()] == ["insight_update"]


def test_hub_stats_count_frames_and_bytes_sent(s: Setup) -> None:
    _, t = s.client()
    s.send(pt("a", 1))
    s.hub.tick()
    assert s.hub.stats.frames_sent == len(t.frames) == 2
    assert s.hub.stats.bytes_sent == sum(map(len, t.frames))
    assert s.hub.stats.clients_total == 1
    assert np.isfinite(s.hub.stats.max_tick_ms)


def test_hub_reply_is_skipped_for_a_client_over_its_buffer() -> None:
    tables = make_tables()
    hub = Hub(RingBuffer(16), tables, max_buffer_bytes=1000, max_points_per_chassis=5, stuck_s=1.0)

    class Full:
        def __init__(self) -> None:
            self.written: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.written.append(data)

        def get_write_buffer_size(self) -> int:
            return 5000

        def is_closing(self) -> bool:
            return False

    transport = Full()
    client = Client(transport, close=lambda code, reason: None)
    assert hub.reply(client, {"type": "error", "error": "x"}) is False
    assert transport.written == [] and hub.stats.replies_dropped == 1


def test_hub_insights_go_only_to_clients_of_their_chassis() -> None:
    tables = make_tables()
    hub = Hub(
        RingBuffer(16), tables, max_buffer_bytes=100_000, max_points_per_chassis=5, stuck_s=1.0
    )
    everyone, only_a = FakeTransport(), FakeTransport()
    hub.add(Client(everyone, close=lambda code, reason: None))
    hub.add(
        Client(only_a, close=lambda c, r: None, subscription=Subscription(chassis=frozenset({"A"})))
    )
    everyone.take()
    only_a.take()
    hub.publish_insights([{"chassis": "A", "lap": 1}, {"chassis": "B", "lap": 2}])
    (to_all,) = everyone.take()
    (to_a,) = only_a.take()
    assert [i["chassis"] for i in to_all["insights"]] == ["A", "B"]
    assert [i["chassis"] for i in to_a["insights"]] == ["A"]


# -- groups and the fan-out loop -----------------------------------------------------


def test_hub_multi_chassis_filter_keeps_arrival_order(s: Setup) -> None:
    _, t = s.client(chassis=frozenset({"a", "c"}), full_rate=True)
    t.take()
    s.send(pt("c", 1), pt("b", 2), pt("a", 3), pt("c", 4))
    s.hub.tick()
    assert [dists(m) for m in t.take()] == [[("c", 1.0), ("a", 3.0), ("c", 4.0)]]


def test_hub_resubscribe_moves_the_client_to_its_new_group(s: Setup) -> None:
    client, t = s.client(chassis=frozenset({"a"}))
    t.take()
    s.send(pt("a", 1), pt("b", 2))
    s.hub.tick()
    assert [dists(m) for m in t.take()] == [[("a", 1.0)]]
    client.subscription = Subscription(chassis=frozenset({"b"}))
    s.send(pt("a", 3), pt("b", 4))
    s.hub.tick()
    assert [dists(m) for m in t.take()] == [[("b", 4.0)]]


def test_hub_removed_client_gets_nothing_more(s: Setup) -> None:
    client, t = s.client()
    _, other = s.client()
    t.take(), other.take()
    s.hub.remove(client)
    s.send(pt("a", 1))
    s.hub.tick()
    s.hub.publish("alerts", {"type": "alert", "alert": {}})
    assert t.frames == []
    assert [m["type"] for m in other.take()] == ["telemetry_update", "alert"]


def test_hub_one_full_client_does_not_change_what_its_group_gets(s: Setup) -> None:
    clients = [s.client() for _ in range(4)]
    for _, t in clients:
        t.take()
    full_client, full = clients[1]
    full.buffer = MAX_BUFFER
    sent, sent_bytes = s.hub.stats.frames_sent, s.hub.stats.bytes_sent
    s.send(pt("a", 1))
    s.hub.tick()
    frames = [t.frames for _, t in clients]
    assert frames[1] == [] and full_client.dropped == 1
    assert frames[0][0] is frames[2][0] is frames[3][0]
    assert s.hub.stats.frames_sent - sent == 3 and s.hub.stats.frames_dropped == 1
    assert s.hub.stats.bytes_sent - sent_bytes == 3 * len(frames[0][0])


def test_hub_insights_go_once_per_chassis_filter_whatever_the_rate(s: Setup) -> None:
    _, decimated = s.client(chassis=frozenset({"a"}))
    _, full = s.client(chassis=frozenset({"a"}), full_rate=True)
    decimated.frames.clear()
    full.frames.clear()
    s.hub.publish_insights([{"chassis": "a", "lap": 1}, {"chassis": "b", "lap": 1}])
    assert decimated.frames[0] is full.frames[0]
    (message,) = full.messages()
    assert [i["chassis"] for i in message["insights"]] == ["a"]
