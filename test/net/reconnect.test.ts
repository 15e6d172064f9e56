/**
 * Remembering peers and getting them back: the peer book persists addresses in the homeserver's storage, the servers
 * we share rooms with are read from it, and a peer that restarts is reconnected (by us with backoff, or by itself
 * from its peer book).
 */
import { describe, expect, test } from 'vitest';
import { generateSeed } from '../../src/core/crypto/ed25519.js';
import { serverIdentityFromSeed } from '../../src/core/server-key.js';
import { PeerBook } from '../../src/net/peer-book.js';
import type { KnownPeerRecord } from '../../src/net/peer-book.js';
import { sharedRoomServers } from '../../src/net/room-peers.js';
import type { Kv } from '../../src/storage/kv.js';
import { openMemoryKv } from '../../src/storage/memory-kv.js';
import { HOMESERVER_STORES, STORES } from '../../src/storage/schema.js';
import type { TestPeer } from './helpers.js';
import { connect, eventually, startPeer } from './helpers.js';

let n = 0;
const newKv = () => openMemoryKv({ name: `reconnect-${++n}`, stores: HOMESERVER_STORES });
const newName = () => serverIdentityFromSeed(generateSeed()).serverName;

/** Stores that local user `user` has joined `roomId` together with the given remote members. */
async function shareRoom(kv: Kv, roomId: string, user: string, members: Record<string, string>): Promise<void> {
  await kv.write(async (tx) => {
    await tx.put(STORES.userRooms, [user, roomId], { membership: 'join', eventId: '$x', pos: 1 });
    await tx.put(STORES.roomMembers, [roomId, user], { membership: 'join', eventId: '$x' });
    for (const [member, membership] of Object.entries(members)) await tx.put(STORES.roomMembers, [roomId, member], { membership, eventId: '$y' });
  });
}

const connected = (x: TestPeer, y: TestPeer) => x.network.transport.connectedServers().includes(y.serverName);

describe('servers we share rooms with', () => {
  test('joined members of joined rooms, on Hearth servers other than ours', async () => {
    const kv = await newKv();
    const self = newName();
    const [s1, s2, s3, s4] = [newName(), newName(), newName(), newName()];
    await shareRoom(kv, '!r1:x', `@me:${self}`, { [`@a:${s1}`]: 'join', [`@b:${s2}`]: 'leave', '@c:matrix.org': 'join', [`@me2:${self}`]: 'join' });
    await shareRoom(kv, '!r2:x', `@me:${self}`, { [`@d:${s3}`]: 'join', [`@e:${s1}`]: 'join' });
    // A room our user has left: its members are not kept.
    await kv.write(async (tx) => {
      await tx.put(STORES.userRooms, [`@me:${self}`, '!r3:x'], { membership: 'leave', eventId: '$z', pos: 2 });
      await tx.put(STORES.roomMembers, ['!r3:x', `@f:${s4}`], { membership: 'join', eventId: '$z' });
    });
    expect((await sharedRoomServers(kv, self)).sort()).toEqual([s1, s3].sort());
  });
});

describe('peer book', () => {
  test('merges addresses newest first, and writes a burst of updates in one go', async () => {
    const kv = await newKv();
    const book = new PeerBook(kv, { flushDelayMs: 10_000, maxAddrsPerPeer: 3 });
    await book.load();
    const s = newName();
    book.remember(s, ['/ip4/10.0.0.1/tcp/1', '/ip4/10.0.0.2/tcp/2']);
    book.remember(s, ['/ip4/10.0.0.3/tcp/3', '/ip4/10.0.0.1/tcp/1']);
    expect(await kv.read((tx) => tx.get(STORES.knownPeers, [s]))).toBeUndefined();
    await book.flush();
    const rec = await kv.read((tx) => tx.get<KnownPeerRecord>(STORES.knownPeers, [s]));
    expect(rec?.addrs).toEqual(['/ip4/10.0.0.3/tcp/3', '/ip4/10.0.0.1/tcp/1', '/ip4/10.0.0.2/tcp/2']);
    const again = new PeerBook(kv);
    await again.load();
    expect(again.get(s)?.addrs).toEqual(rec?.addrs);
  });

  test('forgets the least recently seen peers beyond its size', async () => {
    const kv = await newKv();
    let now = 1000;
    const book = new PeerBook(kv, { maxPeers: 2, clock: { now: () => now++ } });
    const [x, y, z] = [newName(), newName(), newName()];
    book.remember(x, ['/ip4/10.0.0.1/tcp/1']);
    book.remember(y, ['/ip4/10.0.0.2/tcp/1']);
    book.remember(z, ['/ip4/10.0.0.3/tcp/1']);
    await book.flush();
    const keys = (await kv.read((tx) => tx.range(STORES.knownPeers))).map(([k]) => k[0]);
    expect(keys.sort()).toEqual([y, z].sort());
  });

  test('a connection is remembered in storage with the address it can be dialled at', async () => {
    const a = await startPeer();
    const b = await startPeer();
    try {
      await connect(a, b);
      const tcp = b.tcpAddr().replace(/\/p2p\/.*$/, '');
      await eventually(async () => {
        const rec = await a.kv.read((tx) => tx.get<KnownPeerRecord>(STORES.knownPeers, [b.serverName]));
        return rec?.addrs.includes(tcp) === true;
      }, 10_000, 'b in a’s peer book');
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});

describe('reconnecting', () => {
  test('a wanted peer that restarts is redialled with backoff', async () => {
    const b = await startPeer();
    const a = await startPeer({ extraWanted: async () => [b.serverName] });
    try {
      // A dials B by itself (B is wanted; its address is in A's peer store once we tell it once).
      await connect(a, b);
      await eventually(() => connected(a, b), 10_000, 'first connection');
      await b.restart();
      // B does not want A, so only A's reconnector can bring the link back.
      await eventually(() => connected(a, b) && connected(b, a), 15_000, 'reconnection');
      expect((await a.network.transport.request(b.serverName, { method: 'GET', path: '/after-restart' })).status).toBe(200);
      expect(a.inbound.connected.filter((s) => s === b.serverName).length).toBeGreaterThanOrEqual(2);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  test('a restarted peer on a new port dials the peers it shares rooms with from its peer book', async () => {
    const a = await startPeer();
    const b = await startPeer();
    try {
      await shareRoom(b.kv, '!shared:x', `@bob:${b.serverName}`, { [`@alice:${a.serverName}`]: 'join' });
      await connect(b, a);
      await eventually(async () => (await b.kv.read((tx) => tx.get(STORES.knownPeers, [a.serverName]))) !== undefined, 10_000, 'a in b’s peer book');
      await b.stop();
      await eventually(() => !connected(a, b), 10_000, 'a to notice');
      await b.restart({ newPort: true });
      await eventually(() => connected(a, b) && connected(b, a), 15_000, 'b to come back');
      expect((await a.network.transport.request(b.serverName, { method: 'GET', path: '/x' })).body).toMatchObject({ origin: a.serverName });
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  test('bootstrap peers are dialled and kept', async () => {
    const a = await startPeer();
    const b = await startPeer({ bootstrap: [a.tcpAddr()] });
    try {
      await eventually(() => connected(b, a), 10_000, 'bootstrap connection');
      expect(b.network.reconnector.wantedPeers()).toContain(a.network.node.peerId.toString());
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
