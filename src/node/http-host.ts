/**
 * Serves a web-standard `fetch(request) → Response` (the homeserver) over node:http: IncomingMessage → Request with
 * a streamed body and an AbortSignal that fires when the client disconnects (so long polls stop), Response →
 * ServerResponse streamed with backpressure, keep-alive, and a graceful close.
 *
 * Small bodies (a declared Content-Length up to PRELOAD_MAX: every event, every JSON request) are read whole first
 * and handed to the router's `readBody` directly (request.ts `setHostBody`); the Request still exposes them as its
 * body. A web stream per request cost more than the rest of a small request together.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ApiLogger } from '../api/errors.js';
import { errorResponse, tooLarge, unknown } from '../api/errors.js';
import { setHostBody } from '../api/request.js';

export interface ServeHttpInit {
  readonly host: string;
  /** 0 picks a free port; the returned `url` has the real one. */
  readonly port: number;
  fetch(request: Request): Promise<Response>;
  /**
   * Hard cap on any request body, whatever the endpoint (default 100 MiB): a larger Content-Length is refused with
   * 413 before the homeserver sees the request, and a streamed body fails with 413 once it passes the cap.
   */
  readonly maxBodyBytes?: number;
  /** How long close() lets in-flight requests finish after aborting their signals (default 5 s). */
  readonly closeGraceMs?: number;
  readonly logger?: ApiLogger;
}

export interface HttpHost {
  /** `http://host:port`, with the port actually bound. */
  readonly url: string;
  /** Stops accepting, aborts in-flight requests' signals, waits for their responses (up to the grace), closes. */
  close(): Promise<void>;
}

const DEFAULT_MAX_BODY = 100 * 1024 * 1024;
/** Bodies up to this size (declared by Content-Length) are read whole before the homeserver sees the request. */
const PRELOAD_MAX = 64 * 1024;

// Connection-level headers (RFC 9110 §7.6.1) describe this hop, not the request the homeserver sees.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'http2-settings',
]);

export async function serveHttp(init: ServeHttpInit): Promise<HttpHost> {
  const maxBodyBytes = init.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const logger = init.logger;
  const inflight = new Set<{ abort: AbortController; done: Promise<void> }>();
  let closing = false;
  let origin = '';

  const server = createServer({ keepAlive: true }, (req, res) => {
    const abort = new AbortController();
    const entry = { abort, done: Promise.resolve() };
    entry.done = handle(req, res, abort).catch((e: unknown) => {
      logger?.error('http host: failed to answer a request', e);
      if (!res.headersSent) {
        res.statusCode = 500;
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ errcode: 'M_UNKNOWN', error: 'Internal server error' }));
      } else {
        res.destroy();
      }
    });
    inflight.add(entry);
    void entry.done.finally(() => inflight.delete(entry));
  });
  // Idle keep-alive connections stay open longer than most clients' own idle timeouts, so a client never reuses a
  // socket the server is just closing.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 70_000;

  async function handle(req: IncomingMessage, res: ServerResponse, abort: AbortController): Promise<void> {
    // The client going away before the response is complete aborts the handler's signal.
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const method = (req.method ?? 'GET').toUpperCase();
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > maxBodyBytes) {
      await writeResponse(req, res, errorResponse(tooLarge(`Request body exceeds ${maxBodyBytes} bytes`)), method, true);
      return;
    }
    let bytes: Uint8Array | undefined;
    if (method !== 'GET' && method !== 'HEAD' && declared !== undefined && Number(declared) <= PRELOAD_MAX) {
      try {
        bytes = await readWhole(req);
      } catch {
        // The client went away mid-body: nobody is left to answer.
        return;
      }
    }
    let request: Request;
    try {
      request = toRequest(req, method, abort.signal, maxBodyBytes, bytes);
    } catch (e) {
      logger?.debug?.('http host: unparseable request', e);
      await writeResponse(req, res, errorResponse(unknown('Malformed request', 400)), method, true);
      return;
    }
    let response: Response;
    try {
      response = await init.fetch(request);
    } catch (e) {
      response = errorResponse(e, logger);
    }
    await writeResponse(req, res, response, method, closing);
  }

  function toRequest(req: IncomingMessage, method: string, signal: AbortSignal, max: number, bytes?: Uint8Array): Request {
    const headers = new Headers();
    const raw = req.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i];
      if (name.startsWith(':') || HOP_BY_HOP.has(name.toLowerCase())) continue;
      headers.append(name, raw[i + 1]);
    }
    // The Host header names the origin the client used (base URLs in responses); fall back to the bound address.
    const host = req.headers.host;
    const base = host && /^[A-Za-z0-9.\-:[\]]+$/.test(host) ? `http://${host}` : origin;
    const url = new URL(req.url ?? '/', base);
    const hasBody = method !== 'GET' && method !== 'HEAD';
    const init: RequestInit & { duplex?: 'half' } = { method, headers };
    if (hasBody && bytes === undefined) {
      init.body = bodyStream(req, max);
      init.duplex = 'half';
    }
    const request = new Request(url, init);
    // Our signal as the request's own: given to the constructor, undici would follow it with a second signal (a
    // listener and a finalization-registry entry per request).
    Object.defineProperty(request, 'signal', { value: signal });
    if (bytes !== undefined) attachBody(request, bytes);
    return request;
  }

  const addr = await new Promise<AddressInfo>((resolve, reject) => {
    server.once('error', reject);
    server.listen(init.port, init.host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
  const hostPart = addr.family === 'IPv6' || addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  origin = `http://${hostPart}:${addr.port}`;

  let closed: Promise<void> | undefined;
  return {
    url: origin,
    close(): Promise<void> {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        for (const e of inflight) e.abort.abort();
        const grace = init.closeGraceMs ?? 5000;
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          Promise.allSettled([...inflight].map((e) => e.done)),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, grace);
          }),
        ]);
        clearTimeout(timer);
        server.closeAllConnections();
        await stopped;
      })();
      return closed;
    },
  };
}

/** The whole body of a request (one whose Content-Length is small). Rejects if the client goes away first. */
function readWhole(req: IncomingMessage): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new DOMException('Client disconnected', 'AbortError'));
    });
  });
}

/**
 * Gives a body-less Request the body the host read: `readBody` takes the bytes directly; `body`, `arrayBuffer()`,
 * `text()`, `json()` and `blob()` still work for anything that reads the request itself.
 */
function attachBody(request: Request, bytes: Uint8Array): void {
  setHostBody(request, bytes);
  let stream: ReadableStream<Uint8Array> | undefined;
  const body = (): ReadableStream<Uint8Array> =>
    (stream ??= new ReadableStream<Uint8Array>({
      start(controller) {
        if (bytes.byteLength > 0) controller.enqueue(bytes);
        controller.close();
      },
    }));
  Object.defineProperties(request, {
    body: { get: body },
    bodyUsed: { get: () => stream?.locked ?? false },
    arrayBuffer: { value: () => new Response(body()).arrayBuffer() },
    text: { value: () => new Response(body()).text() },
    json: { value: () => new Response(body()).json() },
    blob: { value: () => new Response(body()).blob() },
  });
}

/**
 * The request body as a web stream, pulled with backpressure. Past `max` bytes it errors with 413 M_TOO_LARGE.
 * Cancelling it (the router refusing a body) only stops reading: destroying the request would destroy the socket and
 * lose the 413 response; the response then carries `Connection: close` instead.
 */
function bodyStream(req: IncomingMessage, max: number): ReadableStream<Uint8Array> {
  let total = 0;
  let finished = false;
  const stop = (): void => {
    finished = true;
    req.pause();
    req.removeAllListeners('data');
  };
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        req.pause();
        req.on('data', (chunk: Buffer) => {
          if (finished) return;
          total += chunk.byteLength;
          if (total > max) {
            stop();
            controller.error(tooLarge(`Request body exceeds ${max} bytes`));
            return;
          }
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          if ((controller.desiredSize ?? 0) <= 0) req.pause();
        });
        req.once('end', () => {
          if (finished) return;
          finished = true;
          controller.close();
        });
        req.once('error', (e) => {
          if (finished) return;
          finished = true;
          controller.error(e);
        });
        req.once('close', () => {
          // 'close' without 'end': the client went away mid-body.
          if (finished) return;
          finished = true;
          controller.error(new DOMException('Client disconnected', 'AbortError'));
        });
      },
      pull() {
        if (!finished) req.resume();
      },
      cancel() {
        stop();
      },
    },
    { highWaterMark: 64 * 1024, size: (chunk) => chunk.byteLength },
  );
}

async function writeResponse(
  req: IncomingMessage,
  res: ServerResponse,
  response: Response,
  method: string,
  forceClose: boolean,
): Promise<void> {
  if (res.destroyed) {
    await response.body?.cancel().catch(() => {});
    return;
  }
  res.statusCode = response.status;
  if (response.statusText) res.statusMessage = response.statusText;
  for (const [name, value] of response.headers) {
    if (name === 'set-cookie' || HOP_BY_HOP.has(name)) continue;
    res.setHeader(name, value);
  }
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) res.setHeader('Set-Cookie', cookies);
  // A body left unread (refused as too large, or not needed) cannot be skipped on a kept-alive connection.
  if (forceClose || !req.complete) res.setHeader('Connection', 'close');

  if (method === 'HEAD' || response.body === null) {
    await response.body?.cancel().catch(() => {});
    res.end();
    return;
  }
  const reader = response.body.getReader();
  try {
    const first = await reader.read();
    if (first.done) {
      res.end();
      return;
    }
    const second = await reader.read();
    if (second.done) {
      // A body in one chunk (every JSON response): sent with a Content-Length instead of chunked.
      res.end(first.value);
      return;
    }
    let chunk: Uint8Array = first.value;
    let next: ReadableStreamReadResult<Uint8Array> = second;
    for (;;) {
      if (res.destroyed) {
        await reader.cancel().catch(() => {});
        return;
      }
      if (!res.write(chunk)) await drained(res);
      if (next.done) break;
      chunk = next.value;
      next = await reader.read();
    }
    res.end();
  } catch (e) {
    // Headers (and maybe part of the body) are out: the only honest signal left is to cut the connection.
    await reader.cancel(e).catch(() => {});
    res.destroy();
  } finally {
    reader.releaseLock();
  }
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
