/**
 * The storage work of a send into a warm room (rooms.ts: the cached room head, shared rather than copied while
 * nothing changes it): one write transaction and no read, with the same answers — state sent in between, and a
 * power-level change, are seen by the next send.
 */
import { describe, expect, test } from 'vitest';
import { createHomeserver } from '../../src/homeserver.js';
import type { Kv, WriteTx } from '../../src/storage/kv.js';
import { openMemoryKv } from '../../src/storage/memory-kv.js';
import { HOMESERVER_STORES } from '../../src/storage/schema.js';
import { getState, joinRoom, newPublicRoom, sendText, setState, trySend } from '../helpers/rooms.js';
import { newUser } from '../helpers/users.js';

async function countingKv(): Promise<{ kv: Kv; counts: { read: number; write: number; ops: number } }> {
  const inner = await openMemoryKv({ name: `send-ops-${Math.random()}`, stores: HOMESERVER_STORES });
  const counts = { read: 0, write: 0, ops: 0 };
  const wrap = (tx: WriteTx): WriteTx =>
    new Proxy(tx, {
      get(target, prop) {
        const v = (target as unknown as Record<string | symbol, unknown>)[prop];
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          counts.ops++;
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  const kv: Kv = {
    kind: inner.kind,
    stores: inner.stores,
    read: (fn) => (counts.read++, inner.read(fn)),
    write: (fn) => (counts.write++, inner.write((tx) => fn(wrap(tx)))),
    close: () => inner.close(),
  };
  return { kv, counts };
}

describe('a send into a warm room', () => {
  test('one write transaction of a few operations, no read; state changes in between are seen', async () => {
    const { kv, counts } = await countingKv();
    const hs = await createHomeserver({ kv });
    try {
      const alice = await newUser(hs);
      const bob = await newUser(hs);
      const room = await newPublicRoom(hs, alice);
      await joinRoom(hs, bob, room);
      await sendText(hs, bob, room, 'warm-up');

      Object.assign(counts, { read: 0, write: 0, ops: 0 });
      await sendText(hs, bob, room, 'one');
      expect(counts).toEqual({ read: 0, write: 1, ops: expect.any(Number) });
      // txn check, position, event, timeline, stream, txn record, extremities (one replaced), room record.
      expect(counts.ops).toBeLessThanOrEqual(10);

      // A state key the head has not loaded yet, then messages: the cached head must follow.
      await setState(hs, alice, room, 'm.room.topic', '', { topic: 'first' });
      await sendText(hs, bob, room, 'two');
      await setState(hs, alice, room, 'm.room.topic', '', { topic: 'second' });
      expect((await getState(hs, bob, room, 'm.room.topic')).body.topic).toBe('second');

      // Power levels that silence bob: the very next send is refused, alice's still goes through.
      const pl = (await getState(hs, alice, room, 'm.room.power_levels')).body;
      await setState(hs, alice, room, 'm.room.power_levels', '', { ...pl, events_default: 50 });
      const refused = await trySend(hs, bob, room, { msgtype: 'm.text', body: 'three' });
      expect(refused.status).toBe(403);
      expect(refused.body.errcode).toBe('M_FORBIDDEN');
      await sendText(hs, alice, room, 'still here');
    } finally {
      await hs.stop();
    }
  });
});
