/**
 * Incremental /sync stays exact when it reuses earlier work: unread counts are extended from the previous sync's
 * (sync.ts UnreadMemo) and must equal what a fresh initial sync computes, through new messages, mentions, redactions,
 * the user's own messages and read receipts. And a long poll wakes as soon as a message lands.
 */
import { describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import { enc, joinRoom, newPublicRoom, sendText } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';

const C = '/_matrix/client/v3';

async function sync(hs: Homeserver, user: TestUser, params: Record<string, string> = {}) {
  const q = new URLSearchParams({ set_presence: 'offline', ...params }).toString();
  const res = await call(hs, 'GET', `${C}/sync?${q}`, undefined, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

/** Unread counts of `roomId` from an incremental sync after `since`, and from a fresh initial sync: both. */
async function counts(hs: Homeserver, user: TestUser, roomId: string, since: string) {
  const inc = await sync(hs, user, { since });
  const fresh = await sync(hs, user);
  return { inc: inc.rooms.join[roomId]?.unread_notifications, fresh: fresh.rooms.join[roomId].unread_notifications, next: inc.next_batch as string };
}

describe('unread counts across incremental syncs', () => {
  test('equal a fresh count after messages, a mention, a redaction, a receipt and an own message', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    let since = (await sync(hs, alice)).next_batch as string;

    await sendText(hs, bob, roomId, 'one');
    let c = await counts(hs, alice, roomId, since);
    expect(c.inc).toEqual({ notification_count: 1, highlight_count: 0 });
    expect(c.inc).toEqual(c.fresh);
    since = c.next;

    const mention = await sendText(hs, bob, roomId, `hey ${alice.userId}`);
    const two = await sendText(hs, bob, roomId, 'two');
    c = await counts(hs, alice, roomId, since);
    expect(c.inc).toEqual({ notification_count: 3, highlight_count: 1 });
    expect(c.inc).toEqual(c.fresh);
    since = c.next;

    // A redaction of an already counted event takes it out of the count.
    const red = await call(hs, 'PUT', `${C}/rooms/${enc(roomId)}/redact/${enc(mention)}/r1`, {}, bob.accessToken);
    expect(red.status).toBe(200);
    c = await counts(hs, alice, roomId, since);
    expect(c.inc).toEqual({ notification_count: 2, highlight_count: 0 });
    expect(c.inc).toEqual(c.fresh);
    since = c.next;

    // A read receipt moves the start of the count.
    const rr = await call(hs, 'POST', `${C}/rooms/${enc(roomId)}/receipt/m.read/${enc(two)}`, {}, alice.accessToken);
    expect(rr.status).toBe(200);
    await sendText(hs, bob, roomId, 'three');
    c = await counts(hs, alice, roomId, since);
    expect(c.inc).toEqual({ notification_count: 1, highlight_count: 0 });
    expect(c.inc).toEqual(c.fresh);
    since = c.next;

    // The user's own message reads everything before it; later messages count again.
    await sendText(hs, alice, roomId, 'caught up');
    c = await counts(hs, alice, roomId, since);
    expect(c.inc).toEqual({ notification_count: 0, highlight_count: 0 });
    since = c.next;
    await sendText(hs, bob, roomId, 'four');
    c = await counts(hs, alice, roomId, since);
    expect(c.inc).toEqual({ notification_count: 1, highlight_count: 0 });
    expect(c.inc).toEqual(c.fresh);
  });

  test('past the scan limit the count stays capped as a fresh sync caps it', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    for (let i = 0; i < 495; i++) await sendText(hs, bob, roomId, `m${i}`);
    let since = (await sync(hs, alice)).next_batch as string;
    for (let i = 0; i < 10; i++) await sendText(hs, bob, roomId, `n${i}`);
    const c = await counts(hs, alice, roomId, since);
    expect(c.inc).toEqual(c.fresh);
    expect(c.inc.notification_count).toBeLessThanOrEqual(500);
    since = c.next;
  }, 60_000);
});

describe('long poll wake-up', () => {
  test('a waiting /sync answers with the message as soon as it is sent', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    const since = (await sync(hs, bob)).next_batch as string;
    const started = performance.now();
    const poll = sync(hs, bob, { since, timeout: '20000' });
    const eventId = await sendText(hs, alice, roomId, 'wake up');
    const s = await poll;
    expect(performance.now() - started).toBeLessThan(5000);
    expect(s.rooms.join[roomId].timeline.events.map((e: { event_id: string }) => e.event_id)).toContain(eventId);
  });
});
