/**
 * Page side of the message transport to the in-page homeserver: a `fetch` look-alike that sends `/_matrix` requests
 * to the controlling service worker as a `hearth:request` message with a reply port (sw/sw.ts,
 * sw/homeserver-host.ts `serveMessage`) instead of a fetch. Same homeserver, same answers; in Chromium a message
 * round trip costs about a tenth of a fetch routed through the worker (bench/browser.ts: ~0.5 ms and ~0.7 ms of CPU
 * against ~3.5 ms and ~4 ms on the CI machine), which is most of a send's latency budget.
 *
 * Anything else (another origin, a non-homeserver path, a body that is not a string, no controlling worker) goes
 * to the real `fetch`. Pass it as the client's fetch function: `new MatrixApi({ baseUrl, fetch: serviceWorkerFetch })`.
 *
 * https://w3c.github.io/ServiceWorker/#dom-serviceworker-postmessage
 */

/** What the worker answers on the reply port (sw/homeserver-host.ts `ResponseMessage`). */
type Reply =
  | { status: number; statusText: string; headers: Array<[string, string]>; body: string | Uint8Array | ArrayBuffer | null; error?: undefined }
  | { error: string }
  | { type: 'accepted' };

/**
 * How long the worker may take to say it has the request (it answers at once, after starting if it was stopped).
 * Without that word — a message can be lost where a fetch would not be (a worker being replaced) — an idempotent
 * request (GET, HEAD, PUT: Matrix PUTs carry a transaction ID or replace a whole resource) goes by fetch instead, and
 * any other fails as a network request would (the client decides whether to retry).
 */
const ACCEPT_TIMEOUT_MS = 10_000;

function isHomeserverPath(pathname: string): boolean {
  return pathname.startsWith('/_matrix/') || pathname === '/_matrix' || pathname.startsWith('/.well-known/matrix/');
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The request was aborted', 'AbortError');
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
  return new Promise<Response>((resolve, reject) => {
    const channel = new MessageChannel();
    const port = channel.port1;
    let accepted = false;
    const method = (init.method ?? 'GET').toUpperCase();
    const timer = setTimeout(() => {
      if (accepted) return;
      finish();
      if (method === 'GET' || method === 'HEAD' || method === 'PUT') fetch(input, init).then(resolve, reject);
      else reject(new TypeError('the homeserver worker did not take the request; retry'));
    }, ACCEPT_TIMEOUT_MS);
    const finish = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      container.removeEventListener('controllerchange', onReplaced);
      port.removeEventListener('close', onReplaced);
      port.onmessage = null;
      port.close();
    };
    const onAbort = (): void => {
      port.postMessage({ type: 'abort' });
      finish();
      reject(abortError(signal!));
    };
    // A message to a worker that is being replaced may never be answered: fail as a fetch to a gone server would.
    const onReplaced = (): void => {
      finish();
      reject(new TypeError('the homeserver worker was replaced while the request ran; retry'));
    };
    port.onmessage = (e: MessageEvent) => {
      const reply = e.data as Reply;
      if ('type' in reply) {
        accepted = true;
        return;
      }
      finish();
      if (reply.error !== undefined) {
        reject(new TypeError(`the homeserver worker could not answer: ${reply.error}`));
        return;
      }
      // Statuses a Response cannot be built with (101, 204 with a body …) do not occur; 204/304 have no body.
      const nullBody = reply.status === 204 || reply.status === 304 || reply.status === 205;
      resolve(new Response(nullBody ? null : (reply.body as BodyInit | null), { status: reply.status, statusText: reply.statusText, headers: reply.headers }));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    container.addEventListener('controllerchange', onReplaced);
    // Chromium closes our end when the worker holding the other one is gone (stopped or crashed mid-request).
    port.addEventListener('close', onReplaced);
    worker.postMessage(
      {
        type: 'hearth:request',
        method,
        url: url.href,
        headers: [...new Headers(init.headers)],
        body: body ?? null,
      },
      [channel.port2],
    );
  });
}
