/**
 * The client's API layer and store against a real homeserver (in memory, through `hs.fetch`): registration by UIA,
 * local echo replaced exactly once, two tabs, back-pagination, direct chats, receipts, failed sends and retry,
 * a revoked token, and the sync loop's backoff.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MatrixApi } from '../../../src/client/api/client.js';
import type { FetchFn } from '../../../src/client/api/http.js';
import { MatrixApiError, NetworkError } from '../../../src/client/api/http.js';
import { RegistrationTokenRequired, chooseFlow, registerAccount } from '../../../src/client/api/register.js';
import { SyncLoop, backoffDelay } from '../../../src/client/api/sync-loop.js';
import type { SyncStatus } from '../../../src/client/api/sync-loop.js';
import type { SyncResponse } from '../../../src/client/api/types.js';
import { signInAgain } from '../../../src/client/session.js';
import { ClientStore } from '../../../src/client/store/client-store.js';
import { lastMessage } from '../../../src/client/store/room-summary.js';
import { buildTimeline } from '../../../src/client/store/timeline.js';
import type { Homeserver } from '../../../src/homeserver.js';
import { newHomeserver } from '../../helpers/homeserver.js';

const BASE = 'http://localhost';
const stores: ClientStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.stop()));
});

function fetchOf(hs: Homeserver): FetchFn {
  return (url, init) => hs.fetch(new Request(url, init));
}

async function account(hs: Homeserver, username: string, fetch: FetchFn = fetchOf(hs)) {
  const login = await registerAccount(new MatrixApi({ baseUrl: BASE, fetch }), { username, password: 'pw', deviceName: 'test' });
  return login;
}

async function storeFor(hs: Homeserver, login: { user_id: string; access_token: string; device_id: string }, fetch: FetchFn = fetchOf(hs), onLoggedOut?: () => void) {
  const store = new ClientStore({
    api: new MatrixApi({ baseUrl: BASE, accessToken: login.access_token, fetch }),
    userId: login.user_id,
    deviceId: login.device_id,
    syncTimeoutMs: 5_000,
    onLoggedOut,
  });
  stores.push(store);
  store.start();
  await vi.waitFor(() => expect(store.snapshot.initialSyncDone).toBe(true));
  return store;
}

const bodies = (store: ClientStore, roomId: string) =>
  store
    .room(roomId)!
    .timeline.filter((e) => e.type === 'm.room.message')
    .map((e) => e.content.body);

describe('registration', () => {
  it('completes the m.login.dummy flow and returns a usable login', async () => {
    const hs = await newHomeserver();
    const login = await account(hs, 'alice');
    expect(login.user_id).toMatch(/^@alice:/);
    const who = await new MatrixApi({ baseUrl: BASE, accessToken: login.access_token, fetch: fetchOf(hs) }).whoami();
    expect(who.user_id).toBe(login.user_id);
  });

  it('asks for a registration token when the server needs one, and uses it', async () => {
    const hs = await newHomeserver({ registration: 'token', registrationTokens: ['letmein'] });
    const api = new MatrixApi({ baseUrl: BASE, fetch: fetchOf(hs) });
    await expect(registerAccount(api, { username: 'bob', password: 'pw', deviceName: 't' })).rejects.toBeInstanceOf(RegistrationTokenRequired);
    const login = await registerAccount(api, { username: 'bob', password: 'pw', deviceName: 't', registrationToken: 'letmein' });
    expect(login.user_id).toMatch(/^@bob:/);
  });

  it('reports a taken name as M_USER_IN_USE', async () => {
    const hs = await newHomeserver();
    await account(hs, 'carol');
    await expect(account(hs, 'carol')).rejects.toMatchObject({ errcode: 'M_USER_IN_USE' });
  });

  it('chooses only flows it can complete', () => {
    const flows = [{ stages: ['m.login.email.identity'] }, { stages: ['m.login.registration_token', 'm.login.dummy'] }, { stages: ['m.login.dummy'] }];
    expect(chooseFlow(flows, false)).toEqual(['m.login.dummy']);
    expect(chooseFlow(flows, true)).toEqual(['m.login.registration_token', 'm.login.dummy']);
    expect(chooseFlow([{ stages: ['m.login.recaptcha'] }], true)).toBeUndefined();
  });
});

describe('ClientStore', () => {
  it('shows a sent message at once as a local echo, then exactly once from sync', async () => {
    const hs = await newHomeserver();
    const store = await storeFor(hs, await account(hs, 'alice'));
    const roomId = await store.createRoom({ name: 'Garden', topic: 'tomatoes', isPublic: false });
    await store.waitForRoom(roomId);
    const sent = store.sendText(roomId, 'hello 🌱');
    expect(store.room(roomId)!.pending).toMatchObject([{ status: 'sending', content: { body: 'hello 🌱' } }]);
    await sent;
    await vi.waitFor(() => expect(store.room(roomId)!.pending).toEqual([]));
    expect(bodies(store, roomId)).toEqual(['hello 🌱']);
    const items = buildTimeline({ timeline: store.room(roomId)!.timeline, pending: store.room(roomId)!.pending, me: store.userId, nameOf: (u) => u, receipts: new Map(), now: Date.now() });
    expect(items.filter((i) => i.kind === 'message')).toHaveLength(1);
    expect(lastMessage(store.room(roomId)!, store.userId)?.text).toBe('You: hello 🌱');
  });

  it('two tabs of one session: a message sent in one appears in the other exactly once', async () => {
    const hs = await newHomeserver();
    const login = await account(hs, 'alice');
    const tab1 = await storeFor(hs, login);
    const tab2 = await storeFor(hs, login);
    const roomId = await tab1.createRoom({ name: 'Tabs', topic: '', isPublic: false });
    await tab2.waitForRoom(roomId);
    for (let i = 0; i < 5; i++) await tab1.sendText(roomId, `m${i}`);
    await vi.waitFor(() => expect(bodies(tab2, roomId)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']));
    await vi.waitFor(() => expect(bodies(tab1, roomId)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']));
    expect(tab2.room(roomId)!.pending).toEqual([]);
    expect(tab1.room(roomId)!.pending).toEqual([]);
  });

  it('pages back through the whole history without gaps or duplicates', async () => {
    const hs = await newHomeserver();
    const login = await account(hs, 'alice');
    const api = new MatrixApi({ baseUrl: BASE, accessToken: login.access_token, fetch: fetchOf(hs) });
    const { room_id } = await api.createRoom({ name: 'Long' });
    for (let i = 0; i < 95; i++) await api.send(room_id, 'm.room.message', `t${i}`, { msgtype: 'm.text', body: `n${i}` });
    const store = await storeFor(hs, login);
    expect(store.room(room_id)!.timeline.length).toBeLessThan(95);
    while (store.room(room_id)!.prevBatch !== null) await store.paginate(room_id);
    expect(bodies(store, room_id)).toEqual(Array.from({ length: 95 }, (_, i) => `n${i}`));
    expect(store.room(room_id)!.timeline[0].type).toBe('m.room.create');
    const ids = store.room(room_id)!.timeline.map((e) => e.event_id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('starts a direct chat: invite flagged is_direct, accepted by the other side, both record m.direct', async () => {
    const hs = await newHomeserver();
    const alice = await storeFor(hs, await account(hs, 'alice'));
    const bob = await storeFor(hs, await account(hs, 'bob'));
    const roomId = await alice.startDirectChat(bob.userId);
    expect(alice.mDirect()[bob.userId]).toEqual([roomId]);
    await vi.waitFor(() => expect(bob.room(roomId)?.membership).toBe('invite'));
    await bob.acceptInvite(roomId);
    await vi.waitFor(() => expect(bob.room(roomId)?.membership).toBe('join'));
    expect(bob.mDirect()[alice.userId]).toEqual([roomId]);
    // Asking again opens the same room.
    await vi.waitFor(() => expect(alice.room(roomId)?.membership).toBe('join'));
    expect(await alice.startDirectChat(bob.userId)).toBe(roomId);
  });

  it('declining an invite removes the room; leaving too', async () => {
    const hs = await newHomeserver();
    const alice = await storeFor(hs, await account(hs, 'alice'));
    const bob = await storeFor(hs, await account(hs, 'bob'));
    const roomId = await alice.createRoom({ name: 'x', topic: '', isPublic: false });
    await alice.api.invite(roomId, bob.userId);
    await vi.waitFor(() => expect(bob.room(roomId)?.membership).toBe('invite'));
    await bob.leave(roomId);
    expect(bob.room(roomId)).toBeUndefined();
    await alice.waitForRoom(roomId);
    await alice.leave(roomId);
    expect(alice.room(roomId)).toBeUndefined();
  });

  it('marking a room read clears its unread count', async () => {
    const hs = await newHomeserver();
    const alice = await storeFor(hs, await account(hs, 'alice'));
    const bob = await storeFor(hs, await account(hs, 'bob'));
    const roomId = await alice.createRoom({ name: 'Public', topic: '', isPublic: true });
    await bob.join(roomId);
    await bob.waitForRoom(roomId);
    await bob.sendText(roomId, 'one');
    await bob.sendText(roomId, 'two');
    await vi.waitFor(() => expect(alice.room(roomId)!.notificationCount).toBe(2));
    alice.markRead(roomId);
    await vi.waitFor(() => expect(alice.room(roomId)!.notificationCount).toBe(0));
    // Bob sees Alice's receipt on his last message.
    const last = bob.room(roomId)!.timeline.at(-1)!;
    await vi.waitFor(() => expect(bob.room(roomId)!.receipts.get(alice.userId)?.eventId).toBe(last.event_id));
  });

  it('marks a failed send and sends it once on retry (same transaction ID)', async () => {
    const hs = await newHomeserver();
    const login = await account(hs, 'alice');
    let failNext = false;
    const flaky: FetchFn = async (url, init) => {
      if (failNext && init?.method === 'PUT' && url.includes('/send/')) {
        failNext = false;
        throw new TypeError('Failed to fetch');
      }
      return hs.fetch(new Request(url, init));
    };
    const store = await storeFor(hs, login, flaky);
    const roomId = await store.createRoom({ name: 'r', topic: '', isPublic: false });
    await store.waitForRoom(roomId);
    failNext = true;
    await store.sendText(roomId, 'try me');
    const p = store.room(roomId)!.pending[0];
    expect(p).toMatchObject({ status: 'failed', error: 'The homeserver cannot be reached' });
    await store.retry(roomId, p.txnId);
    await store.retry(roomId, p.txnId).catch(() => undefined); // a double click: same txn, still one event
    await vi.waitFor(() => expect(store.room(roomId)!.pending).toEqual([]));
    expect(bodies(store, roomId)).toEqual(['try me']);
    const res = await store.api.messages(roomId, undefined, 50);
    expect(res.chunk.filter((e) => e.content.body === 'try me')).toHaveLength(1);
  });

  it('reports a revoked access token to the app', async () => {
    const hs = await newHomeserver();
    const login = await account(hs, 'alice');
    const loggedOut = vi.fn();
    const store = await storeFor(hs, login, fetchOf(hs), loggedOut);
    await new MatrixApi({ baseUrl: BASE, accessToken: login.access_token, fetch: fetchOf(hs) }).logout();
    store.reconnect();
    await vi.waitFor(() => expect(loggedOut).toHaveBeenCalled(), { timeout: 10_000 });
  });
});

describe('signInAgain', () => {
  it('gets a new token with the generated password after the old one was revoked, and gives up without one', async () => {
    const hs = await newHomeserver();
    const login = await registerAccount(new MatrixApi({ baseUrl: BASE, fetch: fetchOf(hs) }), { username: 'eve', password: 'generated-pw', deviceName: 't' });
    const session = { baseUrl: BASE, userId: login.user_id, deviceId: login.device_id, accessToken: login.access_token, generatedPassword: 'generated-pw' };
    await new MatrixApi({ baseUrl: BASE, accessToken: login.access_token, fetch: fetchOf(hs) }).logout();
    const again = await signInAgain(session, fetchOf(hs));
    expect(again?.userId).toBe(login.user_id);
    expect(again?.accessToken).not.toBe(login.access_token);
    expect((await new MatrixApi({ baseUrl: BASE, accessToken: again!.accessToken, fetch: fetchOf(hs) }).whoami()).user_id).toBe(login.user_id);
    expect(await signInAgain({ ...session, generatedPassword: undefined }, fetchOf(hs))).toBeUndefined();
    expect(await signInAgain({ ...session, generatedPassword: 'wrong' }, fetchOf(hs))).toBeUndefined();
  });
});

describe('SyncLoop', () => {
  it('backs off 0.5 s, 1 s, 2 s … up to 30 s', () => {
    expect([0, 1, 2, 3, 10, 20].map(backoffDelay)).toEqual([500, 1000, 2000, 4000, 30_000, 30_000]);
  });

  it('retries after network errors with backoff, resumes with since, and reports its status', async () => {
    const calls: (string | undefined)[] = [];
    let n = 0;
    const api = {
      sync: async (o: { since?: string; signal?: AbortSignal }) => {
        calls.push(o.since);
        n++;
        if (n === 2 || n === 3) throw new NetworkError('down');
        // A long poll that only ends when the loop is stopped.
        if (n >= 5) return new Promise<SyncResponse>((_, reject) => o.signal?.addEventListener('abort', () => reject(new Error('aborted'))));
        return { next_batch: `s${n}` } as SyncResponse;
      },
    } as unknown as MatrixApi;
    const statuses: SyncStatus[] = [];
    const delays: number[] = [];
    const loop = new SyncLoop(api, {
      onResponse: () => undefined,
      onStatus: (s) => statuses.push(s),
      onLoggedOut: () => undefined,
      sleep: async (ms) => void delays.push(ms),
    });
    loop.start();
    await vi.waitFor(() => expect(n).toBe(5));
    await loop.stop();
    expect(calls).toEqual([undefined, 's1', 's1', 's1', 's4']);
    expect(delays).toEqual([500, 1000]);
    expect(statuses).toEqual(['connecting', 'online', 'offline', 'offline', 'online']);
  });

  it('stops and reports when the token is no longer valid', async () => {
    const api = { sync: async () => Promise.reject(new MatrixApiError(401, 'M_UNKNOWN_TOKEN', 'gone')) } as unknown as MatrixApi;
    const loggedOut = vi.fn();
    const loop = new SyncLoop(api, { onResponse: () => undefined, onStatus: () => undefined, onLoggedOut: loggedOut });
    loop.start();
    await vi.waitFor(() => expect(loggedOut).toHaveBeenCalledOnce());
    await loop.stop();
  });
});
