/**
 * In-process profile of the sequential send path: a homeserver on LevelKv in a temp dir, driven through the
 * plain-data `hs.handle()` (what the Node http host calls), no HTTP and no network. Prints CPU ms per send
 * (process.cpuUsage: main thread plus LevelDB's threads) and wall ms per send.
 *
 * With --http the sends go over HTTP instead: this process serves (src/node/http-host.ts, as `hearth serve` does)
 * and a child process sends (then joins) with node:http keep-alive, so the CPU figure is the server's alone.
 * --heap-sample FILE samples what the sends allocate (collected objects included) and prints the top sites.
 * --cpu-prof FILE writes a V8 CPU profile of the sends alone (node:inspector; no set-up, no joins) for
 * bench/profile-summary.ts.
 *
 *   node --import tsx/esm [--cpu-prof --cpu-prof-dir bench/profiles] bench/send-profile.ts [--sends 2000] [--http]
 *     [--warmup N] [--senders N] [--cpu-prof FILE] [--heap-sample FILE]
 * It also prints the server CPU by thread and, with --http, latency percentiles and what the slowest 5 % of
 * requests overlapped (GC pauses, LevelDB memtable flushes and compactions from its LOG).
 */
import '../src/node/polyfills.js';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { constants as perfConstants, PerformanceObserver } from 'node:perf_hooks';
import { serveHttp } from '../src/node/http-host.js';
import { createHomeserver } from '../src/homeserver.js';
import { openLevelKv } from '../src/storage/level-kv.js';
import { HOMESERVER_STORES } from '../src/storage/schema.js';
import type { PlainResponse } from '../src/api/router.js';

const { values } = parseArgs({
  options: {
    sends: { type: 'string', default: '2000' },
    joins: { type: 'string', default: '200' },
    // Unmeasured sends over HTTP first (--http): how far the JIT has got when the measured sends start.
    warmup: { type: 'string', default: '0' },
    // --http: this many users send at once into the one room (the bench's concurrent row), sends/N each.
    senders: { type: 'string', default: '1' },
    http: { type: 'boolean', default: false },
    'heap-sample': { type: 'string' },
    'cpu-prof': { type: 'string' },
  },
});
const sends = Number(values.sends);
const joins = Number(values.joins);

const dir = await mkdtemp(join(tmpdir(), 'hearth-send-profile-'));
// LevelDB's memory as `hearth serve` sets it (src/node/cli.ts LEVELDB_MEMORY, ROW_CACHE): a 1 MiB memtable is
// flushed every few hundred sends, which matters for the tail.
const kv = await openLevelKv({
  name: join(dir, 'db'),
  stores: HOMESERVER_STORES,
  leveldb: { cacheSize: 2 * 1024 * 1024, writeBufferSize: 1024 * 1024 },
  rowCache: { bytes: 4 * 1024 * 1024, rows: 8192 },
});
const hs = await createHomeserver({ kv }, { registration: 'open' } as never);
const base = 'http://127.0.0.1:8008';

async function call(method: string, path: string, body?: unknown, token?: string): Promise<any> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res: PlainResponse = await hs.handle({ method, url: base + path, headers, body: body === undefined ? null : JSON.stringify(body) });
  const text = typeof res.body === 'string' ? res.body : new TextDecoder().decode(res.body as Uint8Array);
  if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

async function register(name: string): Promise<string> {
  const r = await call('POST', '/_matrix/client/v3/register', { username: name, password: `${name}-pw-123456`, auth: { type: 'm.login.dummy' } });
  return r.access_token as string;
}

const alice = await register('alice');
const bob = await register('bob');
const { room_id: roomId } = await call('POST', '/_matrix/client/v3/createRoom', { preset: 'public_chat' }, alice);
await call('POST', `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {}, bob);
// With --senders N > 1, alice and N - 1 others send at once.
const senders = [alice];
for (let i = 1; i < Number(values.senders); i++) {
  const token = await register(`sender${i}`);
  await call('POST', `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {}, token);
  senders.push(token);
}

/**
 * CPU time (user + system, ms) of this process's threads (Linux /proc; empty elsewhere): `main` is the event loop,
 * the one that limits throughput; the others are named as the kernel knows them (Node 20 calls them all `node`,
 * later versions `libuv-worker`, …): libuv's pool (LevelDB's writes and fdatasyncs) and V8's workers (GC, and
 * TurboFan compiling while the JIT warms up — see --warmup).
 */
function threadCpu(): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const name = tid === String(process.pid) ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(name, (out.get(name) ?? 0) + ((Number(f[11]) + Number(f[12])) * 1000) / 100);
    }
  } catch {
    // Not Linux: no per-thread figures.
  }
  return out;
}

function threadNote(before: Map<string, number>, n: number): string {
  const after = threadCpu();
  const parts: string[] = [];
  for (const [name, ms] of after) {
    const d = ms - (before.get(name) ?? 0);
    if (d > 0) parts.push(`${name} ${(d / n).toFixed(3)}`);
  }
  return parts.length > 0 ? `  by thread (ms/op): ${parts.join(', ')}\n` : '';
}

function measure(label: string, n: number, ms: number, cpu: NodeJS.CpuUsage): void {
  if (n === 0) return;
  const cpuMs = (cpu.user + cpu.system) / 1000;
  // User and system time apart: the system part is mostly syscalls (socket writes, waking LevelDB's thread).
  const split = `user ${(cpu.user / 1000 / n).toFixed(3)} + sys ${(cpu.system / 1000 / n).toFixed(3)}`;
  process.stdout.write(`${label}: ${n} ops, wall ${(ms / n).toFixed(3)} ms/op, CPU ${(cpuMs / n).toFixed(3)} ms/op (${split})\n`);
}

// Warm up the JIT.
for (let i = 0; i < 200; i++) {
  await call('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/warm${i}`, { msgtype: 'm.text', body: `warm ${i}` }, alice);
}

const host = values.http
  ? await serveHttp({ host: '127.0.0.1', port: 0, fetch: hs.fetch, handle: hs.handle, handlePaths: ['/_matrix/'] })
  : undefined;
if (host && Number(values.warmup) > 0) await httpClient(host.url, 'send', senders.join(','), [roomId, values.warmup!, 'w']);
const heap = values['heap-sample'] ? await startHeapSampling() : undefined;
const prof = values['cpu-prof'] ? await startCpuProfile() : undefined;
const threads = threadCpu();
let cpu = process.cpuUsage();
let start = performance.now();
// For reading a --cpu-prof profile: the sends start this long after the process did.
process.stdout.write(`sends start at ${start.toFixed(0)} ms\n`);
if (host) {
  const gcs = watchGc();
  const latencies = join(dir, 'latencies.json');
  await httpClient(host.url, 'send', senders.join(','), [roomId, String(sends), 'h'], latencies);
  measure('send over HTTP (server CPU)', sends, performance.now() - start, process.cpuUsage(cpu));
  process.stdout.write(threadNote(threads, sends));
  gcs.stop();
  process.stdout.write(tailReport(JSON.parse(readFileSync(latencies, 'utf8')) as Array<[number, number]>, gcs.pauses, levelDbWork(join(dir, 'db', 'LOG'))));
} else {
  for (let i = 0; i < sends; i++) {
    await call('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${i}`, { msgtype: 'm.text', body: `sequential ${i}` }, alice);
  }
  measure('send', sends, performance.now() - start, process.cpuUsage(cpu));
  process.stdout.write(threadNote(threads, sends));
}
if (heap) await heap.stop(values['heap-sample']!, sends);
if (prof) await prof.stop(values['cpu-prof']!);

// Joins: fresh rooms created up front, then one join each.
const rooms: string[] = [];
for (let i = 0; i < joins; i++) rooms.push((await call('POST', '/_matrix/client/v3/createRoom', { preset: 'public_chat' }, alice)).room_id);
cpu = process.cpuUsage();
start = performance.now();
process.stdout.write(`joins start at ${start.toFixed(0)} ms\n`);
if (host) {
  await httpClient(host.url, 'join', bob, rooms);
  measure('join over HTTP (server CPU)', joins, performance.now() - start, process.cpuUsage(cpu));
} else {
  for (const r of rooms) await call('POST', `/_matrix/client/v3/join/${encodeURIComponent(r)}`, {}, bob);
  measure('join', joins, performance.now() - start, process.cpuUsage(cpu));
}
process.stdout.write(`joins end at ${performance.now().toFixed(0)} ms\n`);
await host?.close();

await hs.stop();
await kv.close();
await rm(dir, { recursive: true, force: true });

/**
 * Sequential requests from a child process (node:http, one keep-alive connection per token): its CPU is not this
 * process's. `send`: args [roomId, n, txn prefix] — n messages into the room, split between the comma-separated
 * tokens, each sending its share one after another, all at once; `join`: args are room IDs, joined one after another.
 */
function httpClient(base: string, mode: 'send' | 'join', token: string, args: readonly string[], latencyFile = ''): Promise<void> {
  const code = `
    const http = require('node:http');
    const fs = require('node:fs');
    const [base, mode, token, latencyFile, ...args] = process.argv.slice(1);
    // [start, duration] of each request in ms, start on the wall clock both processes share.
    const latencies = [];
    const tokens = token.split(',');
    const agents = tokens.map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    const request = (w, method, path, body) => new Promise((resolve, reject) => {
      const req = http.request(base + path,
        { method, agent: agents[w], headers: { authorization: 'Bearer ' + tokens[w], 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => { let t = ''; res.on('data', (c) => (t += c)); res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(t)))); });
      req.on('error', reject);
      req.end(body);
    });
    (async () => {
      if (mode === 'send') {
        const [room, n, prefix] = args;
        const each = Math.ceil(Number(n) / tokens.length);
        await Promise.all(tokens.map(async (_, w) => {
          for (let i = w * each; i < Math.min(Number(n), (w + 1) * each); i++) {
            const t0 = performance.now();
            await request(w, 'PUT', '/_matrix/client/v3/rooms/' + encodeURIComponent(room) + '/send/m.room.message/' + prefix + i, JSON.stringify({ msgtype: 'm.text', body: 'message ' + i }));
            latencies.push([performance.timeOrigin + t0, performance.now() - t0]);
          }
        }));
        if (latencyFile) fs.writeFileSync(latencyFile, JSON.stringify(latencies));
      } else {
        for (const room of args) await request(0, 'POST', '/_matrix/client/v3/join/' + encodeURIComponent(room), '{}');
      }
      for (const a of agents) a.destroy();
    })().catch((e) => { console.error(e); process.exit(1); });
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', code, base, mode, token, latencyFile, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (rc) => (rc === 0 ? resolve() : reject(new Error(`client exited with ${rc}`))));
  });
}

/** GC pauses on the main thread ([start, end] on the shared wall clock, ms) while the sends run. */
function watchGc(): { pauses: Array<[number, number, string]>; stop(): void } {
  const pauses: Array<[number, number, string]> = [];
  const k = perfConstants;
  const kinds: Record<number, string> = {
    [k.NODE_PERFORMANCE_GC_MINOR]: 'minor',
    [k.NODE_PERFORMANCE_GC_MAJOR]: 'major',
    [k.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
    [k.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
  };
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = kinds[((e as { detail?: unknown }).detail as { kind?: number } | undefined)?.kind ?? 0] ?? 'gc';
      pauses.push([performance.timeOrigin + e.startTime, performance.timeOrigin + e.startTime + e.duration, kind]);
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  return { pauses, stop: () => obs.disconnect() };
}

/**
 * LevelDB's background work from its LOG ([start, end] on the wall clock, ms): memtable flushes ("Level-0 table #N:
 * started … OK"), compactions ("Compacting … / Compacted …"), and writers stalled on a full memtable or on too many
 * level-0 files (logged with no end: counted as instants).
 */
function levelDbWork(logFile: string): Array<[number, number, string]> {
  const out: Array<[number, number, string]> = [];
  let text = '';
  try {
    text = readFileSync(logFile, 'utf8');
  } catch {
    return out;
  }
  const at = (line: string): number => {
    const m = /^(\d+)\/(\d+)\/(\d+)-(\d+):(\d+):(\d+)\.(\d+)/.exec(line);
    if (!m) return NaN;
    const [, y, mo, d, h, mi, sec, us] = m.map(Number);
    return new Date(y, mo - 1, d, h, mi, sec).getTime() + us / 1000;
  };
  const open = new Map<string, number>();
  for (const line of text.split('\n')) {
    const t = at(line);
    if (Number.isNaN(t)) continue;
    const flush = /Level-0 table #(\d+): (started|.*OK)/.exec(line);
    if (flush) {
      if (flush[2] === 'started') open.set(`flush${flush[1]}`, t);
      else if (open.has(`flush${flush[1]}`)) out.push([open.get(`flush${flush[1]}`)!, t, 'flush']);
    } else if (/Compacting /.test(line)) open.set('compaction', t);
    else if (/Compacted |compacted to/.test(line) && open.has('compaction')) {
      out.push([open.get('compaction')!, t, 'compaction']);
      open.delete('compaction');
    } else if (/waiting\.\.\./.test(line)) out.push([t, t, 'write stall']);
  }
  return out;
}

/**
 * Latency percentiles of the client's requests, and what the slowest 5 % overlapped: GC pauses on the main thread,
 * LevelDB flushes/compactions. Compared with the share of all requests that overlap the same, so a cause shows as a
 * share far above its base rate.
 */
function tailReport(lat: Array<[number, number]>, gcs: Array<[number, number, string]>, ldb: Array<[number, number, string]>): string {
  const sorted = lat.map(([, ms]) => ms).sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  const p95 = pct(95);
  const overlaps = (req: [number, number], w: [number, number, string]) => w[0] <= req[0] + req[1] && w[1] >= req[0];
  const share = (reqs: Array<[number, number]>, ws: Array<[number, number, string]>, kind: string) =>
    reqs.length === 0 ? 0 : reqs.filter((r) => ws.some((w) => w[2] === kind && overlaps(r, w))).length / reqs.length;
  const slow = lat.filter(([, ms]) => ms >= p95);
  const lines = [
    `latency: mean ${mean.toFixed(3)} ms, p50 ${pct(50).toFixed(3)}, p90 ${pct(90).toFixed(3)}, p95 ${p95.toFixed(3)}, p99 ${pct(99).toFixed(3)}, max ${sorted[sorted.length - 1].toFixed(3)}`,
    `  the slowest 5 % (${slow.length}) add ${((slow.reduce((a, [, ms]) => a + ms - pct(50), 0) / lat.length)).toFixed(3)} ms to the mean over p50; share overlapping (slowest 5 % / all requests):`,
  ];
  for (const [kind, ws] of [
    ['minor', gcs],
    ['major', gcs],
    ['incremental', gcs],
    ['flush', ldb],
    ['compaction', ldb],
    ['write stall', ldb],
  ] as const) {
    const n = ws.filter((w) => w[2] === kind).length;
    if (n === 0) continue;
    const ms = ws.filter((w) => w[2] === kind).reduce((a, w) => a + w[1] - w[0], 0);
    lines.push(`    ${kind.padEnd(12)} ${String(n).padStart(5)} × ${(ms / n).toFixed(2)} ms: ${(share(slow, ws, kind) * 100).toFixed(0)} % / ${(share(lat, ws, kind) * 100).toFixed(0)} %`);
  }
  return lines.join('\n') + '\n';
}

/** V8's CPU profiler over the sends only (`--cpu-prof` on the command line would include the set-up's scrypt). */
async function startCpuProfile(): Promise<{ stop(file: string): Promise<void> }> {
  const { Session } = await import('node:inspector');
  const session = new Session();
  session.connect();
  const post = <T>(method: string, params?: object) =>
    new Promise<T>((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res as T))));
  await post('Profiler.enable');
  await post('Profiler.start');
  return {
    async stop(file) {
      const { profile } = await post<{ profile: unknown }>('Profiler.stop');
      session.disconnect();
      await writeFile(file, JSON.stringify(profile));
    },
  };
}

/**
 * V8's sampling heap profiler over the sends, counting objects the GC has already collected too (what the young
 * generation churns through, not only what stays): writes a .heapprofile (Chrome DevTools → Memory) and prints the
 * functions that allocate the most bytes per send.
 */
async function startHeapSampling(): Promise<{ stop(file: string, ops: number): Promise<void> }> {
  const { Session } = await import('node:inspector');
  const session = new Session();
  session.connect();
  const post = <T>(method: string, params?: object) =>
    new Promise<T>((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res as T))));
  await post('HeapProfiler.enable');
  await post('HeapProfiler.startSampling', {
    samplingInterval: 1024,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  return {
    async stop(file, ops) {
      type Node = { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: Node[] };
      const { profile } = await post<{ profile: { head: Node } }>('HeapProfiler.stopSampling');
      session.disconnect();
      await writeFile(file, JSON.stringify(profile));
      const bySite = new Map<string, number>();
      const walk = (n: Node): void => {
        const f = n.callFrame;
        const site = `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
        bySite.set(site, (bySite.get(site) ?? 0) + n.selfSize);
        for (const c of n.children) walk(c);
      };
      walk(profile.head);
      const total = [...bySite.values()].reduce((a, b) => a + b, 0);
      process.stdout.write(`allocated ~${(total / ops / 1024).toFixed(1)} KiB per send (sampled); top sites, bytes per send:\n`);
      for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 30)) {
        process.stdout.write(`${(bytes / ops).toFixed(0).padStart(8)}  ${site}\n`);
      }
    },
  };
}
