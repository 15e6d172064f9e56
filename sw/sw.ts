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
 * `{ type: 'hearth:request', … }` → a homeserver request sent as a message rather than a fetch (a quarter of the
 * cost; src/browser/sw-fetch.ts), answered on the message port.
 *
 * https://w3c.github.io/ServiceWorker/ · https://developer.chrome.com/docs/workbox/modules/workbox-precaching
 */
import { cleanupOutdatedCaches, createHandlerBoundToURL, precacheAndRoute } from 'workbox-precaching';
import type { PrecacheEntry } from 'workbox-precaching';
import { NavigationRoute, registerRoute } from 'workbox-routing';
import type { Logger } from '../src/services/context.js';
import { HomeserverHost } from './homeserver-host.js';
import type { RequestMessage, ResponseMessage } from './homeserver-host.js';
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
const host = new HomeserverHost({ logger, network });

/** Paths the homeserver owns: never the shell, never the network. */
function isHomeserverPath(pathname: string): boolean {
  return pathname.startsWith('/_matrix/') || pathname === '/_matrix' || pathname.startsWith('/.well-known/matrix/');
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
    let url: URL | undefined;
    try {
      url = new URL(req.url);
    } catch {
      url = undefined;
    }
    if (event.origin !== scope.location.origin || !url || url.origin !== scope.location.origin || !isHomeserverPath(url.pathname)) {
      port.postMessage({ error: 'not a homeserver request of this origin' } satisfies ResponseMessage);
      port.close();
      return;
    }
    // waitUntil keeps the worker alive for the request, as a fetch event would (a long poll included).
    event.waitUntil(host.serveMessage(req, port));
  } else if (msg?.type === 'hearth:stats') {
    const reply = host.stats();
    if (event.ports[0]) event.ports[0].postMessage(reply);
    else (event.source as Client | null)?.postMessage({ type: 'hearth:stats', stats: reply });
  } else {
    const handled = network.onMessage(event);
    if (handled) event.waitUntil(handled);
  }
});
