// The pit-wall page: wire the WebSocket to the store, and draw once per
// animation frame.
//
// Messages are parsed and stored as they arrive (cheap, bounded work); the
// table, map, charts and feed are drawn on requestAnimationFrame from the
// store's newest state. However fast data arrives, the page draws at most
// once per frame and intermediate states are simply never drawn, so it
// cannot fall behind.
//
// URL parameters: ?token=KEY (API key for the WebSocket), ?car=CHASSIS
// (selected car), ?history=N (points kept per car, default 5000),
// ?ws=/path (WebSocket path, default /ws/realtime).

import { CarCharts } from './charts.js';
import { Connection, realtimeUrl } from './connection.js';
import { shortLabels } from './format.js';
import { Feed, InsightDetail, deriveEvents } from './insights.js';
import { DEFAULT_CAP, Store } from './store.js';
import { TimingTable } from './table.js';
import { TrackMap } from './trackmap.js';
import { fallbackTrack, loadTracks } from './tracks.js';

const TRACKS_URL = 'tracks/track_sectors.json';
// On load the charts start from the server's recent points, not from empty.
const BACKFILL_POINTS = 20000;
const FULL_REDRAW_MS = 1000; // stale rows and the header refresh even without data

function intParam(params, name, lo, hi, fallback) {
  const v = Number.parseInt(params.get(name) ?? '', 10);
  return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : fallback;
}

const $ = (id) => document.getElementById(id);

/** Load the server's newest points (oldest first) into the store; returns how many. */
async function backfill(store, token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  try {
    const response = await fetch(`api/recent/${BACKFILL_POINTS}`, { headers, cache: 'no-store' });
    if (!response.ok) {
      console.warn(`pitwall: api/recent answered ${response.status}; charts start empty`);
      return 0;
    }
    const points = await response.json();
    if (!Array.isArray(points)) return 0;
    store.ingestPoints(points);
    return points.length;
  } catch (err) {
    console.warn('pitwall: cannot load recent points; charts start empty', err);
    return 0;
  }
}

/** A car's completed laps from the server, for its per-lap tire chart. */
async function loadLaps(store, chassis, token) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  try {
    const response = await fetch(`api/laps/${encodeURIComponent(chassis)}`, { headers });
    if (response.ok) store.ingestLaps(chassis, await response.json());
  } catch (err) {
    console.warn(`pitwall: cannot load laps of ${chassis}`, err);
  }
}

export async function start() {
  const params = new URLSearchParams(window.location.search);
  const store = new Store({ cap: intParam(params, 'history', 50, 200000, DEFAULT_CAP) });
  const stats = { frames: 0, messages: 0, badMessages: 0, errors: 0, pointsPerS: 0, backfilled: 0 };
  const requested = params.get('car');
  const ui = { selected: requested, selectionChanged: true };
  store.onNewCar = (newCar) => {
    const labels = shortLabels([...store.cars.keys()]);
    for (const car of store.cars.values()) car.label = labels.get(car.chassis);
    if (newCar.chassis === requested) ui.selected = requested; // ?car= wins once it shows up
    if (ui.selected === null || !store.cars.has(ui.selected)) ui.selectionChanged = true;
    else if (newCar.chassis === ui.selected) ui.selectionChanged = true;
  };

  const token = params.get('token');
  // Both before the WebSocket opens: its snapshot would make older points look late.
  const [tracks, backfilled] = await Promise.all([loadTracks(TRACKS_URL), backfill(store, token)]);
  stats.backfilled = backfilled;
  let fallback = null;

  const select = (chassis) => {
    if (chassis === ui.selected) return;
    ui.selected = chassis;
    ui.selectionChanged = true;
  };
  const table = new TimingTable($('timing-table'), select);
  const map = new TrackMap($('track-map'), select);
  const charts = new CarCharts($('charts'));
  const detail = new InsightDetail($('insight-detail'));
  const feed = new Feed($('feed'), (chassis) => store.cars.get(chassis)?.label ?? chassis);

  /** The drawn track for a car: its file entry, else one shared oval sized to the lap. */
  const trackOf = (car) => tracks.resolve(car.track) ?? fallback;
  const updateFallback = () => {
    let maxD = 0;
    for (const car of store.cars.values()) {
      if (tracks.resolve(car.track)) continue;
      maxD = Math.max(maxD, car.history.len ? car.latest?.lapdist_m ?? 0 : 0);
    }
    const length = Math.max(1000, Math.ceil(maxD / 250) * 250);
    if (!fallback || length > fallback.length) fallback = fallbackTrack(length);
  };

  const handle = (text) => {
    stats.messages += 1;
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      stats.badMessages += 1;
      return;
    }
    try {
      dispatch(msg);
    } catch (err) {
      stats.errors += 1;
      console.error('pitwall: failed to handle a message', err);
    }
  };
  const dispatch = (msg) => {
    switch (msg?.type) {
      case 'telemetry_update':
        store.ingestPoints(msg.points);
        break;
      case 'insight_update':
        for (const insight of Array.isArray(msg.insights) ? msg.insights : []) {
          const previous = store.ingestInsight(insight);
          const car = store.cars.get(insight?.chassis);
          if (car) for (const event of deriveEvents(car.chassis, previous, car.insight)) feed.add(event);
        }
        break;
      case 'alert':
        feed.add({ kind: 'alert', alert: msg.alert });
        break;
      case 'error':
        console.warn('pitwall: server says', msg.error);
        break;
      default:
        break; // "subscribed" and types this page does not know yet
    }
  };

  const connState = $('conn-state');
  const connDetail = $('conn-detail');
  const connection = new Connection(
    realtimeUrl(window.location, params.get('ws') || '/ws/realtime', token),
    {
      onMessage: handle,
      onState: (state, detailText) => {
        connState.textContent = state;
        $('conn').dataset.state = state;
        connDetail.textContent = detailText;
      },
    },
  );

  const drawn = { version: -1, insight: -1, at: 0 };
  const lapsAsked = new Set();
  let rate = { at: performance.now(), points: 0 };
  const frame = () => {
    stats.frames += 1;
    const now = performance.now();
    try {
      draw(now);
    } catch (err) {
      stats.errors += 1;
      console.error('pitwall: drawing failed', err);
    }
    requestAnimationFrame(frame);
  };
  const draw = (now) => {
    const cars = [...store.cars.values()];
    if (ui.selectionChanged && (ui.selected === null || !store.cars.has(ui.selected)) && cars.length) {
      ui.selected = cars[0].chassis;
    }
    const selectedCar = store.cars.get(ui.selected) ?? null;
    const changed =
      store.version !== drawn.version ||
      store.insightVersion !== drawn.insight ||
      ui.selectionChanged ||
      now - drawn.at > FULL_REDRAW_MS;
    if (changed) {
      drawn.version = store.version;
      drawn.insight = store.insightVersion;
      drawn.at = now;
      updateFallback();
      table.render(cars, { selected: ui.selected, trackOf, now });
      const shownTrack = selectedCar ? trackOf(selectedCar) : cars.length ? trackOf(cars[0]) : null;
      if (shownTrack) {
        map.setTrack(shownTrack);
        map.render(
          cars.filter((car) => trackOf(car) === shownTrack),
          ui.selected,
        );
        const title = shownTrack.synthetic ? `${shownTrack.name} (no map)` : shownTrack.name;
        if ($('map-track').textContent !== title) $('map-track').textContent = title;
      }
      $('timing-empty').hidden = cars.length > 0;
      $('car-count').textContent = String(cars.length);
    }
    if (ui.selectionChanged) {
      ui.selectionChanged = false;
      charts.dirty = true;
      const title = $('selected-car');
      title.textContent = selectedCar ? `${selectedCar.label} · ${selectedCar.chassis}` : '–';
      title.style.color = selectedCar?.colour ?? '';
      title.dataset.chassis = selectedCar?.chassis ?? '';
    }
    // Laps completed before the page opened: asked for once per car, and only
    // once the server has timed a lap for it (before that the answer is 404).
    if (selectedCar && !lapsAsked.has(selectedCar.chassis) && selectedCar.insight?.laps_completed > 0) {
      lapsAsked.add(selectedCar.chassis);
      loadLaps(store, selectedCar.chassis, token);
    }
    charts.render(selectedCar);
    detail.render(selectedCar);
    feed.render();
    if (now - rate.at >= 1000) {
      stats.pointsPerS = ((store.pointsIn - rate.points) * 1000) / (now - rate.at);
      rate = { at: now, points: store.pointsIn };
      $('rate').textContent = stats.pointsPerS.toFixed(0);
    }
  };

  // For tests and for poking at the page from the console.
  window.pitwall = {
    store,
    stats,
    tracks,
    feed,
    charts,
    select,
    receive: handle, // feed a server message by hand (tests, debugging)
    get state() {
      return connection.state;
    },
    get selected() {
      return ui.selected;
    },
    get connects() {
      return connection.connects;
    },
  };
  connection.start();
  requestAnimationFrame(frame);
}

start().catch((err) => console.error('pitwall: start-up failed', err));
