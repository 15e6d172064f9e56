/**
 * The homeserver's network, assembled around a started-or-not libp2p node that any platform built (src/node/p2p.ts
 * for Node; the browser's leader tab later): the federation transport, the persisted peer book, and the reconnector
 * that keeps room peers and bootstrap peers connected. `start()`/`stop()` drive the node too.
 */
import type { FederationInbound } from '../federation/transport.js';
import type { Clock, Logger } from '../services/context.js';
import { silentLogger } from '../services/context.js';
import type { Kv } from '../storage/kv.js';
import type { HearthLibp2p, Libp2pTransportInit } from './libp2p-transport.js';
import { Libp2pTransport } from './libp2p-transport.js';
import { PeerBook } from './peer-book.js';
import { Reconnector } from './reconnect.js';
import { sharedRoomServers } from './room-peers.js';

export interface NetworkInit extends Omit<Libp2pTransportInit, 'peerBook' | 'logger' | 'inbound'> {
  /** The homeserver's storage: the peer book lives there, and the servers we share rooms with are read from it. */
  kv: Kv;
  inbound?: FederationInbound;
  logger?: Logger;
  clock?: Clock;
  /** Bootstrap multiaddrs (with /p2p/<peer id>), kept connected like room peers. */
  bootstrap?: readonly string[];
  /** Reconnect timing (see reconnect.ts); tests shorten it. */
  reconnect?: { baseDelayMs?: number; maxDelayMs?: number; refreshMs?: number };
  /** Servers to keep connected besides those we share rooms with (default: none). */
  extraWanted?: () => Promise<readonly string[]>;
}

export interface Network {
  readonly node: HearthLibp2p;
  readonly transport: Libp2pTransport;
  readonly peerBook: PeerBook;
  readonly reconnector: Reconnector;
  /** The node's addresses, each ending in /p2p/<peer id>. */
  multiaddrs(): string[];
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createNetwork(node: HearthLibp2p, init: NetworkInit): Network {
  const logger = init.logger ?? silentLogger;
  const peerBook = new PeerBook(init.kv, { logger, ...(init.clock ? { clock: init.clock } : {}) });
  const transport = new Libp2pTransport(node, { ...init, peerBook, logger });
  const reconnector = new Reconnector(node, {
    connectServer: (name, signal) => transport.connect(name, { signal }),
    wanted: async () => {
      const [rooms, extra] = await Promise.all([sharedRoomServers(init.kv, transport.serverName), init.extraWanted?.() ?? []]);
      return [...new Set([...rooms, ...extra])];
    },
    bootstrap: init.bootstrap ?? [],
    logger,
    ...init.reconnect,
  });
  let started = false;
  return {
    node,
    transport,
    peerBook,
    reconnector,
    multiaddrs: () => node.getMultiaddrs().map(String),
    async start() {
      if (started) return;
      started = true;
      await peerBook.load();
      // Listen for identify before the node starts, so no early connection goes unremembered.
      await transport.start();
      await node.start();
      reconnector.start();
    },
    async stop() {
      if (!started) return;
      started = false;
      reconnector.stop();
      await transport.stop();
      await node.stop();
      await peerBook.stop();
    },
  };
}
