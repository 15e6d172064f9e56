/**
 * Page side of the message transport to the in-page homeserver: a `fetch` look-alike that sends `/_matrix` requests
 * to the controlling service worker as messages (sw/sw.ts, sw/homeserver-host.ts) instead of fetches. Same
 * homeserver, same answers; in Chromium a fetch routed through the worker costs several times a message round trip.
 *
 * Requests go over a **connection**: a MessageChannel whose far end the worker keeps. The first request travels in
 * the `hearth:request` message event that hands the worker the port (`conn` set); later ones go over the port
 * itself. A message to the worker (`controller.postMessage`) goes through the browser process, which builds the
 * event with its client and lifetime bookkeeping: ~0.4–0.7 ms and as much CPU per request in Chromium, against
 * ~0.05 ms for a message on an open port (bench/browser.ts: most of what a message transport send cost beyond the
 * homeserver's own work).
 *
 * A port message is no event, so it does not keep the worker alive: the connecting event does, with a **lease**
 * (`waitUntil`) the worker holds while the connection is in use and a few seconds after, at most a minute at a time
 * (Chromium stops a worker whose event runs over 5 minutes). The worker says `lease-end` when it lets go; requests
 * still running then are covered by a new lease (`hearth:lease`, an event again), and the next new request opens a
 * new connection in an event of its own. So every request runs inside an event, as a fetch would.
 *
 * The worker answers the connecting event with `connected`, and holds a Web Lock named after the connection while it
 * is open; the page queues for that lock, which the browser frees when the worker stops: then the connection's
 * running requests fail (a port says nothing when the worker behind it is stopped). Without the `connected` word within ACCEPT_TIMEOUT_MS (a message
 * can be lost where a fetch would not be: a worker being replaced), the connection's idempotent requests (GET,
 * HEAD, PUT: Matrix PUTs carry a transaction ID or replace a whole resource) go by fetch instead and any other fails
 * as a network request would (the client decides whether to retry). A connection whose worker stops (its port
 * closes) or is replaced fails its running requests the same way.
 *
 * Anything else (another origin, a non-homeserver path, a body that is not a string, no controlling worker) goes
 * to the real `fetch`. Pass it as the client's fetch function: `new MatrixApi({ baseUrl, fetch: serviceWorkerFetch })`.
 *
 * https://w3c.github.io/ServiceWorker/#dom-serviceworker-postmessage
 */

/** What the worker posts on a connection's port (sw/homeserver-host.ts `ConnectionMessage`). */
type Reply =
  | { id: number; status: number; statusText: string; headers: Array<[string, string]>; body: string | Uint8Array | ArrayBuffer | null; error?: undefined }
  | { id: number; error: string }
  | { type: 'connected'; locked?: boolean }
  | { type: 'lease-end' };

/** How long the worker may take to say it has the connection (it answers at once, after starting if stopped). */
const ACCEPT_TIMEOUT_MS = 10_000;

/**
 * How long new requests wait for a new version that is ready to take over (see {@link takeoverPending}) before going
 * to the old one anyway. Activation took 6–20 ms after `installed` when the old worker was idle.
 */
const TAKEOVER_HOLD_MS = 3_000;

function isHomeserverPath(pathname: string): boolean {
  return pathname.startsWith('/_matrix/') || pathname === '/_matrix' || pathname.startsWith('/.well-known/matrix/');
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The request was aborted', 'AbortError');
}

interface Pending {
  resolve(res: Response): void;
  reject(err: unknown): void;
  /** What to do if the worker never says it took the connection. */
  unaccepted(): void;
  /** Stop listening for the caller's abort. */
  done(): void;
}

/** One page ↔ worker channel and the requests running on it. */
class Connection {
  readonly id = crypto.randomUUID();
  readonly port: MessagePort;
  readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private connected = false;
  /** The worker holds a lease for us: a new request may go over the port. */
  leased = true;
  /** Failed or replaced: no new request goes over it. */
  dead = false;
  private readonly timer: ReturnType<typeof setTimeout>;
  /** The worker's end, sent with the first request. */
  private transfer: MessagePort | undefined;
  /** Ends our wait for the worker's connection lock once we are done with the connection. */
  private readonly lockWait = new AbortController();

  constructor(
    readonly worker: ServiceWorker,
    private readonly container: ServiceWorkerContainer,
  ) {
    const channel = new MessageChannel();
    this.port = channel.port1;
    this.port.onmessage = (e: MessageEvent) => this.onReply(e.data as Reply);
    // Chromium closes our end when the worker holding the other one is gone (stopped or crashed mid-request).
    this.port.addEventListener('close', this.onGone);
    container.addEventListener('controllerchange', this.onGone);
    this.timer = setTimeout(() => this.unaccepted(), ACCEPT_TIMEOUT_MS);
    this.transfer = channel.port2;
  }

  /** Sends one request; the first one opens the connection in a message event. */
  send(message: Omit<RequestMessage, 'type' | 'id' | 'conn'>, pending: Pending): number {
    const id = this.nextId++;
    this.pending.set(id, pending);
    if (this.transfer) {
      const port = this.transfer;
      this.transfer = undefined;
      this.worker.postMessage({ type: 'hearth:request', ...message, id, conn: this.id } satisfies RequestMessage, [port]);
    } else {
      this.port.postMessage({ type: 'hearth:request', ...message, id } satisfies RequestMessage);
    }
    return id;
  }

  abort(id: number): void {
    if (!this.pending.delete(id)) return;
    this.port.postMessage({ type: 'abort', id });
    this.closeIfDone();
  }

  private onReply(reply: Reply): void {
    if ('type' in reply) {
      if (reply.type === 'connected') {
        this.connected = true;
        clearTimeout(this.timer);
        // The worker holds this lock while the connection is open; the browser frees it if the worker is stopped,
        // and a port gives no word of that: running requests would wait forever.
        const locks = reply.locked ? (navigator as Navigator & { locks?: LockManager }).locks : undefined;
        locks
          ?.request(`hearth-connection:${this.id}`, { signal: this.lockWait.signal }, () => this.onGone())
          .catch(() => undefined);
      } else if (reply.type === 'lease-end') {
        this.leased = false;
        // Requests still running need an event around them in the worker: ask for a new lease.
        if (this.pending.size > 0 && !this.dead) this.worker.postMessage({ type: 'hearth:lease', conn: this.id });
        this.closeIfDone();
      }
      return;
    }
    const p = this.pending.get(reply.id);
    if (!p) return; // aborted meanwhile
    this.pending.delete(reply.id);
    p.done();
    if (reply.error !== undefined) {
      p.reject(new TypeError(`the homeserver worker could not answer: ${reply.error}`));
    } else {
      // Statuses a Response cannot be built with (101, 204 with a body …) do not occur; 204/304 have no body.
      const nullBody = reply.status === 204 || reply.status === 304 || reply.status === 205;
      p.resolve(new Response(nullBody ? null : (reply.body as BodyInit | null), { status: reply.status, statusText: reply.statusText, headers: reply.headers }));
    }
    this.closeIfDone();
  }

  /** No word from the worker: fall back (idempotent requests by fetch) and never use this connection again. */
  private unaccepted(): void {
    if (this.connected || this.dead) return;
    const all = [...this.pending.values()];
    this.finish();
    for (const p of all) p.unaccepted();
  }

  /** The worker went away or was replaced: fail what is running, as a fetch to a gone server would. */
  private readonly onGone = (): void => {
    if (this.dead) return;
    const all = [...this.pending.values()];
    this.finish();
    for (const p of all) p.reject(new TypeError('the homeserver worker was replaced while the request ran; retry'));
  };

  private finish(): void {
    this.dead = true;
    this.leased = false;
    clearTimeout(this.timer);
    for (const p of this.pending.values()) p.done();
    this.pending.clear();
    this.container.removeEventListener('controllerchange', this.onGone);
    this.port.removeEventListener('close', this.onGone);
    this.port.onmessage = null;
    this.port.close();
    this.lockWait.abort();
    if (current === this) current = undefined;
  }

  /** A connection that lost its lease is closed once its last request is answered. */
  private closeIfDone(): void {
    if (!this.leased && this.pending.size === 0 && !this.dead) this.finish();
  }
}

/** The connection new requests use, while its worker controls the page and holds the lease. */
let current: Connection | undefined;

/**
 * Update take-over. Chromium activates a waiting version (it called `skipWaiting`) only once the old worker is idle:
 * it asks the old worker to report idleness at once (idle delay 0) and stops it then. If a message event for the old
 * worker arrives while it is being stopped, Chromium starts it again, and the restarted worker has the normal 30 s
 * idle delay: a page sending more often than that keeps the new version waiting (up to Chromium's 5-minute limit).
 * Seen as ~1 run in 3 of the update test under load. So while a new version is `installed` (waiting) or
 * `activating`, new requests wait for `controllerchange` (at most TAKEOVER_HOLD_MS), leaving the old worker idle;
 * and the waiting worker is asked once to call `skipWaiting()` again, which makes Chromium ask the old worker for
 * its idleness at once again (it had been started again: see sw/sw.ts `hearth:skip-waiting`).
 */
let registration: ServiceWorkerRegistration | undefined;
let lookingUp = false;
/** The hold in progress, shared by the requests that wait. */
let holding: Promise<void> | undefined;
/** Waiting versions whose hold ran out: not held for again (the old worker may be serving a long request). */
const heldFor = new WeakSet<ServiceWorker>();

/** The version about to take over from `controller`, if one is waiting or activating and not yet held for. */
function takeoverPending(container: ServiceWorkerContainer, controller: ServiceWorker): ServiceWorker | undefined {
  if (!registration) {
    if (!lookingUp) {
      lookingUp = true;
      container.getRegistration().then(
        (r) => (registration = r),
        () => undefined,
      );
    }
    return undefined;
  }
  const next = registration.waiting ?? registration.active;
  if (!next || next === controller || heldFor.has(next)) return undefined;
  return next.state === 'installed' || next.state === 'activating' || next.state === 'activated' ? next : undefined;
}

/** Waits until `next` controls the page, is gone, or TAKEOVER_HOLD_MS passed. */
function holdFor(container: ServiceWorkerContainer, next: ServiceWorker): Promise<void> {
  holding ??= new Promise<void>((resolve) => {
    if (next.state === 'installed') next.postMessage({ type: 'hearth:skip-waiting' });
    const done = (): void => {
      clearTimeout(timer);
      container.removeEventListener('controllerchange', done);
      next.removeEventListener('statechange', onState);
      holding = undefined;
      resolve();
    };
    const onState = (): void => {
      if (next.state === 'redundant') done();
    };
    const timer = setTimeout(() => {
      heldFor.add(next);
      done();
    }, TAKEOVER_HOLD_MS);
    container.addEventListener('controllerchange', done);
    next.addEventListener('statechange', onState);
  });
  return holding;
}

/** `fetch`, with homeserver requests of this origin sent to the controlling service worker as messages. */
export function serviceWorkerFetch(input: string, init: RequestInit = {}): Promise<Response> {
  const container = (navigator as Navigator & { serviceWorker?: ServiceWorkerContainer }).serviceWorker;
  const worker = container?.controller;
  const url = new URL(input, location.href);
  const body = init.body;
  if (
    !container ||
    !worker ||
    url.origin !== location.origin ||
    !isHomeserverPath(url.pathname) ||
    (body !== undefined && body !== null && typeof body !== 'string')
  ) {
    return fetch(input, init);
  }
  const signal = init.signal ?? undefined;
  if (signal?.aborted) return Promise.reject(abortError(signal));
  const next = takeoverPending(container, worker);
  // Sent once the new version took over (or the hold ran out): to whichever worker then controls the page.
  if (next) return holdFor(container, next).then(() => serviceWorkerFetch(input, init));
  return new Promise<Response>((resolve, reject) => {
    const method = (init.method ?? 'GET').toUpperCase();
    if (!current || current.dead || !current.leased || current.worker !== worker) current = new Connection(worker, container);
    const conn = current;
    const onAbort = (): void => {
      conn.abort(id);
      reject(abortError(signal!));
    };
    const id = conn.send(
      { method, url: url.href, headers: [...new Headers(init.headers)], body: body ?? null },
      {
        resolve,
        reject,
        unaccepted() {
          if (method === 'GET' || method === 'HEAD' || method === 'PUT') fetch(input, init).then(resolve, reject);
          else reject(new TypeError('the homeserver worker did not take the request; retry'));
        },
        done: () => signal?.removeEventListener('abort', onAbort),
      },
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A request as the worker receives it (sw/homeserver-host.ts `RequestMessage`). */
interface RequestMessage {
  type: 'hearth:request';
  method: string;
  url: string;
  headers: Array<[string, string]>;
  body: string | null;
  id: number;
  conn?: string;
}
