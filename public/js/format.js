// Formatting and colour helpers shared by the table, map, charts and feed.
// Pure functions: numbers and strings in, strings out.

/** The value when it is a finite number, else null (JSON null, NaN, strings, absent). */
export function num(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** Seconds -> "1:38.234" (or "58.234" under a minute); "–" when unknown. */
export function fmtLapTime(seconds) {
  const s = num(seconds);
  if (s === null || s <= 0) return '–';
  const minutes = Math.floor(s / 60);
  const rest = s - minutes * 60;
  if (minutes === 0) return rest.toFixed(3);
  return `${minutes}:${rest.toFixed(3).padStart(6, '0')}`;
}

/** A number with fixed decimals, "–" when unknown. */
export function fmtNum(value, digits = 0) {
  const v = num(value);
  return v === null ? '–' : v.toFixed(digits);
}

/** Large arbitrary-unit numbers kept short: 950, 12.3k, 4.56M. */
export function fmtCompact(value) {
  const v = num(value);
  if (v === null) return '–';
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(a >= 1e7 ? 1 : 2)}M`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(a >= 1e4 ? 1 : 2)}k`;
  return v.toFixed(a >= 100 ? 0 : 1);
}

/** Wall-clock time of an epoch-ms stamp, "14:02:11". */
export function fmtClock(epochMs) {
  const d = new Date(epochMs);
  const pad = (n) => String(n).padStart(2, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** 0 = cool (green) .. 1 = hot (red), through amber. Out-of-range values are clamped. */
export function heatColour(frac) {
  const f = Math.min(1, Math.max(0, Number.isFinite(frac) ? frac : 0));
  const hue = 130 * (1 - f);
  return `hsl(${hue.toFixed(0)} 80% ${(38 + 8 * f).toFixed(0)}%)`;
}

/** Same folding as pitwall_rt.tracks.normalise_name: "Road-America" == "road_america". */
export function normaliseName(name) {
  return String(name)
    .trim()
    .toLowerCase()
    .replace(/[\s\-_.]+/g, '_')
    .replace(/^_+|_+$/g, '');
}

// Twenty colours that stay apart on a dark background, one per car in arrival order.
export const CAR_COLOURS = [
  '#4cc9f0', '#f72585', '#ffd60a', '#80ed99', '#ff8c42', '#b388ff', '#00f5d4', '#ff5d5d',
  '#a3e635', '#f4a261', '#60a5fa', '#e879f9', '#fde68a', '#2dd4bf', '#fb7185', '#c4b5fd',
  '#facc15', '#34d399', '#f97316', '#93c5fd',
];

/**
 * Short labels for car ids: the "-"-separated parts every id shares at the
 * start or end are dropped, so GR86-002-000 and GR86-013-000 read 002 and 013.
 */
export function shortLabels(ids) {
  const labels = new Map();
  const parts = ids.map((id) => id.split('-'));
  if (ids.length < 2) {
    for (const id of ids) labels.set(id, id);
    return labels;
  }
  const shortest = Math.min(...parts.map((p) => p.length));
  let head = 0;
  while (head < shortest - 1 && parts.every((p) => p[head] === parts[0][head])) head++;
  let tail = 0;
  while (
    tail < shortest - head - 1 &&
    parts.every((p) => p[p.length - 1 - tail] === parts[0][parts[0].length - 1 - tail])
  ) {
    tail++;
  }
  ids.forEach((id, i) => {
    const kept = parts[i].slice(head, parts[i].length - tail).join('-');
    labels.set(id, kept || id);
  });
  return labels;
}
