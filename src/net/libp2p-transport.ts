/**
 * The federation transport over libp2p (the FederationTransport contract of src/federation/transport.ts), for any
 * libp2p node that has gossipsub as its `pubsub` service: the Node peer (src/node/p2p.ts) and, later, the browser's
 * leader tab. Platform-neutral: nothing here imports Node built-ins or the DOM.
 *
 * - Requests: protocol `/hearth/federation/1`, one long-lived stream per peer carrying requests in both directions
 *   (rpc-channel.ts, framing.ts). The caller's server name is taken from the Noise-authenticated connection
 *   (`connection.remotePeer`), never from a frame.
 * - Gossip: gossipsub topic `/hearth/room/<roomId>` per room, JSON messages, unsigned (`StrictNoSign`, message ID =
 *   SHA-256 of the bytes; every Hearth node must use HEARTH_GOSSIPSUB or they drop each other's messages). The
 *   `from` passed to `handleGossip` is the peer that handed us the message (the propagation source, authenticated by
 *   Noise), which need not be its origin: src/federation trusts a relayed message only for what its own signatures
 *   prove (PDUs). Decision record: docs/decisions/federation.md.
 * - Known peers: addresses learnt through identify go to the peer book (persisted), and are used to dial a server
 *   the node has no address for in its own (in-memory) peer store.
 */
import type { GossipSub, GossipsubMessage, GossipsubOpts, Message, TopicValidatorFn } from '@libp2p/gossipsub';
import { StrictNoSign, TopicValidatorResult } from '@libp2p/gossipsub';
import type {
  Connection,
  ConnectionEncrypter,
  IdentifyResult,
  Libp2p,
  MessageStream,
  PeerId,
  Stream,
  StreamMuxer,
  StreamMuxerFactory,
} from '@libp2p/interface';
import { multiaddr } from '@multiformats/multiaddr';
import type { JsonObject } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type {
  FederationInbound,
  FederationRequest,
  FederationResponse,
  FederationTransport,
  RequestOptions,
} from '../federation/transport.js';
import { UnreachableError } from '../federation/transport.js';
import type { Logger } from '../services/context.js';
import { silentLogger } from '../services/context.js';
import type { PeerBook } from './peer-book.js';
import { peerIdToServerName, serverNameToPeerId } from './peer-id.js';
import { RpcChannel } from './rpc-channel.js';

export const FEDERATION_PROTOCOL = '/hearth/federation/1';
export const ROOM_TOPIC_PREFIX = '/hearth/room/';
/**
 * Hearth's own request on the federation stream (not a Matrix endpoint, never passed to the homeserver): "which
 * addresses do you know for this server?". Peers that share a bootstrap node learn each other's addresses this way.
 */
export const ADDRESS_LOOKUP_PATH = '/_hearth/p2p/v1/addresses/';
const ADDRESS_LOOKUP_TIMEOUT_MS = 3_000;

/** The gossipsub topic of a room. */
export function roomTopic(roomId: string): string {
  return ROOM_TOPIC_PREFIX + roomId;
}

/**
 * Gossipsub settings every Hearth node uses, Node and browser alike: nodes with different signature policies reject
 * each other's messages.
 *
 * Unsigned: gossipsub's own signature (StrictSign) cost the publisher a signature and every receiver a key rebuild
 * and verification per message, and proved only who published — our PDUs carry their origin's signatures, checked on
 * receipt, and EDUs are believed only from the peer that hands them over (Noise authenticates it). Without `from` and
 * `seqno`, gossipsub's StrictNoSign message ID is the SHA-256 of the data, so copies arriving by several paths are
 * still seen once (identical bytes published twice within gossipsub's seen-TTL are one message: publishTo then
 * reports no recipients and the caller sends by `/send`).
 */
export const HEARTH_GOSSIPSUB = {
  globalSignaturePolicy: StrictNoSign,
  // Publishing into a room nobody else listens to yet is normal (the first server in a room).
  allowPublishToZeroTopicPeers: true,
  ignoreDuplicatePublishError: true,
  // Browsers reach Node peers (and each other) through relays before, or instead of, a direct link.
  runOnLimitedConnection: true,
  maxInboundDataLength: 5 * 1024 * 1024,
  // A received message is forwarded only once onGossip says so: messages carrying EDUs are not (see there).
  asyncValidation: true,
} as const satisfies Partial<GossipsubOpts>;

/**
 * The slice of a message stream's send path that `coalescedWrites` replaces: libp2p's AbstractMessageStream hands
 * each queued chunk list (a Uint8ArrayList) to `sendData`, which a socket transport writes buffer by buffer.
 */
interface ChunkList {
  readonly bufs: Uint8Array[];
  readonly byteLength: number;
  subarray(): Uint8Array;
  consume(bytes: number): void;
  append(buf: Uint8Array): void;
}
type SendData = (data: ChunkList) => { sentBytes: number; canSendMore: boolean };

/**
 * Wraps a connection encrypter (noise) so that what it sends reaches the raw connection as ONE buffer per send.
 * Noise hands the socket a list of [2-byte length, ciphertext] per message and @libp2p/tcp (and websockets) write
 * each buffer on its own: two syscalls and, with TCP_NODELAY, two segments, so the receiver wakes to read 2 bytes and
 * then again for the message. Measured on loopback: every gossip message and federation frame cost the sender an
 * extra write and the receiver an extra wake-up. Joining the ~1 KB costs a copy and nothing else changes.
 */
export function coalescedWrites<C, E>(factory: (components: C) => ConnectionEncrypter<E>): (components: C) => ConnectionEncrypter<E> {
  return (components) => {
    const inner = factory(components);
    const coalesce = (conn: MessageStream): MessageStream => {
      const stream = conn as MessageStream & { sendData?: SendData };
      const sendData = stream.sendData;
      // Not an AbstractMessageStream (another libp2p version): leave it as it is.
      if (typeof sendData !== 'function') return conn;
      stream.sendData = function (this: unknown, data: ChunkList) {
        if (data.bufs.length > 1) {
          // `data` is the caller's own copy of the queued chunks (AbstractMessageStream.processSendQueue): reuse it.
          const joined = data.subarray();
          data.consume(data.byteLength);
          data.append(joined);
        }
        return sendData.call(this, data);
      };
      return conn;
    };
    return {
      protocol: inner.protocol,
      secureInbound: (conn, opts) => inner.secureInbound(coalesce(conn), opts),
      secureOutbound: (conn, opts) => inner.secureOutbound(coalesce(conn), opts),
    };
  };
}

/** The fields of a @libp2p/yamux stream that `lazyWindowUpdates` reads (yamux's own names). */
interface YamuxStreamWindow {
  state: number;
  recvWindow: number;
  recvWindowCapacity: number;
  sendWindowUpdate(): void;
}
/** @libp2p/yamux's StreamState values for which it sends no flags (SYNSent, Established). */
const YAMUX_PLAIN_STATES: ReadonlySet<number> = new Set([1, 3]);

/**
 * Wraps @libp2p/yamux so that a stream grants its peer more window only once half of it is used, as go-yamux and the
 * yamux spec's implementations do. js-yamux sends a 12-byte window update after EVERY data frame it receives: for
 * each gossip message or federation frame, one more write on the receiver and one more wake-up and read on the
 * sender (seen with strace on a sending `hearth serve`: a 30-byte read per message sent). With 256 KiB windows a
 * stream of ~1 KB messages now sends an update every ~128 messages; the sender never waits, having at least half.
 * Streams of another yamux version (other field names) are left as they are.
 */
export function lazyWindowUpdates<C, M extends StreamMuxer>(factory: (components: C) => StreamMuxerFactory<M>): (components: C) => StreamMuxerFactory<M> {
  return (components) => {
    const inner = factory(components);
    return {
      protocol: inner.protocol,
      createStreamMuxer: (conn) => {
        const muxer = inner.createStreamMuxer(conn) as M & { _newStream?: (...args: unknown[]) => unknown };
        const newStream = muxer._newStream;
        if (typeof newStream !== 'function') return muxer;
        muxer._newStream = function (this: unknown, ...args: unknown[]) {
          const stream = newStream.apply(this, args) as Partial<YamuxStreamWindow>;
          const update = stream.sendWindowUpdate;
          if (typeof update !== 'function' || typeof stream.recvWindow !== 'number' || typeof stream.recvWindowCapacity !== 'number') return stream;
          stream.sendWindowUpdate = function (this: YamuxStreamWindow) {
            if (YAMUX_PLAIN_STATES.has(this.state) && this.recvWindow - this.recvWindowCapacity < this.recvWindow / 2) return;
            update.call(this);
          };
          return stream;
        };
        return muxer;
      },
    };
  };
}

/** Services the transport needs on the libp2p node. */
export type HearthServices = {
  // reportMessageValidationResult is on gossipsub's class, not on its exported interface.
  pubsub: GossipSub & {
    reportMessageValidationResult(msgId: string, propagationSource: string, acceptance: TopicValidatorResult): void;
  };
};
export type HearthLibp2p = Libp2p<HearthServices>;

/** Answers every request with 404 M_UNRECOGNIZED and drops gossip: what a peer without federation semantics says. */
export const unrecognizedInbound: FederationInbound = {
  handleRequest: async () => ({ status: 404, body: { errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' } }),
  handleGossip: async () => {},
};

export interface Libp2pTransportInit {
  /** Where inbound requests and gossip go (default: `unrecognizedInbound`; see `setInbound`). */
  inbound?: FederationInbound;
  /** Remembers the addresses of peers we meet and supplies them for dialling. */
  peerBook?: PeerBook;
  logger?: Logger;
  /** Largest request/response frame, in bytes of JSON (default 32 MiB: a send_join answer for a big room is large). */
  maxFrameBytes?: number;
  /** Largest gossip message (default 4 MiB: a full transaction of 50 PDUs and 100 EDUs fits). */
  maxGossipBytes?: number;
  /** Default request timeout, including a dial when needed (default 15 s). */
  requestTimeoutMs?: number;
  /** Inbound requests per stream handled at once (default 256). */
  maxConcurrentInbound?: number;
}

/** One libp2p connection, as the status display and the admin endpoint show it. */
export interface ConnectionStatus {
  peerId: string;
  /** Undefined for peers that are not Hearth servers (e.g. a plain relay). */
  serverName?: string;
  remoteAddr: string;
  direction: 'inbound' | 'outbound';
  /** tcp, websockets, webrtc, or relayed (through a circuit relay). */
  transport: string;
  /** Relayed connections with data/time limits. */
  limited: boolean;
  rttMs?: number;
}

export interface NetworkStatus {
  peerId: string;
  multiaddrs: string[];
  connections: ConnectionStatus[];
  /** Room gossip topics this node is subscribed to. */
  topics: string[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

function transportOf(addr: string): string {
  // A WebRTC link signalled through a relay keeps `/p2p-circuit/webrtc` in its address but is direct.
  if (addr.includes('/webrtc')) return 'webrtc';
  if (addr.includes('/p2p-circuit')) return 'relayed';
  if (addr.includes('/ws') || addr.includes('/wss')) return 'websockets';
  if (addr.includes('/tcp/')) return 'tcp';
  return 'other';
}

/** The promise, or a rejection when `ms` pass or `signal` aborts first. */
function withDeadline<T>(p: Promise<T>, destination: string, ms: number, signal?: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      reject(new UnreachableError(destination, `not reachable within ${ms} ms`));
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

export class Libp2pTransport implements FederationTransport {
  readonly node: HearthLibp2p;
  /** This server's name (the node's peer ID as a Hearth name). */
  readonly serverName: string;
  private inbound: FederationInbound;
  private readonly peerBook: PeerBook | undefined;
  private readonly logger: Logger;
  private readonly maxFrameBytes: number;
  private readonly maxGossipBytes: number;
  private readonly requestTimeoutMs: number;
  private readonly maxConcurrentInbound: number;
  /** The stream used for our requests to each server. Inbound-opened streams are adopted too. */
  private readonly channels = new Map<string, RpcChannel>();
  private readonly allChannels = new Set<RpcChannel>();
  private readonly opening = new Map<string, Promise<RpcChannel>>();
  /** Hearth servers with a live connection (identified as speaking our protocol). */
  private readonly hearthPeers = new Set<string>();
  private readonly rooms = new Set<string>();
  /** Parsed by the topic validator, handed to the message listener (same message object). */
  private readonly parsedGossip = new WeakMap<Message, JsonObject>();
  private running = false;

  constructor(node: HearthLibp2p, init: Libp2pTransportInit = {}) {
    this.node = node;
    const name = peerIdToServerName(node.peerId);
    if (name === undefined) throw new TypeError('the libp2p node must have an Ed25519 key (a Hearth server identity)');
    this.serverName = name;
    this.inbound = init.inbound ?? unrecognizedInbound;
    this.peerBook = init.peerBook;
    this.logger = init.logger ?? silentLogger;
    this.maxFrameBytes = init.maxFrameBytes ?? 32 * 1024 * 1024;
    this.maxGossipBytes = init.maxGossipBytes ?? 4 * 1024 * 1024;
    this.requestTimeoutMs = init.requestTimeoutMs ?? 15_000;
    this.maxConcurrentInbound = init.maxConcurrentInbound ?? 256;
  }

  /** Replaces the receiver of inbound requests and gossip (the homeserver may be built after the network). */
  setInbound(inbound: FederationInbound): void {
    this.inbound = inbound;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.node.handle(FEDERATION_PROTOCOL, (stream, connection) => this.acceptStream(stream, connection), {
      // Browsers reach each other and Node peers through relays before (or instead of) a direct link.
      runOnLimitedConnection: true,
      maxInboundStreams: 8,
      maxOutboundStreams: 8,
    });
    this.node.addEventListener('peer:identify', this.onIdentify);
    this.node.addEventListener('peer:disconnect', this.onDisconnect);
    this.node.addEventListener('start', this.onNodeStart);
    this.node.services.pubsub.addEventListener('gossipsub:message', this.onGossip);
    if (this.node.status === 'started') this.onNodeStart();
    // Seed the node's peer store with what we remember, so dials by peer ID find addresses.
    if (this.peerBook) {
      for (const [name, rec] of this.peerBook.all()) await this.addAddresses(name, rec.addrs);
    }
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.node.removeEventListener('peer:identify', this.onIdentify);
    this.node.removeEventListener('peer:disconnect', this.onDisconnect);
    this.node.removeEventListener('start', this.onNodeStart);
    this.node.services.pubsub.removeEventListener('gossipsub:message', this.onGossip);
    await this.node.unhandle(FEDERATION_PROTOCOL).catch(() => {});
    for (const ch of [...this.allChannels]) ch.abort('network stopping');
    this.channels.clear();
    await this.peerBook?.flush();
  }

  // ---- requests

  async request(destination: string, req: FederationRequest, opts: RequestOptions = {}): Promise<FederationResponse> {
    opts.signal?.throwIfAborted();
    const timeoutMs = opts.timeoutMs ?? this.requestTimeoutMs;
    let channel = this.channels.get(destination);
    if (channel === undefined || !channel.isOpen) {
      const started = Date.now();
      channel = await withDeadline(this.channelTo(destination), destination, timeoutMs, opts.signal);
      return channel.request(req, Math.max(1, timeoutMs - (Date.now() - started)), opts.signal);
    }
    return channel.request(req, timeoutMs, opts.signal);
  }

  /**
   * Makes sure there is a connection and a federation stream to `serverName` (dialling it if needed), so the
   * next request goes out at once. Rejects with UnreachableError.
   */
  async connect(serverName: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    const channel = this.channels.get(serverName);
    if (channel?.isOpen) return;
    await withDeadline(this.channelTo(serverName), serverName, opts.timeoutMs ?? this.requestTimeoutMs, opts.signal);
  }

  /** The open channel to `destination`, opening one (one attempt at a time per destination). */
  private channelTo(destination: string): Promise<RpcChannel> {
    const existing = this.channels.get(destination);
    if (existing?.isOpen) return Promise.resolve(existing);
    let p = this.opening.get(destination);
    if (p === undefined) {
      p = this.openChannel(destination).finally(() => this.opening.delete(destination));
      this.opening.set(destination, p);
    }
    return p;
  }

  private async openChannel(destination: string): Promise<RpcChannel> {
    if (!this.running) throw new UnreachableError(destination, 'the network is stopped');
    if (destination === this.serverName) throw new UnreachableError(destination, 'that is this server');
    const peerId = serverNameToPeerId(destination);
    if (peerId === undefined) throw new UnreachableError(destination, 'not a Hearth server name');
    // Give up on a dial that hangs even if no caller is waiting any more.
    const signal = AbortSignal.timeout(Math.max(this.requestTimeoutMs, 30_000));
    let connection = this.bestConnection(peerId);
    if (connection === undefined) {
      if (!(await this.hasAddresses(peerId, destination)) && !(await this.lookUpAddresses(destination))) {
        throw new UnreachableError(destination, 'no known address for this server');
      }
      try {
        connection = await this.node.dial(peerId, { signal });
      } catch (e) {
        // The addresses we had may be stale (the peer restarted on another port): ask around once and redial.
        if (!(await this.lookUpAddresses(destination))) throw new UnreachableError(destination, `dial failed: ${(e as Error).message}`);
        try {
          connection = await this.node.dial(peerId, { signal });
        } catch (e2) {
          throw new UnreachableError(destination, `dial failed: ${(e2 as Error).message}`);
        }
      }
    }
    let stream: Stream;
    try {
      stream = await connection.newStream(FEDERATION_PROTOCOL, { signal, runOnLimitedConnection: true });
    } catch (e) {
      throw new UnreachableError(destination, `could not open a federation stream: ${(e as Error).message}`);
    }
    const channel = this.makeChannel(stream, destination);
    this.markConnected(destination);
    return channel;
  }

  /** An open connection to the peer, preferring direct (unlimited) ones over relayed ones. */
  private bestConnection(peerId: PeerId): Connection | undefined {
    const open = this.node.getConnections(peerId).filter((c) => c.status === 'open');
    return open.find((c) => c.limits === undefined) ?? open[0];
  }

  /** Whether the node knows an address for the peer, taking it from the peer book when its peer store has none. */
  private async hasAddresses(peerId: PeerId, serverName: string): Promise<boolean> {
    try {
      const peer = await this.node.peerStore.get(peerId);
      if (peer.addresses.length > 0) return true;
    } catch {
      // not in the peer store
    }
    const rec = this.peerBook?.get(serverName);
    if (rec === undefined || rec.addrs.length === 0) return false;
    return this.addAddresses(serverName, rec.addrs);
  }

  /**
   * Asks the Hearth peers we are connected to for the addresses of a server we have none for (a peer that
   * bootstrapped from the same node as us, met through a room). The answers are only hints: dialling still proves
   * the key through Noise, so a lying peer can make us dial the wrong place but never talk to the wrong server.
   */
  private async lookUpAddresses(destination: string): Promise<boolean> {
    const askable = [...this.channels.values()].filter((ch) => ch.isOpen && ch.remote !== destination).slice(0, 8);
    if (askable.length === 0) return false;
    const path = ADDRESS_LOOKUP_PATH + encodeURIComponent(destination);
    const answers = await Promise.allSettled(
      askable.map((ch) => ch.request({ method: 'GET', path }, ADDRESS_LOOKUP_TIMEOUT_MS)),
    );
    const found = new Set<string>();
    for (const a of answers) {
      if (a.status !== 'fulfilled' || a.value.status !== 200) continue;
      const body = a.value.body;
      const addrs = body !== null && typeof body === 'object' && !Array.isArray(body) ? body.addrs : undefined;
      if (!Array.isArray(addrs)) continue;
      for (const x of addrs.slice(0, 32)) if (typeof x === 'string' && x.length <= 1024) found.add(x);
    }
    if (found.size === 0) return false;
    return this.addAddresses(destination, [...found]);
  }

  /** Answers another peer's address lookup from our peer store (addresses we dialled or learnt by identify). */
  private async answerAddressLookup(path: string): Promise<FederationResponse> {
    let name: string;
    try {
      name = decodeURIComponent(path.slice(ADDRESS_LOOKUP_PATH.length));
    } catch {
      return { status: 400, body: { errcode: 'M_INVALID_PARAM', error: 'bad server name' } };
    }
    const peerId = serverNameToPeerId(name);
    if (peerId === undefined) return { status: 400, body: { errcode: 'M_INVALID_PARAM', error: 'not a Hearth server name' } };
    const addrs = new Set<string>();
    try {
      const peer = await this.node.peerStore.get(peerId);
      for (const a of peer.addresses) addrs.add(a.multiaddr.toString());
    } catch {
      // not in the peer store
    }
    for (const a of this.peerBook?.get(name)?.addrs ?? []) addrs.add(a);
    if (addrs.size === 0) return { status: 404, body: { errcode: 'M_NOT_FOUND', error: 'no known address for that server' } };
    return { status: 200, body: { addrs: [...addrs].slice(0, 32) } };
  }

  private async addAddresses(serverName: string, addrs: readonly string[]): Promise<boolean> {
    const peerId = serverNameToPeerId(serverName);
    if (peerId === undefined || serverName === this.serverName) return false;
    const multiaddrs = [];
    for (const a of addrs) {
      try {
        multiaddrs.push(multiaddr(a));
      } catch {
        // a stored address this build cannot parse: skip it
      }
    }
    if (multiaddrs.length === 0) return false;
    try {
      await this.node.peerStore.merge(peerId, { multiaddrs });
      return true;
    } catch (e) {
      this.logger.debug(`could not add addresses of ${serverName}`, e);
      return false;
    }
  }

  private acceptStream(stream: Stream, connection: Connection): void {
    const remote = peerIdToServerName(connection.remotePeer);
    if (remote === undefined || !this.running) {
      stream.abort(new Error('not a Hearth server'));
      return;
    }
    this.makeChannel(stream, remote);
    this.markConnected(remote);
  }

  private makeChannel(stream: Stream, remote: string): RpcChannel {
    const channel = new RpcChannel(stream, {
      remote,
      // `remote` comes from the connection: whatever the frames say, this is who is asking.
      handler: (req) =>
        req.path.startsWith(ADDRESS_LOOKUP_PATH) ? this.answerAddressLookup(req.path) : this.inbound.handleRequest(remote, req),
      maxFrameBytes: this.maxFrameBytes,
      maxConcurrentInbound: this.maxConcurrentInbound,
      logger: this.logger,
      onClose: (ch) => {
        this.allChannels.delete(ch);
        if (this.channels.get(remote) === ch) {
          this.channels.delete(remote);
          // Another live stream to the same peer (both sides dialled at once) takes over.
          for (const other of this.allChannels) {
            if (other.remote === remote && other.isOpen) {
              this.channels.set(remote, other);
              break;
            }
          }
        }
      },
    });
    if (channel.isOpen) {
      this.allChannels.add(channel);
      const current = this.channels.get(remote);
      if (current === undefined || !current.isOpen) this.channels.set(remote, channel);
    }
    return channel;
  }

  // ---- peers

  private markConnected(serverName: string): void {
    if (this.hearthPeers.has(serverName)) return;
    this.hearthPeers.add(serverName);
    try {
      this.inbound.peerConnected?.(serverName);
    } catch (e) {
      this.logger.error('peerConnected failed', e);
    }
  }

  private readonly onIdentify = (ev: CustomEvent<IdentifyResult>): void => {
    const { peerId, listenAddrs, protocols, connection } = ev.detail;
    if (!protocols.includes(FEDERATION_PROTOCOL)) return;
    const name = peerIdToServerName(peerId);
    if (name === undefined || connection.status !== 'open') return;
    const suffix = `/p2p/${peerId.toString()}`;
    const strip = (a: string) => (a.endsWith(suffix) ? a.slice(0, -suffix.length) : a);
    const addrs = listenAddrs.map((a) => strip(a.toString()));
    // The address we dialled is known to work: keep it first.
    if (connection.direction === 'outbound' && connection.limits === undefined) addrs.unshift(strip(connection.remoteAddr.toString()));
    this.peerBook?.remember(name, addrs);
    this.markConnected(name);
    // The dialling side opens the federation stream now, so neither side's first request waits for it (and the
    // other side adopts it: one stream per connection).
    if (connection.direction === 'outbound' && this.running && !this.channels.get(name)?.isOpen) {
      this.channelTo(name).catch((e: unknown) => this.logger.debug(`no federation stream to ${name}`, (e as Error).message));
    }
  };

  private readonly onDisconnect = (ev: CustomEvent<PeerId>): void => {
    const name = peerIdToServerName(ev.detail);
    if (name !== undefined) this.hearthPeers.delete(name);
  };

  connectedServers(): string[] {
    return [...this.hearthPeers];
  }

  status(): NetworkStatus {
    return {
      peerId: this.node.peerId.toString(),
      multiaddrs: this.node.getMultiaddrs().map(String),
      connections: this.node.getConnections().map((c) => {
        const addr = c.remoteAddr.toString();
        const serverName = peerIdToServerName(c.remotePeer);
        return {
          peerId: c.remotePeer.toString(),
          ...(serverName !== undefined ? { serverName } : {}),
          remoteAddr: addr,
          direction: c.direction,
          transport: transportOf(addr),
          limited: c.limits !== undefined,
          ...(c.rtt !== undefined ? { rttMs: c.rtt } : {}),
        };
      }),
      topics: this.node.services.pubsub.getTopics().filter((t) => t.startsWith(ROOM_TOPIC_PREFIX)),
    };
  }

  // ---- gossip

  /**
   * Publishes to the room's topic; rejects with a RangeError when the message is over the gossip size limit.
   */
  async publish(roomId: string, message: JsonObject): Promise<void> {
    await this.publishTo(roomId, message);
  }

  /** `publish`, resolving with the servers it was sent to directly (others may get it through the mesh). */
  async publishTo(roomId: string, message: JsonObject): Promise<string[]> {
    const data = encoder.encode(JSON.stringify(message));
    if (data.length > this.maxGossipBytes) throw new RangeError(`gossip message of ${data.length} bytes exceeds ${this.maxGossipBytes}`);
    const { recipients } = await this.node.services.pubsub.publish(roomTopic(roomId), data);
    const names: string[] = [];
    for (const p of recipients) {
      const n = peerIdToServerName(p);
      if (n !== undefined) names.push(n);
    }
    return names;
  }

  /** Safe before the node starts: the subscription is made when it does (gossipsub refuses it earlier). */
  subscribe(roomId: string): void {
    const topic = roomTopic(roomId);
    this.rooms.add(roomId);
    this.node.services.pubsub.topicValidators.set(topic, this.validateGossip);
    if (this.node.status === 'started') this.node.services.pubsub.subscribe(topic);
  }

  unsubscribe(roomId: string): void {
    const topic = roomTopic(roomId);
    this.rooms.delete(roomId);
    if (this.node.status === 'started') this.node.services.pubsub.unsubscribe(topic);
    this.node.services.pubsub.topicValidators.delete(topic);
  }

  private readonly onNodeStart = (): void => {
    for (const roomId of this.rooms) this.node.services.pubsub.subscribe(roomTopic(roomId));
  };

  /**
   * Rejected messages are neither delivered nor forwarded (and count against the peer's gossipsub score). Only
   * Hearth servers hand on room gossip; what a message claims about its origin is src/federation's to judge.
   */
  private readonly validateGossip: TopicValidatorFn = (source, msg) => {
    if (msg.type !== 'unsigned' || peerIdToServerName(source) === undefined) return TopicValidatorResult.Reject;
    if (msg.data.length > this.maxGossipBytes) return TopicValidatorResult.Reject;
    const parsed = parseGossip(msg.data);
    if (parsed === undefined) return TopicValidatorResult.Reject;
    this.parsedGossip.set(msg, parsed);
    return TopicValidatorResult.Accept;
  };

  /**
   * Delivers a validated message, and tells gossipsub whether to forward it (HEARTH_GOSSIPSUB's asyncValidation).
   * Receivers believe EDUs only from the peer that is their origin, so a relayed copy of a message with EDUs is
   * useless — and harmful: arriving before the origin's own copy, it would make that one a duplicate, and the EDUs
   * would be lost. Such messages go only to the publisher's direct peers (the sender sends `/send` to the rest:
   * publishTo's recipients); messages of PDUs alone, which prove themselves, are forwarded through the mesh.
   */
  private readonly onGossip = (ev: CustomEvent<GossipsubMessage>): void => {
    const { msg, msgId, propagationSource } = ev.detail;
    const message = this.parsedGossip.get(msg) ?? (msg.data.length <= this.maxGossipBytes ? parseGossip(msg.data) : undefined);
    const forward = message !== undefined && !(Array.isArray(message.edus) && message.edus.length > 0);
    this.node.services.pubsub.reportMessageValidationResult(
      msgId,
      propagationSource.toString(),
      forward ? TopicValidatorResult.Accept : TopicValidatorResult.Ignore,
    );
    if (message === undefined || !msg.topic.startsWith(ROOM_TOPIC_PREFIX)) return;
    const roomId = msg.topic.slice(ROOM_TOPIC_PREFIX.length);
    if (!this.rooms.has(roomId)) return;
    // The peer that handed us the message (Noise-authenticated), not necessarily the server that published it.
    const from = peerIdToServerName(propagationSource);
    if (from === undefined || from === this.serverName) return;
    this.inbound.handleGossip(roomId, from, message).catch((e: unknown) => this.logger.error(`gossip from ${from} in ${roomId} failed`, e));
  };
}

function parseGossip(data: Uint8Array): JsonObject | undefined {
  try {
    const v: unknown = JSON.parse(decoder.decode(data));
    return isJsonObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}
