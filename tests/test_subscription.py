"""pitwall_rt.broadcast.subscription: client subscribe messages in, Subscription out."""

from __future__ import annotations

from typing import Any

import pytest

from pitwall_rt.broadcast.subscription import (
    CHANNELS,
    MAX_FILTER_CHASSIS,
    Subscription,
    SubscriptionError,
    apply_message,
)


def test_subscription_default_is_every_chassis_every_channel_decimated() -> None:
    sub = Subscription()
    assert sub.chassis is None
    assert sub.channels == CHANNELS == {"telemetry", "insights", "alerts"}
    assert sub.full_rate is False
    assert sub.group_key == (None, False)


def test_subscription_apply_message_sets_every_key() -> None:
    sub = apply_message(
        Subscription(),
        {
            "type": "subscribe",
            "chassis": ["a", "b", "a"],
            "channels": ["telemetry"],
            "full_rate": True,
        },
    )
    assert sub == Subscription(frozenset({"a", "b"}), frozenset({"telemetry"}), True)
    assert sub.group_key == (frozenset({"a", "b"}), True)


def test_subscription_missing_keys_keep_the_current_choice() -> None:
    current = Subscription(frozenset({"a"}), frozenset({"alerts"}), True)
    assert apply_message(current, {"type": "subscribe"}) == current
    updated = apply_message(current, {"type": "subscribe", "full_rate": False})
    assert updated == Subscription(frozenset({"a"}), frozenset({"alerts"}), False)


def test_subscription_null_chassis_means_every_chassis_again() -> None:
    current = Subscription(chassis=frozenset({"a"}))
    assert apply_message(current, {"type": "subscribe", "chassis": None}).chassis is None


def test_subscription_empty_lists_are_allowed() -> None:
    sub = apply_message(Subscription(), {"type": "subscribe", "chassis": [], "channels": []})
    assert sub.chassis == frozenset() and sub.channels == frozenset()


def test_subscription_group_key_is_equal_for_equal_choices() -> None:
    a = apply_message(Subscription(), {"type": "subscribe", "chassis": ["x", "y"]})
    b = apply_message(
        Subscription(), {"type": "subscribe", "chassis": ["y", "x"], "channels": ["telemetry"]}
    )
    assert a.group_key == b.group_key
    assert hash(a.group_key) == hash(b.group_key)


def test_subscription_accepts_the_maximum_chassis_filter() -> None:
    names = [f"c{i}" for i in range(MAX_FILTER_CHASSIS)]
    sub = apply_message(Subscription(), {"type": "subscribe", "chassis": names})
    assert sub.chassis is not None and len(sub.chassis) == MAX_FILTER_CHASSIS


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        ([1, 2], "JSON object"),
        ("subscribe", "JSON object"),
        (None, "JSON object"),
        ({}, "unknown message type"),
        ({"type": "unsubscribe"}, "unknown message type"),
        ({"type": "subscribe", "chassis": "a"}, "chassis must be a list"),
        ({"type": "subscribe", "chassis": ["a", 1]}, "chassis must be a list"),
        (
            {"type": "subscribe", "chassis": [f"c{i}" for i in range(MAX_FILTER_CHASSIS + 1)]},
            "at most",
        ),
        ({"type": "subscribe", "channels": "telemetry"}, "channels must be a list"),
        ({"type": "subscribe", "channels": None}, "channels must be a list"),
        ({"type": "subscribe", "channels": ["telemetry", 3]}, "channels must be a list"),
        ({"type": "subscribe", "channels": ["telemetry", "video"]}, "unknown channel 'video'"),
        ({"type": "subscribe", "full_rate": 1}, "full_rate must be true or false"),
        ({"type": "subscribe", "full_rate": "yes"}, "full_rate must be true or false"),
        ({"type": "subscribe", "full_rate": None}, "full_rate must be true or false"),
    ],
)
def test_subscription_bad_message_raises_with_a_reason(message: Any, fragment: str) -> None:
    current = Subscription(chassis=frozenset({"keep"}))
    with pytest.raises(SubscriptionError, match=fragment):
        apply_message(current, message)
    assert current == Subscription(chassis=frozenset({"keep"}))  # frozen, unchanged


def test_subscription_error_is_a_value_error() -> None:
    assert issubclass(SubscriptionError, ValueError)
