/**
 * In-process profile of the sequential send path: a homeserver on LevelKv in a temp dir, driven through the
 * plain-data `hs.handle()` (what the Node http host calls), no HTTP and no network. Prints CPU ms per send
 * (process.cpuUsage: main thread plus LevelDB's threads) and wall ms per send.
 *
 * With --http the sends go over HTTP instead: this process serves (src/node/http-host.ts, as `hearth serve` does)
 * and a child process sends with node:http keep-alive, so the CPU figure is the server's alone.
 *
 *   node --import tsx/esm [--cpu-prof --cpu-prof-dir bench/profiles] bench/send-profile.ts [--sends 2000] [--http]
 */
import '../src/node/polyfills.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { serveHttp } from '../src/node/http-host.js';
import { createHomeserver } from '../src/homeserver.js';
import { openLevelKv } from '../src/storage/level-kv.js';
import { HOMESERVER_STORES } from '../src/storage/schema.js';
import type { PlainResponse } from '../src/api/router.js';

const { values } = parseArgs({ options: { sends: { type: 'string', default: '2000' }, joins: { type: 'string', default: '200' }, http: { type: 'boolean', default: false } } });
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

let cpu = process.cpuUsage();
let start = performance.now();
// For reading a --cpu-prof profile: the sends start this long after the process did.
process.stdout.write(`sends start at ${start.toFixed(0)} ms\n`);
if (values.http) {
  const host = await serveHttp({ host: '127.0.0.1', port: 0, fetch: hs.fetch, handle: hs.handle, handlePaths: ['/_matrix/'] });
  cpu = process.cpuUsage();
  start = performance.now();
  await httpClient(host.url, roomId, alice, sends);
  measure('send over HTTP (server CPU)', sends, performance.now() - start, process.cpuUsage(cpu));
  await host.close();
} else {
  for (let i = 0; i < sends; i++) {
    await call('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${i}`, { msgtype: 'm.text', body: `sequential ${i}` }, alice);
  }
  measure('send', sends, performance.now() - start, process.cpuUsage(cpu));
}

// Joins: fresh rooms created up front, then one join each.
const rooms: string[] = [];
for (let i = 0; i < joins; i++) rooms.push((await call('POST', '/_matrix/client/v3/createRoom', { preset: 'public_chat' }, alice)).room_id);
cpu = process.cpuUsage();
start = performance.now();
for (const r of rooms) await call('POST', `/_matrix/client/v3/join/${encodeURIComponent(r)}`, {}, bob);
measure('join', joins, performance.now() - start, process.cpuUsage(cpu));

await hs.stop();
await kv.close();
await rm(dir, { recursive: true, force: true });

/** Sequential sends from a child process (node:http, one keep-alive connection): its CPU is not this process's. */
function httpClient(base: string, room: string, token: string, n: number): Promise<void> {
  const code = `
    const http = require('node:http');
    const [base, room, token, n] = process.argv.slice(1);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const put = (i) => new Promise((resolve, reject) => {
      const body = JSON.stringify({ msgtype: 'm.text', body: 'sequential ' + i });
      const req = http.request(base + '/_matrix/client/v3/rooms/' + encodeURIComponent(room) + '/send/m.room.message/h' + i,
        { method: 'PUT', agent, headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => { let t = ''; res.on('data', (c) => (t += c)); res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(t)))); });
      req.on('error', reject);
      req.end(body);
    });
    (async () => { for (let i = 0; i < Number(n); i++) await put(i); agent.destroy(); })().catch((e) => { console.error(e); process.exit(1); });
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', code, base, room, token, String(n)], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (rc) => (rc === 0 ? resolve() : reject(new Error(`client exited with ${rc}`))));
  });
}
