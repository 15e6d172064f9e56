/**
 * Builders for network tests: real libp2p nodes on 127.0.0.1 in this process, each with its own in-memory storage
 * and an inbound handler that records what arrives. `const a = await startPeer(); const b = await startPeer();`
 * Every peer started here is stopped after the test file.
 */
import { afterAll } from 'vitest';
import { generateSeed } from '../../src/core/crypto/ed25519.js';
import type { JsonObject } from '../../src/core/json.js';
import { serverIdentityFromSeed } from '../../src/core/server-key.js';
import type { FederationInbound, FederationRequest, FederationResponse } from '../../src/federation/transport.js';
import type { Stream } from '@libp2p/interface';
import { FrameDecoder, parseFrame } from '../../src/net/framing.js';
import type { ParsedFrame } from '../../src/net/framing.js';
import { FEDERATION_PROTOCOL } from '../../src/net/libp2p-transport.js';
import type { Network } from '../../src/net/network.js';
import { serverNameToPeerId } from '../../src/net/peer-id.js';
import type { Kv } from '../../src/storage/kv.js';
import { openMemoryKv } from '../../src/storage/memory-kv.js';
import { HOMESERVER_STORES } from '../../src/storage/schema.js';
import { createNodeNetwork } from '../../src/node/p2p.js';
import type { NodeNetworkInit } from '../../src/node/p2p.js';

export interface Received {
  origin: string;
  req: FederationRequest;
}
export interface Gossip {
  roomId: string;
  from: string;
  message: JsonObject;
}

/** Answers with who asked what. */
export async function echo(origin: string, req: FederationRequest): Promise<FederationResponse> {
  return { status: 200, body: { origin, method: req.method, path: req.path, ...(req.body ? { body: req.body } : {}) } };
}

/** Records requests and gossip; answers requests with `respond` (default: echo who asked what). */
export class RecordingInbound implements FederationInbound {
  readonly requests: Received[] = [];
  readonly gossip: Gossip[] = [];
  readonly connected: string[] = [];
  respond: (origin: string, req: FederationRequest) => Promise<FederationResponse> = echo;
  /** Back to answering with `echo`. */
  resetRespond(): void {
    this.respond = echo;
  }
  private waiters: Array<() => void> = [];

  async handleRequest(origin: string, req: FederationRequest): Promise<FederationResponse> {
    this.requests.push({ origin, req });
    return this.respond(origin, req);
  }
  async handleGossip(roomId: string, from: string, message: JsonObject): Promise<void> {
    this.gossip.push({ roomId, from, message });
    for (const w of this.waiters.splice(0)) w();
  }
  peerConnected(serverName: string): void {
    this.connected.push(serverName);
  }
  /** Resolves once `n` gossip messages have arrived (rejects after `ms`). */
  async waitForGossip(n: number, ms = 10_000): Promise<Gossip[]> {
    const deadline = Date.now() + ms;
    while (this.gossip.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`expected ${n} gossip messages, got ${this.gossip.length}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.gossip;
  }
}

export interface TestPeer {
  readonly seed: Uint8Array;
  readonly serverName: string;
  readonly kv: Kv;
  readonly inbound: RecordingInbound;
  network: Network;
  /** /ip4/127.0.0.1/tcp/…/p2p/… */
  tcpAddr(): string;
  stop(): Promise<void>;
  /** Stops and starts again with the same key and storage (same TCP port unless `newPort`). */
  restart(opts?: { newPort?: boolean }): Promise<void>;
}

const live = new Set<TestPeer>();
afterAll(async () => {
  await Promise.allSettled([...live].map((p) => p.stop()));
}, 60_000);

export type PeerOptions = Partial<Omit<NodeNetworkInit, 'seed' | 'kv'>> & { seed?: Uint8Array; kv?: Kv };

let counter = 0;

export async function startPeer(opts: PeerOptions = {}): Promise<TestPeer> {
  const seed = opts.seed ?? generateSeed();
  const kv = opts.kv ?? (await openMemoryKv({ name: `net-${++counter}`, stores: HOMESERVER_STORES }));
  const inbound = new RecordingInbound();
  const make = (tcpPort: number) =>
    createNodeNetwork({
      wsPort: false,
      relay: false,
      reconnect: { baseDelayMs: 100, maxDelayMs: 1000, refreshMs: 500 },
      ...opts,
      seed,
      kv,
      inbound,
      host: '127.0.0.1',
      tcpPort,
      mdns: false,
    });
  let network = await make(opts.tcpPort ?? 0);
  await network.start();
  let stopped = false;
  const tcpAddr = () => {
    const a = network.multiaddrs().find((m) => /\/tcp\/\d+\/p2p\//.test(m) && !m.includes('/ws'));
    if (!a) throw new Error('no tcp address');
    return a;
  };
  const peer: TestPeer = {
    seed,
    serverName: serverIdentityFromSeed(seed).serverName,
    kv,
    inbound,
    get network() {
      return network;
    },
    set network(n) {
      network = n;
    },
    tcpAddr,
    async stop() {
      if (stopped) return;
      stopped = true;
      live.delete(peer);
      await network.stop();
    },
    async restart({ newPort = false } = {}) {
      const port = newPort ? 0 : Number(/\/tcp\/(\d+)\//.exec(tcpAddr())![1]);
      if (!stopped) await network.stop();
      network = await make(port);
      await network.start();
      stopped = false;
      live.add(peer);
    },
  };
  live.add(peer);
  return peer;
}

/** Waits until `check` returns true (polling), or throws after `ms`. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Connects `a` to `b` by b's TCP address. */
export async function connect(a: TestPeer, b: TestPeer): Promise<void> {
  const { multiaddr } = await import('@multiformats/multiaddr');
  await a.network.node.dial(multiaddr(b.tcpAddr()));
}

export interface RawStream {
  /** Sends bytes as they are. */
  send(bytes: Uint8Array): void;
  /** The next parsed frame from the other side (rejects after `ms` or when the stream closes first). */
  next(ms?: number): Promise<ParsedFrame>;
  /** Resolves when the stream has closed (reset or ended). */
  closed: Promise<void>;
  stream: Stream;
}

/**
 * Opens a `/hearth/federation/1` stream from `from`'s node to `to` without the transport's channel, to put
 * hand-made (and broken) frames on the wire.
 */
export async function rawStream(from: TestPeer, to: TestPeer): Promise<RawStream> {
  const { multiaddr } = await import('@multiformats/multiaddr');
  const stream = await from.network.node.dialProtocol(multiaddr(to.tcpAddr()), FEDERATION_PROTOCOL);
  const decoder = new FrameDecoder(64 * 1024 * 1024);
  const queue: ParsedFrame[] = [];
  const waiters: Array<() => void> = [];
  let isClosed = false;
  stream.addEventListener('message', (ev) => {
    const data = ev.data instanceof Uint8Array ? ev.data : ev.data.subarray();
    for (const f of decoder.push(data)) if (f.kind === 'frame') queue.push(parseFrame(f.payload));
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<void>((resolve) =>
    stream.addEventListener('close', () => {
      isClosed = true;
      for (const w of waiters.splice(0)) w();
      resolve();
    }),
  );
  return {
    stream,
    closed,
    send: (bytes) => void stream.send(bytes),
    async next(ms = 5000) {
      const deadline = Date.now() + ms;
      while (queue.length === 0) {
        if (isClosed) throw new Error('stream closed');
        const left = deadline - Date.now();
        if (left <= 0) throw new Error('no frame in time');
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      return queue.shift()!;
    },
  };
}

/** The frame bytes of `json` exactly as given (for frames the encoder would never produce). */
export function rawFrame(json: string): Uint8Array {
  const body = new TextEncoder().encode(json);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** Federation streams open on `peer`'s connections to `other`. */
export function federationStreams(peer: TestPeer, other: TestPeer): number {
  const otherId = serverNameToPeerId(other.serverName)!;
  return peer.network.node
    .getConnections(otherId)
    .flatMap((c) => c.streams)
    .filter((s) => s.protocol === FEDERATION_PROTOCOL && s.status === 'open').length;
}
