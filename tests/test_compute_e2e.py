"""End to end: the compute stage in the real server process.

The demo run checks that insight_update messages advance (laps, sectors,
tire stress); the worker-kill run checks the pool is rebuilt and insights
keep coming; the laps run checks lap times come from sample time, not from
when points arrived.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from .serverproc import UNIT_S, ServerProcess, running, wait_for
from .wsclient import record


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            stack.append(child)
    return found


def _lap_points(
    chassis: str, laps: int, lap_s: float, hz: float, start_s: float
) -> list[dict[str, Any]]:
    """A car at constant speed around a 1,000 m loop with no known track."""
    points = []
    n = int(laps * lap_s * hz)
    for i in range(n + 1):
        t = i / hz
        points.append(
            {
                "chassis": chassis,
                "meta_time": start_s + t,
                "lap": 1 + int(t // lap_s),
                "lapdist_m": (t % lap_s) / lap_s * 1000.0,
                "speed_kmh": 1000.0 / lap_s * 3.6,
                "accy_can": 0.8,
                "accx_can": -0.2,
            }
        )
    return points


def test_compute_demo_insights_advance_laps_sectors_and_tire_stress(tmp_path: Path) -> None:
    with running(tmp_path, "--demo", "--demo-speed", "8", "--batch-ms", "200") as srv:
        rec = asyncio.run(
            record(
                srv.ws_url,
                60 * UNIT_S,
                subscribe={"type": "subscribe", "channels": ["insights"]},
                until=lambda r: _laps_seen(r) >= 2,
            )
        )
        insights = [i for m in rec.of_type("insight_update") for i in m["insights"]]
        assert insights, "no insight_update arrived"
        by_car: dict[str, list[dict[str, Any]]] = {}
        for ins in insights:
            by_car.setdefault(ins["chassis"], []).append(ins)
        assert len(by_car) >= 2
        for seq in by_car.values():
            stress = [s["tire_stress"]["fl"] for s in seq]
            assert stress == sorted(stress) and stress[-1] > stress[0]
            assert {s["sector"] for s in seq if s["sector"] is not None} >= {0, 1}
            assert all(s["track"] == "barber" for s in seq)
        assert _laps_seen(rec) >= 2
        car = next(iter(by_car))
        status, laps = srv.get(f"/api/laps/{car}")
        assert status == 200 and laps
        status, latest = srv.get("/api/insights")
        assert status == 200 and {i["chassis"] for i in latest} >= set(by_car)


def _laps_seen(rec: Any) -> int:
    return max(
        (i["laps_completed"] for m in rec.of_type("insight_update") for i in m["insights"]),
        default=0,
    )


def test_compute_lap_times_come_from_sample_time_not_arrival(server: ServerProcess) -> None:
    points = _lap_points("TIMED", laps=3, lap_s=20.0, hz=10.0, start_s=1_757_000_000.0)
    for i in range(0, len(points), 150):  # 60 s of samples posted in well under a second
        status, body = server.post_json("/api/ingest", points[i : i + 150])
        assert status == 200 and body["rejected"] == 0
    laps = wait_for(
        lambda: (r := server.get("/api/laps/TIMED")[1]) and len(r) >= 2 and r, 10 * UNIT_S, "laps"
    )
    timed = [lap for lap in laps if not lap["partial"]]
    assert timed and all(abs(lap["lap_time_s"] - 20.0) < 1e-6 for lap in timed)
    assert server.get("/api/laps/NOPE")[0] == 404


def test_compute_flapping_lap_counter_is_counted_and_spares_the_other_car(
    server: ServerProcess,
) -> None:
    """One car's lap number jumps on every sample: it ends no lap under
    MIN_LAP_S, its glitches are counted in its insight and in health, and a
    clean car sent alongside keeps exact lap times."""
    start_s = 1_757_100_000.0
    steady = _lap_points("STEADY", laps=3, lap_s=20.0, hz=20.0, start_s=start_s)
    flapping = _lap_points("FLAP", laps=3, lap_s=20.0, hz=20.0, start_s=start_s)
    for i, point in enumerate(flapping):
        point["lap"] = 1 + (i * 7) % 4
    both = [p for pair in zip(steady, flapping, strict=True) for p in pair]
    for i in range(0, len(both), 200):
        status, body = server.post_json("/api/ingest", both[i : i + 200])
        assert status == 200 and body["rejected"] == 0
    laps = wait_for(
        lambda: (r := server.get("/api/laps/STEADY")[1]) and len(r) >= 3 and r, 10 * UNIT_S, "laps"
    )
    timed = [lap for lap in laps if not lap["partial"]]
    assert len(timed) == 2 and all(abs(lap["lap_time_s"] - 20.0) < 1e-6 for lap in timed)
    flap_laps = server.get("/api/laps/FLAP")[1]
    assert len(flap_laps) <= 60 / 2.0
    insights = {i["chassis"]: i for i in server.get("/api/insights")[1]}
    assert insights["FLAP"]["lap_glitches"] > 1000
    assert insights["STEADY"]["lap_glitches"] == 0
    health = server.get("/api/health")[1]
    assert health["compute"]["lap_glitches"] >= insights["FLAP"]["lap_glitches"]


def test_compute_worker_killed_mid_stream_pool_rebuilt_and_insights_continue(
    tmp_path: Path,
) -> None:
    with running(tmp_path, "--batch-ms", "100", "--workers", "1") as srv:
        stop = threading.Event()

        stream = _lap_points("KILL", laps=100, lap_s=20.0, hz=20.0, start_s=1_757_000_000.0)

        def feed() -> None:
            for i in range(0, len(stream), 20):
                if stop.is_set():
                    return
                status, body = srv.post_json("/api/ingest", stream[i : i + 20])
                assert status == 200 and body["rejected"] == 0, body
                time.sleep(0.02)

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            wait_for(lambda: srv.health()["compute"]["batches"] >= 3, 20 * UNIT_S, "first batches")
            workers = _pool_workers(srv.proc.pid)  # type: ignore[union-attr]
            assert workers, "no pool worker found"
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            health = wait_for(
                lambda: (h := srv.health())["compute"]["pool_restarts"] >= 1 and h,
                20 * UNIT_S,
                "the pool to be rebuilt",
            )
            sent_before = health["compute"]["insights_sent"]
            rec = asyncio.run(
                record(srv.ws_url, 10 * UNIT_S, until=lambda r: bool(r.of_type("insight_update")))
            )
            assert rec.of_type("insight_update"), "no insights after the worker died"
            after = srv.health()["compute"]
            assert after["insights_sent"] > sent_before
            assert after["batches_failed"] == 0
        finally:
            stop.set()
            feeder.join()


def _pool_workers(server_pid: int) -> list[int]:
    """The pool's workers: the children of the server's forkserver process."""
    workers = []
    for pid in _descendants(server_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.forkserver" in cmdline and _parent(pid) == server_pid:
            workers.extend(p for p in _descendants(pid) if _parent(p) == pid)
    return workers


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_compute_demo_laps_stay_consistent_across_demo_passes(tmp_path: Path) -> None:
    """The demo loops each car every few laps; no pass boundary may time a bogus lap."""
    with running(tmp_path, "--demo", "--demo-speed", "40", "--batch-ms", "100") as srv:
        deadline = time.monotonic() + 60 * UNIT_S
        while time.monotonic() < deadline:
            status, laps = srv.get("/api/laps/GR86-012")  # the car with 2 laps per pass
            if status == 200 and sum(not lap["partial"] for lap in laps) >= 5:
                break
            time.sleep(0.5)
        for car in ("GR86-002", "GR86-012"):
            _, laps = srv.get(f"/api/laps/{car}")
            times = sorted(lap["lap_time_s"] for lap in laps if not lap["partial"])
            assert len(times) >= 3, laps
            median = times[len(times) // 2]
            assert times[0] > 0.9 * median and times[-1] < 1.1 * median, times


def test_compute_workers_run_idle_and_exit_when_the_server_is_killed(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, "--workers", "2").start()
    try:
        pid = srv.proc.pid  # type: ignore[union-attr]
        workers = _pool_workers(pid)
        assert len(workers) == 2
        # By default (WORKER_PRIORITY=idle) they run on CPU time nothing else wants.
        assert srv.health()["compute"]["worker_priority"] == "idle"
        assert [os.sched_getscheduler(w) for w in workers] == [os.SCHED_IDLE] * 2
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
        os.kill(pid, signal.SIGKILL)  # the server alone, not its process group
        srv.proc.wait()  # type: ignore[union-attr]  # reaped, as its supervisor would
        wait_for(
            lambda: not any(Path(f"/proc/{w}").exists() and _state(w) != "Z" for w in workers),
            10 * UNIT_S,
            "the pool workers to exit after the server died",
        )
    finally:
        srv.stop()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
