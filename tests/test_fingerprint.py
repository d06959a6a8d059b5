"""fingerprint: a driver's own profile per sector; late braking is called out, normal laps not."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from pitwall_rt import fingerprint
from pitwall_rt.compute import compute_batch
from pitwall_rt.demo_gen import DEFAULT_TRACKS_PATH
from pitwall_rt.model.features import BRAKE_STOP_BAR, FEATURES, Window, WindowCarry
from pitwall_rt.model.train import StintSpec, simulate, telemetry_rows
from pitwall_rt.tracks import Track, load_tracks

LATE_LAP, LATE_SECTOR = 8, 1


@cache
def track() -> Track:
    return load_tracks(DEFAULT_TRACKS_PATH)["sonoma"]


@cache
def normal_rows(style: str) -> np.ndarray:
    spec = StintSpec("sonoma", style, 30.0, 0.98, 10, 20.0, 0, 5)
    stint, _ = simulate(spec, track())
    return telemetry_rows(spec, stint)


def late_braking(rows: np.ndarray, lap: int, sector: int, late_s: float) -> np.ndarray:
    """``rows`` with the first brake application of one sector held off for ``late_s``."""
    rows = rows.copy()
    starts = np.append(track().sector_starts_m, track().length_m)
    d = rows["lapdist_m"]
    inside = (rows["lap"] == lap) & (d >= starts[sector]) & (d < starts[sector + 1])
    first = np.flatnonzero(inside & (rows["pbrake_f"] > BRAKE_STOP_BAR))[0]
    held = (rows["t"] >= rows["t"][first]) & (rows["t"] < rows["t"][first] + late_s)
    rows["pbrake_f"][held] = 0.0
    rows["pbrake_r"][held] = 0.0
    return rows


def windows(rows: np.ndarray) -> list[Window]:
    table = {1: (track().length_m, np.asarray(track().sector_starts_m))}
    states: dict = {}
    carries: dict[int, WindowCarry] = {}
    out: list[Window] = []
    for chunk in np.array_split(rows, 40):  # ticks, as the server cuts the stream
        result = compute_batch(chunk, table, states, carries)
        states[1] = result.chassis[1].state
        carries[1] = result.chassis[1].window_carry  # type: ignore[assignment]
        out.extend(result.chassis[1].windows)
    return out


def alerts_of(rows: np.ndarray) -> list[dict]:
    profile = fingerprint.DriverProfile()
    found = []
    for w in windows(rows):
        profile, alerts = fingerprint.observe(profile, w)
        found.extend(alerts)
    return found


def test_fingerprint_normal_laps_raise_no_alert() -> None:
    for style in ("smooth", "aggressive", "conservative"):
        assert alerts_of(normal_rows(style)) == [], style


def test_fingerprint_injected_late_braking_lap_raises_alert_naming_the_sector() -> None:
    rows = late_braking(normal_rows("aggressive"), LATE_LAP, LATE_SECTOR, late_s=0.8)
    alerts = alerts_of(rows)
    late = [a for a in alerts if a["metric"] == "brake_point_m"]
    assert len(late) == 1, alerts
    alert = late[0]
    assert (alert["lap"], alert["sector"]) == (LATE_LAP, LATE_SECTOR)
    assert alert["z"] > fingerprint.SIGMA and alert["value"] - alert["mean"] > 20.0
    message = fingerprint.message(alert, "S2")
    assert message.startswith("S2: braked ") and "m later than usual for the stop at" in message
    assert message.endswith("(lap 8)") and alert["at_m"] > 0
    assert {a["lap"] for a in alerts} == {LATE_LAP}  # the laps around it stay quiet


def test_fingerprint_needs_a_few_laps_before_it_judges() -> None:
    rows = late_braking(normal_rows("aggressive"), 3, LATE_SECTOR, late_s=0.8)
    assert [a for a in alerts_of(rows) if a["lap"] == 3] == []


def test_fingerprint_profile_ewma_tracks_mean_and_spread() -> None:
    stats = fingerprint.Ewma()
    for x in (10.0, 12.0, 10.0, 12.0):
        stats = stats.add(x)
    assert stats.n == 4 and stats.mean == 11.0 and stats.var == pytest.approx(1.0)  # equal weights
    metric = fingerprint.CORNER_METRICS["brake_point_m"]
    assert stats.sigma(metric) == metric.floor  # sd 1 m is under the 5 m floor


def test_fingerprint_memory_stays_bounded_when_stops_land_anywhere() -> None:
    rng = np.random.default_rng(1)
    profile = fingerprint.DriverProfile()
    x = np.zeros(len(FEATURES), dtype=np.float32)
    for lap in range(200):
        stops = tuple((float(d), 60.0) for d in rng.uniform(0, 5000, 5))
        metrics = {"time_s": 30.0, "brake_peak_bar": 60.0, "peak_lat_g": 1.2, "throttle_pct": 50.0}
        window = Window("sector", lap, 0, 0.0, 30.0, 30.0, 0, True, True, x, metrics, stops)
        profile, _ = fingerprint.observe(profile, window)
    assert len(profile.corners[0]) <= fingerprint.MAX_ZONES
