// The WebSocket to /ws/realtime: connect, reconnect with exponential backoff,
// and report the state the header shows.
//
// States: "connecting" (first attempt, nothing received yet), "live" (socket
// open), "disconnected" (lost or refused; retries keep running in the
// background with delays of base * 2^n, capped, with +-20 % jitter so a
// room of dashboards does not reconnect in lock step after a restart).

export const STATE_CONNECTING = 'connecting';
export const STATE_LIVE = 'live';
export const STATE_DISCONNECTED = 'disconnected';

/** ws:// or wss:// URL for ``path`` on the page's own host, with ?token= when the page has one. */
export function realtimeUrl(location, path, token) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = new URL(`${scheme}//${location.host}${path}`);
  if (token) url.searchParams.set('token', token);
  return url.toString();
}

/** Delay before retry number ``attempt`` (1-based), ms, without jitter. */
export function backoffMs(attempt, baseMs, maxMs) {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
}

export class Connection {
  /**
   * @param {string} url WebSocket URL.
   * @param {{onMessage: (text: string) => void,
   *          onState: (state: string, detail: string) => void,
   *          baseDelayMs?: number, maxDelayMs?: number}} opts
   */
  constructor(url, opts) {
    this.url = url;
    this.onMessage = opts.onMessage;
    this.onState = opts.onState;
    this.baseDelayMs = opts.baseDelayMs ?? 500;
    this.maxDelayMs = opts.maxDelayMs ?? 5000;
    this.ws = null;
    this.failures = 0;
    this.everOpened = false;
    this.state = STATE_CONNECTING;
    this.timer = null;
    this.connects = 0;
  }

  start() {
    this._connect();
  }

  /** Send a JSON message when the socket is open; returns whether it was sent. */
  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  _setState(state, detail = '') {
    this.state = state;
    this.onState(state, detail);
  }

  _connect() {
    this.timer = null;
    if (this.everOpened || this.failures > 0) {
      this._setState(STATE_DISCONNECTED, 'reconnecting…');
    } else {
      this._setState(STATE_CONNECTING, '');
    }
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      console.warn('pitwall: cannot open WebSocket', err);
      this._retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.failures = 0;
      this.everOpened = true;
      this.connects += 1;
      this._setState(STATE_LIVE, '');
    };
    ws.onmessage = (event) => this.onMessage(event.data);
    // A failed or lost socket always fires close after error; retry from there.
    ws.onerror = () => {};
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._retry();
    };
  }

  _retry() {
    this.failures += 1;
    const delay = backoffMs(this.failures, this.baseDelayMs, this.maxDelayMs);
    const jittered = delay * (0.8 + 0.4 * Math.random());
    this._setState(STATE_DISCONNECTED, `retry in ${(jittered / 1000).toFixed(1)} s`);
    this.timer = setTimeout(() => this._connect(), jittered);
  }
}
