/**
 * The network host: runs in the one tab elected leader (leader.ts) and carries the service worker's federation over
 * libp2p. It attaches to the worker over a dedicated MessagePort (protocol.ts), gets the homeserver's seed from it,
 * builds the page's libp2p node (node.ts) with the platform-neutral federation transport (src/net), and then:
 * - forwards the worker's `request`/`publish`/`subscribe` to the transport (a publish answers with the servers
 *   gossipsub reached, so the worker sends `/send` only to the others);
 * - hands inbound requests, gossip and connected peers to the worker, with the origin taken from the authenticated
 *   libp2p connection (Libp2pTransport does that), never from anything the page's fetches could control;
 * - keeps the worker alive with a message every ~10 s (it is stopped ~30 s after its last event), and re-attaches
 *   when the worker restarted or a new version took control;
 * - connects to the bootstrap relays (`GET /_hearth/bootstrap` on the origin that served the app) and keeps room
 *   peers connected with backoff (src/net/reconnect.ts); remembers peers in its own IndexedDB database;
 * - reaches other browsers through the relays: WebRTC signalled over a relay (a direct link), else a relayed link.
 */
import type { PeerId } from '@libp2p/interface';
import { multiaddr } from '@multiformats/multiaddr';
import type { JsonObject } from '../../core/json.js';
import type { FederationInbound, FederationRequest, FederationResponse } from '../../federation/transport.js';
import { UnreachableError } from '../../federation/transport.js';
import type { HearthLibp2p } from '../../net/libp2p-transport.js';
import { Libp2pTransport } from '../../net/libp2p-transport.js';
import { PeerBook } from '../../net/peer-book.js';
import { peerIdToServerName, serverNameToPeerId } from '../../net/peer-id.js';
import { Reconnector } from '../../net/reconnect.js';
import type { Logger } from '../../services/context.js';
import { silentLogger } from '../../services/context.js';
import { openIdbKv } from '../../storage/idb-kv.js';
import type { Kv } from '../../storage/kv.js';
import { STORES } from '../../storage/schema.js';
import { createBrowserLibp2p } from './node.js';
import type { NetworkStatusMessage, PeerStatus, SerializedError, ToLeader, ToWorker } from './protocol.js';
import { HELLO, KEEPALIVE, KEEPALIVE_MS, STATUS_CHANNEL, WANTED } from './protocol.js';

/** The network's own database in this origin (the homeserver's belongs to the service worker). */
export const NETWORK_DB = 'hearth-network';
const BOOTSTRAP_CACHE_KEY = 'hearth:bootstrap';
const RELAY_HOP = '/libp2p/circuit/relay/0.2.0/hop';

export interface NetworkHostInit {
  /** Where the Node peer lists its multiaddrs (default `/_hearth/bootstrap` on this origin); false: none. */
  bootstrapUrl?: string | false;
  /** Extra bootstrap multiaddrs (with /p2p/<peer id>). */
  bootstrap?: readonly string[];
  iceServers?: RTCIceServer[];
  logger?: Logger;
  /** Time allowed for the worker to attach and hand over the identity (default 30 s). */
  attachTimeoutMs?: number;
  /** Time allowed for the worker to answer an inbound request (default 30 s). */
  inboundTimeoutMs?: number;
  /** Time allowed for a WebRTC dial through a relay before a relayed link is used instead (default 10 s). */
  webrtcDialTimeoutMs?: number;
}

function serialize(e: unknown): SerializedError {
  return { name: (e as Error)?.name ?? 'Error', message: (e as Error)?.message ?? String(e) };
}

/**
 * The transport of a connection by its remote address. A WebRTC link dialled through a relay keeps the relay in its
 * address (`…/p2p-circuit/webrtc/p2p/<peer>`; the answering side sees `/webrtc/p2p/<peer>`), yet carries no relayed
 * byte: `/webrtc` wins over `/p2p-circuit`.
 */
export function transportOf(addr: string): string {
  if (/\/webrtc(\/|$)/.test(addr)) return 'webrtc';
  if (addr.includes('/p2p-circuit')) return 'relayed';
  if (addr.includes('/ws')) return 'websockets';
  if (addr.includes('/tcp/')) return 'tcp';
  return 'other';
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });
}

export class NetworkHost {
  private readonly logger: Logger;
  private port: MessagePort | undefined;
  private identity: { seed: Uint8Array; serverName: string } | undefined;
  private identityWaiters: Array<() => void> = [];
  private node: HearthLibp2p | undefined;
  private transport: Libp2pTransport | undefined;
  private reconnector: Reconnector | undefined;
  private peerBook: PeerBook | undefined;
  private kv: Kv | undefined;
  private nextId = 1;
  private readonly inboundPending = new Map<number, (res: FederationResponse) => void>();
  private readonly wantedPending = new Map<number, (servers: string[]) => void>();
  private readonly routes = new Map<string, Promise<void>>();
  private readonly stopping = new AbortController();
  private keepalive: ReturnType<typeof setInterval> | undefined;
  private statusTimer: ReturnType<typeof setInterval> | undefined;
  private readonly statusChannel: BroadcastChannel | undefined;
  private bootstrap: string[] = [];
  private started = false;

  constructor(private readonly init: NetworkHostInit = {}) {
    this.logger = init.logger ?? silentLogger;
    this.statusChannel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(STATUS_CHANNEL) : undefined;
  }

  get serverName(): string | undefined {
    return this.identity?.serverName;
  }

  get libp2p(): HearthLibp2p | undefined {
    return this.node;
  }

  /** Attaches to the worker, starts the node and the reconnector. Rejects if the worker does not attach in time. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const sw = navigator.serviceWorker;
    sw.addEventListener('controllerchange', this.onControllerChange);
    sw.addEventListener('message', this.onWorkerBroadcast);
    this.attach();
    await this.waitForIdentity(this.init.attachTimeoutMs ?? 30_000);
    const { seed, serverName } = this.identity!;
    this.kv = await openIdbKv({ name: NETWORK_DB, stores: [STORES.knownPeers] });
    this.peerBook = new PeerBook(this.kv, { logger: this.logger });
    await this.peerBook.load();
    this.node = await createBrowserLibp2p({ seed, ...(this.init.iceServers ? { iceServers: this.init.iceServers } : {}) });
    this.transport = new Libp2pTransport(this.node, { inbound: this.inbound, peerBook: this.peerBook, logger: this.logger });
    if (this.transport.serverName !== serverName) throw new Error('the libp2p identity does not match the homeserver');
    for (const roomId of this.pendingRooms) this.transport.subscribe(roomId);
    this.pendingRooms.clear();
    await this.transport.start();
    await this.node.start();
    this.node.addEventListener('connection:open', this.onConnectionsChanged);
    this.node.addEventListener('connection:close', this.onConnectionsChanged);
    this.keepalive = setInterval(() => void this.ping(), KEEPALIVE_MS);
    this.statusTimer = setInterval(this.onTick, 5_000);
    void this.startReconnector();
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.stopping.abort();
    navigator.serviceWorker.removeEventListener('controllerchange', this.onControllerChange);
    navigator.serviceWorker.removeEventListener('message', this.onWorkerBroadcast);
    clearInterval(this.keepalive);
    clearInterval(this.statusTimer);
    this.reconnector?.stop();
    await this.transport?.stop().catch(() => undefined);
    await Promise.resolve(this.node?.stop()).catch(() => undefined);
    await this.peerBook?.stop().catch(() => undefined);
    await Promise.resolve(this.kv?.close()).catch(() => undefined);
    if (this.port) this.port.close();
    this.port = undefined;
    this.publishStatus();
    this.statusChannel?.close();
  }

  // ---- the worker side

  /** Offers a fresh port to the worker that controls this page (the old port, if any, is dropped). */
  private attach(): void {
    const controller = navigator.serviceWorker.controller;
    if (!controller) return;
    this.port?.close();
    const ch = new MessageChannel();
    this.port = ch.port1;
    const port = ch.port1;
    port.onmessage = (e: MessageEvent) => void this.onWorkerMessage(port, e.data as ToLeader);
    controller.postMessage({ type: HELLO }, [ch.port2]);
  }

  private waitForIdentity(ms: number): Promise<void> {
    if (this.identity) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`the service worker did not attach the network within ${ms} ms`)), ms);
      this.identityWaiters.push(() => (clearTimeout(t), resolve()));
    });
  }

  private readonly onControllerChange = (): void => this.attach();

  private readonly onWorkerBroadcast = (e: MessageEvent): void => {
    if ((e.data as { type?: string } | null)?.type === WANTED) this.attach();
  };

  /** Keeps the worker alive; re-attaches when it answers that it lost our port (it was restarted) or does not answer. */
  private async ping(): Promise<void> {
    const controller = navigator.serviceWorker.controller;
    if (!controller) return;
    const ch = new MessageChannel();
    const answer = new Promise<boolean | undefined>((resolve) => {
      const t = setTimeout(() => resolve(undefined), 5_000);
      ch.port1.onmessage = (e: MessageEvent) => (clearTimeout(t), resolve((e.data as { attached?: boolean }).attached));
    });
    controller.postMessage({ type: KEEPALIVE }, [ch.port2]);
    const attached = await answer;
    ch.port1.close();
    if (attached !== true && this.started) this.attach();
  }

  private readonly pendingRooms = new Set<string>();

  private post(msg: ToWorker, port = this.port): void {
    port?.postMessage(msg);
  }

  private async onWorkerMessage(port: MessagePort, msg: ToLeader): Promise<void> {
    if (port !== this.port || msg === null || typeof msg !== 'object') return;
    switch (msg.t) {
      case 'identity': {
        if (this.identity && this.identity.serverName !== msg.serverName) {
          // A different homeserver (its database was reset): this node's identity is stale. Start over.
          this.logger.warn('network: the homeserver identity changed; reloading the network');
          location.reload();
          return;
        }
        this.identity = { seed: msg.seed, serverName: msg.serverName };
        for (const roomId of msg.rooms) this.subscribe(roomId);
        for (const w of this.identityWaiters.splice(0)) w();
        this.publishStatus();
        return;
      }
      case 'request': {
        const { id, destination, req, timeoutMs } = msg;
        try {
          const res = await this.request(destination, req, timeoutMs);
          this.post({ t: 'response', id, res }, port);
        } catch (e) {
          this.post({ t: 'response', id, error: serialize(e) }, port);
        }
        return;
      }
      case 'publish': {
        try {
          if (!this.transport) throw new UnreachableError(msg.roomId, 'the network is starting');
          // The recipients let the worker's sender skip `/send` to servers the gossip already reached.
          const reached = await this.transport.publishTo(msg.roomId, msg.message);
          this.post({ t: 'response', id: msg.id, reached }, port);
        } catch (e) {
          this.post({ t: 'response', id: msg.id, error: serialize(e) }, port);
        }
        return;
      }
      case 'subscribe':
        this.subscribe(msg.roomId);
        return;
      case 'unsubscribe':
        this.pendingRooms.delete(msg.roomId);
        this.transport?.unsubscribe(msg.roomId);
        return;
      case 'inbound-response':
        this.inboundPending.get(msg.id)?.(msg.res);
        return;
      case 'wanted-servers':
        this.wantedPending.get(msg.id)?.(msg.servers);
        return;
    }
  }

  private subscribe(roomId: string): void {
    if (typeof roomId !== 'string') return;
    if (this.transport) this.transport.subscribe(roomId);
    else this.pendingRooms.add(roomId);
  }

  /** What the transport delivers: handed to the worker's homeserver. */
  private readonly inbound: FederationInbound = {
    handleRequest: (origin, req) => this.forwardInbound(origin, req),
    handleGossip: async (roomId: string, from: string, message: JsonObject) => this.post({ t: 'gossip', roomId, from, message }),
    peerConnected: (serverName: string) => {
      this.post({ t: 'peer-connected', serverName });
      this.onConnectionsChanged();
    },
  };

  private forwardInbound(origin: string, req: FederationRequest): Promise<FederationResponse> {
    const unavailable: FederationResponse = { status: 503, body: { errcode: 'M_UNKNOWN', error: 'The homeserver is not answering' } };
    const port = this.port;
    if (!port) return Promise.resolve(unavailable);
    const id = this.nextId++;
    return new Promise<FederationResponse>((resolve) => {
      const ms = this.init.inboundTimeoutMs ?? 30_000;
      const t = setTimeout(() => {
        this.inboundPending.delete(id);
        resolve(unavailable);
      }, ms);
      this.inboundPending.set(id, (res) => {
        clearTimeout(t);
        this.inboundPending.delete(id);
        resolve(res);
      });
      this.post({ t: 'inbound', id, origin, req }, port);
    });
  }

  /** The servers the homeserver shares rooms with (asked from the worker, which has the database). */
  private wanted(): Promise<string[]> {
    const id = this.nextId++;
    return new Promise<string[]>((resolve) => {
      const t = setTimeout(() => (this.wantedPending.delete(id), resolve([])), 10_000);
      this.wantedPending.set(id, (servers) => {
        clearTimeout(t);
        this.wantedPending.delete(id);
        resolve(Array.isArray(servers) ? servers : []);
      });
      this.post({ t: 'wanted', id });
    });
  }

  // ---- requests and routes

  /** A federation request to `destination` (also used by tests and the status page). */
  async request(destination: string, req: FederationRequest, timeoutMs?: number): Promise<FederationResponse> {
    if (!this.transport) throw new UnreachableError(destination, 'the network is starting');
    await this.route(destination);
    return this.transport.request(destination, req, timeoutMs !== undefined ? { timeoutMs } : {});
  }

  /**
   * Makes sure there is a connection to `serverName` when it can be reached through a relay we are connected to:
   * first WebRTC signalled through the relay (a direct browser↔browser link), else the relayed link itself. Servers
   * reachable directly (Node peers) are dialled by the transport from their known addresses.
   */
  route(serverName: string): Promise<void> {
    const node = this.node;
    const peerId = serverNameToPeerId(serverName);
    if (!node || !peerId || serverName === this.serverName) return Promise.resolve();
    if (node.getConnections(peerId).some((c) => c.status === 'open')) return Promise.resolve();
    let p = this.routes.get(serverName);
    if (!p) {
      p = this.dialThroughRelays(node, peerId).finally(() => this.routes.delete(serverName));
      this.routes.set(serverName, p);
    }
    return p;
  }

  private async relays(node: HearthLibp2p): Promise<string[]> {
    const out: string[] = [];
    for (const c of node.getConnections()) {
      if (c.status !== 'open' || c.limits !== undefined) continue;
      const addr = c.remoteAddr.toString();
      if (addr.includes('/p2p-circuit') || addr.includes('/webrtc')) continue;
      const peer = await node.peerStore.get(c.remotePeer).catch(() => undefined);
      if (!peer?.protocols.includes(RELAY_HOP)) continue;
      const suffix = `/p2p/${c.remotePeer.toString()}`;
      out.push(addr.endsWith(suffix) ? addr : addr + suffix);
    }
    return [...new Set(out)];
  }

  /** Dials the peer with WebRTC signalled through each relay in turn; true once connected. */
  private async dialWebRtc(node: HearthLibp2p, peerId: PeerId, relays: readonly string[]): Promise<boolean> {
    const target = peerId.toString();
    const timeout = this.init.webrtcDialTimeoutMs ?? 10_000;
    for (const relay of relays) {
      try {
        await node.dial(multiaddr(`${relay}/p2p-circuit/webrtc/p2p/${target}`), { signal: AbortSignal.timeout(timeout) });
        return true;
      } catch (e) {
        this.logger.debug(`network: no WebRTC link to ${target} through ${relay}`, (e as Error).message);
      }
    }
    return false;
  }

  private async dialThroughRelays(node: HearthLibp2p, peerId: PeerId): Promise<void> {
    const relays = await this.relays(node);
    if (relays.length === 0) return;
    const target = peerId.toString();
    const timeout = this.init.webrtcDialTimeoutMs ?? 10_000;
    if (await this.dialWebRtc(node, peerId, relays)) return;
    for (const relay of relays) {
      try {
        await node.dial(multiaddr(`${relay}/p2p-circuit/p2p/${target}`), { signal: AbortSignal.timeout(timeout) });
        return;
      } catch (e) {
        this.logger.debug(`network: no relayed link to ${target} through ${relay}`, (e as Error).message);
      }
    }
  }

  /** Peers → when we last tried to replace their relayed link with WebRTC. */
  private readonly upgradeTried = new Map<string, number>();

  /**
   * Replaces relayed links to other Hearth servers with direct WebRTC ones (a link made before the other side had
   * its relay reservation, or when WebRTC failed once, ends up relayed), then closes the relayed link, so
   * federation moves to the direct link and survives the relay going away. One side tries (the smaller peer ID),
   * at most every 15 s per peer.
   */
  private upgradeRelayed(): void {
    const node = this.node;
    if (!node || node.status !== 'started') return;
    const links = new Map<string, { peerId: PeerId; relayed: boolean; direct: boolean }>();
    for (const c of node.getConnections()) {
      if (c.status !== 'open' || peerIdToServerName(c.remotePeer) === undefined) continue;
      const id = c.remotePeer.toString();
      const l = links.get(id) ?? { peerId: c.remotePeer, relayed: false, direct: false };
      if (transportOf(c.remoteAddr.toString()) === 'relayed') l.relayed = true;
      else l.direct = true;
      links.set(id, l);
    }
    const self = node.peerId.toString();
    const now = Date.now();
    for (const [id, l] of links) {
      if (!l.relayed || self > id || now - (this.upgradeTried.get(id) ?? 0) < 15_000) continue;
      this.upgradeTried.set(id, now);
      void (async () => {
        if (!l.direct && !(await this.dialWebRtc(node, l.peerId, await this.relays(node)))) return;
        for (const c of node.getConnections(l.peerId)) {
          if (transportOf(c.remoteAddr.toString()) === 'relayed') await c.close().catch(() => c.abort(new Error('replaced by a direct link')));
        }
        this.onConnectionsChanged();
      })().catch((e: unknown) => this.logger.debug(`network: could not upgrade the link to ${id}`, (e as Error).message));
    }
  }

  // ---- bootstrap and reconnection

  private async startReconnector(): Promise<void> {
    const bootstrap = await this.loadBootstrap();
    if (!this.started || !this.node || !this.transport) return;
    this.bootstrap = bootstrap;
    const transport = this.transport;
    this.reconnector = new Reconnector(this.node, {
      connectServer: async (name, signal) => {
        await this.route(name);
        signal.throwIfAborted();
        await transport.connect(name, { signal });
      },
      wanted: () => this.wanted(),
      bootstrap,
      logger: this.logger,
    });
    this.reconnector.start();
  }

  /** The bootstrap relays: from the origin that served the app (retried with backoff), else the last ones known. */
  private async loadBootstrap(): Promise<string[]> {
    const extra = [...(this.init.bootstrap ?? [])];
    if (this.init.bootstrapUrl === false) return extra;
    const url = this.init.bootstrapUrl ?? '/_hearth/bootstrap';
    let cached: string[] = [];
    try {
      cached = JSON.parse(localStorage.getItem(BOOTSTRAP_CACHE_KEY) ?? '[]') as string[];
    } catch {
      // nothing cached
    }
    for (let attempt = 0; !this.stopping.signal.aborted; attempt++) {
      try {
        const res = await fetch(url, { signal: this.stopping.signal, cache: 'no-store' });
        if (res.ok) {
          const body = (await res.json()) as { multiaddrs?: unknown };
          // A page can dial WebSockets (and WebRTC) only: no raw TCP.
          const addrs = (Array.isArray(body.multiaddrs) ? body.multiaddrs : []).filter(
            (a): a is string => typeof a === 'string' && /\/wss?\//.test(`${a}/`) && a.includes('/p2p/'),
          );
          localStorage.setItem(BOOTSTRAP_CACHE_KEY, JSON.stringify(addrs));
          return [...new Set([...addrs, ...extra])];
        }
        if (res.status === 404) break; // the origin is not a Hearth peer (a static host): use what we know
      } catch {
        // offline, or the peer is restarting
      }
      if (attempt === 0 && cached.length > 0) {
        // Do not wait for the origin to come back to use the relays we knew.
        return [...new Set([...cached, ...extra])];
      }
      await sleep(Math.min(30_000, 1000 * 2 ** attempt), this.stopping.signal);
    }
    return [...new Set([...cached, ...extra])];
  }

  // ---- status

  /** The connected peers (one entry per peer, its best connection). */
  peers(): PeerStatus[] {
    const node = this.node;
    if (!node || node.status !== 'started') return [];
    const byPeer = new Map<string, PeerStatus>();
    for (const c of node.getConnections()) {
      if (c.status !== 'open') continue;
      const addr = c.remoteAddr.toString();
      const name = peerIdToServerName(c.remotePeer);
      const entry: PeerStatus = {
        id: name ?? c.remotePeer.toString(),
        ...(name !== undefined ? { serverName: name } : {}),
        transport: transportOf(addr),
        remoteAddr: addr,
      };
      const old = byPeer.get(entry.id);
      if (!old || (old.transport === 'relayed' && entry.transport !== 'relayed')) byPeer.set(entry.id, entry);
    }
    return [...byPeer.values()];
  }

  /** Bootstrap multiaddrs in use. */
  bootstrapAddrs(): string[] {
    return [...this.bootstrap];
  }

  private readonly onTick = (): void => {
    this.upgradeRelayed();
    this.onConnectionsChanged();
  };

  private readonly onConnectionsChanged = (): void => {
    this.post({ t: 'servers', servers: this.transport?.connectedServers() ?? [] });
    this.publishStatus();
  };

  private publishStatus(): void {
    const msg: NetworkStatusMessage = { type: 'status', peers: this.started ? this.peers() : [], ...(this.serverName ? { serverName: this.serverName } : {}) };
    try {
      this.statusChannel?.postMessage(msg);
    } catch {
      // closed
    }
    statusListeners.forEach((l) => l(msg));
  }
}

/** Listeners in this tab (the BroadcastChannel does not deliver to its own sender). */
export const statusListeners = new Set<(msg: NetworkStatusMessage) => void>();
