/**
 * toDeviceForSyncIn (src/services/to-device.ts): the acknowledged leftovers and the pending queue of a device in one
 * read, agreeing with hasAckedToDeviceIn + pendingToDeviceIn however the queue is split.
 */
import { describe, expect, test } from 'vitest';
import { openMemoryKv } from '../../../src/storage/memory-kv.js';
import { HOMESERVER_STORES, STORES } from '../../../src/storage/schema.js';
import { hasAckedToDeviceIn, pendingToDeviceIn, toDeviceForSyncIn } from '../../../src/services/to-device.js';

const U = '@bob:example.org';
const D = 'DEV';

async function queue(positions: number[]) {
  const kv = await openMemoryKv({ name: `to-device-${Math.random()}`, stores: HOMESERVER_STORES });
  await kv.write(async (tx) => {
    for (const p of positions) await tx.put(STORES.toDevice, [U, D, p], { sender: '@a:example.org', type: 'm.test', content: { p } });
    // Another device's queue right after: never part of the answer.
    await tx.put(STORES.toDevice, [U, 'DEW', 1], { sender: '@a:example.org', type: 'm.test', content: { p: -1 } });
  });
  return kv;
}

const range = (from: number, n: number) => [...Array(n).keys()].map((i) => from + i);

describe('toDeviceForSyncIn', () => {
  test.each([
    ['empty queue', [], 0],
    ['nothing acknowledged', range(1, 5), 0],
    ['some acknowledged, a few pending', range(1, 10), 4],
    ['all acknowledged', range(1, 10), 10],
    ['more pending than one sync lists', range(1, 150), 20],
    ['the read fills up exactly', range(1, 201), 100],
    ['more acknowledged leftovers than one sync lists (second read)', range(1, 260), 180],
    ['acknowledged leftovers fill the whole read', range(1, 300), 250],
  ])('%s', async (_name, positions, ack) => {
    const kv = await queue(positions);
    const [got, acked, pending] = await kv.read(
      async (tx) =>
        [await toDeviceForSyncIn(tx, U, D, ack), await hasAckedToDeviceIn(tx, U, D, ack), await pendingToDeviceIn(tx, U, D, ack)] as const,
    );
    expect(got).toEqual({ hasAcked: acked, pending });
    expect(got.pending.events.map((e) => (e.content as { p: number }).p)).toEqual(positions.filter((p) => p > ack).slice(0, 100));
  });
});
