"""Track geometry: load ``track_sectors.json`` and answer "where on the lap is this?".

The file (``TRACK_SECTORS_PATH``, default ``public/tracks/track_sectors.json``)
holds, per GR Cup track, TRD's timing centre-line length and S1/S2/S3 splits,
plus a coarse display centre line. It is produced by
``python -m pitwall_rt.demo_gen --tracks-out public/tracks/track_sectors.json``;
this module only reads it.

Everything here is pure: no I/O beyond :func:`load_tracks`, vectorised numpy
lookups for the hot path (:func:`sector_index` over a batch of ``lapdist_m``).

Conventions:

* Distances are metres along the TRD centre line from the start/finish
  timing line (``lapdist_m``), in driving direction.
* Centre-line points are ``(x_m, y_m)`` in a local flat frame; the first point
  is the start/finish line; the loop is closed.
* Curvature ``kappa`` is in 1/m, positive for a LEFT (counter-clockwise) turn,
  matching ``accy_can`` (+ = left).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import ArrayLike

#: Lap distance may run past the centre-line length: the Barber GR86 lap
#: trigger reaches 3,715 m on a 3,674.7 m line (tracks.md). Values up to this
#: far past ``length_m`` still count as the last sector; beyond it they are
#: treated as unknown (-1).
OVERSHOOT_TOLERANCE_M = 100.0

#: Grid spacing of the precomputed curvature profile, metres.
CURVATURE_STEP_M = 2.0
#: Width of the moving average that smooths curvature of the coarse centre line, metres.
CURVATURE_SMOOTH_M = 12.0


class TrackFileError(ValueError):
    """The track sector file is missing, not JSON, or has a bad entry (named in the message)."""


@dataclass(frozen=True, eq=False)
class Track:
    """One circuit. Arrays are read-only; distances in metres.

    ``centerline_s_m[i]`` is the lap distance of ``centerline_xy[i]``; the
    polyline is closed explicitly (last point equals first) and ``s`` is
    scaled so the last value is exactly ``length_m``.
    ``curvature_s_m`` / ``curvature_kappa_per_m`` sample the centre line's
    curvature every :data:`CURVATURE_STEP_M` metres over one lap.
    """

    id: str
    name: str
    length_m: float
    sector_names: tuple[str, ...]
    sector_starts_m: np.ndarray
    centerline_xy: np.ndarray
    centerline_s_m: np.ndarray
    curvature_s_m: np.ndarray
    curvature_kappa_per_m: np.ndarray
    aliases: tuple[str, ...] = ()
    sf_gps: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def normalise_name(name: str) -> str:
    """Case-fold and unify separators so "Road America", "road-america" and "road_america" match."""
    return re.sub(r"[\s\-_.]+", "_", name.strip().casefold()).strip("_")


def load_tracks(path: str | Path) -> dict[str, Track]:
    """Read the track sector file; return ``{track_id: Track}``.

    Raises :class:`TrackFileError` naming the file and the offending entry.
    """
    path = Path(path)
    try:
        doc = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise TrackFileError(f"{path}: cannot read track file: {exc.strerror or exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise TrackFileError(f"{path}: not valid JSON: {exc}") from exc
    entries = doc.get("tracks") if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise TrackFileError(f"{path}: expected an object with a non-empty 'tracks' object")
    tracks: dict[str, Track] = {}
    for track_id, entry in entries.items():
        try:
            tracks[track_id] = _parse_track(track_id, entry)
        except TrackFileError as exc:
            raise TrackFileError(f"{path}: track {track_id!r}: {exc}") from None
    return tracks


def _parse_track(track_id: str, entry: Any) -> Track:
    if not isinstance(entry, dict):
        raise TrackFileError("entry is not an object")
    length_m = entry.get("length_m")
    if not isinstance(length_m, int | float) or not np.isfinite(length_m) or length_m <= 0:
        raise TrackFileError(f"length_m must be a positive number, got {length_m!r}")
    names, starts = _parse_sectors(entry.get("sectors"), float(length_m))
    xy, s_m = _parse_centerline(entry.get("centerline"), float(length_m))
    curv_s, kappa = centerline_curvature(xy, float(length_m))
    gps = entry.get("sf_gps")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise TrackFileError("aliases must be a list of strings")
    known = {"name", "length_m", "sectors", "centerline", "sf_gps", "aliases"}
    return Track(
        id=track_id,
        name=str(entry.get("name", track_id)),
        length_m=float(length_m),
        sector_names=names,
        sector_starts_m=_frozen(starts),
        centerline_xy=_frozen(xy),
        centerline_s_m=_frozen(s_m),
        curvature_s_m=_frozen(curv_s),
        curvature_kappa_per_m=_frozen(kappa),
        aliases=tuple(aliases),
        sf_gps=(float(gps[0]), float(gps[1])) if isinstance(gps, list) and len(gps) == 2 else None,
        extra={k: v for k, v in entry.items() if k not in known},
    )


def _parse_sectors(sectors: Any, length_m: float) -> tuple[tuple[str, ...], np.ndarray]:
    """Check sectors tile [0, length_m] in order, within 1 m; return names and start distances."""
    if not isinstance(sectors, list) or not sectors:
        raise TrackFileError("sectors must be a non-empty list")
    names: list[str] = []
    starts: list[float] = []
    expected_start = 0.0
    for i, sec in enumerate(sectors):
        if not isinstance(sec, dict) or not {"name", "start_m", "end_m"} <= sec.keys():
            raise TrackFileError(f"sector {i} must be an object with name, start_m, end_m")
        start, end = float(sec["start_m"]), float(sec["end_m"])
        if abs(start - expected_start) > 1.0 or end <= start:
            raise TrackFileError(
                f"sector {sec['name']!r} spans {start}..{end} m; expected to start at "
                f"{expected_start} m and end after it"
            )
        names.append(str(sec["name"]))
        starts.append(start)
        expected_start = end
    if abs(expected_start - length_m) > 1.0:
        raise TrackFileError(f"sectors end at {expected_start} m but length_m is {length_m} m")
    return tuple(names), np.asarray(starts, dtype=np.float64)


def _parse_centerline(points: Any, length_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the closed polyline and its lap distance, scaled to ``length_m``.

    The drawn line must be within 1 % of ``length_m``: a bigger gap means the
    file and the timing lengths disagree, and positions would drift.
    """
    try:
        xy = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise TrackFileError("centerline must be a list of [x_m, y_m] pairs") from None
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 8 or not np.isfinite(xy).all():
        raise TrackFileError("centerline must be at least 8 finite [x_m, y_m] pairs")
    if not np.allclose(xy[0], xy[-1]):
        xy = np.vstack([xy, xy[:1]])
    seg_m = np.hypot(*np.diff(xy, axis=0).T)
    drawn_m = float(seg_m.sum())
    if abs(drawn_m - length_m) > 0.01 * length_m:
        raise TrackFileError(
            f"centerline is {drawn_m:.1f} m long, more than 1% off length_m {length_m} m"
        )
    s_m = np.concatenate([[0.0], np.cumsum(seg_m)]) * (length_m / drawn_m)
    return xy, s_m


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def centerline_curvature(
    xy: np.ndarray,
    length_m: float,
    step_m: float = CURVATURE_STEP_M,
    smooth_m: float = CURVATURE_SMOOTH_M,
) -> tuple[np.ndarray, np.ndarray]:
    """Signed curvature (1/m, + = left) of a closed polyline, every ``step_m`` metres.

    Curvature is d(heading)/ds. The heading change at each vertex is spread
    evenly over a window as wide as the shorter of its two segments (exact
    for points on a circle, and it keeps a corner's turn off the long straight
    next to it); each grid cell gets the mean curvature over the cell, then a
    circular moving average of ``smooth_m`` takes the edge off the coarse
    line. Returns ``(s_m, kappa_per_m)``, ``s_m`` in ``[0, length_m)``;
    distances are rescaled so the loop is ``length_m`` long.
    """
    pts = np.asarray(xy, dtype=np.float64)
    if np.allclose(pts[0], pts[-1]):
        pts = pts[:-1]
    seg = np.roll(pts, -1, axis=0) - pts  # segment i: vertex i -> i+1 (wrapping)
    seg_m = np.hypot(seg[:, 0], seg[:, 1])
    seg_m *= length_m / seg_m.sum()
    heading = np.arctan2(seg[:, 1], seg[:, 0])
    turn = np.angle(np.exp(1j * (heading - np.roll(heading, 1))))  # at vertex i, in (-pi, pi]
    s_v = np.concatenate([[0.0], np.cumsum(seg_m[:-1])])
    half_w = 0.5 * np.minimum(seg_m, np.roll(seg_m, 1))
    before = np.cumsum(turn) - turn  # heading (relative to segment -1) before vertex i
    knot_s = np.column_stack([s_v - half_w, s_v + half_w]).ravel()
    knot_th = np.column_stack([before, before + turn]).ravel()
    winding = turn.sum()  # +-2 pi for a simple loop
    knot_s = np.concatenate([knot_s - length_m, knot_s, knot_s + length_m])
    knot_th = np.concatenate([knot_th - winding, knot_th, knot_th + winding])
    n = max(round(length_m / step_m), 8)
    cell_m = length_m / n
    theta = np.interp((np.arange(n + 1) - 0.5) * cell_m, knot_s, knot_th)
    kappa = np.diff(theta) / cell_m
    width = max(round(smooth_m / cell_m), 1)
    if width > 1:
        padded = np.concatenate([kappa[-width:], kappa, kappa[:width]])
        kappa = np.convolve(padded, np.ones(width) / width, mode="same")[width:-width]
    return np.arange(n) * cell_m, kappa


def resolve_track(name: str | None, tracks: dict[str, Track]) -> Track | None:
    """Map an incoming track name (id or alias, any case/separator) to a Track, else None."""
    if not name:
        return None
    key = normalise_name(name)
    for track in tracks.values():
        if key == normalise_name(track.id) or key in {normalise_name(a) for a in track.aliases}:
            return track
    return None


def sector_index(track: Track, lapdist_m: ArrayLike) -> np.ndarray:
    """Sector index (0-based, int8) for each lap distance in metres.

    -1 for NaN, negative distances and distances more than
    :data:`OVERSHOOT_TOLERANCE_M` past ``length_m``; a small overshoot past the
    line (lap trigger lag) stays in the last sector.
    """
    d = np.atleast_1d(np.asarray(lapdist_m, dtype=np.float64))
    idx = np.searchsorted(track.sector_starts_m, d, side="right") - 1
    bad = ~(d >= 0.0) | (d > track.length_m + OVERSHOOT_TOLERANCE_M)  # ~(>=) catches NaN
    idx[bad] = -1
    return idx.astype(np.int8)


def position_xy(track: Track, lapdist_m: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Display position ``(x_m, y_m)`` for lap distances, by linear interpolation.

    Distances wrap modulo ``length_m`` (an overshoot is drawn just past the
    line); NaN gives NaN.
    """
    d = np.atleast_1d(np.asarray(lapdist_m, dtype=np.float64)) % track.length_m
    x = np.interp(d, track.centerline_s_m, track.centerline_xy[:, 0])
    y = np.interp(d, track.centerline_s_m, track.centerline_xy[:, 1])
    return x, y


def curvature_per_m(track: Track, s_m: ArrayLike) -> np.ndarray:
    """Signed curvature (1/m, + = left) at lap distances ``s_m`` (wrapping), smoothed."""
    d = np.atleast_1d(np.asarray(s_m, dtype=np.float64))
    return np.interp(d, track.curvature_s_m, track.curvature_kappa_per_m, period=track.length_m)
