/**
 * Serves the homeserver over node:http, with an AbortSignal per request that fires when the client disconnects (so
 * long polls stop), responses streamed with backpressure, keep-alive, and a graceful close.
 *
 * Two ways in:
 * - `handle` (the homeserver's `handle`, router.ts) for the paths it claims (`handlePaths`): the request goes in as
 *   plain data — headers as an object, a small body (declared Content-Length up to PRELOAD_MAX: every event, every
 *   JSON request) read whole, a larger or chunked one as a stream — and the answer comes back as plain data, written
 *   with one writeHead/end. Building a WHATWG Request and reading a Response back cost more than the rest of a
 *   small request together (undici objects, header lists, web streams).
 * - `fetch` for everything else (the page's static files, the admin API): a web Request, a web Response.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ApiLogger } from '../api/errors.js';
import { asMatrixError, errorResponse, tooLarge, unknown } from '../api/errors.js';
import type { BodySource } from '../api/request.js';
import type { PlainRequest, PlainResponse } from '../api/router.js';
import { errorPlain } from '../api/router.js';

export interface ServeHttpInit {
  readonly host: string;
  /** 0 picks a free port; the returned `url` has the real one. */
  readonly port: number;
  fetch(request: Request): Promise<Response>;
  /**
   * Serves requests as plain data, without WHATWG Request/Response objects (the homeserver's `handle`). Used for
   * requests whose path starts with one of `handlePaths` (default: every path); `fetch` gets the others.
   */
  handle?(request: PlainRequest): Promise<PlainResponse>;
  readonly handlePaths?: readonly string[];
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

const HOST_HEADER = /^[A-Za-z0-9.\-:[\]]+$/;

export async function serveHttp(init: ServeHttpInit): Promise<HttpHost> {
  const maxBodyBytes = init.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const logger = init.logger;
  const handlePaths = init.handlePaths;
  const inflight = new Set<{ abort: LazyAbort; done: Promise<void> }>();
  let closing = false;
  let origin = '';

  const server = createServer({ keepAlive: true }, (req, res) => {
    const abort = new LazyAbort();
    const entry = { abort, done: Promise.resolve() };
    entry.done = serve(req, res, abort).catch((e: unknown) => {
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

  function claims(pathname: string): boolean {
    if (init.handle === undefined) return false;
    if (handlePaths === undefined) return true;
    for (const p of handlePaths) if (pathname.startsWith(p)) return true;
    return false;
  }

  async function serve(req: IncomingMessage, res: ServerResponse, abort: LazyAbort): Promise<void> {
    // The client going away before the response is complete aborts the handler's signal.
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const method = (req.method ?? 'GET').toUpperCase();
    // One pass over the raw headers; Node's own `req.headers` object is then never built.
    const headers = headerRecord(req.rawHeaders);
    const declared = headers['content-length'];
    if (declared !== undefined && Number(declared) > maxBodyBytes) {
      writePlain(req, res, errorPlain(tooLarge(`Request body exceeds ${maxBodyBytes} bytes`)), method, true);
      return;
    }
    let url: URL;
    try {
      // The Host header names the origin the client used (base URLs in responses); fall back to the bound address.
      const host = headers.host;
      const base = host && HOST_HEADER.test(host) ? `http://${host}` : origin;
      const target = req.url ?? '/';
      // An origin-form target (`/path?query`, RFC 9112 §3.2.1) is joined to the base and parsed once (`new URL(target,
      // base)` parses the base too), and stays a path even when it starts with `//`; an absolute-form one is parsed
      // against the base.
      url = target.startsWith('/') ? new URL(base + target) : new URL(target, base);
    } catch (e) {
      logger?.debug?.('http host: unparseable request', e);
      writePlain(req, res, errorPlain(unknown('Malformed request', 400)), method, true);
      return;
    }
    const hasBody = method !== 'GET' && method !== 'HEAD';
    let bytes: Uint8Array | undefined;
    if (hasBody && declared !== undefined && Number(declared) <= PRELOAD_MAX) {
      try {
        bytes = await readWhole(req);
      } catch {
        // The client went away mid-body: nobody is left to answer.
        return;
      }
    }

    if (claims(url.pathname)) {
      const body: BodySource = !hasBody ? null : (bytes ?? bodyStream(req, maxBodyBytes));
      const plain: PlainRequest = {
        method,
        url,
        headers,
        body,
        get signal() {
          return abort.signal;
        },
      };
      let response: PlainResponse;
      try {
        response = await init.handle!(plain);
      } catch (e) {
        response = errorPlain(asMatrixError(e, logger));
      }
      await writeStreamable(req, res, response, method, closing);
      return;
    }

    let request: Request;
    try {
      request = toRequest(req, method, url, abort.signal, maxBodyBytes, bytes);
    } catch (e) {
      logger?.debug?.('http host: unparseable request', e);
      writePlain(req, res, errorPlain(unknown('Malformed request', 400)), method, true);
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

/**
 * A request's abort signal, made only when something asks for it: most requests (a send, a join) finish without
 * anyone listening, and an AbortController per request showed in profiles. Aborting before it exists makes it
 * born aborted.
 */
class LazyAbort {
  private controller: AbortController | undefined;
  private aborted = false;

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort();
    }
    return this.controller.signal;
  }

  abort(): void {
    this.aborted = true;
    this.controller?.abort();
  }
}

/** Request headers as one object: lower-case names, a repeated header's values joined with ", " (as `Headers` does). */
function headerRecord(raw: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (name.startsWith(':') || HOP_BY_HOP.has(name)) continue;
    const value = raw[i + 1];
    const had = headers[name];
    headers[name] = had === undefined ? value : `${had}, ${value}`;
  }
  return headers;
}

function toRequest(req: IncomingMessage, method: string, url: URL, signal: AbortSignal, max: number, bytes?: Uint8Array): Request {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i];
    if (name.startsWith(':') || HOP_BY_HOP.has(name.toLowerCase())) continue;
    headers.append(name, raw[i + 1]);
  }
  const init: RequestInit & { duplex?: 'half' } = { method, headers };
  if (method !== 'GET' && method !== 'HEAD') {
    if (bytes !== undefined) {
      init.body = bytes as BodyInit;
    } else {
      init.body = bodyStream(req, max);
      init.duplex = 'half';
    }
  }
  const request = new Request(url, init);
  // Our signal as the request's own: given to the constructor, undici would follow it with a second signal (a
  // listener and a finalization-registry entry per request).
  Object.defineProperty(request, 'signal', { value: signal });
  return request;
}

/** The whole body of a request (one whose Content-Length is small). Rejects if the client goes away first. */
function readWhole(req: IncomingMessage): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    // `on`, not `once`: the promise settles once anyway, and `once` wraps each listener (per request).
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('close', () => {
      if (!req.complete) reject(new DOMException('Client disconnected', 'AbortError'));
    });
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

/** The response head as node:http takes it: hop-by-hop headers dropped, `Connection: close` where needed. */
function responseHead(req: IncomingMessage, res: PlainResponse, forceClose: boolean): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in res.headers) {
    if (HOP_BY_HOP.has(name)) continue;
    out[name] = res.headers[name];
  }
  // A body left unread (refused as too large, or not needed) cannot be skipped on a kept-alive connection.
  if (forceClose || !req.complete) out.connection = 'close';
  return out;
}

/** Writes a response whose body is whole (or absent), with a Content-Length, in one writeHead/end. */
function writePlain(req: IncomingMessage, res: ServerResponse, response: PlainResponse, method: string, forceClose: boolean): void {
  if (res.destroyed) return;
  const head = responseHead(req, response, forceClose);
  const body = response.body;
  let data: string | Uint8Array | undefined;
  // 204 and 304 carry no body and no Content-Length (RFC 9110 §8.6); neither does an answer to HEAD here.
  const bodyless = method === 'HEAD' || response.status === 204 || response.status === 304;
  let length = 0;
  if (!bodyless && body !== null && !(body instanceof ReadableStream)) {
    data = body;
    length = typeof body === 'string' ? Buffer.byteLength(body, 'utf8') : body.byteLength;
    head['content-length'] = length;
  } else if (!bodyless) {
    head['content-length'] = 0;
  }
  if (response.statusText) res.writeHead(response.status, response.statusText, head);
  else res.writeHead(response.status, head);
  // A string body goes out as is: Node joins it to the header text, one socket write and no Buffer copy.
  if (data !== undefined && length > 0) {
    if (typeof data === 'string') res.end(data, 'utf8');
    else res.end(data);
  } else res.end();
}

/** Writes a plain response: whole bodies at once, a stream chunk by chunk with backpressure. */
async function writeStreamable(
  req: IncomingMessage,
  res: ServerResponse,
  response: PlainResponse,
  method: string,
  forceClose: boolean,
): Promise<void> {
  const body = response.body;
  if (!(body instanceof ReadableStream)) {
    writePlain(req, res, response, method, forceClose);
    return;
  }
  if (res.destroyed || method === 'HEAD') {
    await body.cancel().catch(() => {});
    if (!res.destroyed) writePlain(req, res, { ...response, body: null }, method, forceClose);
    return;
  }
  const head = responseHead(req, response, forceClose);
  await pump(res, body.getReader(), (first, rest) => {
    // A body in one chunk is sent with a Content-Length; a longer one chunked.
    if (!rest && response.status !== 204 && response.status !== 304) head['content-length'] = first?.byteLength ?? 0;
    if (response.statusText) res.writeHead(response.status, response.statusText, head);
    else res.writeHead(response.status, head);
  });
}

/** A web Response (the `fetch` path): head from its headers, body streamed. */
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
  if (forceClose || !req.complete) res.setHeader('Connection', 'close');

  if (method === 'HEAD' || response.body === null) {
    await response.body?.cancel().catch(() => {});
    res.end();
    return;
  }
  await pump(res, response.body.getReader(), () => {});
}

/**
 * Copies a body stream to the socket. Reads two chunks before writing anything, so `writeHead(first, rest)` can
 * send a one-chunk body (every JSON response) with a Content-Length instead of chunked.
 */
async function pump(
  res: ServerResponse,
  reader: ReadableStreamDefaultReader<Uint8Array>,
  writeHead: (first: Uint8Array | undefined, rest: boolean) => void,
): Promise<void> {
  try {
    const first = await reader.read();
    if (first.done) {
      writeHead(undefined, false);
      res.end();
      return;
    }
    const second = await reader.read();
    if (second.done) {
      writeHead(first.value, false);
      res.end(first.value);
      return;
    }
    writeHead(first.value, true);
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
