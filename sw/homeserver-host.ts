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

/** How long an instance answers long polls at once after a new version announced itself. */
const DRAIN_MAX_MS = 10_000;

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
    // If the new version fails to install (say, offline), long polls must not stay instant: clients would spin.
    setTimeout(() => (this.draining = false), DRAIN_MAX_MS);
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
      if (this.draining) ctl.abort();
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
   * Answers one request that came as a `hearth:request` message (src/browser/sw-fetch.ts) instead of a fetch: a
   * page ↔ worker round trip by message costs a fraction of a fetch's (no network-stack request, no response data
   * pipe). It is served as plain data (`hs.handle`): no Request, Headers or Response objects and no body streams on
   * this side, and a text answer goes back as the string it is. The answer goes to `port`; an `{ type: 'abort' }`
   * on the port aborts the request. Never rejects.
   */
  async serveMessage(msg: RequestMessage, port: MessagePort): Promise<void> {
    const ctl = new AbortController();
    port.onmessage = (e: MessageEvent) => {
      if ((e.data as { type?: string } | null)?.type === 'abort') ctl.abort();
    };
    // Tell the page we have it: without this word it sends the request by fetch instead (sw-fetch.ts).
    port.postMessage({ type: 'accepted' } satisfies ResponseMessage);
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
      const answer = await this.serve(longPoll, ctl.signal, (hs, signal) => hs.handle({ method, url, headers, body, signal }));
      if (answer instanceof Error) {
        const res = this.unavailable(answer);
        const text = await res.text();
        port.postMessage({ status: res.status, statusText: res.statusText, headers: [...res.headers], body: text } satisfies ResponseMessage);
        return;
      }
      port.postMessage(await replyOf(answer));
    } catch (e) {
      port.postMessage({ error: `${(e as Error)?.name ?? 'Error'}: ${(e as Error)?.message ?? String(e)}` } satisfies ResponseMessage);
    } finally {
      // Not port.close(): the page closes its end once it has the answer, and closing ours right after posting
      // is not needed to free the channel.
      port.onmessage = null;
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
}

/** The answer: a response, or `error` when none could be made (the page then sees a network error). */
export type ResponseMessage =
  | { status: number; statusText: string; headers: Array<[string, string]>; body: string | Uint8Array | ArrayBuffer | null; error?: undefined }
  | { error: string }
  | { type: 'accepted' };

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
