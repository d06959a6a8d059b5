// The timing table: one row per car, in running order, with big numbers.
//
// Rows are created once per car and keep references to their cells; a
// render writes a cell only when its text changed, so 20 cars at 60 frames
// per second touch the DOM only where something moved.

import { fmtCompact, fmtLapTime, fmtNum, heatColour, num } from './format.js';
import { sectorIndexAt } from './tracks.js';

const CORNERS = ['fl', 'fr', 'rl', 'rr'];
// A row whose car has sent nothing for this long is drawn as stale.
const STALE_MS = 5000;

const COLUMNS = [
  ['pos', 'P'],
  ['car', 'Car'],
  ['lap', 'Lap'],
  ['sector', 'Sector'],
  ['last', 'Last lap'],
  ['best', 'Best lap'],
  ['speed', 'km/h'],
  ['gear', 'Gear'],
  ['rpm', 'rpm'],
  ['tires', 'Tires'],
  ['pit', 'Pit'],
];

function td(row, field) {
  const cell = document.createElement('td');
  cell.dataset.field = field;
  row.appendChild(cell);
  return cell;
}

/** Set text only when it changed (DOM writes are the expensive part). */
function put(cache, key, cell, text) {
  if (cache[key] !== text) {
    cache[key] = text;
    cell.textContent = text;
  }
}

/** Running order: more laps first, then further round the lap. */
export function raceOrder(cars, lengthOf) {
  const key = (car) => {
    const lap = num(car.latest?.lap) ?? num(car.insight?.lap) ?? 0;
    const d = num(car.latest?.lapdist_m) ?? 0;
    return lap * (lengthOf(car) || 100000) + d;
  };
  return [...cars].sort((a, b) => key(b) - key(a) || a.chassis.localeCompare(b.chassis));
}

export class TimingTable {
  /** @param {HTMLTableElement} table @param {(chassis: string) => void} onSelect */
  constructor(table, onSelect) {
    this.table = table;
    this.body = table.tBodies[0];
    this.rows = new Map(); // chassis -> {tr, cells, cache}
    this.order = [];
    const head = table.tHead.rows[0];
    head.replaceChildren();
    for (const [field, title] of COLUMNS) {
      const th = document.createElement('th');
      th.dataset.field = field;
      th.textContent = title;
      head.appendChild(th);
    }
    this.body.addEventListener('click', (event) => {
      const tr = event.target.closest('tr[data-chassis]');
      if (tr) onSelect(tr.dataset.chassis);
    });
  }

  _row(car) {
    const tr = document.createElement('tr');
    tr.dataset.chassis = car.chassis;
    const cells = {};
    for (const [field] of COLUMNS) cells[field] = td(tr, field);
    cells.car.innerHTML =
      '<span class="swatch"></span><span class="car-label"></span><span class="car-id"></span>';
    cells.car.querySelector('.swatch').style.background = car.colour;
    cells.car.querySelector('.car-id').textContent = car.chassis;
    const tires = document.createElement('div');
    tires.className = 'tires';
    tires.dataset.field = 'tire-widget';
    const tireCells = {};
    for (const corner of CORNERS) {
      const span = document.createElement('span');
      span.className = 'tire';
      span.dataset.corner = corner;
      span.textContent = '–';
      tires.appendChild(span);
      tireCells[corner] = span;
    }
    cells.tires.appendChild(tires);
    const entry = { tr, cells, tireCells, labelCell: cells.car.querySelector('.car-label'), cache: {} };
    this.rows.set(car.chassis, entry);
    this.body.appendChild(tr);
    return entry;
  }

  /**
   * @param {Car[]} cars
   * @param {{selected: string|null, trackOf: (car) => object|null, now: number}} ctx
   */
  render(cars, ctx) {
    const lengthOf = (car) => ctx.trackOf(car)?.length ?? 0;
    const ordered = raceOrder(cars, lengthOf);
    const scale = tireScale(cars);
    let bestOverall = Infinity;
    for (const car of cars) bestOverall = Math.min(bestOverall, car.bestLapS ?? Infinity);
    ordered.forEach((car, i) => {
      const row = this.rows.get(car.chassis) ?? this._row(car);
      this._fill(row, car, i + 1, ctx, scale, bestOverall);
    });
    this._reorder(ordered);
  }

  _fill(row, car, position, ctx, scale, bestOverall) {
    const { cells, cache } = row;
    const p = car.latest ?? {};
    const ins = car.insight ?? {};
    put(cache, 'pos', cells.pos, String(position));
    put(cache, 'label', row.labelCell, car.label);
    put(cache, 'lap', cells.lap, fmtNum(car.lap));
    put(cache, 'sector', cells.sector, sectorText(car, ctx.trackOf(car)));
    put(cache, 'last', cells.last, fmtLapTime(car.lastLapS));
    put(cache, 'best', cells.best, fmtLapTime(car.bestLapS));
    const fastest = car.bestLapS !== null && car.bestLapS <= bestOverall;
    if (cache.fastest !== fastest) {
      cache.fastest = fastest;
      cells.best.classList.toggle('fastest', fastest);
    }
    put(cache, 'speed', cells.speed, fmtNum(p.speed_kmh));
    const gear = num(p.gear);
    put(cache, 'gear', cells.gear, gear === null ? '–' : gear === 0 ? 'N' : gear < 0 ? 'R' : String(gear));
    put(cache, 'rpm', cells.rpm, fmtNum(p.rpm));
    this._tires(row, ins, scale);
    put(cache, 'pit', cells.pit, pitText(ins));
    const stale = car.lastSeen > 0 && ctx.now - car.lastSeen > STALE_MS;
    if (cache.stale !== stale) {
      cache.stale = stale;
      row.tr.classList.toggle('stale', stale);
    }
    const selected = car.chassis === ctx.selected;
    if (cache.selected !== selected) {
      cache.selected = selected;
      row.tr.classList.toggle('selected', selected);
    }
  }

  _tires(row, ins, scale) {
    const wear = ins.prediction?.wear_pct;
    const stress = ins.tire_stress;
    for (const corner of CORNERS) {
      const span = row.tireCells[corner];
      const w = num(wear?.[corner]);
      const s = num(stress?.[corner]);
      // The cell is the stint's tire stress, comparable across the field; the
      // model's predicted wear, when there is one, is in the tooltip and in
      // the insights panel.
      let text = '–';
      let colour = '';
      let value = '';
      if (s !== null) {
        text = fmtCompact(s);
        colour = heatColour(scale.hi > scale.lo ? (s - scale.lo) / (scale.hi - scale.lo) : 0);
        value = String(s);
      }
      const key = `tire-${corner}`;
      const cacheKey = text + colour + (w === null ? '' : w.toFixed(1));
      if (row.cache[key] !== cacheKey) {
        row.cache[key] = cacheKey;
        span.textContent = text;
        span.style.background = colour;
        span.dataset.value = value;
        const stressText = `${corner.toUpperCase()} stress ${value || 'unknown'} G*m (colour relative to the field)`;
        span.title = w !== null ? `${stressText}; predicted wear ${w.toFixed(1)} %` : stressText;
      }
    }
  }

  _reorder(ordered) {
    const same =
      ordered.length === this.order.length && ordered.every((car, i) => car === this.order[i]);
    if (same) return;
    this.order = ordered;
    for (const car of ordered) this.body.appendChild(this.rows.get(car.chassis).tr);
  }
}

/** The field's tire-stress range, so corner colours compare cars with each other. */
function tireScale(cars) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const car of cars) {
    const stress = car.insight?.tire_stress;
    if (!stress) continue;
    for (const corner of CORNERS) {
      const v = num(stress[corner]);
      if (v === null) continue;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  return { lo, hi };
}

function sectorText(car, track) {
  // From the track's sector splits when the track is known: as fresh as the
  // telemetry. Otherwise the insight's sector, which lags by a compute tick.
  if (track?.sectors.length) {
    const i = sectorIndexAt(track, car.latest?.lapdist_m);
    if (i !== null) return track.sectors[i].name || `S${i + 1}`;
  }
  const ins = car.insight ?? {};
  if (typeof ins.sector_name === 'string' && ins.sector_name) return ins.sector_name;
  const sector = num(ins.sector);
  return sector === null ? '–' : `S${sector + 1}`;
}

function pitText(ins) {
  const parts = [];
  const lap = num(ins.pit_window?.recommended_lap);
  if (lap !== null) parts.push(`L${lap.toFixed(0)}`);
  const cliff = num(ins.prediction?.laps_to_cliff);
  if (cliff !== null) parts.push(`cliff ${cliff.toFixed(0)}`);
  return parts.length ? parts.join(' · ') : '–';
}
