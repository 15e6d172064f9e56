/**
 * Page side of the in-page homeserver: registers the service worker (sw/sw.ts, emitted at /sw.js) and waits until
 * it controls this page, so that every following `fetch('/_matrix/...')` of the page is answered by the homeserver
 * in the worker. The client then uses `location.origin` as its homeserver base URL.
 *
 * https://w3c.github.io/ServiceWorker/#navigator-service-worker-register
 */
import { requestPersistentStorage } from './storage.js';

/** Where the worker is served and what it controls. */
export const SW_URL = '/sw.js';
export const SW_SCOPE = '/';

/** The page cannot have an in-page homeserver (no service worker support, or not a secure context). */
export class ServiceWorkerUnavailableError extends Error {
  override name = 'ServiceWorkerUnavailableError';
}

let ready: Promise<void> | undefined;

/**
 * Registers `/sw.js` (module worker, scope '/') and resolves once `navigator.serviceWorker.controller` is set.
 * On a first visit the worker calls `clients.claim()` on activation, which makes it the controller of this page
 * without a reload. Idempotent: later calls return the same promise. Also asks, once, for persistent storage (the
 * homeserver's data lives in this origin's IndexedDB; see storage.ts) without waiting for the answer.
 */
export function ensureHomeserver(options: { timeoutMs?: number } = {}): Promise<void> {
  ready ??= register(options.timeoutMs ?? 30_000).then(
    () => void requestPersistentStorage(),
    (err: unknown) => {
      ready = undefined; // let a later call try again
      throw err;
    },
  );
  return ready;
}

async function register(timeoutMs: number): Promise<void> {
  const container = (navigator as Navigator & { serviceWorker?: ServiceWorkerContainer }).serviceWorker;
  if (!container || !globalThis.isSecureContext) {
    throw new ServiceWorkerUnavailableError(
      'this browser cannot run the in-page homeserver: service workers need a secure context (https or localhost)',
    );
  }
  const controlled = new Promise<void>((resolve) => {
    if (container.controller) return resolve();
    container.addEventListener('controllerchange', () => resolve(), { once: true });
  });
  // updateViaCache 'none': the browser always revalidates sw.js itself, so a new build is noticed on the next visit.
  const registration = await container.register(SW_URL, { type: 'module', scope: SW_SCOPE, updateViaCache: 'none' });
  // After a hard reload (shift+reload) an active worker exists but does not control the page until asked to claim.
  if (!container.controller && registration.active) registration.active.postMessage({ type: 'hearth:claim' });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const state = (registration.installing ?? registration.waiting ?? registration.active)?.state ?? 'none';
      reject(new Error(`the homeserver's service worker did not take control within ${timeoutMs} ms (state: ${state})`));
    }, timeoutMs);
  });
  try {
    await Promise.race([controlled, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether this page is controlled by the homeserver's worker right now (false after a hard reload: shift+F5). */
export function isControlled(): boolean {
  return Boolean((navigator as Navigator & { serviceWorker?: ServiceWorkerContainer }).serviceWorker?.controller);
}
