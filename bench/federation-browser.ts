/**
 * `npm run bench:federation:browser` — issue 5's federation benchmark, browser part: WebRTC browser↔browser. Not
 * part of the tests. (The Node↔Node TCP part is bench/federation.ts.)
 *
 * One `hearth start` process serves the app and is the circuit relay; two isolated Chromium contexts each run their
 * own homeserver in their service worker and their libp2p node in the leader tab (src/browser/p2p). They meet
 * through the relay and the link becomes direct WebRTC (checked on the connections' multiaddrs, before and after).
 * Then, on that link, in the same run:
 *
 *   raw         sequential requests from A's network host (`hearthNetwork.host.request`, the transport the service
 *               worker's federation uses) to B on the long-lived `/hearth/federation/1` stream. The request is the
 *               transport's own address lookup, answered by B's transport in B's page without reaching B's homeserver
 *               — the link and the transport alone, like the TCP part's baseline.
 *   raw-hs      the same, but a federation path B's homeserver answers with 404 (one more hop: B's page ↔ its
 *               service worker). Shown for reference.
 *   arrival     alice on A and bob on B in one room (invite, join through the API); bob's page holds a /sync long
 *               poll on its service worker; alice's page sends one message at a time. A sample is from just before
 *               A's PUT /send until B's /sync response holding the event has been parsed. The two ends are two
 *               renderer processes: both read `performance.timeOrigin + performance.now()` (one system clock); the
 *               skew between them is estimated through DevTools and printed. For reference, alice's send latency in
 *               a room of her own (nothing to federate) is measured after it.
 *
 * The ratio arrival ÷ raw (p50; target ≤ 3×) is the verdict; the load average is printed with it (2 shared cores
 * make every number here noisy). Options: --app DIR (a built app; default: build into dist/bench/federation-browser)
 * --rounds N (raw requests, default 500) --warmup N (50) --arrivals N (100) --arrival-warmup N (10).
 * Prints a table, then one JSON line; exits 1 when a part failed or the ratio is missed (as bench/federation.ts).
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Browser, Page } from 'playwright-core';
import { api, launchChromium, openHomeserverPage, registerUser, startApp, useHarness, REPO_ROOT } from '../test/browser/helpers/browser.js';
import type { RunningApp } from '../test/browser/helpers/browser.js';
import { buildHarness } from '../test/browser/helpers/build-harness.js';
import { PING_PATH } from './federation-raw.js';
import type { Stats } from './http-workload.js';
import { stats } from './http-workload.js';

const { values: opts } = parseArgs({
  options: {
    app: { type: 'string' },
    rounds: { type: 'string', default: '500' },
    warmup: { type: 'string', default: '50' },
    arrivals: { type: 'string', default: '100' },
    'arrival-warmup': { type: 'string', default: '10' },
  },
});
const ROUNDS = Number(opts.rounds);
const WARMUP = Number(opts.warmup);
const ARRIVALS = Number(opts.arrivals);
const ARRIVAL_WARMUP = Number(opts['arrival-warmup']);
/** The transport's own request (src/net/libp2p-transport.ts ADDRESS_LOOKUP_PATH): never reaches the homeserver. */
const ADDRESS_LOOKUP_PATH = '/_hearth/p2p/v1/addresses/';
const CS = '/_matrix/client/v3';
const BLOCK = 50;

interface Peer {
  page: Page;
  serverName: string;
  peerId: string;
}

interface LinkView {
  /** Open connections to the other peer: their remote multiaddrs. */
  addrs: string[];
  /** Of those, the ones carrying a federation stream. */
  federation: string[];
  /** Of those, the ones with relay limits (a relayed link). */
  limited: string[];
}

/** Polls `fn` until it returns true (or throws after `ms`). */
async function until(what: string, fn: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function openPeer(browser: Browser, app: RunningApp): Promise<Peer> {
  const context = await browser.newContext();
  const page = await openHomeserverPage(context, app.url);
  const ids = await page.evaluate(async () => {
    const host = await (globalThis as any).hearthNetwork.leading;
    return { serverName: host.serverName as string, peerId: String(host.libp2p.peerId) };
  });
  return { page, ...ids };
}

/** How `from`'s node is connected to `to`. */
function linkTo(from: Peer, to: Peer): Promise<LinkView> {
  return from.page.evaluate((peerId) => {
    const node = (globalThis as any).hearthNetwork.host.libp2p;
    const conns = (node.getConnections() as any[]).filter((c) => c.status === 'open' && String(c.remotePeer) === peerId);
    return {
      addrs: conns.map((c) => String(c.remoteAddr)),
      federation: conns.filter((c) => (c.streams as any[]).some((s) => s.protocol === '/hearth/federation/1')).map((c) => String(c.remoteAddr)),
      limited: conns.filter((c) => c.limits !== undefined).map((c) => String(c.remoteAddr)),
    };
  }, to.peerId);
}

/** A WebRTC link dialled through a relay keeps the relay in its address (…/p2p-circuit/webrtc/…) yet is direct. */
const isWebRtc = (addr: string) => /\/webrtc(\/|$)/.test(addr);

/** Every open connection between the two is WebRTC (no relayed one left), and federation runs on it. */
async function directLink(a: Peer, b: Peer): Promise<boolean> {
  const [ab, ba] = await Promise.all([linkTo(a, b), linkTo(b, a)]);
  const ok = (l: LinkView) => l.addrs.length > 0 && l.addrs.every(isWebRtc) && l.limited.length === 0 && l.federation.length > 0;
  return ok(ab) && ok(ba);
}

/** Sequential federation requests from `from`'s network host to `to`, timed in `from`'s page. */
function roundTrips(from: Peer, to: string, path: string, expectStatus: number, warmup: number, rounds: number): Promise<number[]> {
  return from.page.evaluate(
    async ({ to, path, expectStatus, warmup, rounds }) => {
      const host = (globalThis as any).hearthNetwork.host;
      const req = { method: 'GET', path };
      const samples: number[] = [];
      for (let i = 0; i < warmup + rounds; i++) {
        const t0 = performance.now();
        const res = await host.request(to, req, 20_000);
        const t = performance.now() - t0;
        if (res.status !== expectStatus) throw new Error(`${path}: expected ${expectStatus}, got ${res.status} ${JSON.stringify(res.body)}`);
        if (i >= warmup) samples.push(t);
      }
      return samples;
    },
    { to, path, expectStatus, warmup, rounds },
  );
}

/** Both pages' clock (`timeOrigin + now`); skew of B against A, from the DevTools exchange with the least delay. */
async function clockSkew(a: Page, b: Page, samples = 30): Promise<{ offsetMs: number; uncertaintyMs: number }> {
  const now = (p: Page) => p.evaluate(() => performance.timeOrigin + performance.now());
  let best = { offsetMs: 0, uncertaintyMs: Infinity };
  for (let i = 0; i < samples; i++) {
    const a1 = await now(a);
    const bt = await now(b);
    const a2 = await now(a);
    const half = (a2 - a1) / 2;
    if (half < best.uncertaintyMs) best = { offsetMs: bt - (a1 + half), uncertaintyMs: half };
  }
  return best;
}

/** Starts bob's /sync follower in B's page: one long poll at a time; records when each message body arrived. */
async function startFollower(b: Page, token: string, roomId: string): Promise<void> {
  // tsx compiles this file with esbuild's keepNames: the functions below call its `__name` helper, absent in the page.
  await b.evaluate('globalThis.__name ??= (f) => f');
  await b.evaluate(
    async ({ token, roomId, CS }) => {
      const arrived = new Map<string, number>();
      const waiters = new Map<string, (t: number) => void>();
      const state = { since: '', stopped: false, error: undefined as string | undefined };
      const poll = async (timeout: number) => {
        const q = new URLSearchParams({ timeout: String(timeout), set_presence: 'offline' });
        if (state.since) q.set('since', state.since);
        const res = await fetch(`${CS}/sync?${q}`, { headers: { authorization: `Bearer ${token}` } });
        const body = await res.json();
        const t = performance.timeOrigin + performance.now();
        if (res.status !== 200) throw new Error(`sync: ${res.status} ${JSON.stringify(body)}`);
        state.since = body.next_batch;
        for (const e of body.rooms?.join?.[roomId]?.timeline?.events ?? []) {
          const key = e.content?.body;
          if (typeof key !== 'string') continue;
          const w = waiters.get(key);
          if (w) {
            waiters.delete(key);
            w(t);
          } else arrived.set(key, t);
        }
      };
      await poll(0);
      void (async () => {
        try {
          while (!state.stopped) await poll(30_000);
        } catch (e) {
          state.error = String(e);
        }
      })();
      (globalThis as any).fedBench = {
        state,
        arrival(body: string, ms = 30_000): Promise<number> {
          const t = arrived.get(body);
          if (t !== undefined) return Promise.resolve(t);
          return new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`message ${body} did not reach B within ${ms} ms (${state.error ?? 'no sync error'})`)), ms);
            waiters.set(body, (at) => (clearTimeout(timer), resolve(at)));
          });
        },
      };
    },
    { token, roomId, CS },
  );
}

/** Alice's PUT /send in A's page: when it started and when A answered (A's clock). */
function send(a: Page, token: string, roomId: string, body: string): Promise<{ t0: number; t1: number }> {
  return a.evaluate(
    async ({ token, roomId, body, CS }) => {
      const url = `${CS}/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${body}`;
      const t0 = performance.timeOrigin + performance.now();
      const res = await fetch(url, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ msgtype: 'm.text', body }),
      });
      const text = await res.text();
      const t1 = performance.timeOrigin + performance.now();
      if (res.status !== 200) throw new Error(`send: ${res.status} ${text}`);
      return { t0, t1 };
    },
    { token, roomId, body, CS },
  );
}

async function main(): Promise<void> {
  const base = join(REPO_ROOT, 'dist/bench/federation-browser');
  const appDir = opts.app ? resolve(opts.app) : join(base, 'app');
  if (!opts.app) {
    const b = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/build.mjs'), '--out', appDir, '--quiet'], {
      stdio: 'inherit',
      env: { ...process.env, NODE_ENV: 'production' },
    });
    if (b.status !== 0) throw new Error('build failed');
  }
  const harness = join(base, 'harness.js');
  await buildHarness(harness);
  useHarness(harness);

  const rows: Array<{ name: string; value: string; verdict?: string }> = [];
  const json: Record<string, unknown> = { rounds: ROUNDS, arrivals: ARRIVALS };
  let failed = false;
  const ms = (x: number) => `${x.toFixed(2)} ms`;
  const pct = (s: Stats) => `p50 ${ms(s.p50)}, p95 ${ms(s.p95)} (n=${s.n})`;

  const app = await startApp({ appDir });
  const browser = await launchChromium();
  try {
    const [a, b] = await Promise.all([openPeer(browser, app), openPeer(browser, app)]);
    // Both hold a reservation on the relay; then A reaches B (WebRTC signalled through the relay).
    for (const p of [a, b]) {
      await until('the relay connection', () =>
        p.page.evaluate((relay) => ((globalThis as any).hearthNetwork.host.peers() as any[]).some((x) => x.serverName === relay), app.serverName),
      );
    }
    await until('B’s relay reservation', () =>
      b.page.evaluate(() => ((globalThis as any).hearthNetwork.host.libp2p.getMultiaddrs() as unknown[]).map(String).some((m) => m.includes('/p2p-circuit'))),
    );
    const first = await roundTrips(a, b.serverName, '/_matrix/key/v2/server', 200, 0, 1);
    json.first_request_ms = first[0];
    await until('a direct WebRTC link carrying federation', async () => {
      // A request (re)opens the federation stream if a relayed link it ran on was replaced.
      await roundTrips(a, b.serverName, '/_matrix/key/v2/server', 200, 0, 1);
      return directLink(a, b);
    });
    const linkBefore = await linkTo(a, b);
    json.link = linkBefore.addrs;
    rows.push({ name: 'link A → B', value: linkBefore.addrs.join(', ') });

    // ---- (a) raw round trips on the link
    // Interleaved in blocks, so drift in the machine's load falls on both alike.
    const lookup = ADDRESS_LOOKUP_PATH + encodeURIComponent(a.serverName);
    await roundTrips(a, b.serverName, lookup, 200, WARMUP, 0);
    await roundTrips(a, b.serverName, PING_PATH, 404, WARMUP, 0);
    const rawSamples: number[] = [];
    const rawHsSamples: number[] = [];
    for (let done = 0; done < ROUNDS; done += BLOCK) {
      const n = Math.min(BLOCK, ROUNDS - done);
      rawSamples.push(...(await roundTrips(a, b.serverName, lookup, 200, 0, n)));
      rawHsSamples.push(...(await roundTrips(a, b.serverName, PING_PATH, 404, 0, n)));
    }
    const raw = stats(rawSamples);
    rows.push({ name: 'WebRTC: raw request round trip (B’s transport answers)', value: pct(raw) });
    json.raw_webrtc = { p50_ms: raw.p50, p95_ms: raw.p95, p99_ms: raw.p99 };
    const rawHs = stats(rawHsSamples);
    rows.push({ name: '  to B’s homeserver (+ page ↔ worker hop)', value: pct(rawHs) });
    json.raw_webrtc_homeserver = { p50_ms: rawHs.p50, p95_ms: rawHs.p95, p99_ms: rawHs.p99 };

    // ---- (b) send on A → /sync on B
    const [alice, bob] = await Promise.all([registerUser(a.page, 'alice'), registerUser(b.page, 'bob')]);
    const created = await api(a.page, 'POST', `${CS}/createRoom`, { preset: 'private_chat', invite: [bob.userId] }, alice.token);
    if (created.status !== 200) throw new Error(`createRoom: ${created.status} ${JSON.stringify(created.body)}`);
    const roomId = created.body.room_id as string;
    await until('the invite on B', async () => Object.keys((await api(b.page, 'GET', `${CS}/sync?timeout=0`, undefined, bob.token)).body.rooms?.invite ?? {}).includes(roomId));
    const joined = await api(b.page, 'POST', `${CS}/join/${encodeURIComponent(roomId)}`, {}, bob.token);
    if (joined.status !== 200) throw new Error(`join: ${joined.status} ${JSON.stringify(joined.body)}`);
    await startFollower(b.page, bob.token, roomId);

    const skewBefore = await clockSkew(a.page, b.page);
    const arrival: number[] = [];
    const answered: number[] = [];
    const afterAnswer: number[] = [];
    for (let i = 0; i < ARRIVAL_WARMUP + ARRIVALS; i++) {
      const body = `bench${i}`;
      const { t0, t1 } = await send(a.page, alice.token, roomId, body);
      const t2 = await b.page.evaluate((body) => (globalThis as any).fedBench.arrival(body) as Promise<number>, body);
      if (i >= ARRIVAL_WARMUP) {
        arrival.push(t2 - t0);
        answered.push(t1 - t0);
        afterAnswer.push(t2 - t1);
      }
    }
    const skewAfter = await clockSkew(a.page, b.page);
    // For reference: alice's send in a room of her own (no remote server to deliver to), same page, same run.
    const solo = await api(a.page, 'POST', `${CS}/createRoom`, { preset: 'private_chat' }, alice.token);
    if (solo.status !== 200) throw new Error(`createRoom: ${solo.status}`);
    const local: number[] = [];
    for (let i = 0; i < ARRIVAL_WARMUP + ARRIVALS; i++) {
      const { t0, t1 } = await send(a.page, alice.token, solo.body.room_id as string, `solo${i}`);
      if (i >= ARRIVAL_WARMUP) local.push(t1 - t0);
    }
    const loc = stats(local);
    await b.page.evaluate(() => ((globalThis as any).fedBench.state.stopped = true));
    const arr = stats(arrival);
    const ans = stats(answered);
    rows.push({ name: 'WebRTC: send on A → /sync on B', value: pct(arr) });
    rows.push({ name: '  of which PUT /send on A answered', value: pct(ans) });
    rows.push({ name: '  then A’s answer → /sync on B', value: pct(stats(afterAnswer)) });
    rows.push({ name: '  (PUT /send on A in a room without B)', value: pct(loc) });
    const skew = (s: { offsetMs: number; uncertaintyMs: number }) => `${s.offsetMs.toFixed(2)} ± ${s.uncertaintyMs.toFixed(2)} ms`;
    rows.push({ name: '  clock of B − clock of A (before / after)', value: `${skew(skewBefore)} / ${skew(skewAfter)}` });
    const ratio50 = arr.p50 / raw.p50;
    const ratio95 = arr.p95 / raw.p95;
    const pass = ratio50 <= 3;
    if (!pass) failed = true;
    rows.push({ name: 'ratio to the raw round trip (target p50 ≤ 3×)', value: `p50 ${ratio50.toFixed(1)}×, p95 ${ratio95.toFixed(1)}×`, verdict: pass ? 'PASS' : 'FAIL' });
    rows.push({ name: 'ratio to the round trip to B’s homeserver', value: `p50 ${(arr.p50 / rawHs.p50).toFixed(1)}×, p95 ${(arr.p95 / rawHs.p95).toFixed(1)}×` });
    json.sync_webrtc = {
      p50_ms: arr.p50,
      p95_ms: arr.p95,
      p99_ms: arr.p99,
      send_p50_ms: ans.p50,
      send_local_room_p50_ms: loc.p50,
      after_answer_p50_ms: stats(afterAnswer).p50,
      ratio_p50: ratio50,
      ratio_p95: ratio95,
      ratio_homeserver_p50: arr.p50 / rawHs.p50,
      clock_skew_ms: [skewBefore.offsetMs, skewAfter.offsetMs],
      clock_skew_uncertainty_ms: [skewBefore.uncertaintyMs, skewAfter.uncertaintyMs],
    };

    // The measured link stayed the direct one throughout.
    if (!(await directLink(a, b))) {
      failed = true;
      rows.push({ name: 'link at the end', value: `not direct WebRTC any more: ${(await linkTo(a, b)).addrs.join(', ')}`, verdict: 'FAIL' });
    }
  } catch (e) {
    failed = true;
    rows.push({ name: 'ERROR', value: (e as Error).message.split('\n')[0] });
    console.error(e);
  } finally {
    await browser.close().catch(() => undefined);
    await app.stop();
  }

  const load = loadavg().map((x) => x.toFixed(2)).join(' ');
  console.log(`\nWebRTC browser↔browser federation (headless Chromium, two contexts, one relay)`);
  console.log(`machine: ${cpus().length} CPUs, load average ${load} (1/5/15 min) at the end of the run\n`);
  const w0 = Math.max(6, ...rows.map((r) => r.name.length));
  const w1 = Math.max(6, ...rows.map((r) => r.value.length));
  console.log(`${'metric'.padEnd(w0)} | ${'result'.padEnd(w1)}`);
  console.log(`${'-'.repeat(w0)}-+-${'-'.repeat(w1)}`);
  for (const r of rows) console.log(`${r.name.padEnd(w0)} | ${r.value.padEnd(w1)}${r.verdict ? ` ${r.verdict}` : ''}`);
  console.log('');
  json.load_average = loadavg();
  console.log(JSON.stringify(json));
  process.exit(failed ? 1 : 0);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
