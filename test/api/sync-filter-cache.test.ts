/**
 * /sync remembers compiled filters (sync.ts resolveFilter): the same filter applies on every poll, a stored filter
 * stays its owner's, and a filter that fails keeps failing. Also: a long poll asks for the request's signal only
 * when it waits, and still ends when the client goes away.
 */
import { describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import { newRoom, sendText } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';

const C = '/_matrix/client/v3';

function rawSync(hs: Homeserver, user: TestUser, params: Record<string, string> = {}) {
  const q = new URLSearchParams({ set_presence: 'offline', ...params }).toString();
  return call(hs, 'GET', `${C}/sync?${q}`, undefined, user.accessToken);
}

async function sync(hs: Homeserver, user: TestUser, params: Record<string, string> = {}) {
  const res = await rawSync(hs, user, params);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

async function storeFilter(hs: Homeserver, user: TestUser, filter: unknown): Promise<string> {
  const res = await call(hs, 'POST', `${C}/user/${encodeURIComponent(user.userId)}/filter`, filter, user.accessToken);
  expect(res.status).toBe(200);
  return res.body.filter_id;
}

const bodies = (events: any[]) => events.filter((e) => e.type === 'm.room.message').map((e) => e.content.body);

describe('sync filter cache', () => {
  test('a stored filter applies on every poll, initial and incremental', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    for (let i = 0; i < 3; i++) await sendText(hs, alice, roomId, `a${i}`);
    const filter = await storeFilter(hs, alice, { room: { timeline: { limit: 1 } } });

    const s0 = await sync(hs, alice, { filter });
    expect(bodies(s0.rooms.join[roomId].timeline.events)).toEqual(['a2']);
    expect(s0.rooms.join[roomId].timeline.limited).toBe(true);
    for (let i = 3; i < 6; i++) await sendText(hs, alice, roomId, `a${i}`);
    const s1 = await sync(hs, alice, { filter, since: s0.next_batch });
    expect(bodies(s1.rooms.join[roomId].timeline.events)).toEqual(['a5']);
    expect(s1.rooms.join[roomId].timeline.limited).toBe(true);
    // Without the filter the default limit (10) applies again: the cache is per filter, not per user.
    const s2 = await sync(hs, alice, { since: s0.next_batch });
    expect(bodies(s2.rooms.join[roomId].timeline.events)).toEqual(['a3', 'a4', 'a5']);
  });

  test("another user's filter ID stays unknown to a user after its owner used it", async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const filter = await storeFilter(hs, alice, { room: { timeline: { limit: 1 } } });
    await sync(hs, alice, { filter });
    for (let i = 0; i < 2; i++) {
      const res = await rawSync(hs, bob, { filter });
      expect(res.status).toBe(400);
      expect(res.body.errcode).toBe('M_INVALID_PARAM');
    }
    // And bob's own filter with that content is his, with its own ID.
    const bobs = await storeFilter(hs, bob, { room: { timeline: { limit: 1 } } });
    expect(bobs).not.toBe(filter);
    await sync(hs, bob, { filter: bobs });
  });

  test('a bad or unknown filter fails the same way every time', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    for (let i = 0; i < 2; i++) {
      const unknown = await rawSync(hs, alice, { filter: '987654' });
      expect(unknown.status).toBe(400);
      expect(unknown.body.errcode).toBe('M_INVALID_PARAM');
      const notJson = await rawSync(hs, alice, { filter: '{"room":' });
      expect(notJson.status).toBe(400);
      expect(notJson.body.errcode).toBe('M_NOT_JSON');
      const badLimit = await rawSync(hs, alice, { filter: JSON.stringify({ room: { timeline: { limit: 0 } } }) });
      expect(badLimit.status).toBe(400);
    }
  });

  test('an inline filter applies on every poll', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    const filter = JSON.stringify({ room: { timeline: { limit: 2, not_types: ['m.room.member'] } } });
    await sendText(hs, alice, roomId, 'b0');
    const s0 = await sync(hs, alice, { filter });
    const s0Types = s0.rooms.join[roomId].timeline.events.map((e: any) => e.type);
    expect(s0Types).not.toContain('m.room.member');
    expect(s0.rooms.join[roomId].timeline.events.length).toBeLessThanOrEqual(2);
    for (let i = 1; i < 4; i++) await sendText(hs, alice, roomId, `b${i}`);
    const s1 = await sync(hs, alice, { filter, since: s0.next_batch });
    expect(bodies(s1.rooms.join[roomId].timeline.events)).toEqual(['b2', 'b3']);
  });

  test('a long poll whose client has already gone ends at once', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const s0 = await sync(hs, alice);
    const ac = new AbortController();
    ac.abort();
    const t0 = performance.now();
    await call(hs, 'GET', `${C}/sync?since=${s0.next_batch}&timeout=30000`, undefined, alice.accessToken, { signal: ac.signal });
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  test('a long poll wakes for a message, then its client going away ends the next one', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newRoom(hs, alice, { preset: 'public_chat' });
    expect((await call(hs, 'POST', `${C}/join/${encodeURIComponent(roomId)}`, {}, bob.accessToken)).status).toBe(200);
    const s0 = await sync(hs, bob);
    const waiting = rawSync(hs, bob, { since: s0.next_batch, timeout: '30000' });
    await new Promise((r) => setTimeout(r, 20));
    await sendText(hs, alice, roomId, 'wake');
    const s1 = (await waiting).body;
    expect(bodies(s1.rooms.join[roomId].timeline.events)).toEqual(['wake']);
    const ac = new AbortController();
    const t0 = performance.now();
    const next = call(hs, 'GET', `${C}/sync?since=${s1.next_batch}&timeout=30000&set_presence=offline`, undefined, bob.accessToken, { signal: ac.signal });
    setTimeout(() => ac.abort(), 30);
    await next;
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});
