// Track geometry from tracks/track_sectors.json: which track a point is on,
// which sector a lap distance falls in, and where on the drawn centre line a
// car at a lap distance sits. Pure functions over plain arrays.
//
// Distances are metres from the start/finish line in driving direction; the
// centre line's cumulative length is scaled to the track's timing length, as
// pitwall_rt/tracks.py does, so lapdist_m maps onto the drawing exactly.

import { normaliseName, num } from './format.js';

/** Build a track from one file entry; null when the entry is unusable. */
export function parseTrack(id, entry) {
  if (!entry || typeof entry !== 'object') return null;
  const length = num(entry.length_m);
  if (length === null || length <= 0) return null;
  const sectors = Array.isArray(entry.sectors)
    ? entry.sectors
        .filter((s) => s && num(s.start_m) !== null && num(s.end_m) !== null)
        .map((s) => ({ name: String(s.name ?? ''), start: s.start_m, end: s.end_m }))
    : [];
  let xy = Array.isArray(entry.centerline)
    ? entry.centerline.filter((p) => Array.isArray(p) && num(p[0]) !== null && num(p[1]) !== null)
    : [];
  const synthetic = xy.length < 3;
  if (synthetic) xy = ovalPoints(length);
  return {
    id,
    name: String(entry.name ?? id),
    length,
    sectors,
    aliases: Array.isArray(entry.aliases) ? entry.aliases.map(String) : [],
    synthetic,
    ...centerline(xy, length),
  };
}

/** Closed polyline arrays with cumulative distance scaled to ``length``. */
function centerline(points, length) {
  const pts = points.slice();
  const [x0, y0] = pts[0];
  const [xn, yn] = pts[pts.length - 1];
  if (Math.hypot(xn - x0, yn - y0) > 1e-6) pts.push([x0, y0]);
  const n = pts.length;
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  const s = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = pts[i][0];
    y[i] = pts[i][1];
    if (i > 0) s[i] = s[i - 1] + Math.hypot(x[i] - x[i - 1], y[i] - y[i - 1]);
  }
  const scale = s[n - 1] > 0 ? length / s[n - 1] : 1;
  for (let i = 0; i < n; i++) s[i] *= scale;
  return { x, y, s };
}

/** An oval of the given perimeter, for tracks without a drawn centre line. */
export function ovalPoints(length, n = 96) {
  const a = length / 4.844; // semi-axes a and a/2: perimeter ~ 4.844 a (Ramanujan)
  const pts = [];
  for (let i = 0; i < n; i++) {
    const th = (2 * Math.PI * i) / n;
    pts.push([a * Math.sin(th), (a / 2) * -Math.cos(th)]);
  }
  return pts;
}

/** A stand-in track when a car's track is not in the file (or the file is missing). */
export function fallbackTrack(length) {
  return parseTrack('_unknown', { name: 'unknown track', length_m: length, sectors: [] });
}

/** Lap distance folded into [0, length). */
export function wrapDistance(track, lapdist) {
  const d = lapdist % track.length;
  return d < 0 ? d + track.length : d;
}

/** Centre-line position [x, y] (metres) of a lap distance, by linear interpolation. */
export function positionAt(track, lapdist) {
  const d = wrapDistance(track, lapdist);
  const { x, y, s } = track;
  let lo = 0;
  let hi = s.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (s[mid] <= d) lo = mid;
    else hi = mid;
  }
  const span = s[hi] - s[lo];
  const f = span > 0 ? (d - s[lo]) / span : 0;
  return [x[lo] + f * (x[hi] - x[lo]), y[lo] + f * (y[hi] - y[lo])];
}

/** The centre line between two lap distances, as [[x, y], ...]. */
export function polylineBetween(track, fromM, toM) {
  const out = [positionAt(track, fromM)];
  const { x, y, s } = track;
  for (let i = 0; i < s.length; i++) {
    if (s[i] > fromM && s[i] < toM) out.push([x[i], y[i]]);
  }
  out.push(positionAt(track, Math.min(toM, track.length - 1e-6)));
  return out;
}

/** 0-based sector of a lap distance, or null (no sectors, or not a number). */
export function sectorIndexAt(track, lapdist) {
  const d = num(lapdist);
  if (d === null || !track.sectors.length) return null;
  const w = d > track.length ? track.length : Math.max(0, d);
  for (let i = track.sectors.length - 1; i >= 0; i--) {
    if (w >= track.sectors[i].start) return i;
  }
  return 0;
}

/** Every track of the file, looked up by id or alias in any case or separator. */
export class TrackIndex {
  constructor(doc) {
    this.tracks = [];
    this.byKey = new Map();
    const entries = doc && typeof doc === 'object' ? doc.tracks : null;
    if (!entries || typeof entries !== 'object') return;
    for (const [id, entry] of Object.entries(entries)) {
      const track = parseTrack(id, entry);
      if (!track) continue;
      this.tracks.push(track);
      for (const key of [id, ...track.aliases]) this.byKey.set(normaliseName(key), track);
    }
  }

  resolve(name) {
    if (typeof name !== 'string' || !name) return null;
    return this.byKey.get(normaliseName(name)) ?? null;
  }
}

/** Fetch and index the track file; an empty index when it is missing or bad. */
export async function loadTracks(url) {
  try {
    const response = await fetch(url, { cache: 'no-cache' });
    if (!response.ok) {
      console.warn(`pitwall: ${url} answered ${response.status}; drawing tracks as ovals`);
      return new TrackIndex(null);
    }
    return new TrackIndex(await response.json());
  } catch (err) {
    console.warn(`pitwall: cannot load ${url}; drawing tracks as ovals`, err);
    return new TrackIndex(null);
  }
}
