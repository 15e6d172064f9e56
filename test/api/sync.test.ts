/**
 * GET /sync: initial and incremental syncs, limited timelines and their prev_batch, long polling, the invite and
 * leave sections, account data, summaries and unread counts (sync.yaml, _index.md "Syncing").
 * Filters and bad input are in sync-filters.test.ts.
 */
import { describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import { enc, invite, joinRoom, membership, newPublicRoom, newRoom, sendText, setState } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';

const C = '/_matrix/client/v3';

async function sync(hs: Homeserver, user: TestUser, params: Record<string, string> = {}, signal?: AbortSignal) {
  const q = new URLSearchParams({ set_presence: 'offline', ...params }).toString();
  const res = await call(hs, 'GET', `${C}/sync?${q}`, undefined, user.accessToken, { signal });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

const types = (events: any[]) => events.map((e) => e.type);
const bodies = (events: any[]) => events.filter((e) => e.type === 'm.room.message').map((e) => e.content.body);

describe('initial sync', () => {
  test('a new room: its creation events in the timeline, no state before them, a sync token', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice, { name: 'Den' });
    const s = await sync(hs, alice);
    expect(s.next_batch).toMatch(/^s\d+$/);
    const room = s.rooms.join[roomId];
    expect(room).toBeDefined();
    expect(room.timeline.events[0].type).toBe('m.room.create');
    expect(types(room.timeline.events)).toContain('m.room.name');
    expect(room.timeline.limited).toBe(false);
    expect(room.state.events).toEqual([]);
    // Events in /sync carry no room_id (ClientEventWithoutRoomID).
    for (const e of room.timeline.events) {
      expect(e.room_id).toBeUndefined();
      expect(e.event_id).toMatch(/^\$/);
    }
    expect(room.summary['m.joined_member_count']).toBe(1);
    expect(room.summary['m.invited_member_count']).toBe(0);
    expect(room.unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
    expect(s.device_one_time_keys_count).toEqual({ signed_curve25519: 0 });
  });

  test('a long room: only the last 10 events, limited, with the state at their start', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    await setState(hs, alice, roomId, 'm.room.topic', '', { topic: 'early' });
    for (let i = 0; i < 15; i++) await sendText(hs, alice, roomId, `m${i}`);
    const room = (await sync(hs, alice)).rooms.join[roomId];
    expect(bodies(room.timeline.events)).toEqual([...Array(10).keys()].map((i) => `m${i + 5}`));
    expect(room.timeline.limited).toBe(true);
    const state = new Map(room.state.events.map((e: any) => [`${e.type}|${e.state_key}`, e]));
    expect(state.has('m.room.create|')).toBe(true);
    expect(state.has(`m.room.member|${alice.userId}`)).toBe(true);
    expect((state.get('m.room.topic|') as any).content.topic).toBe('early');

    // prev_batch continues backwards in /messages exactly before the first timeline event.
    const older = await call(
      hs,
      'GET',
      `${C}/rooms/${enc(roomId)}/messages?dir=b&limit=5&from=${enc(room.timeline.prev_batch)}`,
      undefined,
      alice.accessToken,
    );
    expect(older.status, JSON.stringify(older.body)).toBe(200);
    expect(bodies(older.body.chunk)).toEqual(['m4', 'm3', 'm2', 'm1', 'm0']);
  });
});

describe('incremental sync', () => {
  test('only what is new: one message, not limited, no state; transaction_id for the sending device only', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    const a0 = await sync(hs, alice);
    const b0 = await sync(hs, bob);
    const eventId = await sendText(hs, alice, roomId, 'hello');
    const a1 = await sync(hs, alice, { since: a0.next_batch });
    const room = a1.rooms.join[roomId];
    expect(room.timeline.events.map((e: any) => e.event_id)).toEqual([eventId]);
    expect(room.timeline.limited).toBe(false);
    expect(room.state.events).toEqual([]);
    expect(typeof room.timeline.events[0].unsigned.transaction_id).toBe('string');
    const b1 = await sync(hs, bob, { since: b0.next_batch });
    expect(b1.rooms.join[roomId].timeline.events[0].event_id).toBe(eventId);
    expect(b1.rooms.join[roomId].timeline.events[0].unsigned.transaction_id).toBeUndefined();
    // Nothing new: no rooms at all.
    const a2 = await sync(hs, alice, { since: a1.next_batch });
    expect(a2.rooms.join).toEqual({});
  });

  test('a limited gap: the last events and the state delta over the gap', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    const s0 = await sync(hs, alice);
    await setState(hs, alice, roomId, 'm.room.topic', '', { topic: 'in the gap' });
    for (let i = 0; i < 12; i++) await sendText(hs, alice, roomId, `g${i}`);
    const room = (await sync(hs, alice, { since: s0.next_batch })).rooms.join[roomId];
    expect(room.timeline.limited).toBe(true);
    expect(bodies(room.timeline.events)).toEqual([...Array(10).keys()].map((i) => `g${i + 2}`));
    // Only what changed since the token: the topic, not the whole room state.
    expect(room.state.events.map((e: any) => [e.type, e.content.topic])).toEqual([['m.room.topic', 'in the gap']]);
  });

  test('a room joined since the last sync comes with its full state', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice, { name: 'Busy' });
    for (let i = 0; i < 12; i++) await sendText(hs, alice, roomId, `before${i}`);
    const b0 = await sync(hs, bob);
    expect(b0.rooms.join[roomId]).toBeUndefined();
    await joinRoom(hs, bob, roomId);
    const room = (await sync(hs, bob, { since: b0.next_batch })).rooms.join[roomId];
    expect(room).toBeDefined();
    const all = [...room.state.events, ...room.timeline.events];
    expect(all.some((e: any) => e.type === 'm.room.create')).toBe(true);
    expect(all.some((e: any) => e.type === 'm.room.name')).toBe(true);
    expect(room.timeline.events.at(-1)).toMatchObject({ type: 'm.room.member', state_key: bob.userId });
    expect(room.summary['m.joined_member_count']).toBe(2);
  });

  test('full_state=true returns every joined room with its state, at once', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    const s0 = await sync(hs, alice);
    const t0 = performance.now();
    const s1 = await sync(hs, alice, { since: s0.next_batch, full_state: 'true', timeout: '5000' });
    expect(performance.now() - t0).toBeLessThan(4000);
    const room = s1.rooms.join[roomId];
    expect(room.timeline.events).toEqual([]);
    expect(room.state.events.some((e: any) => e.type === 'm.room.create')).toBe(true);
  });

  test('account data: global and per room, delivered once when changed', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    const s0 = await sync(hs, alice);
    const put1 = await call(hs, 'PUT', `${C}/user/${enc(alice.userId)}/account_data/org.example.g`, { a: 1 }, alice.accessToken);
    expect(put1.status).toBe(200);
    const put2 = await call(
      hs,
      'PUT',
      `${C}/user/${enc(alice.userId)}/rooms/${enc(roomId)}/account_data/org.example.r`,
      { b: 2 },
      alice.accessToken,
    );
    expect(put2.status).toBe(200);
    const s1 = await sync(hs, alice, { since: s0.next_batch });
    expect(s1.account_data.events).toEqual([{ type: 'org.example.g', content: { a: 1 } }]);
    expect(s1.rooms.join[roomId].account_data.events).toEqual([{ type: 'org.example.r', content: { b: 2 } }]);
    const s2 = await sync(hs, alice, { since: s1.next_batch });
    expect(s2.account_data.events).toEqual([]);
    // An initial sync has all of it.
    const fresh = await sync(hs, alice);
    expect(fresh.account_data.events).toContainEqual({ type: 'org.example.g', content: { a: 1 } });
    expect(fresh.rooms.join[roomId].account_data.events).toContainEqual({ type: 'org.example.r', content: { b: 2 } });
  });

  test('summary heroes for an unnamed room, and unread counts from the read receipt', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    await sendText(hs, bob, roomId, 'one');
    const second = await sendText(hs, bob, roomId, 'two');
    await sendText(hs, bob, roomId, `three, ${alice.userId}`);
    const s = await sync(hs, alice);
    const room = s.rooms.join[roomId];
    expect(room.summary['m.heroes']).toEqual([bob.userId]);
    expect(room.unread_notifications).toEqual({ notification_count: 3, highlight_count: 1 });
    const rr = await call(hs, 'POST', `${C}/rooms/${enc(roomId)}/receipt/m.read/${enc(second)}`, {}, alice.accessToken);
    expect(rr.status).toBe(200);
    const after = await sync(hs, alice, { since: s.next_batch });
    expect(after.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 1, highlight_count: 1 });
    // The user's own message reads everything before it.
    await sendText(hs, alice, roomId, 'caught up');
    const mine = await sync(hs, alice, { since: after.next_batch });
    expect(mine.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
  });
});

describe('long polling', () => {
  test('a send wakes a waiting sync at once', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    const b0 = await sync(hs, bob);
    const t0 = performance.now();
    const waiting = sync(hs, bob, { since: b0.next_batch, timeout: '20000' });
    await new Promise((r) => setTimeout(r, 30));
    const eventId = await sendText(hs, alice, roomId, 'wake up');
    const sent = performance.now();
    const b1 = await waiting;
    const done = performance.now();
    expect(b1.rooms.join[roomId].timeline.events.map((e: any) => e.event_id)).toEqual([eventId]);
    // Returned because of the send, long before the timeout.
    expect(done - t0).toBeLessThan(10_000);
    expect(done - sent).toBeLessThan(1000);
  });

  test('activity that does not concern the user does not end the wait; the timeout does', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    const b0 = await sync(hs, bob);
    const t0 = performance.now();
    const waiting = sync(hs, bob, { since: b0.next_batch, timeout: '300' });
    await sendText(hs, alice, roomId, 'not for bob');
    const b1 = await waiting;
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    expect(b1.rooms.join).toEqual({});
    expect(b1.next_batch).not.toBe(b0.next_batch);
  });

  test('the request signal ends a waiting sync', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const s0 = await sync(hs, alice);
    const ac = new AbortController();
    const t0 = performance.now();
    const waiting = call(hs, 'GET', `${C}/sync?since=${s0.next_batch}&timeout=30000`, undefined, alice.accessToken, {
      signal: ac.signal,
    });
    setTimeout(() => ac.abort(), 30);
    await waiting;
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});

describe('invites and leaving', () => {
  test('an invite shows in invite with stripped state, in initial and incremental syncs', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newRoom(hs, alice, { name: 'Secret' });
    const b0 = await sync(hs, bob);
    await invite(hs, alice, roomId, bob);
    const b1 = await sync(hs, bob, { since: b0.next_batch });
    const inv = b1.rooms.invite[roomId];
    expect(inv).toBeDefined();
    const events = inv.invite_state.events;
    for (const e of events) expect(Object.keys(e).sort()).toEqual(['content', 'sender', 'state_key', 'type']);
    expect(events.find((e: any) => e.type === 'm.room.create')).toBeDefined();
    expect(events.find((e: any) => e.type === 'm.room.name').content.name).toBe('Secret');
    expect(events.find((e: any) => e.type === 'm.room.join_rules')).toBeDefined();
    expect(events.find((e: any) => e.type === 'm.room.member')).toEqual({
      type: 'm.room.member',
      state_key: bob.userId,
      sender: alice.userId,
      content: expect.objectContaining({ membership: 'invite' }),
    });
    expect(b1.rooms.join[roomId]).toBeUndefined();
    expect((await sync(hs, bob)).rooms.invite[roomId]).toBeDefined();
    // Nothing new for the invite: not repeated.
    expect((await sync(hs, bob, { since: b1.next_batch })).rooms.invite).toEqual({});
  });

  test('leaving: the room moves to leave with the timeline up to the leave event', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    const b0 = await sync(hs, bob);
    await sendText(hs, alice, roomId, 'bye bob');
    expect((await membership(hs, bob, roomId, 'leave')).status).toBe(200);
    await sendText(hs, alice, roomId, 'after bob left');
    const b1 = await sync(hs, bob, { since: b0.next_batch });
    expect(b1.rooms.join[roomId]).toBeUndefined();
    const left = b1.rooms.leave[roomId];
    expect(bodies(left.timeline.events)).toEqual(['bye bob']);
    expect(left.timeline.events.at(-1)).toMatchObject({ type: 'm.room.member', state_key: bob.userId, content: { membership: 'leave' } });
    // Later initial syncs leave it out unless include_leave asks for it.
    expect((await sync(hs, bob)).rooms.leave).toEqual({});
    const withLeave = await sync(hs, bob, { filter: JSON.stringify({ room: { include_leave: true } }) });
    expect(bodies(withLeave.rooms.leave[roomId].timeline.events)).not.toContain('after bob left');
    expect(withLeave.rooms.leave[roomId].timeline.events.at(-1).content.membership).toBe('leave');
  });

  test('kicked: the kick arrives in leave', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    const b0 = await sync(hs, bob);
    expect((await membership(hs, alice, roomId, 'kick', { user_id: bob.userId, reason: 'spam' })).status).toBe(200);
    const left = (await sync(hs, bob, { since: b0.next_batch })).rooms.leave[roomId];
    expect(left.timeline.events.at(-1)).toMatchObject({
      sender: alice.userId,
      state_key: bob.userId,
      content: { membership: 'leave', reason: 'spam' },
    });
  });

  test('a rejected invite: only the user’s own leave, no room history', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    await sendText(hs, alice, roomId, 'private talk');
    await invite(hs, alice, roomId, bob);
    const b0 = await sync(hs, bob);
    expect((await membership(hs, bob, roomId, 'leave')).status).toBe(200);
    const b1 = await sync(hs, bob, { since: b0.next_batch });
    expect(b1.rooms.invite).toEqual({});
    const left = b1.rooms.leave[roomId];
    expect(left.timeline.events.map((e: any) => [e.type, e.state_key, e.content.membership])).toEqual([
      ['m.room.member', bob.userId, 'leave'],
    ]);
    expect(left.state.events).toEqual([]);
  });
});
