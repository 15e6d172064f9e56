/**
 * A hostile server: forged signatures, events signed by the wrong server, bad content hashes, events failing auth
 * (against their auth events, the state before them, the current state), events for rooms it is not in,
 * oversized and malformed transactions. None of it reaches a client's timeline, and the server stays healthy.
 * Spec: server-server-api.md §"Checks performed on receipt of a PDU", §Rejection, §"Soft failure", §Transactions.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildEvent } from '../../src/core/build-event.js';
import type { JsonObject } from '../../src/core/json.js';
import { roomVersion } from '../../src/core/room-versions.js';
import type { Homeserver } from '../../src/homeserver.js';
import type { EventRecord } from '../../src/storage/records.js';
import { call } from '../helpers/homeserver.js';
import { enc, membership, newPublicRoom, newRoom, sendText } from '../helpers/rooms.js';
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

/** Sends a transaction to A as server M (the authenticated origin). */
function sendTxn(body: JsonObject, origin = m.serverName) {
  return a.federation.handleRequest(origin, { method: 'PUT', path: `/_matrix/federation/v1/send/hostile${++txn}`, body });
}

/** A's view of a room head: extremities, depth, and current state IDs. */
async function head(roomId: string) {
  return a.services.ctx.kv.read(async (tx) => {
    const ext = (await tx.range('forward_extremities', { prefix: [roomId] })).map(([k]) => String(k[1]));
    const roomRec = await tx.get<{ maxDepth: number; version: string }>('rooms', [roomId]);
    const state = new Map<string, string>();
    for (const [k, id] of await tx.range<string>('current_state', { prefix: [roomId] })) state.set(`${k[1]}|${k[2]}`, id);
    return { ext, depth: roomRec!.maxDepth + 1, version: roomRec!.version, state };
  });
}

/** An event built and signed by M (or another key), on A's current head unless told otherwise. */
async function craft(roomId: string, fields: JsonObject, opts: { prev?: string[]; auth?: string[]; signAs?: Homeserver } = {}) {
  const h = await head(roomId);
  const sender = (fields.sender as string) ?? mallory.userId;
  const auth = opts.auth ?? [h.state.get('m.room.power_levels|'), h.state.get(`m.room.member|${sender}`)].filter((x): x is string => x !== undefined);
  const signer = opts.signAs ?? m;
  return buildEvent(
    {
      room_id: roomId,
      sender,
      content: {},
      prev_events: opts.prev ?? h.ext,
      auth_events: auth,
      depth: h.depth,
      origin_server_ts: Date.now(),
      ...fields,
    },
    roomVersion(h.version)!,
    signer.serverName,
    signer.identity.key,
  );
}

async function stored(eventId: string): Promise<EventRecord | undefined> {
  return a.services.ctx.kv.read((tx) => tx.get<EventRecord>('events', [eventId]));
}

async function timelineHas(roomId: string, eventId: string): Promise<boolean> {
  const rows = await a.services.ctx.kv.read((tx) => tx.range<string>('room_timeline', { prefix: [roomId] }));
  return rows.some(([, id]) => id === eventId);
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

describe('PDUs that fail the checks on receipt', () => {
  test('a well-formed event from the hostile server is accepted (the baseline)', async () => {
    const ev = await craft(room, { type: 'm.room.message', content: { msgtype: 'm.text', body: 'baseline' } });
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: [ev.json] });
    expect(res.status).toBe(200);
    expect((res.body as any).pdus[ev.eventId]).toEqual({});
    await va.waitForMessage(room, 'baseline');
  });

  test('a forged signature: dropped, not stored', async () => {
    const ev = await craft(room, { type: 'm.room.message', content: { msgtype: 'm.text', body: 'forged' } });
    const json = structuredClone(ev.json) as any;
    const sigs = json.signatures[m.serverName];
    const keyId = Object.keys(sigs)[0];
    sigs[keyId] = sigs[keyId].slice(0, 10) + (sigs[keyId][10] === 'A' ? 'B' : 'A') + sigs[keyId].slice(11);
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: [json] });
    expect(res.status).toBe(200);
    expect((res.body as any).pdus[ev.eventId].error).toMatch(/signed/);
    expect(await stored(ev.eventId)).toBeUndefined();
  });

  test("an event claiming to be alice's, signed by the hostile server: dropped", async () => {
    const ev = await craft(room, { type: 'm.room.message', sender: alice.userId, content: { msgtype: 'm.text', body: 'impersonation' } });
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: [ev.json] });
    expect((res.body as any).pdus[ev.eventId].error).toMatch(new RegExp(`signed by ${a.serverName}`));
    expect(await stored(ev.eventId)).toBeUndefined();
  });

  test('a bad content hash: the event is redacted before it is processed, its content never shown', async () => {
    const ev = await craft(room, { type: 'm.room.message', content: { msgtype: 'm.text', body: 'original' } });
    const json = structuredClone(ev.json) as any;
    json.content.body = 'tampered';
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: [json] });
    expect((res.body as any).pdus[ev.eventId]).toEqual({});
    const rec = await stored(ev.eventId);
    expect(rec?.json.content).toEqual({});
    await va.until(() => (va.timeline.get(room) ?? []).some((e) => e.event_id === ev.eventId), 5000, 'the redacted event');
    const seen = (va.timeline.get(room) ?? []).find((e) => e.event_id === ev.eventId);
    expect(seen.content).toEqual({});
    expect(JSON.stringify(va.timeline.get(room))).not.toContain('tampered');
  });

  test("the sender's `unsigned` is not kept: prev_content is what the event really replaced", async () => {
    const h = await head(room);
    const ev = await craft(room, {
      type: 'm.room.member',
      state_key: mallory.userId,
      content: { membership: 'join', displayname: 'Mallory' },
      unsigned: { prev_content: { membership: 'leave', displayname: 'fake' }, age: 1 },
    }, { auth: ['m.room.power_levels|', `m.room.member|${mallory.userId}`, 'm.room.join_rules|'].map((k) => h.state.get(k)!) });
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: [ev.json] });
    expect((res.body as any).pdus[ev.eventId], JSON.stringify(res.body)).toEqual({});
    const rec = await stored(ev.eventId);
    expect((rec!.json.unsigned as any).prev_content.membership).toBe('join');
    expect((rec!.json.unsigned as any).replaces_state).toBe(h.state.get(`m.room.member|${mallory.userId}`));
    expect((rec!.json.unsigned as any).age).toBeUndefined();
  });

  test('power levels the sender may not set: rejected against its auth events, never in the timeline or state', async () => {
    const h = await head(room);
    const pl = await stored(h.state.get('m.room.power_levels|')!);
    const content = { ...(pl!.json.content as JsonObject), users: { [mallory.userId]: 100 } };
    const ev = await craft(room, { type: 'm.room.power_levels', state_key: '', content });
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: [ev.json] });
    expect((res.body as any).pdus[ev.eventId].error).toMatch(/power/);
    const rec = await stored(ev.eventId);
    expect(rec?.rejected).toBeDefined();
    expect(await timelineHas(room, ev.eventId)).toBe(false);
    expect((await head(room)).state.get('m.room.power_levels|')).toBe(h.state.get('m.room.power_levels|'));
  });

  test('auth events that do not match the selection (a stranger listing a member event not its own): rejected', async () => {
    const h = await head(room);
    const ev = await craft(room, { type: 'm.room.message', content: { body: 'wrong auth' } }, {
      auth: [h.state.get('m.room.power_levels|')!, h.state.get(`m.room.member|${alice.userId}`)!],
    });
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: [ev.json] });
    expect((res.body as any).pdus[ev.eventId].error).toBeDefined();
    expect(await timelineHas(room, ev.eventId)).toBe(false);
  });

  test('an event for a room the server does not hold: dropped', async () => {
    const other = await newRoom(m, mallory);
    const ev = await m.services.ctx.kv.read(async (tx) => {
      const rows = await tx.range<string>('room_timeline', { prefix: [other] });
      return tx.get<EventRecord>('events', [rows[rows.length - 1][1]]);
    });
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: [ev!.json] });
    // Without the room, not even its version (and so the event's ID) is known here: no result for it.
    expect(res.status).toBe(200);
    expect((res.body as any).pdus[ev!.eventId]).toBeUndefined();
    expect(await stored(ev!.eventId)).toBeUndefined();
  });

  test("an event in a room of A the hostile server is not in: rejected, and the room's state is not served to it", async () => {
    const priv = await newRoom(a, alice);
    const h = await head(priv);
    const ev = await craft(priv, { type: 'm.room.message', content: { body: 'sneaking in' } }, {
      auth: [h.state.get('m.room.power_levels|')!],
    });
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: [ev.json] });
    expect((res.body as any).pdus[ev.eventId].error).toBeDefined();
    expect(await timelineHas(priv, ev.eventId)).toBe(false);
    const state = await a.federation.handleRequest(m.serverName, {
      method: 'GET',
      path: `/_matrix/federation/v1/state_ids/${enc(priv)}?event_id=${enc(h.ext[0])}`,
    });
    expect(state.status).toBe(403);
    expect((state.body as any).errcode).toBe('M_FORBIDDEN');
  });

  test('an event whose prev events nobody can produce: dropped', async () => {
    const ev = await craft(room, { type: 'm.room.message', content: { body: 'orphan' } }, {
      prev: ['$' + 'x'.repeat(43)],
    });
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: [ev.json] });
    expect((res.body as any).pdus[ev.eventId].error).toBeDefined();
    expect(await timelineHas(room, ev.eventId)).toBe(false);
  });

  test('a banned user evading the ban from an old branch: soft-failed — stored, not shown, not an extremity', async () => {
    const before = await head(room);
    const victim = await newUser(m, 'victim');
    expect((await call(m, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, victim.accessToken)).status).toBe(200);
    await fed.settle();
    const joined = await head(room);
    expect((await membership(a, alice, room, 'ban', { user_id: victim.userId })).status).toBe(200);
    // Built on the branch before the ban: passes against the state before it, fails against the current state.
    const ev = await craft(room, { type: 'm.room.message', sender: victim.userId, content: { body: 'evading' } }, {
      prev: joined.ext,
      auth: [joined.state.get('m.room.power_levels|')!, joined.state.get(`m.room.member|${victim.userId}`)!],
    });
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: [ev.json] });
    expect((res.body as any).pdus[ev.eventId]).toEqual({});
    const rec = await stored(ev.eventId);
    expect(rec?.softFailed).toBe(true);
    expect(await timelineHas(room, ev.eventId)).toBe(false);
    expect((await head(room)).ext).not.toContain(ev.eventId);
    expect(before.ext.length).toBeGreaterThan(0);
  });
});

describe('transactions that are too big or malformed', () => {
  test('more than 50 PDUs: 413 M_TOO_LARGE', async () => {
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: Array.from({ length: 51 }, () => ({})) });
    expect(res.status).toBe(413);
    expect((res.body as any).errcode).toBe('M_TOO_LARGE');
  });

  test('more than 100 EDUs: 413 M_TOO_LARGE', async () => {
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: [], edus: Array.from({ length: 101 }, () => ({})) });
    expect(res.status).toBe(413);
  });

  test('a body over the size limit: 413 M_TOO_LARGE', async () => {
    const res = await sendTxn({ origin: m.serverName, origin_server_ts: Date.now(), pdus: [], filler: 'x'.repeat(9 * 1024 * 1024) });
    expect(res.status).toBe(413);
    expect((res.body as any).errcode).toBe('M_TOO_LARGE');
  });

  test('pdus missing or not an array: 400 M_BAD_JSON', async () => {
    for (const body of [{ origin: m.serverName }, { origin: m.serverName, pdus: 'nope' }, { origin: m.serverName, pdus: [], edus: {} }]) {
      const res = await sendTxn(body as JsonObject);
      expect(res.status).toBe(400);
      expect((res.body as any).errcode).toBe('M_BAD_JSON');
    }
  });

  test('an origin in the body that is not the authenticated one: 400 M_INVALID_PARAM', async () => {
    const res = await sendTxn({ origin: a.serverName, origin_server_ts: Date.now(), pdus: [] });
    expect(res.status).toBe(400);
    expect((res.body as any).errcode).toBe('M_INVALID_PARAM');
  });

  test('garbage PDUs and EDUs inside a well-formed transaction are skipped; an oversized event is dropped', async () => {
    const huge = await craft(room, { type: 'm.room.message', content: { body: 'x'.repeat(70_000) } }).catch((e) => e);
    expect(huge).toBeInstanceOf(Error);
    const ev = await craft(room, { type: 'm.room.message', content: { body: 'ok' } });
    const big = { ...ev.json, content: { body: 'y'.repeat(70_000) } };
    const res = await sendTxn({
      origin: m.serverName,
      origin_server_ts: Date.now(),
      pdus: [1, 'two', null, [], { type: 'm.room.message' }, { room_id: room }, big],
      edus: [1, { edu_type: 'm.typing' }, { edu_type: 'm.typing', content: { room_id: room, user_id: alice.userId, typing: true } }],
    });
    expect(res.status).toBe(200);
    expect(Object.values((res.body as any).pdus).every((r: any) => r.error !== undefined)).toBe(true);
    // The forged typing notification for alice (not a user of the sender) changed nothing.
    const typing = await a.services.ctx.kv.read((tx) => tx.get('typing', [room, alice.userId]));
    expect(typing).toBeUndefined();
  });

  test('unknown federation paths: 404 M_UNRECOGNIZED; known ones with the wrong method: 405', async () => {
    const res = await a.federation.handleRequest(m.serverName, { method: 'GET', path: '/_matrix/federation/v1/nope' });
    expect(res.status).toBe(404);
    expect((res.body as any).errcode).toBe('M_UNRECOGNIZED');
    const wrong = await a.federation.handleRequest(m.serverName, { method: 'POST', path: '/_matrix/federation/v1/send/x', body: {} });
    expect(wrong.status).toBe(405);
  });
});

describe('after all that', () => {
  test('the server is healthy: both sides still talk', async () => {
    const vm = new SyncView(m, mallory);
    await vm.poll();
    await sendText(a, alice, room, 'still here');
    await sendText(m, mallory, room, 'me too');
    await va.waitForMessage(room, 'me too');
    await vm.waitForMessage(room, 'still here');
    for (const body of ['forged', 'impersonation', 'tampered', 'wrong auth', 'sneaking in', 'orphan', 'evading']) {
      expect(va.messages(room)).not.toContain(body);
    }
  });
});
