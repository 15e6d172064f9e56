/**
 * Unsigned room gossip (HEARTH_GOSSIPSUB: StrictNoSign, message ID = SHA-256 of the data) between three nodes in a
 * line A — B — C: a message A publishes reaches C through B with B, the Noise-authenticated peer that handed it
 * over, as `from` (never the origin the message names), unless it carries EDUs (those are not forwarded); once A
 * and C are linked too, the copies arriving by two paths are delivered once.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { roomTopic } from '../../src/net/libp2p-transport.js';
import { serverNameToPeerId } from '../../src/net/peer-id.js';
import type { TestPeer } from './helpers.js';
import { connect, eventually, startPeer } from './helpers.js';

const ROOM = '!relay:example';
let a: TestPeer;
let b: TestPeer;
let c: TestPeer;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function seesSubscribers(peer: TestPeer, others: TestPeer[]): Promise<void> {
  await eventually(
    () => {
      const subs = peer.network.node.services.pubsub.getSubscribers(roomTopic(ROOM)).map(String);
      return others.every((o) => subs.includes(serverNameToPeerId(o.serverName)!.toString()));
    },
    10_000,
    'subscriptions to propagate',
  );
}

/** Waits until gossipsub has put the two peers in each other's mesh for the room, so forwarding happens. */
async function meshed(peer: TestPeer, other: TestPeer): Promise<void> {
  const id = serverNameToPeerId(other.serverName)!.toString();
  // getMeshPeers is on gossipsub's class, not on the interface libp2p's services are typed with.
  const pubsub = peer.network.node.services.pubsub as unknown as { getMeshPeers(topic: string): string[] };
  await eventually(() => pubsub.getMeshPeers(roomTopic(ROOM)).includes(id), 15_000, 'the mesh');
}

function received(peer: TestPeer, n: number) {
  return peer.inbound.gossip.filter((g) => (g.message as { n?: number }).n === n);
}

beforeAll(async () => {
  [a, b, c] = await Promise.all([startPeer(), startPeer(), startPeer()]);
  await Promise.all([connect(a, b), connect(c, b)]);
  for (const p of [a, b, c]) p.network.transport.subscribe(ROOM);
  await seesSubscribers(a, [b]);
  await seesSubscribers(c, [b]);
  await Promise.all([meshed(b, a), meshed(b, c)]);
});

afterAll(async () => {
  await Promise.all([a.stop(), b.stop(), c.stop()]);
});

test('a relayed message names the relaying peer as `from`, whatever origin it claims', async () => {
  expect(a.network.node.getConnections(serverNameToPeerId(c.serverName)!)).toEqual([]);
  const message = { origin: a.serverName, origin_server_ts: 1, pdus: [], edus: [], n: 1 };
  const sent = await a.network.transport.publishTo(ROOM, message);
  expect(sent).toEqual([b.serverName]);
  await eventually(() => received(c, 1).length > 0, 10_000, 'the relayed message');
  expect(received(b, 1)).toEqual([{ roomId: ROOM, from: a.serverName, message }]);
  expect(received(c, 1)).toEqual([{ roomId: ROOM, from: b.serverName, message }]);
});

test('a message carrying EDUs reaches only the publisher\'s direct peers: relays do not forward it', async () => {
  // Receivers believe EDUs only from their origin, and a relayed copy arriving first would shadow the origin's own.
  const withEdus = { origin: a.serverName, origin_server_ts: 3, pdus: [], edus: [{ edu_type: 'm.typing', content: {} }], n: 3 };
  expect(await a.network.transport.publishTo(ROOM, withEdus)).toEqual([b.serverName]);
  await eventually(() => received(b, 3).length > 0, 10_000, 'the message at B');
  // A message of PDUs alone published after it is relayed to C: by the time it arrives, B has had its chance.
  const pdusOnly = { origin: a.serverName, origin_server_ts: 4, pdus: [], edus: [], n: 4 };
  await a.network.transport.publishTo(ROOM, pdusOnly);
  await eventually(() => received(c, 4).length > 0, 10_000, 'the later message at C');
  await sleep(300);
  expect(received(c, 3)).toEqual([]);
});

test('copies arriving by two paths are delivered once', async () => {
  await connect(a, c);
  await seesSubscribers(a, [b, c]);
  const message = { origin: a.serverName, origin_server_ts: 2, pdus: [], edus: [], n: 2 };
  const sent = await a.network.transport.publishTo(ROOM, message);
  expect(sent.sort()).toEqual([b.serverName, c.serverName].sort());
  await eventually(() => received(b, 2).length > 0 && received(c, 2).length > 0, 10_000, 'the message');
  // B and C each forward it to the other (or announce it); neither delivers it a second time.
  await sleep(500);
  expect(received(b, 2)).toHaveLength(1);
  expect(received(c, 2)).toHaveLength(1);
  expect(a.inbound.gossip).toEqual([]);
});
