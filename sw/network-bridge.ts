/**
 * The service worker's federation transport: it has no libp2p node of its own (no WebRTC in workers, and the worker
 * is stopped when idle — shared/PLATFORM-NOTES.md), so `request`/`publish(To)`/`subscribe` are forwarded to the tab
 * elected to run the node (src/browser/p2p/leader.ts) over a dedicated MessagePort, and what that node receives comes
 * back on the same port to `hs.federation`. Message shapes: src/browser/p2p/protocol.ts.
 *
 * Without a leader, `request` asks the window clients for one and, if none attaches within `attachWaitMs`, rejects
 * with UnreachableError: the federation sender's retry queue tries again later.
 *
 * Inbound requests are never taken from `fetch`: only the port the leader attached carries them, with the origin the
 * leader read from the authenticated libp2p connection.
 */
import type { JsonObject } from '../src/core/json.js';
import { isJsonObject } from '../src/core/json.js';
import type { FederationInbound, FederationRequest, FederationResponse, FederationTransport, RequestOptions } from '../src/federation/transport.js';
import { UnreachableError } from '../src/federation/transport.js';
import type { ToLeader, ToWorker } from '../src/browser/p2p/protocol.js';
import { HELLO, KEEPALIVE, WANTED } from '../src/browser/p2p/protocol.js';
import type { Logger } from '../src/services/context.js';
import { sharedRoomServers } from '../src/net/room-peers.js';
import type { Kv } from '../src/storage/kv.js';

/** What the bridge needs from the worker's homeserver host (started on demand). */
export interface BridgeHomeserver {
  serverName: string;
  seed: Uint8Array;
  kv: Kv;
  federation: FederationInbound;
}

export interface NetworkBridgeInit {
  /** Starts the homeserver if needed. */
  homeserver: () => Promise<BridgeHomeserver>;
  /** Asks open windows for a leader (the worker's `clients.matchAll` + postMessage). */
  callLeader?: () => Promise<void>;
  logger: Logger;
  /** How long `request` waits for a leader to attach when none is (default 1.5 s). */
  attachWaitMs?: number;
  /** Default request timeout (default 15 s, as the libp2p transport). */
  requestTimeoutMs?: number;
}

/** What a `response` from the leader carries on success. */
interface Answer {
  res?: FederationResponse;
  reached?: string[];
}

interface Pending {
  resolve: (v: Answer) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
  destination: string;
}

export class NetworkBridge implements FederationTransport {
  private port: MessagePort | undefined;
  private readonly rooms = new Set<string>();
  private servers: string[] = [];
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private attachWaiters: Array<() => void> = [];

  constructor(private readonly init: NetworkBridgeInit) {}

  get attached(): boolean {
    return this.port !== undefined;
  }

  /**
   * Handles the worker's global `message` events that belong to the network; returns the promise to pass to
   * `event.waitUntil`, or undefined for other messages.
   */
  onMessage(event: ExtendableMessageEvent): Promise<void> | undefined {
    const msg = event.data as { type?: string } | null;
    if (msg?.type === HELLO && event.ports[0]) return this.attach(event.ports[0]);
    if (msg?.type === KEEPALIVE) {
      event.ports[0]?.postMessage({ attached: this.attached });
      return Promise.resolve();
    }
    return undefined;
  }

  /** A (new) leader offers its port: it replaces the old one, whose pending requests fail at once. */
  private async attach(port: MessagePort): Promise<void> {
    this.detach('a new network host attached');
    this.port = port;
    port.onmessage = (e: MessageEvent) => void this.onPortMessage(port, e.data as ToWorker);
    port.start();
    try {
      const hs = await this.init.homeserver();
      // The homeserver may have subscribed rooms while starting: send them with the identity.
      this.post({ t: 'identity', seed: hs.seed, serverName: hs.serverName, rooms: [...this.rooms] }, port);
      for (const w of this.attachWaiters.splice(0)) w();
    } catch (e) {
      this.init.logger.error('network: the homeserver could not start for the network host', e);
      this.detach('the homeserver could not start');
    }
  }

  private detach(reason: string): void {
    const old = this.port;
    this.port = undefined;
    this.servers = [];
    if (old) old.onmessage = null;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new UnreachableError(p.destination, `network host gone: ${reason}`));
      this.pending.delete(id);
    }
  }

  private post(msg: ToLeader, port = this.port): boolean {
    if (!port) return false;
    try {
      port.postMessage(msg);
      return true;
    } catch (e) {
      this.init.logger.warn('network: could not post to the network host', e);
      return false;
    }
  }

  private async onPortMessage(port: MessagePort, msg: ToWorker): Promise<void> {
    if (port !== this.port || msg === null || typeof msg !== 'object') return;
    switch (msg.t) {
      case 'response': {
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.error) {
          const err = msg.error.name === 'UnreachableError' ? new UnreachableError(p.destination, msg.error.message) : new Error(msg.error.message);
          if (msg.error.name !== 'UnreachableError') err.name = msg.error.name;
          p.reject(err);
        } else p.resolve({ ...(msg.res !== undefined ? { res: msg.res } : {}), ...(msg.reached !== undefined ? { reached: msg.reached } : {}) });
        return;
      }
      case 'inbound': {
        const { id, origin, req } = msg;
        let res: FederationResponse;
        try {
          if (typeof origin !== 'string' || !isRequest(req)) throw new Error('malformed inbound request');
          const hs = await this.init.homeserver();
          res = await hs.federation.handleRequest(origin, req);
        } catch (e) {
          this.init.logger.error('network: inbound federation request failed', e);
          res = { status: 500, body: { errcode: 'M_UNKNOWN', error: 'Internal error' } };
        }
        this.post({ t: 'inbound-response', id, res }, port);
        return;
      }
      case 'gossip': {
        if (typeof msg.roomId !== 'string' || typeof msg.from !== 'string' || !isJsonObject(msg.message)) return;
        try {
          const hs = await this.init.homeserver();
          await hs.federation.handleGossip(msg.roomId, msg.from, msg.message);
        } catch (e) {
          this.init.logger.error(`network: gossip in ${msg.roomId} failed`, e);
        }
        return;
      }
      case 'peer-connected': {
        const hs = await this.init.homeserver().catch(() => undefined);
        if (hs && typeof msg.serverName === 'string') hs.federation.peerConnected?.(msg.serverName);
        return;
      }
      case 'servers':
        if (Array.isArray(msg.servers)) this.servers = msg.servers.filter((s) => typeof s === 'string');
        return;
      case 'wanted': {
        let servers: string[] = [];
        try {
          const hs = await this.init.homeserver();
          servers = await sharedRoomServers(hs.kv, hs.serverName);
        } catch (e) {
          this.init.logger.warn('network: could not list the servers we share rooms with', e);
        }
        this.post({ t: 'wanted-servers', id: msg.id, servers }, port);
        return;
      }
    }
  }

  /** Resolves once a leader is attached, or false after `attachWaitMs`. */
  private async waitForLeader(): Promise<boolean> {
    if (this.port) return true;
    const ms = this.init.attachWaitMs ?? 1500;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let waiter: (() => void) | undefined;
    const attached = new Promise<boolean>((resolve) => {
      waiter = () => resolve(true);
      this.attachWaiters.push(waiter);
      timer = setTimeout(() => resolve(false), ms);
    });
    void this.init.callLeader?.().catch(() => undefined);
    const ok = await attached;
    clearTimeout(timer);
    this.attachWaiters = this.attachWaiters.filter((w) => w !== waiter);
    return ok && this.port !== undefined;
  }

  private async call(destination: string, make: (id: number) => ToLeader, timeoutMs: number, signal?: AbortSignal): Promise<Answer> {
    signal?.throwIfAborted();
    if (!(await this.waitForLeader())) throw new UnreachableError(destination, 'no tab is running the network');
    const id = this.nextId++;
    return new Promise<Answer>((resolve, reject) => {
      const onAbort = () => {
        const p = this.pending.get(id);
        if (!p) return;
        clearTimeout(p.timer);
        this.pending.delete(id);
        reject(signal!.reason);
      };
      const done = <A extends unknown[]>(f: (...a: A) => void) => (...a: A) => {
        signal?.removeEventListener('abort', onAbort);
        f(...a);
      };
      const timer = setTimeout(() => {
        this.pending.delete(id);
        done(reject)(new UnreachableError(destination, `no answer within ${timeoutMs} ms`));
      }, timeoutMs + 1000); // the leader's own deadline fires first; this one covers a leader that vanished
      this.pending.set(id, { resolve: done(resolve), reject: done(reject), timer, destination });
      signal?.addEventListener('abort', onAbort, { once: true });
      if (!this.post(make(id))) {
        clearTimeout(timer);
        this.pending.delete(id);
        done(reject)(new UnreachableError(destination, 'the network host is gone'));
      }
    });
  }

  // ---- FederationTransport

  async request(destination: string, req: FederationRequest, opts: RequestOptions = {}): Promise<FederationResponse> {
    const timeoutMs = opts.timeoutMs ?? this.init.requestTimeoutMs ?? 15_000;
    const { res } = await this.call(destination, (id) => ({ t: 'request', id, destination, req, timeoutMs }), timeoutMs, opts.signal);
    if (!res) throw new UnreachableError(destination, 'empty answer from the network host');
    return res;
  }

  async publish(roomId: string, message: JsonObject): Promise<void> {
    // Best effort, as gossip is: without a leader there is nobody to publish to (the /send queue still delivers).
    if (!this.port) return;
    await this.call(roomId, (id) => ({ t: 'publish', id, roomId, message }), 10_000);
  }

  /**
   * `publish`, resolving with the servers gossipsub handed the message to, so the sender sends `/send` only to the
   * others. Without a leader nobody was reached (`[]`: `/send` to all). A leader from before this answer existed
   * publishes but does not say to whom: that rejects, and the sender falls back to `/send` to all, as without
   * `publishTo`.
   */
  async publishTo(roomId: string, message: JsonObject): Promise<string[]> {
    if (!this.port) return [];
    const { reached } = await this.call(roomId, (id) => ({ t: 'publish', id, roomId, message }), 10_000);
    if (!Array.isArray(reached)) throw new Error('the network host did not say which servers the gossip reached');
    return reached.filter((s): s is string => typeof s === 'string');
  }

  subscribe(roomId: string): void {
    this.rooms.add(roomId);
    this.post({ t: 'subscribe', roomId });
  }

  unsubscribe(roomId: string): void {
    this.rooms.delete(roomId);
    this.post({ t: 'unsubscribe', roomId });
  }

  connectedServers(): string[] {
    return [...this.servers];
  }
}

function isRequest(v: unknown): v is FederationRequest {
  if (!isJsonObject(v)) return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.method === 'string' &&
    ['GET', 'PUT', 'POST', 'DELETE'].includes(r.method) &&
    typeof r.path === 'string' &&
    (r.body === undefined || isJsonObject(r.body))
  );
}

/** Asks every open window of this origin to attach as network host (the one holding the leader lock answers). */
export async function callLeaderFromWorker(scope: ServiceWorkerGlobalScope): Promise<void> {
  const windows = await scope.clients.matchAll({ type: 'window', includeUncontrolled: true });
  for (const w of windows) w.postMessage({ type: WANTED });
}
