/**
 * The service worker: the Hearth homeserver for every tab of this origin, and the offline app shell.
 *
 * - `/_matrix/*` and `/.well-known/matrix/*` are answered by the homeserver (src/homeserver.ts — the same code the
 *   Node peer runs) on IndexedDB. Unknown paths there get its `404 M_UNRECOGNIZED`; nothing under them ever goes to
 *   the network.
 * - Everything else is the app shell, precached by workbox (the manifest is injected at build time by
 *   scripts/build.mjs); navigations get the precached index.html, so the app loads offline after the first visit.
 * - `skipWaiting` + `clients.claim`: a new version takes over at once. Nobody is logged out: tokens and data are in
 *   IndexedDB, and the old instance hands the database over cleanly (instance-lock.ts).
 *
 * Messages from pages: `{ type: 'hearth:claim' }` (take control of a page loaded with a hard reload),
 * `{ type: 'hearth:stats' }` → replies on the message port (or to the source) with {@link HostStats},
 * `{ type: 'hearth:request', … }` → a homeserver request sent as a message rather than a fetch (src/browser/sw-fetch.ts),
 * answered on the message port; with `conn`, the port stays open as the page's connection for later requests, and
 * the event holds a lease on the worker while it is used; `{ type: 'hearth:lease', conn }` renews that lease.
 *
 * https://w3c.github.io/ServiceWorker/ · https://developer.chrome.com/docs/workbox/modules/workbox-precaching
 */
import { cleanupOutdatedCaches, createHandlerBoundToURL, precacheAndRoute } from 'workbox-precaching';
import type { PrecacheEntry } from 'workbox-precaching';
import { NavigationRoute, registerRoute } from 'workbox-routing';
import type { Logger } from '../src/services/context.js';
import { HomeserverHost } from './homeserver-host.js';
import type { ConnectionMessage, RequestMessage, ResponseMessage } from './homeserver-host.js';
import { NetworkBridge, callLeaderFromWorker } from './network-bridge.js';
import type { BridgeHomeserver } from './network-bridge.js';

const scope = self as unknown as ServiceWorkerGlobalScope;

function consoleLogger(prefix: string): Logger {
  const line = (msg: string, data?: unknown): unknown[] => (data === undefined ? [`${prefix} ${msg}`] : [`${prefix} ${msg}`, data]);
  return {
    debug() {},
    info: (msg, data) => console.info(...line(msg, data)),
    warn: (msg, data) => console.warn(...line(msg, data)),
    error: (msg, data) => console.error(...line(msg, data)),
  };
}

const logger = consoleLogger('[hearth-sw]');
// Federation goes through the tab that runs the libp2p node (network-bridge.ts, src/browser/p2p/leader.ts).
const network: NetworkBridge = new NetworkBridge({
  homeserver: async (): Promise<BridgeHomeserver> => {
    const { hs, kv } = await host.ready();
    return { serverName: hs.serverName, seed: hs.identity.key.seed, kv, federation: hs.federation };
  },
  callLeader: () => callLeaderFromWorker(scope),
  logger,
});
const host = new HomeserverHost({ logger, network, updatePending });

/** Whether a newer version of this worker is installing or waiting to take over (homeserver-host.ts drains then). */
function updatePending(): boolean {
  const reg = scope.registration;
  // `self.serviceWorker` (this worker) where supported: while installing or waiting, this worker is not the older one.
  const me = (scope as { serviceWorker?: ServiceWorker }).serviceWorker;
  return (reg.installing !== null && reg.installing !== me) || (reg.waiting !== null && reg.waiting !== me);
}

/** Paths the homeserver owns: never the shell, never the network. */
function isHomeserverPath(pathname: string): boolean {
  return pathname.startsWith('/_matrix/') || pathname === '/_matrix' || pathname.startsWith('/.well-known/matrix/');
}

/** Whether a request sent as a message names a homeserver path of this origin (checked for every one). */
function acceptsUrl(href: string): boolean {
  let url: URL;
  try {
    url = new URL(href);
  } catch {
    return false;
  }
  return url.origin === scope.location.origin && isHomeserverPath(url.pathname);
}

// Registered before workbox's own fetch listener, so it sees homeserver requests first.
scope.addEventListener('fetch', (event: FetchEvent) => {
  const url = new URL(event.request.url);
  if (url.origin !== scope.location.origin || !isHomeserverPath(url.pathname)) return;
  event.respondWith(host.fetch(event.request));
});

// The precache manifest: replaced by the list of built files (with revisions) in production builds; absent when
// the dev server serves this file as it is (then the shell comes from the network).
const manifest = (self as unknown as { __WB_MANIFEST?: Array<PrecacheEntry | string> }).__WB_MANIFEST ?? [];
if (manifest.length > 0) {
  precacheAndRoute(manifest);
  cleanupOutdatedCaches();
  registerRoute(
    new NavigationRoute(createHandlerBoundToURL('/index.html'), {
      denylist: [/^\/_matrix(\/|$)/, /^\/\.well-known\//],
    }),
  );
}

scope.addEventListener('install', () => {
  host.announceUpdate();
  void scope.skipWaiting();
});

scope.addEventListener('activate', (event: ExtendableEvent) => {
  event.waitUntil(scope.clients.claim());
});

scope.addEventListener('message', (event: ExtendableMessageEvent) => {
  const msg = event.data as { type?: string } | null;
  if (msg?.type === 'hearth:claim') {
    event.waitUntil(scope.clients.claim());
  } else if (msg?.type === 'hearth:request') {
    // A request by message (src/browser/sw-fetch.ts): the same homeserver paths as fetches, from this origin only.
    const req = msg as RequestMessage;
    const port = event.ports[0];
    if (!port) return;
    if (event.origin !== scope.location.origin || !acceptsUrl(req.url)) {
      port.postMessage(
        (typeof req.id === 'number' ? { id: req.id, error: 'not a homeserver request of this origin' } : { error: 'not a homeserver request of this origin' }) satisfies ResponseMessage | ConnectionMessage,
      );
      port.close();
      return;
    }
    // waitUntil keeps the worker alive for the request, as a fetch event would (a long poll included); for a
    // connection, while the page uses it (its lease, see homeserver-host.ts `Connection`).
    if (typeof req.conn === 'string' && typeof req.id === 'number') event.waitUntil(host.connect({ ...req, conn: req.conn }, port, acceptsUrl));
    else event.waitUntil(host.serveMessage(req, port));
  } else if (msg?.type === 'hearth:skip-waiting') {
    // From a page (src/browser/sw-fetch.ts) while this version waits: the old worker was started again after
    // Chromium stopped it for this version, and a started worker is no longer asked to report idleness at once.
    // A `skipWaiting()` while installed makes Chromium ask it again. Harmless otherwise (we call it at install).
    if (event.origin === scope.location.origin) void scope.skipWaiting();
  } else if (msg?.type === 'hearth:lease') {
    // The page's requests on a connection outlived its lease: hold the worker for them with this event.
    if (event.origin !== scope.location.origin) return;
    const lease = host.renewLease(String((msg as { conn?: unknown }).conn));
    if (lease) event.waitUntil(lease);
  } else if (msg?.type === 'hearth:stats') {
    const reply = host.stats();
    if (event.ports[0]) event.ports[0].postMessage(reply);
    else (event.source as Client | null)?.postMessage({ type: 'hearth:stats', stats: reply });
  } else {
    const handled = network.onMessage(event);
    if (handled) event.waitUntil(handled);
  }
});
