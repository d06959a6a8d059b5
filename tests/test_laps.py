"""Lap and sector completion from imperfect streams, on a synthetic constant-speed car.

The car does 50 m/s round a 1,000 m track with sectors starting at 0, 300 and
650 m: every lap is exactly 20 s and the sectors 6, 7 and 7 s. Lap 1 began
123 m before t = 1000 s, so lap k+1 starts at t = 1000 + (1000 k - 123) / 50.
"""

from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
import pytest

from pitwall_rt.compute.laps import (
    MIN_LAP_S,
    ChassisState,
    LapRecord,
    SectorRecord,
    TrackGeometry,
    advance,
    advance_rows,
    fresh_rows,
    last_finite,
    sector_of,
)
from pitwall_rt.compute.physics import point_physics
from pitwall_rt.schema import LAP_SENTINEL, empty_rows
from pitwall_rt.tracks import Track, sector_index

LENGTH_M = 1000.0
STARTS_M = np.array([0.0, 300.0, 650.0])
TRACK = TrackGeometry(LENGTH_M, STARTS_M)
SPEED_MPS = 50.0
SECTOR_TIMES_S = [6.0, 7.0, 7.0]


def lap_start_t(lap: int) -> float:
    return 1000.0 + (LENGTH_M * (lap - 1) - 123.0) / SPEED_MPS


def stream(t: np.ndarray, with_lap: bool = True) -> np.ndarray:
    """Rows of the synthetic car at sample times ``t`` (s)."""
    rows = empty_rows(len(t))
    dist_m = SPEED_MPS * (t - 1000.0) + 123.0
    rows["t"] = t
    rows["chassis"] = 1
    rows["lapdist_m"] = dist_m % LENGTH_M
    if with_lap:
        rows["lap"] = np.floor(dist_m / LENGTH_M) + 1
    rows["speed_kmh"] = SPEED_MPS * 3.6
    rows["accy_can"] = 0.6
    return rows


def grid(n: int = 300, start: float = 1000.07, step: float = 0.3) -> np.ndarray:
    return start + step * np.arange(n)


def run(
    *batches: np.ndarray, track: TrackGeometry | None = TRACK
) -> tuple[ChassisState, list[SectorRecord], list[LapRecord]]:
    """Feed ``batches`` in order; return the final state and everything completed."""
    state = ChassisState()
    sectors: list[SectorRecord] = []
    laps: list[LapRecord] = []
    for rows in batches:
        state, new_sectors, new_laps = advance(state, rows, track)
        sectors += new_sectors
        laps += new_laps
    return state, sectors, laps


def assert_full_laps_exact(laps: list[LapRecord]) -> None:
    for lap in laps:
        if lap.partial:
            continue
        assert lap.lap_time_s == pytest.approx(20.0, abs=1e-9)
        assert lap.sector_times_s == pytest.approx(SECTOR_TIMES_S, abs=1e-9)
        assert lap.end_t == pytest.approx(lap_start_t(lap.lap + 1), abs=1e-9)


def test_sector_of_assigns_boundaries_to_the_sector_they_start() -> None:
    d = np.array([0.0, 299.9, 300.0, 649.99, 650.0, 999.0, 1050.0, 1200.0, -1.0, np.nan])
    assert sector_of(TRACK, d).tolist() == [0, 0, 1, 1, 2, 2, 2, -1, -1, -1]


def test_sector_of_agrees_with_tracks_sector_index() -> None:
    xy = np.zeros((9, 2))
    track = Track(
        "t", "T", LENGTH_M, ("S1", "S2", "S3"), STARTS_M, xy, xy[:, 0], xy[:, 0], xy[:, 0]
    )
    d = np.linspace(-50.0, 1150.0, 301)
    assert sector_of(track, d).tolist() == sector_index(track, d).tolist()
    _, _, laps = run(stream(grid()), track=TrackGeometry(track.length_m, track.sector_starts_m))
    assert_full_laps_exact(laps)


def test_advance_gives_exact_lap_and_sector_times_on_constant_speed_lap() -> None:
    state, sectors, laps = run(stream(grid()))
    assert [lap.lap for lap in laps] == [1, 2, 3, 4]
    assert [lap.partial for lap in laps] == [True, False, False, False]
    assert_full_laps_exact(laps)
    assert state.lap == 5 and state.laps_completed == 3
    assert state.best_lap_time_s == pytest.approx(20.0)
    assert state.sector_rolling[1].time_s.mean == pytest.approx(7.0)
    assert [(s.lap, s.sector) for s in sectors[:4]] == [(1, 0), (1, 1), (1, 2), (2, 0)]


def test_advance_marks_first_lap_partial_when_car_joins_mid_lap() -> None:
    _, _, laps = run(stream(grid()))
    first = laps[0]
    assert first.partial and math.isnan(first.lap_time_s)
    assert first.start_t == pytest.approx(1000.07)
    assert math.isnan(first.sector_times_s[0])  # joined inside sector 1
    assert first.sector_times_s[1:] == pytest.approx(SECTOR_TIMES_S[1:])


def test_advance_completes_laps_from_lapdist_wrap_when_lap_number_absent() -> None:
    state, _, laps = run(stream(grid(), with_lap=False))
    assert [lap.lap for lap in laps] == [0, 1, 2, 3]
    assert_full_laps_exact([LapRecord(**{**vars(lap), "lap": lap.lap + 1}) for lap in laps])
    assert state.lap == 4


def test_advance_gives_same_laps_when_rows_arrive_shuffled() -> None:
    rows = stream(grid())
    shuffled = rows[np.random.default_rng(7).permutation(len(rows))]
    _, _, ordered_laps = run(rows)
    _, _, shuffled_laps = run(shuffled)
    assert [lap.to_dict() for lap in shuffled_laps] == [lap.to_dict() for lap in ordered_laps]


def test_advance_drops_and_counts_duplicates() -> None:
    rows = stream(grid())
    doubled = np.sort(np.concatenate((rows, rows[::5])), order="t")
    state, _, laps = run(doubled[:101], doubled[100:])  # one row also repeats across batches
    assert state.duplicate_rows == len(rows[::5]) + 1
    _, _, clean_laps = run(rows)
    assert [lap.to_dict() for lap in laps] == [lap.to_dict() for lap in clean_laps]


def test_advance_drops_and_counts_late_rows_without_changing_laps() -> None:
    rows = stream(grid())
    late = rows[100:120]
    state, _, laps = run(rows[:150], np.concatenate((late, rows[150:])))
    assert state.late_rows == 20
    _, _, clean_laps = run(rows)
    assert [lap.to_dict() for lap in laps] == [lap.to_dict() for lap in clean_laps]


def test_advance_flags_gap_but_completes_lap_when_points_missing() -> None:
    t = grid()
    t = t[(t < 1020.0) | (t > 1027.0)]  # 7 s hole in lap 2, across the S1/S2 line
    _, _, laps = run(stream(t))
    by_lap = {lap.lap: lap for lap in laps}
    assert by_lap[2].has_gap and not by_lap[3].has_gap and not by_lap[1].has_gap
    assert_full_laps_exact(laps)  # linear interpolation is exact at constant speed


def test_advance_interpolates_lap_crossing_across_missing_points() -> None:
    t = grid()
    t = t[(t < lap_start_t(3) - 2.0) | (t > lap_start_t(3) + 4.0)]
    _, _, laps = run(stream(t))
    by_lap = {lap.lap: lap for lap in laps}
    assert by_lap[2].has_gap and by_lap[3].has_gap
    assert_full_laps_exact(laps)


def test_advance_times_a_sector_skipped_by_missing_points() -> None:
    t = grid()
    t = t[(t < lap_start_t(2) + 5.9) | (t > lap_start_t(2) + 13.2)]  # all of S2 in lap 2
    _, sectors, laps = run(stream(t))
    skipped = next(s for s in sectors if (s.lap, s.sector) == (2, 1))
    assert skipped.time_s == pytest.approx(7.0)
    assert skipped.aggregates.count == 0
    assert_full_laps_exact(laps)


def test_advance_splits_lap_at_lap_number_only_when_track_unknown() -> None:
    rows = stream(grid())
    state, sectors, laps = run(rows, track=None)
    assert sectors == [] and all(lap.sector_times_s == [] for lap in laps)
    firsts = [rows["t"][np.argmax(rows["lap"] == k)] for k in (2, 3, 4, 5)]
    assert [lap.end_t for lap in laps] == firsts
    assert laps[1].lap_time_s == pytest.approx(firsts[1] - firsts[0])
    assert state.sector == -1


def test_advance_uses_lapdist_wrap_time_when_lap_counter_lags() -> None:
    rows = stream(grid())
    lagged = rows["lap"].copy()
    lagged[2:] = rows["lap"][:-2]  # counter trails the distance reset by two samples
    rows["lap"] = lagged
    _, _, laps = run(rows)
    assert [lap.lap for lap in laps] == [1, 2, 3, 4]
    assert_full_laps_exact(laps)


def test_advance_drops_lap_in_progress_when_lap_number_resets() -> None:
    rows = stream(grid())
    second = rows[140:].copy()
    second["lap"] -= 2  # lap 3 in progress (4.5 s of it), then the counter restarts at 1
    _, _, laps = run(rows[:140], second)
    assert [(lap.lap, lap.partial) for lap in laps] == [
        (1, True),
        (2, False),
        (1, True),
        (2, False),
    ]
    assert laps[2].start_t == rows["t"][140]
    assert laps[3].lap_time_s == pytest.approx(20.0)


def test_advance_lap_number_glitches_after_a_crossing_only_relabel_the_lap() -> None:
    """A counter that jumps about in the 1.5 s after each crossing (up, down,
    to 0) and settles: the same laps as the clean stream, ending at the same
    times, but with no lap time (a glitch leaves it unknown); every jump counted."""
    clean = stream(grid())
    rows = clean.copy()
    crossings = np.flatnonzero(np.diff(clean["lap"]) > 0) + 1
    jumps = 0
    for first in crossings:
        lap = clean["lap"][first]
        for k, wrong in enumerate((lap + 5, lap - 1, 0.0, lap + 1), start=1):
            rows["lap"][first + k] = wrong
        jumps += 5  # four wrong values, then back to the right one
    state, _, laps = run(rows[:150], rows[150:])
    _, _, clean_laps = run(clean)
    assert [(lap.lap, lap.end_t) for lap in laps] == [(lap.lap, lap.end_t) for lap in clean_laps]
    assert [lap.partial for lap in laps] == [True] * len(laps)
    assert state.lap_glitches == jumps


def test_advance_a_rewind_across_the_line_makes_no_short_lap() -> None:
    """A game's rewind 1 s after the line (lap number back down), then the
    line crossed again 3 s later: no 3 s lap, the rewound lap is partial."""
    t = grid()
    rows = stream(t)
    first = int(np.flatnonzero(np.diff(rows["lap"]) > 0)[0]) + 1  # lap 2's first sample
    rewound = stream(t - 3.0)  # 0.9 s after the line the car is put back 3 s
    rows[first + 3 :] = rewound[first + 3 :]
    rows["t"] = t
    _, _, laps = run(rows)
    assert [(lap.lap, lap.partial) for lap in laps[:3]] == [(1, True), (1, True), (2, False)]
    assert all(lap.partial or lap.lap_time_s == pytest.approx(20.0) for lap in laps)


def test_advance_a_counter_flapping_every_sample_ends_no_lap_under_min_lap() -> None:
    """Lap numbers at random on every sample: laps end at least MIN_LAP_S apart
    (one per sample before), and the flapping is counted."""
    rows = stream(grid(n=600, step=0.05))  # 30 s at 20 Hz
    rows["lap"] = np.random.default_rng(3).integers(1, 5, len(rows))
    state, _, laps = run(rows[:300], rows[300:])
    ends = [lap.end_t for lap in laps]
    assert 0 < len(laps) <= 30 / MIN_LAP_S
    assert all(b - a >= MIN_LAP_S for a, b in itertools.pairwise(ends))
    assert state.lap_glitches > 400


@pytest.mark.parametrize("with_lap", [True, False])
def test_advance_distance_going_back_over_the_line_moves_no_lap_or_sector(with_lap: bool) -> None:
    """Just after each crossing the distance jumps back over the line (a noisy
    position reading) and then on again: the laps and sectors of the clean
    stream, exactly, and each jump back counted."""
    clean = stream(grid(), with_lap=with_lap)
    rows = clean.copy()
    wraps = np.flatnonzero(np.diff(clean["lapdist_m"]) < 0) + 1
    rows["lapdist_m"][wraps + 1] = LENGTH_M - 2.0
    state, sectors, laps = run(rows[:100], rows[100:])
    _, clean_sectors, clean_laps = run(clean)
    assert [(lap.lap, lap.partial, lap.end_t) for lap in laps] == [
        (lap.lap, lap.partial, lap.end_t) for lap in clean_laps
    ]
    full = [lap for lap in laps if not lap.partial]
    assert full and all(lap.lap_time_s == pytest.approx(20.0, abs=1e-9) for lap in full)
    assert all(lap.sector_times_s == pytest.approx(SECTOR_TIMES_S, abs=1e-9) for lap in full)
    assert [(s.lap, s.sector) for s in sectors] == [(s.lap, s.sector) for s in clean_sectors]
    assert state.lap_glitches == len(wraps)


def test_advance_more_than_half_a_lap_across_a_gap_is_forward_not_back_over_the_line() -> None:
    """12 s without samples mid-lap (600 m of a 1,000 m lap): the car went
    forward, so its sectors still complete, and nothing counts as a glitch."""
    t = grid()
    gone = (t > lap_start_t(2) + 3.0) & (t < lap_start_t(2) + 15.0)
    state, sectors, _ = run(stream(t[~gone]))
    _, clean_sectors, _ = run(stream(t))
    assert [(s.lap, s.sector) for s in sectors] == [(s.lap, s.sector) for s in clean_sectors]
    assert state.lap_glitches == 0


def test_advance_reads_the_gr_cup_unknown_lap_sentinel_as_no_lap_number() -> None:
    """A few samples with lap 32768 mid-lap and across a crossing: the laps of
    the clean stream (the sentinel once made a lap jump up and back down)."""
    clean = stream(grid())
    rows = clean.copy()
    crossing = int(np.flatnonzero(np.diff(clean["lap"]) > 0)[1]) + 1
    rows["lap"][90:93] = LAP_SENTINEL
    rows["lap"][crossing - 2 : crossing + 2] = LAP_SENTINEL
    _, _, laps = run(rows[:crossing], rows[crossing:])
    _, _, clean_laps = run(clean)
    assert [(lap.lap, lap.partial) for lap in laps] == [
        (lap.lap, lap.partial) for lap in clean_laps
    ]
    assert_full_laps_exact(laps)


@pytest.mark.parametrize("with_lap", [True, False])
def test_advance_distance_logged_on_one_row_in_five_gives_the_same_laps_and_sectors(
    with_lap: bool,
) -> None:
    """GR Cup cars log the lap distance at a fifth of the rate of the other
    channels: the rows between have none. Crossings interpolate between the
    rows that have one, so the laps and sectors are those of the full stream."""
    full = stream(grid(n=900, step=0.1), with_lap=with_lap)
    rows = full.copy()
    rows["lapdist_m"][np.arange(len(rows)) % 5 != 0] = np.nan
    _, sectors, laps = run(rows[:437], rows[437:])
    _, full_sectors, full_laps = run(full)
    assert [(s.lap, s.sector) for s in sectors] == [(s.lap, s.sector) for s in full_sectors]
    times = [s.time_s for s in sectors]
    assert times == pytest.approx([s.time_s for s in full_sectors], abs=1e-9, nan_ok=True)
    assert [(lap.lap, lap.partial) for lap in laps] == [(lap.lap, lap.partial) for lap in full_laps]
    timed = [lap.lap_time_s for lap in laps if not lap.partial]
    assert len(timed) >= 3 and timed == pytest.approx([20.0] * len(timed), abs=1e-9)


def test_advance_leaves_input_state_untouched_and_state_pickles() -> None:
    rows = stream(grid())
    state, _, _ = run(rows[:120])
    before = pickle.dumps(state)
    new_state, _, _ = advance(state, rows[120:], TRACK)
    assert pickle.dumps(state) == before
    assert pickle.loads(pickle.dumps(new_state)).lap == new_state.lap


def test_advance_counts_samples_once_across_laps_and_stint() -> None:
    rows = stream(grid())
    state, _, laps = run(rows[:77], rows[77:190], rows[190:])
    assert sum(lap.aggregates.count for lap in laps) + state.lap_agg.count == len(rows)
    assert state.stint_agg.count == len(rows)
    assert state.stint_agg.tire_stress_g_m[1] > state.stint_agg.tire_stress_g_m[0]  # left turns


def test_advance_marks_lap_partial_when_lap_numbers_jump_over_missing_laps() -> None:
    t = grid(400)
    t = t[(t < lap_start_t(2) + 3.0) | (t > lap_start_t(4) + 5.0)]  # no data for all of lap 3
    _, _, laps = run(stream(t))
    by_lap = {lap.lap: lap for lap in laps}
    assert 3 not in by_lap
    assert by_lap[2].partial and by_lap[2].has_gap and math.isnan(by_lap[2].lap_time_s)
    assert math.isnan(by_lap[2].sector_times_s[-1])
    assert by_lap[4].partial and by_lap[4].sector_times_s[1:] == pytest.approx([7.0, 7.0])
    assert_full_laps_exact([by_lap[5]])


def test_advance_times_laps_to_a_sample_when_lap_counter_leads_distance() -> None:
    rows = stream(grid())
    lead = rows["lap"].copy()
    lead[:-2] = rows["lap"][2:]  # counter goes up two samples before the distance resets
    rows["lap"] = lead
    _, _, laps = run(rows)
    assert [lap.lap for lap in laps] == [1, 2, 3, 4]
    for lap in laps[1:]:
        assert lap.lap_time_s == pytest.approx(20.0, abs=0.3)
        assert sum(lap.sector_times_s) == pytest.approx(lap.lap_time_s)


def test_advance_leaves_lap_untimed_when_line_falls_in_a_gap_and_track_unknown() -> None:
    t = grid()
    t = t[(t < lap_start_t(3) - 3.0) | (t > lap_start_t(3) + 3.0)]
    _, _, laps = run(stream(t), track=None)
    by_lap = {lap.lap: lap for lap in laps}
    assert by_lap[2].partial and by_lap[2].has_gap and by_lap[3].partial
    assert not by_lap[4].partial


def _fresh_alone(state: ChassisState, rows: np.ndarray) -> tuple[np.ndarray, int, int]:
    """One car's kept rows, late and duplicate counts, as ``advance`` selected them
    before cars were done together."""
    rows = rows[np.argsort(rows["t"], kind="stable")]
    t = rows["t"]
    late = int(np.count_nonzero(t < state.last_t))
    keep = np.isfinite(t) & ~(t <= state.last_t)
    keep[1:] &= t[1:] != t[:-1]
    return rows[keep], late, len(t) - late - int(np.count_nonzero(keep))


def test_fresh_rows_of_several_cars_equal_each_car_alone() -> None:
    seen = run(stream(grid(40)))[0]  # last_t about 1011.77, mid-lap
    cars = [
        (ChassisState(), stream(np.array([1005.0, 1005.0, 1006.0, np.nan, 1007.0]))),
        (seen, stream(np.array([1007.0, seen.last_t, 1011.0, 1012.0, 1012.0, 1013.0]))),
        (seen, stream(np.array([1013.0, 1001.0]))),  # starts with the last car's last t
        (ChassisState(), stream(np.array([1013.0]))),
    ]
    rows = np.concatenate([r[np.argsort(r["t"], kind="stable")] for _, r in cars])
    starts = np.cumsum([0] + [len(r) for _, r in cars[:-1]])
    got = fresh_rows([st for st, _ in cars], rows, starts)
    for (state, car), fresh in zip(cars, got, strict=True):
        kept, late, dups = _fresh_alone(state, car)
        assert fresh.rows.tobytes() == kept.tobytes()
        assert (fresh.late, fresh.duplicates) == (late, dups)
        assert fresh.follows(state.last_t, state.physics)
        _, carry = point_physics(kept, state.physics)
        assert fresh.carry_after == carry
    assert [len(f.rows) for f in got] == [3, 2, 1, 1]
    assert [(f.late, f.duplicates) for f in got] == [(0, 2), (2, 2), (1, 0), (0, 0)]


def test_advance_rows_refuses_fresh_rows_of_another_state() -> None:
    rows = stream(grid(40))
    fresh = fresh_rows([ChassisState()], rows, np.zeros(1, dtype=np.intp))[0]
    with pytest.raises(ValueError):
        advance_rows(run(rows[:10])[0], rows, TRACK, fresh)


@pytest.mark.parametrize(
    ("values", "want"),
    [([1.0, 2.0], 1), ([1.0, math.nan], 0), ([math.nan, 3.0, math.nan, math.nan], 1),
     ([math.nan], None), ([], None)],
)  # fmt: skip
def test_last_finite_finds_the_last_reading_or_none(values: list[float], want: int | None) -> None:
    assert last_finite(np.array(values)) == want
