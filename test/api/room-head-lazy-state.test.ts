/**
 * The pipeline (rooms.ts) loads only the current state an event needs (the base keys, the sender's and named
 * members, the auth events), not the whole state of the room. With the event cache emptied (as when a busy server
 * evicts a room's state events) while the room head stays cached as complete, answers must not change: power
 * levels, bans, join rules and prev_content are still read and enforced.
 */
import { describe, expect, test } from 'vitest';
import { STORES } from '../../src/storage/schema.js';
import type { Homeserver } from '../../src/homeserver.js';
import { newHomeserver } from '../helpers/homeserver.js';
import { joinRoom, membership, newPublicRoom, newRoom, sendText, setState, storedEvent, trySetState } from '../helpers/rooms.js';
import { newUser } from '../helpers/users.js';

/** Empties the pipeline's event cache, keeping its cached room heads. */
function dropEventCache(hs: Homeserver): void {
  (hs.services.rooms as unknown as { pduCache: Map<string, unknown> }).pduCache.clear();
}

async function memberEvent(hs: Homeserver, roomId: string, userId: string) {
  const id = await hs.services.ctx.kv.read((tx) => tx.get<string>(STORES.currentState, [roomId, 'm.room.member', userId]));
  return storedEvent(hs, id!);
}

function currentStateId(hs: Homeserver, roomId: string, type: string): Promise<string | undefined> {
  return hs.services.ctx.kv.read((tx) => tx.get<string>(STORES.currentState, [roomId, type, '']));
}

describe('room head with state events not cached', () => {
  test('power levels and bans are still enforced, joins still work', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const carol = await newUser(hs);
    const room = await newPublicRoom(hs, alice);
    expect(hs.services.rooms.hasCachedHead(room)).toBe(true);

    dropEventCache(hs);
    await joinRoom(hs, bob, room);
    const join = await memberEvent(hs, room, bob.userId);
    expect((join!.json.content as Record<string, unknown>).membership).toBe('join');

    // Bob has power level 0: the room name needs 50, read from the (uncached) power levels event.
    dropEventCache(hs);
    const refused = await trySetState(hs, bob, room, 'm.room.name', '', { name: 'mine' });
    expect(refused.status).toBe(403);
    expect(refused.body.errcode).toBe('M_FORBIDDEN');
    dropEventCache(hs);
    await sendText(hs, bob, room, 'hello');

    dropEventCache(hs);
    const banned = await membership(hs, alice, room, 'ban', { user_id: carol.userId });
    expect(banned.status, JSON.stringify(banned.body)).toBe(200);
    dropEventCache(hs);
    const again = await membership(hs, carol, room, 'join');
    expect(again.status).toBe(403);

    // A changed state event still carries the previous one as prev_content.
    await setState(hs, alice, room, 'm.room.topic', '', { topic: 'one' });
    dropEventCache(hs);
    const first = await currentStateId(hs, room, 'm.room.topic');
    const second = await setState(hs, alice, room, 'm.room.topic', '', { topic: 'two' });
    const rec = await storedEvent(hs, second);
    expect(rec!.json.unsigned).toMatchObject({ replaces_state: first, prev_content: { topic: 'one' }, prev_sender: alice.userId });
  });

  test('an invite-only room still refuses a join without an invite, and admits one with it', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const room = await newRoom(hs, alice, { preset: 'private_chat' });
    dropEventCache(hs);
    expect((await membership(hs, bob, room, 'join')).status).toBe(403);
    dropEventCache(hs);
    expect((await membership(hs, alice, room, 'invite', { user_id: bob.userId })).status).toBe(200);
    dropEventCache(hs);
    expect((await membership(hs, bob, room, 'join')).status).toBe(200);
  });
});
