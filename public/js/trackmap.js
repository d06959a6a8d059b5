// The track map: an SVG of the centre line with sectors shaded, and one marker
// per car placed by lap distance.
//
// SVG keeps markers as DOM nodes (<g data-chassis>) that tests and users can
// query; there are at most a few dozen of them. The track outline is built
// once per track; each frame only moves markers whose position changed.
// Coordinates are the file's metres with y flipped (north up).

import { polylineBetween, positionAt, wrapDistance } from './tracks.js';
import { num } from './format.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const SECTOR_COLOURS = ['#3a86ff', '#ffbe0b', '#fb5607', '#8338ec', '#06d6a0', '#ef476f'];

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function pathData(points) {
  return points
    .map(([x, y], i) => `${i ? 'L' : 'M'}${x.toFixed(1)} ${(-y).toFixed(1)}`)
    .join('');
}

export class TrackMap {
  /** @param {SVGSVGElement} svg @param {(chassis: string) => void} onSelect */
  constructor(svg, onSelect) {
    this.svg = svg;
    this.onSelect = onSelect;
    this.track = null;
    this.markers = new Map(); // chassis -> {g, x, y, selected}
    this.markerLayer = null;
    this.r = 10;
    svg.addEventListener('click', (event) => {
      const g = event.target.closest('[data-chassis]');
      if (g) this.onSelect(g.dataset.chassis);
    });
  }

  /** Draw ``track`` (from tracks.js); a no-op when it is already shown. */
  setTrack(track) {
    if (this.track === track) return;
    this.track = track;
    this.svg.replaceChildren();
    this.markers.clear();
    let minX = Infinity;
    let maxX = -Infinity;
    let minY = Infinity;
    let maxY = -Infinity;
    for (let i = 0; i < track.x.length; i++) {
      minX = Math.min(minX, track.x[i]);
      maxX = Math.max(maxX, track.x[i]);
      minY = Math.min(minY, -track.y[i]);
      maxY = Math.max(maxY, -track.y[i]);
    }
    const span = Math.max(maxX - minX, maxY - minY, 1);
    const pad = span * 0.07;
    this.r = span / 70;
    this.svg.setAttribute(
      'viewBox',
      `${(minX - pad).toFixed(1)} ${(minY - pad).toFixed(1)} ` +
        `${(maxX - minX + 2 * pad).toFixed(1)} ${(maxY - minY + 2 * pad).toFixed(1)}`,
    );
    this.svg.dataset.track = track.id;
    this.svg.dataset.length = String(track.length);
    this._outline(track, span);
    this.markerLayer = el('g', { class: 'markers' }, this.svg);
  }

  _outline(track, span) {
    const all = [];
    for (let i = 0; i < track.x.length; i++) all.push([track.x[i], track.y[i]]);
    const base = el('g', { class: 'outline' }, this.svg);
    el('path', { d: pathData(all), class: 'track-edge', 'stroke-width': span / 45 }, base);
    track.sectors.forEach((sector, i) => {
      const pts = polylineBetween(track, sector.start, sector.end);
      el(
        'path',
        {
          d: pathData(pts),
          class: 'sector',
          'data-sector': i,
          stroke: SECTOR_COLOURS[i % SECTOR_COLOURS.length],
          'stroke-width': span / 60,
        },
        base,
      );
      const [lx, ly] = positionAt(track, (sector.start + sector.end) / 2);
      const label = el('text', { x: lx, y: -ly, class: 'sector-label', 'font-size': span / 30 }, base);
      label.textContent = sector.name || `S${i + 1}`;
    });
    el('path', { d: pathData(all), class: 'track-line', 'stroke-width': span / 300 }, base);
    // Start/finish: a short bar across the line at distance 0.
    const [sx, sy] = positionAt(track, 0);
    const [nx, ny] = positionAt(track, Math.min(10, track.length / 100));
    const len = Math.hypot(nx - sx, ny - sy) || 1;
    const ux = (-(ny - sy) / len) * (span / 40);
    const uy = ((nx - sx) / len) * (span / 40);
    el(
      'line',
      {
        x1: sx - ux,
        y1: -(sy - uy),
        x2: sx + ux,
        y2: -(sy + uy),
        class: 'start-finish',
        'stroke-width': span / 150,
      },
      base,
    );
  }

  _marker(car) {
    const g = el('g', { class: 'marker', 'data-chassis': car.chassis }, this.markerLayer);
    el('circle', { r: this.r, fill: car.colour, class: 'marker-dot' }, g);
    const text = el('text', { class: 'marker-label', 'font-size': this.r * 1.5, x: this.r * 1.4, y: 0 }, g);
    text.textContent = car.label;
    const entry = { g, text, x: NaN, y: NaN, selected: null, label: car.label };
    this.markers.set(car.chassis, entry);
    return entry;
  }

  /**
   * Place the markers of ``cars`` (those on this track with a lap distance);
   * remove markers of cars no longer shown.
   */
  render(cars, selected) {
    if (!this.track) return;
    const shown = new Set();
    for (const car of cars) {
      const d = num(car.latest?.lapdist_m);
      if (d === null) continue;
      shown.add(car.chassis);
      const m = this.markers.get(car.chassis) ?? this._marker(car);
      const [x, y] = positionAt(this.track, d);
      if (x !== m.x || y !== m.y) {
        m.x = x;
        m.y = y;
        m.g.setAttribute('transform', `translate(${x.toFixed(1)} ${(-y).toFixed(1)})`);
        m.g.dataset.x = x.toFixed(1);
        m.g.dataset.y = y.toFixed(1);
        m.g.dataset.lapdist = wrapDistance(this.track, d).toFixed(1);
      }
      const isSel = car.chassis === selected;
      if (m.selected !== isSel) {
        m.selected = isSel;
        m.g.classList.toggle('selected', isSel);
        if (isSel) this.markerLayer.appendChild(m.g); // draw on top
      }
      if (m.label !== car.label) {
        m.label = car.label;
        m.text.textContent = car.label;
      }
    }
    for (const [chassis, m] of this.markers) {
      if (!shown.has(chassis)) {
        m.g.remove();
        this.markers.delete(chassis);
      }
    }
  }
}
