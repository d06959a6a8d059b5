"""Who gets which bytes: clients grouped by subscription, and rows by chassis.

Every client of one group gets the very same frame, so a tick encodes once
per group. Both lookups here used to be rebuilt per tick (a pass over 1,000
clients, one ``np.isin`` per group); now the client groups are kept until a
client joins, leaves or resubscribes, and a batch's rows are split by
chassis once, with one ``argsort``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

import numpy as np

from ..schema import id_order
from .subscription import Subscription

GroupKey = tuple[frozenset[str] | None, bool]  # (chassis filter, full_rate)


class Subscriber(Protocol):
    @property
    def subscription(self) -> Subscription: ...


S = TypeVar("S", bound=Subscriber)


class Groups(Generic[S]):
    """Subscribers on each channel by ``Subscription.group_key``, cached.

    Call ``changed()`` whenever the set of subscribers or a subscription
    changes; the next lookup rebuilds. Lists handed out are never mutated
    afterwards, so a caller may keep one (the outbox does)."""

    def __init__(self, subscribers: Iterable[S]) -> None:
        self._subscribers = subscribers
        self._cache: dict[str, dict[GroupKey, list[S]]] = {}

    def changed(self) -> None:
        self._cache.clear()

    def on(self, channel: str) -> dict[GroupKey, list[S]]:
        groups = self._cache.get(channel)
        if groups is None:
            groups = {}
            for sub in self._subscribers:
                subscription = sub.subscription
                if channel in subscription.channels:
                    groups.setdefault(subscription.group_key, []).append(sub)
            self._cache[channel] = groups
        return groups

    def everyone_on(self, channel: str) -> list[S]:
        return [sub for members in self.on(channel).values() for sub in members]


class ChassisIndex:
    """A batch's row indices per chassis id, in arrival order."""

    def __init__(self, chassis_ids: np.ndarray) -> None:
        self._rows: dict[int, np.ndarray] = {}
        if not len(chassis_ids):
            return
        order = id_order(chassis_ids)  # stable: arrival order kept
        ids = chassis_ids[order]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        self._rows = dict(zip(ids[starts].tolist(), np.split(order, starts[1:]), strict=True))

    def select(self, ids: Iterable[int | None]) -> np.ndarray:
        """Indices of the rows of these chassis (None: unknown name), arrival order."""
        parts = [self._rows[i] for i in ids if i in self._rows]
        if not parts:
            return np.arange(0)
        if len(parts) == 1:
            return parts[0]
        return np.sort(np.concatenate(parts))
