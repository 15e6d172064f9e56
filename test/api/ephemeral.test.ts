/**
 * Typing notifications, receipts and read markers, as other users see them through /sync
 * (typing.yaml, receipts.yaml, read_markers.yaml; modules/receipts.md, typing_notifications.md, read_markers.md).
 */
import { describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import { enc, joinRoom, newPublicRoom, newRoom, send, sendText } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';

const C = '/_matrix/client/v3';

async function sync(hs: Homeserver, user: TestUser, params: Record<string, string> = {}) {
  const q = new URLSearchParams({ set_presence: 'offline', ...params }).toString();
  const res = await call(hs, 'GET', `${C}/sync?${q}`, undefined, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

function typing(hs: Homeserver, user: TestUser, roomId: string, body: unknown, userId = user.userId) {
  return call(hs, 'PUT', `${C}/rooms/${enc(roomId)}/typing/${enc(userId)}`, body, user.accessToken);
}

function receipt(hs: Homeserver, user: TestUser, roomId: string, type: string, eventId: string, body: unknown = {}) {
  return call(hs, 'POST', `${C}/rooms/${enc(roomId)}/receipt/${enc(type)}/${enc(eventId)}`, body, user.accessToken);
}

function ephemeralOf(s: any, roomId: string, type: string): any {
  return s.rooms.join[roomId]?.ephemeral.events.find((e: any) => e.type === type);
}

async function twoInRoom(): Promise<{ hs: Homeserver; alice: TestUser; bob: TestUser; roomId: string }> {
  const hs = await newHomeserver();
  const alice = await newUser(hs);
  const bob = await newUser(hs);
  const roomId = await newPublicRoom(hs, alice);
  await joinRoom(hs, bob, roomId);
  return { hs, alice, bob, roomId };
}

describe('typing', () => {
  test('another user sees typing start and stop through /sync', async () => {
    const { hs, alice, bob, roomId } = await twoInRoom();
    const b0 = await sync(hs, bob);
    const put = await typing(hs, alice, roomId, { typing: true, timeout: 30000 });
    expect([put.status, put.body]).toEqual([200, {}]);
    const b1 = await sync(hs, bob, { since: b0.next_batch });
    expect(ephemeralOf(b1, roomId, 'm.typing').content).toEqual({ user_ids: [alice.userId] });
    // Typing again only moves the expiry: nothing new for bob.
    await typing(hs, alice, roomId, { typing: true, timeout: 30000 });
    const b2 = await sync(hs, bob, { since: b1.next_batch });
    expect(b2.rooms.join[roomId]).toBeUndefined();
    await typing(hs, alice, roomId, { typing: false });
    const b3 = await sync(hs, bob, { since: b2.next_batch });
    expect(ephemeralOf(b3, roomId, 'm.typing').content).toEqual({ user_ids: [] });
  });

  test('typing expires after its timeout and a waiting sync hears of it', async () => {
    const { hs, alice, bob, roomId } = await twoInRoom();
    await typing(hs, alice, roomId, { typing: true, timeout: 100 });
    const b0 = await sync(hs, bob);
    expect(ephemeralOf(b0, roomId, 'm.typing').content.user_ids).toEqual([alice.userId]);
    const t0 = performance.now();
    const b1 = await sync(hs, bob, { since: b0.next_batch, timeout: '10000' });
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(ephemeralOf(b1, roomId, 'm.typing').content).toEqual({ user_ids: [] });
  });

  test('bad input and permissions', async () => {
    const { hs, alice, bob, roomId } = await twoInRoom();
    const carol = await newUser(hs);
    const forOther = await typing(hs, alice, roomId, { typing: true }, bob.userId);
    expect([forOther.status, forOther.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    const notJoined = await typing(hs, carol, roomId, { typing: true });
    expect([notJoined.status, notJoined.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    const unknownRoom = await typing(hs, alice, `!nosuchroom:${hs.serverName}`, { typing: true });
    expect([unknownRoom.status, unknownRoom.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    const badRoom = await typing(hs, alice, 'not-a-room', { typing: true });
    expect([badRoom.status, badRoom.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    const missing = await typing(hs, alice, roomId, { timeout: 1000 });
    expect([missing.status, missing.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    const wrongType = await typing(hs, alice, roomId, { typing: 'yes' });
    expect([wrongType.status, wrongType.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    const negative = await typing(hs, alice, roomId, { typing: true, timeout: -5 });
    expect([negative.status, negative.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
  });
});

describe('receipts', () => {
  test('m.read is seen by others; m.read.private only by its sender', async () => {
    const { hs, alice, bob, roomId } = await twoInRoom();
    const e1 = await sendText(hs, bob, roomId, 'one');
    const e2 = await sendText(hs, bob, roomId, 'two');
    const a0 = await sync(hs, alice);
    const b0 = await sync(hs, bob);
    expect((await receipt(hs, alice, roomId, 'm.read', e1)).status).toBe(200);
    expect((await receipt(hs, alice, roomId, 'm.read.private', e2)).status).toBe(200);

    const b1 = await sync(hs, bob, { since: b0.next_batch });
    const seen = ephemeralOf(b1, roomId, 'm.receipt').content;
    expect(Object.keys(seen)).toEqual([e1]);
    expect(seen[e1]['m.read'][alice.userId].ts).toEqual(expect.any(Number));

    const a1 = await sync(hs, alice, { since: a0.next_batch });
    const own = ephemeralOf(a1, roomId, 'm.receipt').content;
    expect(Object.keys(own[e1])).toEqual(['m.read']);
    expect(Object.keys(own[e2])).toEqual(['m.read.private']);
    // Initial syncs follow the same rule.
    expect(ephemeralOf(await sync(hs, bob), roomId, 'm.receipt').content[e2]).toBeUndefined();
  });

  test('threaded receipts carry thread_id; receipts never move backwards', async () => {
    const { hs, alice, bob, roomId } = await twoInRoom();
    const root = await sendText(hs, bob, roomId, 'root');
    const inThread = await send(hs, bob, roomId, {
      msgtype: 'm.text',
      body: 'reply',
      'm.relates_to': { rel_type: 'm.thread', event_id: root },
    });
    const later = await sendText(hs, bob, roomId, 'later');
    expect((await receipt(hs, alice, roomId, 'm.read', inThread, { thread_id: root })).status).toBe(200);
    expect((await receipt(hs, alice, roomId, 'm.read', later, { thread_id: 'main' })).status).toBe(200);
    const content = ephemeralOf(await sync(hs, bob), roomId, 'm.receipt').content;
    expect(content[inThread]['m.read'][alice.userId].thread_id).toBe(root);
    expect(content[later]['m.read'][alice.userId].thread_id).toBe('main');

    expect((await receipt(hs, alice, roomId, 'm.read', later)).status).toBe(200);
    const b0 = await sync(hs, bob);
    // An older event than the current unthreaded receipt is accepted and ignored.
    expect((await receipt(hs, alice, roomId, 'm.read', root)).status).toBe(200);
    const b1 = await sync(hs, bob, { since: b0.next_batch });
    expect(b1.rooms.join[roomId]).toBeUndefined();
  });

  test('bad input and permissions', async () => {
    const { hs, alice, bob, roomId } = await twoInRoom();
    const carol = await newUser(hs);
    const e1 = await sendText(hs, bob, roomId, 'one');
    const other = await newRoom(hs, alice);
    const elsewhere = await sendText(hs, alice, other, 'elsewhere');
    const cases: Array<[TestUser, string, string, string, unknown, number, string]> = [
      [alice, roomId, 'm.unknown', e1, {}, 400, 'M_INVALID_PARAM'],
      [alice, roomId, 'm.read', 'not-an-event', {}, 400, 'M_INVALID_PARAM'],
      [alice, 'not-a-room', 'm.read', e1, {}, 400, 'M_INVALID_PARAM'],
      [alice, roomId, 'm.read', e1, { thread_id: '' }, 400, 'M_INVALID_PARAM'],
      [alice, roomId, 'm.read', e1, { thread_id: 5 }, 400, 'M_BAD_JSON'],
      [alice, roomId, 'm.fully_read', e1, { thread_id: 'main' }, 400, 'M_INVALID_PARAM'],
      [alice, roomId, 'm.read', e1, { thread_id: e1 }, 400, 'M_INVALID_PARAM'],
      [alice, roomId, 'm.read', `$${'A'.repeat(43)}`, {}, 404, 'M_NOT_FOUND'],
      [alice, roomId, 'm.read', elsewhere, {}, 404, 'M_NOT_FOUND'],
      [carol, roomId, 'm.read', e1, {}, 403, 'M_FORBIDDEN'],
    ];
    for (const [user, room, type, eventId, body, status, errcode] of cases) {
      const res = await receipt(hs, user, room, type, eventId, body);
      expect([res.status, res.body.errcode], JSON.stringify([type, eventId, body])).toEqual([status, errcode]);
    }
  });
});

describe('read markers', () => {
  test('m.fully_read goes to room account data; m.read in the same call is a receipt', async () => {
    const { hs, alice, bob, roomId } = await twoInRoom();
    const e1 = await sendText(hs, bob, roomId, 'one');
    const e2 = await sendText(hs, bob, roomId, 'two');
    const a0 = await sync(hs, alice);
    const b0 = await sync(hs, bob);
    const res = await call(hs, 'POST', `${C}/rooms/${enc(roomId)}/read_markers`, { 'm.fully_read': e1, 'm.read': e2 }, alice.accessToken);
    expect([res.status, res.body]).toEqual([200, {}]);
    const a1 = await sync(hs, alice, { since: a0.next_batch });
    expect(a1.rooms.join[roomId].account_data.events).toEqual([{ type: 'm.fully_read', content: { event_id: e1 } }]);
    const got = await call(hs, 'GET', `${C}/user/${enc(alice.userId)}/rooms/${enc(roomId)}/account_data/m.fully_read`, undefined, alice.accessToken);
    expect(got.body).toEqual({ event_id: e1 });
    const b1 = await sync(hs, bob, { since: b0.next_batch });
    expect(Object.keys(ephemeralOf(b1, roomId, 'm.receipt').content)).toEqual([e2]);
    // The fully-read marker is private.
    expect(b1.rooms.join[roomId].account_data.events).toEqual([]);

    // The receipt endpoint sets the marker too, and the marker does not move backwards.
    expect((await receipt(hs, alice, roomId, 'm.fully_read', e2)).status).toBe(200);
    expect((await receipt(hs, alice, roomId, 'm.fully_read', e1)).status).toBe(200);
    const after = await call(hs, 'GET', `${C}/user/${enc(alice.userId)}/rooms/${enc(roomId)}/account_data/m.fully_read`, undefined, alice.accessToken);
    expect(after.body).toEqual({ event_id: e2 });
  });

  test('bad input', async () => {
    const { hs, alice, roomId } = await twoInRoom();
    const path = `${C}/rooms/${enc(roomId)}/read_markers`;
    const badId = await call(hs, 'POST', path, { 'm.fully_read': 'nope' }, alice.accessToken);
    expect([badId.status, badId.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    const wrongType = await call(hs, 'POST', path, { 'm.read': 7 }, alice.accessToken);
    expect([wrongType.status, wrongType.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    const unknown = await call(hs, 'POST', path, { 'm.fully_read': `$${'B'.repeat(43)}` }, alice.accessToken);
    expect([unknown.status, unknown.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    const notJson = await call(hs, 'POST', path, '{', alice.accessToken);
    expect([notJson.status, notJson.body.errcode]).toEqual([400, 'M_NOT_JSON']);
  });
});
