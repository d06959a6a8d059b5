"""pitwall_rt.csvfmt.repair: each repair alone, and that none depends on
where a file happens to be cut into chunks."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pitwall_rt.csvfmt.repair import (
    LAP_SENTINEL,
    BackwardSteps,
    ClockOffsets,
    GapCounter,
    LapTracker,
    dedup_sorted,
)

NAN = np.nan


def test_repair_dedup_keeps_the_first_and_tells_exact_from_conflicting() -> None:
    keys = np.array([1, 1, 2, 3, 3, 3, 4, 4])
    values = np.array([5.0, 5.0, 1.0, 2.0, 9.0, 2.0, NAN, NAN])
    keep, exact, conflict = dedup_sorted(keys, values)
    assert keep.tolist() == [True, False, True, True, False, False, True, False]
    assert (exact, conflict) == (3, 1)  # NaN repeats NaN exactly


def test_repair_dedup_without_repeats_keeps_everything() -> None:
    keep, exact, conflict = dedup_sorted(np.arange(5), np.zeros(5))
    assert keep.all() and exact == conflict == 0


def test_repair_backward_steps_count_per_car_across_chunks() -> None:
    steps = BackwardSteps()
    assert steps.count(np.array([0, 0, 1, 1]), np.array([5, 4, 9, 10])) == 1
    assert steps.count(np.array([1, 0]), np.array([8, 1])) == 1  # 10 -> 8 across the cut
    assert steps.count(np.array([], dtype=np.int64), np.array([], dtype=np.int64)) == 0


def test_repair_clock_offset_is_a_low_percentile_of_batch_latency() -> None:
    """Each batch's newest sample gives offset + latency; the estimate sits
    near the smallest latency, not the median, and ignores older samples."""
    offsets = ClockOffsets()
    rng = np.random.default_rng(3)
    batches = 200
    latency_us = rng.uniform(100_000, 3_000_000, batches)
    latency_us[:5] = 50_000  # the quickest batches
    newest = np.arange(batches) * 1_000_000
    meta = newest + 10_000_000_000 + latency_us.astype(np.int64)
    ecu = np.concatenate([newest, newest - 400_000])  # plus an older sample per batch
    offsets.observe(np.zeros(2 * batches, dtype=np.int64), np.tile(meta, 2), ecu)
    got = offsets.offsets_us(np.array([0]))[0] - 10_000_000_000
    assert got == np.round(np.percentile(latency_us.astype(np.int64), 10))
    assert 50_000 <= got < 500_000
    assert offsets.by_name(["GR86-002"]) == {"GR86-002": round((got + 1e10) / 1e6, 3)}


def test_repair_clock_offset_freezes_and_rows_without_receiver_time_are_ignored() -> None:
    offsets = ClockOffsets()
    codes = np.zeros(100, dtype=np.int64)
    ecu = np.arange(100) * 1000
    offsets.observe(codes, ecu + 5000, ecu)
    offsets.observe(codes, ecu + 999_999, ecu + 100_000)  # frozen: ignored
    offsets.observe(np.array([1]), np.array([-1]), np.array([7]))  # no meta_time
    assert offsets.offsets_us(np.array([0, 1])).tolist()[0] == 5000
    assert np.isnan(offsets.offsets_us(np.array([1]))[0])


def test_repair_clock_offset_of_a_short_file_is_set_at_finish() -> None:
    offsets = ClockOffsets()
    offsets.observe(np.array([0, 0]), np.array([110, 120]), np.array([10, 20]))
    offsets.finish()
    assert offsets.offsets_us(np.array([0]))[0] == 100


def test_repair_lap_sentinel_recovered_from_lapdist_wraps() -> None:
    repairs: Counter[str] = Counter()
    codes = np.zeros(8, dtype=np.int64)
    lap = np.array([4, 4, LAP_SENTINEL, LAP_SENTINEL, LAP_SENTINEL, LAP_SENTINEL, 6, 6], float)
    dist = np.array([3000, 3600, 20, NAN, 3650, 10, 40, 90], float)
    got = LapTracker().repair(codes, lap, dist, repairs)
    assert got.tolist() == [4, 4, 5, 5, 5, 6, 6, 6]
    assert repairs == Counter(lap_sentinel=4, lap_recovered=4, lap_unrecovered=0)


def test_repair_lap_leading_unknowns_anchor_on_the_next_known_lap() -> None:
    repairs: Counter[str] = Counter()
    lap = np.array([LAP_SENTINEL, LAP_SENTINEL, 9, 9], float)
    dist = np.array([3500, 5, 60, 90], float)
    got = LapTracker().repair(np.zeros(4, dtype=np.int64), lap, dist, repairs)
    assert got.tolist() == [8, 9, 9, 9]


def test_repair_lap_without_any_anchor_stays_unknown_and_is_counted() -> None:
    repairs: Counter[str] = Counter()
    codes = np.array([0, 0, 1, 1])
    lap = np.array([LAP_SENTINEL, LAP_SENTINEL, 3, LAP_SENTINEL], float)
    got = LapTracker().repair(codes, lap, np.array([1, 2, 3, 4], float), repairs)
    assert np.isnan(got[:2]).all() and got[2:].tolist() == [3, 3]
    assert repairs == Counter(lap_sentinel=3, lap_recovered=1, lap_unrecovered=2)


def test_repair_gaps_counted_per_car_across_chunks() -> None:
    gaps = GapCounter()
    assert gaps.count(np.array([0, 0, 1, 1]), np.array([0.0, 2.5, 0.0, 0.1])) == 1
    assert gaps.count(np.array([0, 1]), np.array([3.0, 9.0])) == 1  # car 1: 0.1 -> 9.0


@st.composite
def car_laps(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Points of a few cars driving laps of 1500 m, some laps unknown, and
    cut points that split them into chunks (each chunk sorted by car)."""
    n = draw(st.integers(2, 120))
    per_car = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    codes = np.array(per_car, dtype=np.int64)
    step = draw(st.floats(20.0, 400.0))
    dist_total = np.arange(n) * step
    lap = 1 + np.floor(dist_total / 1500.0)
    lapdist = dist_total % 1500.0
    gone = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    lapdist[np.array(gone) & (np.arange(n) % 3 == 0)] = np.nan
    unknown = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    lap[np.array(unknown)] = LAP_SENTINEL
    cuts = sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=4))))
    return codes, lap, lapdist, cuts


@settings(max_examples=60, deadline=None)
@given(car_laps())
def test_repair_laps_and_gaps_do_not_depend_on_chunk_boundaries(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, list[int]],
) -> None:
    codes, lap, lapdist, cuts = case
    whole_repairs: Counter[str] = Counter()
    parts_repairs: Counter[str] = Counter()
    whole = _by_chunks(codes, lap, lapdist, [], whole_repairs)
    parts = _by_chunks(codes, lap, lapdist, cuts, parts_repairs)
    np.testing.assert_array_equal(whole, parts)
    assert whole_repairs["lap_sentinel"] == parts_repairs["lap_sentinel"]
    known = lap != LAP_SENTINEL
    np.testing.assert_array_equal(whole[known], lap[known])


def _by_chunks(
    codes: np.ndarray, lap: np.ndarray, lapdist: np.ndarray, cuts: list[int], repairs: Counter[str]
) -> np.ndarray:
    """Chunks in file order, each sorted by car (stable), as the decoders do;
    the result is put back in file order. Backward fill only sees its own
    chunk, so only points after a known lap are compared across cuts."""
    tracker = LapTracker()
    out = np.empty_like(lap)
    for part in np.split(np.arange(len(codes)), cuts):
        order = part[np.argsort(codes[part], kind="stable")]
        out[order] = tracker.repair(codes[order], lap[order], lapdist[order], repairs)
    anchored = np.zeros(len(codes), dtype=bool)
    for car in np.unique(codes):
        mine = codes == car
        first_known = np.flatnonzero(mine & (lap != LAP_SENTINEL))
        if len(first_known):
            anchored |= mine & (np.arange(len(codes)) >= first_known[0])
    return np.where(anchored, out, -1.0)
