"""model.features: windows from compute_batch, their invariants, and the feature contract."""

from __future__ import annotations

import itertools
import json
import math
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitwall_rt.compute import compute_batch
from pitwall_rt.compute.laps import ChassisState, TrackGeometry, advance, advance_rows
from pitwall_rt.demo_gen import DEFAULT_TRACKS_PATH
from pitwall_rt.model import MODEL_PATH, features
from pitwall_rt.model.features import FEATURES, INDEX, Window, WindowCarry
from pitwall_rt.model.train import StintSpec, simulate, telemetry_rows
from pitwall_rt.tracks import Track, load_tracks

ADDITIVE = ("window_time_s", "lat_g_s", "lon_g_s", "brake_energy_bar_s", "stress_fl_g_m",
            "stress_rr_g_m", "hard_cornering")  # fmt: skip


@cache
def barber() -> Track:
    return load_tracks(DEFAULT_TRACKS_PATH)["barber"]


@cache
def stint_rows(rate_hz: float = 20.0, laps: int = 4) -> np.ndarray:
    spec = StintSpec("barber", "aggressive", 30.0, 1.0, laps, rate_hz, 0, 11)
    stint, _ = simulate(spec, barber())
    return telemetry_rows(spec, stint)


def table() -> dict[int, tuple[float, np.ndarray]]:
    return {1: (barber().length_m, np.asarray(barber().sector_starts_m))}


def windows_of(rows: np.ndarray, cuts: list[int] | None = None) -> list[Window]:
    states: dict = {}
    carries: dict[int, WindowCarry] = {}
    out: list[Window] = []
    for chunk in np.split(rows, cuts or []):
        result = compute_batch(chunk, table(), states, carries)
        for cid, res in result.chassis.items():
            states[cid] = res.state
            assert res.window_carry is not None
            carries[cid] = res.window_carry
            out.extend(res.windows)
    return out


def full_laps(windows: list[Window]) -> list[Window]:
    return [w for w in windows if w.kind == "lap" and w.full]


def test_features_lap_equals_sum_of_its_sectors_for_additive_features() -> None:
    windows = windows_of(stint_rows())
    laps = full_laps(windows)
    assert len(laps) >= 3
    for lap in laps:
        parts = [w for w in windows if w.kind == "sector" and w.lap == lap.lap]
        assert [w.sector for w in parts] == [0, 1, 2]
        for name in ADDITIVE:
            total = sum(float(w.x[INDEX[name]]) for w in parts)
            assert total == pytest.approx(float(lap.x[INDEX[name]]), rel=1e-4, abs=1e-3), name
        assert lap.x[INDEX["window_time_s"]] == pytest.approx(lap.time_s, abs=0.06)


def test_features_windows_same_however_stream_is_cut_into_ticks() -> None:
    rows = stint_rows()
    whole = windows_of(rows)
    cuts = sorted(np.random.default_rng(3).choice(len(rows), 25, replace=False).tolist())
    pieces = windows_of(rows, cuts)
    assert [(w.kind, w.lap, w.sector) for w in whole] == [(w.kind, w.lap, w.sector) for w in pieces]
    for a, b in zip(whole, pieces, strict=True):
        np.testing.assert_allclose(a.x, b.x, rtol=1e-5, atol=1e-3)


def test_features_do_not_depend_on_sample_rate() -> None:
    fast = full_laps(windows_of(stint_rows(20.0)))[1]
    slow = full_laps(windows_of(stint_rows(10.0)))[1]
    for name in ("window_time_s", "lat_g_s", "stress_fl_g_m", "speed_mean_kmh", "peak_lat_g"):
        assert slow.x[INDEX[name]] == pytest.approx(fast.x[INDEX[name]], rel=0.02), name
    for name in ("hard_braking", "hard_cornering"):  # edges near a threshold: a few more at 20 Hz
        assert slow.x[INDEX[name]] == pytest.approx(fast.x[INDEX[name]], rel=0.15), name


def test_features_stint_counters_grow_lap_by_lap() -> None:
    laps = [w for w in windows_of(stint_rows()) if w.kind == "lap"]
    stint_laps = [int(w.x[INDEX["stint_laps"]]) for w in laps]
    assert stint_laps == list(range(len(laps)))
    fl = [float(w.x[INDEX["stint_stress_fl_g_m"]]) for w in laps]
    assert fl[0] == 0.0 and all(b > a for a, b in itertools.pairwise(fl))
    assert not laps[0].full and laps[0].usable  # joined mid-lap: partial, still predictable


def test_features_profile_metrics_are_physical() -> None:
    starts = np.append(barber().sector_starts_m, barber().length_m)
    for w in windows_of(stint_rows()):
        if w.kind == "sector" and w.full:
            assert w.stops, "every Barber sector has a stop"
            for onset_m, peak_bar in w.stops:
                assert starts[w.sector] <= onset_m <= starts[w.sector + 1]
                assert features.BRAKE_STOP_BAR <= peak_bar <= w.profile["brake_peak_bar"]
            assert 0.0 <= w.profile["throttle_pct"] <= 100.0
    laps = [w for w in windows_of(stint_rows()) if w.kind == "lap" and w.full]
    counts = [len(w.stops) for w in laps]  # a stop near BRAKE_STOP_BAR may come and go
    assert max(counts) - min(counts) <= 2 and min(counts) >= 8


def test_features_left_out_samples_make_a_window_unusable() -> None:
    rows = stint_rows()
    t = rows["t"] - rows["t"][0]
    holed = rows[(t < 150.0) | (t > 160.0)]  # a 10 s hole in the second lap
    laps = [w for w in windows_of(holed) if w.kind == "lap"]
    assert not laps[1].usable and laps[2].usable


def test_features_list_is_what_the_shipped_model_was_trained_on() -> None:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(MODEL_PATH)).metadata_props}
    assert tuple(json.loads(meta["features"])) == FEATURES
    assert set(features.FEATURE_DOC) == set(FEATURES)
    assert features.corner_feature("fl") == "stress_fl_g_m"


def test_features_advance_windows_same_with_lap_timings_rows_and_physics() -> None:
    rows = stint_rows()
    rng = np.random.default_rng(8)
    state, carry, alone = ChassisState(track_id=1), WindowCarry(), WindowCarry()
    geom = TrackGeometry(barber().length_m, np.asarray(barber().sector_starts_m))
    cuts = sorted(rng.choice(len(rows), 12, replace=False).tolist())
    for chunk in np.split(rows, cuts):
        chunk = np.concatenate((chunk, chunk[::7], rows[: len(chunk) // 50]))  # dups, late
        chunk = chunk[rng.permutation(len(chunk))]
        state, sectors, laps, fresh = advance_rows(state, chunk, geom)
        carry, shared = features.advance_windows(carry, chunk, sectors, laps, fresh)
        alone, separate = features.advance_windows(alone, chunk, sectors, laps)
        assert len(shared) == len(separate)
        for a, b in zip(shared, separate, strict=True):
            assert a.x.tobytes() == b.x.tobytes() and (a.lap, a.sector) == (b.lap, b.sector)
            assert a.stops == b.stops and a.profile.keys() == b.profile.keys()
        assert carry.lap_acc.sums.tobytes() == alone.lap_acc.sums.tobytes()
        assert carry.physics == alone.physics == state.physics
    assert state.late_rows > 0 and state.duplicate_rows > 0


def test_features_advance_windows_compute_their_own_rows_when_carry_lags_the_state() -> None:
    rows = stint_rows()
    geom = TrackGeometry(barber().length_m, np.asarray(barber().sector_starts_m))
    state, _, _ = advance(ChassisState(track_id=1), rows[:400], geom)
    state, sectors, laps, fresh = advance_rows(state, rows[400:900], geom)
    carry, shared = features.advance_windows(WindowCarry(), rows[400:900], sectors, laps, fresh)
    alone, separate = features.advance_windows(WindowCarry(), rows[400:900], sectors, laps)
    assert not fresh.follows(WindowCarry().last_t, WindowCarry().physics)
    assert [w.x.tobytes() for w in shared] == [w.x.tobytes() for w in separate]
    assert carry.physics == alone.physics == state.physics  # in step again from here


def _stops_one_by_one(tick: features._Tick, acc: features.WindowAcc, i: int, j: int) -> None:
    """The brake applications of samples ``i:j`` stepped through one at a time:
    the plain reading of the rules, against which the vectorised one is held."""
    if acc.open_stop is not None:
        tick._extend(acc, i, j)
    lo, hi = np.searchsorted(tick.onset_idx, (i, j))
    for o in tick.onset_idx[lo:hi].tolist():
        acc.close_stop()
        acc.open_stop = (float(tick.lapdist_m[o]), 0.0)
        tick._extend(acc, o, j)


PRESSURES = st.sampled_from(
    [math.nan, -5.0, 0.0, 14.9, 15.0, 15.1, 30.0, 39.9, 40.0, 40.1, 85.0, 130.0]
)


@settings(max_examples=300, deadline=None)
@given(
    pressures=st.lists(PRESSURES, min_size=1, max_size=80),
    unplaced=st.sets(st.integers(0, 79), max_size=5),
    brake_on=st.booleans(),
    open_stop=st.none() | st.tuples(st.floats(0, 3000), st.sampled_from([0.0, 20.0, 60.0])),
    earlier_stops=st.integers(0, features.MAX_STOPS),
    cuts=st.lists(st.integers(0, 80), max_size=4),
)
def test_features_stops_taken_together_match_one_at_a_time(
    pressures: list[float],
    unplaced: set[int],
    brake_on: bool,
    open_stop: tuple[float, float] | None,
    earlier_stops: int,
    cuts: list[int],
) -> None:
    """Noisy pressure (NaN, values either side of both thresholds), samples
    with no lap distance, a tick cut anywhere, a stop left open by the last
    tick, and a window already near MAX_STOPS: the same stops either way."""
    n = len(pressures)
    pbrake = np.array(pressures)
    lapdist = np.arange(n) * 10.0
    lapdist[[k for k in unplaced if k < n]] = np.nan
    onsets, releases = features.brake_edges(pbrake, lapdist, brake_on)
    tick = features._Tick(
        t=np.arange(n, dtype=float),
        sums=np.zeros((n, features.N_SUMS)),
        maxes=np.zeros((n, features.N_MAXES)),
        pbrake_bar=pbrake,
        onset_idx=onsets,
        release_idx=releases,
        lapdist_m=lapdist,
    )
    spans = sorted({0, n, *(c for c in cuts if c <= n)})
    accs = []
    for step in (tick._stops, lambda acc, i, j: _stops_one_by_one(tick, acc, i, j)):
        acc = features.WindowAcc(
            stops=[(float(k), 50.0) for k in range(earlier_stops)],
            open_stop=open_stop if brake_on else None,
        )
        for i, j in itertools.pairwise(spans):
            step(acc, i, j)
        accs.append(acc)
    assert accs[0].stops == accs[1].stops
    assert accs[0].open_stop == accs[1].open_stop
    assert len(accs[0].stops) <= features.MAX_STOPS


def test_features_stops_placed_when_the_lap_distance_is_logged_on_one_row_in_five() -> None:
    """GR Cup cars log the lap distance on about one row in five. A brake
    application starting on a row without one is still a stop, placed
    between the readings either side: the same stops as with the distance
    on every row, within the few metres a car covers between readings."""
    rows = stint_rows(rate_hz=20.0, laps=4)
    sparse = rows.copy()
    sparse["lapdist_m"][np.arange(len(rows)) % 5 != 0] = np.nan
    cuts = list(range(50, len(rows), 97))
    full_w, sparse_w = windows_of(rows, cuts), windows_of(sparse, cuts)
    both = [(a, b) for a, b in zip(full_w, sparse_w, strict=True) if a.kind == "sector"]
    assert sum(len(a.stops) for a, _ in both) > 20
    for a, b in both:
        assert len(b.stops) == len(a.stops)
        for (onset_a, peak_a), (onset_b, peak_b) in zip(a.stops, b.stops, strict=True):
            assert peak_b == peak_a
            assert abs(onset_b - onset_a) < 5.0
