/**
 * In-process profile of the sequential send path: a homeserver on LevelKv in a temp dir, driven through the
 * plain-data `hs.handle()` (what the Node http host calls), no HTTP and no network. Prints CPU ms per send
 * (process.cpuUsage: main thread plus LevelDB's threads) and wall ms per send.
 *
 * With --http the sends go over HTTP instead: this process serves (src/node/http-host.ts, as `hearth serve` does)
 * and a child process sends (then joins) with node:http keep-alive, so the CPU figure is the server's alone.
 * --heap-sample FILE samples what the sends allocate (collected objects included) and prints the top sites.
 *
 *   node --import tsx/esm [--cpu-prof --cpu-prof-dir bench/profiles] bench/send-profile.ts [--sends 2000] [--http]
 */
import '../src/node/polyfills.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { serveHttp } from '../src/node/http-host.js';
import { createHomeserver } from '../src/homeserver.js';
import { openLevelKv } from '../src/storage/level-kv.js';
import { HOMESERVER_STORES } from '../src/storage/schema.js';
import type { PlainResponse } from '../src/api/router.js';

const { values } = parseArgs({
  options: {
    sends: { type: 'string', default: '2000' },
    joins: { type: 'string', default: '200' },
    http: { type: 'boolean', default: false },
    'heap-sample': { type: 'string' },
  },
});
const sends = Number(values.sends);
const joins = Number(values.joins);

const dir = await mkdtemp(join(tmpdir(), 'hearth-send-profile-'));
const kv = await openLevelKv({ name: join(dir, 'db'), stores: HOMESERVER_STORES });
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

function measure(label: string, n: number, ms: number, cpu: NodeJS.CpuUsage): void {
  const cpuMs = (cpu.user + cpu.system) / 1000;
  process.stdout.write(`${label}: ${n} ops, wall ${(ms / n).toFixed(3)} ms/op, CPU ${(cpuMs / n).toFixed(3)} ms/op\n`);
}

// Warm up the JIT.
for (let i = 0; i < 200; i++) {
  await call('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/warm${i}`, { msgtype: 'm.text', body: `warm ${i}` }, alice);
}

const host = values.http
  ? await serveHttp({ host: '127.0.0.1', port: 0, fetch: hs.fetch, handle: hs.handle, handlePaths: ['/_matrix/'] })
  : undefined;
const heap = values['heap-sample'] ? await startHeapSampling() : undefined;
let cpu = process.cpuUsage();
let start = performance.now();
// For reading a --cpu-prof profile: the sends start this long after the process did.
process.stdout.write(`sends start at ${start.toFixed(0)} ms\n`);
if (host) {
  await httpClient(host.url, 'send', alice, [roomId, String(sends)]);
  measure('send over HTTP (server CPU)', sends, performance.now() - start, process.cpuUsage(cpu));
} else {
  for (let i = 0; i < sends; i++) {
    await call('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${i}`, { msgtype: 'm.text', body: `sequential ${i}` }, alice);
  }
  measure('send', sends, performance.now() - start, process.cpuUsage(cpu));
}
if (heap) await heap.stop(values['heap-sample']!, sends);

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
 * Sequential requests from a child process (node:http, one keep-alive connection): its CPU is not this process's.
 * `send`: args [roomId, n] — n messages into the room; `join`: args are room IDs, joined one after another.
 */
function httpClient(base: string, mode: 'send' | 'join', token: string, args: readonly string[]): Promise<void> {
  const code = `
    const http = require('node:http');
    const [base, mode, token, ...args] = process.argv.slice(1);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const request = (method, path, body) => new Promise((resolve, reject) => {
      const req = http.request(base + path,
        { method, agent, headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => { let t = ''; res.on('data', (c) => (t += c)); res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(t)))); });
      req.on('error', reject);
      req.end(body);
    });
    (async () => {
      if (mode === 'send') {
        const [room, n] = args;
        for (let i = 0; i < Number(n); i++) {
          await request('PUT', '/_matrix/client/v3/rooms/' + encodeURIComponent(room) + '/send/m.room.message/h' + i, JSON.stringify({ msgtype: 'm.text', body: 'sequential ' + i }));
        }
      } else {
        for (const room of args) await request('POST', '/_matrix/client/v3/join/' + encodeURIComponent(room), '{}');
      }
      agent.destroy();
    })().catch((e) => { console.error(e); process.exit(1); });
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', code, base, mode, token, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (rc) => (rc === 0 ? resolve() : reject(new Error(`client exited with ${rc}`))));
  });
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
