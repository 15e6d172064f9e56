/**
 * Joins answered partly from the pipeline's cached room head (membership.ts requireLocalRoom / restrictedAuthoriser,
 * rooms.ts cachedState): the cache may only skip reads, never change an answer — a restricted room still names an
 * authorising member and still refuses outsiders, also right after its join rule changed; unknown rooms are 404.
 */
import { describe, expect, test } from 'vitest';
import { STORES } from '../../src/storage/schema.js';
import { newHomeserver } from '../helpers/homeserver.js';
import { joinRoom, membership, newPublicRoom, newRoom, setState, storedEvent } from '../helpers/rooms.js';
import { newUser } from '../helpers/users.js';

describe('joins with a cached room head', () => {
  test('a restricted room: a member of the allowed room joins via an authoriser, an outsider is refused', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const carol = await newUser(hs);
    const allowed = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, allowed);
    const room = await newRoom(hs, alice, {
      room_version: '10',
      initial_state: [{ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: allowed }] } }],
    });
    const refused = await membership(hs, carol, room, 'join');
    expect(refused.status).toBe(403);
    expect(refused.body.errcode).toBe('M_FORBIDDEN');
    const joined = await membership(hs, bob, room, 'join');
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    const state = await hs.services.ctx.kv.read((tx) => tx.get<string>(STORES.currentState, [room, 'm.room.member', bob.userId]));
    const ev = await storedEvent(hs, state!);
    expect((ev!.json.content as Record<string, unknown>).join_authorised_via_users_server).toBe(alice.userId);
  });

  test('a public room turned restricted: the next join sees the new rule', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const carol = await newUser(hs);
    const allowed = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, allowed);
    const room = await newPublicRoom(hs, alice, { room_version: '10' });
    // The head is cached now (public). Restrict the room, then join.
    await setState(hs, alice, room, 'm.room.join_rules', '', { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: allowed }] });
    expect((await membership(hs, carol, room, 'join')).status).toBe(403);
    expect((await membership(hs, bob, room, 'join')).status).toBe(200);
  });

  test('an unknown room is 404 M_NOT_FOUND, a public one is joined', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const missing = await membership(hs, bob, '!nope:' + hs.serverName, 'join');
    expect(missing.status).toBe(404);
    expect(missing.body.errcode).toBe('M_NOT_FOUND');
    const room = await newPublicRoom(hs, alice);
    expect((await membership(hs, bob, room, 'join')).status).toBe(200);
  });
});
