"""Repairs for what real logger files get wrong, vectorised and counted by kind.

The GR Cup "Hack the Track" export shows the faults (see
``tests/data/grcup/SOURCE.md``): duplicate rows, some with conflicting
values; the ECU ``timestamp`` stepping backwards inside each receiver batch
and running about 1 day 18 h behind the receiver clock (``meta_time``);
``lap`` = 32768 meaning "unknown"; multi-second gaps. Policy, as in Fast-F1:
data faults become counted repairs, never exceptions. Every repair adds to a
``Repairs`` counter under one of ``REPAIR_KINDS``:

``duplicate_exact``
    rows dropped because an earlier row had the same (car, ECU time, channel)
    and the same value;
``duplicate_conflict``
    the same, but with a different value; the first row in file order wins
    (in the Barber rows these come from one receiver batch, so there is no
    better rule);
``time_backwards``
    steps where a car's sample time (the ECU ``timestamp`` in long files)
    went backwards from one row to the next in file order; the samples are
    re-ordered by time;
``late_dropped``
    rows whose ECU time was already passed on for their car (they arrived
    more than the reorder window, ``hold_s``, behind newer samples);
``ecu_clock_mapped``
    points whose time was moved from the ECU clock onto the receiver clock
    with the per-car offset of :class:`ClockOffsets`;
``lap_sentinel`` / ``lap_recovered`` / ``lap_unrecovered``
    points with ``lap`` = 32768, and whether lap-distance wraps gave them a
    lap number (:class:`LapTracker`) or they were stored without one;
``gap``
    a car's consecutive samples more than ``GAP_S`` apart;
``unknown_channel``
    long-format rows of a channel we do not map (ignored).

All functions take arrays already sorted by car (and time, where it says so)
and keep per-car state across chunks in small arrays indexed by the car's
code in the file, so a repair never needs the whole file in memory.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

import numpy as np

from ..schema import LAP_SENTINEL

Repairs = Counter[str]

REPAIR_KINDS: Final = (
    "duplicate_exact",
    "duplicate_conflict",
    "time_backwards",
    "late_dropped",
    "ecu_clock_mapped",
    "lap_sentinel",
    "lap_recovered",
    "lap_unrecovered",
    "gap",
    "unknown_channel",
)

GAP_S: Final = 2.0
"""A car's samples further apart than this, seconds, count as a gap (the
Barber logger samples every 40-90 ms)."""

WRAP_DROP_M: Final = 1000.0
"""A drop in lap distance larger than this, metres, is a new lap: the
distance resets at the lap trigger. Shorter drops are noise or reversing."""

OFFSET_MIN_BATCHES: Final = 64
"""Receiver batches a car needs before its ECU clock offset is frozen."""

OFFSET_PERCENTILE: Final = 10.0
"""Percentile of per-batch latency taken as the clock offset (see ClockOffsets)."""


def run_starts(codes: np.ndarray) -> np.ndarray:
    """Boolean mask of the first element of every run of equal ``codes``."""
    starts = np.empty(len(codes), dtype=bool)
    if len(codes):
        starts[0] = True
        np.not_equal(codes[1:], codes[:-1], out=starts[1:])
    return starts


def _run_start_index(starts: np.ndarray) -> np.ndarray:
    """For every element, the index of the first element of its run."""
    index = np.arange(len(starts))
    return np.maximum.accumulate(np.where(starts, index, 0))


def _run_end_index(starts: np.ndarray) -> np.ndarray:
    """For every element, the index of the last element of its run."""
    n = len(starts)
    ends = np.empty(n, dtype=bool)
    if n:
        ends[:-1] = starts[1:]
        ends[-1] = True
    index = np.where(ends, np.arange(n), n)
    return np.minimum.accumulate(index[::-1])[::-1]


def _grow(array: np.ndarray, size: int, fill: float | int) -> np.ndarray:
    if size <= len(array):
        return array
    extra = np.full(max(size, 2 * len(array)) - len(array), fill, dtype=array.dtype)
    return np.concatenate([array, extra])


def dedup_sorted(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Drop repeated keys from a stably sorted key array.

    Returns (keep mask, exact duplicates, conflicting duplicates). A repeat
    is exact when its value equals the first of its run (NaN equals NaN).
    The first of each run is kept, which, the sort being stable, is the
    first in file order.
    """
    n = len(keys)
    dup = np.zeros(n, dtype=bool)
    if n > 1:
        np.equal(keys[1:], keys[:-1], out=dup[1:])
    if not dup.any():
        return ~dup, 0, 0
    ref = values[_run_start_index(~dup)]
    same = (values == ref) | (np.isnan(values) & np.isnan(ref))
    exact = int(np.count_nonzero(dup & same))
    return ~dup, exact, int(np.count_nonzero(dup)) - exact


class BackwardSteps:
    """Counts a car's time stepping backwards between consecutive rows in
    file order, carrying the last row across chunks."""

    def __init__(self) -> None:
        self._last_code = -1
        self._last_time = 0

    def count(self, codes: np.ndarray, times: np.ndarray) -> int:
        if not len(codes):
            return 0
        prev_code = np.empty_like(codes)
        prev_time = np.empty_like(times)
        prev_code[0], prev_time[0] = self._last_code, self._last_time
        prev_code[1:], prev_time[1:] = codes[:-1], times[:-1]
        self._last_code, self._last_time = int(codes[-1]), times[-1]
        return int(np.count_nonzero((codes == prev_code) & (times < prev_time)))


class ClockOffsets:
    """Per-car offset from the ECU clock to the receiver clock, microseconds.

    ``meta_time`` is when the receiver got a batch of samples; the newest
    sample in a batch was taken ``latency`` before that, so ``meta_time -
    newest ECU timestamp = offset + latency`` with latency >= 0. The offset
    is the 10th percentile of that quantity over a car's first 64 batches:
    a low percentile because latency only adds, not the minimum so a few
    batches with a bad clock can't drag it. In the Barber rows the estimate
    is 151,941.3 s (1 d 18 h 12 min), with the median batch 0.5 s above it.
    Once frozen, the offset stays fixed for the file, so times never jump.
    """

    def __init__(self) -> None:
        self._offset_us = np.full(0, np.nan)
        self._frozen = np.zeros(0, dtype=bool)
        self._latencies: dict[int, list[np.ndarray]] = {}

    def _ensure(self, size: int) -> None:
        self._offset_us = _grow(self._offset_us, size, np.nan)
        self._frozen = _grow(self._frozen, size, False)

    def observe(self, codes: np.ndarray, meta_us: np.ndarray, ecu_us: np.ndarray) -> None:
        """Learn from rows (any order); only cars not yet frozen cost work.
        ``meta_us`` < 0 marks a row without a receiver time."""
        if not len(codes):
            return
        self._ensure(int(codes.max()) + 1)
        mask = ~self._frozen[codes] & (meta_us >= 0)
        if not mask.any():
            return
        codes, meta_us, ecu_us = codes[mask], meta_us[mask], ecu_us[mask]
        order = np.lexsort((ecu_us, meta_us, codes))
        codes, meta_us, ecu_us = codes[order], meta_us[order], ecu_us[order]
        last = np.ones(len(codes), dtype=bool)
        last[:-1] = (codes[1:] != codes[:-1]) | (meta_us[1:] != meta_us[:-1])
        batch_codes = codes[last]
        latency = meta_us[last] - ecu_us[last]
        for code in np.unique(batch_codes).tolist():
            self._latencies.setdefault(code, []).append(latency[batch_codes == code])
            self._estimate(code, final=False)

    def _estimate(self, code: int, final: bool) -> None:
        samples = self._latencies.get(code)
        if not samples:
            return
        merged = np.concatenate(samples)
        self._latencies[code] = [merged]
        self._offset_us[code] = np.round(np.percentile(merged, OFFSET_PERCENTILE))
        if final or len(merged) >= OFFSET_MIN_BATCHES:
            self._frozen[code] = True
            del self._latencies[code]

    def finish(self) -> None:
        """Freeze every car from what was seen (end of file)."""
        for code in list(self._latencies):
            self._estimate(code, final=True)

    def offsets_us(self, codes: np.ndarray) -> np.ndarray:
        """The current offset for each code; NaN where a car has none."""
        if len(codes):
            self._ensure(int(codes.max()) + 1)
        return self._offset_us[codes]

    def by_name(self, names: list[str]) -> dict[str, float]:
        """Offsets in seconds keyed by car name (``names[code]``)."""
        return {
            names[code]: round(float(self._offset_us[code]) / 1e6, 3)
            for code in range(min(len(names), len(self._offset_us)))
            if not np.isnan(self._offset_us[code])
        }


class LapTracker:
    """Recovers ``lap`` = 32768 from lap-distance wraps, per car.

    Each drop of ``lapdist_m`` by more than ``WRAP_DROP_M`` starts a new
    segment; ``lap - segment`` is constant while the logger's lap counter
    and its lap-distance trigger agree (in the Barber rows the lap changes
    exactly at the wrap). An unknown lap becomes ``base + segment``, with
    ``base`` from the car's most recent known lap (or, before any, the next
    known one in the chunk). Points with no known lap to anchor on stay
    without one and are counted ``lap_unrecovered``.
    """

    def __init__(self) -> None:
        self._last_dist = np.full(0, np.nan)
        self._segment = np.zeros(0, dtype=np.int64)
        self._base = np.full(0, np.nan)

    def _ensure(self, size: int) -> None:
        self._last_dist = _grow(self._last_dist, size, np.nan)
        self._segment = _grow(self._segment, size, 0)
        self._base = _grow(self._base, size, np.nan)

    def repair(
        self, codes: np.ndarray, lap: np.ndarray, lapdist_m: np.ndarray, repairs: Repairs
    ) -> np.ndarray:
        """Laps for points sorted by (car code, time); NaN where unknown."""
        n = len(codes)
        if not n:
            return lap
        self._ensure(int(codes.max()) + 1)
        starts = run_starts(codes)
        first, last = _run_start_index(starts), _run_end_index(starts)
        segment = self._segments(codes, lapdist_m, starts, first)
        lap = lap.copy()
        sentinel = lap == LAP_SENTINEL
        lap[sentinel] = np.nan
        base = self._bases(codes, lap - segment, first, last)
        recovered = sentinel & ~np.isnan(base) & (base + segment >= 0)
        lap[recovered] = base[recovered] + segment[recovered]
        if sentinel.any():
            n_recovered = int(np.count_nonzero(recovered))
            repairs["lap_sentinel"] += int(np.count_nonzero(sentinel))
            repairs["lap_recovered"] += n_recovered
            repairs["lap_unrecovered"] += int(np.count_nonzero(sentinel)) - n_recovered
        ends = np.flatnonzero(last == np.arange(n))
        self._segment[codes[ends]] = segment[ends]
        known_base = base[ends]
        self._base[codes[ends]] = np.where(
            np.isnan(known_base), self._base[codes[ends]], known_base
        )
        return lap

    def _segments(
        self, codes: np.ndarray, dist: np.ndarray, starts: np.ndarray, first: np.ndarray
    ) -> np.ndarray:
        """Lap-distance segment of every point, continuing the car's count."""
        at = np.flatnonzero(~np.isnan(dist))
        wraps = np.zeros(len(codes), dtype=np.int64)
        if len(at):
            d, c = dist[at], codes[at]
            prev = np.empty_like(d)
            prev[1:] = d[:-1]
            car_first = run_starts(c)
            prev[car_first] = self._last_dist[c[car_first]]
            with np.errstate(invalid="ignore"):
                wraps[at[(prev - d) > WRAP_DROP_M]] = 1
            car_last = np.append(car_first[1:], True)
            self._last_dist[c[car_last]] = d[car_last]
        total = np.cumsum(wraps)
        before_run = total[first] - wraps[first]
        return self._segment[codes] + total - before_run

    def _bases(
        self, codes: np.ndarray, base_known: np.ndarray, first: np.ndarray, last: np.ndarray
    ) -> np.ndarray:
        """``lap - segment`` carried forward from known points (then back)."""
        n = len(codes)
        index = np.arange(n)
        known = ~np.isnan(base_known)
        prev = np.maximum.accumulate(np.where(known, index, -1))
        base = np.where(prev >= first, base_known[np.maximum(prev, 0)], self._base[codes])
        nxt = np.minimum.accumulate(np.where(known, index, n)[::-1])[::-1]
        use_next = np.isnan(base) & (nxt <= last)
        return np.where(use_next, base_known[np.minimum(nxt, n - 1)], base)


class GapCounter:
    """Counts gaps longer than ``GAP_S`` between a car's consecutive samples,
    carrying each car's last time across chunks."""

    def __init__(self) -> None:
        self._last_s = np.full(0, np.nan)

    def count(self, codes: np.ndarray, times_s: np.ndarray) -> int:
        """``times_s`` sorted per car (codes grouped), seconds."""
        if not len(codes):
            return 0
        self._last_s = _grow(self._last_s, int(codes.max()) + 1, np.nan)
        starts = run_starts(codes)
        prev = np.empty_like(times_s)
        prev[1:] = times_s[:-1]
        prev[starts] = self._last_s[codes[starts]]
        ends = np.append(starts[1:], True)
        self._last_s[codes[ends]] = times_s[ends]
        with np.errstate(invalid="ignore"):
            return int(np.count_nonzero(times_s - prev > GAP_S))
