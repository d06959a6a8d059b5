"""End to end, real server processes: the session recording survives kill -9,
replays into a second server as the same points and laps, and the replay
summary agrees with what the server's health says it accepted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pitwall_rt.recording import FLUSH_INTERVAL_S, epoch_seconds, read_session

from .serverproc import REPO, UNIT_S, ServerProcess, running, wait_for

T0 = 1_757_184_000.0  # 2025-09-06T18:40:00Z

REPLAY = [sys.executable, "-m", "pitwall_rt", "replay"]
GENERATE = [sys.executable, "-m", "pitwall_rt", "generate"]


def make_points(start: int, n: int, cars: int = 4) -> list[dict[str, Any]]:
    return [
        {
            "meta_time": T0 + i * 0.01,
            "chassis": f"GR86-{i % cars:03d}",
            "track": "barber",
            "lap": 1 + i // 2000,
            "lapdist_m": (i * 3.7) % 3700,
            "speed_kmh": 80.0 + i % 120,
            "gear": 1 + i % 6,
        }
        for i in range(start, start + n)
    ]


def the_session(data_parent: Path) -> Path:
    """The one session a server with ``--data-dir data_parent/data`` recorded."""
    root = data_parent / "data" / "sessions"
    found = sorted(root.iterdir()) if root.is_dir() else []
    assert len(found) == 1, f"expected one recorded session under {root}, found {found}"
    return found[0]


def recorded_keys(session: Path) -> set[tuple[str, float]]:
    table = read_session(session)
    seconds = epoch_seconds(table.column("meta_time")).tolist()
    return set(zip(table.column("chassis").to_pylist(), seconds, strict=True))


def key(point: dict[str, Any]) -> tuple[str, float]:
    return point["chassis"], point["meta_time"]


def run_replay(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [*REPLAY, *args], cwd=REPO, capture_output=True, timeout=60 * UNIT_S, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"replayed" in done.stderr  # the human summary line
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


class Poster(threading.Thread):
    """Posts 40-point batches until told to stop or the server dies; records
    each batch with the monotonic time its 200 came back."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.acked: list[tuple[float, list[dict[str, Any]]]] = []
        self.attempted = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            batch = make_points(self.attempted, 40)
            self.attempted += len(batch)
            try:
                status, body = self.server.post_json("/api/ingest", batch)
            except OSError:
                return  # killed
            if status == 200 and body["accepted"] == len(batch):
                self.acked.append((time.monotonic(), batch))
            time.sleep(0.005)


def test_recording_holds_every_point_acked_a_flush_interval_before_kill_9_e2e(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path).start()
    poster = Poster(server)
    try:
        poster.start()
        wait_for(lambda: len(poster.acked) > 20, 10 * UNIT_S, "the first acknowledged posts")
        time.sleep(2.5 * FLUSH_INTERVAL_S)
        killed_at = time.monotonic()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)  # mid-stream: possibly mid-flush
        poster.join(10 * UNIT_S)
    finally:
        poster.stop.set()
        server.stop()
    slack_s = 0.25 * UNIT_S  # the flush task's own scheduling delay
    deadline = killed_at - FLUSH_INTERVAL_S - slack_s
    due = {key(p) for acked_at, batch in poster.acked if acked_at < deadline for p in batch}
    session = the_session(tmp_path)
    on_disk = recorded_keys(session)
    assert len(due) > 500
    assert not due - on_disk, f"{len(due - on_disk)} acknowledged points missing"
    assert on_disk <= {key(p) for p in make_points(0, poster.attempted)}  # nothing made up

    # On restart the killed session is listed and readable through the API.
    with running(tmp_path) as again:
        status, listed = again.get("/api/sessions")
        assert status == 200
        (entry,) = [s for s in listed if s["id"] == session.name]
        assert entry["points"] == len(on_disk) and entry["segments"] >= 1
        assert entry["chassis"] == [f"GR86-{k:03d}" for k in range(4)]
        assert entry["start"] == "2025-09-06T18:40:00.000Z"
        status, history = again.get("/api/history?chassis=GR86-001&limit=100")
        assert status == 200 and len(history) == 100
        assert {p["chassis"] for p in history} == {"GR86-001"}
        assert history[0]["meta_time"] == "2025-09-06T18:40:00.010Z"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Server A gets a generated two-car, two-lap session by HTTP replay and
    records it; yields its session dir and what A showed (points, laps)."""
    tmp = tmp_path_factory.mktemp("server_a")
    demo = tmp / "demo.json"
    argv = [*GENERATE, "--out", str(demo), "--cars", "2", "--laps", "2", "--hz", "10"]
    subprocess.run(argv, cwd=REPO, check=True, capture_output=True, timeout=60 * UNIT_S)
    with running(tmp) as a:
        summary = run_replay(str(demo), "--rate", "0", "--to", a.base, "--quiet")
        n = summary["sent"]
        assert summary["accepted"] == n > 1000 and summary["rejected"] == 0
        seen = _server_view(a, n)
    session = the_session(tmp)
    yield session, seen


def _server_view(server: ServerProcess, n: int) -> dict[str, Any]:
    """The newest n points, and the completed laps per chassis once compute
    has caught up with every point."""
    status, points = server.get(f"/api/recent/{n}")
    assert status == 200 and len(points) == n
    chassis = sorted({p["chassis"] for p in points})

    def laps() -> dict[str, Any] | None:
        got = {c: server.get(f"/api/laps/{c}") for c in chassis}
        if any(status != 200 or len(body) < 1 for status, body in got.values()):
            return None
        return {c: body for c, (_status, body) in got.items()}

    laps_seen = wait_for(laps, 20 * UNIT_S, "completed laps")
    wait_for(lambda: server.health()["compute"]["rows"] >= n, 20 * UNIT_S, "compute to catch up")
    return {"points": points, "laps": laps_seen, "insights": _insight_view(server)}


def _insight_view(server: ServerProcess) -> dict[str, Any]:
    """What a race engineer reads off each car's latest insight. Stress sums
    may differ in the last bits with how the stream was cut into batches."""
    status, insights = server.get("/api/insights")
    assert status == 200
    return {
        i["chassis"]: {
            "lap": i["lap"],
            "sector": i["sector"],
            "laps_completed": i["laps_completed"],
            "last_lap_time_s": i["last_lap_time_s"],
            "best_lap_time_s": i["best_lap_time_s"],
            "tire_stress": {k: round(v, 3) for k, v in i["tire_stress"].items()},
        }
        for i in insights
    }


@pytest.mark.parametrize("transport", ["http", "udp"])
def test_replay_of_a_recording_reproduces_points_laps_and_insights_in_a_second_server_e2e(
    tmp_path: Path, recorded: tuple[Path, dict[str, Any]], transport: str
) -> None:
    session, seen_by_a = recorded
    n = len(seen_by_a["points"])
    with running(tmp_path) as b:
        if transport == "http":
            target = ["--to", b.base]
        else:
            target = ["--to", f"udp://127.0.0.1:{b.udp_port}", "--health", b.base]
        summary = run_replay(str(session), "--rate", "0", *target)
        health = b.health()
        assert summary["sent"] == n
        assert summary["accepted"] == health["accepted"][transport] == n
        assert summary["rejected"] == health["rejected"].get(transport, 0) == 0
        assert _server_view(b, n) == seen_by_a


@pytest.mark.parametrize("transport", ["http", "udp"])
def test_replay_summary_matches_the_servers_health_with_rejections_e2e(
    tmp_path: Path, transport: str
) -> None:
    points: list[Any] = make_points(0, 300)
    for k in range(0, 300, 30):  # ten bad points among them
        points[k] = {**points[k], "speed_kmh": -1.0}
    path = tmp_path / "points.json"
    path.write_text(json.dumps(points))
    with running(tmp_path) as server:
        if transport == "http":
            target = ["--to", server.base]
        else:
            target = ["--to", f"udp://127.0.0.1:{server.udp_port}", "--health", server.base]
        summary = run_replay(str(path), "--rate", "50", "--quiet", *target)
        health = server.health()
    assert summary["sent"] == 300
    assert (summary["accepted"], summary["rejected"]) == (290, 10)
    assert health["accepted"][transport] == 290 and health["rejected"][transport] == 10
    assert summary["seconds"] >= 299 * 0.01 / 50  # paced by meta_time at 50x
