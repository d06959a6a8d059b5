// Insights and alerts: the selected car's latest model output (tire wear,
// laps to the cliff, pit window, top-3 explanations) and a feed of events,
// newest first.
//
// The insight producer grows over time, so every field is optional: what is
// present is shown, what is absent is left out, and an unexpected shape is
// shown as text rather than breaking the page.

import { fmtClock, fmtLapTime, fmtNum, num } from './format.js';

export const FEED_MAX = 100;
const SEEN_MAX = 2000;
const CLIFF_WARN_LAPS = 5;

function text(value) {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** One line for an explanation entry: a string, or {text|message|feature, weight|...}. */
export function explanationText(item) {
  if (typeof item === 'string') return item;
  if (item && typeof item === 'object') {
    const main = item.text ?? item.message ?? item.explanation;
    if (typeof main === 'string') return main;
    if (typeof item.feature === 'string') {
      const w = num(item.weight ?? item.contribution ?? item.value ?? item.shap);
      return w === null ? item.feature : `${item.feature} (${w >= 0 ? '+' : ''}${w.toFixed(2)})`;
    }
  }
  return text(item);
}

/** Normalised alert: {key, severity, chassis, message, resolved}. */
export function describeAlert(alert) {
  const a = alert && typeof alert === 'object' ? alert : { message: text(alert) };
  const severity = String(a.severity ?? a.level ?? 'info').toLowerCase();
  const message =
    a.message ?? a.text ?? a.title ?? a.description ?? a.rule_name ?? a.name ?? a.rule ?? text(a);
  const state = String(a.state ?? a.status ?? '').toLowerCase();
  const resolved = state === 'resolved' || a.resolved === true;
  const key =
    a.id ?? a.alert_id ?? `${a.rule_id ?? a.rule ?? ''}|${a.chassis ?? ''}|${state}|${text(message)}`;
  return {
    key: String(key) + (resolved ? '|resolved' : ''),
    severity,
    chassis: typeof a.chassis === 'string' ? a.chassis : null,
    message: text(message),
    resolved,
  };
}

/**
 * Feed events worth a line when a car's insight goes from ``prev`` to ``next``:
 * a new personal best lap, a new pit-window recommendation, the tire cliff
 * getting close. Alerts embedded in insights are returned too.
 */
export function deriveEvents(chassis, prev, next) {
  const events = [];
  const p = prev ?? {};
  const best = num(next.best_lap_s) ?? num(next.best_lap_time_s);
  const prevBest = num(p.best_lap_s) ?? num(p.best_lap_time_s);
  // Not on a car's first insight: a page opened mid-race would list every car's best.
  if (prev && best !== null && best !== prevBest) {
    events.push({ kind: 'lap', chassis, message: `best lap ${fmtLapTime(best)}` });
  }
  const pit = num(next.pit_window?.recommended_lap);
  if (pit !== null && pit !== num(p.pit_window?.recommended_lap)) {
    events.push({ kind: 'pit', chassis, message: `pit window: box on lap ${pit.toFixed(0)}` });
  }
  const cliff = num(next.prediction?.laps_to_cliff);
  const prevCliff = num(p.prediction?.laps_to_cliff);
  if (
    cliff !== null &&
    cliff <= CLIFF_WARN_LAPS &&
    (prevCliff === null || Math.ceil(cliff) !== Math.ceil(prevCliff))
  ) {
    events.push({
      kind: 'prediction',
      chassis,
      severity: cliff <= 2 ? 'warning' : 'info',
      message: `tires: ${fmtNum(cliff, 1)} laps to the cliff`,
    });
  }
  if (Array.isArray(next.alerts)) {
    for (const alert of next.alerts) events.push({ kind: 'alert', chassis, alert });
  }
  return events;
}

export class Feed {
  /** @param {HTMLOListElement} list */
  constructor(list, labelOf) {
    this.list = list;
    this.labelOf = labelOf;
    this.pending = [];
    this.seen = new Set();
    this.count = 0;
  }

  /** Queue an event ({kind, chassis, message?, alert?, severity?}); drawn on the next frame. */
  add(event) {
    let item = event;
    if (event.kind === 'alert') {
      const a = describeAlert(event.alert);
      if (this.seen.has(a.key)) return;
      if (this.seen.size >= SEEN_MAX) this.seen.clear();
      this.seen.add(a.key);
      item = {
        kind: 'alert',
        chassis: a.chassis ?? event.chassis ?? null,
        severity: a.resolved ? 'resolved' : a.severity,
        message: a.resolved ? `resolved: ${a.message}` : a.message,
      };
    }
    this.pending.push({ ...item, at: Date.now() });
    if (this.pending.length > FEED_MAX) this.pending.splice(0, this.pending.length - FEED_MAX);
  }

  render() {
    if (!this.pending.length) return;
    const fragment = document.createDocumentFragment();
    // Newest first: the last queued goes on top.
    for (let i = this.pending.length - 1; i >= 0; i--) fragment.appendChild(this._item(this.pending[i]));
    this.pending = [];
    this.list.prepend(fragment);
    while (this.list.childElementCount > FEED_MAX) this.list.lastElementChild.remove();
  }

  _item(event) {
    const li = document.createElement('li');
    li.dataset.kind = event.kind;
    if (event.chassis) li.dataset.chassis = event.chassis;
    li.className = `sev-${event.severity ?? 'info'}`;
    const time = document.createElement('time');
    time.textContent = fmtClock(event.at);
    const car = document.createElement('span');
    car.className = 'feed-car';
    car.textContent = event.chassis ? this.labelOf(event.chassis) : 'all';
    const msg = document.createElement('span');
    msg.className = 'feed-msg';
    msg.textContent = event.message ?? '';
    li.append(time, car, msg);
    this.count += 1;
    return li;
  }
}

/** The selected car's latest insight, field by field. */
export class InsightDetail {
  constructor(root) {
    this.root = root;
    this.key = null;
    this.html = null;
  }

  render(car) {
    const key = car ? `${car.chassis}:${car.insightVersion}` : '';
    if (key === this.key) return;
    this.key = key;
    // Build aside and swap only when the content changed: insights arrive
    // every tick, and replacing identical DOM would reset the scroll position.
    const next = document.createElement('div');
    this._build(next, car);
    if (next.innerHTML === this.html) return;
    this.html = next.innerHTML;
    this.root.replaceChildren(...next.childNodes);
  }

  _build(root, car) {
    const ins = car?.insight ?? null;
    if (!car) return;
    if (!ins) {
      root.appendChild(line('muted', 'no insights for this car yet'));
      return;
    }
    this._prediction(root, ins.prediction);
    this._pitWindow(root, ins.pit_window);
    this._explanations(root, ins.explanations);
    if (!root.childElementCount) {
      const laps = num(ins.laps_completed);
      root.appendChild(
        line('muted', `${laps === null ? 'no' : laps} laps analysed · no model predictions yet`),
      );
    }
  }

  _prediction(root, pred) {
    if (!pred || typeof pred !== 'object') return;
    const box = block(root, 'prediction', 'Prediction');
    const wear = pred.wear_pct;
    if (wear && typeof wear === 'object') {
      const parts = ['fl', 'fr', 'rl', 'rr']
        .filter((k) => num(wear[k]) !== null)
        .map((k) => `${k.toUpperCase()} ${wear[k].toFixed(0)}%`);
      if (parts.length) box.appendChild(line('kv', `wear ${parts.join('  ')}`));
    }
    const cliff = num(pred.laps_to_cliff);
    if (cliff !== null) box.appendChild(line('big', `${fmtNum(cliff, 1)} laps to the cliff`));
    scalars(box, pred, ['wear_pct', 'laps_to_cliff']);
  }

  _pitWindow(root, pit) {
    if (!pit || typeof pit !== 'object') return;
    const box = block(root, 'pit-window', 'Pit window');
    const lap = num(pit.recommended_lap);
    if (lap !== null) box.appendChild(line('big', `box on lap ${lap.toFixed(0)}`));
    scalars(box, pit, ['recommended_lap']);
  }

  _explanations(root, items) {
    if (!Array.isArray(items) || !items.length) return;
    const box = block(root, 'explanations', 'Why');
    const ol = document.createElement('ol');
    for (const item of items.slice(0, 3)) {
      const li = document.createElement('li');
      li.textContent = explanationText(item);
      ol.appendChild(li);
    }
    box.appendChild(ol);
  }
}

/** One "key: value" line per scalar field not in ``skip``. */
function scalars(box, obj, skip) {
  for (const [k, v] of Object.entries(obj)) {
    if (skip.includes(k) || v === null || typeof v === 'object') continue;
    const shown = typeof v === 'number' ? +v.toFixed(3) : v;
    box.appendChild(line('kv', `${k.replaceAll('_', ' ')}: ${shown}`));
  }
}

function block(root, id, title) {
  const box = document.createElement('div');
  box.className = 'insight-block';
  box.dataset.block = id;
  const h = document.createElement('h3');
  h.textContent = title;
  box.appendChild(h);
  root.appendChild(box);
  return box;
}

function line(cls, content) {
  const div = document.createElement('div');
  div.className = cls;
  div.textContent = content;
  return div;
}
