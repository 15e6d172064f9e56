/**
 * A message-transport connection keeps the worker alive while it is used (src/browser/sw-fetch.ts,
 * sw/homeserver-host.ts `Connection`): requests posted on the connection's port are no events, so only the lease
 * (the connecting event's `waitUntil`) stops Chromium from stopping the worker ~30 s after its last event. Run in a
 * Chromium with no DevTools connection (DevTools keeps workers alive; see lifetime.test.ts), reporting to a local
 * endpoint: a long poll longer than the idle timeout, sent on an open connection, must be answered by the same
 * worker; then, after the page stays idle past the timeout, the next request starts a new worker and still works.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject, it } from 'vitest';
import { CHROMIUM_ARGS, CHROMIUM_PATH, startApp } from './helpers/browser.js';
import type { RunningApp } from './helpers/browser.js';

/** Longer than Chromium's 30 s idle timeout, with a margin for a loaded machine. */
const LONG_MS = 40_000;

interface Report {
  phase: string;
  error?: string;
  poll?: { status: number; ms: number; events: number };
  instances?: string[];
  connections?: number[];
  sent?: string;
}

let chromium: ChildProcess | undefined;
let server: Server | undefined;
let app: RunningApp | undefined;
const dirs: string[] = [];

afterAll(async () => {
  if (chromium && chromium.exitCode === null && chromium.signalCode === null) {
    const gone = new Promise((r) => chromium!.once('exit', r));
    chromium.kill('SIGTERM');
    const t = setTimeout(() => chromium!.kill('SIGKILL'), 5_000);
    await gone;
    clearTimeout(t);
  }
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  await app?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function pageScript(reportUrl: string, longMs: number): string {
  return `
const realFetch = window.fetch.bind(window);
const report = (data) => realFetch(${JSON.stringify(reportUrl)}, { method: 'POST', mode: 'no-cors', body: JSON.stringify(data) });
const stats = () => new Promise((resolve) => {
  const ch = new MessageChannel();
  ch.port1.onmessage = (e) => resolve(e.data);
  navigator.serviceWorker.controller.postMessage({ type: 'hearth:stats' }, [ch.port2]);
});
const swFetch = hearthTest.serviceWorkerFetch;
const call = async (method, path, body, token) => {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = 'Bearer ' + token;
  const res = await swFetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const json = await res.json();
  if (res.status !== 200) throw new Error(method + ' ' + path + ': ' + res.status + ' ' + JSON.stringify(json));
  return json;
};
(async () => {
  try {
    await hearthTest.ensureHomeserver();
    // The page's own fetch is off: only the message transport may answer.
    window.fetch = () => Promise.reject(new Error('fetch was used'));
    const reg = await call('POST', '/_matrix/client/v3/register', { username: 'leased', password: 'leased-password', auth: { type: 'm.login.dummy' } });
    const token = reg.access_token;
    const { room_id } = await call('POST', '/_matrix/client/v3/createRoom', { name: 'lease' }, token);
    const since = (await call('GET', '/_matrix/client/v3/sync?timeout=0', undefined, token)).next_batch;
    const s0 = await stats();
    // On the open connection: no message event reaches the worker for ${longMs} ms.
    const t0 = performance.now();
    const res = await swFetch('/_matrix/client/v3/sync?timeout=${longMs}&since=' + since, { headers: { authorization: 'Bearer ' + token } });
    const body = await res.json();
    const poll = { status: res.status, ms: performance.now() - t0, events: Object.keys((body.rooms && body.rooms.join) || {}).length };
    const s1 = await stats();
    // Idle past the timeout: the lease lets go, the browser stops the worker; the next request starts a new one.
    await new Promise((r) => setTimeout(r, ${longMs}));
    const sent = (await call('PUT', '/_matrix/client/v3/rooms/' + encodeURIComponent(room_id) + '/send/m.room.message/after', { msgtype: 'm.text', body: 'after' }, token)).event_id;
    const s2 = await stats();
    await report({ phase: 'done', poll, sent, instances: [s0.instanceId, s1.instanceId, s2.instanceId], connections: [s0.connections, s1.connections, s2.connections] });
  } catch (e) {
    await report({ phase: 'done', error: String(e && e.stack || e) });
  }
})();
`;
}

it(
  'a long poll on an open connection outlives the idle timeout, and a connection after an idle stop works',
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hearth-conn-lifetime-'));
    dirs.push(dir);
    const appDir = join(dir, 'app');
    cpSync(inject('hearthAppDir'), appDir, { recursive: true });
    copyFileSync(inject('hearthHarness'), join(appDir, 'conn-harness.js'));
    let done!: (r: Report) => void;
    const finished = new Promise<Report>((r) => (done = r));
    server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (s: string) => (body += s));
      req.on('end', () => {
        res.writeHead(204, { 'access-control-allow-origin': '*' }).end();
        try {
          const r = JSON.parse(body) as Report;
          if (r.phase === 'done') done(r);
        } catch {
          // not ours
        }
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const reportUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/report`;
    writeFileSync(join(appDir, 'conn-test.js'), pageScript(reportUrl, LONG_MS));
    writeFileSync(
      join(appDir, 'conn.html'),
      '<!doctype html><meta charset="utf-8"><title>lease</title><script src="/conn-harness.js"></script><script src="/conn-test.js"></script>',
    );
    app = await startApp({ appDir });
    const profile = mkdtempSync(join(tmpdir(), 'hearth-conn-profile-'));
    dirs.push(profile);
    chromium = spawn(CHROMIUM_PATH, ['--headless', ...CHROMIUM_ARGS, `--user-data-dir=${profile}`, `${app.url}/conn.html`], { stdio: 'ignore' });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      finished,
      new Promise<Report>((_, reject) => (timer = setTimeout(() => reject(new Error('no report from the page')), 2 * LONG_MS + 60_000))),
    ]);
    clearTimeout(timer);
    expect(r.error).toBeUndefined();
    // The long poll ran its course on the same worker, over the connection opened before it.
    expect(r.poll!.status).toBe(200);
    expect(r.poll!.ms).toBeGreaterThan(LONG_MS - 2_000);
    expect(r.instances![1]).toBe(r.instances![0]);
    expect(r.connections![1]).toBe(r.connections![0]);
    // After the idle stop: a new worker, a new connection, the send acknowledged.
    expect(r.instances![2]).not.toBe(r.instances![1]);
    expect(r.connections![2]).toBe(1);
    expect(r.sent).toMatch(/^\$/);
  },
  2 * LONG_MS + 120_000,
);
