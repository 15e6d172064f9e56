/**
 * The Node peer as a circuit relay v2 server: a node that cannot be dialled (it listens only through the relay, as a
 * browser does) takes a reservation, and another peer reaches it through the relay and exchanges federation
 * requests and gossip on the relayed connection.
 */
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { gossipsub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import { noise } from '@libp2p/noise';
import { tcp } from '@libp2p/tcp';
import { yamux } from '@libp2p/yamux';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { afterAll, expect, test } from 'vitest';
import { generateSeed } from '../../src/core/crypto/ed25519.js';
import { serverIdentityFromSeed } from '../../src/core/server-key.js';
import type { HearthLibp2p } from '../../src/net/libp2p-transport.js';
import { HEARTH_GOSSIPSUB } from '../../src/net/libp2p-transport.js';
import type { Network } from '../../src/net/network.js';
import { createNetwork } from '../../src/net/network.js';
import { libp2pKeyFromSeed } from '../../src/net/peer-id.js';
import { openMemoryKv } from '../../src/storage/memory-kv.js';
import { HOMESERVER_STORES } from '../../src/storage/schema.js';
import { RecordingInbound, eventually, startPeer } from './helpers.js';

let hidden: Network | undefined;
afterAll(async () => {
  await hidden?.stop();
});

/** A node with no listener of its own: reachable only through a relay reservation, like a browser tab. */
async function relayOnlyNode(inbound: RecordingInbound, seed: Uint8Array): Promise<Network> {
  const node = await createLibp2p({
    start: false,
    privateKey: await libp2pKeyFromSeed(seed),
    addresses: { listen: ['/p2p-circuit'] },
    transports: [tcp(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({ ...HEARTH_GOSSIPSUB }),
    },
  });
  const kv = await openMemoryKv({ name: 'relay-only', stores: HOMESERVER_STORES });
  return createNetwork(node as unknown as HearthLibp2p, { kv, inbound });
}

test('a relay-only node is reached through the relay server, requests and gossip work on the relayed link', async () => {
  const relay = await startPeer({ relay: true });
  const dialer = await startPeer();
  const inbound = new RecordingInbound();
  const seed = generateSeed();
  const hiddenName = serverIdentityFromSeed(seed).serverName;
  hidden = await relayOnlyNode(inbound, seed);
  await hidden.start();
  await hidden.node.dial(multiaddr(relay.tcpAddr()));
  await eventually(() => hidden!.multiaddrs().some((a) => a.includes('/p2p-circuit')), 15_000, 'a relay reservation');
  const circuit = hidden.multiaddrs().find((a) => a.includes('/p2p-circuit'))!;
  expect(circuit.startsWith(relay.tcpAddr())).toBe(true);

  await dialer.network.node.dial(multiaddr(circuit));
  const res = await dialer.network.transport.request(hiddenName, { method: 'GET', path: '/through-relay' });
  expect(res).toEqual({ status: 200, body: { origin: dialer.serverName, method: 'GET', path: '/through-relay' } });
  const conn = dialer.network.transport.status().connections.find((c) => c.serverName === hiddenName);
  expect(conn?.transport).toBe('relayed');

  // And back the other way over the same relayed connection.
  const back = await hidden.transport.request(dialer.serverName, { method: 'GET', path: '/back' });
  expect(back.body).toMatchObject({ origin: hiddenName });

  hidden.transport.subscribe('!relayed:x');
  dialer.network.transport.subscribe('!relayed:x');
  await eventually(
    () => dialer.network.node.services.pubsub.getSubscribers('/hearth/room/!relayed:x').some((p) => p.toString() === hidden!.node.peerId.toString()),
    10_000,
    'subscription over the relay',
  );
  await dialer.network.transport.publish('!relayed:x', { hello: 'relay' });
  const [g] = await inbound.waitForGossip(1);
  expect(g).toEqual({ roomId: '!relayed:x', from: dialer.serverName, message: { hello: 'relay' } });
});
