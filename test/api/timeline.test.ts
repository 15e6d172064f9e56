/**
 * Reading a room's history through the API: /messages, /context, /timestamp_to_event, /relations, /threads.
 * Rooms are made through the public API (createRoom, send, join, leave).
 */
import { describe, expect, it } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { createHomeserver } from '../../src/homeserver.js';
import { META_STORE } from '../../src/storage/kv.js';
import { openMemoryKv } from '../../src/storage/memory-kv.js';
import { HOMESERVER_STORES, STORES } from '../../src/storage/schema.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';

const V3 = '/_matrix/client/v3';
const V1 = '/_matrix/client/v1';
const enc = encodeURIComponent;

let txn = 0;

async function newRoom(hs: Homeserver, user: TestUser, body: Record<string, unknown> = {}): Promise<string> {
  const res = await call(hs, 'POST', `${V3}/createRoom`, body, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.room_id;
}

async function send(
  hs: Homeserver,
  user: TestUser,
  roomId: string,
  content: Record<string, unknown>,
  type = 'm.room.message',
): Promise<string> {
  const res = await call(hs, 'PUT', `${V3}/rooms/${enc(roomId)}/send/${enc(type)}/t${++txn}`, content, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.event_id;
}

const text = (body: string) => ({ msgtype: 'm.text', body });

async function setState(hs: Homeserver, user: TestUser, roomId: string, type: string, content: Record<string, unknown>) {
  const res = await call(hs, 'PUT', `${V3}/rooms/${enc(roomId)}/state/${enc(type)}/`, content, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.event_id as string;
}

async function join(hs: Homeserver, user: TestUser, roomId: string): Promise<void> {
  const res = await call(hs, 'POST', `${V3}/rooms/${enc(roomId)}/join`, {}, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

async function leave(hs: Homeserver, user: TestUser, roomId: string): Promise<void> {
  const res = await call(hs, 'POST', `${V3}/rooms/${enc(roomId)}/leave`, {}, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

function messagesPath(roomId: string, params: Record<string, string | number>): string {
  const q = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
  return `${V3}/rooms/${enc(roomId)}/messages?${q}`;
}

async function messages(hs: Homeserver, user: TestUser, roomId: string, params: Record<string, string | number>) {
  return call(hs, 'GET', messagesPath(roomId, params), undefined, user.accessToken);
}

/** Bodies of the m.room.message events of a chunk, in order. */
const bodies = (chunk: any[]) => chunk.filter((e) => e.type === 'm.room.message').map((e) => e.content.body);

describe('GET /rooms/{roomId}/messages', () => {
  it('returns the latest events newest first, and omits end at the start of the room', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const room = await newRoom(hs, alice);
    for (const b of ['one', 'two', 'three']) await send(hs, alice, room, text(b));
    const res = await messages(hs, alice, room, { dir: 'b', limit: 50 });
    expect(res.status).toBe(200);
    expect(bodies(res.body.chunk)).toEqual(['three', 'two', 'one']);
    expect(res.body.chunk.at(-1).type).toBe('m.room.create');
    expect(typeof res.body.start).toBe('string');
    expect(res.body.end).toBeUndefined();
    const first = res.body.chunk[0];
    expect(first.room_id).toBe(room);
    expect(first.sender).toBe(alice.userId);
    expect(typeof first.event_id).toBe('string');
    expect(typeof first.origin_server_ts).toBe('number');
    // The sender's own device sees its transaction ID.
    expect(typeof first.unsigned.transaction_id).toBe('string');

    const fwd = await messages(hs, alice, room, { dir: 'f', limit: 3 });
    expect(fwd.status).toBe(200);
    expect(fwd.body.chunk[0].type).toBe('m.room.create');
    expect(typeof fwd.body.end).toBe('string');
  });

  it('pages over more than 100 events in both directions without skipping or repeating one', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const room = await newRoom(hs, alice);
    const sent: string[] = [];
    for (let i = 0; i < 120; i++) sent.push(await send(hs, alice, room, text(`m${i}`)));

    // Backwards from the end, 7 at a time.
    const back: string[] = [];
    let from: string | undefined;
    let pages = 0;
    for (;;) {
      const res = await messages(hs, alice, room, { dir: 'b', limit: 7, ...(from ? { from } : {}) });
      expect(res.status).toBe(200);
      expect(res.body.chunk.length).toBeLessThanOrEqual(7);
      back.push(...res.body.chunk.map((e: any) => e.event_id));
      pages++;
      if (res.body.end === undefined) break;
      from = res.body.end;
    }
    expect(new Set(back).size).toBe(back.length);
    const backMessages = back.filter((id) => sent.includes(id));
    expect(backMessages).toEqual([...sent].reverse());
    expect(pages).toBeGreaterThan(17);

    // Forwards from the beginning, 13 at a time, reaches the same events in the opposite order.
    const fwd: string[] = [];
    from = undefined;
    for (;;) {
      const res = await messages(hs, alice, room, { dir: 'f', limit: 13, ...(from ? { from } : {}) });
      expect(res.status).toBe(200);
      fwd.push(...res.body.chunk.map((e: any) => e.event_id));
      if (res.body.end === undefined) break;
      from = res.body.end;
    }
    expect(fwd).toEqual([...back].reverse());

    // An `end` token paged back to, then forwards from it, continues exactly where the backward page began.
    const page1 = await messages(hs, alice, room, { dir: 'b', limit: 10 });
    const page2 = await messages(hs, alice, room, { dir: 'b', limit: 10, from: page1.body.end });
    const again = await messages(hs, alice, room, { dir: 'f', limit: 10, from: page2.body.end });
    expect(again.body.chunk.map((e: any) => e.event_id)).toEqual(page2.body.chunk.map((e: any) => e.event_id).reverse());
  });

  it('stops at `to`', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const room = await newRoom(hs, alice);
    for (let i = 0; i < 6; i++) await send(hs, alice, room, text(`m${i}`));
    const page1 = await messages(hs, alice, room, { dir: 'b', limit: 2 });
    expect(bodies(page1.body.chunk)).toEqual(['m5', 'm4']);
    const page2 = await messages(hs, alice, room, { dir: 'b', limit: 2, from: page1.body.end });
    const between = await messages(hs, alice, room, { dir: 'b', limit: 50, to: page1.body.end });
    expect(bodies(between.body.chunk)).toEqual(['m5', 'm4']);
    expect(between.body.end).toBeUndefined();
    const fwd = await messages(hs, alice, room, { dir: 'f', limit: 50, from: page2.body.end, to: page1.body.end });
    // page1.end is the boundary just before m4: `to` stops there.
    expect(bodies(fwd.body.chunk)).toEqual(['m2', 'm3']);
  });

  it('applies a RoomEventFilter: types with wildcards, senders, contains_url, lazy_load_members', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const room = await newRoom(hs, alice, { preset: 'public_chat' });
    await join(hs, bob, room);
    await send(hs, alice, room, text('from alice'));
    await send(hs, bob, room, text('from bob'));
    await send(hs, bob, room, { msgtype: 'm.image', body: 'pic', url: 'mxc://example.org/abc' });
    await send(hs, alice, room, { key: 'v' }, 'org.example.custom');

    const f = async (filter: unknown) =>
      (await messages(hs, alice, room, { dir: 'b', limit: 50, filter: JSON.stringify(filter) })).body;

    const onlyMessages = await f({ types: ['m.room.mess*'] });
    expect(onlyMessages.chunk.every((e: any) => e.type === 'm.room.message')).toBe(true);
    expect(bodies(onlyMessages.chunk)).toEqual(['pic', 'from bob', 'from alice']);
    expect((await f({ not_types: ['m.room.*'] })).chunk.map((e: any) => e.type)).toEqual(['org.example.custom']);
    expect(bodies((await f({ types: ['m.room.message'], senders: [bob.userId] })).chunk)).toEqual(['pic', 'from bob']);
    expect(bodies((await f({ types: ['m.room.message'], not_senders: [bob.userId] })).chunk)).toEqual(['from alice']);
    expect(bodies((await f({ contains_url: true })).chunk)).toEqual(['pic']);
    expect((await f({ contains_url: false })).chunk.some((e: any) => e.content.url)).toBe(false);
    expect((await f({ not_rooms: [room] })).chunk).toEqual([]);

    const lazy = await f({ types: ['m.room.message'], senders: [bob.userId], lazy_load_members: true });
    expect(lazy.state.map((e: any) => [e.type, e.state_key])).toEqual([['m.room.member', bob.userId]]);
    expect(lazy.state[0].content.membership).toBe('join');
    // Without lazy-loading no state is sent.
    expect((await f({ types: ['m.room.message'] })).state).toBeUndefined();
  });

  it('keeps paging when a filter hides most events, still never repeating one', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const room = await newRoom(hs, alice);
    const wanted: string[] = [];
    for (let i = 0; i < 40; i++) {
      const id = await send(hs, alice, room, text(`m${i}`), i % 10 === 0 ? 'org.example.rare' : 'm.room.message');
      if (i % 10 === 0) wanted.push(id);
    }
    const got: string[] = [];
    let from: string | undefined;
    for (let n = 0; n < 50; n++) {
      const res = await messages(hs, alice, room, {
        dir: 'b',
        limit: 1,
        filter: JSON.stringify({ types: ['org.example.rare'] }),
        ...(from ? { from } : {}),
      });
      got.push(...res.body.chunk.map((e: any) => e.event_id));
      if (res.body.end === undefined) break;
      from = res.body.end;
    }
    expect(got).toEqual([...wanted].reverse());
  });

  it('honours history visibility: joined hides what came before the join, shared shows it', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);

    const joinedRoom = await newRoom(hs, alice, { preset: 'public_chat' });
    await setState(hs, alice, joinedRoom, 'm.room.history_visibility', { history_visibility: 'joined' });
    await send(hs, alice, joinedRoom, text('before bob'));
    await join(hs, bob, joinedRoom);
    await send(hs, alice, joinedRoom, text('after bob'));
    const seen = await messages(hs, bob, joinedRoom, { dir: 'b', limit: 50 });
    expect(seen.status).toBe(200);
    expect(bodies(seen.body.chunk)).toEqual(['after bob']);
    // Bob's own join is visible to him. (So are the events from before the switch to 'joined': they were
    // sent under 'shared'.)
    expect(seen.body.chunk.some((e: any) => e.type === 'm.room.member' && e.state_key === bob.userId)).toBe(true);
    // Alice, a member all along, sees both.
    expect(bodies((await messages(hs, alice, joinedRoom, { dir: 'b', limit: 50 })).body.chunk)).toEqual([
      'after bob',
      'before bob',
    ]);

    const sharedRoom = await newRoom(hs, alice, { preset: 'public_chat' });
    await send(hs, alice, sharedRoom, text('before bob'));
    await join(hs, bob, sharedRoom);
    await send(hs, alice, sharedRoom, text('after bob'));
    const shared = await messages(hs, bob, sharedRoom, { dir: 'b', limit: 50 });
    expect(bodies(shared.body.chunk)).toEqual(['after bob', 'before bob']);
  });

  it('shows a user who left nothing after their leave', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const room = await newRoom(hs, alice, { preset: 'public_chat' });
    await join(hs, bob, room);
    await send(hs, alice, room, text('while bob was here'));
    await leave(hs, bob, room);
    await send(hs, alice, room, text('after bob left'));
    const res = await messages(hs, bob, room, { dir: 'b', limit: 50 });
    expect(res.status).toBe(200);
    expect(bodies(res.body.chunk)).toEqual(['while bob was here']);
    expect(res.body.chunk[0].type).toBe('m.room.member');
    expect(res.body.chunk[0].content.membership).toBe('leave');
    const fwd = await messages(hs, bob, room, { dir: 'f', limit: 50 });
    expect(bodies(fwd.body.chunk)).toEqual(['while bob was here']);
  });

  it('lets anyone read a world_readable room and nobody else read a shared one', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const carol = await newUser(hs);
    const open = await newRoom(hs, alice, { preset: 'public_chat' });
    await setState(hs, alice, open, 'm.room.history_visibility', { history_visibility: 'world_readable' });
    await send(hs, alice, open, text('hello world'));
    const peek = await messages(hs, carol, open, { dir: 'b', limit: 5 });
    expect(peek.status).toBe(200);
    expect(bodies(peek.body.chunk)).toEqual(['hello world']);

    const closed = await newRoom(hs, alice, { preset: 'public_chat' });
    const denied = await messages(hs, carol, closed, { dir: 'b' });
    expect([denied.status, denied.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
  });

  it('drops messages from ignored users', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const room = await newRoom(hs, alice, { preset: 'public_chat' });
    await join(hs, bob, room);
    await send(hs, bob, room, text('noise'));
    await send(hs, alice, room, text('signal'));
    const put = await call(
      hs,
      'PUT',
      `${V3}/user/${enc(alice.userId)}/account_data/m.ignored_user_list`,
      { ignored_users: { [bob.userId]: {} } },
      alice.accessToken,
    );
    expect(put.status).toBe(200);
    expect(bodies((await messages(hs, alice, room, { dir: 'b', limit: 50 })).body.chunk)).toEqual(['signal']);
  });

  it('answers bad input with the spec error codes', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const carol = await newUser(hs);
    const room = await newRoom(hs, alice);
    const bad = async (path: string, status: number, errcode: string, user: TestUser | null = alice) => {
      const res = await call(hs, 'GET', path, undefined, user?.accessToken);
      expect([res.status, res.body.errcode], path).toEqual([status, errcode]);
    };
    await bad(`${V3}/rooms/${enc(room)}/messages`, 400, 'M_MISSING_PARAM');
    await bad(messagesPath(room, { dir: 'x' }), 400, 'M_INVALID_PARAM');
    await bad(messagesPath(room, { dir: 'b', limit: -1 }), 400, 'M_INVALID_PARAM');
    await bad(messagesPath(room, { dir: 'b', limit: 'ten' }), 400, 'M_INVALID_PARAM');
    await bad(messagesPath(room, { dir: 'b', from: 'nonsense' }), 400, 'M_INVALID_PARAM');
    await bad(messagesPath(room, { dir: 'b', to: 'x1' }), 400, 'M_INVALID_PARAM');
    await bad(messagesPath(room, { dir: 'b', filter: '{not json' }), 400, 'M_INVALID_PARAM');
    await bad(messagesPath(room, { dir: 'b', filter: '[1]' }), 400, 'M_BAD_JSON');
    await bad(messagesPath(room, { dir: 'b', filter: '{"types":"m.room.message"}' }), 400, 'M_BAD_JSON');
    await bad(messagesPath(room, { dir: 'b', filter: '{"senders":["not-a-user"]}' }), 400, 'M_INVALID_PARAM');
    await bad(messagesPath(room, { dir: 'b', filter: '{"limit":0}' }), 400, 'M_INVALID_PARAM');
    await bad(messagesPath('not-a-room', { dir: 'b' }), 400, 'M_INVALID_PARAM');
    await bad(messagesPath(`!unknown:${hs.serverName}`, { dir: 'b' }), 403, 'M_FORBIDDEN');
    await bad(messagesPath(room, { dir: 'b' }), 403, 'M_FORBIDDEN', carol);
    await bad(messagesPath(room, { dir: 'b' }), 401, 'M_MISSING_TOKEN', null);
    // A huge limit is lowered, not refused.
    expect((await messages(hs, alice, room, { dir: 'b', limit: 1_000_000 })).status).toBe(200);
  });
});

describe('GET /rooms/{roomId}/context/{eventId}', () => {
  it('returns the event with events before and after, the state, and tokens for /messages', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const room = await newRoom(hs, alice, { name: 'Context room' });
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await send(hs, alice, room, text(`m${i}`)));
    const res = await call(hs, 'GET', `${V3}/rooms/${enc(room)}/context/${enc(ids[5])}?limit=4`, undefined, alice.accessToken);
    expect(res.status).toBe(200);
    expect(res.body.event.event_id).toBe(ids[5]);
    expect(bodies(res.body.events_before)).toEqual(['m4', 'm3']);
    expect(bodies(res.body.events_after)).toEqual(['m6', 'm7']);
    const stateTypes = res.body.state.map((e: any) => e.type);
    expect(stateTypes).toContain('m.room.create');
    expect(stateTypes).toContain('m.room.name');
    expect(res.body.state.find((e: any) => e.type === 'm.room.member').state_key).toBe(alice.userId);

    const older = await messages(hs, alice, room, { dir: 'b', limit: 2, from: res.body.start });
    expect(bodies(older.body.chunk)).toEqual(['m2', 'm1']);
    const newer = await messages(hs, alice, room, { dir: 'f', limit: 2, from: res.body.end });
    expect(bodies(newer.body.chunk)).toEqual(['m8', 'm9']);

    const zero = await call(hs, 'GET', `${V3}/rooms/${enc(room)}/context/${enc(ids[5])}?limit=0`, undefined, alice.accessToken);
    expect(zero.body.event.event_id).toBe(ids[5]);
    expect([zero.body.events_before, zero.body.events_after]).toEqual([[], []]);

    const filtered = await call(
      hs,
      'GET',
      `${V3}/rooms/${enc(room)}/context/${enc(ids[5])}?limit=4&filter=${enc(JSON.stringify({ types: ['m.room.message'], lazy_load_members: true }))}`,
      undefined,
      alice.accessToken,
    );
    expect(filtered.status).toBe(200);
    expect(filtered.body.state).toEqual([]);
  });

  it('answers unknown events with 404, hidden ones and outsiders with 403, bad input with 400', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const room = await newRoom(hs, alice, { preset: 'public_chat' });
    await setState(hs, alice, room, 'm.room.history_visibility', { history_visibility: 'joined' });
    const early = await send(hs, alice, room, text('early'));
    const other = await newRoom(hs, alice);
    const elsewhere = await send(hs, alice, other, text('elsewhere'));
    const ctx = (r: string, e: string, q = '', u: TestUser = alice) =>
      call(hs, 'GET', `${V3}/rooms/${enc(r)}/context/${enc(e)}${q}`, undefined, u.accessToken);

    const unknown = await ctx(room, '$doesnotexist');
    expect([unknown.status, unknown.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    const wrongRoom = await ctx(room, elsewhere);
    expect([wrongRoom.status, wrongRoom.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    const outsider = await ctx(room, early, '', bob);
    expect([outsider.status, outsider.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    await join(hs, bob, room);
    const hidden = await ctx(room, early, '', bob);
    expect([hidden.status, hidden.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    const badLimit = await ctx(room, early, '?limit=-3');
    expect([badLimit.status, badLimit.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    const badFilter = await ctx(room, early, '?filter=%7Bbroken');
    expect([badFilter.status, badFilter.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
  });
});

describe('GET /rooms/{roomId}/timestamp_to_event', () => {
  it('finds the closest event in either direction, and 404 when there is none', async () => {
    // Far in the future, so that createRoom (which keeps create timestamps increasing across rooms) uses it too.
    const base = 5_000_000_000_000;
    let now = base;
    const hs = await newHomeserver({}, { now: () => now });
    const alice = await newUser(hs);
    const room = await newRoom(hs, alice);
    const ids: string[] = [];
    for (let i = 1; i <= 5; i++) {
      now = base + 1_000_000 + i * 1000;
      ids.push(await send(hs, alice, room, text(`at ${i}`)));
    }
    const find = (ts: number, dir: string) =>
      call(hs, 'GET', `${V1}/rooms/${enc(room)}/timestamp_to_event?ts=${ts}&dir=${dir}`, undefined, alice.accessToken);
    const at = (i: number) => base + 1_000_000 + i * 1000;
    const f = await find(at(2) + 500, 'f');
    expect(f.status).toBe(200);
    expect(f.body).toEqual({ event_id: ids[2], origin_server_ts: at(3) });
    expect((await find(at(2) + 500, 'b')).body.event_id).toBe(ids[1]);
    expect((await find(at(3), 'b')).body.event_id).toBe(ids[2]);
    expect((await find(at(3), 'f')).body.event_id).toBe(ids[2]);
    expect((await find(0, 'f')).body.origin_server_ts).toBe(base);
    expect((await find(at(99), 'b')).body.event_id).toBe(ids[4]);
    const none = await find(at(99), 'f');
    expect([none.status, none.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    const before = await find(10, 'b');
    expect([before.status, before.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
  });

  it('copes with timestamps out of stream order, and finds events far from the room start', async () => {
    const base = 6_000_000_000_000;
    let now = base;
    const hs = await newHomeserver({}, { now: () => now });
    const alice = await newUser(hs);
    const room = await newRoom(hs, alice);
    const find = (ts: number, dir: string) =>
      call(hs, 'GET', `${V1}/rooms/${enc(room)}/timestamp_to_event?ts=${ts}&dir=${dir}`, undefined, alice.accessToken);
    // A clock that jumps around (as other servers' clocks do).
    const skewed: Record<number, string> = {};
    for (const offset of [5000, 1000, 3000, 2000, 4000]) {
      now = base + offset;
      skewed[offset] = await send(hs, alice, room, text(`at +${offset}`));
    }
    expect((await find(base + 2500, 'f')).body.event_id).toBe(skewed[3000]);
    expect((await find(base + 2500, 'b')).body.event_id).toBe(skewed[2000]);
    expect((await find(base + 4500, 'f')).body.event_id).toBe(skewed[5000]);

    const later: string[] = [];
    for (let i = 0; i < 150; i++) {
      now = base + 10_000 + i * 10;
      later.push(await send(hs, alice, room, text(`later ${i}`)));
    }
    expect((await find(base + 10_000 + 1005, 'f')).body.event_id).toBe(later[101]);
    expect((await find(base + 10_000 + 1005, 'b')).body.event_id).toBe(later[100]);
  });

  it('answers bad input with 400 and outsiders with 403', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const carol = await newUser(hs);
    const room = await newRoom(hs, alice);
    const get = (q: string, u: TestUser = alice) =>
      call(hs, 'GET', `${V1}/rooms/${enc(room)}/timestamp_to_event${q}`, undefined, u.accessToken);
    const cases: Array<[string, number, string]> = [
      ['?dir=f', 400, 'M_MISSING_PARAM'],
      ['?ts=5', 400, 'M_MISSING_PARAM'],
      ['?ts=abc&dir=f', 400, 'M_INVALID_PARAM'],
      ['?ts=5&dir=up', 400, 'M_INVALID_PARAM'],
    ];
    for (const [q, status, errcode] of cases) {
      const res = await get(q);
      expect([res.status, res.body.errcode], q).toEqual([status, errcode]);
    }
    const outsider = await get('?ts=5&dir=f', carol);
    expect([outsider.status, outsider.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
  });
});

describe('GET /rooms/{roomId}/relations/{eventId}', () => {
  async function threadedRoom(hs?: Homeserver) {
    hs ??= await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const room = await newRoom(hs, alice, { preset: 'public_chat' });
    await join(hs, bob, room);
    const root = await send(hs, alice, room, text('root'));
    const rel = (relType: string, extra: Record<string, unknown> = {}) => ({
      'm.relates_to': { rel_type: relType, event_id: root, ...extra },
    });
    const r1 = await send(hs, bob, room, rel('m.annotation', { key: '👍' }), 'm.reaction');
    const t1 = await send(hs, bob, room, { ...text('thread 1'), ...rel('m.thread') });
    const r2 = await send(hs, alice, room, rel('m.annotation', { key: '🎉' }), 'm.reaction');
    const t2 = await send(hs, alice, room, { ...text('thread 2'), ...rel('m.thread') });
    const edit = await send(hs, alice, room, {
      ...text('* root edited'),
      'm.new_content': text('root edited'),
      ...rel('m.replace'),
    });
    // A reaction to a thread reply: an indirect relation of the root.
    const deep = await send(hs, alice, room, { 'm.relates_to': { rel_type: 'm.annotation', event_id: t1, key: '👀' } }, 'm.reaction');
    return { hs, alice, bob, room, root, r1, t1, r2, t2, edit, deep };
  }

  const relPath = (room: string, ev: string, rest = '', q = '') =>
    `${V1}/rooms/${enc(room)}/relations/${enc(ev)}${rest}${q}`;

  it('lists children newest first, by rel_type and event type, and recursively', async () => {
    const { hs, alice, room, root, r1, t1, r2, t2, edit, deep } = await threadedRoom();
    const ids = (res: any) => res.body.chunk.map((e: any) => e.event_id);
    const all = await call(hs, 'GET', relPath(room, root, '', '?limit=50'), undefined, alice.accessToken);
    expect(all.status).toBe(200);
    expect(ids(all)).toEqual([edit, t2, r2, t1, r1]);
    expect(all.body.next_batch).toBeUndefined();
    expect(all.body.recursion_depth).toBeUndefined();

    const threads = await call(hs, 'GET', relPath(room, root, '/m.thread'), undefined, alice.accessToken);
    expect(ids(threads)).toEqual([t2, t1]);
    const reactions = await call(hs, 'GET', relPath(room, root, '/m.annotation/m.reaction'), undefined, alice.accessToken);
    expect(ids(reactions)).toEqual([r2, r1]);
    const none = await call(hs, 'GET', relPath(room, root, '/m.annotation/m.room.message'), undefined, alice.accessToken);
    expect(none.body.chunk).toEqual([]);

    const fwd = await call(hs, 'GET', relPath(room, root, '', '?dir=f&limit=50'), undefined, alice.accessToken);
    expect(ids(fwd)).toEqual([r1, t1, r2, t2, edit]);

    const recursive = await call(hs, 'GET', relPath(room, root, '', '?recurse=true&limit=50'), undefined, alice.accessToken);
    expect(ids(recursive)).toEqual([deep, edit, t2, r2, t1, r1]);
    expect(recursive.body.recursion_depth).toBe(3);
    const flat = await call(hs, 'GET', relPath(room, root, '', '?recurse=false'), undefined, alice.accessToken);
    expect(flat.body.recursion_depth).toBe(1);
    // Through a non-matching intermediate event nothing is reached: m.annotation of root, not of t1.
    const recursiveReactions = await call(hs, 'GET', relPath(room, root, '/m.annotation', '?recurse=true'), undefined, alice.accessToken);
    expect(ids(recursiveReactions)).toEqual([r2, r1]);
  });

  it('pages with next_batch in both directions without repeats', async () => {
    const { hs, alice, room, root, r1, t1, r2, t2, edit } = await threadedRoom();
    const order = [edit, t2, r2, t1, r1];
    for (const dir of ['b', 'f'] as const) {
      const got: string[] = [];
      let from: string | undefined;
      for (let n = 0; n < 10; n++) {
        const q = `?limit=2&dir=${dir}${from ? `&from=${enc(from)}` : ''}`;
        const res = await call(hs, 'GET', relPath(room, root, '', q), undefined, alice.accessToken);
        expect(res.status).toBe(200);
        got.push(...res.body.chunk.map((e: any) => e.event_id));
        if (from) expect(res.body.prev_batch).toBe(from);
        if (!res.body.next_batch) break;
        from = res.body.next_batch;
      }
      expect(got).toEqual(dir === 'b' ? order : [...order].reverse());
    }
  });

  it('bundles relations stored before parent markers existed, once the schema migration has run', async () => {
    const kv = await openMemoryKv({ name: 'relations-before-markers', stores: HOMESERVER_STORES });
    const first = await createHomeserver({ kv }, {});
    const { bob, room, root, t2 } = await threadedRoom(first);
    const rootRelations = async (hs: Homeserver) =>
      (await messages(hs, bob, room, { dir: 'b', limit: 50 })).body.chunk.find((e: any) => e.event_id === root).unsigned['m.relations'];
    expect((await rootRelations(first))['m.thread'].count).toBe(2);
    // The database as a build without markers left it: children indexed, no [parent] rows, schema version 0.
    await kv.write(async (tx) => {
      for (const [key] of await tx.range(STORES.relations)) if (key.length === 1) await tx.delete(STORES.relations, key);
      await tx.put(META_STORE, ['schemaVersion'], 0);
    });
    expect(await rootRelations(first)).toBeUndefined();
    await first.stop();
    const second = await createHomeserver({ kv }, {});
    const rels = await rootRelations(second);
    expect(rels['m.thread'].count).toBe(2);
    expect(rels['m.thread'].latest_event.event_id).toBe(t2);
    expect(rels['m.replace']).toBeDefined();
    await second.stop();
  });

  it('bundles thread, edit and reference aggregations into /messages', async () => {
    const { hs, alice, bob, room, root, t2, edit } = await threadedRoom();
    const res = await messages(hs, bob, room, { dir: 'b', limit: 50 });
    const rootEv = res.body.chunk.find((e: any) => e.event_id === root);
    const rels = rootEv.unsigned['m.relations'];
    expect(rels['m.thread'].count).toBe(2);
    expect(rels['m.thread'].current_user_participated).toBe(true);
    expect(rels['m.thread'].latest_event.event_id).toBe(t2);
    expect(rels['m.replace'].event_id).toBe(edit);
    // Alice's own view: she started the thread.
    const mine = await messages(hs, alice, room, { dir: 'b', limit: 50 });
    expect(mine.body.chunk.find((e: any) => e.event_id === root).unsigned['m.relations']['m.thread'].current_user_participated).toBe(true);
  });

  it('answers unknown parents with 404, outsiders with 403, bad input with 400', async () => {
    const { hs, alice, room, root } = await threadedRoom();
    const carol = await newUser(hs);
    const cases: Array<[string, TestUser, number, string]> = [
      [relPath(room, '$nope'), alice, 404, 'M_NOT_FOUND'],
      [relPath(room, root), carol, 403, 'M_FORBIDDEN'],
      [relPath(room, root, '', '?dir=sideways'), alice, 400, 'M_INVALID_PARAM'],
      [relPath(room, root, '', '?limit=x'), alice, 400, 'M_INVALID_PARAM'],
      [relPath(room, root, '', '?from=bogus'), alice, 400, 'M_INVALID_PARAM'],
      [relPath(room, root, '', '?recurse=maybe'), alice, 400, 'M_INVALID_PARAM'],
      [relPath('bad', root), alice, 400, 'M_INVALID_PARAM'],
    ];
    for (const [path, user, status, errcode] of cases) {
      const res = await call(hs, 'GET', path, undefined, user.accessToken);
      expect([res.status, res.body.errcode], path).toEqual([status, errcode]);
    }
  });
});

describe('GET /rooms/{roomId}/threads', () => {
  it('lists thread roots by latest activity, filters participated, and pages without repeats', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const room = await newRoom(hs, alice, { preset: 'public_chat' });
    await join(hs, bob, room);
    const reply = (root: string, body: string) => ({ ...text(body), 'm.relates_to': { rel_type: 'm.thread', event_id: root } });
    const a = await send(hs, alice, room, text('thread A'));
    const b = await send(hs, alice, room, text('thread B'));
    const c = await send(hs, bob, room, text('thread C'));
    await send(hs, alice, room, reply(a, 'a1'));
    await send(hs, bob, room, reply(c, 'c1'));
    await send(hs, bob, room, reply(b, 'b1'));
    await send(hs, alice, room, reply(a, 'a2'));
    await send(hs, alice, room, text('not a thread'));

    const list = async (q: string, u: TestUser = alice) =>
      call(hs, 'GET', `${V1}/rooms/${enc(room)}/threads${q}`, undefined, u.accessToken);
    const all = await list('?limit=10');
    expect(all.status).toBe(200);
    expect(all.body.chunk.map((e: any) => e.event_id)).toEqual([a, b, c]);
    expect(all.body.next_batch).toBeUndefined();
    const aggA = all.body.chunk[0].unsigned['m.relations']['m.thread'];
    expect(aggA.count).toBe(2);
    expect(aggA.latest_event.content.body).toBe('a2');

    const got: string[] = [];
    let from: string | undefined;
    for (let n = 0; n < 10; n++) {
      const res = await list(`?limit=1${from ? `&from=${enc(from)}` : ''}`);
      got.push(...res.body.chunk.map((e: any) => e.event_id));
      if (!res.body.next_batch) break;
      from = res.body.next_batch;
    }
    expect(got).toEqual([a, b, c]);

    // Bob sent root C and replies in B and C; Alice sent roots A and B.
    expect((await list('?include=participated', bob)).body.chunk.map((e: any) => e.event_id)).toEqual([b, c]);
    expect((await list('?include=participated', alice)).body.chunk.map((e: any) => e.event_id)).toEqual([a, b]);
  });

  it('answers bad input with 400 and outsiders with 403', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const carol = await newUser(hs);
    const room = await newRoom(hs, alice);
    const cases: Array<[string, TestUser, number, string]> = [
      ['?include=some', alice, 400, 'M_INVALID_PARAM'],
      ['?limit=0', alice, 400, 'M_INVALID_PARAM'],
      ['?from=zzz', alice, 400, 'M_INVALID_PARAM'],
      ['', carol, 403, 'M_FORBIDDEN'],
    ];
    for (const [q, user, status, errcode] of cases) {
      const res = await call(hs, 'GET', `${V1}/rooms/${enc(room)}/threads${q}`, undefined, user.accessToken);
      expect([res.status, res.body.errcode], q).toEqual([status, errcode]);
    }
    const unknownRoom = await call(hs, 'GET', `${V1}/rooms/${enc(`!nope:${hs.serverName}`)}/threads`, undefined, alice.accessToken);
    expect([unknownRoom.status, unknownRoom.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
  });
});
