/**
 * Space hierarchies across three servers: a space on A with children on A and B (one a space of B's, with a child
 * of its own); carol on C, joined to the space, walks it — C asks A and B over federation for the rooms it is not
 * in and shows her only what she may see. A's own answers to /_matrix/federation/v1/hierarchy depend on which
 * server asks. Answers are cached, and a peer's garbage cannot break the walk.
 * Spec: server-server-api.md §Spaces, data/api/server-server/space_hierarchy.yaml,
 * data/api/client-server/space_hierarchy.yaml.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from '../helpers/homeserver.js';
import { enc, newPublicRoom, newRoom, setState } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation } from '../helpers/federation.js';

const F = '/_matrix/federation/v1';

describe('space hierarchy over federation', () => {
  let fed: Federation;
  let a: Homeserver, b: Homeserver, c: Homeserver;
  let alice: TestUser, bob: TestUser, carol: TestUser;
  let space: string, a1: string, aPrivate: string, aRestricted: string, bSpace: string, b1: string, bPrivate: string;

  const fedHierarchy = (server: Homeserver, origin: Homeserver, roomId: string, query = '') =>
    server.federation.handleRequest(origin.serverName, { method: 'GET', path: `${F}/hierarchy/${enc(roomId)}${query}` }) as Promise<{
      status: number;
      body: any;
    }>;

  const walk = (hs: Homeserver, user: TestUser, roomId: string, query = '') =>
    call(hs, 'GET', `/_matrix/client/v1/rooms/${enc(roomId)}/hierarchy${query}`, undefined, user.accessToken);

  const ids = (res: { body: { rooms: Array<{ room_id: string }> } }) => res.body.rooms.map((r) => r.room_id);

  beforeAll(async () => {
    fed = await newFederation(3);
    [a, b, c] = fed.servers;
    alice = await newUser(a, 'alice');
    bob = await newUser(b, 'bob');
    carol = await newUser(c, 'carol');
    space = await newPublicRoom(a, alice, { name: 'Space on A', creation_content: { type: 'm.space' }, room_version: '10' });
    a1 = await newPublicRoom(a, alice, { name: 'A one', topic: 'first' });
    aPrivate = await newRoom(a, alice, { preset: 'private_chat' });
    aRestricted = await newRoom(a, alice, {
      room_version: '10',
      name: 'Members of the space',
      initial_state: [
        { type: 'm.room.join_rules', state_key: '', content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: space }] } },
      ],
    });
    bSpace = await newPublicRoom(b, bob, { name: 'Space on B', creation_content: { type: 'm.space' } });
    b1 = await newPublicRoom(b, bob, { name: 'B one' });
    bPrivate = await newRoom(b, bob, { preset: 'private_chat' });
    await setState(b, bob, bSpace, 'm.space.child', b1, { via: [b.serverName] });
    const link = (child: string, server: Homeserver, order: string) =>
      setState(a, alice, space, 'm.space.child', child, { via: [server.serverName], order });
    await link(a1, a, 'a');
    await link(bSpace, b, 'b');
    await link(bPrivate, b, 'c');
    await link(aPrivate, a, 'd');
    await link(aRestricted, a, 'e');
    // carol joins the space through A: C now holds its state, A knows C has a member in it.
    const join = await call(c, 'POST', `/_matrix/client/v3/join/${enc(space)}?via=${enc(a.serverName)}`, {}, carol.accessToken);
    expect(join.status, JSON.stringify(join.body)).toBe(200);
    await fed.settle();
  });

  afterAll(async () => {
    await fed?.stop();
  });

  test('carol on C walks the space: rooms on A and B, the B space’s child, nothing she may not see', async () => {
    const res = await walk(c, carol, space);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(ids(res)).toEqual([space, a1, bSpace, b1, aRestricted]);
    const byId = new Map<string, any>(res.body.rooms.map((r: any) => [r.room_id, r]));
    expect(byId.get(space)).toMatchObject({ name: 'Space on A', room_type: 'm.space', num_joined_members: 2 });
    expect(byId.get(space).children_state.map((e: any) => e.state_key)).toEqual([a1, bSpace, bPrivate, aPrivate, aRestricted]);
    expect(byId.get(a1)).toMatchObject({ name: 'A one', topic: 'first', join_rule: 'public', num_joined_members: 1, children_state: [] });
    expect(byId.get(bSpace)).toMatchObject({ name: 'Space on B', room_type: 'm.space' });
    expect(byId.get(bSpace).children_state.map((e: any) => e.state_key)).toEqual([b1]);
    expect(byId.get(b1)).toMatchObject({ name: 'B one', children_state: [] });
    expect(byId.get(aRestricted)).toMatchObject({ join_rule: 'restricted', allowed_room_ids: [space] });
  });

  test('A answers by what the asking server may see', async () => {
    // C has a member in the space: the restricted room is open to it; the private room is not.
    const asC = await fedHierarchy(a, c, space);
    expect(asC.status, JSON.stringify(asC.body)).toBe(200);
    expect(asC.body.room).toMatchObject({ room_id: space, room_type: 'm.space' });
    expect(asC.body.room.children_state).toHaveLength(5);
    // Children A is not in (the rooms on B) are left out entirely.
    expect(asC.body.children.map((r: any) => r.room_id).sort()).toEqual([a1, aRestricted].sort());
    expect(asC.body.inaccessible_children).toEqual([aPrivate]);
    // B has nobody in the space: the restricted room is inaccessible to it.
    const asB = await fedHierarchy(a, b, space);
    expect(asB.body.children.map((r: any) => r.room_id)).toEqual([a1]);
    expect(asB.body.inaccessible_children.sort()).toEqual([aPrivate, aRestricted].sort());
    // suggested_only: no child is suggested.
    const suggested = await fedHierarchy(a, c, space, '?suggested_only=true');
    expect(suggested.body.room.children_state).toEqual([]);
    expect(suggested.body.children).toEqual([]);
  });

  test('rooms the asker may not see, rooms A is not in, and bad input: the spec’s errors', async () => {
    for (const [roomId, q] of [
      [aPrivate, ''],
      [bPrivate, ''],
      [`!unknown:${a.serverName}`, ''],
      ['not-a-room', ''],
    ]) {
      const res = await fedHierarchy(a, c, roomId, q);
      expect([res.status, res.body.errcode], roomId).toEqual([404, 'M_NOT_FOUND']);
    }
    const bad = await fedHierarchy(a, c, space, '?suggested_only=perhaps');
    expect([bad.status, bad.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    // Nor may B see A's private room.
    expect((await fedHierarchy(a, b, aPrivate)).status).toBe(404);
  });

  test('answers are cached: a second walk asks no one', async () => {
    const asked: string[] = [];
    fed.net.intercept = (_from, to, req) => {
      if (req.path.includes('/hierarchy/')) asked.push(to);
      return undefined;
    };
    try {
      const res = await walk(c, carol, space);
      expect(ids(res)).toEqual([space, a1, bSpace, b1, aRestricted]);
      expect(asked).toEqual([]);
    } finally {
      fed.net.intercept = undefined;
    }
  });

  test('a peer answering garbage costs only its rooms', async () => {
    // A fresh user on C and a fresh space on A, so nothing is cached.
    const s2 = await newPublicRoom(a, alice, { creation_content: { type: 'm.space' } });
    const s2a = await newPublicRoom(a, alice, { name: 'fine' });
    const s2b = await newPublicRoom(b, bob, { name: 'lied about' });
    await setState(a, alice, s2, 'm.space.child', s2a, { via: [a.serverName], order: '1' });
    await setState(a, alice, s2, 'm.space.child', s2b, { via: [b.serverName], order: '2' });
    const dave = await newUser(c, 'dave');
    const join = await call(c, 'POST', `/_matrix/client/v3/join/${enc(s2)}?via=${enc(a.serverName)}`, {}, dave.accessToken);
    expect(join.status, JSON.stringify(join.body)).toBe(200);
    await fed.settle();
    // B's answers are rewritten on the way: a room ID that is not the one asked for, then junk fields.
    const original = b.federation.handleRequest.bind(b.federation);
    let n = 0;
    b.federation.handleRequest = async (origin, req) => {
      const res = await original(origin, req);
      if (!req.path.includes('/hierarchy/')) return res;
      n++;
      return { status: 200, body: { room: { room_id: '!other:example.org', children_state: 'x' }, children: 7, inaccessible_children: [1] } };
    };
    try {
      const res = await walk(c, dave, s2);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(ids(res)).toEqual([s2, s2a]);
      expect(n).toBe(1);
    } finally {
      b.federation.handleRequest = original;
    }
  });
});
