/**
 * The service worker's real lifetime: Chromium stops an idle worker ~30 s after its last event, and DevTools (so
 * Playwright) keeps it alive (PLATFORM-NOTES). So this test starts Chromium itself with no DevTools connection; the
 * page runs the scenario on its own and reports to a local HTTP endpoint:
 *
 * register → create a room → send → ask the worker who it is → stay idle (no event reaches the worker) for
 * IDLE_MS → send again → ask again. Expected: a different worker instance (it was stopped and started again), the
 * same server, the session still valid, both messages stored once, and the start-up cost of the restarted worker.
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
const IDLE_MS = 40_000;

interface Report {
  error?: string;
  before?: { instanceId: string; serverName: string };
  after?: { instanceId: string; serverName: string; startup: { totalMs: number } };
  whoami?: number;
  bodies?: string[];
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

/** The scenario, run by the page itself (plain browser JS; the harness provides ensureHomeserver). */
function pageScript(reportUrl: string, idleMs: number): string {
  return `
const report = (data) => fetch(${JSON.stringify(reportUrl)}, { method: 'POST', mode: 'no-cors', body: JSON.stringify(data) });
const stats = () => new Promise((resolve) => {
  const ch = new MessageChannel();
  ch.port1.onmessage = (e) => resolve(e.data);
  navigator.serviceWorker.controller.postMessage({ type: 'hearth:stats' }, [ch.port2]);
});
const call = async (method, path, body, token) => {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = 'Bearer ' + token;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const json = await res.json();
  if (res.status !== 200) throw new Error(method + ' ' + path + ': ' + res.status + ' ' + JSON.stringify(json));
  return json;
};
(async () => {
  try {
    await hearthTest.ensureHomeserver();
    const reg = await call('POST', '/_matrix/client/v3/register', { username: 'idle', password: 'idle-password', auth: { type: 'm.login.dummy' } });
    const token = reg.access_token;
    const { room_id } = await call('POST', '/_matrix/client/v3/createRoom', { name: 'idle' }, token);
    const room = encodeURIComponent(room_id);
    await call('PUT', '/_matrix/client/v3/rooms/' + room + '/send/m.room.message/1', { msgtype: 'm.text', body: 'before idle' }, token);
    const before = await stats();
    await report({ phase: 'idle', before });
    await new Promise((r) => setTimeout(r, ${idleMs}));
    const who = await fetch('/_matrix/client/v3/account/whoami', { headers: { authorization: 'Bearer ' + token } });
    await call('PUT', '/_matrix/client/v3/rooms/' + room + '/send/m.room.message/2', { msgtype: 'm.text', body: 'after idle' }, token);
    const msgs = await call('GET', '/_matrix/client/v3/rooms/' + room + '/messages?dir=f&limit=100', undefined, token);
    const after = await stats();
    const bodies = msgs.chunk.filter((e) => e.type === 'm.room.message').map((e) => e.content.body);
    await report({ phase: 'done', before, after, whoami: who.status, bodies });
  } catch (e) {
    await report({ phase: 'done', error: String(e && e.stack || e) });
  }
})();
`;
}

it(
  'an idle worker is stopped by the browser and the homeserver carries on from IndexedDB',
  async () => {
    // A copy of the built app plus the scenario page: the production build itself is not touched.
    const dir = mkdtempSync(join(tmpdir(), 'hearth-lifetime-'));
    dirs.push(dir);
    const appDir = join(dir, 'app');
    cpSync(inject('hearthAppDir'), appDir, { recursive: true });
    copyFileSync(inject('hearthHarness'), join(appDir, 'lifetime-harness.js'));

    const reports: Report[] = [];
    let done!: (r: Report) => void;
    const finished = new Promise<Report>((r) => (done = r));
    server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (s: string) => (body += s));
      req.on('end', () => {
        res.writeHead(204, { 'access-control-allow-origin': '*' }).end();
        try {
          const r = JSON.parse(body) as Report & { phase: string };
          reports.push(r);
          if (r.phase === 'done') done(r);
        } catch {
          // not ours
        }
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const reportUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/report`;
    writeFileSync(join(appDir, 'lifetime-test.js'), pageScript(reportUrl, IDLE_MS));
    writeFileSync(
      join(appDir, 'lifetime.html'),
      '<!doctype html><meta charset="utf-8"><title>lifetime</title><script src="/lifetime-harness.js"></script><script src="/lifetime-test.js"></script>',
    );
    app = await startApp({ appDir });

    // Chromium with no DevTools connection at all: no --remote-debugging-*, no Playwright.
    const profile = mkdtempSync(join(tmpdir(), 'hearth-lifetime-profile-'));
    dirs.push(profile);
    chromium = spawn(CHROMIUM_PATH, ['--headless', ...CHROMIUM_ARGS, `--user-data-dir=${profile}`, `${app.url}/lifetime.html`], {
      stdio: 'ignore',
    });

    const timeout = new Promise<Report>((_, reject) =>
      setTimeout(() => reject(new Error(`no final report; got ${JSON.stringify(reports)}`)), IDLE_MS + 60_000),
    );
    const r = await Promise.race([finished, timeout]);
    expect(r.error).toBeUndefined();
    expect(r.before!.instanceId).toBeDefined();
    expect(r.after!.instanceId).not.toBe(r.before!.instanceId); // stopped while idle, started again
    expect(r.after!.serverName).toBe(r.before!.serverName); // same key, from IndexedDB
    expect(r.whoami).toBe(200); // nobody logged out
    expect(r.bodies).toEqual(['before idle', 'after idle']);
    console.log(`service worker start-up after an idle stop: ${JSON.stringify(r.after!.startup)}`);
  },
  IDLE_MS + 120_000,
);
