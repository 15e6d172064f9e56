/**
 * The page side of an update take-over (src/browser/sw-fetch.ts `takeoverPending`), with stand-ins for the service
 * worker objects (no browser): while a new version waits to take over, new requests are held, not sent to the old
 * worker (a message event arriving while Chromium stops the old worker starts it again, and the new version then
 * waits for the old one's 30 s idle timeout: seen in sw-connection.test.ts's update test under load); the waiting
 * version is asked once to call skipWaiting again; after `controllerchange` the request goes to the new worker.
 */
import { afterEach, beforeEach, expect, it, vi } from 'vitest';

const ports: MessagePort[] = [];

class FakeWorker extends EventTarget {
  /** Message events sent to this worker. */
  readonly posted: Array<{ type?: string }> = [];
  /** Requests it got: in message events and on its connections' ports. Nobody answers them. */
  requests = 0;
  constructor(public state: ServiceWorkerState) {
    super();
  }
  postMessage(msg: { type?: string }, transfer?: MessagePort[]): void {
    this.posted.push(msg);
    if (msg.type === 'hearth:request') this.requests++;
    for (const p of transfer ?? []) {
      ports.push(p);
      p.onmessage = (e: MessageEvent) => {
        if ((e.data as { type?: string }).type === 'hearth:request') this.requests++;
      };
    }
  }
}

class FakeContainer extends EventTarget {
  constructor(
    public controller: FakeWorker,
    readonly registration: { waiting: FakeWorker | null; active: FakeWorker | null },
  ) {
    super();
  }
  getRegistration(): Promise<unknown> {
    return Promise.resolve(this.registration);
  }
}

let container: FakeContainer;

beforeEach(() => {
  vi.resetModules();
  const old = new FakeWorker('activated');
  container = new FakeContainer(old, { waiting: null, active: old });
  vi.stubGlobal('location', new URL('http://hearth.test/'));
  vi.stubGlobal('navigator', { serviceWorker: container });
});
afterEach(() => {
  vi.unstubAllGlobals();
  for (const p of ports.splice(0)) p.close();
});

const whoami = '/_matrix/client/v3/account/whoami';
const sent = (w: FakeWorker) => w.requests;
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

it('holds new requests while a new version waits, prods it once, and sends them to it after controllerchange', async () => {
  const { serviceWorkerFetch } = await import('../../src/browser/sw-fetch.js');
  const old = container.controller;
  // The first request goes at once (and looks the registration up); it is failed when its connection closes.
  serviceWorkerFetch(whoami).catch(() => undefined);
  expect(sent(old)).toBe(1);
  await new Promise((r) => setTimeout(r, 0));

  const next = new FakeWorker('installed');
  container.registration.waiting = next;
  const held = serviceWorkerFetch(whoami);
  held.catch(() => undefined);
  serviceWorkerFetch(whoami).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 50));
  expect(sent(old)).toBe(1); // nothing more for the old worker while the new one waits
  expect(next.posted).toEqual([{ type: 'hearth:skip-waiting' }]); // asked once, for both held requests

  next.state = 'activated';
  container.registration.waiting = null;
  container.registration.active = next;
  container.controller = next;
  container.dispatchEvent(new Event('controllerchange'));
  await new Promise((r) => setTimeout(r, 0));
  await tick();
  expect(sent(next)).toBe(2); // both held requests went to the new worker
  expect(next.posted.filter((m) => m.type === 'hearth:request')).toHaveLength(1); // on one new connection
  expect(sent(old)).toBe(1);
});

it('gives up holding after a while: the requests then go to the old worker, and the next ones are not held', async () => {
  const { serviceWorkerFetch } = await import('../../src/browser/sw-fetch.js');
  const old = container.controller;
  serviceWorkerFetch(whoami).catch(() => undefined);
  await tick();
  const next = new FakeWorker('installed');
  container.registration.waiting = next;
  serviceWorkerFetch(whoami).catch(() => undefined);
  await tick(1_000);
  expect(sent(old)).toBe(1);
  await tick(2_500); // the hold is 3 s
  expect(sent(old)).toBe(2);
  serviceWorkerFetch(whoami).catch(() => undefined);
  await tick();
  expect(sent(old)).toBe(3); // not held again for the same waiting version
  expect(next.posted).toEqual([{ type: 'hearth:skip-waiting' }]);
});
