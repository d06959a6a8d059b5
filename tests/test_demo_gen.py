"""pitwall_rt.demo_gen: deterministic demo sessions, the committed files, load_demo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from pitwall_rt import demo_gen
from pitwall_rt.demo_gen import DemoFileError, generate_demo, lap_times_s, load_demo
from pitwall_rt.tracks import load_tracks

ROOT = Path(__file__).resolve().parent.parent
DEMO_FILE = ROOT / "demo_data.json"
TRACK_FILE = ROOT / "public/tracks/track_sectors.json"


@pytest.fixture(scope="module")
def small() -> dict:
    return generate_demo("barber", cars=3, laps=1, rate_hz=10, seed=11)


def columns(doc: dict, entry: dict) -> dict[str, np.ndarray]:
    rows = np.asarray(entry["rows"], dtype=np.float64)
    return {f: rows[:, i] for i, f in enumerate(doc["fields"])}


def test_generate_demo_is_deterministic_for_a_seed(small: dict) -> None:
    again = generate_demo("barber", cars=3, laps=1, rate_hz=10, seed=11)
    assert orjson.dumps(again) == orjson.dumps(small)
    other = generate_demo("barber", cars=3, laps=1, rate_hz=10, seed=12)
    assert orjson.dumps(other) != orjson.dumps(small)


def test_generate_demo_has_the_documented_header(small: dict) -> None:
    assert small["format"] == "pitwall-demo/1"
    assert small["track"] == "barber"
    assert small["rate_hz"] == 10
    assert small["generated_by"].startswith("python -m pitwall_rt.demo_gen")
    assert small["fields"][0] == "t_s" and len(small["fields"]) == 12
    assert [c["chassis"] for c in small["cars"]] == ["GR86-002", "GR86-004", "GR86-006"]
    assert len({c["style"] for c in small["cars"]}) == 3


def test_generate_demo_cars_share_the_clock_and_cover_the_duration(small: dict) -> None:
    for entry in small["cars"]:
        t = columns(small, entry)["t_s"]
        assert t[0] == 0.0
        assert np.allclose(np.diff(t), 0.1)
        assert t[-1] == pytest.approx(small["duration_s"], abs=0.1)


def test_generate_demo_spreads_cars_round_the_lap(small: dict) -> None:
    length_m = load_tracks(TRACK_FILE)["barber"].length_m
    starts = [columns(small, e)["lapdist_m"][0] for e in small["cars"]]
    assert starts == pytest.approx([0.0, length_m / 3, 2 * length_m / 3], abs=3.0)


def test_generate_demo_laps_start_at_one_and_increase_on_wrap(small: dict) -> None:
    for entry in small["cars"]:
        c = columns(small, entry)
        assert c["lap"][0] == 1
        steps = np.diff(c["lap"])
        assert set(steps.tolist()) <= {0.0, 1.0}
        wraps = np.nonzero(steps)[0]
        assert len(wraps) >= 1
        assert np.all(c["lapdist_m"][wraps] > c["lapdist_m"][wraps + 1])


def test_generate_demo_values_are_physically_plausible(small: dict) -> None:
    length_m = load_tracks(TRACK_FILE)["barber"].length_m
    for entry in small["cars"]:
        c = columns(small, entry)
        assert np.all((c["speed_kmh"] > 0) & (c["speed_kmh"] < 260))
        assert np.all(np.abs(c["accx_can"]) < 3) and np.all(np.abs(c["accy_can"]) < 3)
        assert np.all((c["lapdist_m"] >= 0) & (c["lapdist_m"] < length_m + 1))
        assert np.all((c["throttle_pct"] >= 0) & (c["throttle_pct"] <= 100))
        assert np.all((c["pbrake_f"] >= 0) & (c["pbrake_f"] < 150))
        assert np.all((c["pbrake_r"] >= 0) & (c["pbrake_r"] <= c["pbrake_f"]))
        assert np.all((c["rpm"] >= 1000) & (c["rpm"] <= 7500))
        assert set(np.unique(c["gear"]).tolist()) <= {1, 2, 3, 4, 5, 6}
        assert np.abs(c["Steering_Angle"]).max() < 180


def test_generate_demo_rejects_unknown_track_and_bad_counts() -> None:
    with pytest.raises(ValueError, match="unknown track"):
        generate_demo("monza")
    with pytest.raises(ValueError, match="cars"):
        generate_demo(cars=0)


def test_lap_times_are_plausible_for_barber() -> None:
    doc = generate_demo("barber", cars=2, laps=2, rate_hz=10, seed=3)
    length_m = load_tracks(TRACK_FILE)["barber"].length_m
    times = lap_times_s(doc, length_m)
    assert set(times) == {"GR86-002", "GR86-004"}
    for laps in times.values():
        assert laps and all(90.0 < t < 115.0 for t in laps)


def test_committed_demo_file_loads_and_is_under_5_mb() -> None:
    assert DEMO_FILE.stat().st_size < 5_000_000
    points = load_demo(DEMO_FILE)
    t = [p["t_s"] for p in points]
    assert t == sorted(t)
    chassis = {p["chassis"] for p in points}
    assert len(chassis) >= 4
    assert {p["track"] for p in points} == {"barber"}
    expected_keys = set(demo_gen.FIELDS) | {"chassis", "track"}
    assert all(p.keys() == expected_keys for p in points[:: max(1, len(points) // 500)])
    assert max(p["lap"] for p in points) >= 3


def test_committed_track_file_is_what_build_track_file_writes(tmp_path: Path) -> None:
    out = tmp_path / "tracks.json"
    demo_gen.build_track_file(out)
    built, committed = orjson.loads(out.read_bytes()), orjson.loads(TRACK_FILE.read_bytes())
    built_lines = {k: t.pop("centerline") for k, t in built["tracks"].items()}
    committed_lines = {k: t.pop("centerline") for k, t in committed["tracks"].items()}
    assert built == committed
    for track_id, line in committed_lines.items():
        # points are rounded to 0.1 m; allow one rounding step of float drift
        assert np.allclose(built_lines[track_id], line, atol=0.11)


def test_main_writes_a_demo_file_that_load_demo_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo.json"
    argv = ["--out", str(out), "--cars", "2", "--laps", "1", "--rate", "5", "--track", "sonoma"]
    assert demo_gen.main(argv) == 0
    assert "GR86-002" in capsys.readouterr().out
    doc = orjson.loads(out.read_bytes())
    assert doc["generated_by"].endswith(f"--out {out}")
    points = load_demo(out)
    assert {p["track"] for p in points} == {"sonoma"}
    assert len(points) == sum(len(c["rows"]) for c in doc["cars"])


def test_main_exits_with_usage_error_when_given_nothing_to_do() -> None:
    with pytest.raises(SystemExit) as info:
        demo_gen.main([])
    assert info.value.code == 2


def _demo_doc() -> dict:
    return {
        "format": "pitwall-demo/1",
        "track": "barber",
        "rate_hz": 20,
        "fields": ["t_s", "lap", "speed_kmh"],
        "cars": [{"chassis": "GR86-002", "rows": [[0.05, 1, 100.0], [0.0, 1, 99.0]]}],
    }


def test_load_demo_sorts_points_by_time(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_bytes(orjson.dumps(_demo_doc()))
    points = load_demo(path)
    assert [p["t_s"] for p in points] == [0.0, 0.05]
    assert points[0] == {
        "t_s": 0.0,
        "lap": 1,
        "speed_kmh": 99.0,
        "chassis": "GR86-002",
        "track": "barber",
    }


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other/1"), "format"),
        (lambda d: d.update(fields=["lap"]), "t_s"),
        (lambda d: d.update(fields=["t_s", "t_s", "lap"]), "distinct"),
        (lambda d: d.update(track=None), "track"),
        (lambda d: d.update(cars=[]), "cars"),
        (lambda d: d["cars"][0].pop("chassis"), "chassis"),
        (lambda d: d["cars"][0]["rows"].append([1.0, 1]), "list of 3 numbers"),
        (lambda d: d["cars"][0]["rows"].append([1.0, 1, "fast"]), "finite numbers"),
        (lambda d: d["cars"][0]["rows"].append([1.0, 1, None]), "finite numbers"),
        (lambda d: d["cars"][0].update(rows="x"), "rows"),
    ],
)
def test_load_demo_names_the_problem_when_file_is_malformed(
    tmp_path: Path, mutate: Callable[[dict], object], message: str
) -> None:
    doc = _demo_doc()
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(DemoFileError, match=message) as info:
        load_demo(path)
    assert "bad.json" in str(info.value)


def test_load_demo_raises_demo_file_error_when_missing_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(DemoFileError, match="cannot read"):
        load_demo(tmp_path / "nope.json")
    path = tmp_path / "x.json"
    path.write_bytes(b"{")
    with pytest.raises(DemoFileError, match="not valid JSON"):
        load_demo(path)
