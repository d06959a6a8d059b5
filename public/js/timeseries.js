// A small canvas time-series renderer, fast enough to redraw every animation
// frame with thousands of points per series.
//
// * One canvas per chart, sized in device pixels (devicePixelRatio aware) so
//   lines stay sharp on HiDPI screens; drawing is in CSS pixels.
// * Min/max decimation per pixel column (the "M4" reduction: first, min, max,
//   last of each column): whatever the point count, a series costs at most
//   four vertices per device-pixel column, and spikes are never lost.
// * One path and one stroke() per series.
// * Series are read in place from ring buffers ({xs, ys, start, len, cap}),
//   so drawing allocates nothing per point.

const PAD = { left: 44, right: 10, top: 8, bottom: 20 };
const GRID = 'rgba(255,255,255,0.08)';
const AXIS_TEXT = 'rgba(220,226,235,0.6)';

/** Tick values at "nice" steps (1, 2, 5 x 10^k) covering [lo, hi]. */
export function niceTicks(lo, hi, count = 4) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return ticks;
}

/** First logical index whose x is >= x0 (binary search; xs is ascending). */
function firstIndex(view, x0) {
  let lo = 0;
  let hi = view.len;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (view.xs[(view.start + mid) % view.cap] < x0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Visible y range of a view between x0 and x1: [min, max], or null when empty. */
function yExtent(view, x0, x1) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = firstIndex(view, x0); i < view.len; i++) {
    const k = (view.start + i) % view.cap;
    if (view.xs[k] > x1) break;
    const y = view.ys[k];
    if (y < lo) lo = y;
    if (y > hi) hi = y;
  }
  return lo <= hi ? [lo, hi] : null;
}

export class TimeSeriesChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{yMin?: number, yMax?: number, symmetric?: boolean,
   *          xLabel?: (x: number, x0: number, x1: number) => string,
   *          gap?: number, dots?: boolean}} opts
   *   yMin/yMax: the y range always shown (auto-range can only grow it);
   *   symmetric: centre y on 0; gap: x distance that breaks the line.
   */
  constructor(canvas, opts = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.opts = opts;
    this.cssW = 0;
    this.cssH = 0;
    this.dpr = 1;
    this.verticesDrawn = 0;
  }

  /** Match the canvas to its CSS box; true when the size changed. */
  resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth;
    const h = this.canvas.clientHeight;
    if (w === this.cssW && h === this.cssH && dpr === this.dpr) return false;
    this.cssW = w;
    this.cssH = h;
    this.dpr = dpr;
    this.canvas.width = Math.max(1, Math.round(w * dpr));
    this.canvas.height = Math.max(1, Math.round(h * dpr));
    return true;
  }

  /**
   * Draw ``series`` ([{colour, width?, view}]) over x in [x0, x1].
   * Views are ring views: {xs, ys, start, len, cap}, xs ascending.
   */
  draw(series, x0, x1) {
    this.resize();
    const { ctx, cssW, cssH, dpr } = this;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const plot = {
      left: PAD.left,
      top: PAD.top,
      w: Math.max(1, cssW - PAD.left - PAD.right),
      h: Math.max(1, cssH - PAD.top - PAD.bottom),
    };
    const [y0, y1] = this._yRange(series, x0, x1);
    this._axes(plot, x0, x1, y0, y1);
    this.verticesDrawn = 0;
    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.left, plot.top, plot.w, plot.h);
    ctx.clip();
    for (const s of series) {
      if (this.opts.dots) this._dots(s, plot, x0, x1, y0, y1);
      else this._line(s, plot, x0, x1, y0, y1);
    }
    ctx.restore();
  }

  _yRange(series, x0, x1) {
    const { yMin, yMax, symmetric } = this.opts;
    let lo = yMin ?? Infinity;
    let hi = yMax ?? -Infinity;
    for (const s of series) {
      const e = yExtent(s.view, x0, x1);
      if (e) {
        lo = Math.min(lo, e[0]);
        hi = Math.max(hi, e[1]);
      }
    }
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
    if (symmetric) {
      const m = Math.max(Math.abs(lo), Math.abs(hi));
      lo = -m;
      hi = m;
    }
    if (hi - lo < 1e-9) {
      lo -= 1;
      hi += 1;
    }
    const pad = (hi - lo) * 0.04;
    return [yMin !== undefined && lo >= yMin ? lo : lo - pad, hi + pad];
  }

  _axes(plot, x0, x1, y0, y1) {
    const { ctx } = this;
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = AXIS_TEXT;
    ctx.strokeStyle = GRID;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ctx.beginPath();
    for (const v of niceTicks(y0, y1, 4)) {
      const py = Math.round(plot.top + plot.h - ((v - y0) / (y1 - y0)) * plot.h) + 0.5;
      ctx.moveTo(plot.left, py);
      ctx.lineTo(plot.left + plot.w, py);
      ctx.fillText(String(+v.toPrecision(4)), plot.left - 6, py);
    }
    ctx.stroke();
    const xLabel = this.opts.xLabel;
    if (!xLabel || !(x1 > x0)) return;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const ticks = this.opts.xTicks ? this.opts.xTicks(x0, x1) : niceTicks(x0, x1, 5);
    for (const v of ticks) {
      const px = plot.left + ((v - x0) / (x1 - x0)) * plot.w;
      if (px < plot.left + 14) continue; // would collide with the lowest y label
      ctx.fillText(xLabel(v, x0, x1), px, plot.top + plot.h + 5);
    }
  }

  _line(s, plot, x0, x1, y0, y1) {
    const { ctx } = this;
    const view = s.view;
    const cols = Math.max(1, Math.round(plot.w * this.dpr));
    const xScale = cols / (x1 - x0);
    const colW = plot.w / cols;
    const yScale = plot.h / (y1 - y0);
    const yBase = plot.top + plot.h;
    const gap = this.opts.gap ?? Infinity;
    let col = -1;
    let first = 0;
    let last = 0;
    let lo = 0;
    let hi = 0;
    let penDown = false; // whether the next vertex continues the line
    let prevX = -Infinity;
    let vertices = 0;
    const flush = () => {
      if (col < 0) return;
      const px = plot.left + (col + 0.5) * colW;
      const py = (v) => yBase - (v - y0) * yScale;
      if (penDown) ctx.lineTo(px, py(first));
      else ctx.moveTo(px, py(first));
      if (lo !== first) ctx.lineTo(px, py(lo));
      if (hi !== lo) ctx.lineTo(px, py(hi));
      if (last !== hi) ctx.lineTo(px, py(last));
      vertices += 4;
      penDown = true;
      col = -1;
    };
    ctx.beginPath();
    // Start one point early so the line enters the plot from its left edge.
    const from = Math.max(0, firstIndex(view, x0) - 1);
    for (let i = from; i < view.len; i++) {
      const k = (view.start + i) % view.cap;
      const x = view.xs[k];
      const y = view.ys[k];
      if (Number.isNaN(y)) {
        flush();
        penDown = false;
        continue;
      }
      if (x - prevX > gap) {
        flush();
        penDown = false;
      }
      prevX = x;
      const c = Math.floor((x - x0) * xScale);
      if (c !== col) {
        flush();
        col = c;
        first = last = lo = hi = y;
      } else {
        last = y;
        if (y < lo) lo = y;
        if (y > hi) hi = y;
      }
      if (x > x1) break;
    }
    flush();
    ctx.strokeStyle = s.colour;
    ctx.lineWidth = s.width ?? 1.5;
    ctx.lineJoin = 'round';
    ctx.stroke();
    this.verticesDrawn += vertices;
  }

  _dots(s, plot, x0, x1, y0, y1) {
    const { ctx } = this;
    const view = s.view;
    const px = (x) => plot.left + ((x - x0) / (x1 - x0)) * plot.w;
    const py = (y) => plot.top + plot.h - ((y - y0) / (y1 - y0)) * plot.h;
    ctx.beginPath();
    let started = false;
    for (let i = 0; i < view.len; i++) {
      const k = (view.start + i) % view.cap;
      const y = view.ys[k];
      if (Number.isNaN(y)) continue;
      if (started) ctx.lineTo(px(view.xs[k]), py(y));
      else ctx.moveTo(px(view.xs[k]), py(y));
      started = true;
    }
    ctx.strokeStyle = s.colour;
    ctx.lineWidth = s.width ?? 1.5;
    ctx.stroke();
    ctx.fillStyle = s.colour;
    ctx.beginPath();
    for (let i = 0; i < view.len; i++) {
      const k = (view.start + i) % view.cap;
      const y = view.ys[k];
      if (Number.isNaN(y)) continue;
      ctx.moveTo(px(view.xs[k]) + 3, py(y));
      ctx.arc(px(view.xs[k]), py(y), 3, 0, 2 * Math.PI);
    }
    ctx.fill();
  }
}

/** A ring view over plain arrays (for small series such as per-lap values). */
export function arrayView(xs, ys) {
  return { xs, ys, start: 0, len: xs.length, cap: Math.max(1, xs.length) };
}
