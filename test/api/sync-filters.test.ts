/**
 * /sync filters (stored and inline: timeline limit, types/not_types, rooms, lazy-loading members, event_fields,
 * event_format) and bad input to /sync (sync.yaml, _index.md "Filtering").
 */
import { describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import { enc, joinRoom, newPublicRoom, newRoom, sendText } from '../helpers/rooms.js';
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

const inline = (filter: unknown) => ({ filter: JSON.stringify(filter) });
const bodies = (events: any[]) => events.filter((e) => e.type === 'm.room.message').map((e) => e.content.body);

describe('sync filters', () => {
  test('inline and stored filters: timeline limit and not_types', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    for (let i = 0; i < 5; i++) await sendText(hs, alice, roomId, `m${i}`);

    const two = (await sync(hs, alice, inline({ room: { timeline: { limit: 2 } } }))).rooms.join[roomId];
    expect(bodies(two.timeline.events)).toEqual(['m3', 'm4']);
    expect(two.timeline.limited).toBe(true);

    const created = await call(
      hs,
      'POST',
      `${C}/user/${enc(alice.userId)}/filter`,
      { room: { timeline: { not_types: ['m.room.*'], limit: 3 } } },
      alice.accessToken,
    );
    expect(created.status).toBe(200);
    await call(hs, 'PUT', `${C}/rooms/${enc(roomId)}/send/org.example.ping/p1`, { n: 1 }, alice.accessToken);
    const stored = (await sync(hs, alice, { filter: created.body.filter_id })).rooms.join[roomId];
    expect(stored.timeline.events.map((e: any) => e.type)).toEqual(['org.example.ping']);
  });

  test('types, senders and rooms', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const r1 = await newPublicRoom(hs, alice);
    const r2 = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, r1);
    await sendText(hs, alice, r1, 'from alice');
    await sendText(hs, bob, r1, 'from bob');
    const s = await sync(hs, alice, inline({ room: { rooms: [r1], timeline: { types: ['m.room.message'], senders: [bob.userId] } } }));
    expect(Object.keys(s.rooms.join)).toEqual([r1]);
    expect(bodies(s.rooms.join[r1].timeline.events)).toEqual(['from bob']);
    const notR1 = await sync(hs, alice, inline({ room: { not_rooms: [r1] } }));
    expect(Object.keys(notR1.rooms.join)).toEqual([r2]);
  });

  test('lazy_load_members: only the members the timeline needs (and the user)', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    // Named, so that no heroes are needed (their member events would be sent too).
    const roomId = await newPublicRoom(hs, alice, { name: 'Lazy' });
    const quiet: TestUser[] = [];
    for (let i = 0; i < 3; i++) {
      const u = await newUser(hs);
      await joinRoom(hs, u, roomId);
      quiet.push(u);
    }
    const talker = await newUser(hs);
    await joinRoom(hs, talker, roomId);
    for (let i = 0; i < 12; i++) await sendText(hs, talker, roomId, `t${i}`);

    const lazy = (await sync(hs, alice, inline({ room: { state: { lazy_load_members: true } } }))).rooms.join[roomId];
    const members = lazy.state.events.filter((e: any) => e.type === 'm.room.member').map((e: any) => e.state_key).sort();
    expect(members).toEqual([alice.userId, talker.userId].sort());
    expect(lazy.state.events.some((e: any) => e.type === 'm.room.create')).toBe(true);
    expect(lazy.summary['m.joined_member_count']).toBe(5);

    // Without a name the heroes' member events are included too (sync.yaml m.heroes).
    await call(hs, 'PUT', `${C}/rooms/${enc(roomId)}/state/m.room.name/`, { name: '' }, alice.accessToken);
    const unnamed = (await sync(hs, alice, inline({ room: { state: { lazy_load_members: true } } }))).rooms.join[roomId];
    const heroes: string[] = unnamed.summary['m.heroes'];
    expect(heroes).toEqual([...quiet.map((u) => u.userId), talker.userId]);
    const withHeroes = [...unnamed.state.events, ...unnamed.timeline.events].filter((e: any) => e.type === 'm.room.member');
    for (const h of heroes) expect(withHeroes.map((e: any) => e.state_key)).toContain(h);

    const eager = (await sync(hs, alice)).rooms.join[roomId];
    const all = eager.state.events.filter((e: any) => e.type === 'm.room.member').map((e: any) => e.state_key);
    for (const u of quiet) expect(all).toContain(u.userId);
  });

  test('event_fields and event_format', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    await sendText(hs, alice, roomId, 'trimmed');
    const s = await sync(hs, alice, inline({ event_fields: ['type', 'content.body'], room: { timeline: { limit: 1 } } }));
    expect(s.rooms.join[roomId].timeline.events).toEqual([{ type: 'm.room.message', content: { body: 'trimmed' } }]);
    const fed = await sync(hs, alice, inline({ event_format: 'federation', room: { timeline: { limit: 1 } } }));
    const pdu = fed.rooms.join[roomId].timeline.events[0];
    expect(pdu.content.body).toBe('trimmed');
    expect(pdu.hashes).toBeDefined();
    expect(pdu.signatures).toBeDefined();
  });

  test('ephemeral and account_data filters', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    await call(hs, 'PUT', `${C}/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: true, timeout: 30000 }, alice.accessToken);
    await call(hs, 'PUT', `${C}/user/${enc(alice.userId)}/account_data/org.example.a`, { a: 1 }, alice.accessToken);
    const all = await sync(hs, alice);
    expect(all.rooms.join[roomId].ephemeral.events.map((e: any) => e.type)).toEqual(['m.typing']);
    expect(all.account_data.events.map((e: any) => e.type)).toContain('org.example.a');
    const none = await sync(hs, alice, inline({ room: { ephemeral: { not_types: ['*'] } }, account_data: { types: ['nothing'] } }));
    expect(none.rooms.join[roomId].ephemeral.events).toEqual([]);
    expect(none.account_data.events).toEqual([]);
  });
});

describe('bad input', () => {
  test('since, timeout, full_state, filter', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const cases: Array<[Record<string, string>, number, string]> = [
      [{ since: 'garbage' }, 400, 'M_INVALID_PARAM'],
      [{ since: 't5' }, 400, 'M_INVALID_PARAM'],
      [{ since: 's99999999' }, 400, 'M_INVALID_PARAM'],
      [{ timeout: '-1' }, 400, 'M_INVALID_PARAM'],
      [{ timeout: 'soon' }, 400, 'M_INVALID_PARAM'],
      [{ full_state: 'yes' }, 400, 'M_INVALID_PARAM'],
      [{ use_state_after: '1' }, 400, 'M_INVALID_PARAM'],
      [{ filter: '{not json' }, 400, 'M_NOT_JSON'],
      [{ filter: '{"room": 5}' }, 400, 'M_BAD_JSON'],
      [{ filter: '{"room": {"timeline": {"limit": 0}}}' }, 400, 'M_INVALID_PARAM'],
      [{ filter: '{"room": {"rooms": ["not-a-room"]}}' }, 400, 'M_INVALID_PARAM'],
      [{ filter: '{"event_format": "xml"}' }, 400, 'M_INVALID_PARAM'],
      [{ filter: '12345' }, 400, 'M_INVALID_PARAM'],
    ];
    for (const [params, status, errcode] of cases) {
      const res = await rawSync(hs, alice, params);
      expect([res.status, res.body.errcode], JSON.stringify(params)).toEqual([status, errcode]);
    }
    const noToken = await call(hs, 'GET', `${C}/sync`);
    expect([noToken.status, noToken.body.errcode]).toEqual([401, 'M_MISSING_TOKEN']);
    const badToken = await call(hs, 'GET', `${C}/sync`, undefined, 'nope');
    expect([badToken.status, badToken.body.errcode]).toEqual([401, 'M_UNKNOWN_TOKEN']);
  });

  test("another user's stored filter is not yours", async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const created = await call(hs, 'POST', `${C}/user/${enc(bob.userId)}/filter`, { room: { timeline: { limit: 1 } } }, bob.accessToken);
    expect(created.status).toBe(200);
    const res = await rawSync(hs, alice, { filter: created.body.filter_id });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
  });
});
