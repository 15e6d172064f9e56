/**
 * The homeserver inside the service worker: opened lazily on the first `/_matrix` request of each worker start,
 * with nothing authoritative kept in memory (IndexedDB holds it all), so the browser may stop the worker at any
 * moment. See docs/decisions/service-worker-host.md.
 *
 * Start-up = take the instance lock (instance-lock.ts) → open IndexedDB → run the schema migrations → load (or, on
 * the very first start, create) the server's key → build the services. Each phase is timed and logged, and
 * reported by {@link HomeserverHost.stats} (the page can ask for it with a `hearth:stats` message).
 */
import { createHomeserver } from '../src/homeserver.js';
import type { Homeserver } from '../src/homeserver.js';
import type { PlainResponse } from '../src/api/router.js';
import type { FederationTransport } from '../src/federation/transport.js';
import type { Logger } from '../src/services/context.js';
import { openIdbKv } from '../src/storage/idb-kv.js';
import type { Kv } from '../src/storage/kv.js';
import { runMigrations } from '../src/storage/migrations.js';
import { HOMESERVER_MIGRATIONS, HOMESERVER_STORES } from '../src/storage/schema.js';
import { CHANNEL_NAME, acquireInstanceLock } from './instance-lock.js';
import type { HeldLock } from './instance-lock.js';

/**
 * How long an instance drains after a new version announced itself, unless the registration shows that version
 * installing or waiting (then it drains until it is gone: taken over, or failed). Covers the moment between the
 * announcement and the registration's update reaching this worker.
 */
const DRAIN_MAX_MS = 10_000;
/** How often a draining instance looks again whether the new version is still installing or waiting. */
const DRAIN_RECHECK_MS = 1_000;

/** The IndexedDB database the in-page homeserver lives in. */
export const DB_NAME = 'hearth';

/** Milliseconds spent in each start-up phase. */
export interface StartupTimings {
  lockMs: number;
  openMs: number;
  migrateMs: number;
  homeserverMs: number;
  totalMs: number;
  lock: HeldLock['how'];
}

export interface HostStats {
  /** Random per worker start: a change means the worker was stopped and started again. */
  instanceId: string;
  /** Worker script evaluation time (ms since the epoch). */
  startedAt: number;
  serverName?: string;
  startup?: StartupTimings;
  served: number;
  /** Milliseconds spent inside the homeserver's `fetch`, summed over `served` requests (excludes the browser's
   *  dispatch to and from the worker). */
  servingMs: number;
  inFlight: number;
  /** Page connections opened (src/browser/sw-fetch.ts): each began with one message event. */
  connections: number;
  state: 'idle' | 'starting' | 'running' | 'retiring' | 'retired';
}

interface Running {
  hs: Homeserver;
  kv: Kv;
  lock: HeldLock;
}

export interface HostInit {
  logger: Logger;
  dbName?: string;
  /** How long to wait for an older instance to hand over before stealing the lock. */
  stealAfterMs?: number;
  /** How long a retiring instance waits for its running requests before closing anyway. */
  drainMs?: number;
  /** The federation transport (network-bridge.ts: forwards to the tab running libp2p); absent: no federation. */
  network?: FederationTransport;
  /**
   * Whether a newer version of this worker is installing or waiting to take over (sw.ts: the registration's
   * `installing` / `waiting`). Chromium activates a waiting version only once this one has no event running, so
   * while this holds leases let go as soon as their connection is idle and long polls answer at once.
   */
  updatePending?: () => boolean;
}

export class HomeserverHost {
  private running?: Promise<Running>;
  private state: HostStats['state'] = 'idle';
  /** Requests being served → their abort controller and whether they are a long poll (/sync). */
  private readonly inFlight = new Map<Promise<unknown>, [AbortController, boolean]>();
  private draining = false;
  private served = 0;
  private servingMs = 0;
  private startup?: StartupTimings;
  private serverName?: string;
  private readonly instanceId = crypto.randomUUID();
  private readonly startedAt = Date.now();
  private readonly channel: BroadcastChannel | undefined;
  /** Open page connections (src/browser/sw-fetch.ts) by their page-chosen ID. */
  private readonly connections = new Map<string, Connection>();
  private connectionsOpened = 0;

  constructor(private readonly init: HostInit) {
    this.channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(CHANNEL_NAME) : undefined;
    this.channel?.addEventListener('message', (e: MessageEvent) => {
      const msg = e.data as { type?: string; from?: string } | null;
      if (!msg || msg.from === this.instanceId) return;
      if (msg.type === 'draining') this.drain();
      else if (msg.type === 'handover' && this.state === 'running') void this.retire('a newer instance is taking over');
    });
  }

  /**
   * Called in the `install` event of a new worker version. Chromium activates the new version only once the old one
   * has no fetch in flight, and a /sync long poll holds one for up to its timeout: so we ask the running instance
   * (if any) to end its long polls now and answer new ones at once until it is replaced. It keeps serving.
   */
  announceUpdate(): void {
    this.channel?.postMessage({ type: 'draining', from: this.instanceId });
  }

  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    this.init.logger.info('a new version is installing: ending long polls so it can take over');
    for (const [ctl, longPoll] of this.inFlight.values()) if (longPoll) ctl.abort();
    // Chromium activates the new version only once this one has no event running: leases let go when idle.
    for (const conn of this.connections.values()) conn.release();
    // Drain while the new version installs or waits, however long that takes: a page sending every 100 ms keeps a
    // lease busy for up to LEASE_MAX_MS, so stopping on a fixed timer left a slow install waiting up to a minute. If
    // the new version fails to install (say, offline), long polls must not stay instant (clients would spin): stop
    // once the registration shows no newer version.
    const recheck = (): void => {
      if (this.init.updatePending?.()) setTimeout(recheck, DRAIN_RECHECK_MS);
      else this.draining = false;
    };
    setTimeout(recheck, DRAIN_MAX_MS);
  }

  stats(): HostStats {
    return {
      instanceId: this.instanceId,
      startedAt: this.startedAt,
      serverName: this.serverName,
      startup: this.startup,
      served: this.served,
      servingMs: Math.round(this.servingMs * 100) / 100,
      inFlight: this.inFlight.size,
      connections: this.connectionsOpened,
      state: this.state,
    };
  }

  /** Starts the homeserver if needed (used by the fetch path, and to warm up on activation). */
  ready(): Promise<Running> {
    if (this.state === 'retiring' || this.state === 'retired') return Promise.reject(new RetiredError());
    this.running ??= this.start().catch((e: unknown) => {
      this.running = undefined;
      this.state = 'idle';
      throw e;
    });
    return this.running;
  }

  /** Answers one `/_matrix` (or `/.well-known/matrix`) request. Never rejects. */
  async fetch(request: Request): Promise<Response> {
    const longPoll = request.method === 'GET' && new URL(request.url).pathname.endsWith('/sync');
    const answer = await this.serve(longPoll, request.signal, (hs, signal) =>
      hs.fetch(signal === request.signal ? request : new Request(request, { signal })),
    );
    return answer instanceof Error ? this.unavailable(answer) : answer;
  }

  /**
   * Runs one request on the homeserver: starts it if needed, tracks the request for stats and hand-over, and gives
   * a /sync long poll a signal we can abort (it then answers at once with what it has); other requests run to their
   * end. While draining, long polls answer at once. Resolves to the start-up failure instead of rejecting.
   */
  private async serve<T>(longPoll: boolean, signal: AbortSignal | undefined, run: (hs: Homeserver, signal: AbortSignal | undefined) => Promise<T>): Promise<T | Error> {
    let running: Running;
    try {
      running = await this.ready();
    } catch (e) {
      return e instanceof Error ? e : new Error(String(e));
    }
    const ctl = new AbortController();
    let sig = signal;
    if (longPoll) {
      if (this.releasing) ctl.abort();
      sig = signal ? AbortSignal.any([signal, ctl.signal]) : ctl.signal;
    }
    const t0 = performance.now();
    const answer = run(running.hs, sig);
    this.inFlight.set(answer, [ctl, longPoll]);
    try {
      return await answer;
    } finally {
      this.inFlight.delete(answer);
      this.served++;
      this.servingMs += performance.now() - t0;
    }
  }

  /**
   * Answers one request that came as a `hearth:request` message without a connection (a page running an older
   * src/browser/sw-fetch.ts): the answer goes to `port`, after an `accepted` word; an `{ type: 'abort' }` on the port
   * aborts the request. Never rejects.
   */
  async serveMessage(msg: RequestMessage, port: MessagePort): Promise<void> {
    const ctl = new AbortController();
    port.onmessage = (e: MessageEvent) => {
      if ((e.data as { type?: string } | null)?.type === 'abort') ctl.abort();
    };
    port.postMessage({ type: 'accepted' } satisfies ResponseMessage);
    try {
      port.postMessage(await this.answer(msg, ctl.signal));
    } finally {
      port.onmessage = null;
    }
  }

  /**
   * Opens a connection (src/browser/sw-fetch.ts): `first` came in a message event with `port`, the page's channel
   * for this and later requests. Answers `first` and every `hearth:request` posted on the port (each checked with
   * `accepts`, as the event's was), and returns the connection's first lease: what the event's `waitUntil` holds
   * (see {@link Connection}).
   */
  connect(first: RequestMessage & { conn: string }, port: MessagePort, accepts: (url: string) => boolean): Promise<void> {
    this.connections.get(first.conn)?.close();
    const conn: Connection = new Connection(first.conn, port, this, accepts, () => {
      if (this.connections.get(first.conn) === conn) this.connections.delete(first.conn);
    });
    this.connections.set(first.conn, conn);
    this.connectionsOpened++;
    conn.request(first);
    return conn.lease();
  }

  /** A `hearth:lease` event: the page's requests on connection `id` still run after its lease ended. */
  renewLease(id: string): Promise<void> | undefined {
    return this.connections.get(id)?.lease();
  }

  /**
   * Whether leases should let go as soon as their connection is idle: a new version is waiting to take over. Asks
   * the registration too: a worker started again after the `draining` broadcast (stopped while idle, woken by a
   * page's request) never heard it.
   */
  get releasing(): boolean {
    return this.draining || this.state === 'retiring' || this.state === 'retired' || (this.init.updatePending?.() ?? false);
  }

  /**
   * One request sent as a message, served as plain data (`hs.handle`): no Request, Headers or Response objects and
   * no body streams on this side, and a text answer goes back as the string it is. Never rejects.
   */
  async answer(msg: RequestMessage, signal: AbortSignal): Promise<ResponseMessage> {
    try {
      const url = new URL(msg.url);
      const method = msg.method.toUpperCase();
      // As `Headers.get` would show them: lower-case names, a repeated header's values joined with ", ".
      const headers: Record<string, string> = {};
      for (const [name, value] of msg.headers) {
        const k = name.toLowerCase();
        headers[k] = headers[k] === undefined ? value : `${headers[k]}, ${value}`;
      }
      const body = method === 'GET' || method === 'HEAD' ? null : msg.body === null ? null : typeof msg.body === 'string' ? msg.body : new Uint8Array(msg.body);
      const longPoll = method === 'GET' && url.pathname.endsWith('/sync');
      const answer = await this.serve(longPoll, signal, (hs, sig) => hs.handle({ method, url, headers, body, signal: sig }));
      if (answer instanceof Error) {
        const res = this.unavailable(answer);
        const text = await res.text();
        return { status: res.status, statusText: res.statusText, headers: [...res.headers], body: text };
      }
      return await replyOf(answer);
    } catch (e) {
      return { error: `${(e as Error)?.name ?? 'Error'}: ${(e as Error)?.message ?? String(e)}` };
    }
  }

  private unavailable(e: unknown): Response {
    const retiring = e instanceof RetiredError;
    if (!retiring) this.init.logger.error('the homeserver could not start', e);
    const body = retiring
      ? { errcode: 'M_UNKNOWN', error: 'The homeserver is restarting (a new version took over); retry.' }
      : { errcode: 'M_UNKNOWN', error: `The homeserver could not start: ${(e as Error)?.name ?? 'error'}` };
    return new Response(JSON.stringify(body), {
      status: 503,
      headers: { 'content-type': 'application/json', 'retry-after': '1', 'access-control-allow-origin': '*' },
    });
  }

  private async start(): Promise<Running> {
    this.state = 'starting';
    const { logger } = this.init;
    const t0 = performance.now();
    const lock = await acquireInstanceLock({
      locks: (navigator as Navigator & { locks?: LockManager }).locks,
      announce: () => this.channel?.postMessage({ type: 'handover', from: this.instanceId }),
      onLost: () => void this.retire('the instance lock was taken by another instance', true),
      stealAfterMs: this.init.stealAfterMs ?? 3_000,
    });
    const t1 = performance.now();
    let kv: Kv | undefined;
    try {
      // The row cache needs this connection to be the database's only writer: true once we hold the instance
      // lock normally. A stolen lock (an unresponsive holder that might still write) or no Web Locks: no cache.
      kv = await openIdbKv({ name: this.init.dbName ?? DB_NAME, stores: HOMESERVER_STORES, cache: lock.how === 'acquired' });
      const t2 = performance.now();
      await runMigrations(kv, HOMESERVER_MIGRATIONS);
      const t3 = performance.now();
      const hs = await createHomeserver({ kv, logger, ...(this.init.network ? { network: this.init.network } : {}) });
      const t4 = performance.now();
      const ms = (x: number) => Math.round(x * 100) / 100;
      this.startup = {
        lockMs: ms(t1 - t0),
        openMs: ms(t2 - t1),
        migrateMs: ms(t3 - t2),
        homeserverMs: ms(t4 - t3),
        totalMs: ms(t4 - t0),
        lock: lock.how,
      };
      this.serverName = hs.serverName;
      logger.info('homeserver started', { serverName: hs.serverName, ...this.startup });
      if (this.state === 'starting') this.state = 'running';
      return { hs, kv, lock };
    } catch (e) {
      await kv?.close().catch(() => undefined);
      lock.release();
      throw e;
    }
  }

  /**
   * Hands over to a newer instance: refuse new requests, end long polls, let running requests finish (at most
   * `drainMs`), close the database, release the lock. `now`: the lock is already gone (stolen), do not wait.
   */
  private async retire(reason: string, now = false): Promise<void> {
    if (this.state === 'retiring' || this.state === 'retired') return;
    this.state = 'retiring';
    this.init.logger.info(`retiring: ${reason}`);
    for (const conn of this.connections.values()) conn.release();
    const running = await this.running?.catch(() => undefined);
    for (const [ctl, longPoll] of this.inFlight.values()) if (longPoll) ctl.abort();
    if (!now) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled([...this.inFlight.keys()]),
        new Promise((r) => (timer = setTimeout(r, this.init.drainMs ?? 10_000))),
      ]);
      clearTimeout(timer);
    }
    if (running) {
      await running.hs.stop().catch(() => undefined);
      await running.kv.close().catch(() => undefined);
      running.lock.release();
    }
    this.state = 'retired';
  }
}

/** A request sent to the worker as a message (src/browser/sw-fetch.ts builds it). */
export interface RequestMessage {
  type: 'hearth:request';
  method: string;
  /** Absolute URL, on the worker's origin, under a homeserver path. */
  url: string;
  headers: Array<[string, string]>;
  body: string | ArrayBuffer | null;
  /** On a connection: the request's number, answered with the same `id`. */
  id?: number;
  /** In the message event that opens a connection: its ID (the event's port is the connection's). */
  conn?: string;
}

/** The answer: a response, or `error` when none could be made (the page then sees a network error). */
export type ResponseMessage =
  | { status: number; statusText: string; headers: Array<[string, string]>; body: string | Uint8Array | ArrayBuffer | null; error?: undefined }
  | { error: string }
  | { type: 'accepted' };

/** What the worker posts on a connection's port: answers by request `id`, and word about the connection. */
export type ConnectionMessage =
  | (ResponseMessage & { id: number })
  /** `locked`: the worker holds the connection's Web Lock ({@link connectionLockName}) while it is open. */
  | { type: 'connected'; locked: boolean }
  | { type: 'lease-end' };

/** The Web Lock a worker holds while connection `id` is open (src/browser/sw-fetch.ts waits for it to be free). */
export function connectionLockName(id: string): string {
  return `hearth-connection:${id}`;
}

/** A lease lets go after this long with no request running on its connection. */
export const LEASE_IDLE_MS = 5_000;
/**
 * A lease lets go after this long even when busy (the page then asks for a new one for the requests still running):
 * Chromium stops a worker whose event runs over 5 minutes.
 */
export const LEASE_MAX_MS = 60_000;

/**
 * A page's connection: requests posted on its port, answered on it by `id`, aborted by `{ type: 'abort', id }`.
 * Port messages are no events and do not keep the worker alive, so a connection is served under a lease: a promise
 * a message event's `waitUntil` holds (the event that opened it, or a `hearth:lease` one) until the connection has
 * been idle LEASE_IDLE_MS, at most LEASE_MAX_MS; then the page hears `lease-end`. While a new version waits to take
 * over (`release()`), a lease lets go as soon as nothing runs on it.
 */
class Connection {
  private readonly running = new Map<number, AbortController>();
  private endLease: (() => void) | undefined;
  private leaseStarted = 0;
  private lastActive = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  /** Releases the connection's Web Lock. */
  private unlock: (() => void) | undefined;

  constructor(
    readonly id: string,
    private readonly port: MessagePort,
    private readonly host: HomeserverHost,
    private readonly accepts: (url: string) => boolean,
    private readonly onClose: () => void,
  ) {
    port.onmessage = (e: MessageEvent) => {
      const msg = e.data as (RequestMessage & { id: number }) | { type: 'abort'; id: number } | null;
      if (msg?.type === 'hearth:request' && typeof msg.id === 'number') this.request(msg);
      else if (msg?.type === 'abort') this.running.get(msg.id)?.abort();
    };
    // The page closes its end once the lease is gone and its requests are answered (or the page went away).
    port.addEventListener('close', () => this.close());
    // Held while the connection is open: the browser releases it when this worker stops, which is how the page
    // learns that its running requests are lost (a port gives no word when the worker behind it is stopped).
    const locks = (navigator as Navigator & { locks?: LockManager }).locks;
    const connected = (locked: boolean): void => {
      if (!this.closed) port.postMessage({ type: 'connected', locked } satisfies ConnectionMessage);
    };
    if (!locks) connected(false);
    else {
      locks
        .request(connectionLockName(id), () => {
          // Closed before the lock was granted: nobody waits for it, so do not hold it until the worker stops.
          if (this.closed) return undefined;
          connected(true);
          return new Promise<void>((resolve) => (this.unlock = resolve));
        })
        .catch(() => connected(false));
    }
  }

  request(msg: RequestMessage): void {
    const id = msg.id!;
    if (!this.accepts(msg.url)) {
      this.port.postMessage({ id, error: 'not a homeserver request of this origin' } satisfies ConnectionMessage);
      return;
    }
    const ctl = new AbortController();
    this.running.set(id, ctl);
    void this.host.answer(msg, ctl.signal).then((reply) => {
      this.running.delete(id);
      this.lastActive = performance.now();
      if (!this.closed) this.port.postMessage({ ...reply, id } as ConnectionMessage);
      if (this.running.size === 0 && this.host.releasing) this.letGo();
    });
  }

  /** A lease: resolves when the connection has been idle LEASE_IDLE_MS, after LEASE_MAX_MS, or once released. */
  lease(): Promise<void> {
    this.endLease?.();
    this.leaseStarted = this.lastActive = performance.now();
    const p = new Promise<void>((resolve) => (this.endLease = resolve));
    this.check();
    return p;
  }

  /** A new version is waiting: let go of the lease as soon as nothing runs. */
  release(): void {
    if (this.running.size === 0) this.letGo();
  }

  private check = (): void => {
    this.timer = undefined;
    if (!this.endLease) return;
    const now = performance.now();
    const idleFor = this.running.size === 0 ? now - this.lastActive : 0;
    // A lease started or renewed while a new version waits (a renewal whose requests were answered meanwhile) must
    // not hold the worker for LEASE_IDLE_MS.
    const release = this.running.size === 0 && this.host.releasing;
    if (release || idleFor >= LEASE_IDLE_MS || now - this.leaseStarted >= LEASE_MAX_MS) {
      this.letGo();
      return;
    }
    // One timer per lease, re-armed for whichever comes first (no timer per request).
    const wait = Math.min(LEASE_IDLE_MS - idleFor, LEASE_MAX_MS - (now - this.leaseStarted));
    this.timer = setTimeout(this.check, Math.max(wait, 50));
  };

  private letGo(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const end = this.endLease;
    this.endLease = undefined;
    if (!end) return;
    if (!this.closed) this.port.postMessage({ type: 'lease-end' } satisfies ConnectionMessage);
    end();
    // The page stops using a connection without a lease; should its close not reach us, forget it here (a request
    // it sent just before hearing lease-end keeps it, with the new lease the page then asks for).
    setTimeout(() => {
      if (!this.endLease && this.running.size === 0) this.close();
    }, LEASE_IDLE_MS);
  }

  /** The page closed its end, or the connection is forgotten: stop answering on it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.letGo();
    for (const ctl of this.running.values()) ctl.abort();
    this.port.onmessage = null;
    this.port.close();
    this.unlock?.();
    this.onClose();
  }
}

/** A plain answer as a reply message: text stays the string it is; bytes are copied by postMessage (they may be
 *  the homeserver's own, so they are not transferred). */
async function replyOf(res: PlainResponse): Promise<ResponseMessage> {
  const headers: Array<[string, string]> = [];
  for (const name in res.headers) {
    const v = res.headers[name];
    if (Array.isArray(v)) for (const one of v) headers.push([name, one]);
    else headers.push([name, v]);
  }
  const b = res.body;
  // A streamed body (media) is read whole: a message carries one value.
  const body = b instanceof ReadableStream ? await new Response(b).arrayBuffer() : b;
  return { status: res.status, statusText: res.statusText ?? '', headers, body };
}

/** This instance handed over to a newer one and no longer serves. */
export class RetiredError extends Error {
  override name = 'RetiredError';
}
