"""pitwall_rt.broadcast.groups: cached subscription groups, rows by chassis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pitwall_rt.broadcast.groups import ChassisIndex, Groups
from pitwall_rt.broadcast.subscription import Subscription


@dataclass(eq=False)
class Sub:
    subscription: Subscription


def test_groups_puts_equal_subscriptions_together_per_channel() -> None:
    a1 = Sub(Subscription(chassis=frozenset({"a"})))
    a2 = Sub(Subscription(chassis=frozenset({"a"})))
    full = Sub(Subscription(full_rate=True))
    alerts = Sub(Subscription(channels=frozenset({"alerts"})))
    groups = Groups([a1, a2, full, alerts])
    telemetry = groups.on("telemetry")
    assert telemetry == {(frozenset({"a"}), False): [a1, a2], (None, True): [full]}
    assert groups.everyone_on("alerts") == [a1, a2, full, alerts]


def test_groups_are_cached_until_changed() -> None:
    subs = [Sub(Subscription())]
    groups = Groups(subs)
    first = groups.on("telemetry")
    subs.append(Sub(Subscription()))
    assert groups.on("telemetry") is first  # not rebuilt behind the caller's back
    groups.changed()
    assert len(groups.on("telemetry")[(None, False)]) == 2
    assert len(first[(None, False)]) == 1  # a list handed out is never mutated


def test_chassis_index_selects_rows_of_the_given_chassis_in_arrival_order() -> None:
    index = ChassisIndex(np.array([3, 1, 3, 2, 1, 3], dtype=np.int32))
    assert index.select([3]).tolist() == [0, 2, 5]
    assert index.select([1, 3]).tolist() == [0, 1, 2, 4, 5]
    assert index.select([None, 7, 2]).tolist() == [3]
    assert index.select([7]).tolist() == []


def test_chassis_index_of_no_rows_selects_nothing() -> None:
    assert ChassisIndex(np.array([], dtype=np.int32)).select([1]).tolist() == []
