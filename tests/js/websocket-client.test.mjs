import assert from "node:assert/strict";
import { test } from "node:test";

import { MetricsWebSocketClient, State, backoffDelay } from "../../static/js/metrics-websocket-client.js";

// A scripted WebSocket and a manual clock, so every transition is deterministic.
class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closed = false;
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code = 1006) {
    this.closed = true;
    this.onclose?.({ code });
  }
  open() {
    this.onopen?.();
  }
  message(data) {
    this.onmessage?.({ data: JSON.stringify(data) });
  }
}

function clock() {
  let now = 0;
  let nextId = 1;
  const timers = new Map();
  return {
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { fn, at: now + ms });
      return id;
    },
    setInterval(fn, ms) {
      const id = nextId++;
      timers.set(id, { fn, at: now + ms, every: ms });
      return id;
    },
    clearTimeout: (id) => timers.delete(id),
    clearInterval: (id) => timers.delete(id),
    advance(ms) {
      const end = now + ms;
      for (;;) {
        const due = [...timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        const [id, timer] = due;
        now = timer.at;
        if (timer.every) timer.at += timer.every;
        else timers.delete(id);
        timer.fn();
      }
      now = end;
    },
  };
}

function makeClient(options = {}) {
  FakeSocket.all = [];
  const timers = clock();
  const polls = [];
  const fetch = async (url) => {
    polls.push(url);
    return { ok: true, json: async () => ({ metrics: [] }) };
  };
  const client = new MetricsWebSocketClient("ws://x/ws/metrics/", { WebSocket: FakeSocket, timers, fetch, random: () => 0.5, ...options });
  const states = [];
  client.on("status", ({ state }) => states.push(state));
  return { client, timers, polls, states, socket: () => FakeSocket.all.at(-1) };
}

const batch = (seq, ids, source = "cnbc") => ({
  type: "metrics_batch", scraperSource: source, seq, count: ids.length, timestamp: 0,
  metrics: ids.map((id) => ({ type: "page_navigation", scraperSource: source, id, recordedAt: id, navigationDurationMs: 1, success: true })),
});

// The server's answer to a subscribe: where its batches start (`seq`), and `newest`.
const subscribed = (source, fields) => ({ type: "subscribed", scraperSource: source, subscriptions: [source], ...fields });
const answer = (subscription, records, more = false) => ({
  type: "history", scraperSource: subscription, resync: true, more, truncated: false, metrics: records,
});

test("backoff is exponential with full jitter and capped", () => {
  assert.equal(backoffDelay(0, { random: () => 0.999 }), 999);
  assert.equal(backoffDelay(3, { random: () => 0.5 }), 4000);
  assert.equal(backoffDelay(20, { random: () => 0.5 }), 15000);
  assert.equal(backoffDelay(5, { random: () => 0 }), 0);
});

test("goes live, subscribes, and keeps the last records once each", () => {
  const { client, socket, states } = makeClient({ recentLimit: 3 });
  const seen = [];
  client.on("metrics", ({ metrics }) => seen.push(...metrics.map((m) => m.id)));
  client.connect();
  socket().open();
  assert.equal(client.state, State.LIVE);
  client.subscribe("cnbc");
  assert.deepEqual(socket().sent, [{ type: "subscribe", scraperSource: "cnbc" }]);
  socket().message(subscribed("cnbc", { seq: {} }));
  socket().message({ type: "history", scraperSource: "cnbc", metrics: batch(1, [1, 2]).metrics });
  socket().message(batch(10, [2, 3, 4]));
  assert.deepEqual(seen, [1, 2, 3, 4]);
  assert.deepEqual(client.recent("cnbc").map((m) => m.id), [2, 3, 4]);
  assert.deepEqual(states, [State.CONNECTING, State.LIVE]);
});

test("a gap in sequence numbers asks for what was missed", () => {
  const { client, socket } = makeClient();
  const errors = [];
  client.on("error", (e) => errors.push(e.code));
  client.connect();
  socket().open();
  client.subscribe("cnbc");
  socket().message(batch(1, [1, 2]));
  socket().message(batch(3, [3]));
  assert.equal(socket().sent.length, 1);
  socket().message(batch(9, [9]));
  assert.deepEqual(errors, ["gap"]);
  // everything after the oldest of the last records held (a missed record may have a smaller id
  // than one received: ids are handed out at insert, seen at commit)
  assert.deepEqual(socket().sent.at(-1), { type: "subscribe", scraperSource: "cnbc", since: { page: 1, scheduler: 0 } });
});

test("reconnects with backoff, polls meanwhile, then returns to live and resubscribes", () => {
  const { client, socket, timers, polls, states } = makeClient();
  client.connect();
  socket().open();
  client.subscribe("cnbc");
  socket().close();
  assert.equal(client.state, State.RECONNECTING);
  assert.equal(polls.length, 1);
  assert.match(polls[0], /source=cnbc/);
  timers.advance(500); // backoffDelay(0) with random 0.5
  assert.equal(FakeSocket.all.length, 2);
  socket().open();
  assert.equal(client.state, State.LIVE);
  assert.deepEqual(socket().sent, [{ type: "subscribe", scraperSource: "cnbc" }]); // nothing held yet: the newest 100
  timers.advance(50000);
  assert.equal(polls.length, 1, "no polling while live");
  assert.deepEqual(states, [State.CONNECTING, State.LIVE, State.RECONNECTING, State.LIVE]);
});

test("after the attempts run out it keeps polling and retries slowly", () => {
  const { client, socket, timers, polls } = makeClient({ maxReconnectAttempts: 2, slowRetryMs: 60000, pollIntervalMs: 30000 });
  client.connect();
  socket().open();
  for (let i = 0; i < 3; i++) {
    socket().close();
    timers.advance(30000);
  }
  assert.equal(client.state, State.POLLING);
  const before = FakeSocket.all.length; // 30 s of the 60 s slow retry have passed
  timers.advance(29000);
  assert.equal(FakeSocket.all.length, before, "waits the slow retry");
  timers.advance(2000);
  assert.equal(FakeSocket.all.length, before + 1);
  assert.ok(polls.length >= 3);
});

test("silence longer than the heartbeat timeout closes and reconnects", () => {
  const { client, socket, timers } = makeClient({ heartbeatTimeoutMs: 60000 });
  client.connect();
  socket().open();
  timers.advance(59000);
  socket().message({ type: "heartbeat", timestamp: 1 });
  timers.advance(59000);
  assert.equal(client.state, State.LIVE);
  timers.advance(2000);
  assert.equal(client.state, State.RECONNECTING);
});

test("disconnect() stops everything", () => {
  const { client, socket, timers } = makeClient();
  client.connect();
  socket().open();
  client.disconnect();
  timers.advance(600000);
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(client.state, State.CLOSED);
});

test("a socket closed because its credentials ended is not reopened", () => {
  const { client, socket, timers, polls } = makeClient();
  let ended = 0;
  client.on("credentials_ended", () => (ended += 1));
  client.connect();
  socket().open();
  client.subscribe("cnbc");
  socket().close(4401);
  assert.equal(client.state, State.CLOSED);
  assert.equal(ended, 1);
  timers.advance(120000);
  assert.equal(FakeSocket.all.length, 1, "no reconnect with credentials that are refused");
  assert.equal(polls.length, 0, "no polling either");
});

test("after a gap it asks for everything after the last records held, and catches up page by page", () => {
  const { client, socket } = makeClient();
  const catching = [];
  client.on("catching_up", ({ sources }) => catching.push(sources.length > 0));
  const got = [];
  client.on("metrics", ({ metrics, origin }) => got.push([origin, metrics.map((m) => m.id)]));
  client.connect();
  socket().open();
  client.subscribe("cnbc");
  socket().message(batch(10, [1, 2]));
  socket().message(batch(20, [9])); // 12 expected: 3..8 were lost
  assert.deepEqual(socket().sent.at(-1), { type: "subscribe", scraperSource: "cnbc", since: { page: 1, scheduler: 0 } });
  const missed = (ids, more) => ({ ...batch(0, ids), type: "history", resync: true, more, truncated: false });
  socket().message(missed([], true)); // nothing new in this page: still catching up
  assert.equal(client.catchingUp.size, 1);
  socket().message(missed([10, 11], false));
  assert.deepEqual(catching, [true, false]);
  assert.deepEqual(got.at(-1), ["resync", [10, 11]]);
});

test("a reconnect subscribes again, and asks for what was missed where the server's numbers moved on", () => {
  const { client, socket, timers } = makeClient();
  client.connect();
  socket().open();
  client.subscribe("*");
  socket().message(batch(1, [5, 7], "cnbc"));
  socket().message(batch(1, [6], "webull"));
  socket().message(batch(50, [8], "marketbeat"));
  socket().close();
  timers.advance(500);
  socket().open();
  assert.deepEqual(socket().sent, [{ type: "subscribe", scraperSource: "*" }]);
  // cnbc and webull moved on while we were away, marketbeat did not: one resync for "*", from
  // the oldest of what is held of the sources that moved on
  const seq = { cnbc: 9, webull: 5, marketbeat: 51 };
  socket().message(subscribed("*", { seq }));
  assert.deepEqual(socket().sent.at(-1), { type: "subscribe", scraperSource: "*", since: { page: 5, scheduler: 0 } });
  assert.deepEqual([...client.catchingUp.keys()], ["*"]);
  socket().message(batch(9, [20], "cnbc")); // where the server said: no gap
  assert.equal(socket().sent.length, 2);
});

test("a subscription that starts where the client expected asks for nothing", () => {
  const { client, socket, timers } = makeClient();
  client.connect();
  socket().open();
  client.subscribe("cnbc");
  socket().message(batch(1, [5, 7]));
  socket().close();
  timers.advance(500);
  socket().open();
  socket().message(subscribed("cnbc", { seq: { cnbc: 3 } }));
  assert.deepEqual(socket().sent, [{ type: "subscribe", scraperSource: "cnbc" }]);
  assert.equal(client.catchingUp.size, 0);
});

test("a resync starts where the subscription started when nothing came since", () => {
  const { client, socket, timers } = makeClient();
  client.connect();
  socket().open();
  client.subscribe("*");
  socket().message(subscribed("*", { newest: { page: 40, scheduler: 9 }, seq: {} }));
  socket().message(batch(1, [41, 43], "cnbc"));
  socket().close();
  timers.advance(500);
  socket().open();
  socket().message(subscribed("*", { seq: { cnbc: 10 } }));
  // from the page records held, and for scheduler runs (none came) where the subscription began
  assert.deepEqual(socket().sent.at(-1), { type: "subscribe", scraperSource: "*", since: { page: 41, scheduler: 9 } });
});

test("when the database cannot give what was missed, it asks again later from the same ids", () => {
  const { client, socket, timers } = makeClient();
  client.connect();
  socket().open();
  client.subscribe("cnbc");
  socket().message(batch(10, [1, 2]));
  socket().message(batch(20, [9]));
  const asked = { type: "subscribe", scraperSource: "cnbc", since: { page: 1, scheduler: 0 } };
  assert.deepEqual(socket().sent.at(-1), asked);
  const unavailable = { type: "error", code: "history_unavailable", scraperSource: "cnbc", resync: true, message: "later" };
  socket().message(unavailable);
  assert.equal(client.catchingUp.size, 1, "still catching up");
  socket().message(batch(21, [30])); // live records come meanwhile; they do not move the ids
  timers.advance(1000);
  assert.deepEqual(socket().sent.at(-1), asked);
  assert.equal(socket().sent.length, 3);
  socket().message(unavailable);
  timers.advance(1999);
  assert.equal(socket().sent.length, 3, "twice as long the second time");
  timers.advance(1);
  assert.deepEqual(socket().sent.at(-1), asked);
});

test("a refusal while catching up ends the catching up", () => {
  const { client, socket } = makeClient();
  client.connect();
  socket().open();
  client.subscribe("cnbc");
  socket().message(batch(10, [1, 2]));
  socket().message(batch(20, [9]));
  assert.equal(client.catchingUp.size, 1);
  socket().message({ type: "error", code: "forbidden", message: "not yours" });
  assert.equal(client.catchingUp.size, 0);
});

test("a gap in a source that came through '*' is resynced through '*', not a new subscription", () => {
  const { client, socket } = makeClient();
  client.connect();
  socket().open();
  client.subscribe("*");
  socket().message(subscribed("*", { seq: {}, newest: { page: 0, scheduler: 0 } }));
  socket().message(batch(1, [1, 2], "cnbc"));
  socket().message(batch(1, [4], "webull"));
  socket().message(batch(9, [9], "cnbc"));
  assert.deepEqual(socket().sent.at(-1), { type: "subscribe", scraperSource: "*", since: { page: 1, scheduler: 0 } });
  socket().message(batch(7, [10], "webull")); // another gap while the first is being answered
  // asked with its own ids; a retry would ask from the older of the two
  assert.deepEqual(socket().sent.at(-1), { type: "subscribe", scraperSource: "*", since: { page: 4, scheduler: 0 } });
  assert.deepEqual(client.catchingUp.get("*").since, { page: 1, scheduler: 0 });
  // the first answer ends; still catching up until the second has come too
  const answer = (ids, source) => ({ type: "history", scraperSource: "*", resync: true, more: false, truncated: false, metrics: batch(0, ids, source).metrics });
  socket().message(answer([3, 9], "cnbc"));
  assert.deepEqual([...client.catchingUp.keys()], ["*"]);
  socket().message(batch(8, [11], "webull")); // live while catching up: not yet held
  socket().message(answer([5, 6, 10, 11], "webull"));
  assert.equal(client.catchingUp.size, 0);
  assert.deepEqual(client.recent("webull").map((m) => m.id), [4, 10, 11, 5, 6]); // each once
});

test("after a reconnect, a source that came up meanwhile was missed too", () => {
  const { client, socket, timers } = makeClient();
  client.connect();
  socket().open();
  client.subscribe("*");
  socket().message(subscribed("*", { seq: {}, newest: { page: 3, scheduler: 1 } }));
  socket().message(batch(1, [5], "cnbc"));
  socket().close();
  timers.advance(500);
  socket().open();
  socket().message(subscribed("*", { seq: { cnbc: 2, robinhood: 40 } }));
  // robinhood, never held, came up after what we hold of the others; scheduler runs: none held
  assert.deepEqual(socket().sent.at(-1), { type: "subscribe", scraperSource: "*", since: { page: 5, scheduler: 1 } });
});

test("a source's mark reaches back seconds, not to its oldest record kept", () => {
  let now = 0;
  const { client, socket } = makeClient({ now: () => now });
  client.connect();
  socket().open();
  client.subscribe("*");
  socket().message(subscribed("*", { seq: {}, newest: { page: 0, scheduler: 0 } }));
  socket().message(batch(1, [1, 2], "quiet"));
  now = 60_000; // a minute later
  socket().message(batch(3, [90], "quiet"));
  socket().message(batch(9, [95], "quiet")); // 4..8 missed
  assert.deepEqual(socket().sent.at(-1), { type: "subscribe", scraperSource: "*", since: { page: 90, scheduler: 0 } });
});

test("past the limit the lowest id goes, so what is not kept is below the mark", () => {
  const { client, socket } = makeClient({ recentLimit: 3 });
  const got = [];
  client.on("metrics", ({ metrics, origin }) => origin !== "history" && got.push(...metrics.map((m) => m.id)));
  client.connect();
  socket().open();
  client.subscribe("*");
  socket().message(subscribed("*", { seq: {}, newest: { page: 0, scheduler: 0 } }));
  socket().message(batch(1, [12, 10, 11, 13], "cnbc")); // arrival order is not id order
  assert.deepEqual(client.recent("cnbc").map((m) => m.id), [12, 11, 13]);
  socket().message(batch(9, [20], "cnbc")); // gap: from 11
  socket().message(answer("*", batch(0, [12, 13, 14, 20], "cnbc").metrics));
  assert.deepEqual(got, [12, 10, 11, 13, 20, 14]); // each once
});

test("a live copy of what a resync brought is not shown again", () => {
  const { client, socket, timers } = makeClient({ recentLimit: 2 });
  const got = [];
  client.on("metrics", ({ metrics }) => got.push(...metrics.map((m) => m.id)));
  client.connect();
  socket().open();
  client.subscribe("cnbc");
  socket().message(batch(1, [1]));
  socket().message(batch(5, [5])); // 2..4 missed
  socket().message(answer("cnbc", batch(0, [2, 3, 4, 6, 7, 8]).metrics)); // 6..8 stored since
  socket().message(batch(6, [6, 7, 8])); // their live copies, late
  timers.advance(5000);
  assert.deepEqual(got, [1, 5, 2, 3, 4, 6, 7, 8]);
  assert.equal(client.sinceAsk.size, 0, "forgotten a few seconds after catching up");
});

test("after a reconnect the plain history is not taken as held: what was missed comes as a resync", () => {
  const { client, socket, timers } = makeClient();
  const got = [];
  client.on("metrics", ({ metrics, origin }) => got.push([origin, metrics.map((m) => m.id)]));
  client.connect();
  socket().open();
  client.subscribe("cnbc");
  const plain = (ids) => ({ type: "history", scraperSource: "cnbc", metrics: batch(0, ids).metrics });
  socket().message(subscribed("cnbc", { seq: {} }));
  socket().message(plain([1]));
  socket().message(batch(1, [2]));
  socket().close(); // 3..6 are stored meanwhile, and the restarted server has not seen cnbc yet
  timers.advance(500);
  socket().open();
  socket().message(subscribed("cnbc", { seq: {} }));
  socket().message(plain([1, 2, 3, 4, 5, 6]));
  socket().message(batch(7, [7])); // the gap shows with the first batch
  assert.deepEqual(socket().sent.at(-1), { type: "subscribe", scraperSource: "cnbc", since: { page: 1, scheduler: 0 } });
  socket().message({ ...plain([2, 3, 4, 5, 6, 7]), resync: true, more: false, truncated: false });
  assert.deepEqual(got, [["history", [1]], ["live", [2]], ["live", [7]], ["resync", [3, 4, 5, 6]]]);
});

test("a resync of '*' from an older id passes on only what is new", () => {
  const { client, socket } = makeClient();
  const got = [];
  client.on("metrics", ({ metrics, origin }) => got.push([origin, metrics.map((m) => m.id)]));
  client.connect();
  socket().open();
  client.subscribe("*");
  socket().message(batch(1, [1], "cnbc"));
  socket().message(batch(1, [2, 3, 4], "webull"));
  socket().message(batch(5, [9], "cnbc")); // cnbc missed 2 numbers: "*" since 1
  const records = [...batch(0, [5, 6], "cnbc").metrics, ...batch(0, [2, 3, 4, 7], "webull").metrics];
  socket().message({ type: "history", scraperSource: "*", resync: true, more: false, truncated: false, metrics: records });
  assert.deepEqual(got.at(-1), ["resync", [5, 6, 7]]); // webull's 2..4 were held already
});

test("the page's first subscribe, sent before the socket opened, is not a reconnect", () => {
  const { client, socket } = makeClient();
  const got = [];
  client.on("metrics", ({ metrics, origin }) => got.push([origin, metrics.map((m) => m.id)]));
  client.subscribe("*");
  client.connect();
  socket().open();
  assert.deepEqual(socket().sent, [{ type: "subscribe", scraperSource: "*" }]);
  socket().message(subscribed("*", { seq: { cnbc: 7, webull: 3 } }));
  socket().message({ type: "history", scraperSource: "*", metrics: batch(0, [1, 2]).metrics });
  assert.equal(socket().sent.length, 1, "nothing was missed");
  assert.deepEqual(got, [["history", [1, 2]]]);
});

test("records missed during a long catch-up come once, however many came live meanwhile", () => {
  const { client, socket } = makeClient({ recentLimit: 3 });
  const got = [];
  client.on("metrics", ({ metrics }) => got.push(...metrics.map((m) => m.id)));
  client.connect();
  socket().open();
  client.subscribe("cnbc");
  socket().message(batch(1, [1]));
  socket().message(batch(5, [5])); // 2..4 missed
  socket().message(batch(6, [6, 7, 8, 9])); // more live records than the client keeps
  const page = (ids, more) => ({ type: "history", scraperSource: "cnbc", resync: true, more, truncated: false, metrics: batch(0, ids).metrics });
  socket().message(page([2, 3, 4], true));
  socket().message(page([5, 6, 7, 8, 9], false));
  assert.deepEqual(got.sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test("polled records are shown but not taken as held", () => {
  const { client } = makeClient();
  const got = [];
  client.on("metrics", ({ metrics, origin }) => got.push([origin, metrics.map((m) => m.id)]));
  client.deliver(batch(0, [4, 5]).metrics, "poll");
  assert.deepEqual(client.recent("cnbc"), []);
  client.deliver(batch(0, [4, 5]).metrics, "resync");
  assert.deepEqual(got, [["poll", [4, 5]], ["resync", [4, 5]]]);
});

test("a record missed with a smaller id than one received still comes back", () => {
  const { client, socket } = makeClient();
  const got = [];
  client.on("metrics", ({ metrics, origin }) => got.push([origin, metrics.map((m) => m.id)]));
  client.connect();
  socket().open();
  client.subscribe("*");
  socket().message(batch(1, [10, 12], "cnbc"));
  socket().message(batch(1, [20, 21], "webull"));
  // cnbc's 11 was stored before 12 but became visible after it, and its batch was lost
  socket().message(batch(4, [13], "cnbc"));
  assert.deepEqual(socket().sent.at(-1), { type: "subscribe", scraperSource: "*", since: { page: 10, scheduler: 0 } });
  const answer = [...batch(0, [11, 12, 13], "cnbc").metrics, ...batch(0, [20, 21], "webull").metrics];
  socket().message({ type: "history", scraperSource: "*", resync: true, more: false, truncated: false, metrics: answer });
  assert.deepEqual(got.at(-1), ["resync", [11]]); // once; what was held is not shown again
});


test("an answer lost with its socket is asked for again on the next one", () => {
  const { client, socket, timers } = makeClient();
  const got = [];
  client.on("metrics", ({ metrics }) => got.push(...metrics.map((m) => m.id)));
  client.connect();
  socket().open();
  client.subscribe("cnbc");
  socket().message(batch(1, [1]));
  socket().message(batch(5, [5])); // 2..4 missed: asked for
  socket().close(); // before the answer came
  timers.advance(500);
  socket().open();
  const since = { page: 1, scheduler: 0 };
  assert.deepEqual(socket().sent, [{ type: "subscribe", scraperSource: "cnbc" }, { type: "subscribe", scraperSource: "cnbc", since }]);
  socket().message(subscribed("cnbc", { seq: { cnbc: 6 } }));
  socket().message(answer("cnbc", batch(0, [2, 3, 4, 5]).metrics));
  assert.equal(client.catchingUp.size, 0, "not catching up for ever");
  assert.deepEqual(got, [1, 5, 2, 3, 4]);
});

test("a second answer does not show again what the first brought", () => {
  const { client, socket } = makeClient({ recentLimit: 2 });
  const got = [];
  client.on("metrics", ({ metrics }) => got.push(...metrics.map((m) => m.id)));
  client.connect();
  socket().open();
  client.subscribe("*");
  socket().message(batch(1, [10], "cnbc"));
  socket().message(batch(1, [1], "webull"));
  socket().message(batch(9, [20], "cnbc")); // asks since 10
  socket().message(batch(9, [21], "webull")); // asks again, since 1
  socket().message(answer("*", batch(0, [11, 12, 13, 20], "cnbc").metrics));
  socket().message(answer("*", [...batch(0, [2, 3, 21], "webull").metrics, ...batch(0, [11, 12, 13, 20], "cnbc").metrics]));
  assert.deepEqual(got.sort((a, b) => a - b), [1, 2, 3, 10, 11, 12, 13, 20, 21]);
  assert.equal(client.catchingUp.size, 0);
});

test("a first history's records stored after the subscription began are not held: their live copies show", () => {
  const { client, socket } = makeClient();
  const got = [];
  client.on("metrics", ({ metrics, origin }) => got.push([origin, metrics.map((m) => m.id)]));
  client.connect();
  socket().open();
  client.subscribe("cnbc");
  socket().message(subscribed("cnbc", { seq: {}, newest: { page: 5, scheduler: 0 } }));
  socket().message({ type: "history", scraperSource: "cnbc", metrics: batch(0, [4, 5, 6]).metrics });
  socket().message(batch(1, [6]));
  assert.deepEqual(got, [["history", [4, 5, 6]], ["live", [6]]]);
});

test("a first history that never came is not taken from a reconnect's subscribe", () => {
  const { client, socket, timers } = makeClient();
  const got = [];
  client.on("metrics", ({ metrics, origin }) => got.push([origin, metrics.map((m) => m.id)]));
  client.connect();
  socket().open();
  client.subscribe("cnbc");
  socket().message(subscribed("cnbc", { seq: {}, newest: { page: 1, scheduler: 0 } }));
  socket().message({ type: "error", code: "history_unavailable", scraperSource: "cnbc", message: "later" });
  socket().close();
  timers.advance(500);
  socket().open();
  socket().message(subscribed("cnbc", { seq: { cnbc: 4 } }));
  // cnbc was never had, and the server has seen it since: stored while we were away
  assert.deepEqual(socket().sent.at(-1), { type: "subscribe", scraperSource: "cnbc", since: { page: 1, scheduler: 0 } });
  socket().message({ type: "history", scraperSource: "cnbc", metrics: batch(0, [2, 3]).metrics });
  socket().message(answer("cnbc", batch(0, [2, 3]).metrics));
  assert.deepEqual(got, [["resync", [2, 3]]]);
});

test("where a subscription began is its first answer's, and a resync does not show again what the page loaded", () => {
  const { client, socket, timers } = makeClient();
  const got = [];
  client.on("metrics", ({ metrics, origin }) => origin !== "history" && got.push(...metrics.map((m) => m.id)));
  client.connect();
  socket().open();
  client.subscribe("*");
  socket().message(subscribed("*", { seq: {}, newest: { page: 50, scheduler: 0 } }));
  // the sample is the newest by time, not by id: webull's 8 is older than cnbc's 40
  socket().message({ type: "history", scraperSource: "*", metrics: [...batch(0, [40], "cnbc").metrics, ...batch(0, [8], "webull").metrics] });
  socket().message(batch(1, [51], "cnbc"));
  socket().close();
  timers.advance(500);
  socket().open();
  socket().message(subscribed("*", { seq: { cnbc: 5 }, newest: { page: 90, scheduler: 0 } }));
  assert.deepEqual(client.startOf("*"), { page: 50, scheduler: 0 });
  assert.deepEqual(socket().sent.at(-1), { type: "subscribe", scraperSource: "*", since: { page: 40, scheduler: 0 } });
  // webull's 41 was stored before the page subscribed: it came with the page's load
  socket().message(answer("*", [...batch(0, [41], "webull").metrics, ...batch(0, [51, 52, 53], "cnbc").metrics]));
  assert.deepEqual(got, [51, 52, 53]);
});
