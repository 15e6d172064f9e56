/**
 * GET /_matrix/client/v1/rooms/{roomId}/hierarchy on one server: the spec's child order, depth-first walk,
 * max_depth, suggested_only, pagination tokens tied to their request, which rooms a user may see, loops, and the
 * spec's errors.
 * Spec: data/api/client-server/space_hierarchy.yaml, content/client-server-api/modules/spaces.md.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import { enc, invite, joinRoom, newPublicRoom, newRoom, setState } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';

/** A clock tests move by hand, so child events get the timestamps the ordering cases need. */
const clock = { t: 1_700_000_000_000, now() { return this.t; } };

let hs: Homeserver;
let alice: TestUser, bob: TestUser;

const hierarchy = (user: TestUser, roomId: string, query = '') =>
  call(hs, 'GET', `/_matrix/client/v1/rooms/${enc(roomId)}/hierarchy${query ? `?${query}` : ''}`, undefined, user.accessToken);

const newSpace = (user: TestUser, extra: Record<string, unknown> = {}) =>
  newPublicRoom(hs, user, { creation_content: { type: 'm.space' }, ...extra });

const addChild = (space: string, child: string, content: Record<string, unknown> = {}) =>
  setState(hs, alice, space, 'm.space.child', child, { via: [hs.serverName], ...content });

const ids = (res: { body: { rooms: Array<{ room_id: string }> } }) => res.body.rooms.map((r) => r.room_id);

beforeAll(async () => {
  hs = await newHomeserver({}, clock);
  alice = await newUser(hs, 'alice');
  bob = await newUser(hs, 'bob');
});

describe('the space tree', () => {
  let space: string, sub: string, a: string, b: string, c: string, d: string, e: string, inSub: string;

  beforeAll(async () => {
    space = await newSpace(alice, { name: 'The Space', topic: 'all things' });
    sub = await newSpace(alice, { name: 'Sub' });
    [a, b, c, d, e, inSub] = await Promise.all(Array.from({ length: 6 }, () => newPublicRoom(hs, alice)));
    // The spec's example (spaces.md): order " " < "aaaa" < "first", then by timestamp, then by room ID.
    clock.t += 1000;
    await addChild(space, b, { order: ' ' });
    await addChild(space, a, { order: 'aaaa' });
    await addChild(space, c, { order: 'first' });
    clock.t += 1000;
    await addChild(space, e);
    await addChild(space, sub, { suggested: true });
    clock.t += 1000;
    await addChild(space, d, { suggested: true });
    // An invalid order (over 50 characters) counts as none.
    await addChild(space, inSub, { order: 'x'.repeat(51) });
    await addChild(sub, inSub);
    // Links without a non-empty `via` are not links.
    await setState(hs, alice, space, 'm.space.child', '!novia:example.org', {});
    await setState(hs, alice, space, 'm.space.child', '!emptyvia:example.org', { via: [] });
    await joinRoom(hs, bob, space);
  });

  test('rooms come depth-first in the spec’s child order, each once, with their summaries', async () => {
    const res = await hierarchy(bob, space);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    // e and sub share a timestamp: by room ID; sub's child comes right after sub. d and inSub (invalid order) come
    // last, and inSub, already walked under sub, appears once.
    const expected: string[] = [space, b, a, c];
    for (const r of [e, sub].sort()) expected.push(...(r === sub ? [sub, inSub] : [r]));
    expected.push(d);
    expect(ids(res)).toEqual(expected);
    expect(res.body.next_batch).toBeUndefined();

    const root = res.body.rooms[0];
    expect(root).toMatchObject({
      room_id: space,
      name: 'The Space',
      topic: 'all things',
      room_type: 'm.space',
      join_rule: 'public',
      num_joined_members: 2,
      world_readable: false,
      guest_can_join: false,
    });
    expect(typeof root.room_version).toBe('string');
    const kids = root.children_state.map((ev: any) => ev.state_key);
    expect(kids).not.toContain('!novia:example.org');
    expect(kids).not.toContain('!emptyvia:example.org');
    for (const ev of root.children_state) {
      expect(Object.keys(ev).sort()).toEqual(['content', 'origin_server_ts', 'sender', 'state_key', 'type']);
      expect(ev.type).toBe('m.space.child');
      expect(ev.sender).toBe(alice.userId);
    }
    // A room that is not a space has no children_state.
    expect(res.body.rooms.find((r: any) => r.room_id === a).children_state).toEqual([]);
  });

  test('max_depth stops the walk', async () => {
    expect(ids(await hierarchy(bob, space, 'max_depth=0'))).toEqual([space]);
    const one = ids(await hierarchy(bob, space, 'max_depth=1'));
    expect(one).toContain(sub);
    expect(one).toContain(inSub); // also a direct child of the space
    expect(one).toHaveLength(8);
    // From the sub-space: its child is at depth 1.
    expect(ids(await hierarchy(bob, sub, 'max_depth=1'))).toEqual([sub, inSub]);
    expect(ids(await hierarchy(bob, sub, 'max_depth=0'))).toEqual([sub]);
  });

  test('suggested_only keeps suggested children only', async () => {
    const res = await hierarchy(bob, space, 'suggested_only=true');
    // inSub is not a suggested child of sub.
    expect(ids(res).sort()).toEqual([space, sub, d].sort());
    expect(res.body.rooms[0].children_state.map((ev: any) => ev.state_key).sort()).toEqual([sub, d].sort());
  });

  test('pages of `limit` rooms add up to the whole walk', async () => {
    const whole = ids(await hierarchy(bob, space));
    const seen: string[] = [];
    let from: string | undefined;
    let pages = 0;
    do {
      const res = await hierarchy(bob, space, `limit=2${from ? `&from=${enc(from)}` : ''}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.rooms.length).toBeLessThanOrEqual(2);
      seen.push(...ids(res));
      from = res.body.next_batch;
      pages++;
    } while (from !== undefined && pages < 20);
    expect(seen).toEqual(whole);
    expect(pages).toBe(Math.ceil(whole.length / 2));
  });

  test('a token alone is enough: pages continue after the server forgot the walk', async () => {
    const whole = ids(await hierarchy(bob, space));
    const seen: string[] = [];
    let from: string | undefined;
    for (let pages = 0; pages < 20; pages++) {
      // Saved walks last five minutes: each page is walked again from the root.
      clock.t += 6 * 60 * 1000;
      const res = await hierarchy(bob, space, `limit=3${from ? `&from=${enc(from)}` : ''}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      seen.push(...ids(res));
      from = res.body.next_batch;
      if (from === undefined) break;
    }
    expect(seen).toEqual(whole);
  });

  test('a token only continues its own request', async () => {
    const first = await hierarchy(bob, space, 'limit=1&max_depth=3');
    const token = first.body.next_batch as string;
    expect(typeof token).toBe('string');
    const bad = [
      await hierarchy(bob, space, `limit=1&max_depth=2&from=${enc(token)}`),
      await hierarchy(bob, space, `limit=1&max_depth=3&suggested_only=true&from=${enc(token)}`),
      await hierarchy(bob, sub, `limit=1&max_depth=3&from=${enc(token)}`),
      await hierarchy(alice, space, `limit=1&max_depth=3&from=${enc(token)}`),
      await hierarchy(bob, space, 'from=garbage'),
      await hierarchy(bob, space, `from=${enc(token.slice(0, -3))}`),
    ];
    for (const res of bad) expect([res.status, res.body.errcode], JSON.stringify(res.body)).toEqual([400, 'M_INVALID_PARAM']);
    // The limit may change between pages.
    const next = await hierarchy(bob, space, `limit=5&max_depth=3&from=${enc(token)}`);
    expect(next.status).toBe(200);
    expect(ids(next)[0]).toBe(b);
  });
});

describe('which rooms a user sees', () => {
  test('private rooms are left out and not walked; invited, world-readable and allowed restricted rooms are in', async () => {
    const space = await newSpace(alice);
    const secret = await newRoom(hs, alice, { preset: 'private_chat', room_version: '10' });
    const secretSpace = await newRoom(hs, alice, { preset: 'private_chat', creation_content: { type: 'm.space' } });
    const underSecret = await newPublicRoom(hs, alice);
    const invited = await newRoom(hs, alice, { preset: 'private_chat' });
    const readable = await newRoom(hs, alice, {
      preset: 'private_chat',
      initial_state: [{ type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'world_readable' } }],
    });
    const restricted = await newRoom(hs, alice, {
      room_version: '10',
      initial_state: [
        { type: 'm.room.join_rules', state_key: '', content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: space }] } },
      ],
    });
    const knock = await newRoom(hs, alice, {
      room_version: '10',
      initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'knock' } }],
    });
    const encrypted = await newPublicRoom(hs, alice, {
      initial_state: [{ type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }],
    });
    for (const r of [secret, secretSpace, invited, readable, restricted, knock, encrypted]) await addChild(space, r);
    await addChild(secretSpace, underSecret);
    await invite(hs, alice, invited, bob);

    // Bob is not (yet) in the space: the restricted room is closed to him.
    const before = ids(await hierarchy(bob, space));
    expect(before).not.toContain(restricted);
    await joinRoom(hs, bob, space);
    const res = await hierarchy(bob, space);
    expect(res.status).toBe(200);
    const seen = ids(res);
    expect(seen.sort()).toEqual([space, invited, readable, restricted, knock, encrypted].sort());
    const byId = new Map<string, any>(res.body.rooms.map((r: any) => [r.room_id, r]));
    expect(byId.get(restricted)).toMatchObject({ join_rule: 'restricted', allowed_room_ids: [space], room_version: '10' });
    expect(byId.get(readable)).toMatchObject({ world_readable: true, join_rule: 'invite' });
    expect(byId.get(encrypted)).toMatchObject({ encryption: 'm.megolm.v1.aes-sha2' });
    expect(byId.get(knock)).toMatchObject({ join_rule: 'knock' });
    // Alice, in every room, sees all of them, and the public room under the private space.
    expect(ids(await hierarchy(alice, space))).toContain(underSecret);
  });

  test('a loop ends where it began', async () => {
    const s1 = await newSpace(alice);
    const s2 = await newSpace(alice);
    await addChild(s1, s2);
    await addChild(s2, s1);
    expect(ids(await hierarchy(bob, s1))).toEqual([s1, s2]);
    expect(ids(await hierarchy(bob, s2))).toEqual([s2, s1]);
  });
});

describe('errors', () => {
  test('a root the user may not see, or nobody knows, is 403', async () => {
    const secret = await newRoom(hs, alice, { preset: 'private_chat', creation_content: { type: 'm.space' } });
    for (const roomId of [secret, `!nowhere:${hs.serverName}`]) {
      const res = await hierarchy(bob, roomId);
      expect([res.status, res.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    }
    expect((await hierarchy(alice, secret)).status).toBe(200);
  });

  test('bad parameters are 400 M_INVALID_PARAM', async () => {
    const space = await newSpace(alice);
    for (const [roomId, q] of [
      ['not-a-room', ''],
      [space, 'limit=0'],
      [space, 'limit=-3'],
      [space, 'limit=ten'],
      [space, 'max_depth=-1'],
      [space, 'max_depth=1.5'],
      [space, 'suggested_only=yes'],
    ]) {
      const res = await hierarchy(bob, roomId, q);
      expect([res.status, res.body.errcode], `${roomId} ${q}`).toEqual([400, 'M_INVALID_PARAM']);
    }
    // Large values are capped, not refused.
    expect((await hierarchy(bob, space, 'limit=100000&max_depth=100000')).status).toBe(200);
  });

  test('no token: 401', async () => {
    const res = await call(hs, 'GET', `/_matrix/client/v1/rooms/${enc('!x:y')}/hierarchy`);
    expect([res.status, res.body.errcode]).toEqual([401, 'M_MISSING_TOKEN']);
  });
});
