/**
 * The Server-Server endpoints one by one, through `FederationInbound.handleRequest(origin, req)` as the transport
 * delivers them: the spec's bodies, the checks on who may ask, and the errors for bad input.
 * Spec: data/api/server-server/{joins-v1,joins-v2,leaving-v1,leaving-v2,knocks,invites-v2,events,event_auth,
 * backfill,query,keys_server,transactions}.yaml.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildEvent } from '../../src/core/build-event.js';
import type { JsonObject } from '../../src/core/json.js';
import { roomVersion } from '../../src/core/room-versions.js';
import { HEARTH_KEY_ID, publicKeyFromServerName } from '../../src/core/server-key.js';
import { verifyJsonSignature } from '../../src/core/signing.js';
import type { FederationMethod } from '../../src/federation/transport.js';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from '../helpers/homeserver.js';
import { enc, newPublicRoom, newRoom, sendText } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation } from '../helpers/federation.js';

const F = '/_matrix/federation';
let fed: Federation;
let a: Homeserver, b: Homeserver, outsider: Homeserver;
let alice: TestUser, bob: TestUser;
let room: string;
let privateRoom: string;
let lastEvent: string;

function req(origin: Homeserver | string, method: FederationMethod, path: string, body?: JsonObject) {
  const name = typeof origin === 'string' ? origin : origin.serverName;
  return a.federation.handleRequest(name, { method, path, body }) as Promise<{ status: number; body: any }>;
}

function expectError(res: { status: number; body: any }, status: number, errcode: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body.errcode).toBe(errcode);
}

beforeAll(async () => {
  fed = await newFederation(3);
  [a, b, outsider] = fed.servers;
  alice = await newUser(a, 'alice');
  bob = await newUser(b, 'bob');
  room = await newPublicRoom(a, alice, { room_alias_name: 'square', room_version: '11' });
  privateRoom = await newRoom(a, alice);
  const res = await call(b, 'POST', `/_matrix/client/v3/join/${enc(room)}?via=${enc(a.serverName)}`, {}, bob.accessToken);
  expect(res.status).toBe(200);
  lastEvent = await sendText(a, alice, room, 'hello');
  await fed.settle();
});

afterAll(async () => {
  await fed?.stop();
});

describe('keys and version', () => {
  test('GET /_matrix/key/v2/server: the verify key its name encodes, self-signed — also over HTTP', async () => {
    for (const res of [await req(b, 'GET', '/_matrix/key/v2/server'), await call(a, 'GET', '/_matrix/key/v2/server')]) {
      expect(res.status).toBe(200);
      expect(res.body.server_name).toBe(a.serverName);
      expect(Object.keys(res.body.verify_keys)).toEqual([HEARTH_KEY_ID]);
      expect(res.body.valid_until_ts).toBeGreaterThan(Date.now());
      const ok = await verifyJsonSignature(res.body, a.serverName, HEARTH_KEY_ID, publicKeyFromServerName(a.serverName)!);
      expect(ok).toBe(true);
    }
  });

  test('GET /version', async () => {
    const res = await req(b, 'GET', `${F}/v1/version`);
    expect(res.status).toBe(200);
    expect(res.body.server.name).toBe('Hearth');
  });
});

describe('make_join / send_join', () => {
  test('make_join answers a template for the user, in the room version', async () => {
    const user = `@newcomer:${outsider.serverName}`;
    const res = await req(outsider, 'GET', `${F}/v1/make_join/${enc(room)}/${enc(user)}?ver=10&ver=11`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.room_version).toBe('11');
    const ev = res.body.event;
    expect(ev).toMatchObject({ type: 'm.room.member', room_id: room, sender: user, state_key: user, content: { membership: 'join' } });
    expect(ev.prev_events.length).toBeGreaterThan(0);
    expect(ev.auth_events.length).toBeGreaterThan(0);
  });

  test('make_join refuses users of another server (403), unknown rooms (404), unsupported versions (400)', async () => {
    expectError(await req(outsider, 'GET', `${F}/v1/make_join/${enc(room)}/${enc(`@x:${b.serverName}`)}?ver=11`), 403, 'M_FORBIDDEN');
    expectError(await req(outsider, 'GET', `${F}/v1/make_join/${enc(`!nope:${a.serverName}`)}/${enc(`@x:${outsider.serverName}`)}?ver=11`), 404, 'M_NOT_FOUND');
    const bad = await req(outsider, 'GET', `${F}/v1/make_join/${enc(room)}/${enc(`@x:${outsider.serverName}`)}?ver=1&ver=2`);
    expectError(bad, 400, 'M_INCOMPATIBLE_ROOM_VERSION');
    expect(bad.body.room_version).toBe('11');
    // Without `ver` only room version 1 is assumed.
    expectError(await req(outsider, 'GET', `${F}/v1/make_join/${enc(room)}/${enc(`@x:${outsider.serverName}`)}`), 400, 'M_INCOMPATIBLE_ROOM_VERSION');
    expectError(await req(outsider, 'GET', `${F}/v1/make_join/${enc(room)}/not-a-user?ver=11`), 400, 'M_INVALID_PARAM');
    expectError(await req(outsider, 'GET', `${F}/v1/make_join/not-a-room/${enc(`@x:${outsider.serverName}`)}?ver=11`), 400, 'M_INVALID_PARAM');
  });

  test('make_join for an invite-only room the user was not invited to: 403', async () => {
    expectError(await req(outsider, 'GET', `${F}/v1/make_join/${enc(privateRoom)}/${enc(`@x:${outsider.serverName}`)}?ver=12`), 403, 'M_FORBIDDEN');
  });

  test('send_join: the join enters the room; the answer has the state before it and the auth chain', async () => {
    const user = `@joiner:${outsider.serverName}`;
    const tmpl = await req(outsider, 'GET', `${F}/v1/make_join/${enc(room)}/${enc(user)}?ver=11`);
    const { event_id: _e, ...proto } = tmpl.body.event;
    const ev = await buildEvent({ ...proto, origin: outsider.serverName }, roomVersion('11')!, outsider.serverName, outsider.identity.key);
    const res = await req(outsider, 'PUT', `${F}/v2/send_join/${enc(room)}/${enc(ev.eventId)}`, ev.json);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const types = res.body.state.map((e: any) => e.type);
    expect(types).toContain('m.room.create');
    expect(types).toContain('m.room.join_rules');
    expect(res.body.auth_chain.length).toBeGreaterThan(0);
    expect(res.body.members_omitted).toBe(false);
    expect(res.body.servers_in_room).toEqual(expect.arrayContaining([a.serverName, b.serverName]));
    const members = await call(a, 'GET', `/_matrix/client/v3/rooms/${enc(room)}/joined_members`, undefined, alice.accessToken);
    expect(Object.keys(members.body.joined)).toContain(user);
    // Sending it again is answered the same (idempotent).
    expect((await req(outsider, 'PUT', `${F}/v2/send_join/${enc(room)}/${enc(ev.eventId)}`, ev.json)).status).toBe(200);
  });

  test('send_join refuses events that are not a join of a user of the origin (400 M_INVALID_PARAM)', async () => {
    const user = `@other:${outsider.serverName}`;
    const tmpl = await req(outsider, 'GET', `${F}/v1/make_join/${enc(room)}/${enc(user)}?ver=11`);
    const { event_id: _e, ...proto } = tmpl.body.event;
    const v = roomVersion('11')!;
    const good = await buildEvent({ ...proto }, v, outsider.serverName, outsider.identity.key);
    // Wrong event ID in the path.
    expectError(await req(outsider, 'PUT', `${F}/v2/send_join/${enc(room)}/${enc('$wrong')}`, good.json), 400, 'M_INVALID_PARAM');
    // Not a join.
    const leave = await buildEvent({ ...proto, content: { membership: 'leave' } }, v, outsider.serverName, outsider.identity.key);
    expectError(await req(outsider, 'PUT', `${F}/v2/send_join/${enc(room)}/${enc(leave.eventId)}`, leave.json), 400, 'M_INVALID_PARAM');
    // Sent by another server than the user's.
    expectError(await req(b, 'PUT', `${F}/v2/send_join/${enc(room)}/${enc(good.eventId)}`, good.json), 400, 'M_INVALID_PARAM');
    // Not signed by the user's server.
    const forged = await buildEvent({ ...proto }, v, b.serverName, b.identity.key);
    expectError(await req(outsider, 'PUT', `${F}/v2/send_join/${enc(room)}/${enc(forged.eventId)}`, forged.json), 400, 'M_INVALID_PARAM');
    // Not an event at all.
    expectError(await req(outsider, 'PUT', `${F}/v2/send_join/${enc(room)}/${enc(good.eventId)}`, { hello: 'world' }), 400, 'M_INVALID_PARAM');
  });
});

describe('make_leave / send_leave, make_knock / send_knock', () => {
  test('a remote member leaves through make_leave/send_leave', async () => {
    const user = `@joiner:${outsider.serverName}`;
    const tmpl = await req(outsider, 'GET', `${F}/v1/make_leave/${enc(room)}/${enc(user)}`);
    expect(tmpl.status, JSON.stringify(tmpl.body)).toBe(200);
    expect(tmpl.body.event.content.membership).toBe('leave');
    const { event_id: _e, ...proto } = tmpl.body.event;
    const ev = await buildEvent(proto, roomVersion('11')!, outsider.serverName, outsider.identity.key);
    const res = await req(outsider, 'PUT', `${F}/v2/send_leave/${enc(room)}/${enc(ev.eventId)}`, ev.json);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toEqual({});
    // A user who is not in the room cannot leave it.
    expectError(await req(outsider, 'GET', `${F}/v1/make_leave/${enc(privateRoom)}/${enc(user)}`), 403, 'M_FORBIDDEN');
  });

  test('make_knock needs `ver` (400 M_MISSING_PARAM) and a room that allows knocking (403 otherwise)', async () => {
    const user = `@knocker:${outsider.serverName}`;
    expectError(await req(outsider, 'GET', `${F}/v1/make_knock/${enc(room)}/${enc(user)}`), 400, 'M_MISSING_PARAM');
    expectError(await req(outsider, 'GET', `${F}/v1/make_knock/${enc(room)}/${enc(user)}?ver=11`), 403, 'M_FORBIDDEN');
  });

  test('a user on B knocks on a knockable room of A through the client API; A sees the knock', async () => {
    const knockable = await newRoom(a, alice, { initial_state: [{ type: 'm.room.join_rules', content: { join_rule: 'knock' } }] });
    const res = await call(b, 'POST', `/_matrix/client/v3/knock/${enc(knockable)}?via=${enc(a.serverName)}`, { reason: 'let me in' }, bob.accessToken);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const sync = await call(b, 'GET', '/_matrix/client/v3/sync', undefined, bob.accessToken);
    expect(sync.body.rooms.knock[knockable].knock_state.events.some((e: any) => e.type === 'm.room.join_rules')).toBe(true);
    const members = await call(a, 'GET', `/_matrix/client/v3/rooms/${enc(knockable)}/members`, undefined, alice.accessToken);
    expect(members.body.chunk.find((e: any) => e.state_key === bob.userId)?.content.membership).toBe('knock');
  });
});

describe('invites', () => {
  async function inviteEvent(invitee: string, signer: Homeserver = b) {
    const v = roomVersion('12')!;
    return buildEvent(
      {
        type: 'm.room.member',
        room_id: `!${'a'.repeat(43)}`,
        sender: `@someone:${signer.serverName}`,
        state_key: invitee,
        content: { membership: 'invite' },
        prev_events: [],
        auth_events: [],
        depth: 5,
        origin_server_ts: Date.now(),
      },
      v,
      signer.serverName,
      signer.identity.key,
    );
  }

  test('invite v2: our user is invited, the event comes back signed by us too', async () => {
    const ev = await inviteEvent(alice.userId);
    const res = await req(b, 'PUT', `${F}/v2/invite/${enc(ev.roomId)}/${enc(ev.eventId)}`, { room_version: '12', event: ev.json, invite_room_state: [] });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(Object.keys(res.body.event.signatures).sort()).toEqual([a.serverName, b.serverName].sort());
    const sync = await call(a, 'GET', '/_matrix/client/v3/sync', undefined, alice.accessToken);
    expect(sync.body.rooms.invite[ev.roomId]).toBeDefined();
  });

  test('invite v2 errors: unsupported version, missing event, not our user, unknown user, wrong origin', async () => {
    const ev = await inviteEvent(alice.userId);
    const path = `${F}/v2/invite/${enc(ev.roomId)}/${enc(ev.eventId)}`;
    expectError(await req(b, 'PUT', path, { room_version: '99', event: ev.json }), 400, 'M_INCOMPATIBLE_ROOM_VERSION');
    expectError(await req(b, 'PUT', path, { room_version: '12' }), 400, 'M_MISSING_PARAM');
    expectError(await req(b, 'PUT', path, { event: ev.json }), 400, 'M_MISSING_PARAM');
    expectError(await req(outsider, 'PUT', path, { room_version: '12', event: ev.json }), 403, 'M_FORBIDDEN');
    const notOurs = await inviteEvent(`@x:${b.serverName}`);
    expectError(await req(b, 'PUT', `${F}/v2/invite/${enc(notOurs.roomId)}/${enc(notOurs.eventId)}`, { room_version: '12', event: notOurs.json }), 400, 'M_INVALID_PARAM');
    const unknownUser = await inviteEvent(`@ghost:${a.serverName}`);
    expectError(await req(b, 'PUT', `${F}/v2/invite/${enc(unknownUser.roomId)}/${enc(unknownUser.eventId)}`, { room_version: '12', event: unknownUser.json }), 404, 'M_NOT_FOUND');
    expectError(await req(b, 'PUT', path, { room_version: '12', event: ev.json, invite_room_state: 'x' }), 400, 'M_BAD_JSON');
    // A user already joined to a room this server follows cannot be 'invited' to it again.
    const v = roomVersion('11')!;
    const joinedAlready = await buildEvent(
      { type: 'm.room.member', room_id: room, sender: bob.userId, state_key: alice.userId, content: { membership: 'invite' }, prev_events: [], auth_events: [], depth: 9, origin_server_ts: Date.now() },
      v,
      b.serverName,
      b.identity.key,
    );
    expectError(await req(b, 'PUT', `${F}/v2/invite/${enc(room)}/${enc(joinedAlready.eventId)}`, { room_version: '11', event: joinedAlready.json }), 403, 'M_FORBIDDEN');
  });
});

describe('reading the room graph', () => {
  test('GET /event: the PDU for a server in the room; 404 for unknown events and for servers that may not see it', async () => {
    const res = await req(b, 'GET', `${F}/v1/event/${enc(lastEvent)}`);
    expect(res.status).toBe(200);
    expect(res.body.origin).toBe(a.serverName);
    expect(res.body.pdus[0].content.body).toBe('hello');
    expect(res.body.pdus[0].unsigned).toBeUndefined();
    expectError(await req(b, 'GET', `${F}/v1/event/${enc('$' + 'n'.repeat(43))}`), 404, 'M_NOT_FOUND');
    const priv = await sendText(a, alice, privateRoom, 'secret');
    expectError(await req(b, 'GET', `${F}/v1/event/${enc(priv)}`), 404, 'M_NOT_FOUND');
  });

  test('GET /state and /state_ids at an event; event_id is required; servers not in the room are refused', async () => {
    const st = await req(b, 'GET', `${F}/v1/state/${enc(room)}?event_id=${enc(lastEvent)}`);
    expect(st.status).toBe(200);
    expect(st.body.pdus.some((e: any) => e.type === 'm.room.create')).toBe(true);
    expect(Array.isArray(st.body.auth_chain)).toBe(true);
    const ids = await req(b, 'GET', `${F}/v1/state_ids/${enc(room)}?event_id=${enc(lastEvent)}`);
    expect(ids.status).toBe(200);
    expect(ids.body.pdu_ids.length).toBe(st.body.pdus.length);
    expectError(await req(b, 'GET', `${F}/v1/state/${enc(room)}`), 400, 'M_MISSING_PARAM');
    expectError(await req(b, 'GET', `${F}/v1/state_ids/${enc(room)}?event_id=${enc('$' + 'q'.repeat(43))}`), 404, 'M_NOT_FOUND');
    expectError(await req(b, 'GET', `${F}/v1/state_ids/${enc(privateRoom)}?event_id=${enc(lastEvent)}`), 403, 'M_FORBIDDEN');
    expectError(await req(b, 'GET', `${F}/v1/state/${enc(`!unknown:${a.serverName}`)}?event_id=${enc(lastEvent)}`), 404, 'M_NOT_FOUND');
  });

  test('GET /event_auth: the auth chain of an event', async () => {
    const res = await req(b, 'GET', `${F}/v1/event_auth/${enc(room)}/${enc(lastEvent)}`);
    expect(res.status).toBe(200);
    const types = res.body.auth_chain.map((e: any) => e.type);
    expect(types).toContain('m.room.create');
    expect(types).toContain('m.room.power_levels');
    expectError(await req(b, 'GET', `${F}/v1/event_auth/${enc(room)}/${enc('$' + 'z'.repeat(43))}`), 404, 'M_NOT_FOUND');
  });

  test('GET /backfill: the event and its predecessors up to the limit; v and limit are required', async () => {
    const res = await req(b, 'GET', `${F}/v1/backfill/${enc(room)}?v=${enc(lastEvent)}&limit=3`);
    expect(res.status).toBe(200);
    expect(res.body.pdus.length).toBe(3);
    expect(res.body.pdus.some((e: any) => e.content?.body === 'hello')).toBe(true);
    expectError(await req(b, 'GET', `${F}/v1/backfill/${enc(room)}?limit=3`), 400, 'M_MISSING_PARAM');
    expectError(await req(b, 'GET', `${F}/v1/backfill/${enc(room)}?v=${enc(lastEvent)}`), 400, 'M_MISSING_PARAM');
    expectError(await req(b, 'GET', `${F}/v1/backfill/${enc(room)}?v=${enc(lastEvent)}&limit=-1`), 400, 'M_INVALID_PARAM');
  });

  test('POST /get_missing_events: events between what the caller has and what it names', async () => {
    const second = await sendText(a, alice, room, 'second');
    const third = await sendText(a, alice, room, 'third');
    const res = await req(b, 'POST', `${F}/v1/get_missing_events/${enc(room)}`, { earliest_events: [lastEvent], latest_events: [third], limit: 10 });
    expect(res.status).toBe(200);
    // Everything after `lastEvent` up to (not including) `third`: the joins and leaves above, then 'second'.
    const bodies = res.body.events.filter((e: any) => e.type === 'm.room.message').map((e: any) => e.content.body);
    expect(bodies).toEqual(['second']);
    expect(res.body.events.map((e: any) => e.content.body)).not.toContain('hello');
    expect(second).toBeDefined();
    expectError(await req(b, 'POST', `${F}/v1/get_missing_events/${enc(room)}`, { latest_events: [third] }), 400, 'M_MISSING_PARAM');
    expectError(await req(b, 'POST', `${F}/v1/get_missing_events/${enc(room)}`, { earliest_events: 'x', latest_events: [third] }), 400, 'M_BAD_JSON');
    expectError(await req(b, 'POST', `${F}/v1/get_missing_events/${enc(room)}`, { earliest_events: [], latest_events: [third], limit: 'ten' }), 400, 'M_INVALID_PARAM');
    expectError(await req(b, 'POST', `${F}/v1/get_missing_events/${enc(privateRoom)}`, { earliest_events: [], latest_events: [third] }), 403, 'M_FORBIDDEN');
  });
});

describe('queries', () => {
  test('query/profile: the local user, one field, and the errors', async () => {
    const all = await req(b, 'GET', `${F}/v1/query/profile?user_id=${enc(alice.userId)}`);
    expect(all.status).toBe(200);
    expect(all.body.displayname).toBe('alice');
    const one = await req(b, 'GET', `${F}/v1/query/profile?user_id=${enc(alice.userId)}&field=displayname`);
    expect(one.body).toEqual({ displayname: 'alice' });
    expectError(await req(b, 'GET', `${F}/v1/query/profile`), 400, 'M_MISSING_PARAM');
    expectError(await req(b, 'GET', `${F}/v1/query/profile?user_id=nope`), 400, 'M_INVALID_PARAM');
    expectError(await req(b, 'GET', `${F}/v1/query/profile?user_id=${enc(bob.userId)}`), 400, 'M_INVALID_PARAM');
    expectError(await req(b, 'GET', `${F}/v1/query/profile?user_id=${enc(`@ghost:${a.serverName}`)}`), 404, 'M_NOT_FOUND');
    expectError(await req(b, 'GET', `${F}/v1/query/profile?user_id=${enc(alice.userId)}&field=avatar_url`), 404, 'M_NOT_FOUND');
  });

  test('query/directory: a local alias with the servers in its room; errors for others', async () => {
    const res = await req(b, 'GET', `${F}/v1/query/directory?room_alias=${enc(`#square:${a.serverName}`)}`);
    expect(res.status).toBe(200);
    expect(res.body.room_id).toBe(room);
    expect(res.body.servers[0]).toBe(a.serverName);
    expect(res.body.servers).toContain(b.serverName);
    expectError(await req(b, 'GET', `${F}/v1/query/directory`), 400, 'M_MISSING_PARAM');
    expectError(await req(b, 'GET', `${F}/v1/query/directory?room_alias=square`), 400, 'M_INVALID_PARAM');
    expectError(await req(b, 'GET', `${F}/v1/query/directory?room_alias=${enc(`#nope:${a.serverName}`)}`), 404, 'M_NOT_FOUND');
    expectError(await req(b, 'GET', `${F}/v1/query/directory?room_alias=${enc(`#square:${b.serverName}`)}`), 404, 'M_NOT_FOUND');
  });
});
