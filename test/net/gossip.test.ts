/**
 * Room gossip over gossipsub between three nodes on loopback: delivered to subscribed peers only, with the
 * peer that handed the message over (here its publisher) as `from`; malformed and oversize messages are dropped.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { roomTopic } from '../../src/net/libp2p-transport.js';
import { serverNameToPeerId } from '../../src/net/peer-id.js';
import type { TestPeer } from './helpers.js';
import { connect, eventually, startPeer } from './helpers.js';

const ROOM = '!gossip:example';
const OTHER = '!elsewhere:example';
let a: TestPeer;
let b: TestPeer;
let c: TestPeer;

/** Waits until `peer`'s gossipsub knows that every one of `others` is subscribed to the room's topic. */
async function seesSubscribers(peer: TestPeer, roomId: string, others: TestPeer[]): Promise<void> {
  await eventually(
    () => {
      const subs = peer.network.node.services.pubsub.getSubscribers(roomTopic(roomId)).map(String);
      return others.every((o) => subs.includes(serverNameToPeerId(o.serverName)!.toString()));
    },
    10_000,
    'subscriptions to propagate',
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  [a, b, c] = await Promise.all([startPeer(), startPeer({ maxGossipBytes: 2048 }), startPeer()]);
  await Promise.all([connect(a, b), connect(a, c), connect(b, c)]);
  a.network.transport.subscribe(ROOM);
  b.network.transport.subscribe(ROOM);
  c.network.transport.subscribe(OTHER);
  await seesSubscribers(a, ROOM, [b]);
  await seesSubscribers(a, OTHER, [c]);
});

afterAll(async () => {
  await Promise.all([a.stop(), b.stop(), c.stop()]);
});

describe('gossip', () => {
  test('reaches the subscribed peer with the publisher (who handed it over) as `from`, and not the peer subscribed elsewhere', async () => {
    const txn = { origin: a.serverName, origin_server_ts: 1, pdus: [], edus: [{ edu_type: 'm.typing', content: {} }] };
    const sent = await a.network.transport.publishTo(ROOM, txn);
    expect(sent).toContain(b.serverName);
    expect(sent).not.toContain(c.serverName);
    const [got] = await b.inbound.waitForGossip(1);
    expect(got).toEqual({ roomId: ROOM, from: a.serverName, message: txn });
    await sleep(300);
    expect(c.inbound.gossip).toEqual([]);
    expect(a.inbound.gossip).toEqual([]);
  });

  test('a peer that subscribes later gets later messages; one that unsubscribes stops getting them', async () => {
    c.network.transport.subscribe(ROOM);
    await seesSubscribers(a, ROOM, [b, c]);
    b.network.transport.unsubscribe(ROOM);
    await eventually(
      () => !a.network.node.services.pubsub.getSubscribers(roomTopic(ROOM)).map(String).includes(serverNameToPeerId(b.serverName)!.toString()),
      10_000,
      'b to unsubscribe',
    );
    const before = b.inbound.gossip.length;
    await a.network.transport.publish(ROOM, { n: 2 });
    // (C may also be offered A's earlier message through gossipsub's IHAVE: that is allowed.)
    await eventually(() => c.inbound.gossip.some((g) => (g.message as { n?: number }).n === 2), 10_000, 'c to get the message');
    expect(c.inbound.gossip.find((g) => (g.message as { n?: number }).n === 2)).toEqual({ roomId: ROOM, from: a.serverName, message: { n: 2 } });
    await sleep(300);
    expect(b.inbound.gossip.length).toBe(before);
    b.network.transport.subscribe(ROOM);
    await seesSubscribers(a, ROOM, [b, c]);
  });

  test('malformed and oversize messages are dropped; good ones after them still arrive', async () => {
    // A room of its own: gossipsub may still hand B earlier messages of ROOM (IHAVE/IWANT after it resubscribed).
    const room = '!hostile:example';
    a.network.transport.subscribe(room);
    b.network.transport.subscribe(room);
    await seesSubscribers(a, room, [b]);
    const pubsub = a.network.node.services.pubsub;
    const topic = roomTopic(room);
    const enc = new TextEncoder();
    const before = b.inbound.gossip.length;
    // Bypass the transport's own checks: what a hostile or buggy peer could publish.
    await pubsub.publish(topic, enc.encode('not json'));
    await pubsub.publish(topic, enc.encode('[1,2,3]'));
    await pubsub.publish(topic, new Uint8Array([0xff, 0xfe, 0x00]));
    await pubsub.publish(topic, enc.encode(JSON.stringify({ big: 'x'.repeat(4096) })));
    await a.network.transport.publish(room, { n: 3 });
    await eventually(() => b.inbound.gossip.some((g) => g.roomId === room), 10_000, 'the good message');
    await sleep(300);
    expect(b.inbound.gossip.slice(before).filter((g) => g.roomId === room)).toEqual([{ roomId: room, from: a.serverName, message: { n: 3 } }]);
  });

  test('publishing a message over the gossip limit is refused', async () => {
    await expect(b.network.transport.publish(ROOM, { big: 'x'.repeat(4096) })).rejects.toBeInstanceOf(RangeError);
  });

  test('gossip goes both ways, and a room with nobody else in it publishes without error', async () => {
    const before = a.inbound.gossip.length;
    await b.network.transport.publish(ROOM, { from: 'b' });
    const got = await a.inbound.waitForGossip(before + 1);
    expect(got.at(-1)).toEqual({ roomId: ROOM, from: b.serverName, message: { from: 'b' } });
    await expect(a.network.transport.publishTo('!lonely:example', { n: 1 })).resolves.toEqual([]);
  });
});
