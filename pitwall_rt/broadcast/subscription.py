"""What a WebSocket client asked to receive, parsed from its messages.

Pure: a client message (already JSON-decoded) in, a ``Subscription`` or a
reason out. Clients send ``{"type": "subscribe", "chassis": [...],
"channels": [...], "full_rate": true}``; every key is optional and a missing
key keeps the client's current choice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

CHANNELS = frozenset({"telemetry", "insights", "alerts"})
MAX_FILTER_CHASSIS = 256


class SubscriptionError(ValueError):
    """The client's message can't be applied; the text goes back to it."""


@dataclass(frozen=True)
class Subscription:
    chassis: frozenset[str] | None = None  # None = every chassis
    channels: frozenset[str] = CHANNELS
    full_rate: bool = False

    @property
    def group_key(self) -> tuple[frozenset[str] | None, bool]:
        """Clients with equal keys get the very same telemetry bytes."""
        return (self.chassis, self.full_rate)


def apply_message(current: Subscription, message: Any) -> Subscription:
    """The subscription after ``message``; raises SubscriptionError when bad."""
    if type(message) is not dict:
        raise SubscriptionError("message must be a JSON object")
    kind = message.get("type")
    if kind != "subscribe":
        raise SubscriptionError(f"unknown message type {kind!r}; expected 'subscribe'")
    updated = current
    if "chassis" in message:
        updated = replace(updated, chassis=_chassis(message["chassis"]))
    if "channels" in message:
        updated = replace(updated, channels=_channels(message["channels"]))
    if "full_rate" in message:
        if type(message["full_rate"]) is not bool:
            raise SubscriptionError("full_rate must be true or false")
        updated = replace(updated, full_rate=message["full_rate"])
    return updated


def _chassis(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if type(value) is not list or not all(type(c) is str for c in value):
        raise SubscriptionError("chassis must be a list of strings, or null for all")
    if len(value) > MAX_FILTER_CHASSIS:
        raise SubscriptionError(f"at most {MAX_FILTER_CHASSIS} chassis per subscription")
    return frozenset(value)


def _channels(value: Any) -> frozenset[str]:
    if type(value) is not list or not all(type(c) is str for c in value):
        raise SubscriptionError("channels must be a list of strings")
    unknown = sorted(set(value) - CHANNELS)
    if unknown:
        raise SubscriptionError(
            f"unknown channel {unknown[0]!r}; channels are {', '.join(sorted(CHANNELS))}"
        )
    return frozenset(value)
