/**
 * Several homeservers in one process on an in-memory network (the FederationTransport contract,
 * src/federation/transport.ts), with controls to take a server offline, partition the network and heal it:
 *
 * ```ts
 * const fed = await newFederation(3);
 * const [a, b, c] = fed.servers;
 * fed.offline(c); … fed.online(c);
 * fed.partition([a, b], [c, d]); … fed.heal();
 * await fed.stop();
 * ```
 * Requests and gossip are copied through JSON both ways, as a wire would. Gossip is delivered asynchronously;
 * `settle()` waits until nothing is in flight and every server's send queues are idle.
 */
import type { JsonObject } from '../../src/core/json.js';
import { createHomeserver } from '../../src/homeserver.js';
import type { Homeserver } from '../../src/homeserver.js';
import type {
  FederationInbound,
  FederationRequest,
  FederationResponse,
  FederationTransport,
  RequestOptions,
} from '../../src/federation/transport.js';
import { UnreachableError } from '../../src/federation/transport.js';
import type { HomeserverConfig } from '../../src/services/context.js';
import { openMemoryKv } from '../../src/storage/memory-kv.js';
import type { Kv } from '../../src/storage/kv.js';
import { HOMESERVER_STORES } from '../../src/storage/schema.js';

let counter = 0;

function copy<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

/** One server's end of the network. */
class MemoryTransport implements FederationTransport {
  name = '';
  readonly topics = new Set<string>();
  constructor(private readonly net: MemoryNetwork) {}

  request(destination: string, req: FederationRequest, _opts?: RequestOptions): Promise<FederationResponse> {
    return this.net.deliverRequest(this.name, destination, req);
  }
  async publish(roomId: string, message: JsonObject): Promise<void> {
    this.net.deliverGossip(this.name, roomId, message);
  }
  /** As gossipsub's flood publish: handed to every subscribed server this one can reach. */
  async publishTo(roomId: string, message: JsonObject): Promise<string[]> {
    return this.net.deliverGossip(this.name, roomId, message);
  }
  subscribe(roomId: string): void {
    this.topics.add(roomId);
  }
  unsubscribe(roomId: string): void {
    this.topics.delete(roomId);
  }
  connectedServers(): string[] {
    return this.net.reachableFrom(this.name);
  }
}

export interface NetworkStats {
  requests: number;
  gossip: number;
  refused: number;
}

export class MemoryNetwork {
  private readonly nodes = new Map<string, { inbound: FederationInbound; transport: MemoryTransport }>();
  private readonly down = new Set<string>();
  /** Group index per server while partitioned. */
  private groups?: Map<string, number>;
  private inFlight = 0;
  private waiters: Array<() => void> = [];
  readonly stats: NetworkStats = { requests: 0, gossip: 0, refused: 0 };
  /** While set, publishing gossip fails (as an oversized message or a stopped node would). */
  gossipFails = false;
  /** Hook for tests: sees (and may replace) every request before delivery. */
  intercept?: (from: string, to: string, req: FederationRequest) => FederationRequest | undefined;

  transport(): MemoryTransport {
    return new MemoryTransport(this);
  }

  attach(name: string, inbound: FederationInbound, transport: MemoryTransport): void {
    transport.name = name;
    this.nodes.set(name, { inbound, transport });
  }

  canReach(from: string, to: string): boolean {
    if (from === to || this.down.has(from) || this.down.has(to) || !this.nodes.has(to)) return false;
    if (this.groups && this.groups.get(from) !== this.groups.get(to)) return false;
    return true;
  }

  /** The rooms whose gossip a server follows. */
  topicsOf(name: string): string[] {
    return [...(this.nodes.get(name)?.transport.topics ?? [])];
  }

  /** Stops a server following a room's gossip (as before gossipsub has learnt of its subscription). */
  dropTopic(name: string, roomId: string): void {
    this.nodes.get(name)?.transport.topics.delete(roomId);
  }

  reachableFrom(name: string): string[] {
    return [...this.nodes.keys()].filter((n) => this.canReach(name, n));
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inFlight++;
    return p.finally(() => {
      this.inFlight--;
      if (this.inFlight === 0) {
        const ws = this.waiters;
        this.waiters = [];
        for (const w of ws) w();
      }
    });
  }

  async deliverRequest(from: string, to: string, req: FederationRequest): Promise<FederationResponse> {
    if (!this.canReach(from, to)) {
      this.stats.refused++;
      throw new UnreachableError(to, `${to} cannot be reached from ${from}`);
    }
    this.stats.requests++;
    const node = this.nodes.get(to)!;
    const sent = this.intercept?.(from, to, req) ?? req;
    return this.track(
      (async () => {
        // A hop through the event loop, as a real connection would take.
        await new Promise((r) => setImmediate(r));
        const res = await node.inbound.handleRequest(from, copy(sent));
        if (!this.canReach(from, to)) throw new UnreachableError(to, `${to} went away`);
        return copy(res);
      })(),
    );
  }

  /** Returns the servers the message was handed to. */
  deliverGossip(from: string, roomId: string, message: JsonObject): string[] {
    if (this.gossipFails) throw new Error('gossip publish failed');
    const reached: string[] = [];
    for (const [name, node] of this.nodes) {
      if (!node.transport.topics.has(roomId) || !this.canReach(from, name)) continue;
      this.stats.gossip++;
      reached.push(name);
      void this.track(
        (async () => {
          await new Promise((r) => setImmediate(r));
          await node.inbound.handleGossip(roomId, from, copy(message));
        })(),
      ).catch(() => {});
    }
    return reached;
  }

  /** Resolves when no request or gossip is being delivered. */
  quiet(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  offline(name: string): void {
    this.down.add(name);
  }

  online(name: string): void {
    this.down.delete(name);
    this.announce();
  }

  partition(...groups: string[][]): void {
    this.groups = new Map();
    groups.forEach((g, i) => g.forEach((n) => this.groups!.set(n, i)));
  }

  heal(): void {
    this.groups = undefined;
    this.announce();
  }

  /** Tells every server about every server it can reach (as a transport does on (re)connection). */
  private announce(): void {
    for (const [name, node] of this.nodes) {
      for (const other of this.reachableFrom(name)) node.inbound.peerConnected?.(other);
    }
  }
}

export interface Federation {
  readonly net: MemoryNetwork;
  readonly servers: Homeserver[];
  /** Adds a server (on fresh storage unless `kv` is given, e.g. a restarted server's). */
  add(kv?: Kv): Promise<Homeserver>;
  offline(hs: Homeserver): void;
  online(hs: Homeserver): void;
  partition(...groups: Homeserver[][]): void;
  heal(): void;
  /** Waits until the network is quiet and every server's queues are idle (a few rounds, as work begets work). */
  settle(): Promise<void>;
  stop(): Promise<void>;
}

export async function newFederation(
  n: number,
  opts: { config?: Partial<HomeserverConfig>; retryBaseMs?: number } = {},
): Promise<Federation> {
  const net = new MemoryNetwork();
  const servers: Homeserver[] = [];
  const add = async (kv?: Kv): Promise<Homeserver> => {
    const store = kv ?? (await openMemoryKv({ name: `fed-${++counter}`, stores: HOMESERVER_STORES }));
    const transport = net.transport();
    const hs = await createHomeserver(
      { kv: store, network: transport, federationOptions: { retryBaseMs: opts.retryBaseMs ?? 50, retryMaxMs: 500 } },
      opts.config ?? {},
    );
    net.attach(hs.serverName, hs.federation, transport);
    servers.push(hs);
    return hs;
  };
  for (let i = 0; i < n; i++) await add();
  const settle = async () => {
    for (let round = 0; round < 50; round++) {
      await net.quiet();
      await Promise.all(servers.map((s) => s.federation.sender.whenIdle()));
      await new Promise((r) => setTimeout(r, 5));
      if (await isQuiet()) return;
    }
  };
  const isQuiet = async () => {
    await net.quiet();
    for (const s of servers) {
      const st = s.federation.status().queues;
      if (st.some((q) => q.waiting > 0 && q.retryInMs === undefined)) return false;
    }
    return true;
  };
  return {
    net,
    servers,
    add,
    offline: (hs) => net.offline(hs.serverName),
    online: (hs) => net.online(hs.serverName),
    partition: (...groups) => net.partition(...groups.map((g) => g.map((h) => h.serverName))),
    heal: () => net.heal(),
    settle,
    async stop() {
      for (const s of servers) await s.stop();
    },
  };
}

/** Polls `check` until it returns a value that is not undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(check: () => Promise<T | undefined | false>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A client's view through /sync: keeps the token, accumulates what arrived per room (timeline events, ephemeral
 * events, invites, leaves), and long-polls until a condition holds.
 */
export class SyncView {
  private since?: string;
  readonly timeline = new Map<string, any[]>();
  readonly ephemeral = new Map<string, any[]>();
  readonly invites = new Map<string, any>();
  readonly left = new Set<string>();
  readonly presence: any[] = [];
  readonly toDevice: any[] = [];
  readonly deviceListsChanged = new Set<string>();

  constructor(
    readonly hs: Homeserver,
    readonly user: { accessToken: string; userId: string },
  ) {}

  async poll(timeoutMs = 0): Promise<any> {
    const q = new URLSearchParams({ timeout: String(timeoutMs), set_presence: 'offline' });
    if (this.since) q.set('since', this.since);
    const res = await this.hs.fetch(
      new Request(`http://localhost/_matrix/client/v3/sync?${q}`, { headers: { authorization: `Bearer ${this.user.accessToken}` } }),
    );
    const body = (await res.json()) as any;
    if (res.status !== 200) throw new Error(`sync ${res.status}: ${JSON.stringify(body)}`);
    this.since = body.next_batch;
    for (const [roomId, r] of Object.entries<any>(body.rooms?.join ?? {})) {
      const tl = this.timeline.get(roomId) ?? [];
      tl.push(...(r.timeline?.events ?? []));
      this.timeline.set(roomId, tl);
      const eph = this.ephemeral.get(roomId) ?? [];
      eph.push(...(r.ephemeral?.events ?? []));
      this.ephemeral.set(roomId, eph);
      this.invites.delete(roomId);
    }
    for (const [roomId, r] of Object.entries<any>(body.rooms?.invite ?? {})) this.invites.set(roomId, r);
    for (const roomId of Object.keys(body.rooms?.leave ?? {})) {
      this.left.add(roomId);
      this.invites.delete(roomId);
    }
    this.presence.push(...(body.presence?.events ?? []));
    this.toDevice.push(...(body.to_device?.events ?? []));
    for (const u of body.device_lists?.changed ?? []) this.deviceListsChanged.add(u);
    return body;
  }

  /** Polls until `check` passes (long polls of up to 1 s each). */
  async until<T>(check: () => T | undefined | false, timeoutMs = 10_000, what = 'sync condition'): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await this.poll(Math.min(1000, Math.max(0, end - Date.now())));
    }
  }

  /** Bodies of the m.room.message events seen in a room, in order. */
  messages(roomId: string): string[] {
    return (this.timeline.get(roomId) ?? []).filter((e) => e.type === 'm.room.message').map((e) => e.content.body);
  }

  waitForMessage(roomId: string, body: string, timeoutMs?: number): Promise<true> {
    return this.until(() => this.messages(roomId).includes(body), timeoutMs, `message ${JSON.stringify(body)}`);
  }
}
