// What the page knows about every car: the latest point, a bounded history of
// the channels the charts draw, the latest insight, and lap times.
//
// Memory is bounded whatever the server sends: each car's history is a ring
// of preallocated Float64Arrays (``cap`` points, default 5,000: a Barber lap at
// 50 Hz), the per-lap tire table keeps the last MAX_LAPS laps, and the number
// of cars is capped at MAX_CARS. Ingest is cheap per point (a few array
// writes); all drawing happens later, once per animation frame.

import { CAR_COLOURS, num } from './format.js';

export const DEFAULT_CAP = 5000;
export const MAX_CARS = 256;
export const MAX_LAPS = 200;
// A point older than the car's newest by more than this starts a new session
// (a replay restarted, a logger's clock was reset); older by less is a late
// duplicate and is dropped so the history stays in time order.
const NEW_SESSION_MS = 60_000;

export const COLUMNS = ['t', 'lapdist', 'speed', 'throttle', 'brake', 'accx', 'accy', 'lap'];

/** Epoch milliseconds of a point's meta_time (ISO string or epoch seconds/ms). */
export function pointTimeMs(point, fallbackMs) {
  const t = point.meta_time;
  if (typeof t === 'string') {
    const ms = Date.parse(t);
    return Number.isFinite(ms) ? ms : fallbackMs;
  }
  if (typeof t === 'number' && Number.isFinite(t)) return t > 1e11 ? t : t * 1000;
  return fallbackMs;
}

function orNaN(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : NaN;
}

/**
 * The newest point with every field it lacks taken from the one before:
 * GR Cup cars send lap distance and speed with one point in five, and the
 * table, map and readouts showed them missing (the map dropped the car's
 * marker) for the four between.
 */
function held(previous, p) {
  if (!previous) return p;
  const out = { ...previous };
  for (const key in p) {
    if (p[key] !== null && p[key] !== undefined) out[key] = p[key];
  }
  return out;
}

/** A fixed-capacity, time-ordered ring of columns. */
export class CarHistory {
  constructor(cap) {
    this.cap = cap;
    this.start = 0;
    this.len = 0;
    this.cols = {};
    for (const name of COLUMNS) this.cols[name] = new Float64Array(cap);
  }

  /** Physical index of logical index ``i`` (0 = oldest). */
  at(i) {
    return (this.start + i) % this.cap;
  }

  lastT() {
    return this.len ? this.cols.t[this.at(this.len - 1)] : -Infinity;
  }

  push(tMs, p) {
    let i;
    if (this.len < this.cap) {
      i = this.at(this.len);
      this.len += 1;
    } else {
      i = this.start;
      this.start = (this.start + 1) % this.cap;
    }
    const c = this.cols;
    const bf = orNaN(p.pbrake_f);
    const br = orNaN(p.pbrake_r);
    c.t[i] = tMs;
    c.lapdist[i] = orNaN(p.lapdist_m);
    c.speed[i] = orNaN(p.speed_kmh);
    c.throttle[i] = orNaN(p.throttle_pct);
    c.brake[i] = Number.isNaN(bf) ? br : Number.isNaN(br) ? bf : Math.max(bf, br);
    c.accx[i] = orNaN(p.accx_can);
    c.accy[i] = orNaN(p.accy_can);
    c.lap[i] = orNaN(p.lap);
  }

  /** Logical index of the first point with t >= tMs (len when none). */
  indexAtOrAfter(tMs) {
    let lo = 0;
    let hi = this.len;
    const t = this.cols.t;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (t[this.at(mid)] < tMs) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  clear() {
    this.start = 0;
    this.len = 0;
  }

  /** A view of one column for the chart renderer. */
  view(column) {
    return { xs: this.cols.t, ys: this.cols[column], start: this.start, len: this.len, cap: this.cap };
  }
}

export class Car {
  constructor(chassis, index, cap) {
    this.chassis = chassis;
    this.index = index;
    this.colour = CAR_COLOURS[index % CAR_COLOURS.length];
    this.label = chassis;
    this.latest = null; // the newest point, fields it lacked held from earlier ones
    this.lastT = -Infinity; // its time, epoch ms
    this.lastSeen = 0; // performance.now() when it arrived
    this.history = new CarHistory(cap);
    this.insight = null; // latest insight, fields merged over updates
    this.lapStartT = null; // when the current lap began, epoch ms (seen from telemetry)
    this.seenLastLapS = null; // lap times measured from telemetry lap changes
    this.seenBestLapS = null;
    this.lapStress = new Map(); // lap -> {fl, fr, rl, rr} stress in that lap
    this.cumStress = new Map(); // lap -> cumulative stint stress seen in that lap
    this.version = 0; // bumps on every point or insight
    this.insightVersion = 0; // bumps on every insight
  }

  get track() {
    return this.latest?.track ?? this.insight?.track ?? null;
  }

  get lap() {
    return num(this.latest?.lap) ?? num(this.insight?.lap);
  }

  get lastLapS() {
    const ins = this.insight;
    return num(ins?.last_lap_s) ?? num(ins?.last_lap_time_s) ?? this.seenLastLapS;
  }

  get bestLapS() {
    const ins = this.insight;
    return num(ins?.best_lap_s) ?? num(ins?.best_lap_time_s) ?? this.seenBestLapS;
  }

  /** Tire stress per completed lap, oldest first: [{lap, fl, fr, rl, rr}]. */
  stressPerLap() {
    const current = this.lap;
    const laps = new Set([...this.lapStress.keys(), ...this.cumStress.keys()]);
    const out = [];
    for (const lap of [...laps].sort((a, b) => a - b)) {
      if (current !== null && lap >= current) continue;
      let row = this.lapStress.get(lap);
      if (!row) {
        const end = this.cumStress.get(lap);
        const before = this.cumStress.get(lap - 1);
        if (!end || !before) continue;
        row = {};
        for (const k of ['fl', 'fr', 'rl', 'rr']) row[k] = end[k] - before[k];
      }
      out.push({ lap, ...row });
    }
    return out;
  }
}

function corners(value) {
  if (!value || typeof value !== 'object') return null;
  const out = {};
  for (const k of ['fl', 'fr', 'rl', 'rr']) {
    const v = num(value[k]);
    if (v === null) return null;
    out[k] = v;
  }
  return out;
}

function trimMap(map, keep) {
  while (map.size > keep) map.delete(map.keys().next().value);
}

export class Store {
  constructor({ cap = DEFAULT_CAP } = {}) {
    this.cap = cap;
    this.cars = new Map();
    this.version = 0; // bumps on any telemetry
    this.insightVersion = 0; // bumps on any insight
    this.pointsIn = 0;
    this.pointsDropped = 0;
    this.onNewCar = null;
  }

  car(chassis) {
    let car = this.cars.get(chassis);
    if (!car) {
      if (this.cars.size >= MAX_CARS) return null;
      car = new Car(chassis, this.cars.size, this.cap);
      this.cars.set(chassis, car);
      if (this.onNewCar) this.onNewCar(car);
    }
    return car;
  }

  /** Number of history points held for ``chassis`` (for tests and the header). */
  count(chassis) {
    return this.cars.get(chassis)?.history.len ?? 0;
  }

  /** Points of a telemetry_update, oldest first. */
  ingestPoints(points) {
    if (!Array.isArray(points)) return;
    const now = Date.now();
    const seen = performance.now();
    for (const p of points) {
      if (!p || typeof p.chassis !== 'string') continue;
      const car = this.car(p.chassis);
      if (!car) continue;
      const t = pointTimeMs(p, now);
      if (t <= car.lastT) {
        if (car.lastT - t < NEW_SESSION_MS) {
          this.pointsDropped += 1; // late or duplicate (a snapshot repeats the newest point)
          continue;
        }
        car.history.clear();
        car.lapStartT = null;
        car.latest = null; // a new session holds nothing over
      }
      this._trackLap(car, p, t);
      car.history.push(t, p);
      car.latest = held(car.latest, p);
      car.lastT = t;
      car.lastSeen = seen;
      car.version += 1;
      this.pointsIn += 1;
    }
    this.version += 1;
  }

  _trackLap(car, p, t) {
    const lap = num(p.lap);
    const prev = num(car.latest?.lap);
    if (lap === null || prev === null || lap === prev) return;
    if (lap === prev + 1 && car.lapStartT !== null) {
      const seconds = (t - car.lapStartT) / 1000;
      car.seenLastLapS = seconds;
      if (car.seenBestLapS === null || seconds < car.seenBestLapS) car.seenBestLapS = seconds;
    }
    car.lapStartT = t;
  }

  /**
   * Completed laps from GET /api/laps/{chassis} ([{lap, partial, tire_stress}]):
   * fills the per-lap tire table for laps that ended before the page opened.
   */
  ingestLaps(chassis, laps) {
    const car = this.cars.get(chassis);
    if (!car || !Array.isArray(laps)) return;
    for (const entry of laps) {
      const lap = num(entry?.lap);
      const stress = corners(entry?.tire_stress);
      if (lap === null || !stress || entry.partial || car.lapStress.has(lap)) continue;
      car.lapStress.set(lap, stress);
    }
    trimMap(car.lapStress, MAX_LAPS);
    car.version += 1;
    car.insightVersion += 1;
  }

  /** One insight object from an insight_update; returns the car's previous insight. */
  ingestInsight(insight) {
    if (!insight || typeof insight.chassis !== 'string') return null;
    const car = this.car(insight.chassis);
    if (!car) return null;
    const previous = car.insight;
    // Merge, so an update that carries only what changed keeps the rest.
    car.insight = { ...(previous || {}), ...insight };
    const lap = num(insight.lap) ?? car.lap;
    if (lap !== null) {
      const cum = corners(insight.tire_stress);
      if (cum) car.cumStress.set(lap, cum);
      const inLap = corners(insight.tire_stress_lap);
      if (inLap) car.lapStress.set(lap, inLap);
      trimMap(car.cumStress, MAX_LAPS);
      trimMap(car.lapStress, MAX_LAPS);
    }
    car.version += 1;
    car.insightVersion += 1;
    this.insightVersion += 1;
    return previous;
  }
}
