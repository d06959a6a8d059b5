"""Driver fingerprint: each car's own rolling profile per sector, and coaching alerts.

For every completed, timed sector the profile keeps an exponentially
weighted mean and variance of its peak lateral G, mean throttle (%) and
time (s), and per braking zone ("corner": a stop of ``model.features``,
matched to the zone of the profile whose braking point is within
``MATCH_M``) the braking point (lap distance where the stop began, m) and
the peak brake pressure (bar); per lap, the lap time. A stop with no zone
near it opens a new one (a driver who starts braking for a corner they used
to lift for is not making a mistake). Weights are equal for the first
``1 / ALPHA`` laps, then ``ALPHA``; times also follow a trend (Holt), so
a driver whose pace fades with the tires is judged against the fade.

A metric more than ``SIGMA`` standard deviations from the driver's own mean
raises a coaching alert naming the sector, once the profile has
``MIN_LAPS`` laps. The deviation is measured against ``max(sd, floor)``:
each metric has a floor at about its measurement resolution (a 10 Hz stream
places a brake point to a few metres and can miss a short pressure peak by
15 %), so a very consistent driver is not flagged for noise. Measured on
simulated stints (7 tracks x 3 styles x 2 rates, 840 laps), normal driving
raised no alert. A lap that alerts still updates the profile, clipped to
3 sigma, so one mistake does not become the new normal.

Pure Python over small dicts; the compute pool runs it per car each tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

from .model.features import Window
from .shallow import shallow_copy

SIGMA: Final = 2.0
MIN_LAPS: Final = 4
ALPHA: Final = 0.2
BETA: Final = 0.3
"""Share of a surprise that goes into the trend (Holt's beta), for times."""
MATCH_M: Final = 100.0
"""A stop belongs to a known braking zone whose mean braking point is this close, m."""
MAX_ZONES: Final = 16
"""Braking zones kept per sector; past it the least-seen one makes room (bounded memory)."""


@dataclass(frozen=True)
class Metric:
    """How to judge and say one metric: sd floor (metric units) and what + / - mean."""

    floor: float
    more: str
    less: str
    relative_floor: float = 0.0  # floor as a share of the mean, when larger
    beta: float = 0.0  # Holt trend gain; > 0 for metrics that drift as the tires fade


CORNER_METRICS: Final = {
    "brake_point_m": Metric(
        8.0,
        "braked {d:.0f} m later than usual for the stop at {at:.0f} m",
        "braked {d:.0f} m earlier than usual for the stop at {at:.0f} m",
    ),
    "brake_pressure_bar": Metric(
        8.0,
        "{v:.0f} bar on the brakes at {at:.0f} m, {d:.0f} bar over usual",
        "{v:.0f} bar on the brakes at {at:.0f} m, {d:.0f} bar under usual",
        relative_floor=0.15,  # a 10 Hz stream can miss a short pressure peak by that much
    ),
}
METRICS: Final = {
    "peak_lat_g": Metric(0.04, "peak lateral {v:.2f} G, {d:.2f} G over usual", "{d:.2f} G less"),
    "throttle_pct": Metric(2.0, "{d:.0f}% more throttle than usual", "{d:.0f}% less throttle"),
    "time_s": Metric(0.15, "{d:.2f} s slower than usual", "{d:.2f} s quicker", 0.003, BETA),
}
LAP_TIME: Final = Metric(0.25, "{d:.2f} s off your usual pace", "{d:.2f} s quicker", 0.003, BETA)


@dataclass(frozen=True)
class Ewma:
    """Exponentially weighted level, trend (per lap) and variance of the surprise.

    Holt's linear smoothing: the expected next value is ``mean + trend``, so
    a driver whose sector times grow steadily as the tires fade is not
    flagged for the fade, only for a lap that breaks it. ``var`` is the
    weighted mean square of (value - expected value); ``n`` values seen.
    """

    n: int = 0
    mean: float = math.nan
    trend: float = 0.0
    var: float = 0.0

    @property
    def expected(self) -> float:
        return self.mean + self.trend

    def add(self, x: float, beta: float = 0.0) -> Ewma:
        """Fold in ``x``; ``beta`` 0 keeps no trend (a plain EWMA)."""
        if self.n == 0:
            return Ewma(1, x)
        w = max(1.0 / (self.n + 1), ALPHA)
        err = x - self.expected
        trend = self.trend + beta * w * err if self.n > 1 else beta * (x - self.mean)
        var = (1.0 - w) * (self.var + w * err * err)
        return Ewma(self.n + 1, self.expected + w * err, trend, var)

    def sigma(self, metric: Metric) -> float:
        floor = max(metric.floor, metric.relative_floor * abs(self.mean))
        return max(math.sqrt(self.var), floor)


@dataclass
class DriverProfile:
    """One car's profile: per sector per metric, the lap time, and this lap's sector deltas."""

    sectors: dict[int, dict[str, Ewma]] = field(default_factory=dict)
    corners: dict[int, list[dict[str, Ewma]]] = field(default_factory=dict)
    lap_time: Ewma = field(default_factory=Ewma)
    lap_deltas: dict[int, float] = field(default_factory=dict)

    def copy(self) -> DriverProfile:
        return shallow_copy(
            self,
            sectors={k: dict(v) for k, v in self.sectors.items()},
            corners={k: [dict(c) for c in v] for k, v in self.corners.items()},
            lap_deltas=dict(self.lap_deltas),
        )


def _judge(stats: Ewma, x: float, metric: Metric) -> tuple[float, float, Ewma]:
    """(z, sigma, updated stats) for a new value ``x``; z is 0 before ``MIN_LAPS``."""
    if stats.n == 0:
        return 0.0, math.nan, stats.add(x, metric.beta)
    sigma = stats.sigma(metric)
    expected = stats.expected
    z = (x - expected) / sigma if stats.n >= MIN_LAPS else 0.0
    clipped = min(max(x, expected - 3 * sigma), expected + 3 * sigma)
    return z, sigma, stats.add(clipped, metric.beta)


def observe(profile: DriverProfile, window: Window) -> tuple[DriverProfile, list[dict[str, Any]]]:
    """Fold a completed window into a copy of ``profile``; return it and any alerts.

    Only ``full`` windows (complete, timed, no gap) count. At most one alert
    per window: the metric furthest off, with the others listed.
    """
    if not window.full:
        return profile, []
    p = profile.copy()
    if window.kind == "lap":
        return p, _observe_lap(p, window)
    stats = p.sectors.setdefault(window.sector, {})
    hits: list[dict[str, Any]] = []
    for name, metric in METRICS.items():
        x = window.profile.get(name, math.nan)
        if not math.isfinite(x):
            continue
        old = stats.get(name, Ewma())
        z, sigma, stats[name] = _judge(old, x, metric)
        if name == "time_s" and old.n:
            p.lap_deltas[window.sector] = x - old.expected
        if abs(z) > SIGMA:
            hits.append(_alert(window, name, metric, x, old.expected, sigma, z))
    hits.extend(_observe_stops(p.corners.setdefault(window.sector, []), window))
    if not hits:
        return p, []
    hits.sort(key=lambda a: -abs(a["z"]))
    hits[0]["also"] = [h["metric"] for h in hits[1:]]
    return p, hits[:1]


def _observe_stops(corners: list[dict[str, Ewma]], window: Window) -> list[dict[str, Any]]:
    """Match the window's stops one-to-one to braking zones (in place) and judge them there.

    Greedy by distance over all (stop, zone) pairs within ``MATCH_M``: two
    stops 60 m apart keep their own zones even when one is braked late.
    """
    pairs = sorted(
        (abs(c["brake_point_m"].mean - stop[0]), i, k)
        for i, stop in enumerate(window.stops)
        for k, c in enumerate(corners)
        if abs(c["brake_point_m"].mean - stop[0]) < MATCH_M
    )
    match: dict[int, int] = {}
    for _, i, k in pairs:
        if i not in match and k not in match.values():
            match[i] = k
    hits = []
    for i, k in match.items():
        onset_m, peak_bar = window.stops[i]
        corner = corners[k]
        at = corner["brake_point_m"].mean
        for name, x in (("brake_point_m", onset_m), ("brake_pressure_bar", peak_bar)):
            old, metric = corner[name], CORNER_METRICS[name]
            z, sigma, corner[name] = _judge(old, x, metric)
            if abs(z) > SIGMA:
                alert = _alert(window, name, metric, x, old.expected, sigma, z, at)
                hits.append({**alert, "at_m": at})
    for i, (onset_m, peak_bar) in enumerate(window.stops):  # after: adding may drop a zone
        if i not in match:
            _new_zone(corners, onset_m, peak_bar)
    return hits


def _new_zone(corners: list[dict[str, Ewma]], onset_m: float, peak_bar: float) -> None:
    if len(corners) >= MAX_ZONES:
        corners.remove(min(corners, key=lambda c: c["brake_point_m"].n))
    corners.append(
        {"brake_point_m": Ewma().add(onset_m), "brake_pressure_bar": Ewma().add(peak_bar)}
    )


def _observe_lap(p: DriverProfile, window: Window) -> list[dict[str, Any]]:
    old = p.lap_time
    z, sigma, p.lap_time = _judge(old, window.time_s, LAP_TIME)
    deltas, p.lap_deltas = p.lap_deltas, {}
    if abs(z) <= SIGMA:
        return []
    alert = _alert(window, "lap_time_s", LAP_TIME, window.time_s, old.expected, sigma, z)
    if deltas:
        worst = max(deltas, key=lambda k: deltas[k] if z > 0 else -deltas[k])
        alert["sector"], alert["sector_delta_s"] = worst, round(deltas[worst], 3)
    return [alert]


def _alert(
    w: Window,
    name: str,
    metric: Metric,
    x: float,
    mean: float,
    sigma: float,
    z: float,
    at_m: float = math.nan,
) -> dict[str, Any]:
    d = x - mean
    text = (metric.more if d > 0 else metric.less).format(v=x, d=abs(d), at=at_m)
    return {
        "kind": "coaching",
        "rule": "driver_fingerprint",
        "severity": "info",
        "state": "fired",
        "lap": w.lap,
        "sector": w.sector if w.sector >= 0 else None,
        "metric": name,
        "value": round(x, 3),
        "mean": round(mean, 3),
        "sigma": round(sigma, 3),
        "z": round(z, 2),
        "t": w.end_t,
        "text": text,
    }


def message(alert: dict[str, Any], sector_name: str | None) -> str:
    """The one-line coaching call naming the sector, e.g.
    "S2: braked 38 m later than usual for the stop at 1507 m (lap 7)"."""
    where = sector_name or (f"S{alert['sector'] + 1}" if alert.get("sector") is not None else None)
    if alert["metric"] == "lap_time_s":
        tail = f"; most lost in {where}" if where else ""
        return f"Lap {alert['lap']}: {alert['text']}{tail}"
    return f"{where}: {alert['text']} (lap {alert['lap']})"
