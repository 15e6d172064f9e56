/**
 * `npm run bench` — Hearth's benchmark (not part of the tests). See bench/README.md.
 *
 *   storage    the raw durable write rate of LevelDB through the storage contract (src/storage/probe.ts)
 *   http       a real `hearth serve` process on a temporary LevelDB, driven through the Client-Server API over HTTP
 *   state-res  the state-resolution benchmark (bench/state-res.ts), in its own process
 *
 * Options: --only http,storage,state-res   --sends N (sequential sends, default 2000)   --per-sender N (default 250)
 *          --warmup N (unmeasured sequential sends before the send rows, default 2000; see bench/README.md)
 *          --cpu-prof (profile the server; the .cpuprofile lands in bench/profiles/)   --members N --runs N (state-res)
 *          --node-arg FLAG (repeatable: a Node/V8 option for the server process, e.g. --max-semi-space-size=2)
 * Prints a table with pass/fail against the targets of issue 3, then one JSON line.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { openLevelKv } from '../src/storage/level-kv.js';
import { measureConcurrentWrites, measureRawBatchedWrites } from '../src/storage/probe.js';
import type { WriteProbeResult } from '../src/storage/probe.js';
import { startServe } from '../test/helpers/serve.js';
import type { ServedPeer } from '../test/helpers/serve.js';
import {
  Api,
  concurrentSends,
  cpuMs,
  createRooms,
  fillRoom,
  initialSyncs,
  joinAll,
  joins,
  messagePages,
  peakRssMiB,
  publicRooms,
  sequentialSends,
  sharedRoom,
  syncArrival,
} from './http-workload.js';
import type { Stats, ThroughputResult, User } from './http-workload.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');

const { values: opts } = parseArgs({
  options: {
    only: { type: 'string' },
    sends: { type: 'string', default: '2000' },
    'per-sender': { type: 'string', default: '250' },
    warmup: { type: 'string', default: '2000' },
    'cpu-prof': { type: 'boolean', default: false },
    'node-arg': { type: 'string', multiple: true },
    members: { type: 'string' },
    runs: { type: 'string' },
  },
});
const PARTS = ['storage', 'http', 'state-res'] as const;
type Part = (typeof PARTS)[number];
const only = new Set((opts.only ?? PARTS.join(',')).split(',').map((s) => s.trim()));
for (const p of only) {
  if (!PARTS.includes(p as Part)) {
    console.error(`--only takes ${PARTS.join(', ')}; not '${p}'`);
    process.exit(2);
  }
}
const SENDS = Number(opts.sends);
const PER_SENDER = Number(opts['per-sender']);
const SENDERS = 8;
/**
 * Unmeasured sends before the send rows. V8 keeps compiling the send path's functions for the first few thousand
 * sends (~270 TurboFan compiles, most in the first ~6,000; measured with --trace-opt), which a homeserver that has been
 * up for a while has done long ago: the rows measure that steady state. `--warmup 200` shows the start-up cost.
 */
const WARMUP = Number(opts.warmup);

interface Row {
  name: string;
  value: string;
  target?: string;
  pass?: boolean;
}
const rows: Row[] = [];
const json: Record<string, unknown> = { bench: 'hearth', node: process.version };
const failures: string[] = [];

const ms = (x: number) => `${x.toFixed(2)} ms`;
const lat = (s: Stats) => `p50 ${ms(s.p50)}, p95 ${ms(s.p95)}, p99 ${ms(s.p99)} (n=${s.n})`;
const round = (x: number, d = 2) => Number(x.toFixed(d));
const statsJson = (s: Stats) => ({ n: s.n, p50: round(s.p50, 3), p95: round(s.p95, 3), p99: round(s.p99, 3) });

function row(name: string, value: string, target?: { text: string; pass: boolean }): void {
  rows.push({ name, value, ...(target ? { target: target.text, pass: target.pass } : {}) });
}
const atMost = (x: number, max: number, unit: string) => ({ text: `≤ ${max} ${unit}`, pass: x <= max });
const atLeast = (x: number, min: number, unit: string) => ({ text: `≥ ${min} ${unit}`, pass: x >= min });

/** Runs one measurement; a failure (e.g. an endpoint that does not exist yet) becomes an error row, not a crash. */
async function measure(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    row(name, `error: ${msg.slice(0, 160)}`, { text: 'runs', pass: false });
    failures.push(`${name}: ${msg}`);
  }
}

async function storageProbe(): Promise<{ raw: WriteProbeResult; concurrent: WriteProbeResult }> {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-bench-kv-'));
  const kv = await openLevelKv({ name: join(dir, 'db'), stores: [] });
  try {
    await measureRawBatchedWrites(kv, { batches: 100 }); // warm-up
    const raw = await measureRawBatchedWrites(kv, { batches: 1000, batchSize: 1 });
    const concurrent = await measureConcurrentWrites(kv, { writers: SENDERS, transactionsPerWriter: 250 });
    return { raw, concurrent };
  } finally {
    await kv.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function httpBench(storage?: { raw: WriteProbeResult; concurrent: WriteProbeResult }): Promise<void> {
  const profDir = join(HERE, 'profiles');
  if (opts['cpu-prof']) mkdirSync(profDir, { recursive: true });
  const peer: ServedPeer = await startServe({
    nodeArgs: [...(opts['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', profDir] : []), ...(opts['node-arg'] ?? [])],
    args: ['--log-level', 'warn'],
  });
  json.serverName = peer.serverName;
  const api = new Api(peer.url);
  /** Runs `fn` and returns what it returned plus the server's CPU per operation (ms), for `ops` operations. */
  const cpuPer = async <T>(ops: number, fn: () => Promise<T>): Promise<[T, number | undefined]> => {
    const c0 = await cpuMs(peer.pid);
    const r = await fn();
    const c1 = await cpuMs(peer.pid);
    return [r, c0 === undefined || c1 === undefined ? undefined : (c1 - c0) / ops];
  };
  const cpuNote = (perOp: number | undefined, unit: string) => (perOp === undefined ? '' : `; server CPU ${perOp.toFixed(2)} ms/${unit}`);
  const cpuJson = (perOp: number | undefined) => (perOp === undefined ? {} : { serverCpuMsPerOp: round(perOp, 3) });
  try {
    const alice = await api.register('alice');
    const bob = await api.register('bob');
    const senders: User[] = [];
    for (let i = 0; i < SENDERS; i++) senders.push(await api.register(`sender${i}`));
    const roomId = await sharedRoom(api, alice, bob);

    let seq: ThroughputResult | undefined;
    await measure('sequential send', async () => {
      await sequentialSends(api, alice, roomId, WARMUP); // warm-up: JIT, caches, LevelDB files
      const [s, cpu] = await cpuPer(SENDS, () => sequentialSends(api, alice, roomId, SENDS));
      seq = s;
      row('sequential send latency', lat(s.latency) + cpuNote(cpu, 'msg'), atMost(s.latency.p50, 2, 'ms p50'));
      row('sequential send rate', `${s.perSecond.toFixed(0)} msg/s (${s.messages} in ${ms(s.ms)})`, atLeast(s.perSecond, 500, 'msg/s'));
      json.sequentialSend = { ...statsJson(s.latency), msgPerSec: round(s.perSecond, 1), ...cpuJson(cpu) };
    });

    let conc: ThroughputResult | undefined;
    await measure('concurrent send', async () => {
      const { roomId: busy } = await api.createRoom(alice, { preset: 'public_chat', name: 'busy' });
      for (const s of senders) await api.join(s, busy);
      // Warm-up: the concurrent path (group commit, the room lock's queue) with a short burst.
      await concurrentSends(api, senders, [busy], Math.max(1, Math.round(WARMUP / 40)));
      const [c, cpu] = await cpuPer(SENDERS * PER_SENDER, () => concurrentSends(api, senders, [busy], PER_SENDER));
      conc = c;
      row(`${SENDERS} concurrent senders, one room`, `${c.perSecond.toFixed(0)} msg/s; latency ${lat(c.latency)}${cpuNote(cpu, 'msg')}`, atLeast(c.perSecond, 1500, 'msg/s'));
      json.concurrentSend = { senders: SENDERS, ...statsJson(c.latency), msgPerSec: round(c.perSecond, 1), ...cpuJson(cpu) };
    });

    await measure('sync arrival', async () => {
      const [s, cpu] = await cpuPer(300, () => syncArrival(api, alice, bob, roomId, 300));
      row('send → other user\'s /sync arrival', lat(s) + cpuNote(cpu, 'msg'), atMost(s.p50, 2, 'ms p50'));
      json.syncArrival = { ...statsJson(s), ...cpuJson(cpu) };
    });

    // A room with 1,000 messages and a reader who is only in that room.
    let history: string | undefined;
    let reader: User | undefined;
    await measure('fill 1,000-event room', async () => {
      const { roomId: r } = await api.createRoom(alice, { preset: 'public_chat', name: 'history' });
      for (const s of senders) await api.join(s, r);
      await fillRoom(api, senders, r, 1000);
      reader = await api.register('reader');
      await api.join(reader, r);
      history = r;
    });
    if (history && reader) {
      const [h, rd] = [history, reader];
      await measure('initial /sync', async () => {
        await initialSyncs(api, rd, 3); // warm-up
        const [r, cpu] = await cpuPer(20, () => initialSyncs(api, rd, 20));
        row('initial /sync, 1,000-event room', `${lat(r.latency)}, ${(r.bytes / 1024).toFixed(1)} KiB${cpuNote(cpu, 'sync')}`);
        json.initialSync = { ...statsJson(r.latency), bytes: r.bytes, ...cpuJson(cpu) };
      });
      await measure('/messages', async () => {
        const [r, cpu] = await cpuPer(1, () => messagePages(api, rd, h, 100, 3));
        const perPage = cpu === undefined ? undefined : cpu / r.latency.n;
        row('/messages page of 100', `${lat(r.latency)}; ${r.events} events per pass${cpuNote(perPage, 'page')}`);
        json.messagesPage100 = { ...statsJson(r.latency), eventsPerPass: r.events, ...cpuJson(perPage) };
      });
    }

    await measure('createRoom', async () => {
      const creator = await api.register('creator');
      await createRooms(api, creator, 10); // warm-up
      const [s, cpu] = await cpuPer(100, () => createRooms(api, creator, 100));
      row('createRoom', lat(s) + cpuNote(cpu, 'room'), atMost(s.p50, 20, 'ms p50'));
      json.createRoom = { ...statsJson(s), ...cpuJson(cpu) };
    });

    await measure('join', async () => {
      const owner = await api.register('owner');
      const joiner = await api.register('joiner');
      await joins(api, owner, joiner, 10); // warm-up
      const rooms = await publicRooms(api, owner, 100);
      const [s, cpu] = await cpuPer(100, () => joinAll(api, joiner, rooms));
      row('join', lat(s) + cpuNote(cpu, 'join'), atMost(s.p50, 2, 'ms p50'));
      json.join = { ...statsJson(s), ...cpuJson(cpu) };
    });

    const rss = await peakRssMiB(peer.pid);
    if (rss !== undefined) {
      row('server peak RSS (VmHWM)', `${rss.toFixed(1)} MiB`, atMost(rss, 100, 'MB'));
      json.peakRssMiB = round(rss, 1);
    }

    if (storage) {
      const { raw, concurrent } = storage;
      if (seq) {
        const ratio = seq.perSecond / raw.transactionsPerSecond;
        row('sequential: persisted events/s ÷ raw write txns/s', `${(ratio * 100).toFixed(0)} % (${seq.perSecond.toFixed(0)} / ${raw.transactionsPerSecond.toFixed(0)})`);
        json.sequentialVsRaw = round(ratio, 3);
      }
      if (conc) {
        const ratio = conc.perSecond / concurrent.transactionsPerSecond;
        row('concurrent: persisted events/s ÷ raw concurrent txns/s', `${(ratio * 100).toFixed(0)} % (${conc.perSecond.toFixed(0)} / ${concurrent.transactionsPerSecond.toFixed(0)})`);
        json.concurrentVsRaw = round(ratio, 3);
      }
    }
  } finally {
    const exit = await peer.stop('SIGTERM');
    if (exit.code !== 0) failures.push(`server exited with ${exit.code ?? exit.signal} on SIGTERM\n${peer.stderr()}`);
    await peer.dispose();
  }
  if (opts['cpu-prof']) console.log(`server CPU profile written to ${profDir}/ (open in Chrome DevTools → Performance)`);
}

function stateResBench(): Promise<void> {
  const args = ['--import', 'tsx/esm', join(HERE, 'state-res.ts')];
  if (opts.members) args.push('--members', opts.members);
  if (opts.runs) args.push('--runs', opts.runs);
  return new Promise((done) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.on('error', (e) => {
      failures.push(`state-res: ${e.message}`);
      done();
    });
    child.on('close', (code) => {
      const results: unknown[] = [];
      for (const line of out.split('\n')) {
        if (line.startsWith('{')) {
          const r = JSON.parse(line) as { room_version: string; algorithm: string; median_ms: number; p95_ms: number; members: number; conflicting_events: number };
          results.push(r);
          row(`state-res v${r.room_version} (${r.members} members, ${r.conflicting_events} conflicts)`, `median ${ms(r.median_ms)}, p95 ${ms(r.p95_ms)}`);
        } else if (line.trim() !== '') {
          console.log(`  state-res: ${line}`);
        }
      }
      json.stateRes = results;
      if (code !== 0) {
        row('state-res', `error: exited ${code}`, { text: 'runs', pass: false });
        failures.push(`state-res exited with ${code}`);
      }
      done();
    });
  });
}

function printTable(): void {
  // Other work on the machine (a test run, a build) moves every number here: say how busy it was.
  const load = loadavg().map((x) => x.toFixed(2)).join(' ');
  json.loadAverage = loadavg().map((x) => round(x));
  json.cpus = cpus().length;
  console.log(`\nmachine: ${cpus().length} CPUs, load average ${load} (1/5/15 min) at the end of the run`);
  const w0 = Math.max(...rows.map((r) => r.name.length), 6);
  const w1 = Math.max(...rows.map((r) => r.value.length), 6);
  const w2 = Math.max(...rows.map((r) => (r.target ?? '').length), 6);
  const line = (a: string, b: string, c: string, d: string) => `${a.padEnd(w0)} | ${b.padEnd(w1)} | ${c.padEnd(w2)} | ${d}`;
  console.log('');
  console.log(line('metric', 'result', 'target', ''));
  console.log(`${'-'.repeat(w0)}-+-${'-'.repeat(w1)}-+-${'-'.repeat(w2)}-+-----`);
  for (const r of rows) console.log(line(r.name, r.value, r.target ?? '', r.pass === undefined ? '' : r.pass ? 'pass' : 'FAIL'));
  console.log('');
}

let storage: { raw: WriteProbeResult; concurrent: WriteProbeResult } | undefined;
if (only.has('storage') || only.has('http')) {
  // Measured before the server starts, so the two never compete for the disk.
  await measure('storage probe', async () => {
    storage = await storageProbe();
    const { raw, concurrent } = storage;
    row('LevelDB raw sequential write txns (1 put, sync)', `${raw.transactionsPerSecond.toFixed(0)} txn/s (${(raw.ms / raw.transactions).toFixed(3)} ms each)`);
    row(`LevelDB raw concurrent write txns (${SENDERS} writers)`, `${concurrent.transactionsPerSecond.toFixed(0)} txn/s`);
    json.storage = { rawTxnPerSec: round(raw.transactionsPerSecond, 1), concurrentTxnPerSec: round(concurrent.transactionsPerSecond, 1) };
  });
}
if (only.has('http')) await httpBench(storage);
if (only.has('state-res')) await stateResBench();

printTable();
const checked = rows.filter((r) => r.pass !== undefined);
json.targetsPassed = checked.filter((r) => r.pass).length;
json.targetsChecked = checked.length;
console.log(JSON.stringify(json));
if (failures.length > 0) {
  console.error(`\n${failures.length} measurement(s) failed:\n${failures.join('\n')}`);
  process.exit(1);
}
process.exit(0);
