"""Counters of what happened to every point, by source and by reason.

Loss is accounted at every hop (kernel receive drops, rejected points, ring
overwrites, dropped WebSocket frames) so an operator can tell where data went.
Keys are drawn from small fixed sets (sources, reason codes), so the counters
stay bounded whatever the input.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class IngestStats:
    """Points accepted and rejected per source; rejections per reason."""

    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    payloads: Counter[str] = field(default_factory=Counter)
    empty_payloads: Counter[str] = field(default_factory=Counter)
    started_mono: float = field(default_factory=time.monotonic)

    def count_rejections(self, source: str, reasons: dict[str, int]) -> None:
        for reason, count in reasons.items():
            self.rejected[source] += count
            self.reasons[(source, reason)] += count

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_mono

    def snapshot(self) -> dict[str, object]:
        by_reason: dict[str, dict[str, int]] = {}
        for (source, reason), count in sorted(self.reasons.items()):
            by_reason.setdefault(source, {})[reason] = count
        return {
            "accepted": dict(self.accepted),
            "rejected": dict(self.rejected),
            "rejected_by_reason": by_reason,
            "accepted_total": sum(self.accepted.values()),
            "rejected_total": sum(self.rejected.values()),
            "payloads": dict(self.payloads),
            "empty_payloads": dict(self.empty_payloads),
        }
