/**
 * `npm run bench:federation:scale` — issue 5's benchmarks at scale (not part of the tests). Every homeserver runs
 * in this process on its own real libp2p node (TCP on 127.0.0.1, Noise, Yamux, gossipsub: src/node/p2p.ts), so
 * the numbers include the whole wire path but no HTTP: clients call `hs.fetch` directly.
 *
 *   join  Remote join of a big room: homeserver A holds a public room with 100 members (its own users) and 1,000
 *         messages, built beforehand and not measured. A user of homeserver B (another libp2p node) joins it via A
 *         (make_join → send_join, then B checks the returned state and auth chain and stores the room).
 *         Measured: POST /join until it returns ("joined"), and until a /sync that B's user was already waiting on
 *         returns the room ("in /sync"). Target ≤ 2 s. Storage: LevelDB in temp dirs (the Node peer's), or
 *         `--storage memory`. Repeated `--join-runs` times, each with a fresh B (each run adds one member to A's
 *         room). `--profile` CPU-profiles the last join (the first one also pays for the
 *         process's lazy compilation and libp2p's first streams) and prints where the time went.
 *   mesh  20 homeservers, all connected to each other, one user each, all joined to one room. A message is sent
 *         from each peer in turn; every other peer's user holds a /sync long poll. Measured per message: from
 *         before the PUT /send until a waiting /sync on the receiving peer returned the event, and the time until
 *         99 % of the other peers had it (with 19 receivers that is all of them). Target ≤ 500 ms. Memory storage.
 *
 * Options: --only join,mesh   --members N (100)   --events N (1000)   --storage level|memory (join; level)
 *          --join-runs N (5)   --peers N (20)   --messages N (30)   --warmup N (5)
 *          --profile (CPU profiles of the last join and of the mesh messages, summarised; files in bench/profiles/)
 *          --verbose (print the homeservers' warnings)
 * Prints a table, then one JSON line (with the machine's load average: the numbers depend on what else runs).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { multiaddr } from '@multiformats/multiaddr';
import { createHomeserver, loadOrCreateIdentity } from '../src/homeserver.js';
import type { Homeserver } from '../src/homeserver.js';
import type { Network } from '../src/net/network.js';
import { createNodeNetwork } from '../src/node/p2p.js';
import type { Logger } from '../src/services/context.js';
import type { Kv } from '../src/storage/kv.js';
import { openLevelKv } from '../src/storage/level-kv.js';
import { openMemoryKv } from '../src/storage/memory-kv.js';
import { HOMESERVER_STORES } from '../src/storage/schema.js';
import type { Stats } from './http-workload.js';
import { stats } from './http-workload.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');

const { values: opts } = parseArgs({
  options: {
    only: { type: 'string' },
    members: { type: 'string', default: '100' },
    events: { type: 'string', default: '1000' },
    storage: { type: 'string', default: 'level' },
    'join-runs': { type: 'string', default: '5' },
    profile: { type: 'boolean', default: false },
    peers: { type: 'string', default: '20' },
    messages: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '5' },
    verbose: { type: 'boolean', default: false },
  },
});
const PARTS = ['join', 'mesh'] as const;
type Part = (typeof PARTS)[number];
const only = new Set((opts.only ?? PARTS.join(',')).split(',').map((s) => s.trim()));
for (const p of only) {
  if (!PARTS.includes(p as Part)) {
    console.error(`--only takes ${PARTS.join(', ')}; not '${p}'`);
    process.exit(2);
  }
}
if (opts.storage !== 'level' && opts.storage !== 'memory') {
  console.error(`--storage takes level or memory; not '${opts.storage}'`);
  process.exit(2);
}
const MEMBERS = Number(opts.members);
const EVENTS = Number(opts.events);
const JOIN_RUNS = Number(opts['join-runs']);
const PEERS = Number(opts.peers);
const MESSAGES = Number(opts.messages);
const WARMUP = Number(opts.warmup);
const JOIN_TARGET_MS = 2000;
const MESH_TARGET_MS = 500;

const enc = encodeURIComponent;
const CS = '/_matrix/client/v3';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------------------
// Peers and a minimal in-process client

/** Warnings and errors the homeservers logged (a healthy run has none; `--verbose` prints them). */
let logged = 0;
const benchLogger: Logger = {
  debug() {},
  info() {},
  warn(msg, data) {
    logged++;
    if (opts.verbose) console.error('warn', msg, data);
  },
  error(msg, data) {
    logged++;
    if (opts.verbose) console.error('error', msg, data);
  },
};

interface BenchPeer {
  hs: Homeserver;
  network: Network;
  serverName: string;
  /** /ip4/127.0.0.1/tcp/…/p2p/… */
  tcpAddr: string;
  stop(): Promise<void>;
}

let peerCounter = 0;

/** A homeserver with its own libp2p node (TCP on loopback, no WebSockets, relay or mDNS) and its own storage. */
async function startPeer(storage: 'level' | 'memory'): Promise<BenchPeer> {
  let kv: Kv;
  let dir: string | undefined;
  if (storage === 'level') {
    dir = mkdtempSync(join(tmpdir(), 'hearth-bench-scale-'));
    kv = await openLevelKv({ name: join(dir, 'db'), stores: HOMESERVER_STORES });
  } else {
    kv = await openMemoryKv({ name: `scale-${++peerCounter}`, stores: HOMESERVER_STORES });
  }
  const identity = await loadOrCreateIdentity(kv);
  const network = await createNodeNetwork({
    seed: identity.key.seed,
    kv,
    logger: benchLogger,
    host: '127.0.0.1',
    tcpPort: 0,
    wsPort: false,
    relay: false,
    mdns: false,
  });
  const hs = await createHomeserver({ kv, logger: benchLogger, network: network.transport }, { registration: 'open' });
  network.transport.setInbound(hs.federation);
  await network.start();
  const tcpAddr = network.multiaddrs().find((a) => /\/tcp\/\d+\/p2p\//.test(a));
  if (tcpAddr === undefined) throw new Error(`no TCP address in ${network.multiaddrs().join(', ')}`);
  return {
    hs,
    network,
    serverName: hs.serverName,
    tcpAddr,
    async stop() {
      await hs.stop();
      await network.stop();
      await kv.close();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface User {
  userId: string;
  token: string;
}

class CallError extends Error {
  override name = 'CallError';
}

/** One Client-Server API call to `hs.fetch`; throws unless the answer is 200. */
async function call(hs: Homeserver, method: string, path: string, body?: unknown, token?: string, signal?: AbortSignal): Promise<any> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await hs.fetch(
    new Request(`http://localhost${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal }),
  );
  const text = await res.text();
  const parsed = text === '' ? undefined : JSON.parse(text);
  if (res.status !== 200) throw new CallError(`${method} ${path.split('?')[0]}: ${res.status} ${text.slice(0, 300)}`);
  return parsed;
}

/** Registers without a password (the password hash is deliberately slow and not what is measured). */
async function register(hs: Homeserver, username: string): Promise<User> {
  const r = await call(hs, 'POST', `${CS}/register`, { username, auth: { type: 'm.login.dummy' } });
  return { userId: r.user_id, token: r.access_token };
}

let txn = 0;
async function sendText(hs: Homeserver, user: User, roomId: string, body: string): Promise<string> {
  const r = await call(hs, 'PUT', `${CS}/rooms/${enc(roomId)}/send/m.room.message/s${++txn}`, { msgtype: 'm.text', body }, user.token);
  return r.event_id;
}

function joinPath(roomId: string, via: string): string {
  return `${CS}/join/${enc(roomId)}?via=${enc(via)}`;
}

async function joinedMembers(hs: Homeserver, user: User, roomId: string): Promise<number> {
  const r = await call(hs, 'GET', `${CS}/rooms/${enc(roomId)}/joined_members`, undefined, user.token);
  return Object.keys(r.joined ?? {}).length;
}

/** `p`, or a rejection with `what` after `ms`. */
async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `fn` over `items` with at most `n` at once. */
async function pool<T>(items: readonly T[], n: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i], i);
      }
    }),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Reporting

const rows: Array<{ name: string; value: string; target?: string; pass?: boolean }> = [];
const json: Record<string, unknown> = {};
let failed = false;

const ms = (x: number) => `${x.toFixed(1)} ms`;
const pct = (s: Stats) => `p50 ${ms(s.p50)}, p95 ${ms(s.p95)}, p99 ${ms(s.p99)} (n=${s.n})`;

async function measure(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    failed = true;
    rows.push({ name, value: `ERROR: ${(e as Error).message.split('\n')[0]}` });
    console.error(e);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// CPU profile of a window, summarised by function (self and inclusive time)

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function frameLabel(f: ProfileNode['callFrame']): string {
  const file = f.url.startsWith('file://') ? relative(ROOT, fileURLToPath(f.url)) : f.url;
  return `${f.functionName || '(anonymous)'} ${file ? `${file}:${f.lineNumber + 1}` : ''}`.trim();
}

/** The top functions by self time and by inclusive time, as shares of the sampled time. */
function summariseProfile(profile: CpuProfile, top = 15): string[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let all = 0;
  profile.samples.forEach((id, i) => {
    // The first delta is the time from Profiler.start to the first sample (the profiler's own start-up).
    if (i === 0) return;
    const dt = profile.timeDeltas[i] ?? 0;
    all += dt;
    const node = byId.get(id)!;
    const label = frameLabel(node.callFrame);
    self.set(label, (self.get(label) ?? 0) + dt);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = frameLabel(byId.get(cur)!.callFrame);
      if (seen.has(l)) continue;
      seen.add(l);
      total.set(l, (total.get(l) ?? 0) + dt);
    }
  });
  const fmt = (m: Map<string, number>, filter: (l: string) => boolean) =>
    [...m]
      .filter(([l]) => filter(l))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([l, t]) => `  ${(t / 1000).toFixed(1).padStart(8)} ms ${((100 * t) / all).toFixed(1).padStart(5)} %  ${l}`);
  return [
    `sampled ${(all / 1000).toFixed(0)} ms`,
    'self time:',
    ...fmt(self, () => true),
    'inclusive time, Hearth functions (src/):',
    ...fmt(total, (l) => l.includes(' src/')),
  ];
}

async function profiled<T>(enabled: boolean, name: string, fn: () => Promise<T>): Promise<{ value: T; summary?: string[]; file?: string }> {
  if (!enabled) return { value: await fn() };
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  let value: T;
  let profile: CpuProfile;
  try {
    value = await fn();
  } finally {
    ({ profile } = (await session.post('Profiler.stop')) as unknown as { profile: CpuProfile });
    session.disconnect();
  }
  const dir = join(ROOT, 'bench', 'profiles');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}-${Date.now()}.cpuprofile`);
  writeFileSync(file, JSON.stringify(profile));
  return { value, summary: summariseProfile(profile), file: relative(ROOT, file) };
}

// ---------------------------------------------------------------------------------------------------------------
// Part 1: remote join of a big room

/** One remote join by a fresh homeserver B's user: times to POST /join returning and to the room in B's /sync. */
async function remoteJoin(a: BenchPeer, roomId: string, storage: 'level' | 'memory', profile: boolean): Promise<{ joined: number; sync: number; membersOnB: number; membersInSync: number; summary?: string[]; file?: string }> {
  const b = await startPeer(storage);
  try {
    const bob = await register(b.hs, 'bob');
    const since = (await call(b.hs, 'GET', `${CS}/sync?timeout=0`, undefined, bob.token)).next_batch as string;
    // B knows A's address (as from its peer book or a bootstrap list): the connection is up before the clock runs.
    await b.network.node.dial(multiaddr(a.tcpAddr));

    let syncAt = 0;
    let membersInSync = 0;
    const abort = new AbortController();
    // A /sync long poll held before the join, as a client would; polled again until the room is in it.
    const synced = (async () => {
      let token = since;
      for (;;) {
        const body = await call(b.hs, 'GET', `${CS}/sync?since=${enc(token)}&timeout=30000`, undefined, bob.token, abort.signal);
        token = body.next_batch;
        const room = body.rooms?.join?.[roomId];
        if (room) {
          syncAt = performance.now();
          const state = [...(room.state?.events ?? []), ...(room.timeline?.events ?? [])];
          membersInSync = state.filter((e: any) => e.type === 'm.room.member' && e.content?.membership === 'join').length;
          return;
        }
      }
    })();
    // Its failure is reported where it is awaited, after the join.
    synced.catch(() => {});
    await sleep(50);

    const { value, summary, file } = await profiled(profile, 'federation-join', async () => {
      const t0 = performance.now();
      await call(b.hs, 'POST', joinPath(roomId, a.serverName), {}, bob.token);
      const joined = performance.now() - t0;
      await withTimeout(synced, 30_000, 'the room did not reach /sync in 30 s');
      return { joined, sync: syncAt - t0 };
    });
    abort.abort();
    const membersOnB = await joinedMembers(b.hs, bob, roomId);
    return { ...value, membersOnB, membersInSync, ...(summary ? { summary, file } : {}) };
  } finally {
    await b.stop();
  }
}

async function benchJoin(): Promise<void> {
  const storage = opts.storage as 'level' | 'memory';
  const a = await startPeer(storage);
  try {
    const setup0 = performance.now();
    const members: User[] = [];
    for (let i = 0; i < MEMBERS; i++) members.push(await register(a.hs, `member${i}`));
    const owner = members[0];
    const roomId = (await call(a.hs, 'POST', `${CS}/createRoom`, { preset: 'public_chat', name: 'Big room' }, owner.token)).room_id as string;
    for (const m of members.slice(1)) await call(a.hs, 'POST', `${CS}/join/${enc(roomId)}`, {}, m.token);
    for (let i = 0; i < EVENTS; i++) await sendText(a.hs, members[i % members.length], roomId, `message ${i}`);
    const setupMs = performance.now() - setup0;

    // Each run is a new server B; each adds one member to A's room (100, 101, … members when it joins).
    const joined: number[] = [];
    const synced: number[] = [];
    for (let run = 0; run < JOIN_RUNS; run++) {
      const r = await remoteJoin(a, roomId, storage, opts.profile && run === JOIN_RUNS - 1);
      joined.push(r.joined);
      synced.push(r.sync);
      const fromA = await joinedMembers(a.hs, owner, roomId);
      if (r.membersOnB !== fromA || r.membersInSync !== fromA || fromA !== MEMBERS + run + 1) {
        failed = true;
        rows.push({ name: `remote join run ${run + 1}: membership check`, value: `ERROR: joined members A ${fromA}, B ${r.membersOnB}, B's /sync ${r.membersInSync}` });
      }
      if (r.summary) {
        console.log(`\nCPU profile of the last join (${r.file}):`);
        for (const l of r.summary) console.log(l);
      }
    }
    const j = stats(joined);
    const s = stats(synced);
    const label = `remote join, ${MEMBERS} members + ${EVENTS} messages (${storage})`;
    rows.push({ name: `${label}: setup (unmeasured)`, value: ms(setupMs) });
    rows.push({ name: `${label}: POST /join returned`, value: pct(j), target: `≤ ${JOIN_TARGET_MS} ms (p50)`, pass: j.p50 <= JOIN_TARGET_MS });
    rows.push({ name: `${label}: room in B's /sync`, value: pct(s), target: `≤ ${JOIN_TARGET_MS} ms (p50)`, pass: s.p50 <= JOIN_TARGET_MS });
    rows.push({ name: `${label}: room in B's /sync, run by run`, value: synced.map((x) => x.toFixed(0)).join(', ') + ' ms' });
    json.join = {
      storage,
      members: MEMBERS,
      events: EVENTS,
      runs: JOIN_RUNS,
      joined_p50_ms: j.p50,
      joined_max_ms: Math.max(...joined),
      sync_p50_ms: s.p50,
      sync_max_ms: Math.max(...synced),
      sync_runs_ms: synced,
      target_ms: JOIN_TARGET_MS,
      pass: s.p50 <= JOIN_TARGET_MS,
      setup_ms: setupMs,
    };
  } finally {
    await a.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Part 2: a 20-peer mesh

async function benchMesh(): Promise<void> {
  const setup0 = performance.now();
  const peers: BenchPeer[] = [];
  try {
    for (let i = 0; i < PEERS; i++) peers.push(await startPeer('memory'));
    // Every peer connected to every other (as the reconnector does for servers sharing a room, given addresses).
    const pairs: Array<[BenchPeer, BenchPeer]> = [];
    for (let i = 0; i < PEERS; i++) for (let j = 0; j < i; j++) pairs.push([peers[i], peers[j]]);
    await pool(pairs, 8, async ([x, y]) => {
      await x.network.node.dial(multiaddr(y.tcpAddr));
    });
    const users: User[] = [];
    for (const p of peers) users.push(await register(p.hs, 'user'));
    const roomId = (await call(peers[0].hs, 'POST', `${CS}/createRoom`, { preset: 'public_chat' }, users[0].token)).room_id as string;
    for (let i = 1; i < PEERS; i++) await call(peers[i].hs, 'POST', joinPath(roomId, peers[0].serverName), {}, users[i].token);
    // Every peer has seen every join.
    const deadline = Date.now() + 60_000;
    for (let i = 0; i < PEERS; i++) {
      while ((await joinedMembers(peers[i].hs, users[i], roomId)) < PEERS) {
        if (Date.now() > deadline) throw new Error(`peer ${i} does not see ${PEERS} members`);
        await sleep(50);
      }
    }
    // Gossipsub builds its mesh on heartbeats (1 s).
    await sleep(2500);
    const setupMs = performance.now() - setup0;

    // A /sync loop per peer: when each event first came back from a waiting /sync.
    const seen = peers.map(() => new Map<string, number>());
    const waiters = new Set<() => void>();
    const abort = new AbortController();
    let stopping = false;
    const loops = peers.map(async (p, i) => {
      let since = (await call(p.hs, 'GET', `${CS}/sync?timeout=0`, undefined, users[i].token)).next_batch as string;
      while (!stopping) {
        let body: any;
        try {
          body = await call(p.hs, 'GET', `${CS}/sync?since=${enc(since)}&timeout=30000`, undefined, users[i].token, abort.signal);
        } catch (e) {
          if (stopping) return;
          throw e;
        }
        const now = performance.now();
        since = body.next_batch;
        for (const e of body.rooms?.join?.[roomId]?.timeline?.events ?? []) if (!seen[i].has(e.event_id)) seen[i].set(e.event_id, now);
        for (const w of [...waiters]) w();
      }
    });
    await sleep(200);

    const need = Math.ceil(0.99 * (PEERS - 1));
    const reach99: number[] = [];
    const reach50: number[] = [];
    const arrivals: number[] = [];
    const sends: number[] = [];
    let missing = 0;
    let cpu0 = process.cpuUsage();
    let wall0 = performance.now();
    const run = async () => {
      for (let k = 0; k < WARMUP + MESSAGES; k++) {
        if (k === WARMUP) {
          cpu0 = process.cpuUsage();
          wall0 = performance.now();
        }
        const from = k % PEERS;
        const t0 = performance.now();
        const eventId = await sendText(peers[from].hs, users[from], roomId, `mesh ${k}`);
        const sent = performance.now() - t0;
        const others = peers.map((_, i) => i).filter((i) => i !== from);
        const have = () => others.filter((i) => seen[i].has(eventId)).length;
        const until = performance.now() + 10_000;
        while (have() < others.length && performance.now() < until) {
          await new Promise<void>((r) => {
            const t = setTimeout(r, 50);
            const w = () => {
              clearTimeout(t);
              waiters.delete(w);
              r();
            };
            waiters.add(w);
          });
        }
        if (k < WARMUP) continue;
        sends.push(sent);
        const times = others.map((i) => seen[i].get(eventId)).filter((t): t is number => t !== undefined).map((t) => t - t0).sort((x, y) => x - y);
        missing += others.length - times.length;
        arrivals.push(...times);
        reach99.push(times.length >= need ? times[need - 1] : Infinity);
        const half = Math.ceil(0.5 * others.length);
        reach50.push(times.length >= half ? times[half - 1] : Infinity);
        await sleep(20);
      }
    };
    const { summary, file } = await profiled(opts.profile, 'federation-mesh', run);
    const cpu = process.cpuUsage(cpu0);
    const cpuMsPerMessage = (cpu.user + cpu.system) / 1000 / MESSAGES;
    const cpuShare = (cpu.user + cpu.system) / 1000 / (performance.now() - wall0);
    stopping = true;
    abort.abort();
    await Promise.allSettled(loops);

    const r99 = stats(reach99);
    const label = `${PEERS}-peer mesh (memory)`;
    rows.push({ name: `${label}: setup (unmeasured)`, value: ms(setupMs) });
    rows.push({ name: `${label}: send → 99 % of peers (${need}/${PEERS - 1})`, value: pct(r99), target: `≤ ${MESH_TARGET_MS} ms (p50)`, pass: r99.p50 <= MESH_TARGET_MS });
    rows.push({ name: `${label}: send → 50 % of peers`, value: pct(stats(reach50)) });
    rows.push({ name: `${label}: send → each peer's /sync`, value: pct(stats(arrivals)) });
    rows.push({ name: `${label}: PUT /send on the sender`, value: pct(stats(sends)) });
    rows.push({ name: `${label}: CPU of the whole process per message`, value: `${cpuMsPerMessage.toFixed(1)} ms (${(100 * cpuShare).toFixed(0)} % of one core while measuring)` });
    if (missing > 0) rows.push({ name: `${label}: arrivals missing after 10 s`, value: String(missing), pass: false });
    if (summary) {
      console.log(`\nCPU profile of the mesh messages (${file}):`);
      for (const l of summary) console.log(l);
    }
    json.mesh = {
      peers: PEERS,
      messages: MESSAGES,
      reach99_p50_ms: r99.p50,
      reach99_p95_ms: r99.p95,
      arrival_p50_ms: stats(arrivals).p50,
      arrival_p95_ms: stats(arrivals).p95,
      send_p50_ms: stats(sends).p50,
      cpu_ms_per_message: cpuMsPerMessage,
      target_ms: MESH_TARGET_MS,
      pass: r99.p50 <= MESH_TARGET_MS,
      missing,
      setup_ms: setupMs,
    };
  } finally {
    await Promise.allSettled(peers.map((p) => p.stop()));
  }
}

// ---------------------------------------------------------------------------------------------------------------

if (only.has('join')) await measure('remote join', benchJoin);
if (only.has('mesh')) await measure('mesh', benchMesh);

const peakRss = process.resourceUsage().maxRSS / 1024;
rows.push({ name: 'bench process peak RSS', value: `${peakRss.toFixed(0)} MiB` });
if (logged > 0) rows.push({ name: 'warnings/errors logged by the homeservers', value: `${logged}${opts.verbose ? '' : ' (--verbose shows them)'}` });
const load = loadavg().map((x) => x.toFixed(2)).join(' ');
console.log(`\nmachine: ${cpus().length} CPUs, load average ${load} (1/5/15 min) at the end of the run`);
const w0 = Math.max(6, ...rows.map((r) => r.name.length));
const w1 = Math.max(6, ...rows.map((r) => r.value.length));
const w2 = Math.max(6, ...rows.map((r) => (r.target ?? '').length));
console.log('');
console.log(`${'metric'.padEnd(w0)} | ${'result'.padEnd(w1)} | ${'target'.padEnd(w2)} | pass`);
console.log(`${'-'.repeat(w0)}-+-${'-'.repeat(w1)}-+-${'-'.repeat(w2)}-+-----`);
for (const r of rows) {
  const pass = r.pass === undefined ? '' : r.pass ? 'ok' : 'FAIL';
  console.log(`${r.name.padEnd(w0)} | ${r.value.padEnd(w1)} | ${(r.target ?? '').padEnd(w2)} | ${pass}`);
}
console.log('');
json.peak_rss_mib = peakRss;
json.logged_warnings = logged;
json.load_average = loadavg();
console.log(JSON.stringify(json));
process.exit(failed ? 1 : 0);
