"""pitwall_rt.tracks: the committed track file, sector lookup, aliases, geometry.

Expected lengths and splits are TRD's track sector maps as summarised in
``/work/shared/realdata/tracks.md`` (inches converted at 0.0254 m).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from pitwall_rt.tracks import (
    OVERSHOOT_TOLERANCE_M,
    Track,
    TrackFileError,
    centerline_curvature,
    curvature_per_m,
    load_tracks,
    position_xy,
    resolve_track,
    sector_index,
)

TRACK_FILE = Path(__file__).resolve().parent.parent / "public/tracks/track_sectors.json"

# track id -> (centre line m, S1 m, S2 m), from tracks.md
TRD = {
    "barber": (3674.67, 1029.00, 1580.39),
    "cota": (5498.3, 1308.8, 2240.0),
    "indianapolis": (3925.21, 1364.28, 1386.94),
    "road_america": (6459.63, 2058.62, 2207.97),
    "sebring": (6018.9, 1824.2, 1863.7),
    "sonoma": (4031.38, 1385.0, 1422.0),
    "vir": (5262.6, 1652.6, 2158.0),
}


@pytest.fixture(scope="module")
def tracks() -> dict[str, Track]:
    return load_tracks(TRACK_FILE)


def write_track_file(path: Path, entries: dict) -> Path:
    path.write_bytes(orjson.dumps({"format": "pitwall-tracks/1", "tracks": entries}))
    return path


def circle_entry(radius_m: float, n: int = 120, clockwise: bool = False) -> dict:
    """A track entry whose centre line is a circle, driven CCW (or CW), from (R, 0)."""
    angles = np.linspace(0.0, 2 * math.pi, n + 1)
    if clockwise:
        angles = -angles
    xy = np.column_stack([radius_m * np.cos(angles), radius_m * np.sin(angles)])
    length_m = float(np.hypot(*np.diff(xy, axis=0).T).sum())
    third = length_m / 3
    return {
        "name": "Circle",
        "length_m": length_m,
        "sectors": [
            {"name": f"S{i + 1}", "start_m": i * third, "end_m": (i + 1) * third} for i in range(3)
        ],
        "centerline": xy.tolist(),
    }


def test_tracks_load_has_the_seven_gr_cup_tracks(tracks: dict[str, Track]) -> None:
    assert set(tracks) == set(TRD)
    assert all(t.sector_names == ("S1", "S2", "S3") for t in tracks.values())


@pytest.mark.parametrize("track_id", sorted(TRD))
def test_tracks_lengths_and_splits_match_trd_maps(tracks: dict[str, Track], track_id: str) -> None:
    track = tracks[track_id]
    length_m, s1_m, s2_m = TRD[track_id]
    assert track.length_m == pytest.approx(length_m, abs=0.05)
    # Sonoma's map rounds its metre splits to 1 m; the file converts the inches.
    assert track.sector_starts_m[1] == pytest.approx(s1_m, abs=0.5)
    assert track.sector_starts_m[2] - track.sector_starts_m[1] == pytest.approx(s2_m, abs=0.5)


@pytest.mark.parametrize("track_id", sorted(TRD))
def test_tracks_sectors_tile_the_lap_exactly(track_id: str) -> None:
    entry = orjson.loads(TRACK_FILE.read_bytes())["tracks"][track_id]
    sectors = entry["sectors"]
    assert sectors[0]["start_m"] == 0.0
    assert sectors[-1]["end_m"] == entry["length_m"]
    for a, b in itertools.pairwise(sectors):
        assert a["end_m"] == b["start_m"]
    total = sum(s["end_m"] - s["start_m"] for s in sectors)
    assert total == pytest.approx(entry["length_m"], abs=0.01)


@pytest.mark.parametrize("track_id", sorted(TRD))
def test_tracks_centerline_is_closed_and_within_one_percent_of_length(
    tracks: dict[str, Track], track_id: str
) -> None:
    track = tracks[track_id]
    xy = track.centerline_xy
    assert 60 <= len(xy) <= 201
    assert np.array_equal(xy[0], [0.0, 0.0])
    assert np.array_equal(xy[0], xy[-1])
    drawn_m = np.hypot(*np.diff(xy, axis=0).T).sum()
    assert abs(drawn_m - track.length_m) <= 0.01 * track.length_m
    assert track.centerline_s_m[-1] == pytest.approx(track.length_m)


def test_tracks_file_says_where_numbers_come_from_and_how_to_regenerate() -> None:
    doc = orjson.loads(TRACK_FILE.read_bytes())
    assert "TRD" in doc["source"] and "Hack the Track" in doc["source"]
    assert "approximation" in doc["source"]
    assert doc["regenerate"].startswith("python -m pitwall_rt.demo_gen")


def test_sector_index_is_exact_at_boundaries(tracks: dict[str, Track]) -> None:
    barber = tracks["barber"]
    s1_end, s2_end = barber.sector_starts_m[1:]
    d = np.array([0.0, s1_end - 0.01, s1_end, s2_end - 0.01, s2_end, barber.length_m - 0.01])
    got = sector_index(barber, d)
    assert got.dtype == np.int8
    assert got.tolist() == [0, 0, 1, 1, 2, 2]


def test_sector_index_keeps_overshoot_in_last_sector_when_within_tolerance(
    tracks: dict[str, Track],
) -> None:
    barber = tracks["barber"]
    # The Barber lap trigger really reaches 3,715 m on the 3,674.7 m line.
    d = [barber.length_m, 3715.0, barber.length_m + OVERSHOOT_TOLERANCE_M]
    assert sector_index(barber, d).tolist() == [2, 2, 2]


def test_sector_index_is_minus_one_when_nan_negative_or_far_past_the_line(
    tracks: dict[str, Track],
) -> None:
    barber = tracks["barber"]
    d = [math.nan, -0.5, -100.0, barber.length_m + OVERSHOOT_TOLERANCE_M + 1, math.inf]
    assert sector_index(barber, d).tolist() == [-1, -1, -1, -1, -1]


def test_sector_index_accepts_a_scalar(tracks: dict[str, Track]) -> None:
    assert sector_index(tracks["vir"], 2000.0).tolist() == [1]


@pytest.mark.parametrize(
    ("name", "track_id"),
    [
        ("road-america", "road_america"),
        ("Road America", "road_america"),
        ("ROAD_AMERICA", "road_america"),
        ("COTA", "cota"),
        ("circuit_of_the_americas", "cota"),
        ("Circuit of the Americas", "cota"),
        ("VIR", "vir"),
        ("virginia", "vir"),
        ("virginia-international-raceway", "vir"),
        ("indy", "indianapolis"),
        ("barber", "barber"),
        ("  Sebring ", "sebring"),
        ("Sonoma", "sonoma"),
    ],
)
def test_resolve_track_matches_ids_and_aliases_case_insensitively(
    tracks: dict[str, Track], name: str | None, track_id: str
) -> None:
    track = resolve_track(name, tracks)
    assert track is not None and track.id == track_id


@pytest.mark.parametrize("name", [None, "", "monza", "barber2"])
def test_resolve_track_returns_none_when_unknown(
    tracks: dict[str, Track], name: str | None
) -> None:
    assert resolve_track(name, tracks) is None


def test_position_xy_starts_at_the_line_and_wraps(tracks: dict[str, Track]) -> None:
    track = tracks["sonoma"]
    x, y = position_xy(track, [0.0, track.length_m, track.length_m + 10.0, math.nan])
    assert (x[0], y[0]) == (0.0, 0.0)
    assert (x[1], y[1]) == pytest.approx((0.0, 0.0))
    x10, y10 = position_xy(track, 10.0)
    assert (x[2], y[2]) == pytest.approx((x10[0], y10[0]))
    assert math.isnan(x[3]) and math.isnan(y[3])


def test_position_xy_interpolates_between_points(tracks: dict[str, Track]) -> None:
    track = tracks["cota"]
    s_mid = 0.5 * (track.centerline_s_m[5] + track.centerline_s_m[6])
    x, y = position_xy(track, s_mid)
    expected = 0.5 * (track.centerline_xy[5] + track.centerline_xy[6])
    assert (x[0], y[0]) == pytest.approx(tuple(expected))


def test_curvature_of_a_circle_is_one_over_radius_positive_when_counter_clockwise(
    tmp_path: Path,
) -> None:
    path = write_track_file(
        tmp_path / "t.json", {"ccw": circle_entry(150.0), "cw": circle_entry(150.0, clockwise=True)}
    )
    loaded = load_tracks(path)
    s = np.linspace(0.0, loaded["ccw"].length_m, 50, endpoint=False)
    assert curvature_per_m(loaded["ccw"], s) == pytest.approx(1 / 150.0, rel=0.01)
    assert curvature_per_m(loaded["cw"], s) == pytest.approx(-1 / 150.0, rel=0.01)


def test_centerline_curvature_is_zero_on_straights_and_grid_spans_one_lap() -> None:
    # a 400 m x 100 m rectangle with rounded (r = 20 m) corners, driven CCW
    pts = []
    for cx, cy, a0 in [(380, 80, 0), (20, 80, 90), (20, 20, 180), (380, 20, 270)]:
        for a in np.radians(np.linspace(a0, a0 + 90, 10)):
            pts.append((cx + 20 * math.cos(a), cy + 20 * math.sin(a)))
    xy = np.array(pts)
    length_m = float(np.hypot(*np.diff(np.vstack([xy, xy[:1]]), axis=0).T).sum())
    s_m, kappa = centerline_curvature(xy, length_m, step_m=2.0, smooth_m=2.0)
    assert s_m[0] == 0.0 and s_m[-1] < length_m
    assert np.isclose(kappa, 0.0, atol=1e-9).sum() > len(kappa) * 0.5  # straights
    assert kappa.max() == pytest.approx(1 / 20.0, rel=0.1)
    assert kappa.min() >= -1e-9  # all turns are left


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.update(length_m=-3.0), "length_m"),
        (lambda e: e.update(centerline=(np.array(e["centerline"]) * 1.02).tolist()), "1%"),
        (lambda e: e["sectors"].pop(), "sectors end at"),
        (lambda e: e["sectors"][1].update(start_m=5.0), "'S2'"),
        (lambda e: e.update(centerline=[[0, 0], [1, 1]]), "centerline"),
        (lambda e: e.update(centerline="nope"), "centerline"),
        (lambda e: e.update(aliases="x"), "aliases"),
    ],
)
def test_load_tracks_names_the_problem_when_an_entry_is_bad(
    tmp_path: Path, mutate: Callable[[dict], object], message: str
) -> None:
    entry = circle_entry(100.0)
    mutate(entry)
    path = write_track_file(tmp_path / "bad.json", {"loop": entry})
    with pytest.raises(TrackFileError, match=message) as info:
        load_tracks(path)
    assert "'loop'" in str(info.value) and "bad.json" in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{not json", "not valid JSON"), (b"[]", "'tracks'"), (b'{"tracks": {}}', "'tracks'")],
)
def test_load_tracks_raises_track_file_error_when_file_is_not_a_track_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(content)
    with pytest.raises(TrackFileError, match=message):
        load_tracks(path)


def test_load_tracks_raises_track_file_error_when_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(TrackFileError, match="cannot read"):
        load_tracks(tmp_path / "missing.json")
