/**
 * In-process profile of the woken incremental /sync: a homeserver on LevelKv in a temp dir, driven through the
 * plain-data `hs.handle()` (what the Node http host calls). bob holds `/sync?since=…&timeout=30000` long polls;
 * alice sends one message at a time into their room, each waking bob's poll.
 *
 * Phases, after a warm-up:
 * - sends alone (nobody polling): CPU ms per send;
 * - each send followed by bob's `/sync?since=…&timeout=0` (the same work without a long poll);
 * - send + woken sync: CPU ms per message (the send, the poll's request, its wake and its response) and wall ms
 *   from just before the send to bob's response holding the event; the woken sync's own CPU is the difference;
 * - with --idle-rooms N, bob is also in N quiet rooms (what a woken sync must not pay for).
 *
 * With --http this process serves (src/node/http-host.ts, as `hearth serve` does) and a child process sends and
 * polls with node:http keep-alive (one connection each, as a client holds), so the CPU figures are the server's.
 *
 * `--filter js-sdk` stores and uses matrix-js-sdk's default filter (unread_thread_notifications), as a client would.
 *
 *   node --import tsx/esm [--cpu-prof --cpu-prof-dir bench/profiles] bench/sync-profile.ts [--messages 2000]
 *     [--filter none|js-sdk] [--idle-rooms 20]
 * Bundled (profiles that match production; see bench/README.md):
 *   npx esbuild bench/sync-profile.ts --bundle --platform=node --format=esm --external:classic-level \
 *     --outfile=dist/sync-profile.mjs "--banner:js=import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);"
 */
import '../src/node/polyfills.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fork } from 'node:child_process';
import { serveHttp } from '../src/node/http-host.js';
import { createHomeserver } from '../src/homeserver.js';
import { openLevelKv } from '../src/storage/level-kv.js';
import { HOMESERVER_STORES } from '../src/storage/schema.js';
import type { PlainResponse } from '../src/api/router.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '2000' },
    filter: { type: 'string', default: 'none' },
    'idle-rooms': { type: 'string', default: '0' },
    http: { type: 'boolean', default: false },
  },
});
const messages = Number(values.messages);
const idleRooms = Number(values['idle-rooms']);

const dir = await mkdtemp(join(tmpdir(), 'hearth-sync-profile-'));
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

async function register(name: string): Promise<{ token: string; userId: string }> {
  const r = await call('POST', '/_matrix/client/v3/register', { username: name, password: `${name}-pw-123456`, auth: { type: 'm.login.dummy' } });
  return { token: r.access_token as string, userId: r.user_id as string };
}

const alice = await register('alice');
const bob = await register('bob');
const { room_id: roomId } = await call('POST', '/_matrix/client/v3/createRoom', { preset: 'public_chat' }, alice.token);
await call('POST', `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {}, bob.token);
for (let i = 0; i < idleRooms; i++) {
  const { room_id: r } = await call('POST', '/_matrix/client/v3/createRoom', { preset: 'public_chat', name: `idle ${i}` }, alice.token);
  await call('POST', `/_matrix/client/v3/join/${encodeURIComponent(r)}`, {}, bob.token);
  await call('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(r)}/send/m.room.message/idle${i}`, { msgtype: 'm.text', body: 'hi' }, alice.token);
}

let filterParam = '';
if (values.filter === 'js-sdk') {
  // matrix-js-sdk's buildDefaultFilter when the server supports thread notifications, uploaded as it does.
  const { filter_id } = await call('POST', `/_matrix/client/v3/user/${encodeURIComponent(bob.userId)}/filter`, { room: { timeline: { unread_thread_notifications: true } } }, bob.token);
  filterParam = `&filter=${encodeURIComponent(filter_id)}`;
} else if (values.filter !== 'none') throw new Error(`--filter: none or js-sdk, not ${values.filter}`);

let since = (await call('GET', `/_matrix/client/v3/sync?timeout=0${filterParam}`, undefined, bob.token)).next_batch as string;
let seq = 0;

async function send(): Promise<void> {
  const i = seq++;
  await call('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/m${i}`, { msgtype: 'm.text', body: `message ${i}` }, alice.token);
}

/** One message with bob's poll waiting: wall ms from just before the send to bob's response. */
async function wokenRound(): Promise<number> {
  const poll = call('GET', `/_matrix/client/v3/sync?since=${since}&timeout=30000${filterParam}`, undefined, bob.token);
  // Let the poll reach its wait (auth, filter, presence are a few storage reads).
  await new Promise((r) => setTimeout(r, 1));
  const t0 = performance.now();
  await send();
  let body = await poll;
  // bob's own presence refresh (once a minute of syncing) may wake the poll first: poll again for the message.
  while ((body.rooms?.join?.[roomId]?.timeline?.events ?? []).length === 0 && (body.presence?.events ?? []).length > 0) {
    since = body.next_batch;
    body = await call('GET', `/_matrix/client/v3/sync?since=${since}&timeout=30000${filterParam}`, undefined, bob.token);
  }
  const ms = performance.now() - t0;
  const events = body.rooms?.join?.[roomId]?.timeline?.events ?? [];
  if (events.length !== 1) throw new Error(`woken sync carried ${events.length} events: ${JSON.stringify(body)}`);
  since = body.next_batch;
  return ms;
}

function median(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)].toFixed(3);
}

function report(label: string, n: number, cpu: NodeJS.CpuUsage, extra = ''): number {
  const cpuMs = (cpu.user + cpu.system) / 1000 / n;
  process.stdout.write(`${label}: ${n} ops, CPU ${cpuMs.toFixed(3)} ms/op${extra}\n`);
  return cpuMs;
}

if (values.http) {
  await overHttp();
  await hs.stop();
  await kv.close();
  await rm(dir, { recursive: true, force: true });
  process.exit(0);
}

// Warm up the JIT on both paths.
for (let i = 0; i < 300; i++) await wokenRound();
for (let i = 0; i < 200; i++) await send();
// Catch bob up after the sends alone.
since = (await call('GET', `/_matrix/client/v3/sync?since=${since}&timeout=0${filterParam}`, undefined, bob.token)).next_batch;

const sendWalls: number[] = [];
let cpu = process.cpuUsage();
for (let i = 0; i < messages; i++) {
  const t0 = performance.now();
  await send();
  sendWalls.push(performance.now() - t0);
}
const sendCpu = report('send alone', messages, process.cpuUsage(cpu), `, wall p50 ${median(sendWalls)} ms`);
since = (await call('GET', `/_matrix/client/v3/sync?since=${since}&timeout=0${filterParam}`, undefined, bob.token)).next_batch;

// The same work without a wait: send, then sync at once (what holding and waking a poll adds is the difference).
cpu = process.cpuUsage();
for (let i = 0; i < messages; i++) {
  await send();
  const body = await call('GET', `/_matrix/client/v3/sync?since=${since}&timeout=0${filterParam}`, undefined, bob.token);
  if ((body.rooms?.join?.[roomId]?.timeline?.events ?? []).length !== 1) throw new Error(`sync after a send: ${JSON.stringify(body)}`);
  since = body.next_batch;
}
const unwaited = report('send, then sync with timeout=0', messages, process.cpuUsage(cpu));

const walls: number[] = [];
process.stdout.write(`woken syncs start at ${performance.now().toFixed(0)} ms\n`);
cpu = process.cpuUsage();
for (let i = 0; i < messages; i++) walls.push(await wokenRound());
const usage = process.cpuUsage(cpu);
walls.sort((a, b) => a - b);
const q = (p: number) => walls[Math.min(walls.length - 1, Math.floor(p * walls.length))].toFixed(3);
// The 1 ms pause per round is idle time, not CPU.
const both = report('send + woken sync', messages, usage, `, wall send→sync p50 ${q(0.5)} ms, p90 ${q(0.9)} ms`);
process.stdout.write(`woken sync alone (difference): CPU ${(both - sendCpu).toFixed(3)} ms/sync, of which holding and waking the poll ${(both - unwaited).toFixed(3)}\n`);

await hs.stop();
await kv.close();
await rm(dir, { recursive: true, force: true });

/**
 * The same phases with the client in a child process over HTTP. The child says where each phase starts and ends
 * (IPC), and this process takes its own CPU time at those points.
 */
async function overHttp(): Promise<void> {
  const host = await serveHttp({ host: '127.0.0.1', port: 0, fetch: hs.fetch, handle: hs.handle, handlePaths: ['/_matrix/'] });
  const code = `
    const http = require('node:http');
    const [base, room, alice, bob, filterParam, since0, n] = JSON.parse(process.argv[1]);
    const sendAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const syncAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const req = (agent, method, path, token, body) => new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body);
      const headers = { authorization: 'Bearer ' + token };
      if (data !== undefined) { headers['content-type'] = 'application/json'; headers['content-length'] = Buffer.byteLength(data); }
      const r = http.request(base + path, { method, agent, headers }, (res) => {
        let t = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (t += c));
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(t)) : reject(new Error(method + ' ' + path + ': ' + t))));
      });
      r.on('error', reject);
      r.end(data);
    });
    let since = since0, seq = 0;
    const send = () => { const i = seq++; return req(sendAgent, 'PUT', '/_matrix/client/v3/rooms/' + encodeURIComponent(room) + '/send/m.room.message/h' + i, alice, { msgtype: 'm.text', body: 'message ' + i }); };
    const poll = (timeout) => req(syncAgent, 'GET', '/_matrix/client/v3/sync?since=' + since + '&timeout=' + timeout + filterParam, bob);
    const woken = async () => {
      const p = poll(30000);
      await new Promise((r) => setTimeout(r, 1));
      const t0 = performance.now();
      await send();
      let body = await p;
      while (((((body.rooms || {}).join || {})[room] || {}).timeline || { events: [] }).events.length === 0 && ((body.presence || {}).events || []).length > 0) {
        since = body.next_batch;
        body = await poll(30000);
      }
      const ms = performance.now() - t0;
      const evs = ((((body.rooms || {}).join || {})[room] || {}).timeline || {}).events || [];
      if (evs.length !== 1) throw new Error('woken sync carried ' + evs.length + ' events');
      since = body.next_batch;
      return ms;
    };
    const mark = (m) => new Promise((r) => { process.once('message', r); process.send(m); });
    const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    (async () => {
      for (let i = 0; i < 300; i++) await woken();
      for (let i = 0; i < 200; i++) await send();
      since = (await poll(0)).next_batch;
      const sw = [];
      await mark({ phase: 'send', start: true });
      for (let i = 0; i < n; i++) { const t0 = performance.now(); await send(); sw.push(performance.now() - t0); }
      await mark({ phase: 'send', wall: median(sw) });
      since = (await poll(0)).next_batch;
      const ww = [];
      await mark({ phase: 'woken', start: true });
      for (let i = 0; i < n; i++) ww.push(await woken());
      await mark({ phase: 'woken', wall: median(ww) });
      sendAgent.destroy(); syncAgent.destroy();
    })().catch((e) => { console.error(e); process.exit(1); });
  `;
  const child = fork('-e', [], {
    execArgv: ['-e', code, JSON.stringify([host.url, roomId, alice.token, bob.token, filterParam, since, messages])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const cpuMs: Record<string, number> = {};
  let cpu = process.cpuUsage();
  child.on('message', (m: { phase: string; start?: boolean; wall?: number }) => {
    if (m.start) cpu = process.cpuUsage();
    else {
      const u = process.cpuUsage(cpu);
      cpuMs[m.phase] = (u.user + u.system) / 1000 / messages;
      const label = m.phase === 'send' ? 'send alone over HTTP' : 'send + woken sync over HTTP';
      process.stdout.write(`${label}: ${messages} ops, server CPU ${cpuMs[m.phase].toFixed(3)} ms/op, wall ${m.phase === 'send' ? '' : 'send→sync '}p50 ${m.wall!.toFixed(3)} ms\n`);
    }
    child.send('go');
  });
  const rc = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (rc !== 0) throw new Error(`client exited with ${rc}`);
  process.stdout.write(`woken sync alone over HTTP (difference): server CPU ${(cpuMs.woken - cpuMs.send).toFixed(3)} ms/sync\n`);
  await host.close();
}
