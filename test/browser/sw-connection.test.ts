/**
 * The message transport's connections (src/browser/sw-fetch.ts, sw/homeserver-host.ts `Connection`): requests after
 * the first go over one open port instead of one message event each, the worker holds a lease while the page uses
 * it, and lets go when idle or when a new version waits to take over. (Playwright's DevTools connection keeps the
 * worker alive, so what a lease does for the worker's lifetime is tested without it: sw-connection-lifetime.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { appendFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchChromium, openHomeserverPage, registerUser, startApp, stopServiceWorkers, swStats } from './helpers/browser.js';
import type { RunningApp } from './helpers/browser.js';
import { LEASE_IDLE_MS } from '../../sw/homeserver-host.js';

let app: RunningApp;
let browser: Browser;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  [app, browser] = await Promise.all([startApp(), launchChromium()]);
});
afterAll(async () => {
  await Promise.allSettled(contexts.map((c) => c.close()));
});

async function newPage(url = app.url): Promise<Page> {
  const ctx = await browser.newContext();
  contexts.push(ctx);
  return openHomeserverPage(ctx, url);
}

/** `n` message sends into a new room by message, one after another; their event IDs. */
async function sendByMessage(page: Page, token: string, n: number, tag: string): Promise<string[]> {
  return page.evaluate(
    async ({ token, n, tag }) => {
      const swFetch = globalThis.hearthTest.serviceWorkerFetch;
      const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      const realFetch = globalThis.fetch;
      globalThis.fetch = () => Promise.reject(new Error('fetch was used'));
      try {
        const room = (await (await swFetch('/_matrix/client/v3/createRoom', { method: 'POST', headers: auth, body: '{}' })).json()).room_id as string;
        const ids: string[] = [];
        for (let i = 0; i < n; i++) {
          const res = await swFetch(`/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/${tag}-${i}`, {
            method: 'PUT',
            headers: auth,
            body: JSON.stringify({ msgtype: 'm.text', body: `${tag} ${i}` }),
          });
          ids.push((await res.json()).event_id as string);
        }
        return ids;
      } finally {
        globalThis.fetch = realFetch;
      }
    },
    { token, n, tag },
  );
}

describe('message transport connections', () => {
  it("a connection replaced before its Web Lock was granted does not keep the lock: the new one gets it", async () => {
    const page = await newPage();
    const words = await page.evaluate(async () => {
      const worker = navigator.serviceWorker.controller!;
      const conn = crypto.randomUUID();
      const name = `hearth-connection:${conn}`;
      // The page holds the connection's lock first, so the worker's request for it queues.
      let release!: () => void;
      const held = new Promise<void>((granted) => {
        void navigator.locks.request(name, () => {
          granted();
          return new Promise<void>((r) => (release = r));
        });
      });
      await held;
      const open = (): { port: MessagePort; words: string[] } => {
        const ch = new MessageChannel();
        const words: string[] = [];
        ch.port1.onmessage = (e) => words.push(e.data?.type ?? `answer ${e.data?.status}`);
        const req = { type: 'hearth:request', method: 'GET', url: `${location.origin}/_matrix/client/versions`, headers: [], body: null, id: 0, conn };
        worker.postMessage(req, [ch.port2]);
        return { port: ch.port1, words };
      };
      const a = open();
      await new Promise((r) => setTimeout(r, 200));
      // The same connection ID again: the worker closes the first connection, whose lock request is still queued.
      const b = open();
      await new Promise((r) => setTimeout(r, 200));
      release();
      const deadline = Date.now() + 5_000;
      while (!b.words.includes('connected') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const state = await navigator.locks.query();
      return { a: a.words, b: b.words, pending: state.pending?.filter((l) => l.name === name).length ?? 0 };
    });
    expect(words.b).toContain('connected');
    expect(words.a).not.toContain('connected');
    expect(words.pending).toBe(0);
  });

  it('sends sequential requests over one connection, not one message event each', async () => {
    const page = await newPage();
    const { token } = await registerUser(page, 'conn');
    const before = await swStats(page);
    const ids = await sendByMessage(page, token, 30, 'seq');
    const after = await swStats(page);
    expect(new Set(ids).size).toBe(30);
    expect(ids.every((id) => id.startsWith('$'))).toBe(true);
    expect(after.served - before.served).toBe(31); // createRoom and 30 sends, all answered by the worker
    expect(after.connections - before.connections).toBe(1);
  });

  it('fails a request running when the worker stops, and the next one reconnects to the new worker', async () => {
    const page = await newPage();
    const { token } = await registerUser(page, 'stopper');
    await sendByMessage(page, token, 2, 'warm');
    const first = await swStats(page);
    await page.evaluate((token) => {
      const auth = { authorization: `Bearer ${token}` };
      const swFetch = globalThis.hearthTest.serviceWorkerFetch;
      (globalThis as any).__poll = swFetch('/_matrix/client/v3/sync?timeout=0', { headers: auth })
        .then((r) => r.json())
        .then((b) => swFetch(`/_matrix/client/v3/sync?timeout=20000&since=${b.next_batch}`, { headers: auth }))
        .then(
          (r) => `answered ${r.status}`,
          (e: Error) => `${e.name}: ${e.message}`,
        );
    }, token);
    await expect.poll(async () => (await swStats(page)).inFlight, { timeout: 10_000 }).toBe(1);
    await stopServiceWorkers(page);
    const poll = (await page.evaluate(() => (globalThis as any).__poll)) as string;
    expect(poll).toMatch(/^TypeError/);
    const ids = await sendByMessage(page, token, 3, 'after');
    expect(ids).toHaveLength(3);
    const now = await swStats(page);
    expect(now.instanceId).not.toBe(first.instanceId);
    expect(now.connections).toBe(1); // a fresh worker, one new connection
  });

  it('lets the lease go after the connection was idle, and the next request opens a new connection', async () => {
    const page = await newPage();
    const { token } = await registerUser(page, 'idler');
    const before = await swStats(page);
    await sendByMessage(page, token, 2, 'one');
    await page.waitForTimeout(LEASE_IDLE_MS + 1_500);
    await sendByMessage(page, token, 2, 'two');
    const after = await swStats(page);
    expect(after.instanceId).toBe(before.instanceId);
    expect(after.connections - before.connections).toBe(2);
  });

  it('lets an update take over while a page keeps sending by message', async () => {
    const { took, run } = await updateWhileSending('updater', '');
    expect(took.fromInstalled).toBeLessThan(LEASE_IDLE_MS);
    expect(took.fromUpdate).toBeLessThan(LEASE_IDLE_MS);
    expect(run.ok).toBeGreaterThan(5);
    // At most the request in flight at the switch fails (as a network error the client retries).
    expect(run.failed.length).toBeLessThanOrEqual(1);
  });

  it('lets an update take over after an install slower than the drain window, while a page keeps sending', async () => {
    // Installing outlasts the old version's first DRAIN_MAX_MS (10 s, as on a loaded machine precaching the app):
    // the old one must keep letting its leases go until the new one took over, not stop draining on a timer.
    const slow = `self.addEventListener('install', (e) => e.waitUntil(new Promise((r) => setTimeout(r, ${SLOW_INSTALL_MS}))));`;
    const { took, run } = await updateWhileSending('slowinstall', slow);
    expect(took.fromInstalled).toBeLessThan(LEASE_IDLE_MS);
    expect(run.ok).toBeGreaterThan(5);
    expect(run.failed.length).toBeLessThanOrEqual(1);
  });
});

/** Longer than the old version's first drain window (homeserver-host.ts DRAIN_MAX_MS, 10 s). */
const SLOW_INSTALL_MS = 12_000;

/**
 * Serves a copy of the app, keeps a page sending a request every 100 ms by message, then changes the worker script
 * (appending `extra` to it) and asks for an update: how long the new version took to take over (from the update
 * call and from reaching `installed`), and how the page's requests fared.
 */
async function updateWhileSending(user: string, extra: string): Promise<{ took: { fromUpdate: number; fromInstalled: number }; run: { ok: number; failed: string[] } }> {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-app-copy-'));
  const appDir = join(dir, 'app');
  cpSync(app.appDir, appDir, { recursive: true });
  const app2 = await startApp({ appDir });
  try {
    const page = await newPage(app2.url);
    const { token } = await registerUser(page, user);
    const old = await swStats(page);
    // A request every 100 ms by message: without letting go, each would keep the old version's lease.
    await page.evaluate((token) => {
      const run = { stop: false, ok: 0, failed: [] as string[], done: undefined as unknown };
      run.done = (async () => {
        const swFetch = globalThis.hearthTest.serviceWorkerFetch;
        while (!run.stop) {
          try {
            const r = await swFetch('/_matrix/client/v3/account/whoami', { headers: { authorization: `Bearer ${token}` } });
            if (r.status === 200) run.ok++;
            else run.failed.push(String(r.status));
          } catch (e) {
            run.failed.push(String(e));
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      (globalThis as any).__run = run;
    }, token);
    await page.waitForTimeout(500);
    appendFileSync(join(appDir, 'sw.js'), `\n// a new version\n${extra}\n`);
    const took = await page.evaluate(async () => {
      const t0 = performance.now();
      let installed = NaN;
      const changed = new Promise((r) => navigator.serviceWorker.addEventListener('controllerchange', r, { once: true }));
      const reg = (await navigator.serviceWorker.getRegistration())!;
      reg.addEventListener('updatefound', () => {
        const w = reg.installing!;
        w.addEventListener('statechange', () => {
          if (w.state === 'installed') installed = performance.now();
        });
      });
      await reg.update();
      await changed;
      const t1 = performance.now();
      // Reached `installed` unseen (the update call resolved late): count from the update call.
      return { fromUpdate: t1 - t0, fromInstalled: t1 - (Number.isNaN(installed) ? t0 : installed) };
    });
    await page.waitForTimeout(500);
    const run = (await page.evaluate(async () => {
      const run = (globalThis as any).__run;
      run.stop = true;
      await run.done;
      return { ok: run.ok, failed: run.failed };
    })) as { ok: number; failed: string[] };
    const now = await swStats(page);
    expect(now.instanceId).not.toBe(old.instanceId);
    console.log(
      `update with a connection in use${extra ? ' (slow install)' : ''}: took over ${Math.round(took.fromUpdate)} ms after the update call, ` +
        `${Math.round(took.fromInstalled)} ms after installed; ${run.ok} answered, failed: ${JSON.stringify(run.failed)}`,
    );
    return { took, run };
  } finally {
    await app2.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
