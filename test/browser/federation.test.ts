/**
 * Federation from the browser (issue 5): the page's libp2p node (src/browser/p2p) runs in the leader tab and carries
 * the service worker's federation (sw/network-bridge.ts). A `hearth start` Node peer serves the app, lists its
 * multiaddrs at /_hearth/bootstrap and is the circuit relay the browsers meet through.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, launchChromium, openHomeserverPage, registerUser, startApp } from './helpers/browser.js';
import type { RunningApp } from './helpers/browser.js';

const WAIT = { timeout: 60_000, interval: 250 };

let app: RunningApp;
let browser: Browser;

beforeAll(async () => {
  [app, browser] = await Promise.all([startApp(), launchChromium()]);
});
afterAll(async () => {
  await browser?.close().catch(() => undefined);
});

interface PagePeer {
  id: string;
  serverName?: string;
  transport: string;
  remoteAddr: string;
}

/** A fresh browser context (its own homeserver) with the app open; resolves with the page and its server name. */
async function openPeer(): Promise<{ page: Page; serverName: string }> {
  const context = await browser.newContext();
  const page = await openHomeserverPage(context, app.url);
  const serverName = await page.evaluate(async () => {
    const net = (globalThis as any).hearthNetwork;
    const host = await net.leading;
    return host.serverName as string;
  });
  return { page, serverName };
}

function peersOf(page: Page): Promise<PagePeer[]> {
  return page.evaluate(() => ((globalThis as any).hearthNetwork.host?.peers() ?? []) as PagePeer[]);
}

/**
 * Until the page's node holds a relay reservation on the Node peer (a `/p2p-circuit` address of its own). Then other
 * browsers can dial it through the relay, and it can dial them: it reserves only once identify has told it the Node
 * peer is a relay, which is also what its own dials through the relay need (network-host.ts `relays`). A connection
 * to the Node peer alone is not enough: right after it opens, identify has often not answered yet, and a request to
 * another browser then finds no route ("no known address for this server").
 */
async function reachable(page: Page): Promise<void> {
  await expect
    .poll(async () => page.evaluate(() => ((globalThis as any).hearthNetwork.host?.libp2p.getMultiaddrs() ?? []).map(String).some((m: string) => m.includes('/p2p-circuit'))), WAIT)
    .toBe(true);
}

/** A federation request made by the page's network host (the transport the service worker uses). */
function federationRequest(page: Page, destination: string, path: string): Promise<{ status: number; body: any }> {
  return page.evaluate(
    async ({ destination, path }) => (globalThis as any).hearthNetwork.host.request(destination, { method: 'GET', path }, 20_000),
    { destination, path },
  );
}

describe('the bootstrap endpoint', () => {
  it('lists the Node peer’s multiaddrs, each ending in its peer ID', async () => {
    const r = await fetch(`${app.url}/_hearth/bootstrap`);
    expect(r.status).toBe(200);
    const body = (await r.json()) as { multiaddrs: string[] };
    expect(body.multiaddrs.some((a) => /\/ws\/p2p\//.test(a))).toBe(true);
    for (const a of body.multiaddrs) expect(a).toMatch(/\/p2p\/\w+$/);
  });

  it('refuses other methods with 405 M_UNRECOGNIZED', async () => {
    const r = await fetch(`${app.url}/_hearth/bootstrap`, { method: 'POST', body: '{}' });
    expect(r.status).toBe(405);
    expect(((await r.json()) as { errcode: string }).errcode).toBe('M_UNRECOGNIZED');
  });
});

describe('browser ↔ Node', () => {
  it('the page’s node connects to the Node peer over WebSockets, and federation flows both ways', async () => {
    const { page, serverName } = await openPeer();
    expect(serverName).toMatch(/^[a-z2-7]{52}$/);
    await expect
      .poll(async () => (await peersOf(page)).find((p) => p.serverName === app.serverName)?.transport, WAIT)
      .toBe('websockets');

    // Browser → Node: the Node peer's signing key, over the libp2p link.
    const key = await federationRequest(page, app.serverName, '/_matrix/key/v2/server');
    expect(key.status).toBe(200);
    expect(key.body.server_name).toBe(app.serverName);

    // Node → browser: the Node peer asks the browser's homeserver (in its service worker) for a profile.
    const bob = await registerUser(page, 'bob');
    expect((await api(page, 'PUT', `/_matrix/client/v3/profile/${encodeURIComponent(bob.userId)}/displayname`, { displayname: 'Bob in a tab' }, bob.token)).status).toBe(200);
    const reg = await fetch(`${app.url}/_matrix/client/v3/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'nora', password: 'correct horse battery', auth: { type: 'm.login.dummy' } }),
    });
    expect(reg.status).toBe(200);
    const nora = (await reg.json()) as { access_token: string };
    const profile = await fetch(`${app.url}/_matrix/client/v3/profile/${encodeURIComponent(bob.userId)}`, {
      headers: { authorization: `Bearer ${nora.access_token}` },
    });
    expect(profile.status).toBe(200);
    expect(((await profile.json()) as { displayname?: string }).displayname).toBe('Bob in a tab');
    await page.context().close();
  });

  it('a second tab of the same homeserver does not start another node, and takes over when the leader closes', async () => {
    const { page, serverName } = await openPeer();
    const second = await page.context().newPage();
    await second.goto(app.url);
    await second.waitForFunction(() => typeof (globalThis as any).hearthNetwork === 'object');
    // The second tab queues for the lock: no host while the first leads.
    await second.waitForTimeout(1000);
    expect(await second.evaluate(() => (globalThis as any).hearthNetwork.host === undefined)).toBe(true);
    await page.close();
    const taken = await second.evaluate(async () => ((await (globalThis as any).hearthNetwork.leading).serverName as string));
    expect(taken).toBe(serverName);
    await expect.poll(async () => (await peersOf(second)).some((p) => p.serverName === app.serverName), WAIT).toBe(true);
    await second.context().close();
  });
});

describe('gossip first, /send only to the servers it missed', () => {
  it('a browser’s message reaches the Node peer once, by gossip, with no /send to it', async () => {
    const { page, serverName } = await openPeer();
    await expect.poll(async () => (await peersOf(page)).some((p) => p.serverName === app.serverName), WAIT).toBe(true);
    const nodePeerId = ((await (await fetch(`${app.url}/_hearth/bootstrap`)).json()) as { multiaddrs: string[] }).multiaddrs[0].split('/p2p/').pop()!;

    // Every federation request the worker makes goes through the leader's `request`: record them there.
    await page.evaluate(() => {
      const host = (globalThis as any).hearthNetwork.host;
      const seen: Array<{ destination: string; method: string; path: string; body: string }> = [];
      (globalThis as any).federationRequests = seen;
      const original = host.request.bind(host);
      host.request = (destination: string, req: { method: string; path: string; body?: unknown }, timeoutMs?: number) => {
        seen.push({ destination, method: req.method, path: req.path, body: JSON.stringify(req.body ?? null) });
        return original(destination, req, timeoutMs);
      };
    });
    const sentToNode = () =>
      page.evaluate((dest) => ((globalThis as any).federationRequests as any[]).filter((r) => r.destination === dest), app.serverName);

    const bob = await registerUser(page, 'bob');
    const reg = await fetch(`${app.url}/_matrix/client/v3/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'nina', password: 'correct horse battery', auth: { type: 'm.login.dummy' } }),
    });
    const nina = (await reg.json()) as { access_token: string; user_id: string };
    const created = await api(page, 'POST', '/_matrix/client/v3/createRoom', { preset: 'private_chat', invite: [nina.user_id] }, bob.token);
    expect(created.status).toBe(200);
    const roomId = created.body.room_id as string;
    // The recorder sees the worker's requests: the invite went to the Node peer through it.
    expect((await sentToNode()).some((r) => r.method === 'PUT' && r.path.includes('/invite/'))).toBe(true);

    const node = (method: string, path: string, body?: unknown) =>
      fetch(`${app.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${nina.access_token}`, 'content-type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    await expect.poll(async () => (await node('POST', `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {})).status, WAIT).toBe(200);

    // Gossip reaches the Node peer directly once the browser's gossipsub knows it follows the room's topic.
    await expect
      .poll(
        () =>
          page.evaluate(
            (topic) => ((globalThis as any).hearthNetwork.host.libp2p.services.pubsub.getSubscribers(topic) as unknown[]).map(String),
            `/hearth/room/${roomId}`,
          ),
        WAIT,
      )
      .toContain(nodePeerId);

    const text = `once by gossip ${crypto.randomUUID()}`;
    const sent = await api(page, 'PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${crypto.randomUUID()}`, { msgtype: 'm.text', body: text }, bob.token);
    expect(sent.status).toBe(200);
    const eventId = sent.body.event_id as string;
    await expect
      .poll(async () => {
        const r = await node('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(eventId)}`);
        return r.status === 200 ? ((await r.json()) as { content: { body?: string } }).content.body : r.status;
      }, WAIT)
      .toBe(text);
    // Any /send would have been queued as soon as the publish answered; give it time to go out before counting.
    await page.waitForTimeout(2000);
    const sends = (await sentToNode()).filter((r) => r.path.startsWith('/_matrix/federation/v1/send/'));
    expect(sends.filter((r) => r.body.includes(text))).toEqual([]);
    expect(serverName).not.toBe(app.serverName);
    await page.context().close();
  });
});

describe('browser ↔ browser', () => {
  it('two browsers connect through the relay, the link becomes direct WebRTC, and requests flow', async () => {
    const [a, b] = await Promise.all([openPeer(), openPeer()]);
    expect(a.serverName).not.toBe(b.serverName);
    // Both hold a reservation on the relay before one can reach the other through it.
    await Promise.all([reachable(a.page), reachable(b.page)]);

    const key = await federationRequest(a.page, b.serverName, '/_matrix/key/v2/server');
    expect(key.status).toBe(200);
    expect(key.body.server_name).toBe(b.serverName);

    // The dialled side sees the link as `/webrtc/p2p/<a>`: no relay in it.
    await expect
      .poll(async () => (await peersOf(b.page)).find((p) => p.serverName === a.serverName), WAIT)
      .toMatchObject({ transport: 'webrtc' });
    const seenByB = (await peersOf(b.page)).find((p) => p.serverName === a.serverName)!;
    expect(seenByB.remoteAddr).toContain('/webrtc');
    expect(seenByB.remoteAddr).not.toContain('/p2p-circuit');
    // A may still list the relayed connection for a moment after B has the direct one (libp2p closes it once the
    // upgrade is done on both sides).
    await expect.poll(async () => (await peersOf(a.page)).find((p) => p.serverName === b.serverName)?.transport, WAIT).toBe('webrtc');

    // And the other way, on the same link.
    const back = await federationRequest(b.page, a.serverName, '/_matrix/key/v2/server');
    expect(back.body.server_name).toBe(a.serverName);
    await Promise.all([a.page.context().close(), b.page.context().close()]);
  });
});

describe('chat between two browsers', () => {
  it('A invites B, B joins, they exchange messages seen through /sync, and keep chatting without the relay', async () => {
    const [a, b] = await Promise.all([openPeer(), openPeer()]);
    // The invite below goes from A to B through the relay: both need their reservation first (see reachable).
    await Promise.all([reachable(a.page), reachable(b.page)]);
    const [alice, bob] = await Promise.all([registerUser(a.page, 'alice'), registerUser(b.page, 'bob')]);
    const created = await api(a.page, 'POST', '/_matrix/client/v3/createRoom', { preset: 'private_chat', invite: [bob.userId] }, alice.token);
    expect(created.status).toBe(200);
    const roomId = created.body.room_id as string;

    /** The bodies of the room's messages in the user's /sync timeline so far. */
    const messages = async (page: Page, token: string) => {
      const r = await api(page, 'GET', `/_matrix/client/v3/sync?timeout=0&filter=${encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 50 } } }))}`, undefined, token);
      const room = r.body.rooms?.join?.[roomId];
      return ((room?.timeline?.events ?? []) as any[]).filter((e) => e.type === 'm.room.message').map((e) => e.content.body as string);
    };
    await expect
      .poll(async () => Object.keys((await api(b.page, 'GET', '/_matrix/client/v3/sync?timeout=0', undefined, bob.token)).body.rooms?.invite ?? {}), WAIT)
      .toContain(roomId);
    const joined = await api(b.page, 'POST', `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {}, bob.token);
    expect(joined.status).toBe(200);

    const send = (page: Page, token: string, body: string) =>
      api(page, 'PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${crypto.randomUUID()}`, { msgtype: 'm.text', body }, token);
    expect((await send(a.page, alice.token, 'hello from tab A')).status).toBe(200);
    expect((await send(b.page, bob.token, 'hello from tab B')).status).toBe(200);
    await expect.poll(() => messages(b.page, bob.token), WAIT).toContain('hello from tab A');
    await expect.poll(() => messages(a.page, alice.token), WAIT).toContain('hello from tab B');

    // The link between the browsers is direct: the relay can go.
    await expect.poll(async () => (await peersOf(a.page)).find((p) => p.serverName === b.serverName)?.transport, WAIT).toBe('webrtc');
    await app.stop();
    expect((await send(a.page, alice.token, 'still here')).status).toBe(200);
    expect((await send(b.page, bob.token, 'me too')).status).toBe(200);
    await expect.poll(() => messages(b.page, bob.token), WAIT).toContain('still here');
    await expect.poll(() => messages(a.page, alice.token), WAIT).toContain('me too');
  });
});
