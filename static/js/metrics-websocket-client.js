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

// Ids are per table (docs/websocket.md): scheduler runs have their own.
const tableOf = (record) => (record.type === "scheduler_run" ? "scheduler" : "page");
// The oldest (or newest) of several marks, table by table.
const across = (pick) => (marks) => ({
  page: pick(...marks.map((mark) => mark.page)),
  scheduler: pick(...marks.map((mark) => mark.scheduler)),
});
const oldest = across(Math.min);
const newestOf = across(Math.max);
// How far back a source's mark reaches: the ids of its records that came in the 2 s before its
// newest, far more than ids are seen out of order (milliseconds), and no further: every second
// more is a second of every source's records in a "*" resync.
const MARK_WINDOW_MS = 2000;
// What came by resync or live is remembered this long after catching up ends, for a copy of it
// still on its way by the other path.
const LINGER_MS = 5000;

export class MetricsWebSocketClient {
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    this.timers = options.timers ?? globalThis;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.state = State.CLOSED;
    this.subscriptions = new Set();
    this.handlers = new Map();
    this.buffers = new Map(); // source -> last records, oldest first
    this.arrivedAt = new WeakMap(); // record -> when it came
    this.seen = new Map(); // source -> Set of record keys in its buffer
    this.nextSeq = new Map(); // source -> the seq its next batch should have
    this.starts = new Map(); // subscription -> {page, scheduler}: the newest stored when it began
    this.catchingUp = new Map(); // subscription -> {since, asks}: missed records still to come
    this.sinceAsk = new Map(); // source -> keys of what came (live or resynced) while catching up
    this.heldAtAsk = new Map(); // source -> {floor, keys}: what was held when catching up began
    this.retries = new Map(); // subscription -> {delay, timer}: asking again after history_unavailable
    this.answered = new Set(); // subscriptions a `subscribed` has answered (on any socket)
    this.resubscribed = new Set(); // those sent again after a reconnect, until their `subscribed`
    this.sampling = new Set(); // subscriptions whose plain history is still wanted (the first only)
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
    // Subscribe again; each `subscribed` says where its batches start, and what was missed
    // meanwhile is asked for then (seqFrom).
    for (const source of this.subscriptions) {
      if (this.answered.has(source)) this.resubscribed.add(source);
      this.send({ type: "subscribe", scraperSource: source });
    }
    // Answers still to come were lost with the old socket: ask again, from the same ids.
    for (const [subscription, asked] of this.catchingUp) {
      this.timers.clearTimeout(this.retries.get(subscription)?.timer);
      asked.asks = 0;
      this.askSince(subscription, asked.since);
    }
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
    this.answered.delete(source);
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
        this.seqFrom(message.scraperSource, message.seq ?? {}, message.newest);
        return this.emit("subscription", message);
      case "unsubscribed":
        this.doneCatchingUp(message.scraperSource);
        return this.emit("subscription", message);
      case "error":
        if (message.code === "history_unavailable" && message.resync) {
          this.retryResync(message.scraperSource); // the database is away: ask again later
        } else if (message.code === "history_unavailable") {
          this.sampling.delete(message.scraperSource); // a later plain history is no first one
        } else if (message.code === "forbidden") {
          this.doneCatchingUp(message.scraperSource); // what was being caught up will not come
        }
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
      // Records were lost between the database and us: ask for what was missed, through the
      // subscription that brought them (no new subscription for a "*" one).
      this.emit("error", { code: "gap", message: `missed records of ${source}; resyncing` });
      const subscription = this.subscriptions.has(source) ? source : WILDCARD;
      this.askSince(subscription, this.floorOf(source, subscription) ?? this.startOf(subscription));
    }
    this.deliver(message.metrics, "live");
  }

  // A subscription's start (docs/websocket.md, "Where a subscription starts"): per source, the
  // `seq` of its next batch. A source we expected another number of missed records in between
  // (a reconnect, or batches the server itself missed); after a reconnect, so did one we never
  // had. They are asked for once: from the oldest mark of those we hold records of; when they
  // are all new to us, from the newest mark we hold (they came up after it); holding nothing,
  // from where the subscription began.
  seqFrom(subscription, seqs, newest) {
    const again = this.resubscribed.delete(subscription);
    if (!this.answered.has(subscription)) {
      this.answered.add(subscription);
      this.sampling.add(subscription);
      if (newest) this.starts.set(subscription, newest);
    } else if (again) {
      this.sampling.delete(subscription); // a first history that never came must not come now
    }
    const missed = [];
    for (const [source, seq] of Object.entries(seqs)) {
      const expected = this.nextSeq.get(source);
      if (expected === undefined ? again : expected !== seq) missed.push(source);
      this.nextSeq.set(source, seq);
    }
    if (!missed.length) return;
    const marks = missed.map((source) => this.floorOf(source, subscription)).filter(Boolean);
    if (marks.length) return this.askSince(subscription, oldest(marks));
    // Only sources we never had: they came up after what we hold of any other.
    const held = [...this.buffers.keys()].map((source) => this.floorOf(source, subscription)).filter(Boolean);
    this.askSince(subscription, held.length ? newestOf(held) : this.startOf(subscription));
  }

  // Subscribe again, asking for every record stored after `since`. Catching up lasts until the
  // last answer; a retry or a reconnect asks from the oldest ids asked for meanwhile.
  askSince(subscription, since) {
    if (!this.catchingUp.size) {
      this.timers.clearTimeout(this.lingerTimer);
      this.heldAtAsk = this.held();
    }
    const asked = this.catchingUp.get(subscription);
    const from = asked ? oldest([asked.since, since]) : since;
    this.timers.clearTimeout(this.retries.get(subscription)?.timer);
    this.catchingUp.set(subscription, { since: from, asks: (asked?.asks ?? 0) + 1 });
    this.emit("catching_up", { sources: [...this.catchingUp.keys()] });
    this.send({ type: "subscribe", scraperSource: subscription, since });
  }

  // The database could not give what was missed: ask again, from the same ids, waiting twice
  // as long each time up to 30 s.
  retryResync(subscription) {
    const asked = this.catchingUp.get(subscription);
    if (!asked) return;
    asked.asks -= 1;
    const retry = this.retries.get(subscription);
    this.timers.clearTimeout(retry?.timer);
    const delay = retry?.delay ?? 1000;
    const timer = this.timers.setTimeout(() => {
      const since = this.catchingUp.get(subscription)?.since;
      if (since) this.askSince(subscription, since);
    }, delay);
    this.retries.set(subscription, { delay: Math.min(30000, delay * 2), timer });
  }

  history(message) {
    const subscription = message.scraperSource;
    if (!message.resync) {
      // Only a first subscription's: after a reconnect it would pass as held what was missed
      // meanwhile, which comes as a resync instead.
      if (this.sampling.delete(subscription)) this.deliver(message.metrics, "history", subscription);
      return undefined;
    }
    this.deliver(message.metrics, "resync", subscription);
    const asked = this.catchingUp.get(subscription);
    if (message.more || !asked) return undefined;
    asked.asks -= 1;
    if (message.truncated) this.emit("resync_truncated", { source: subscription });
    if (asked.asks <= 0) this.doneCatchingUp(subscription);
    return undefined;
  }

  // `source` (every subscription when undefined) has all it missed, or will not get it now.
  doneCatchingUp(source) {
    for (const subscription of source === undefined ? [...this.catchingUp.keys()] : [source]) {
      this.catchingUp.delete(subscription);
      this.timers.clearTimeout(this.retries.get(subscription)?.timer);
      this.retries.delete(subscription);
    }
    if (!this.catchingUp.size) {
      this.heldAtAsk.clear();
      this.lingerTimer = this.timers.setTimeout(() => {
        if (!this.catchingUp.size) this.sinceAsk.clear();
      }, LINGER_MS);
    }
    this.emit("catching_up", { sources: [...this.catchingUp.keys()] });
  }

  // Keep the last records per source, once each, and pass on only the new ones. A poll's are
  // passed on but not kept: they are a sample, and what came only by poll may still be missed.
  // So are a first history's records stored after the subscription began: their live copies
  // are still to come.
  deliver(records, origin, subscription) {
    const catching = this.catchingUp.size > 0;
    const fresh = [];
    for (const record of records) {
      const source = channelOf(record);
      const key = recordKey(record);
      if (origin === "resync" && this.heldBefore(source, record, subscription)) continue;
      if (origin === "live" && this.sinceAsk.get(source)?.has(key)) continue; // a resync brought it
      if (catching && (origin === "live" || origin === "resync")) {
        if (!this.sinceAsk.has(source)) this.sinceAsk.set(source, new Set());
        this.sinceAsk.get(source).add(key);
      }
      let seen = this.seen.get(source);
      if (!seen) {
        seen = new Set();
        this.seen.set(source, seen);
        this.buffers.set(source, []);
      }
      if (seen.has(key)) continue;
      const later = origin === "history" && record.id > this.starts.get(subscription)?.[tableOf(record)];
      if (origin !== "poll" && !later) this.keep(source, record);
      fresh.push(record);
    }
    if (fresh.length) this.emit("metrics", { metrics: fresh, origin });
  }

  // Into the source's last records. Past the limit, the one with the lowest id of the table goes
  // (not the first to come): what is not kept is below the source's mark, so counts as held.
  keep(source, record) {
    const buffer = this.buffers.get(source);
    buffer.push(record);
    this.seen.get(source).add(recordKey(record));
    this.arrivedAt.set(record, this.now());
    if (buffer.length <= this.options.recentLimit) return;
    const table = tableOf(record);
    let lowest = -1;
    buffer.forEach((held, index) => {
      if (tableOf(held) === table && (lowest < 0 || held.id < buffer[lowest].id)) lowest = index;
    });
    const [gone] = buffer.splice(lowest, 1);
    this.seen.get(source).delete(recordKey(gone));
  }

  // Where a subscription began: the newest stored when it was first answered. What was stored
  // before, the page loaded over HTTP.
  startOf(subscription) {
    return this.starts.get(subscription) ?? this.starts.get(WILDCARD) ?? { page: 0, scheduler: 0 };
  }

  // Where a source's missed records start, per table: after the oldest of its records held that
  // came in the last seconds before its newest, not after the newest. Ids are handed out at
  // insert and seen at commit, so a record missed may have a smaller id than one received;
  // seconds are far more than that jitter. A table none came of: from where the subscription
  // began. Undefined when nothing is held.
  floorOf(source, subscription) {
    const { floor } = this.heldOf(source);
    if (floor.page === undefined && floor.scheduler === undefined) return undefined;
    const start = this.startOf(subscription);
    return { page: floor.page ?? start.page, scheduler: floor.scheduler ?? start.scheduler };
  }

  // What is held of each source: everything below `floor` (per table), and the `keys` above it.
  held() {
    return new Map([...this.buffers.keys()].map((source) => [source, this.heldOf(source)]));
  }

  heldOf(source) {
    const buffer = this.buffers.get(source) ?? [];
    const latest = {};
    for (const record of buffer) {
      const table = tableOf(record);
      latest[table] = Math.max(latest[table] ?? 0, this.arrivedAt.get(record));
    }
    const floor = {};
    for (const record of buffer) {
      const table = tableOf(record);
      const recent = this.arrivedAt.get(record) >= latest[table] - MARK_WINDOW_MS;
      if (recent && !(floor[table] <= record.id)) floor[table] = record.id;
    }
    return { floor, keys: new Set(buffer.map(recordKey)) };
  }

  // A resync brings again what was held when it was asked for, what came (live or resynced)
  // since, and what came with the page's first load.
  heldBefore(source, record, subscription) {
    const key = recordKey(record);
    if (this.seen.get(source)?.has(key) || this.sinceAsk.get(source)?.has(key)) return true;
    if (record.id <= this.starts.get(subscription)?.[tableOf(record)]) return true;
    const asked = this.heldAtAsk.get(source);
    return Boolean(asked && (record.id < asked.floor[tableOf(record)] || asked.keys.has(key)));
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
    for (const name of ["heartbeatTimer", "reconnectTimer", "pollTimer", "lingerTimer"]) this.clearTimer(name);
    for (const { timer } of this.retries.values()) this.timers.clearTimeout(timer);
    this.retries.clear();
  }
}
