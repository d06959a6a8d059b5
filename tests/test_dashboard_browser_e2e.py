"""End to end: the dashboard in real headless Chromium against the real server process.

The server runs ``--demo`` (demo_data.json replayed as live cars) or takes
points POSTed by the test; the page connects over its own WebSocket.
Assertions read the DOM (rows ``[data-chassis]``, map markers, ``#conn-state``)
and ``window.pitwall`` (store sizes, frame counter). A screenshot of the
running page is saved to ``artifacts/dashboard.png`` (and, once a car has
started a new lap, ``artifacts/dashboard-after-laps.png``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from .browser import (
    ARTIFACTS,
    VIEWPORT,
    ConsoleLog,
    dashboard_state,
    launch,
    restart_on_same_port,
    wait_in_page,
)
from .serverproc import REPO, UNIT_S, ServerProcess, wait_for

DEMO_ARGS = ("--demo", "--batch-ms", "200")
LIVE = "document.getElementById('conn-state').textContent === 'live'"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("demo"), *DEMO_ARGS).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def demo_cars() -> set[str]:
    """The cars the demo replays, read the way the server reads the file."""
    from pitwall_rt.demo_gen import load_demo

    return {str(p["chassis"]) for p in load_demo(str(REPO / "demo_data.json"))}


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield context.new_page()
    finally:
        context.close()


def open_dashboard(page: Page, server: ServerProcess, query: str = "") -> ConsoleLog:
    console = ConsoleLog().attach(page)
    page.goto(f"{server.base}/{query}")
    wait_in_page(page, LIVE, 10, "the connection to show live")
    return console


def wait_for_rows(page: Page, cars: set[str], timeout_units: float = 15) -> dict[str, Any]:
    def all_rows() -> dict[str, Any] | None:
        state = dashboard_state(page)
        return state if set(state["rows"]) >= cars else None

    return wait_for(all_rows, timeout_units * UNIT_S, f"a table row for each of {sorted(cars)}")


def changed_cars(before: dict[str, Any], after: dict[str, Any], key: str) -> set[str]:
    return {c for c, value in after.items() if c in before and before[c][key] != value[key]}


# -- the demo: table, map, charts ---------------------------------------------------


def test_dashboard_shows_every_demo_car_live_without_console_errors(
    page: Page, demo_server: ServerProcess, demo_cars: set[str]
) -> None:
    console = open_dashboard(page, demo_server)
    first = wait_for_rows(page, demo_cars)
    assert first["conn"] == "live"
    assert set(first["rows"]) == demo_cars

    # Speed and lap distance come straight from telemetry_update: they move.
    def moved() -> dict[str, Any] | None:
        now = dashboard_state(page)
        speeds = changed_cars(first["rows"], now["rows"], "speed")
        ok = speeds and any(
            now["latest"][c]["lapdist_m"] != first["latest"][c]["lapdist_m"] for c in demo_cars
        )
        return now if ok else None

    now = wait_for(moved, 10 * UNIT_S, "speeds and lap distances to change")
    assert now["frames"] > first["frames"], "the page stopped drawing"
    assert now["errors"] == 0
    # The charts draw the selected car's history on canvas.
    assert page.evaluate("window.pitwall.charts.draws") > 0
    # A few seconds of the selected car's history, so the screenshot shows charts.
    wait_in_page(page, "window.pitwall.store.count(window.pitwall.selected) >= 80", 15, "history")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    assert console.errors == [], console.errors


def test_dashboard_track_map_has_one_marker_per_car_and_markers_move(
    page: Page, demo_server: ServerProcess, demo_cars: set[str]
) -> None:
    console = open_dashboard(page, demo_server)
    wait_for_rows(page, demo_cars)
    first = dashboard_state(page)
    assert set(first["markers"]) == demo_cars
    assert page.locator("#track-map .marker").count() == len(demo_cars)
    assert page.locator("#track-map path.sector").count() >= 2, "sectors are not shaded"

    def moved() -> dict[str, Any] | None:
        now = dashboard_state(page)
        both = changed_cars(first["markers"], now["markers"], "x") | changed_cars(
            first["markers"], now["markers"], "y"
        )
        return now if both >= demo_cars else None

    now = wait_for(moved, 10 * UNIT_S, "every marker to move")
    # Each marker sits at its car's lap distance (the store may be a frame ahead).
    length_m = float(page.get_attribute("#track-map", "data-length") or "nan")
    for chassis, marker in now["markers"].items():
        newest_m = now["latest"][chassis]["lapdist_m"] % length_m
        assert marker["lapdist"] == pytest.approx(newest_m, abs=60.0), chassis
    assert console.errors == [], console.errors


def test_dashboard_lap_and_tire_numbers_change_when_insights_flow(
    page: Page, demo_server: ServerProcess, demo_cars: set[str]
) -> None:
    """Tire-stress numbers come only from insight_update; lap numbers from telemetry."""
    console = open_dashboard(page, demo_server)
    first = wait_for_rows(page, demo_cars)

    def tires_shown() -> dict[str, Any] | None:
        now = dashboard_state(page)
        ok = all(all(now["rows"][c]["tires"].values()) for c in demo_cars)
        return now if ok else None

    with_tires = wait_for(tires_shown, 15 * UNIT_S, "tire stress on every row (insight_update)")

    def tires_rise() -> bool:
        now = dashboard_state(page)
        return all(
            float(now["rows"][c]["tires"][corner]) > float(with_tires["rows"][c]["tires"][corner])
            for c in demo_cars
            for corner in ("fl", "fr", "rl", "rr")
        )

    wait_for(tires_rise, 15 * UNIT_S, "every car's tire stress to rise")

    def lap_changed() -> set[str]:
        return changed_cars(first["rows"], dashboard_state(page)["rows"], "lap")

    wait_for(lap_changed, 60 * UNIT_S, "a car to start a new lap")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-after-laps.png"))
    assert console.errors == [], console.errors


DECIMATION_JS = """async () => {
  const { TimeSeriesChart } = await import('/js/timeseries.js');
  const canvas = document.createElement('canvas');
  canvas.style.cssText = 'width: 300px; height: 120px; position: absolute';
  document.body.appendChild(canvas);
  const n = 100000;
  const xs = new Float64Array(n);
  const ys = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    xs[i] = i;
    ys[i] = Math.sin(i / 50) * 100 + (i % 997 === 0 ? 500 : 0);
  }
  const chart = new TimeSeriesChart(canvas, {});
  chart.draw([{ colour: '#fff', view: { xs, ys, start: 0, len: n, cap: n } }], 0, n - 1);
  const result = {
    vertices: chart.verticesDrawn, cssWidth: canvas.clientWidth,
    deviceWidth: canvas.width, dpr: window.devicePixelRatio,
  };
  canvas.remove();
  return result;
}"""


def test_dashboard_chart_draws_at_most_four_vertices_per_pixel_column(
    browser: Browser, demo_server: ServerProcess
) -> None:
    """Min/max decimation: 100,000 points cost at most 4 vertices per device pixel column."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=2)
    try:
        page = context.new_page()
        console = open_dashboard(page, demo_server)
        result = page.evaluate(DECIMATION_JS)
    finally:
        context.close()
    assert result["dpr"] == 2
    assert result["deviceWidth"] == 2 * result["cssWidth"], "canvas not sized in device pixels"
    plot_columns = result["deviceWidth"]  # the plot is narrower than the canvas
    assert 0 < result["vertices"] <= 4 * plot_columns, result
    assert console.errors == [], console.errors


INSIGHT_EXTRAS: dict[str, Any] = {
    "prediction": {
        "wear_pct": {"fl": 41.0, "fr": 57.5, "rl": 30.0, "rr": 38.0},
        "laps_to_cliff": 4,
    },
    "pit_window": {"recommended_lap": 12, "open_lap": 10, "close_lap": 14},
    "explanations": [
        "front-right load in T5 is 18 % over the stint mean",
        {"feature": "hard_braking", "weight": 0.31},
        "lap times falling 0.2 s per lap",
        "a fourth reason the page must not show",
    ],
    "alerts": [{"id": "a1", "severity": "warning", "message": "FR wear over 55 %"}],
}


def test_dashboard_renders_predictions_pit_window_and_alerts_newest_first(
    page: Page, demo_server: ServerProcess, demo_cars: set[str]
) -> None:
    """Model fields the insight producer adds later, fed to the page's own message handler."""
    console = open_dashboard(page, demo_server)
    wait_for_rows(page, demo_cars)
    chassis = sorted(demo_cars)[0]
    page.evaluate("(c) => window.pitwall.select(c)", chassis)
    receive = "(m) => window.pitwall.receive(JSON.stringify(m))"
    page.evaluate(receive, {"type": "insight_update", "insights": [{"chassis": chassis}]})
    insight = {"chassis": chassis, "track": "barber", **INSIGHT_EXTRAS}
    page.evaluate(receive, {"type": "insight_update", "insights": [insight]})
    page.evaluate(receive, {"type": "alert", "alert": {"severity": "critical", "message": "X"}})
    row = page.locator(f'#timing-body tr[data-chassis="{chassis}"]')
    wait_in_page(page, "document.querySelectorAll('#feed li').length >= 4", 5, "feed items")
    fr = row.locator('.tire[data-corner="fr"]')
    assert "predicted wear 57.5 %" in (fr.get_attribute("title") or "")
    assert row.locator('[data-field="pit"]').inner_text() == "L12 · cliff 4"
    feed = page.locator("#feed li")
    assert feed.nth(0).get_attribute("data-kind") == "alert"
    assert feed.nth(0).inner_text().endswith("X")
    kinds = [feed.nth(i).get_attribute("data-kind") for i in range(feed.count())]
    assert {"pit", "prediction", "alert"} <= set(kinds)
    assert kinds.index("alert") < kinds.index("pit"), "the newest event is not on top"
    assert page.locator("#feed li.sev-warning", has_text="FR wear over 55 %").count() == 1
    # The selected car's panel: pit window and only the top three explanations.
    detail = page.locator("#insight-detail")
    wait_in_page(
        page, "document.querySelector('#insight-detail [data-block=pit-window]')", 5, "pit"
    )
    assert "box on lap 12" in detail.inner_text()
    assert detail.locator("[data-block=explanations] li").count() == 3
    # Odd shapes are shown or skipped, never thrown.
    odd = {"chassis": chassis, "prediction": "soon", "explanations": [None, 3], "alerts": "no"}
    page.evaluate(receive, {"type": "insight_update", "insights": [odd, None, 7]})
    frames = page.evaluate("window.pitwall.stats.frames")
    wait_in_page(page, f"window.pitwall.stats.frames > {frames + 2}", 5, "frames after odd input")
    assert row.count() == 1
    assert page.evaluate("window.pitwall.stats.errors") == 0
    assert console.errors == [], console.errors


def test_dashboard_holds_channels_a_car_sends_only_now_and_then(
    page: Page, demo_server: ServerProcess
) -> None:
    """GR Cup cars send lap distance and speed with one point in five: a point
    without them keeps the car on the map and its speed in the table."""
    open_dashboard(page, demo_server)
    car = "GR86-SPARSE"
    post_point(demo_server, car, 1234.5)
    status, body = demo_server.post_json(
        "/api/ingest", {"chassis": car, "track": "barber", "lap": 1, "accx_can": 0.2}
    )
    assert status == 200 and body["accepted"] == 1, body
    wait_in_page(page, f"window.pitwall.store.count('{car}') >= 2", 10, "both points")
    wait_in_page(
        page, f"document.querySelector('#track-map .marker[data-chassis=\"{car}\"]')", 5, "marker"
    )
    state = dashboard_state(page)
    assert state["latest"][car]["accx_can"] == 0.2  # the newest point's own channel
    assert state["markers"][car]["lapdist"] == pytest.approx(1234.5, abs=0.1)
    assert state["rows"][car]["speed"].startswith("150")


# -- connection: lost and found --------------------------------------------------------


def post_point(server: ServerProcess, chassis: str, lapdist_m: float) -> None:
    point = {"chassis": chassis, "track": "barber", "lap": 1, "lapdist_m": lapdist_m}
    status, body = server.post_json("/api/ingest", {**point, "speed_kmh": 150.0})
    assert status == 200 and body["accepted"] == 1, body


def test_dashboard_shows_disconnected_when_server_stops_and_reconnects_after_restart(
    page: Page, tmp_path: Path
) -> None:
    server = ServerProcess(tmp_path, "--batch-ms", "200").start()
    restarted: ServerProcess | None = None
    try:
        open_dashboard(page, server)
        post_point(server, "GR86-BEFORE", 100.0)
        wait_in_page(page, "document.querySelector('tr[data-chassis=\"GR86-BEFORE\"]')", 10, "row")

        server.stop()
        wait_in_page(
            page,
            "document.getElementById('conn-state').textContent === 'disconnected'",
            10,
            "'disconnected' after the server stopped",
        )

        restarted = restart_on_same_port(server)
        wait_in_page(page, LIVE, 20, "'live' again after the restart")
        assert page.evaluate("window.pitwall.connects") == 2
        # The new socket carries data: a car only the new server knows appears.
        post_point(restarted, "GR86-AFTER", 200.0)
        wait_in_page(page, "document.querySelector('tr[data-chassis=\"GR86-AFTER\"]')", 10, "row")
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()


def test_dashboard_uses_the_api_key_from_its_own_url(page: Page, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "--batch-ms", "200", env={"API_KEY": "s3cret"}).start()
    try:
        page.goto(f"{server.base}/")  # no key: the WebSocket is refused
        wait_in_page(page, "window.pitwall && window.pitwall.state === 'disconnected'", 10, "401")
        console = open_dashboard(page, server, "?token=s3cret")
        status, body = server.post_json(
            "/api/ingest",
            {"chassis": "GR86-KEY", "track": "barber", "lapdist_m": 5.0, "speed_kmh": 90.0},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert status == 200 and body["accepted"] == 1, body
        wait_in_page(page, "document.querySelector('tr[data-chassis=\"GR86-KEY\"]')", 10, "row")
        assert console.errors == [], console.errors  # api/recent was asked with the key too
    finally:
        server.stop()


# -- load: 20 cars at 50 Hz ------------------------------------------------------------

CARS = 20
RATE_HZ = 50
FEED_S = 6.0
HISTORY_CAP = 200  # ?history=: reached within the run, so the cap itself is tested


class Feeder(threading.Thread):
    """POST one point per car every 1/RATE_HZ s; remembers the last point of each car."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.last: dict[str, dict[str, Any]] = {}
        self.batches = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._feed()
        except BaseException as exc:  # surfaced by the test after join()
            self.error = exc

    def _feed(self) -> None:
        start = time.monotonic()
        tick = 0
        while (elapsed := time.monotonic() - start) < FEED_S:
            points = [
                {
                    "chassis": f"LOAD-{car:02d}",
                    "track": "barber",
                    "meta_time": time.time(),
                    "lap": 1 + tick // 2000,
                    "lapdist_m": round((car * 150.0 + tick * 1.2) % 3600.0, 1),
                    "speed_kmh": 100.0 + (tick + car) % 80,
                    "throttle_pct": float((tick * 3 + car) % 100),
                    "pbrake_f": float((tick + car * 7) % 60),
                    "accx_can": ((tick % 40) - 20) / 20.0,
                    "accy_can": ((tick % 60) - 30) / 20.0,
                    "rpm": 5000.0 + tick % 2000,
                    "gear": 1 + tick % 6,
                }
                for car in range(CARS)
            ]
            status, body = self.server.post_json("/api/ingest", points)
            assert status == 200 and body["accepted"] == CARS, body
            self.last.update({p["chassis"]: p for p in points})
            self.batches += 1
            tick += 1
            time.sleep(max(0.0, tick / RATE_HZ - elapsed))


def test_dashboard_keeps_up_with_20_cars_at_50_hz(page: Page, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "--batch-ms", "200").start()
    try:
        console = open_dashboard(page, server, f"?history={HISTORY_CAP}")
        feeder = Feeder(server)
        feeder.start()
        # While the data flows, the page answers and keeps drawing frames.
        samples = []
        while feeder.is_alive():
            samples.append(dashboard_state(page)["frames"])
            time.sleep(0.5 * UNIT_S)
        feeder.join()
        assert feeder.error is None, feeder.error
        assert len(samples) >= 3 and samples == sorted(samples) and samples[-1] > samples[0]
        advancing = sum(b > a for a, b in itertools.pairwise(samples))
        assert advancing >= len(samples) - 2, f"frames stalled: {samples}"

        # No backlog: soon after the feed stops, every row shows its car's
        # newest point, and no car holds more history than the cap.
        cars = set(feeder.last)

        def caught_up() -> dict[str, Any] | None:
            state = dashboard_state(page)
            done = set(state["rows"]) == cars and all(
                state["latest"][c]["lapdist_m"] == feeder.last[c]["lapdist_m"] for c in cars
            )
            return state if done else None

        state = wait_for(caught_up, 10 * UNIT_S, "the page to show every car's newest point")
        assert state["cap"] == HISTORY_CAP
        assert state["counts"] == dict.fromkeys(cars, HISTORY_CAP), state["counts"]
        assert state["errors"] == 0
        assert len(state["markers"]) == CARS
        assert console.errors == [], console.errors
    finally:
        server.stop()
