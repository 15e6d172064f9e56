/**
 * The woken /sync's storage work (sync.ts, notifier.ts streamRange, event-store.ts timelineRange, presence.ts):
 * a long poll from the latest position waits before reading anything, a woken sync reads the few new positions as
 * point reads (no range scan), and none of it changes an answer — also after a restart, when the process has not
 * seen the stored position yet.
 */
import { describe, expect, test } from 'vitest';
import { createHomeserver } from '../../src/homeserver.js';
import type { Kv, ReadTx, WriteTx } from '../../src/storage/kv.js';
import { openMemoryKv } from '../../src/storage/memory-kv.js';
import { HOMESERVER_STORES, STORES } from '../../src/storage/schema.js';
import { call } from '../helpers/homeserver.js';
import { enc, joinRoom, newPublicRoom, sendText } from '../helpers/rooms.js';
import { newUser } from '../helpers/users.js';
import type { TestUser } from '../helpers/users.js';

/** A memory Kv that counts transactions and range reads per store. */
async function countingKv(): Promise<{ kv: Kv; counts: Map<string, number>; reset: () => void }> {
  const inner = await openMemoryKv({ name: `woken-${Math.random()}`, stores: HOMESERVER_STORES });
  const counts = new Map<string, number>();
  const bump = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
  const wrap = <T extends ReadTx>(tx: T): T =>
    new Proxy(tx, {
      get(target, prop) {
        const v = (target as unknown as Record<string | symbol, unknown>)[prop];
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          if (prop === 'range' || prop === 'count') bump(`${String(prop)}:${String(args[0])}`);
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  const kv: Kv = {
    kind: inner.kind,
    stores: inner.stores,
    read: (fn) => (bump('read'), inner.read((tx) => fn(wrap(tx)))),
    write: (fn) => (bump('write'), inner.write((tx: WriteTx) => fn(wrap(tx)))),
    close: () => inner.close(),
  };
  return { kv, counts, reset: () => counts.clear() };
}

function syncPath(since: string, timeout: number): string {
  return `/_matrix/client/v3/sync?since=${enc(since)}&timeout=${timeout}`;
}

function timelineIds(body: any, roomId: string): string[] {
  return (body.rooms?.join?.[roomId]?.timeline?.events ?? []).map((e: { event_id: string }) => e.event_id);
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 5));
}

describe('woken /sync', () => {
  test('a poll from the latest position reads nothing until a message wakes it, then reads no range', async () => {
    const { kv, counts, reset } = await countingKv();
    const hs = await createHomeserver({ kv });
    try {
      const alice = await newUser(hs);
      const bob = await newUser(hs);
      const room = await newPublicRoom(hs, alice);
      await joinRoom(hs, bob, room);
      const first = await call(hs, 'GET', '/_matrix/client/v3/sync?timeout=0', undefined, bob.accessToken);
      // A poll that found nothing and waited: its token is the latest position.
      const empty = await call(hs, 'GET', syncPath(first.body.next_batch, 50), undefined, bob.accessToken);
      expect(timelineIds(empty.body, room)).toEqual([]);
      const latest = empty.body.next_batch as string;

      reset();
      const poll = call(hs, 'GET', syncPath(latest, 10_000), undefined, bob.accessToken);
      await settle();
      // Presence is unchanged and nothing was committed: not one transaction yet.
      expect(counts.get('read') ?? 0).toBe(0);
      const eventId = await sendText(hs, alice, room, 'hello');
      const woken = await poll;
      expect(woken.status).toBe(200);
      expect(timelineIds(woken.body, room)).toEqual([eventId]);
      expect(counts.get(`range:${STORES.stream}`) ?? 0).toBe(0);
      expect(counts.get(`range:${STORES.roomTimeline}`) ?? 0).toBe(0);
    } finally {
      await hs.stop();
    }
  });

  test('after a restart, a token older than the stored position is answered at once', async () => {
    const { kv } = await countingKv();
    const hs1 = await createHomeserver({ kv });
    let alice: TestUser;
    let bob: TestUser;
    let room: string;
    let since: string;
    let eventId: string;
    try {
      alice = await newUser(hs1);
      bob = await newUser(hs1);
      room = await newPublicRoom(hs1, alice);
      await joinRoom(hs1, bob, room);
      since = (await call(hs1, 'GET', '/_matrix/client/v3/sync?timeout=0', undefined, bob.accessToken)).body.next_batch;
      eventId = await sendText(hs1, alice, room, 'before the restart');
    } finally {
      await hs1.stop();
    }
    // A new process over the same storage: its notifier starts from nothing.
    const hs2 = await createHomeserver({ kv });
    try {
      const started = performance.now();
      const r = await call(hs2, 'GET', syncPath(since, 20_000), undefined, bob.accessToken);
      expect(r.status).toBe(200);
      expect(timelineIds(r.body, room)).toEqual([eventId]);
      expect(performance.now() - started).toBeLessThan(10_000);
    } finally {
      await hs2.stop();
    }
  });

  test('many positions since the token (a range read) and a few (point reads) give the same timeline', async () => {
    const { kv } = await countingKv();
    const hs = await createHomeserver({ kv });
    try {
      const alice = await newUser(hs);
      const bob = await newUser(hs);
      const room = await newPublicRoom(hs, alice);
      const other = await newPublicRoom(hs, alice);
      await joinRoom(hs, bob, room);
      const since = (await call(hs, 'GET', '/_matrix/client/v3/sync?timeout=0', undefined, bob.accessToken)).body.next_batch;
      const sent: string[] = [];
      // Interleave another room's events, so that the positions read include ones that are not this room's.
      for (let i = 0; i < 30; i++) {
        sent.push(await sendText(hs, alice, room, `m${i}`));
        await sendText(hs, alice, other, `o${i}`);
      }
      const wide = await call(hs, 'GET', syncPath(since, 0), undefined, bob.accessToken);
      expect(timelineIds(wide.body, room)).toEqual(sent.slice(-10));
      expect(wide.body.rooms.join[room].timeline.limited).toBe(true);
      const mid = await call(hs, 'GET', syncPath(since, 0), undefined, bob.accessToken);
      const narrowSince = mid.body.next_batch as string;
      const a = await sendText(hs, alice, room, 'a');
      await sendText(hs, alice, other, 'x');
      const b = await sendText(hs, alice, room, 'b');
      const narrow = await call(hs, 'GET', syncPath(narrowSince, 0), undefined, bob.accessToken);
      expect(timelineIds(narrow.body, room)).toEqual([a, b]);
      expect(narrow.body.rooms.join[room].timeline.limited).toBe(false);
      expect(narrow.body.rooms.join[other]).toBeUndefined();
    } finally {
      await hs.stop();
    }
  });
});
