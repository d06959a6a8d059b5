"""A fixed-schedule tick for the stages that run every ``BATCH_MS``.

Ticks are scheduled from the start time, not from the end of the last one,
so they don't drift; a stage that falls a whole tick behind skips ahead
rather than bursting to catch up. An exception in one tick is logged and
the next tick runs: one bad batch must not stop the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


async def run_every(interval_s: float, tick: Callable[[], None], name: str) -> None:
    """Call ``tick`` every ``interval_s`` until cancelled."""
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        next_at += interval_s
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        try:
            tick()
        except Exception:
            log.exception("%s tick failed", name)
        if loop.time() - next_at > interval_s:
            next_at = loop.time()
