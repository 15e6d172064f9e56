/**
 * Gossip handed over by a peer that is not its origin (room gossip is unsigned: `from` is the peer that relayed it,
 * src/net/libp2p-transport.ts). A relayed message is trusted only for what its own signatures prove: PDUs signed by
 * their origin are accepted from anyone; EDUs only from their origin itself, so a hostile peer cannot speak for
 * another server's users. Spec: server-server-api.md §EDUs, §"Checks performed on receipt of a PDU".
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildEvent } from '../../src/core/build-event.js';
import type { JsonObject } from '../../src/core/json.js';
import { roomVersion } from '../../src/core/room-versions.js';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from '../helpers/homeserver.js';
import { enc, newPublicRoom, sendText, storedEvent } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation, SyncView } from '../helpers/federation.js';

const C = '/_matrix/client/v3';
let fed: Federation;
let a: Homeserver, b: Homeserver, m: Homeserver;
let alice: TestUser, bob: TestUser, mallory: TestUser;
let room: string;
let va: SyncView;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function typingEdu(userId: string, typing: boolean): JsonObject {
  return { edu_type: 'm.typing', content: { room_id: room, user_id: userId, typing, timeout: 20_000 } };
}

/** Whether alice's last typing notice in the room names `userId`. */
function aliceSeesTyping(userId: string): boolean {
  const typing = (va.ephemeral.get(room) ?? []).filter((e) => e.type === 'm.typing');
  return typing.length > 0 && typing[typing.length - 1].content.user_ids.includes(userId);
}

beforeAll(async () => {
  fed = await newFederation(3);
  [a, b, m] = fed.servers;
  alice = await newUser(a, 'alice');
  bob = await newUser(b, 'bob');
  mallory = await newUser(m, 'mallory');
  room = await newPublicRoom(a, alice);
  for (const [hs, user] of [
    [b, bob],
    [m, mallory],
  ] as const) {
    expect((await call(hs, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, user.accessToken)).status).toBe(200);
  }
  await fed.settle();
  va = new SyncView(a, alice);
  await va.poll();
});

afterAll(async () => {
  await fed?.stop();
});

describe('gossip relayed by a third server', () => {
  test('an EDU relayed by M naming B as its origin is dropped; from B itself it is believed', async () => {
    await a.federation.handleGossip(room, m.serverName, { origin: b.serverName, origin_server_ts: Date.now(), pdus: [], edus: [typingEdu(bob.userId, true)] });
    // M's own user in a message M hands over itself, to show the relayed one was not merely slow.
    await a.federation.handleGossip(room, m.serverName, { origin: m.serverName, origin_server_ts: Date.now(), pdus: [], edus: [typingEdu(mallory.userId, true)] });
    await va.until(() => aliceSeesTyping(mallory.userId), 5000, "mallory's typing");
    await sleep(100);
    await va.poll();
    expect(aliceSeesTyping(bob.userId)).toBe(false);

    await a.federation.handleGossip(room, b.serverName, { origin: b.serverName, origin_server_ts: Date.now(), pdus: [], edus: [typingEdu(bob.userId, true)] });
    await va.until(() => aliceSeesTyping(bob.userId), 5000, "bob's typing from B");
  });

  test("a PDU of B relayed by M is accepted on B's signatures; one M forged in bob's name is not", async () => {
    // B's event must not reach A by itself: cut B off, then let M hand it over.
    fed.partition([a, m], [b]);
    const eventId = await sendText(b, bob, room, 'relayed by mallory');
    const rec = await storedEvent(b, eventId);
    expect(rec).toBeDefined();
    expect(await storedEvent(a, eventId)).toBeUndefined();
    await a.federation.handleGossip(room, m.serverName, { origin: b.serverName, origin_server_ts: Date.now(), pdus: [rec!.json], edus: [] });
    await va.waitForMessage(room, 'relayed by mallory');

    const head = await a.services.ctx.kv.read(async (tx) => ({
      ext: (await tx.range('forward_extremities', { prefix: [room] })).map(([k]) => String(k[1])),
      pl: (await tx.get<string>('current_state', [room, 'm.room.power_levels', ''])) as string,
      member: (await tx.get<string>('current_state', [room, 'm.room.member', bob.userId])) as string,
      version: (await tx.get<{ version: string }>('rooms', [room]))!.version,
    }));
    const version = roomVersion(head.version)!;
    const forged = await buildEvent(
      {
        room_id: room,
        sender: bob.userId,
        type: 'm.room.message',
        content: { msgtype: 'm.text', body: 'forged by mallory' },
        prev_events: head.ext,
        auth_events: [head.pl, head.member],
        depth: 1000,
        origin_server_ts: Date.now(),
      },
      version,
      m.serverName,
      m.identity.key,
    );
    await a.federation.handleGossip(room, m.serverName, { origin: b.serverName, origin_server_ts: Date.now(), pdus: [forged.json], edus: [] });
    await a.federation.handleGossip(room, m.serverName, { origin: m.serverName, origin_server_ts: Date.now(), pdus: [forged.json], edus: [] });
    await fed.settle();
    expect(await storedEvent(a, forged.eventId)).toBeUndefined();
    fed.heal();
    await fed.settle();
    await va.poll();
    expect(va.messages(room)).not.toContain('forged by mallory');
  });
});
