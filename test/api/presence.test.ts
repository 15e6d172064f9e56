/**
 * GET/PUT /presence/{userId}/status and presence in /sync (modules/presence.md, presence.yaml).
 */
import { describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';

const statusPath = (userId: string) => `/_matrix/client/v3/presence/${encodeURIComponent(userId)}/status`;

function setPresence(hs: Homeserver, user: TestUser, body: unknown, userId = user.userId) {
  return call(hs, 'PUT', statusPath(userId), body, user.accessToken);
}

async function sync(hs: Homeserver, user: TestUser, params: Record<string, string> = {}) {
  const q = new URLSearchParams(params).toString();
  const res = await call(hs, 'GET', `/_matrix/client/v3/sync${q ? `?${q}` : ''}`, undefined, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

async function joinedRoomOf(hs: Homeserver, a: TestUser, b: TestUser): Promise<string> {
  const created = await call(hs, 'POST', '/_matrix/client/v3/createRoom', { preset: 'public_chat' }, a.accessToken);
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  const joined = await call(hs, 'POST', `/_matrix/client/v3/join/${encodeURIComponent(created.body.room_id)}`, {}, b.accessToken);
  expect(joined.status, JSON.stringify(joined.body)).toBe(200);
  return created.body.room_id;
}

describe('presence', () => {
  test('set and get your own presence and status message', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const put = await setPresence(hs, alice, { presence: 'unavailable', status_msg: 'at lunch' });
    expect([put.status, put.body]).toEqual([200, {}]);
    const got = await call(hs, 'GET', statusPath(alice.userId), undefined, alice.accessToken);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ presence: 'unavailable', status_msg: 'at lunch' });
    expect(typeof got.body.last_active_ago).toBe('number');
    // Setting again without status_msg clears it.
    await setPresence(hs, alice, { presence: 'online' });
    const again = await call(hs, 'GET', statusPath(alice.userId), undefined, alice.accessToken);
    expect(again.body).toMatchObject({ presence: 'online', currently_active: true });
    expect(again.body.status_msg).toBeUndefined();
  });

  test("a user with no presence yet is offline; another user's presence needs a shared room", async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const own = await call(hs, 'GET', statusPath(alice.userId), undefined, alice.accessToken);
    expect([own.status, own.body]).toEqual([200, { presence: 'offline' }]);
    const stranger = await call(hs, 'GET', statusPath(bob.userId), undefined, alice.accessToken);
    expect([stranger.status, stranger.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    await joinedRoomOf(hs, alice, bob);
    await setPresence(hs, bob, { presence: 'online', status_msg: 'hi' });
    const friend = await call(hs, 'GET', statusPath(bob.userId), undefined, alice.accessToken);
    expect(friend.status).toBe(200);
    expect(friend.body).toMatchObject({ presence: 'online', status_msg: 'hi' });
  });

  test('presence changes of room-mates arrive through /sync, strangers do not', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const carol = await newUser(hs);
    await joinedRoomOf(hs, alice, bob);
    const first = await sync(hs, alice, { set_presence: 'offline' });
    await setPresence(hs, bob, { presence: 'unavailable', status_msg: 'away' });
    await setPresence(hs, carol, { presence: 'online' });
    const next = await sync(hs, alice, { since: first.next_batch, set_presence: 'offline' });
    const events = next.presence.events;
    expect(events.map((e: any) => e.sender)).toEqual([bob.userId]);
    expect(events[0]).toMatchObject({ type: 'm.presence', content: { presence: 'unavailable', status_msg: 'away' } });
    // The presence filter can turn it off.
    await setPresence(hs, bob, { presence: 'online' });
    const filtered = await sync(hs, alice, {
      since: next.next_batch,
      set_presence: 'offline',
      filter: JSON.stringify({ presence: { not_types: ['*'] } }),
    });
    expect(filtered.presence.events).toEqual([]);
  });

  test('/sync marks the user online unless set_presence says otherwise', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    await sync(hs, alice, { set_presence: 'offline' });
    const before = await call(hs, 'GET', statusPath(alice.userId), undefined, alice.accessToken);
    expect(before.body.presence).toBe('offline');
    await sync(hs, alice, { set_presence: 'unavailable' });
    expect((await call(hs, 'GET', statusPath(alice.userId), undefined, alice.accessToken)).body.presence).toBe('unavailable');
    const s = await sync(hs, alice);
    expect((await call(hs, 'GET', statusPath(alice.userId), undefined, alice.accessToken)).body.presence).toBe('online');
    // The user's own presence is in their sync.
    expect(s.presence.events.map((e: any) => [e.sender, e.content.presence])).toEqual([[alice.userId, 'online']]);
  });

  test('bad input', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const other = await setPresence(hs, alice, { presence: 'online' }, bob.userId);
    expect([other.status, other.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    const badState = await setPresence(hs, alice, { presence: 'busy' });
    expect([badState.status, badState.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    const missing = await setPresence(hs, alice, { status_msg: 'x' });
    expect([missing.status, missing.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    const wrongType = await setPresence(hs, alice, { presence: 'online', status_msg: 5 });
    expect([wrongType.status, wrongType.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    const badId = await call(hs, 'GET', statusPath('not-a-user'), undefined, alice.accessToken);
    expect([badId.status, badId.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    const unknown = await call(hs, 'GET', statusPath(`@ghost:${hs.serverName}`), undefined, alice.accessToken);
    expect([unknown.status, unknown.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    const badSync = await call(hs, 'GET', '/_matrix/client/v3/sync?set_presence=busy', undefined, alice.accessToken);
    expect([badSync.status, badSync.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    const noToken = await call(hs, 'GET', statusPath(alice.userId));
    expect([noToken.status, noToken.body.errcode]).toEqual([401, 'M_MISSING_TOKEN']);
  });
});
