/**
 * Restricted joins on the resident side: a room on A whose join rule lets in members of space S. Bob on B is
 * refused until he joins S; then A's make_join names one of its users as join_authorised_via_users_server, A signs
 * the join in send_join, and bob is in. A resident in none of the allowed rooms, or with nobody who may invite,
 * answers with the spec's 400s.
 * Spec: server-server-api.md §"Restricted rooms"; client-server-api #restricted-rooms; rooms v8+ auth rules.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildEvent } from '../../src/core/build-event.js';
import type { JsonObject } from '../../src/core/json.js';
import { roomVersion } from '../../src/core/room-versions.js';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from '../helpers/homeserver.js';
import { enc, newPublicRoom, newRoom, storedEvent, timelineRecords } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation, SyncView } from '../helpers/federation.js';

const F = '/_matrix/federation';

describe('restricted rooms, resident side', () => {
  let fed: Federation;
  let a: Homeserver, b: Homeserver;
  let alice: TestUser, bob: TestUser, charlie: TestUser;
  let space: string;

  const restrictedRoom = (allow: string[], extra: Record<string, unknown> = {}) =>
    newRoom(a, alice, {
      room_version: '10',
      initial_state: [
        { type: 'm.room.join_rules', state_key: '', content: { join_rule: 'restricted', allow: allow.map((room_id) => ({ type: 'm.room_membership', room_id })) } },
      ],
      ...extra,
    });

  const makeJoin = (roomId: string, userId: string) =>
    a.federation.handleRequest(b.serverName, {
      method: 'GET',
      path: `${F}/v1/make_join/${enc(roomId)}/${enc(userId)}?ver=10`,
    }) as Promise<{ status: number; body: any }>;

  const joinVia = (u: TestUser, roomId: string) =>
    call(b, 'POST', `/_matrix/client/v3/join/${enc(roomId)}?via=${enc(a.serverName)}`, {}, u.accessToken);

  beforeAll(async () => {
    fed = await newFederation(2);
    [a, b] = fed.servers;
    alice = await newUser(a, 'alice');
    bob = await newUser(b, 'bob');
    charlie = await newUser(b, 'charlie');
    space = await newPublicRoom(a, alice, { room_version: '10', creation_content: { type: 'm.space' } });
  });

  afterAll(async () => {
    await fed?.stop();
  });

  test('bob joins the restricted room via A once he is a member of the space', async () => {
    const room = await restrictedRoom([space]);
    // Not in the space yet: refused (the join rule's only condition is not met).
    const early = await makeJoin(room, bob.userId);
    expect(early.status, JSON.stringify(early.body)).toBe(403);
    expect(early.body.errcode).toBe('M_FORBIDDEN');
    expect((await joinVia(bob, room)).status).toBe(403);

    expect((await joinVia(bob, space)).status).toBe(200);
    const tpl = await makeJoin(room, bob.userId);
    expect(tpl.status, JSON.stringify(tpl.body)).toBe(200);
    expect(tpl.body.event.content.join_authorised_via_users_server).toBe(alice.userId);

    const res = await joinVia(bob, room);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    // On A: bob's join names alice and carries both servers' signatures.
    const join = (await timelineRecords(a, room)).find((r) => r.json.type === 'm.room.member' && r.json.state_key === bob.userId);
    expect(join?.json.content).toMatchObject({ membership: 'join', join_authorised_via_users_server: alice.userId });
    expect(Object.keys(join!.json.signatures as JsonObject).sort()).toEqual([a.serverName, b.serverName].sort());
    // B keeps the countersigned event too, and bob's client sees the room.
    const onB = await storedEvent(b, join!.eventId);
    expect(Object.keys(onB!.json.signatures as JsonObject)).toContain(a.serverName);
    const view = new SyncView(b, bob);
    await view.until(() => view.timeline.has(room), 5000, 'the room in sync');
  });

  test('send_join re-checks the conditions: a forged join of a non-member naming alice is refused', async () => {
    const room = await restrictedRoom([space]);
    const tpl = await makeJoin(room, bob.userId);
    expect(tpl.status).toBe(200);
    const version = roomVersion('10')!;
    const proto: JsonObject = { ...tpl.body.event, sender: charlie.userId, state_key: charlie.userId };
    const forged = await buildEvent(proto, version, b.serverName, b.services.ctx.identity.key);
    const res = (await a.federation.handleRequest(b.serverName, {
      method: 'PUT',
      path: `${F}/v2/send_join/${enc(room)}/${enc(forged.eventId)}`,
      body: forged.json,
    })) as { status: number; body: any };
    expect(res.status, JSON.stringify(res.body)).toBe(403);
    expect(res.body.errcode).toBe('M_FORBIDDEN');
    expect(await storedEvent(a, forged.eventId)).toBeUndefined();
  });

  test('400 M_UNABLE_TO_AUTHORISE_JOIN when A is in none of the allowed rooms', async () => {
    const elsewhere = await newPublicRoom(b, bob);
    const room = await restrictedRoom([elsewhere]);
    const res = await makeJoin(room, bob.userId);
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.errcode).toBe('M_UNABLE_TO_AUTHORISE_JOIN');
  });

  test('400 M_UNABLE_TO_GRANT_JOIN when nobody on A may invite', async () => {
    const room = await restrictedRoom([space], { power_level_content_override: { invite: 101 } });
    const res = await makeJoin(room, bob.userId);
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.errcode).toBe('M_UNABLE_TO_GRANT_JOIN');
  });

  test('an invited user needs no authoriser', async () => {
    const room = await restrictedRoom([space]);
    const inv = await call(a, 'POST', `/_matrix/client/v3/rooms/${enc(room)}/invite`, { user_id: charlie.userId }, alice.accessToken);
    expect(inv.status, JSON.stringify(inv.body)).toBe(200);
    const tpl = await makeJoin(room, charlie.userId);
    expect(tpl.status, JSON.stringify(tpl.body)).toBe(200);
    expect(tpl.body.event.content.join_authorised_via_users_server).toBeUndefined();
  });
});
