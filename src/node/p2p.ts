/**
 * The Node peer's libp2p node: TCP and WebSockets listeners, Noise, Yamux, identify, ping, gossipsub, a circuit
 * relay v2 server (so browsers, which cannot listen, can reach each other and us through it), bootstrap peers and
 * mDNS on the LAN. Its key is the homeserver's ed25519 seed, so its peer ID is the server name (src/net/peer-id.ts).
 * Versions and measurements: shared/PLATFORM-NOTES.md. Needs the polyfills (src/node/polyfills.ts) on Node 20.
 */
import { bootstrap } from '@libp2p/bootstrap';
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { gossipsub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import { mdns } from '@libp2p/mdns';
import { noise } from '@libp2p/noise';
import { ping } from '@libp2p/ping';
import { tcp } from '@libp2p/tcp';
import { webSockets } from '@libp2p/websockets';
import { yamux } from '@libp2p/yamux';
import { createLibp2p } from 'libp2p';
import type { Libp2pOptions } from 'libp2p';
import { batchedTraceSink, setFederationTrace } from '../federation/trace.js';
import type { HearthLibp2p } from '../net/libp2p-transport.js';
import { coalescedWrites, HEARTH_GOSSIPSUB, lazyWindowUpdates } from '../net/libp2p-transport.js';
import type { Network, NetworkInit } from '../net/network.js';
import { createNetwork } from '../net/network.js';
import { libp2pKeyFromSeed } from '../net/peer-id.js';

export interface NodeLibp2pInit {
  /** The homeserver's 32-byte ed25519 seed. */
  seed: Uint8Array;
  /** Address to listen on (default 127.0.0.1; 0.0.0.0 or :: for every interface). */
  host?: string;
  /** TCP port (default 0: a free one). */
  tcpPort?: number;
  /** WebSockets port (default 0: a free one); false for no WebSockets listener. */
  wsPort?: number | false;
  /** Bootstrap multiaddrs (with /p2p/<peer id>). */
  bootstrap?: readonly string[];
  /** Discover peers on the LAN with mDNS (default false; `hearth serve` turns it on off loopback). */
  mdns?: boolean;
  /** Serve circuit relay v2 (default true). */
  relay?: boolean;
  /** Addresses to announce instead of the listening ones (e.g. a public address behind NAT). */
  announce?: readonly string[];
}

/** The mDNS service name: only Hearth peers answer it, so we never dial unrelated libp2p nodes on the LAN. */
export const MDNS_SERVICE_TAG = 'hearth-p2p.local';

const LOOPBACK_NETS = ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128'];

function ipPrefix(host: string): string {
  const h = host === 'localhost' ? '127.0.0.1' : host.replace(/^\[|\]$/g, '');
  return h.includes(':') ? `/ip6/${h}` : `/ip4/${h}`;
}

/** Builds (does not start) the libp2p node. */
export async function createNodeLibp2p(init: NodeLibp2pInit): Promise<HearthLibp2p> {
  const ip = ipPrefix(init.host ?? '127.0.0.1');
  const listen = [`${ip}/tcp/${init.tcpPort ?? 0}`];
  if (init.wsPort !== false) listen.push(`${ip}/tcp/${init.wsPort ?? 0}/ws`);
  const peerDiscovery: NonNullable<Libp2pOptions['peerDiscovery']> = [];
  if (init.bootstrap && init.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: [...init.bootstrap] }));
  if (init.mdns) peerDiscovery.push(mdns({ serviceTag: MDNS_SERVICE_TAG }));
  const relay = init.relay !== false;
  return createLibp2p({
    start: false,
    privateKey: await libp2pKeyFromSeed(init.seed),
    addresses: { listen, ...(init.announce ? { announce: [...init.announce] } : {}) },
    connectionManager: {
      // libp2p refuses a host that opens more than 5 connections a second. Connections from this machine are not
      // that flood: a reverse proxy carrying many browsers' WebSockets, or many peers in one test process.
      allow: LOOPBACK_NETS,
    },
    // libp2p pings every connection every 10 s (~5 % CPU in a 20-peer mesh); a closed socket is noticed at once
    // anyway, so the ping only has to catch silent deaths, and 30 s is soon enough for that.
    connectionMonitor: { pingInterval: 30_000 },
    transports: [tcp(), webSockets(), circuitRelayTransport()],
    // One socket write per noise message (see coalescedWrites).
    connectionEncrypters: [coalescedWrites(noise())],
    // A window update per half window, not per frame received (see lazyWindowUpdates).
    streamMuxers: [lazyWindowUpdates(yamux())],
    peerDiscovery,
    services: {
      identify: identify(),
      ping: ping(),
      // The settings the browser's node shares (unsigned gossip: see HEARTH_GOSSIPSUB).
      pubsub: gossipsub({ ...HEARTH_GOSSIPSUB }),
      ...(relay
        ? {
            relay: circuitRelayServer({
              reservations: {
                maxReservations: 256,
                // Browser↔browser links carry federation over the relay until (or unless) WebRTC connects, so the
                // default 128 KiB / 2 min limits would cut them off.
                applyDefaultLimit: false,
              },
            }),
          }
        : {}),
    },
  }) as unknown as Promise<HearthLibp2p>;
}

export interface NodeNetworkInit extends NodeLibp2pInit, Omit<NetworkInit, 'bootstrap'> {}

/**
 * The Node peer's network: the node above plus the transport, peer book and reconnector (src/net/network.ts).
 * Dials discovered LAN peers, since libp2p only records them.
 */
export async function createNodeNetwork(init: NodeNetworkInit): Promise<Network> {
  // Stage timestamps for bench/federation-sync.ts --trace, one stderr line each; off in normal runs.
  if (process.env.HEARTH_FEDERATION_TRACE) {
    setFederationTrace(batchedTraceSink((text) => process.stderr.write(text)));
  }
  const node = await createNodeLibp2p(init);
  const network = createNetwork(node, { ...init, bootstrap: init.bootstrap ?? [] });
  if (init.mdns) {
    node.addEventListener('peer:discovery', (ev) => {
      const { id, multiaddrs } = ev.detail;
      if (node.getConnections(id).length > 0 || multiaddrs.length === 0) return;
      node.dial(id).catch((e: unknown) => init.logger?.debug(`could not dial LAN peer ${id.toString()}`, (e as Error).message));
    });
  }
  return network;
}
