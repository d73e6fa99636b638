// The dashboard's connection to /ws/metrics/: subscribe, keep the last records per source,
// notice gaps and resync, reconnect with backoff, and fall back to polling the HTTP API.
//
// Everything the outside world provides (WebSocket, fetch, timers, randomness) is injected,
// so the state machine runs under node's test runner exactly as in the browser.

import { WILDCARD, channelOf, recordKey } from "./records.js";

// docs/websocket.md: the server closes with this when the socket's key or session ended.
export const CLOSE_CREDENTIALS_ENDED = 4401;

export const State = Object.freeze({
  CONNECTING: "connecting",
  LIVE: "live",
  RECONNECTING: "reconnecting",
  POLLING: "polling",
  CLOSED: "closed",
});

// Exponential backoff with full jitter: a uniform delay in [0, min(max, base * 2^attempt)],
// so a restarted server is not met by every browser at the same instant.
export function backoffDelay(attempt, { baseMs = 1000, maxMs = 30000, random = Math.random } = {}) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return Math.floor(random() * ceiling);
}

const DEFAULTS = {
  maxReconnectAttempts: 10,
  heartbeatTimeoutMs: 60000,
  pollIntervalMs: 30000,
  slowRetryMs: 60000,
  recentLimit: 100,
  recentUrl: "/api/metrics/recent/",
};

export class MetricsWebSocketClient {
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    this.timers = options.timers ?? globalThis;
    this.random = options.random ?? Math.random;
    this.state = State.CLOSED;
    this.subscriptions = new Set();
    this.handlers = new Map();
    this.buffers = new Map(); // source -> last records, oldest first
    this.seen = new Map(); // source -> Set of record keys in its buffer
    this.nextSeq = new Map(); // source -> the seq its next batch should have
    this.newest = new Map(); // source and "*" -> {page, scheduler}: the newest ids held
    this.catchingUp = new Set(); // sources whose missed records are still coming
    this.attempts = 0;
    this.socket = null;
    this.stopped = true;
    this.heartbeatTimer = null;
    this.reconnectTimer = null;
    this.pollTimer = null;
  }

  // --- events ---------------------------------------------------------------------------

  on(event, handler) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(handler);
    return () => this.handlers.get(event)?.delete(handler);
  }

  emit(event, payload) {
    for (const handler of this.handlers.get(event) ?? []) handler(payload);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("status", { state, attempts: this.attempts });
  }

  // --- connection -----------------------------------------------------------------------

  connect() {
    this.stopped = false;
    this.open();
  }

  disconnect() {
    this.stopped = true;
    this.clearTimers();
    this.socket?.close(1000);
    this.socket = null;
    this.setState(State.CLOSED);
  }

  open() {
    this.clearTimer("reconnectTimer");
    if (this.state !== State.RECONNECTING && this.state !== State.POLLING) this.setState(State.CONNECTING);
    const socket = new this.WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => this.opened(socket);
    socket.onmessage = (event) => this.received(socket, event.data);
    socket.onclose = (event) => this.closed(socket, event?.code);
    socket.onerror = () => this.emit("error", { code: "socket_error", message: "WebSocket error" });
  }

  opened(socket) {
    if (socket !== this.socket) return;
    this.attempts = 0;
    this.clearTimer("pollTimer");
    this.setState(State.LIVE);
    this.emit("connect", {});
    this.resetHeartbeat();
    // Every reconnect is a resync: what was missed meanwhile comes back for each subscription.
    for (const source of this.subscriptions) this.resync(source);
  }

  closed(socket, code) {
    if (socket !== this.socket) return;
    this.socket = null;
    this.clearTimer("heartbeatTimer");
    this.emit("disconnect", {});
    if (code === CLOSE_CREDENTIALS_ENDED) {
      // The key was revoked or the session ended: the same credentials would be refused.
      this.stopped = true;
      this.clearTimers();
      this.setState(State.CLOSED);
      this.emit("credentials_ended", {});
      return;
    }
    if (this.stopped) return;
    this.attempts += 1;
    const slow = this.attempts > this.options.maxReconnectAttempts;
    this.setState(slow ? State.POLLING : State.RECONNECTING);
    this.startPolling();
    const delay = slow
      ? this.options.slowRetryMs
      : backoffDelay(this.attempts - 1, { random: this.random });
    this.reconnectTimer = this.timers.setTimeout(() => this.open(), delay);
  }

  resetHeartbeat() {
    this.clearTimer("heartbeatTimer");
    // Silence for this long means a dead link the browser has not noticed: start over.
    this.heartbeatTimer = this.timers.setTimeout(() => this.socket?.close(), this.options.heartbeatTimeoutMs);
  }

  send(message) {
    if (this.socket && this.state === State.LIVE) this.socket.send(JSON.stringify(message));
  }

  // --- subscriptions ----------------------------------------------------------------------

  subscribe(source) {
    this.subscriptions.add(source);
    this.nextSeq.delete(source);
    this.send({ type: "subscribe", scraperSource: source });
  }

  unsubscribe(source) {
    this.subscriptions.delete(source);
    this.send({ type: "unsubscribe", scraperSource: source });
  }

  recent(source) {
    return this.buffers.get(source) ?? [];
  }

  // --- messages ---------------------------------------------------------------------------

  received(socket, text) {
    if (socket !== this.socket) return;
    this.resetHeartbeat();
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      this.emit("error", { code: "invalid_json", message: "the server sent invalid JSON" });
      return;
    }
    switch (message.type) {
      case "metrics_batch":
        return this.batch(message);
      case "history":
        return this.history(message);
      case "metrics:update":
        return this.emit("update", message.data);
      case "subscribed":
        // Where this subscription starts: records stored before it came with the page's load.
        if (message.newest && !this.newest.has(message.scraperSource)) this.newest.set(message.scraperSource, message.newest);
        return this.emit("subscription", message);
      case "unsubscribed":
        this.doneCatchingUp(message.scraperSource);
        return this.emit("subscription", message);
      case "error":
        // What was being caught up cannot come now (the database is away, or not allowed).
        if (message.code === "history_unavailable" || message.code === "forbidden") this.doneCatchingUp();
        return this.emit("error", message);
      case "alert":
        return this.emit("alert", message);
      default:
        return undefined; // connected, heartbeat, pong: keeping the link alive is enough
    }
  }

  batch(message) {
    const source = message.scraperSource;
    const expected = this.nextSeq.get(source);
    this.nextSeq.set(source, message.seq + message.count);
    if (expected !== undefined && message.seq !== expected) {
      // Records were lost between the database and us: ask for everything after the newest.
      this.emit("error", { code: "gap", message: `missed records of ${source}; resyncing` });
      this.resync(source);
    }
    this.deliver(message.metrics, "live");
  }

  // Subscribe again, asking for every record stored after the newest we have (docs/websocket.md,
  // "Gaps and resync"); without any yet, for the newest 100.
  resync(source) {
    this.nextSeq.delete(source);
    const since = this.sinceFor(source);
    if (!since) return this.send({ type: "subscribe", scraperSource: source });
    this.catchingUp.add(source);
    this.emit("catching_up", { sources: [...this.catchingUp] });
    this.send({ type: "subscribe", scraperSource: source, since });
  }

  history(message) {
    const source = message.scraperSource;
    this.nextSeq.delete(source);
    if (!message.resync) return this.deliver(message.metrics, "history");
    this.deliver(message.metrics, "resync");
    if (message.more) return undefined;
    this.doneCatchingUp(source);
    if (message.truncated) this.emit("resync_truncated", { source });
    return undefined;
  }

  // `source` (every source when undefined) has all it missed, or will not get it now.
  doneCatchingUp(source) {
    if (source === undefined) this.catchingUp.clear();
    else this.catchingUp.delete(source);
    this.emit("catching_up", { sources: [...this.catchingUp] });
  }

  // Keep the last records per source, once each, and pass on only the new ones.
  deliver(records, origin) {
    const fresh = [];
    for (const record of records) {
      const source = channelOf(record);
      const key = recordKey(record);
      // While a source catches up, live records must not move where its next resync starts.
      if (origin !== "live" || !this.catchingUp.size) {
        this.noteNewest(source, record);
        this.noteNewest(WILDCARD, record);
      }
      let seen = this.seen.get(source);
      if (!seen) {
        seen = new Set();
        this.seen.set(source, seen);
        this.buffers.set(source, []);
      }
      if (seen.has(key)) continue;
      const buffer = this.buffers.get(source);
      buffer.push(record);
      seen.add(key);
      if (buffer.length > this.options.recentLimit) seen.delete(recordKey(buffer.shift()));
      fresh.push(record);
    }
    if (fresh.length) this.emit("metrics", { metrics: fresh, origin });
  }

  // Where a source's missed records start: after the newest of it held, or where its (or
  // "*"'s) subscription started when none came yet (docs/websocket.md, "Gaps and resync").
  sinceFor(source) {
    return this.newest.get(source) ?? this.newest.get(WILDCARD);
  }

  noteNewest(source, record) {
    if (typeof record.id !== "number") return;
    const table = record.type === "scheduler_run" ? "scheduler" : "page";
    const newest = this.newest.get(source) ?? this.newest.get(WILDCARD) ?? { page: 0, scheduler: 0 };
    if (record.id > newest[table]) this.newest.set(source, { ...newest, [table]: record.id });
  }

  // --- polling fallback -------------------------------------------------------------------

  startPolling() {
    if (this.pollTimer || !this.fetch) return;
    const poll = async () => {
      for (const source of this.subscriptions.size ? this.subscriptions : [WILDCARD]) {
        const query = source === WILDCARD ? "" : `source=${encodeURIComponent(source)}&`;
        try {
          const response = await this.fetch(`${this.options.recentUrl}?${query}limit=${this.options.recentLimit}`, {
            credentials: "same-origin",
          });
          if (response.ok) this.deliver((await response.json()).metrics, "poll");
        } catch {
          // the server is down as well; the next poll will tell
        }
      }
    };
    this.pollTimer = this.timers.setInterval(poll, this.options.pollIntervalMs);
    poll();
  }

  clearTimer(name) {
    if (!this[name]) return;
    this.timers.clearTimeout(this[name]);
    this.timers.clearInterval(this[name]);
    this[name] = null;
  }

  clearTimers() {
    for (const name of ["heartbeatTimer", "reconnectTimer", "pollTimer"]) this.clearTimer(name);
  }
}
