"""Demo data: the track file's display centre lines and a recorded-looking multi-car session.

Two products, both committed and both reproducible from this module:

* ``public/tracks/track_sectors.json`` — TRD centre-line lengths and sector
  splits (from TRD's track sector maps in the Hack the Track dataset, as
  summarised in the team's realdata ``tracks.md``) plus a hand-drawn centre
  line per track::

      python -m pitwall_rt.demo_gen --tracks-out public/tracks/track_sectors.json

* ``demo_data.json`` — several GR86s lapping one track at ``rate_hz``, made
  by :mod:`pitwall_rt.vehicle_model`; the server's ``--demo`` source replays it::

      python -m pitwall_rt.demo_gen --out demo_data.json

Demo file format ``pitwall-demo/1`` (orjson, compact)::

    {"format": "pitwall-demo/1", "generated_by": "...", "track": "barber",
     "rate_hz": 20, "duration_s": 301.2, "fields": ["t_s", "lap", ...],
     "cars": [{"chassis": "GR86-002", "style": "aggressive", "rows": [[...], ...]}]}

``t_s`` is seconds from the session start, shared by all cars.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from pitwall_rt import vehicle_model as vm
from pitwall_rt.schema import NUMERIC_FIELDS
from pitwall_rt.tracks import Track, load_tracks

DEMO_FORMAT = "pitwall-demo/1"
TRACKS_FORMAT = "pitwall-tracks/1"
DEFAULT_TRACKS_PATH = Path(__file__).resolve().parent.parent / "public/tracks/track_sectors.json"
INCH_M = 0.0254

FIELDS = ("t_s", *NUMERIC_FIELDS)
"""Columns of a demo row: seconds from the session start, then every point field."""
#: Decimal places per field in the file; None = integer.
ROUNDING: dict[str, int | None] = {
    "t_s": 3,
    "lap": None,
    "lapdist_m": 2,
    "speed_kmh": 2,
    "accx_can": 3,
    "accy_can": 3,
    "Steering_Angle": 1,
    "pbrake_f": 1,
    "pbrake_r": 1,
    "rpm": None,
    "throttle_pct": 1,
    "gear": None,
}
#: Demo roster, cycled: (driving style, skill = share of the style's grip use).
ROSTER = (
    ("aggressive", 1.000),
    ("smooth", 0.990),
    ("conservative", 0.985),
    ("smooth", 0.975),
    ("aggressive", 0.965),
    ("conservative", 0.960),
)

# Per track: display name, TRD centre line and S1, S2 lengths in inches (S3 is
# the rest; from tracks.md), S/F GPS, aliases, and the control polygon of a coarse
# hand-drawn centre line in driving order (about metres; rescaled to the TRD
# length). The S/F line is the midpoint of the first edge. Shapes are plausible,
# not surveyed.
# fmt: off
TRACK_SPECS: dict[str, dict[str, Any]] = {
    "barber": {
        "name": "Barber Motorsports Park",
        "inches": (144_672, 40_512, 62_220),
        "sf_gps": (33.5326722, -86.6196083),
        "aliases": ["Barber", "Barber Motorsports Park", "barber_motorsports_park", "BMP"],
        "shape": [
            (0, 0), (330, 0), (400, -15), (430, -70), (410, -150), (350, -190), (260, -200),
            (215, -250), (230, -320), (300, -340), (360, -320), (420, -360), (440, -430),
            (500, -460), (560, -420), (580, -340), (640, -300), (720, -330), (760, -400),
            (830, -410), (870, -340), (850, -250), (780, -200), (800, -120), (860, -60), (840, 20),
            (760, 50), (650, 40), (560, 90), (430, 110), (300, 80), (180, 110), (60, 100),
            (-40, 70), (-60, 20),
        ],
    },
    "cota": {
        "name": "Circuit of the Americas",
        "inches": (216_468, 51_528, 88_188),
        "sf_gps": (30.1335278, -97.6422583),
        "aliases": ["COTA", "Circuit of the Americas", "circuit_of_the_americas", "Austin"],
        "note": (
            "Start line is 296 m (11,652 in) from the S/F timing line; "
            "lapdist_m counts from the S/F timing line."
        ),
        "shape": [
            (0, 0), (0, 600), (-5, 690), (-40, 725), (-85, 700), (-115, 640), (-170, 625),
            (-230, 680), (-290, 630), (-350, 690), (-410, 640), (-470, 690), (-560, 705),
            (-670, 700), (-715, 655), (-690, 600), (-480, 380), (-340, 190), (-310, 130),
            (-260, 110), (-230, 150), (-190, 120), (-160, 160), (-130, 230), (-90, 250),
            (-60, 200), (-70, 120), (-90, 60), (-100, -40), (-80, -110), (-30, -120), (0, -60),
        ],
    },
    "indianapolis": {
        "name": "Indianapolis Motor Speedway road course",
        "inches": (154_536, 53_712, 54_604),
        "sf_gps": (39.7931499, -86.23887),
        "aliases": ["Indy", "IMS", "Indianapolis Motor Speedway", "indianapolis_road_course"],
        "shape": [
            (0, 0), (0, 720), (3, 760), (25, 775), (60, 765), (110, 760), (150, 770), (200, 820),
            (260, 800), (300, 740), (380, 720), (470, 760), (540, 730), (560, 660), (500, 600),
            (470, 520), (520, 450), (600, 430), (640, 380), (620, 300), (540, 260), (470, 200),
            (470, 120), (520, 60), (540, -40), (500, -120), (420, -150), (200, -150), (120, -140),
            (50, -100), (10, -40),
        ],
    },
    "road_america": {
        "name": "Road America",
        "inches": (254_316, 81_048, 86_928),
        "sf_gps": (43.7979056, -87.9896333),
        "aliases": ["road-america", "Road America", "roadamerica", "Elkhart Lake"],
        "note": (
            "The TRD map leaves the centre-line length blank; "
            "length_m is S1 + S2 + S3."
        ),
        "shape": [
            (0, 0), (0, 550), (5, 620), (60, 640), (560, 640), (620, 630), (650, 590), (680, -300),
            (690, -360), (740, -370), (800, -370), (820, -420), (820, -520), (780, -550),
            (600, -560), (560, -570), (540, -620), (520, -720), (450, -780), (350, -790),
            (270, -740), (250, -550), (250, -450), (220, -400), (160, -400), (120, -400),
            (90, -360), (90, -250), (60, -180), (10, -100),
        ],
    },
    "sebring": {
        "name": "Sebring International Raceway",
        "inches": (236_966, 71_819, 73_374),
        "sf_gps": (27.450234, -81.353698),
        "aliases": ["Sebring", "Sebring International Raceway", "sebring_international"],
        "shape": [
            (0, 0), (480, 0), (525, 10), (540, 55), (515, 120), (430, 150), (390, 205), (410, 275),
            (480, 300), (530, 360), (545, 440), (580, 490), (630, 495), (660, 450), (700, 400),
            (760, 390), (780, 330), (800, 260), (880, 240), (1000, 240), (1060, 200), (1070, 120),
            (1030, 60), (1060, 0), (1130, -40), (1160, -120), (1140, -175), (1090, -190),
            (700, -200), (560, -210), (500, -250), (470, -290), (420, -290), (380, -250),
            (300, -210), (100, -190), (-60, -170), (-110, -140), (-115, -60), (-70, -10),
        ],
    },
    "sonoma": {
        "name": "Sonoma Raceway",
        "inches": (158_716, 54_520, 55_976),
        "sf_gps": (38.1615139, -122.4547166),
        "aliases": ["Sonoma", "Sonoma Raceway", "Sears Point"],
        "shape": [
            (0, 0), (220, 40), (330, 110), (380, 200), (360, 280), (290, 300), (250, 255),
            (230, 240), (170, 250), (100, 320), (0, 360), (-80, 330), (-100, 260), (-60, 200),
            (-75, 175), (-100, 170), (-170, 180), (-250, 220), (-330, 260), (-400, 230),
            (-420, 160), (-380, 110), (-300, 90), (-310, 30), (-380, -20), (-395, -60),
            (-390, -85), (-370, -90), (-340, -70), (-120, -30),
        ],
    },
    "vir": {
        "name": "Virginia International Raceway",
        "inches": (207_189, 65_064, 84_960),
        "sf_gps": (36.5688167, -79.2066639),
        "aliases": [
            "VIR", "virginia", "Virginia International Raceway", "virginia-international-raceway"
        ],
        "shape": [
            (0, 0), (300, 0), (340, 10), (360, 60), (345, 120), (380, 170), (450, 190), (490, 240),
            (480, 320), (520, 360), (610, 350), (650, 380), (640, 460), (680, 520), (740, 530),
            (780, 600), (770, 670), (730, 710), (680, 700), (620, 690), (590, 640), (520, 620),
            (440, 640), (380, 610), (360, 540), (310, 500), (250, 520), (200, 470), (230, 400),
            (200, 350), (150, 345), (100, 340), (40, 280), (-20, 260), (-55, 230), (-70, 160),
            (-70, 90), (-50, 30),
        ],
    },
}
# fmt: on


def chaikin_closed(points: np.ndarray, iterations: int = 5) -> np.ndarray:
    """Smooth a closed control polygon by corner cutting (Chaikin, 1/4-3/4 points).

    The limit is a quadratic B-spline through the edge midpoints: straights
    stay straight, and a corner's radius grows with its neighbouring edges.
    """
    p = np.asarray(points, dtype=np.float64)
    for _ in range(iterations):
        q = np.roll(p, -1, axis=0)
        p = np.stack([0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q], axis=1).reshape(-1, 2)
    return p


def resample_closed(
    fine_xy: np.ndarray, start_xy: np.ndarray, n_points: int, corner_m_per_rad: float = 80.0
) -> np.ndarray:
    """Pick ``n_points`` along a fine closed curve, denser in corners, from ``start_xy``.

    Spacing is uniform in ``length + corner_m_per_rad * |heading change|``, so
    few points are spent on straights and the corners keep their shape.
    Returns the points with the first repeated at the end.
    """
    start = int(np.argmin(np.hypot(*(fine_xy - start_xy).T)))
    pts = np.roll(fine_xy, -start, axis=0)
    seg = np.roll(pts, -1, axis=0) - pts
    seg_m = np.hypot(seg[:, 0], seg[:, 1])
    heading = np.arctan2(seg[:, 1], seg[:, 0])
    turn = np.abs(np.angle(np.exp(1j * (heading - np.roll(heading, 1)))))
    weight = np.concatenate([[0.0], np.cumsum(seg_m + corner_m_per_rad * turn)])
    closed = np.vstack([pts, pts[:1]])
    targets = np.linspace(0.0, weight[-1], n_points, endpoint=False)
    out = np.column_stack([np.interp(targets, weight, closed[:, k]) for k in (0, 1)])
    return np.vstack([out, out[:1]])


def build_centerline(shape: list[tuple[float, float]], length_m: float) -> np.ndarray:
    """Closed display centre line (metres, first point = S/F) scaled to ``length_m``."""
    control = np.asarray(shape, dtype=np.float64)
    fine = chaikin_closed(control)
    n_points = int(np.clip(round(length_m / 25.0), 120, 200))
    xy = resample_closed(fine, 0.5 * (control[0] + control[1]), n_points)
    drawn_m = float(np.hypot(*np.diff(xy, axis=0).T).sum())
    xy = (xy - xy[0]) * (length_m / drawn_m)
    return np.round(xy, 1)


def build_track_entry(spec: dict[str, Any]) -> dict[str, Any]:
    """One track's JSON entry: TRD lengths from inches (1 in = 0.0254 m) and the drawn line."""
    total_in, s1_in, s2_in = spec["inches"]
    bounds_in = (0, s1_in, s1_in + s2_in, total_in)
    bounds_m = [round(b * INCH_M, 2) for b in bounds_in]
    sectors = [
        {"name": f"S{i + 1}", "start_m": bounds_m[i], "end_m": bounds_m[i + 1]} for i in range(3)
    ]
    entry: dict[str, Any] = {
        "name": spec["name"],
        "length_m": bounds_m[-1],
        "length_in": total_in,
        "sectors": sectors,
        "sf_gps": list(spec["sf_gps"]),
        "aliases": spec["aliases"],
    }
    if "note" in spec:
        entry["note"] = spec["note"]
    entry["centerline"] = build_centerline(spec["shape"], bounds_m[-1]).tolist()
    return entry


TRACKS_SOURCE = (
    "length_m and the S1/S2/S3 splits are TRD's timing centre lines from the track sector "
    "maps shipped with the TRD 'Hack the Track' 2025 dataset (given in inches, converted at "
    "1 in = 0.0254 m); sf_gps is from the same maps. The centre lines are coarse hand-drawn "
    "approximations for display and the demo vehicle model, scaled to length_m: not "
    "surveyed, not for navigation."
)


def _one_line_if_short(match: re.Match[str]) -> str:
    flat = " ".join(part.strip() for part in match.group(0).split("\n"))
    flat = flat.replace("[ ", "[").replace(" ]", "]").replace("{ ", "{").replace(" }", "}")
    return flat if len(flat) <= 90 else match.group(0)


def build_track_file(path: str | Path) -> dict[str, Any]:
    """Write the track sector file (``TRACKS_FORMAT``) to ``path`` and return its content.

    Pretty-printed, with short lists (a centre-line point, a sector) on one
    line, so diffs stay readable.
    """
    doc: dict[str, Any] = {
        "format": TRACKS_FORMAT,
        "source": TRACKS_SOURCE,
        "regenerate": "python -m pitwall_rt.demo_gen --tracks-out public/tracks/track_sectors.json",
        "centerline_frame": (
            "[x_m, y_m] metres in a local flat frame; first point on the S/F line, "
            "driving direction, last point repeats the first"
        ),
        "tracks": {tid: build_track_entry(spec) for tid, spec in TRACK_SPECS.items()},
    }
    text = re.sub(
        r"[\[{]\n[^\[\]{}]*?\n\s*[\]}]",  # an innermost array/object: one line if short
        _one_line_if_short,
        orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode(),
    )
    Path(path).write_text(text + "\n", encoding="utf-8")
    return doc


class DemoFileError(ValueError):
    """A demo file is unreadable or not ``pitwall-demo/1``; the message names the problem."""


def _round_column(values: np.ndarray, decimals: int | None) -> list[Any]:
    if decimals is None:
        return np.rint(values).astype(np.int64).tolist()
    return np.round(values, decimals).tolist()


def _simulate_car(
    track: Track, index: int, cars: int, laps: int, seed: int, car: vm.CarParams
) -> vm.Stint:
    """Car ``index`` of ``cars``: roster style and skill, start ``index / cars`` of a lap in."""
    style_name, skill = ROSTER[index % len(ROSTER)]
    step_m = float(track.curvature_s_m[1] - track.curvature_s_m[0])
    offset_m = track.length_m * index / cars
    rng = np.random.default_rng([seed, index])
    style = vm.STYLES[style_name]
    kappa = track.curvature_kappa_per_m
    return vm.simulate_stint(kappa, step_m, car, style, laps, offset_m, rng, skill)


def _car_entry(
    index: int, stint: vm.Stint, car: vm.CarParams, rate_hz: float, duration_s: float
) -> dict[str, Any]:
    """One ``cars`` item: chassis GR86-002, -004, ..., style, and rounded rows in FIELDS order."""
    channels = vm.sample_stint(stint, car, rate_hz, duration_s)
    columns = [_round_column(channels[f], ROUNDING[f]) for f in FIELDS]
    return {
        "chassis": f"GR86-{2 * (index + 1):03d}",
        "style": stint.style.name,
        "rows": list(map(list, zip(*columns, strict=True))),
    }


def generate_demo(
    track_id: str = "barber",
    cars: int = 6,
    laps: int = 3,
    rate_hz: float = 20,
    seed: int = 7,
    tracks_path: str | Path = DEFAULT_TRACKS_PATH,
) -> dict[str, Any]:
    """Simulate ``cars`` GR86s on one track; return the ``pitwall-demo/1`` document.

    Cars start spread evenly round the lap (car i at i/cars of a lap) and all
    share the session clock. The session lasts until the slowest car has
    driven ``laps`` laps of distance, so faster cars run a little further.
    Same arguments, same output: each car draws from its own generator
    seeded with ``(seed, car index)``.
    """
    if cars < 1 or laps < 1 or rate_hz <= 0:
        raise ValueError("cars and laps must be >= 1 and rate_hz > 0")
    track = load_tracks(tracks_path).get(track_id)
    if track is None:
        raise ValueError(f"unknown track {track_id!r}")
    car = vm.CarParams()
    stints = [_simulate_car(track, i, cars, laps + 1, seed, car) for i in range(cars)]
    duration_s = max(st.time_at_distance_s(laps * st.lap_length_m) for st in stints)
    entries = [_car_entry(i, st, car, rate_hz, duration_s) for i, st in enumerate(stints)]
    command = (
        f"python -m pitwall_rt.demo_gen --track {track_id} --cars {cars} --laps {laps} "
        f"--rate {rate_hz:g} --seed {seed}"
    )
    return {
        "format": DEMO_FORMAT,
        "generated_by": command,
        "track": track.id,
        "rate_hz": int(rate_hz) if float(rate_hz).is_integer() else rate_hz,
        "duration_s": round(duration_s, 3),
        "fields": list(FIELDS),
        "cars": entries,
    }


def lap_times_s(doc: dict[str, Any], track_length_m: float) -> dict[str, list[float]]:
    """Complete lap times per chassis, s, from the start/finish crossings in the rows.

    A crossing's time is interpolated between the samples either side of the
    lapdist wrap; the first and last partial laps are not counted.
    """
    t_i, d_i, lap_i = (doc["fields"].index(f) for f in ("t_s", "lapdist_m", "lap"))
    out: dict[str, list[float]] = {}
    for entry in doc["cars"]:
        rows = np.asarray(entry["rows"], dtype=np.float64)
        t, d, lap = rows[:, t_i], rows[:, d_i], rows[:, lap_i]
        k = np.nonzero(np.diff(lap) > 0)[0]
        to_line = track_length_m - d[k]
        frac = to_line / (to_line + d[k + 1])
        crossings = t[k] + frac * (t[k + 1] - t[k])
        out[entry["chassis"]] = np.round(np.diff(crossings), 3).tolist()
    return out


def write_demo(doc: dict[str, Any], path: str | Path) -> int:
    """Write a demo document compactly (orjson); return the file size in bytes."""
    data = orjson.dumps(doc)
    Path(path).write_bytes(data)
    return len(data)


def _validate_demo(doc: Any) -> None:
    """Raise DemoFileError unless ``doc`` is a well-formed ``pitwall-demo/1`` document."""
    if not isinstance(doc, dict) or doc.get("format") != DEMO_FORMAT:
        raise DemoFileError(f"expected an object with format {DEMO_FORMAT!r}")
    fields = doc.get("fields")
    if not isinstance(fields, list) or "t_s" not in fields:
        raise DemoFileError("'fields' must be a list of names including 't_s'")
    if not all(isinstance(f, str) for f in fields) or len(set(fields)) != len(fields):
        raise DemoFileError("'fields' must be distinct strings")
    if not isinstance(doc.get("track"), str):
        raise DemoFileError("'track' must be a string")
    cars = doc.get("cars")
    if not isinstance(cars, list) or not cars:
        raise DemoFileError("'cars' must be a non-empty list")
    for i, entry in enumerate(cars):
        if not isinstance(entry, dict) or not isinstance(entry.get("chassis"), str):
            raise DemoFileError(f"cars[{i}] must be an object with a 'chassis' string")
        name, rows = f"cars[{i}] ({entry['chassis']})", entry.get("rows")
        if not isinstance(rows, list):
            raise DemoFileError(f"{name}: 'rows' must be a list")
        if any(not isinstance(row, list) or len(row) != len(fields) for row in rows):
            raise DemoFileError(f"{name}: every row must be a list of {len(fields)} numbers")
        try:
            finite = bool(np.isfinite(np.asarray(rows, dtype=np.float64)).all())
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise DemoFileError(f"{name}: rows must hold finite numbers only")


def load_demo(path: str | Path) -> list[dict[str, Any]]:
    """Every sample of a demo file as a canonical point dict, sorted by ``t_s``.

    Keys: the file's fields (``t_s`` is session seconds, the replayer maps it
    to wall-clock time) plus ``chassis`` and ``track``. Raises
    :class:`DemoFileError` for an unreadable or malformed file.
    """
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise DemoFileError(f"{path}: cannot read demo file: {exc.strerror or exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise DemoFileError(f"{path}: not valid JSON: {exc}") from exc
    try:
        _validate_demo(doc)
    except DemoFileError as exc:
        raise DemoFileError(f"{path}: {exc}") from None
    fields, track = doc["fields"], doc["track"]
    points: list[dict[str, Any]] = []
    for entry in doc["cars"]:
        extra = {"chassis": entry["chassis"], "track": track}
        points.extend({**dict(zip(fields, row, strict=True)), **extra} for row in entry["rows"])
    points.sort(key=lambda p: p["t_s"])
    return points


def main(argv: list[str] | None = None) -> int:
    """CLI: ``--out FILE`` writes a demo session, ``--tracks-out FILE`` the track file."""
    parser = argparse.ArgumentParser(
        prog="python -m pitwall_rt.demo_gen", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", help="write the demo session here (e.g. demo_data.json)")
    parser.add_argument("--tracks-out", help="write the track sector file here")
    parser.add_argument("--tracks", default=str(DEFAULT_TRACKS_PATH), help="track file to read")
    parser.add_argument("--track", default="barber")
    parser.add_argument("--cars", type=int, default=6)
    parser.add_argument("--laps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=20.0, help="samples per second per car")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if not args.out and not args.tracks_out:
        parser.error("nothing to do: give --out and/or --tracks-out")
    if args.tracks_out:
        build_track_file(args.tracks_out)
        print(f"wrote {args.tracks_out}: {len(TRACK_SPECS)} tracks")
    if args.out:
        try:
            doc = generate_demo(args.track, args.cars, args.laps, args.rate, args.seed, args.tracks)
        except ValueError as exc:
            parser.error(str(exc))
        doc["generated_by"] += f" --out {args.out}"
        size = write_demo(doc, args.out)
        track = load_tracks(args.tracks)[doc["track"]]
        print(
            f"wrote {args.out}: {size / 1e6:.2f} MB, {len(doc['cars'])} cars, "
            f"{doc['duration_s']:.1f} s at {doc['rate_hz']:g} Hz"
        )
        for chassis, times in lap_times_s(doc, track.length_m).items():
            print(f"  {chassis}: laps {', '.join(f'{t:.3f}' for t in times)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
