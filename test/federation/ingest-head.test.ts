/**
 * Received events and the pipeline's cached room head (RoomsService): an event that extends the room's single
 * forward extremity is checked against the cached current state, with no read but the duplicate check in the
 * write, and the head then follows the event — so after any mix of received, local, rejected and forked events
 * the cache says what storage says.
 * Spec: server-server-api.md §"Checks performed on receipt of a PDU" (steps 4–6), §Rejection.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildEvent } from '../../src/core/build-event.js';
import type { JsonObject } from '../../src/core/json.js';
import { roomVersion } from '../../src/core/room-versions.js';
import type { Homeserver } from '../../src/homeserver.js';
import type { EventRecord, RoomRecord } from '../../src/storage/records.js';
import { call } from '../helpers/homeserver.js';
import { enc, newPublicRoom, sendText } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation, SyncView } from '../helpers/federation.js';

const C = '/_matrix/client/v3';
let fed: Federation;
let a: Homeserver, m: Homeserver;
let alice: TestUser, mallory: TestUser;
let room: string;
let va: SyncView;
let txn = 0;

function sendTxn(pdus: JsonObject[]) {
  return a.federation.handleRequest(m.serverName, {
    method: 'PUT',
    path: `/_matrix/federation/v1/send/head${++txn}`,
    body: { origin: m.serverName, origin_server_ts: Date.now(), pdus },
  });
}

/** A's stored head: room record, extremities, current state. */
async function storedHead() {
  return a.services.ctx.kv.read(async (tx) => {
    const ext = (await tx.range('forward_extremities', { prefix: [room] })).map(([k]) => String(k[1]));
    const rec = (await tx.get<RoomRecord>('rooms', [room]))!;
    const state = new Map<string, string>();
    for (const [k, id] of await tx.range<string>('current_state', { prefix: [room] })) state.set(`${k[1]}|${k[2]}`, id);
    return { ext, rec, state };
  });
}

/** The cached head, when there is one, agrees with storage at every key it claims to know. */
async function expectCacheMatchesStorage() {
  const cached = a.services.rooms.cachedHead(room);
  if (!cached) return false;
  const s = await storedHead();
  expect(cached.room).toEqual(s.rec);
  expect([...cached.extremities].sort()).toEqual([...s.ext].sort());
  const storedKeys = [...s.state.keys()].map((k) => k.replace('|', '\u0000'));
  for (const k of cached.complete ? new Set([...storedKeys, ...cached.stateIds.keys()]) : cached.knownKeys) {
    // Cached keys are `type\u0000state_key`; storedHead's are `type|state_key`.
    expect(cached.stateIds.get(k), k).toBe(s.state.get(k.replace('\u0000', '|')));
  }
  return true;
}

/** An event by mallory built and signed by M on A's current head (or the given prev/auth events). */
async function craft(fields: JsonObject, opts: { prev?: string[]; auth?: string[] } = {}) {
  const h = await storedHead();
  const auth = opts.auth ?? [h.state.get('m.room.power_levels|')!, h.state.get(`m.room.member|${mallory.userId}`)!];
  return buildEvent(
    {
      room_id: room,
      sender: mallory.userId,
      content: {},
      prev_events: opts.prev ?? h.ext,
      auth_events: auth,
      depth: h.rec.maxDepth + 1,
      origin_server_ts: Date.now(),
      ...fields,
    },
    roomVersion(h.rec.version)!,
    m.serverName,
    m.identity.key,
  );
}

async function stored(eventId: string) {
  return a.services.ctx.kv.read((tx) => tx.get<EventRecord>('events', [eventId]));
}

/** Counts A's read transactions while `fn` runs. */
async function countReads(fn: () => Promise<unknown>): Promise<number> {
  const kv = a.services.ctx.kv;
  const read = kv.read.bind(kv);
  let n = 0;
  kv.read = (f) => {
    n++;
    return read(f);
  };
  try {
    await fn();
  } finally {
    kv.read = read;
  }
  return n;
}

beforeAll(async () => {
  fed = await newFederation(2);
  [a, m] = fed.servers;
  alice = await newUser(a, 'alice');
  mallory = await newUser(m, 'mallory');
  room = await newPublicRoom(a, alice);
  const res = await call(m, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, mallory.accessToken);
  expect(res.status).toBe(200);
  await fed.settle();
  va = new SyncView(a, alice);
  await va.poll();
});

afterAll(async () => {
  await fed?.stop();
});

describe('received events on the cached room head', () => {
  test('a message extending the warm head is checked and written with no read transaction, and the head follows it', async () => {
    await sendText(a, alice, room, 'warm the head');
    expect(await expectCacheMatchesStorage()).toBe(true);
    const ev = await craft({ type: 'm.room.message', content: { msgtype: 'm.text', body: 'on the head' } });
    let res: Awaited<ReturnType<typeof sendTxn>> | undefined;
    const reads = await countReads(async () => (res = await sendTxn([ev.json])));
    expect((res!.body as any).pdus[ev.eventId]).toEqual({});
    expect(reads).toBe(0);
    await va.waitForMessage(room, 'on the head');
    expect(a.services.rooms.cachedHead(room)?.extremities).toEqual([ev.eventId]);
    expect(await expectCacheMatchesStorage()).toBe(true);
    // The same event again: known, nothing written twice.
    const again = await sendTxn([ev.json]);
    expect((again.body as any).pdus[ev.eventId]).toEqual({});
    expect((await storedHead()).ext).toEqual([ev.eventId]);
  });

  test('received state, then a local send, then received events: each built on the other, the cache right throughout', async () => {
    const h = await storedHead();
    const member = await craft(
      { type: 'm.room.member', state_key: mallory.userId, content: { membership: 'join', displayname: 'M2' } },
      { auth: ['m.room.power_levels|', `m.room.member|${mallory.userId}`, 'm.room.join_rules|'].map((k) => h.state.get(k)!) },
    );
    expect((await sendTxn([member.json])).body).toEqual({ pdus: { [member.eventId]: {} } });
    expect(await expectCacheMatchesStorage()).toBe(true);
    const rec = await stored(member.eventId);
    expect((rec!.json.unsigned as any).replaces_state).toBe(h.state.get(`m.room.member|${mallory.userId}`));
    expect((await storedHead()).state.get(`m.room.member|${mallory.userId}`)).toBe(member.eventId);

    // alice's next event is built on the received one.
    const local = await sendText(a, alice, room, 'after the rename');
    const localRec = await stored(local);
    expect(localRec!.json.prev_events).toEqual([member.eventId]);
    expect(await expectCacheMatchesStorage()).toBe(true);

    const next = await craft({ type: 'm.room.message', content: { msgtype: 'm.text', body: 'after alice' } }, {
      auth: [h.state.get('m.room.power_levels|')!, member.eventId],
    });
    expect((await sendTxn([next.json])).body).toEqual({ pdus: { [next.eventId]: {} } });
    await va.waitForMessage(room, 'after alice');
    expect(await expectCacheMatchesStorage()).toBe(true);
  });

  test('a fork (an event on an older prev event) goes the general way and the head is rebuilt from storage', async () => {
    const h = await storedHead();
    const oldExt = h.ext[0];
    await sendText(a, alice, room, 'moves the head on');
    const forked = await craft({ type: 'm.room.message', content: { msgtype: 'm.text', body: 'from the side' } }, {
      prev: [oldExt],
      auth: [h.state.get('m.room.power_levels|')!, h.state.get(`m.room.member|${mallory.userId}`)!],
    });
    expect((await sendTxn([forked.json])).body).toEqual({ pdus: { [forked.eventId]: {} } });
    const branches = (await storedHead()).ext;
    expect(branches).toHaveLength(2);
    // Not extending the cached head: the cache no longer holds the room (or, if it does, agrees with storage).
    if (a.services.rooms.cachedHead(room)) expect(await expectCacheMatchesStorage()).toBe(true);
    // alice's next event joins both branches.
    const after = await sendText(a, alice, room, 'after the fork');
    expect([...((await stored(after))!.json.prev_events as string[])].sort()).toEqual([...branches].sort());
    expect((await storedHead()).ext).toEqual([after]);
    expect(await expectCacheMatchesStorage()).toBe(true);
  });

  test('an event whose auth events allow it but the current state does not: rejected on the cached head (step 5)', async () => {
    const h = await storedHead();
    const oldPl = h.state.get('m.room.power_levels|')!;
    const plRec = await stored(oldPl);
    const content = { ...(plRec!.json.content as JsonObject), events_default: 50 };
    const res = await call(a, 'PUT', `${C}/rooms/${enc(room)}/state/m.room.power_levels/`, content, alice.accessToken);
    expect(res.status).toBe(200);
    expect(await expectCacheMatchesStorage()).toBe(true);
    // Built on the new head, but listing the old power levels: step 4 passes, step 5 does not.
    const ev = await craft({ type: 'm.room.message', content: { msgtype: 'm.text', body: 'muted' } }, {
      auth: [oldPl, (await storedHead()).state.get(`m.room.member|${mallory.userId}`)!],
    });
    const out = await sendTxn([ev.json]);
    expect((out.body as any).pdus[ev.eventId].error).toMatch(/state before the event/);
    // The same rejected event again: known (the write's duplicate check), still rejected, still not in the room.
    const before = await storedHead();
    const again = await sendTxn([ev.json]);
    expect(again.status).toBe(200);
    expect((await storedHead()).rec).toEqual(before.rec);
    const rec = await stored(ev.eventId);
    expect(rec?.rejected).toBeDefined();
    expect(rec?.pos).toBeUndefined();
    expect((await storedHead()).ext).not.toContain(ev.eventId);
    // A rejected event leaves the room as it was: the next local send still works on a right head.
    await sendText(a, alice, room, 'still fine');
    expect(await expectCacheMatchesStorage()).toBe(true);
  });

});
