"""The demo source loops each car seamlessly: no lap-distance jump, laps keep counting."""

from __future__ import annotations

import itertools
from pathlib import Path

from pitwall_rt.demo_gen import load_demo
from pitwall_rt.ingest.demo import due_points, plan_loops, whole_laps

REPO = Path(__file__).resolve().parents[1]
LAP_M = 1000.0
BARBER_M = 3674.67  # TRD centre line, the demo track


def _car(start_m: float, laps: float, hz: float = 10.0, speed_mps: float = 50.0) -> list[dict]:
    points = []
    n = int(laps * LAP_M / speed_mps * hz)
    for i in range(n):
        travelled = start_m + i * speed_mps / hz
        points.append(
            {
                "chassis": "A",
                "t_s": i / hz,
                "lap": 1 + int(travelled // LAP_M),
                "lapdist_m": travelled % LAP_M,
            }
        )
    return points


def test_demo_whole_laps_cut_where_the_car_is_back_at_its_start() -> None:
    points = _car(start_m=300.0, laps=2.5)
    end, laps = whole_laps(points)
    assert laps == 2
    assert points[end]["lap"] == 3 and points[end]["lapdist_m"] >= 300.0
    assert points[end - 1]["lapdist_m"] < 300.0


def test_demo_pass_boundary_continues_lap_and_distance(tmp_path: Path) -> None:
    (loop,) = plan_loops(_car(start_m=300.0, laps=2.5))
    sent = []
    for step in range(0, 1000):
        sent.extend(due_points(loop, step * 0.35, start_wall_s=1.7e9, speed=2.0))
    assert loop.passes >= 2
    travelled = [(p["lap"] - 1) * LAP_M + p["lapdist_m"] for p in sent]
    steps = [b - a for a, b in itertools.pairwise(travelled)]
    assert min(steps) > 0 and max(steps) <= 5.0 + 1e-6  # 50 m/s at 10 Hz, across every pass
    times = [p["meta_time"] for p in sent]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.049 and max(gaps) < 0.051  # 0.1 s samples at speed 2, one per point


def test_demo_file_loops_every_car_without_a_jump() -> None:
    points = load_demo(REPO / "demo_data.json")
    loops = plan_loops(points)
    assert len(loops) == 6
    for loop in loops:
        assert loop.laps_per_pass >= 1
        first, last = loop.points[0], loop.points[-1]
        travelled_m = (
            (last["lap"] - first["lap"]) * BARBER_M + last["lapdist_m"] - first["lapdist_m"]
        )
        short_m = loop.laps_per_pass * BARBER_M - travelled_m
        assert 0 <= short_m < 30.0  # the pass ends one 20 Hz sample before its start point
