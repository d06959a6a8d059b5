// Live charts for the selected car: speed, throttle/brake, lateral and
// longitudinal G over the last lap (time on x, newest at the right), and tire
// stress per completed lap. Redrawn at most once per animation frame, and
// only when the car has new data, the selection changed or a canvas resized.

import { fmtCompact, fmtNum, num } from './format.js';
import { TimeSeriesChart, arrayView, niceTicks } from './timeseries.js';

const DEFAULT_WINDOW_S = 90;
const MIN_WINDOW_S = 20;
const MAX_WINDOW_S = 300;
const GAP_MS = 2000; // a hole in the data longer than this breaks the line
const TIRE_COLOURS = { fl: '#4cc9f0', fr: '#f72585', rl: '#80ed99', rr: '#ffd60a' };

/**
 * Time range [x0, x1] (epoch ms) of the charts: the car's last lap time up to
 * its newest point, within sane bounds; shorter while the page holds less
 * history than that, so a freshly opened page is not mostly empty.
 */
export function timeRange(car) {
  const x1 = Number.isFinite(car.lastT) ? car.lastT : Date.now();
  const lapMs = Math.min(MAX_WINDOW_S, Math.max(MIN_WINDOW_S, car.lastLapS ?? DEFAULT_WINDOW_S)) * 1000;
  const h = car.history;
  const oldest = h.len ? h.cols.t[h.at(0)] : x1;
  return [Math.max(x1 - lapMs, Math.min(oldest, x1 - MIN_WINDOW_S * 1000)), x1];
}

function secondsAgo(v, x0, x1) {
  const s = Math.round((v - x1) / 1000);
  return s === 0 ? 'now' : `${s} s`;
}

function timeTicks(x0, x1) {
  return niceTicks((x0 - x1) / 1000, 0, 5).map((s) => x1 + s * 1000);
}

export class CarCharts {
  /** @param {HTMLElement} root the element holding the [data-chart] panels */
  constructor(root) {
    this.root = root;
    const canvas = (name) => root.querySelector(`[data-chart="${name}"] canvas`);
    const timeOpts = { xLabel: secondsAgo, xTicks: timeTicks, gap: GAP_MS };
    this.speed = new TimeSeriesChart(canvas('speed'), { ...timeOpts, yMin: 0, yMax: 120 });
    this.pedals = new TimeSeriesChart(canvas('pedals'), { ...timeOpts, yMin: 0, yMax: 100 });
    this.g = new TimeSeriesChart(canvas('g'), {
      ...timeOpts,
      yMin: -1.5,
      yMax: 1.5,
      symmetric: true,
    });
    this.tires = new TimeSeriesChart(canvas('tires'), {
      dots: true,
      xLabel: (v) => `L${Math.round(v)}`,
      xTicks: (x0, x1) => niceTicks(x0, x1, 6).filter((v) => Number.isInteger(v)),
    });
    this.values = {};
    for (const el of root.querySelectorAll('[data-value]')) this.values[el.dataset.value] = el;
    this.drawnKey = null;
    this.dirty = true;
    this.draws = 0;
    new ResizeObserver(() => {
      this.dirty = true;
    }).observe(root);
  }

  render(car) {
    const key = car ? `${car.chassis}:${car.version}` : '';
    if (!this.dirty && key === this.drawnKey) return;
    this.drawnKey = key;
    this.dirty = false;
    this.draws += 1;
    if (!car) {
      for (const chart of [this.speed, this.pedals, this.g, this.tires]) chart.draw([], 0, 1);
      return;
    }
    const h = car.history;
    const [x0, x1] = timeRange(car);
    this.speed.draw([{ colour: car.colour, width: 2, view: h.view('speed') }], x0, x1);
    this.pedals.draw(
      [
        { colour: '#39d353', view: h.view('throttle') },
        { colour: '#ff4d4d', view: h.view('brake') },
      ],
      x0,
      x1,
    );
    this.g.draw(
      [
        { colour: '#4cc9f0', view: h.view('accy') },
        { colour: '#ffd60a', view: h.view('accx') },
      ],
      x0,
      x1,
    );
    this._tires(car);
    this._values(car);
  }

  _tires(car) {
    const rows = car.stressPerLap();
    const laps = rows.map((r) => r.lap);
    const series = Object.entries(TIRE_COLOURS).map(([corner, colour]) => ({
      colour,
      view: arrayView(laps, rows.map((r) => r[corner])),
    }));
    const lo = laps.length ? laps[0] - 0.5 : 0;
    const hi = laps.length ? laps[laps.length - 1] + 0.5 : 1;
    this.tires.draw(laps.length ? series : [], lo, hi);
    const last = rows[rows.length - 1];
    let text = 'no full lap yet';
    if (last) {
      const worst = ['fl', 'fr', 'rl', 'rr'].reduce((a, b) => (last[b] > last[a] ? b : a));
      text = `L${last.lap} ${worst.toUpperCase()} ${fmtCompact(last[worst])}`;
    }
    this._put('tires', text);
  }

  _values(car) {
    const p = car.latest ?? {};
    this._put('speed', `${fmtNum(p.speed_kmh)} km/h`);
    const brake = Math.max(num(p.pbrake_f) ?? -Infinity, num(p.pbrake_r) ?? -Infinity);
    this._put(
      'pedals',
      `${fmtNum(p.throttle_pct)} % · ${Number.isFinite(brake) ? brake.toFixed(0) : '–'} bar`,
    );
    this._put('g', `${fmtNum(p.accy_can, 2)} · ${fmtNum(p.accx_can, 2)} G`);
  }

  _put(name, text) {
    const el = this.values[name];
    if (el && el.textContent !== text) el.textContent = text;
  }
}
