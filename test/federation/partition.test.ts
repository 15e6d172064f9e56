/**
 * Partition and heal: four servers split in two halves; both halves change the power levels and the topic, ban a
 * user and send messages; after healing, every server has every message and the same current state (compared by
 * a hash of the state map), as state resolution promises.
 * Spec: server-server-api.md §"Room State Resolution", rooms/v12.md §"State resolution".
 */
import { afterAll, describe, expect, test } from 'vitest';
import { sha256 } from '@noble/hashes/sha2.js';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from '../helpers/homeserver.js';
import { enc, membership, newRoom, sendText, setState } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation, SyncView } from '../helpers/federation.js';

const C = '/_matrix/client/v3';

/** A hash of a server's current state of the room (type, state_key → event ID, sorted). */
async function stateHash(hs: Homeserver, roomId: string): Promise<string> {
  const rows = await hs.services.ctx.kv.read((tx) => tx.range<string>('current_state', { prefix: [roomId] }));
  const lines = rows.map(([k, id]) => `${k[1]}\u0000${k[2]}\u0000${id}`).sort();
  return Buffer.from(sha256(new TextEncoder().encode(lines.join('\n')))).toString('hex');
}

async function join(hs: Homeserver, user: TestUser, roomId: string, via: string): Promise<void> {
  const res = await call(hs, 'POST', `${C}/join/${enc(roomId)}?via=${enc(via)}`, {}, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

let fed: Federation | undefined;
afterAll(async () => {
  await fed?.stop();
});

for (const version of ['12', '10']) {
  describe(`room version ${version}`, () => {
    test('two halves change power levels, topic and bans and talk; after healing all four servers agree', async () => {
      fed = await newFederation(4);
      const [a, b, c, d] = fed.servers;
      const alice = await newUser(a, 'alice');
      const bob = await newUser(b, 'bob');
      const carol = await newUser(c, 'carol');
      const dave = await newUser(d, 'dave');
      const eve = await newUser(b, 'eve');
      const mallory = await newUser(d, 'mallory');
      const room = await newRoom(a, alice, { preset: 'public_chat', room_version: version });
      for (const [hs, u] of [[b, bob], [c, carol], [d, dave], [b, eve], [d, mallory]] as const) await join(hs, u, room, a.serverName);
      await fed.settle();
      // bob and carol become moderators.
      const pl = (await call(a, 'GET', `${C}/rooms/${enc(room)}/state/m.room.power_levels/`, undefined, alice.accessToken)).body;
      pl.users = { ...pl.users, [bob.userId]: 100, [carol.userId]: 75 };
      pl.events = { ...pl.events, 'm.room.power_levels': 75 };
      await setState(a, alice, room, 'm.room.power_levels', '', pl);
      await fed.settle();
      const before = await Promise.all(fed.servers.map((s) => stateHash(s, room)));
      expect(new Set(before).size).toBe(1);

      fed.partition([a, b], [c, d]);
      // Half one: a topic, a ban, carol demoted, messages.
      await setState(a, alice, room, 'm.room.topic', '', { topic: 'from half one' });
      expect((await membership(b, bob, room, 'ban', { user_id: mallory.userId, reason: 'half one' })).status).toBe(200);
      const pl1 = (await call(b, 'GET', `${C}/rooms/${enc(room)}/state/m.room.power_levels/`, undefined, bob.accessToken)).body;
      await setState(b, bob, room, 'm.room.power_levels', '', { ...pl1, users: { ...pl1.users, [carol.userId]: 0 } });
      await sendText(a, alice, room, 'one: hello');
      await sendText(b, bob, room, 'one: hi');
      // Half two: another topic, eve banned, other power levels, messages.
      await setState(c, carol, room, 'm.room.topic', '', { topic: 'from half two' });
      expect((await membership(c, carol, room, 'ban', { user_id: eve.userId, reason: 'half two' })).status).toBe(200);
      const pl2 = (await call(c, 'GET', `${C}/rooms/${enc(room)}/state/m.room.power_levels/`, undefined, carol.accessToken)).body;
      await setState(c, carol, room, 'm.room.power_levels', '', {
        ...pl2,
        users: { ...pl2.users, [dave.userId]: 50 },
        events: { ...pl2.events, 'm.room.topic': 75 },
      });
      await sendText(c, carol, room, 'two: hello');
      await sendText(d, dave, room, 'two: hi');
      await fed.settle();
      const split = await Promise.all(fed.servers.map((s) => stateHash(s, room)));
      expect(split[0]).toBe(split[1]);
      expect(split[2]).toBe(split[3]);
      expect(split[0]).not.toBe(split[2]);

      fed.heal();
      await fed.settle();
      // A message after healing merges the branches everywhere.
      await sendText(a, alice, room, 'healed');
      await fed.settle();
      const after = await Promise.all(fed.servers.map((s) => stateHash(s, room)));
      expect(new Set(after).size).toBe(1);

      // Every message reached every server that still has a member in the room.
      for (const [hs, u] of [[a, alice], [b, bob], [c, carol], [d, dave]] as const) {
        const v = new SyncView(hs, u);
        await v.poll();
        const res = await call(hs, 'GET', `${C}/rooms/${enc(room)}/messages?dir=b&limit=100`, undefined, u.accessToken);
        expect(res.status).toBe(200);
        const bodies = res.body.chunk.filter((e: any) => e.type === 'm.room.message').map((e: any) => e.content.body);
        for (const m of ['one: hello', 'one: hi', 'two: hello', 'two: hi', 'healed']) expect(bodies, `${m} on ${hs.serverName}`).toContain(m);
      }
      // The resolved state is one of the two sides' choices, the same everywhere.
      const topics = await Promise.all(
        [[a, alice], [c, carol]].map(async ([hs, u]) => (await call(hs as Homeserver, 'GET', `${C}/rooms/${enc(room)}/state/m.room.topic/`, undefined, (u as TestUser).accessToken)).body.topic),
      );
      expect(topics[0]).toBe(topics[1]);
      expect(['from half one', 'from half two']).toContain(topics[0]);
      await fed.stop();
      fed = undefined;
    });
  });
}


