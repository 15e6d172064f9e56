/**
 * The in-page homeserver in real Chromium: the built app served by `hearth start`, its service worker answering
 * every `/_matrix` request of the page from IndexedDB (sw/sw.ts). Each test gets its own browser context, so its own
 * service worker and database: a separate homeserver.
 *
 * How we know the service worker answered and not the Node peer behind it: user IDs carry the server name, and the
 * worker's homeserver has its own (its key lives in the browser's IndexedDB); some checks run with the network off.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page, Response } from 'playwright-core';
import { randomBytes } from 'node:crypto';
import { appendFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  api,
  cdp,
  ensureControlled,
  injectHarness,
  launchChromium,
  openHomeserverPage,
  registerUser,
  startApp,
  stopServiceWorkers,
  swStats,
} from './helpers/browser.js';
import type { RunningApp } from './helpers/browser.js';

let app: RunningApp;
let browser: Browser;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  [app, browser] = await Promise.all([startApp(), launchChromium()]);
});
afterAll(async () => {
  await Promise.allSettled(contexts.map((c) => c.close()));
});

async function newContext(): Promise<BrowserContext> {
  const ctx = await browser.newContext();
  contexts.push(ctx);
  return ctx;
}

async function newPage(): Promise<Page> {
  return openHomeserverPage(await newContext(), app.url);
}

function domainOf(userId: string): string {
  return userId.slice(userId.indexOf(':') + 1);
}

async function createRoom(page: Page, token: string, body: object = {}): Promise<string> {
  const r = await api(page, 'POST', '/_matrix/client/v3/createRoom', body, token);
  expect(r.status).toBe(200);
  return r.body.room_id as string;
}

async function send(page: Page, token: string, roomId: string, txnId: string, text: string): Promise<string> {
  const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txnId}`;
  const r = await api(page, 'PUT', path, { msgtype: 'm.text', body: text }, token);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.event_id as string;
}

/** Every m.room.message body in the room, oldest first, paginating /messages backwards from the end. */
async function allMessages(page: Page, token: string, roomId: string): Promise<{ id: string; body: string }[]> {
  return page.evaluate(
    async ({ token, roomId }) => {
      const out: { id: string; body: string }[] = [];
      let from: string | undefined;
      for (;;) {
        const q = new URLSearchParams({ dir: 'b', limit: '50' });
        if (from) q.set('from', from);
        const res = await fetch(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?${q}`, {
          headers: { authorization: `Bearer ${token}` },
        });
        if (res.status !== 200) throw new Error(`/messages ${res.status}: ${await res.text()}`);
        const body = (await res.json()) as { chunk: { event_id: string; type: string; content: { body?: string } }[]; end?: string };
        for (const e of body.chunk) if (e.type === 'm.room.message') out.push({ id: e.event_id, body: e.content.body ?? '' });
        if (!body.end || body.chunk.length === 0) break;
        from = body.end;
      }
      return out.reverse();
    },
    { token, roomId },
  );
}

describe('the service worker serves the Client-Server API', () => {
  it('answers /versions and registration itself, with its own server name', async () => {
    const page = await newPage();
    const versions = await api(page, 'GET', '/_matrix/client/versions');
    expect(versions.status).toBe(200);
    expect(versions.body.versions).toContain('v1.19');

    const alice = await registerUser(page, 'alice');
    const stats = await swStats(page);
    expect(stats.serverName).toBeDefined();
    expect(domainOf(alice.userId)).toBe(stats.serverName);
    expect(stats.serverName).not.toBe(app.serverName); // not the Node peer's homeserver
    expect(stats.state).toBe('running');
    expect(stats.served).toBeGreaterThanOrEqual(2);
    expect(stats.startup!.totalMs).toBeGreaterThan(0);
    console.log(`service worker start-up (first start, new key): ${JSON.stringify(stats.startup)}`);

    const wk = await api(page, 'GET', '/.well-known/matrix/client');
    expect(wk.status).toBe(200);
    expect(wk.body['m.homeserver'].base_url).toBe(app.url);
  });

  it('answers unknown /_matrix paths with 404 M_UNRECOGNIZED and never goes to the network', async () => {
    const ctx = await newContext();
    const page = await openHomeserverPage(ctx, app.url);
    await ctx.setOffline(true);
    for (const path of ['/_matrix/client/v3/no-such-endpoint', '/_matrix/nothing', '/_matrix/media/v3/config', '/.well-known/matrix/nothing']) {
      const r = await api(page, 'GET', path);
      expect(r.status, path).toBe(404);
      expect(r.body.errcode, path).toBe('M_UNRECOGNIZED');
    }
    // Wrong method on a known path: 405, still from the worker.
    const r = await api(page, 'DELETE', '/_matrix/client/versions');
    expect(r.status).toBe(405);
    expect(r.body.errcode).toBe('M_UNRECOGNIZED');
    // Bad input gets the spec's error codes through the worker too.
    const bad = await page.evaluate(async () => {
      const res = await fetch('/_matrix/client/v3/register', { method: 'POST', body: '{not json' });
      return { status: res.status, body: (await res.json()) as { errcode: string } };
    });
    expect(bad.status).toBe(400);
    expect(bad.body.errcode).toBe('M_NOT_JSON');
    const noToken = await api(page, 'GET', '/_matrix/client/v3/account/whoami');
    expect(noToken.status).toBe(401);
    expect(noToken.body.errcode).toBe('M_MISSING_TOKEN');
    const badToken = await api(page, 'GET', '/_matrix/client/v3/account/whoami', undefined, 'nope');
    expect(badToken.status).toBe(401);
    expect(badToken.body.errcode).toBe('M_UNKNOWN_TOKEN');
    await ctx.setOffline(false);
  });
});

describe('page glue (src/browser/register-sw.ts)', () => {
  it('takes control again after a hard reload, which bypasses the worker', async () => {
    const page = await newPage();
    const session = await cdp(page);
    let document: Response | undefined;
    try {
      const navigated = page.waitForResponse((r) => r.request().isNavigationRequest());
      const loaded = page.waitForEvent('load');
      await session.send('Page.reload', { ignoreCache: true }); // shift+reload
      document = await navigated;
      await loaded;
    } finally {
      await session.detach().catch(() => undefined);
    }
    expect(document!.fromServiceWorker()).toBe(false); // the worker was bypassed
    await injectHarness(page);
    await page.evaluate(() => globalThis.hearthTest.ensureHomeserver());
    expect(await page.evaluate(() => globalThis.hearthTest.isControlled())).toBe(true);
    const r = await api(page, 'GET', '/_matrix/client/versions');
    expect(r.status).toBe(200);
    expect((await swStats(page)).served).toBeGreaterThan(0);
  });
});

describe('matrix-js-sdk inside the page', () => {
  it('registers, creates a room, sends, syncs and paginates against the page origin', async () => {
    const page = await newPage();
    const result = await page.evaluate(async () => {
      const { sdk, waitFor, quietLogger } = globalThis.hearthTest;
      const baseUrl = location.origin;
      const anon = sdk.createClient({ baseUrl, logger: quietLogger });
      const reg = await anon.registerRequest({ username: 'sdk-user', password: 'sdk-password', auth: { type: 'm.login.dummy' } });
      const client = sdk.createClient({
        baseUrl,
        userId: reg.user_id,
        accessToken: reg.access_token,
        deviceId: reg.device_id,
        logger: quietLogger,
        timelineSupport: true,
      });
      const { room_id: roomId } = await client.createRoom({ name: 'in the page', preset: sdk.Preset.PrivateChat });
      const sent: string[] = [];
      for (let i = 0; i < 30; i++) {
        const r = await client.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: `message ${i}` });
        sent.push(r.event_id);
      }
      const prepared = waitFor(client, [sdk.ClientEvent.Sync], () => client.isInitialSyncComplete(), 'the first sync');
      await client.startClient({ initialSyncLimit: 5 });
      await prepared;
      const room = client.getRoom(roomId)!;
      const initial = room.getLiveTimeline().getEvents().filter((e) => e.getType() === 'm.room.message').length;

      // A message sent now (by another client of the same account) arrives through the running /sync long poll.
      const other = sdk.createClient({ baseUrl, userId: reg.user_id, accessToken: reg.access_token, logger: quietLogger });
      const { event_id: lateId } = await other.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: 'late' });
      await waitFor(client, [sdk.RoomEvent.Timeline], () => room.getLiveTimeline().getEvents().some((e) => e.getId() === lateId), 'the late message via sync');

      // Back-paginate to the start of the room.
      let more = true;
      let pages = 0;
      while (more && pages < 20) {
        more = await client.paginateEventTimeline(room.getLiveTimeline(), { backwards: true, limit: 10 });
        pages++;
      }
      const events = room.getLiveTimeline().getEvents();
      const bodies = events.filter((e) => e.getType() === 'm.room.message').map((e) => e.getContent().body as string);
      const ids = events.map((e) => e.getId());
      client.stopClient();
      return {
        userId: reg.user_id,
        initial,
        pages,
        bodies,
        sentAllSeen: sent.every((id) => ids.includes(id)),
        duplicates: ids.length - new Set(ids).size,
        hasCreate: events.some((e) => e.getType() === 'm.room.create'),
      };
    });
    expect(domainOf(result.userId)).toBe((await swStats(page)).serverName);
    expect(result.initial).toBeLessThanOrEqual(5);
    expect(result.bodies).toEqual([...Array.from({ length: 30 }, (_, i) => `message ${i}`), 'late']);
    expect(result.sentAllSeen).toBe(true);
    expect(result.duplicates).toBe(0);
    expect(result.hasCreate).toBe(true);
    expect(result.pages).toBeGreaterThan(1);
  });
});

describe('persistence and tabs', () => {
  it('keeps the account, rooms and messages across a reload', async () => {
    const page = await newPage();
    const bob = await registerUser(page, 'bob');
    const roomId = await createRoom(page, bob.token, { name: 'kept' });
    const sent = [await send(page, bob.token, roomId, 't1', 'before reload 1'), await send(page, bob.token, roomId, 't2', 'before reload 2')];
    const before = await swStats(page);

    await page.reload();
    await ensureControlled(page);
    const who = await api(page, 'GET', '/_matrix/client/v3/account/whoami', undefined, bob.token);
    expect(who.status).toBe(200);
    expect(who.body.user_id).toBe(bob.userId);
    const msgs = await allMessages(page, bob.token, roomId);
    expect(msgs.map((m) => m.id)).toEqual(sent);
    // Same key, same server name.
    expect((await swStats(page)).serverName).toBe(before.serverName);
    // The same txn ID after the reload is still recognised: no duplicate.
    expect(await send(page, bob.token, roomId, 't2', 'before reload 2')).toBe(sent[1]);
  });

  it('serves two tabs from one worker: every message reaches both tabs\' /sync once, none lost', async () => {
    const ctx = await newContext();
    const [tabA, tabB] = [await openHomeserverPage(ctx, app.url), await openHomeserverPage(ctx, app.url)];
    const carol = await registerUser(tabA, 'carol');
    const roomId = await createRoom(tabA, carol.token, { name: 'two tabs' });
    const N = 25;

    // Each tab runs a /sync loop that records the room's timeline event IDs, in order of arrival.
    const startSync = (tab: Page) =>
      tab.evaluate(
        async ({ token, roomId }) => {
          const filter = JSON.stringify({ room: { timeline: { limit: 1000 } } });
          const state = { ids: [] as string[], stop: false, limited: 0 };
          (globalThis as any).__sync = state;
          let since: string | undefined;
          void (async () => {
            while (!state.stop) {
              const q = new URLSearchParams({ timeout: '5000', filter });
              if (since) q.set('since', since);
              const res = await fetch(`/_matrix/client/v3/sync?${q}`, { headers: { authorization: `Bearer ${token}` } });
              const body = await res.json();
              since = body.next_batch;
              const tl = body.rooms?.join?.[roomId]?.timeline;
              if (tl?.limited && state.ids.length > 0) state.limited++;
              for (const e of tl?.events ?? []) if (e.type === 'm.room.message') state.ids.push(e.event_id);
            }
          })();
        },
        { token: carol.token, roomId },
      );
    await Promise.all([startSync(tabA), startSync(tabB)]);

    // Both tabs send at the same time, through the same worker.
    const sendMany = (tab: Page, label: string) =>
      tab.evaluate(
        async ({ token, roomId, label, n }) => {
          const ids: string[] = [];
          for (let i = 0; i < n; i++) {
            const res = await fetch(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${label}-${i}`, {
              method: 'PUT',
              headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
              body: JSON.stringify({ msgtype: 'm.text', body: `${label} ${i}` }),
            });
            ids.push(((await res.json()) as { event_id: string }).event_id);
          }
          return ids;
        },
        { token: carol.token, roomId, label, n: N },
      );
    const [fromA, fromB] = await Promise.all([sendMany(tabA, 'a'), sendMany(tabB, 'b')]);
    const sent = new Set([...fromA, ...fromB]);
    expect(sent.size).toBe(2 * N);

    for (const tab of [tabA, tabB]) {
      await tab.waitForFunction((n) => (globalThis as any).__sync.ids.length >= n, 2 * N, { timeout: 30_000 });
      const seen = await tab.evaluate(() => {
        const s = (globalThis as any).__sync as { ids: string[]; stop: boolean; limited: number };
        s.stop = true;
        return { ids: [...s.ids], limited: s.limited };
      });
      expect(seen.limited).toBe(0);
      expect(seen.ids.length).toBe(2 * N); // no duplicate
      expect(new Set(seen.ids)).toEqual(sent); // none lost
    }
    // Storage agrees: 2N messages, each tab's own in its sending order.
    const stored = (await allMessages(tabA, carol.token, roomId)).map((m) => m.id);
    expect(stored.length).toBe(2 * N);
    expect(stored.filter((id) => fromA.includes(id))).toEqual(fromA);
    expect(stored.filter((id) => fromB.includes(id))).toEqual(fromB);
  });
});

describe('offline', () => {
  it('reloads the app shell from the precache and keeps serving the API with the network off', async () => {
    const ctx = await newContext();
    const page = await openHomeserverPage(ctx, app.url);
    const dave = await registerUser(page, 'dave');
    const roomId = await createRoom(page, dave.token, { name: 'offline' });
    await send(page, dave.token, roomId, 'on', 'sent online');
    // The worker installed the precache before it activated; wait for it to control and be active.
    await page.evaluate(() => navigator.serviceWorker.ready);

    await ctx.setOffline(true);
    try {
      const shell = await page.reload();
      expect(shell?.status()).toBe(200);
      expect(shell?.fromServiceWorker()).toBe(true);
      const shellHtml = await page.content();
      expect(await page.locator('script[type="module"]').count()).toBeGreaterThan(0); // the built index.html
      await ensureControlled(page);
      await send(page, dave.token, roomId, 'off', 'sent offline');
      const msgs = await allMessages(page, dave.token, roomId);
      expect(msgs.map((m) => m.body)).toEqual(['sent online', 'sent offline']);
      // A deep link is an app route: the shell again, from the precache.
      const deep = await page.goto(`${app.url}/room/${encodeURIComponent(roomId)}`);
      expect(deep?.status()).toBe(200);
      expect(deep?.fromServiceWorker()).toBe(true);
      expect(await page.locator('script[type="module"]').getAttribute('src')).toBe(
        /<script type="module"[^>]*src="([^"]+)"/.exec(shellHtml)?.[1],
      );
      // Whereas a network request that is not ours fails (the network really is off).
      const outside = await page.evaluate(() => fetch('http://127.0.0.2:9/').then(() => 'reached', () => 'failed'));
      expect(outside).toBe('failed');
    } finally {
      await ctx.setOffline(false);
    }
  });
});

describe('service worker lifetime', () => {
  it('loses no acknowledged message when the worker is stopped mid-use, and the syncing client recovers', async () => {
    const page = await newPage();
    const first = (await swStats(page)).instanceId;
    // A matrix-js-sdk client syncs while the page sends 40 messages one after another through it.
    await page.evaluate(async () => {
      const { sdk, waitFor, quietLogger } = globalThis.hearthTest;
      const baseUrl = location.origin;
      const anon = sdk.createClient({ baseUrl, logger: quietLogger });
      const reg = await anon.registerRequest({ username: 'eve', password: 'eve-password', auth: { type: 'm.login.dummy' } });
      const client = sdk.createClient({ baseUrl, userId: reg.user_id, accessToken: reg.access_token, deviceId: reg.device_id, logger: quietLogger });
      const { room_id: roomId } = await client.createRoom({ name: 'restarts' });
      const prepared = waitFor(client, [sdk.ClientEvent.Sync], () => client.isInitialSyncComplete(), 'the first sync');
      await client.startClient({ initialSyncLimit: 10 });
      await prepared;
      const run = { client, roomId, token: reg.access_token, acked: [] as string[], failed: [] as string[], done: undefined as unknown };
      run.done = (async () => {
        for (let i = 0; i < 40; i++) {
          try {
            run.acked.push((await client.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: `restart ${i}` })).event_id);
          } catch (e) {
            run.failed.push(`${i}: ${String(e)}`);
          }
        }
      })();
      (globalThis as any).__run = run;
    });
    const acked = () => page.evaluate(() => (globalThis as any).__run.acked.length as number);
    const instances = new Set([first]);
    // Stop the worker (as the browser does when it is idle) twice while messages are in flight.
    for (const at of [10, 25]) {
      await page.waitForFunction((n) => (globalThis as any).__run.acked.length >= n, at, { timeout: 60_000 });
      await stopServiceWorkers(page);
      instances.add((await swStats(page)).instanceId);
    }
    await page.evaluate(() => (globalThis as any).__run.done);
    const result = await page.evaluate(async () => {
      const { sdk, waitFor } = globalThis.hearthTest;
      const run = (globalThis as any).__run as { client: any; roomId: string; token: string; acked: string[]; failed: string[] };
      const room = run.client.getRoom(run.roomId);
      const has = (id: string) => room.getLiveTimeline().getEvents().some((e: any) => e.getId() === id);
      // The sync loop survived the restarts: every acknowledged message reaches the client.
      await waitFor(run.client, [sdk.RoomEvent.Timeline], () => run.acked.every(has), 'all acknowledged messages via sync', 30_000);
      run.client.stopClient();
      return { acked: run.acked, failed: run.failed, token: run.token, roomId: run.roomId };
    });
    expect(result.failed).toEqual([]);
    expect(result.acked.length).toBe(40);
    expect(instances.size).toBe(3); // the worker really was stopped and started again, twice
    const stored = await allMessages(page, result.token, result.roomId);
    expect(stored.map((m) => m.id)).toEqual(result.acked); // all on disk, in order, no duplicate
    expect(stored.map((m) => m.body)).toEqual(Array.from({ length: 40 }, (_, i) => `restart ${i}`));
    const stats = await swStats(page);
    console.log(`service worker start-up after a stop (warm): ${JSON.stringify(stats.startup)}`);
  });

  it('hands over to an updated worker without logging anyone out or losing data', async () => {
    // A private copy of the build, so that "deploying" a new sw.js touches no other test.
    const dir = mkdtempSync(join(tmpdir(), 'hearth-app-copy-'));
    const appDir = join(dir, 'app');
    cpSync(app.appDir, appDir, { recursive: true });
    const app2 = await startApp({ appDir });
    try {
      const ctx = await newContext();
      const page = await openHomeserverPage(ctx, app2.url);
      const frank = await registerUser(page, 'frank');
      const roomId = await createRoom(page, frank.token, { name: 'update' });
      const before = await send(page, frank.token, roomId, 'u1', 'before the update');
      const old = await swStats(page);

      // A long poll is running on the old worker when the new version takes over.
      const since = (await api(page, 'GET', '/_matrix/client/v3/sync?timeout=0', undefined, frank.token)).body.next_batch as string;
      const polled = page.evaluate(
        async ({ token, since }) => {
          const t0 = performance.now();
          const res = await fetch(`/_matrix/client/v3/sync?timeout=60000&since=${since}`, { headers: { authorization: `Bearer ${token}` } });
          return { status: res.status, ms: performance.now() - t0 };
        },
        { token: frank.token, since },
      );

      appendFileSync(join(appDir, 'sw.js'), '\n// a new version\n');
      await page.evaluate(async () => {
        const changed = new Promise((r) => navigator.serviceWorker.addEventListener('controllerchange', r, { once: true }));
        await (await navigator.serviceWorker.getRegistration())!.update();
        await changed;
      });
      // Still logged in, data intact, served by the new instance.
      const who = await api(page, 'GET', '/_matrix/client/v3/account/whoami', undefined, frank.token);
      expect(who.status).toBe(200);
      const after = await send(page, frank.token, roomId, 'u2', 'after the update');
      expect((await allMessages(page, frank.token, roomId)).map((m) => m.id)).toEqual([before, after]);
      const now = await swStats(page);
      expect(now.instanceId).not.toBe(old.instanceId);
      expect(now.serverName).toBe(old.serverName);
      expect(now.startup!.lock).toBe('acquired'); // handed over, not stolen
      // The old instance ended its long poll early to hand over, instead of holding the database for a minute.
      const poll = await polled;
      expect(poll.status).toBe(200);
      expect(poll.ms).toBeLessThan(20_000);
      console.log(`update handover: lock waited ${now.startup!.lockMs} ms; old long poll ended after ${Math.round(poll.ms)} ms`);
    } finally {
      await app2.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('storage', () => {
  it('answers a full quota with 403 M_RESOURCE_LIMIT_EXCEEDED and keeps what was stored intact', async () => {
    // What a fresh profile uses (the precached app shell), measured in another context.
    const probe = await newPage();
    const status = await probe.evaluate(() => globalThis.hearthTest.storageStatus());
    expect(status.usage).toBeGreaterThan(0);
    expect(status.quota).toBeGreaterThan(status.usage!);

    // A small quota for this origin, set before the page loads. Chromium's IndexedDB takes the space it may use from
    // the quota manager in advance and trusts that allotment for up to 30 s (BucketContext::GetBucketSpaceToAllot),
    // and the worker opens its database and writes as soon as a page connects: an override set after that would
    // only apply later. (navigator.storage.estimate() does not show the override.)
    const page = await (await newContext()).newPage();
    const session = await cdp(page);
    const origin = app.url;
    try {
      await session.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: status.usage! + 1_500_000 });
      await page.goto(app.url);
      await ensureControlled(page);
      const gina = await registerUser(page, 'gina');
      const roomId = await createRoom(page, gina.token, { name: 'quota' });
      const kept = [await send(page, gina.token, roomId, 'k1', 'kept 1'), await send(page, gina.token, roomId, 'k2', 'kept 2')];
      const acked: string[] = [];
      let refused: { status: number; body: any } | undefined;
      for (let i = 0; i < 100 && !refused; i++) {
        // Incompressible (IndexedDB compresses values): 30 kB of random bytes as base64.
        const big = randomBytes(30_000).toString('base64');
        const r = await api(page, 'PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/big${i}`, { msgtype: 'm.text', body: big }, gina.token);
        if (r.status === 200) acked.push(r.body.event_id);
        else refused = r;
      }
      expect(refused, 'the quota was never hit').toBeDefined();
      expect(refused!.status).toBe(403);
      expect(refused!.body.errcode).toBe('M_RESOURCE_LIMIT_EXCEEDED');
      expect(refused!.body.admin_contact).toBe(`${origin}/`);
      expect(acked.length).toBeGreaterThan(5);
      // Reads still work at the limit, and show exactly what was acknowledged.
      const who = await api(page, 'GET', '/_matrix/client/v3/account/whoami', undefined, gina.token);
      expect(who.status).toBe(200);
      expect((await allMessages(page, gina.token, roomId)).map((m) => m.id)).toEqual([...kept, ...acked]);

      // Space again (and a worker start, which reopens the database under the new quota): the room works again.
      await session.send('Storage.overrideQuotaForOrigin', { origin });
      await stopServiceWorkers(page);
      const again = await send(page, gina.token, roomId, 'after', 'after the quota');
      expect((await allMessages(page, gina.token, roomId)).map((m) => m.id)).toEqual([...kept, ...acked, again]);
    } finally {
      await session.send('Storage.overrideQuotaForOrigin', { origin }).catch(() => undefined);
      await session.detach().catch(() => undefined);
    }
  });

  it('answers requests sent as messages (sw-fetch.ts) like fetches, statuses, aborts and all', async () => {
    const page = await newPage();
    const { userId, token } = await registerUser(page, 'messenger');
    const roomId = await createRoom(page, token);
    const r = await page.evaluate(
      async ({ token, roomId }) => {
        const swFetch = globalThis.hearthTest.serviceWorkerFetch;
        const auth = { authorization: `Bearer ${token}` };
        // The page's own fetch is off for these: only the message transport can answer.
        const realFetch = globalThis.fetch;
        globalThis.fetch = () => Promise.reject(new Error('fetch was used'));
        try {
          const room = encodeURIComponent(roomId);
          const sent = await swFetch(`/_matrix/client/v3/rooms/${room}/send/m.room.message/m1`, {
            method: 'PUT',
            headers: { ...auth, 'content-type': 'application/json' },
            body: JSON.stringify({ msgtype: 'm.text', body: 'by message' }),
          });
          const sentBody = await sent.json();
          const whoami = await (await swFetch('/_matrix/client/v3/account/whoami', { headers: auth })).json();
          const unknown = await swFetch('/_matrix/client/v3/no/such/endpoint');
          const unknownBody = await unknown.json();
          const badToken = await swFetch('/_matrix/client/v3/account/whoami', { headers: { authorization: 'Bearer nope' } });
          const head = await swFetch('/_matrix/client/versions', { method: 'HEAD' });
          const headBody = await head.text();
          const badJson = await swFetch('/_matrix/client/v3/createRoom', { method: 'POST', headers: auth, body: '{nope' });
          const badJsonBody = await badJson.json();
          // A long poll aborted by the client ends at once, on both sides.
          const since = (await (await swFetch('/_matrix/client/v3/sync?timeout=0', { headers: auth })).json()).next_batch as string;
          const ctl = new AbortController();
          const t0 = performance.now();
          const poll = swFetch(`/_matrix/client/v3/sync?timeout=20000&since=${since}`, { headers: auth, signal: ctl.signal });
          setTimeout(() => ctl.abort(), 200);
          const aborted = await poll.then(() => 'answered', (e: Error) => e.name);
          const abortMs = performance.now() - t0;
          return {
            sentStatus: sent.status,
            eventId: sentBody.event_id as string,
            contentType: sent.headers.get('content-type'),
            whoami: whoami.user_id as string,
            unknown: [unknown.status, unknownBody.errcode],
            badToken: badToken.status,
            head: [head.status, headBody, head.headers.get('content-type')],
            badJson: [badJson.status, badJsonBody.errcode],
            aborted,
            abortMs,
          };
        } finally {
          globalThis.fetch = realFetch;
        }
      },
      { token, roomId },
    );
    expect(r.sentStatus).toBe(200);
    expect(r.eventId).toMatch(/^\$/);
    expect(r.contentType).toContain('application/json');
    expect(r.whoami).toBe(userId);
    expect(r.unknown).toEqual([404, 'M_UNRECOGNIZED']);
    expect(r.badToken).toBe(401);
    expect(r.head).toEqual([200, '', 'application/json']);
    expect(r.badJson).toEqual([400, 'M_NOT_JSON']);
    expect(r.aborted).toBe('AbortError');
    expect(r.abortMs).toBeLessThan(5_000);
    // The same homeserver stored it: a plain fetch finds the event.
    expect((await allMessages(page, token, roomId)).map((m) => m.body)).toContain('by message');
    // Nothing is left running in the worker (the aborted long poll ended there too).
    await expect.poll(async () => (await swStats(page)).inFlight, { timeout: 10_000 }).toBe(0);
  });

  it('by message, a join is in the next long poll while another user writes by fetch (the UI join flow, repeated)', async () => {
    const page = await newPage();
    const alice = await registerUser(page, 'joiner');
    const bob = await registerUser(page, 'opener');
    const failures = await page.evaluate(
      async ({ alice, bob }) => {
        type Fetch = (input: string, init?: RequestInit) => Promise<globalThis.Response>;
        const swFetch: Fetch = globalThis.hearthTest.serviceWorkerFetch;
        const call = async (f: Fetch, method: string, path: string, token: string, body?: unknown) => {
          const res = await f(path, {
            method,
            headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
            body: body === undefined ? undefined : JSON.stringify(body),
          });
          return { status: res.status, body: (await res.json()) as any };
        };
        const out: string[] = [];
        let since = (await call(swFetch, 'GET', '/_matrix/client/v3/sync?timeout=0', alice.token)).body.next_batch as string;
        /** Alice's rooms a long poll from `since` brings with their name (the client's first look at a joined room). */
        const poll = async (timeout: number): Promise<Set<string>> => {
          const s = await call(swFetch, 'GET', `/_matrix/client/v3/sync?timeout=${timeout}&since=${since}`, alice.token);
          if (s.status !== 200) throw new Error(`sync ${s.status} ${JSON.stringify(s.body)}`);
          since = s.body.next_batch;
          const named = new Set<string>();
          for (const [id, room] of Object.entries((s.body.rooms?.join ?? {}) as Record<string, any>)) {
            const events = [...(room.state?.events ?? []), ...(room.timeline?.events ?? [])] as Array<{ type: string }>;
            if (events.some((e) => e.type === 'm.room.name')) named.add(id);
          }
          return named;
        };
        for (let i = 0; i < 15; i++) {
          // As the app: its sync loop long-polls by message while other requests (here bob's) go by fetch.
          const waiting = poll(10_000);
          const open = await call(fetch, 'POST', '/_matrix/client/v3/createRoom', bob.token, { preset: 'public_chat', name: `open ${i}` });
          const joined = await call(swFetch, 'POST', `/_matrix/client/v3/join/${encodeURIComponent(open.body.room_id)}`, alice.token, {});
          if (joined.status !== 200) out.push(`round ${i}: join ${joined.status} ${JSON.stringify(joined.body)}`);
          let named = await waiting;
          // Bob's room is nothing to Alice until she joins, so the poll should have waited for the join; if it
          // answered before (a spurious wake-up), the next one must bring it.
          if (!named.has(open.body.room_id)) named = await poll(5_000);
          if (!named.has(open.body.room_id)) out.push(`round ${i}: the joined room did not come with its name`);
        }
        return out;
      },
      { alice, bob },
    );
    expect(failures).toEqual([]);
  });

  it("a view mounted just before a store change shows it (the room opened right after a join, while sync's answer lands)", async () => {
    const page = await newPage();
    const shown = await page.evaluate(async () => {
      const { h, render, useSnapshot } = globalThis.hearthTest.ui;
      // A store as the views see it (src/client/store/client-store.ts): a snapshot replaced on every change.
      const listeners = new Set<() => void>();
      const store = {
        snapshot: { syncStatus: 'connecting' } as any,
        subscribe(fn: () => void) {
          listeners.add(fn);
          return () => listeners.delete(fn);
        },
      };
      const View = () => h('p', { id: 'sync-status' }, useSnapshot(store).syncStatus);
      const root = document.createElement('div');
      document.body.append(root);
      render(h(View, null), root);
      // The change lands after the render, before the browser has painted (when plain effects run).
      store.snapshot = { ...store.snapshot, syncStatus: 'online' };
      for (const fn of listeners) fn();
      await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 50)));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const text = root.textContent;
      render(null, root);
      root.remove();
      return text;
    });
    expect(shown).toBe('online');
  });

  it('asks for persistent storage from the page', async () => {
    const page = await newPage();
    const granted = await page.evaluate(() => globalThis.hearthTest.requestPersistentStorage());
    const status = await page.evaluate(() => globalThis.hearthTest.storageStatus());
    expect(typeof granted).toBe('boolean');
    expect(status.persisted).toBe(granted);
  });
});
