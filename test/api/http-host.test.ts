import { request as httpRequest, Agent } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { versionsEndpoint } from '../../src/api/client/versions.js';
import type { AnyEndpoint } from '../../src/api/endpoint.js';
import { defineEndpoint } from '../../src/api/endpoint.js';
import { unknownToken } from '../../src/api/errors.js';
import { createRouter } from '../../src/api/router.js';
import type { Router } from '../../src/api/router.js';
import { serveHttp } from '../../src/node/http-host.js';
import type { HttpHost } from '../../src/node/http-host.js';

let host: HttpHost | undefined;
afterEach(async () => {
  await host?.close();
  host = undefined;
});

function homeserver(extra: AnyEndpoint[] = []) {
  return createRouter(
    {
      async authenticate(token) {
        if (token === 'alice') return { userId: '@alice:example.org' };
        throw unknownToken();
      },
    },
    { endpoints: [versionsEndpoint({ versions: ['v1.18', 'v1.19'] }), ...extra] },
  );
}

type Entry = Pick<Router, 'fetch' | 'handle'>;
/** Which of the homeserver's entries the host calls: the web `fetch`, or `handle` (plain data, as `hearth serve`). */
let mode: 'fetch' | 'handle' = 'fetch';

async function start(hs: Entry, maxBodyBytes?: number): Promise<HttpHost> {
  host =
    mode === 'fetch'
      ? await serveHttp({ host: '127.0.0.1', port: 0, fetch: hs.fetch, maxBodyBytes, closeGraceMs: 2000 })
      : await serveHttp({
          host: '127.0.0.1',
          port: 0,
          fetch: () => Promise.reject(new Error('fetch must not be called for a path handle claims')),
          handle: hs.handle,
          handlePaths: ['/_matrix/'],
          maxBodyBytes,
          closeGraceMs: 2000,
        });
  return host;
}

/** A raw node:http request, for what fetch() cannot do (chunked uploads, disconnecting, socket reuse). */
function raw(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; agent?: Agent },
  write?: (req: ReturnType<typeof httpRequest>) => void,
): Promise<{ res: IncomingMessage; body: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ res, body: Buffer.concat(chunks).toString('utf8'), reused: req.reusedSocket }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (write) write(req);
    else req.end();
  });
}

describe.each(['fetch', 'handle'] as const)('Node HTTP host (real loopback HTTP), homeserver entry: %s', (entry) => {
  beforeEach(() => {
    mode = entry;
  });

  it('serves /_matrix/client/versions', async () => {
    const { url } = await start(homeserver());
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${url}/_matrix/client/versions`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(Number(res.headers.get('content-length'))).toBeGreaterThan(0);
    expect(await res.json()).toEqual({ versions: ['v1.18', 'v1.19'], unstable_features: {} });
  });

  it('answers an unknown path with 404 M_UNRECOGNIZED and a preflight with the CORS headers', async () => {
    const { url } = await start(homeserver());
    const res = await fetch(`${url}/_matrix/client/v3/not/a/thing`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ errcode: 'M_UNRECOGNIZED' });
    const pre = await fetch(`${url}/_matrix/client/v3/sync`, { method: 'OPTIONS' });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-headers')).toBe('X-Requested-With, Content-Type, Authorization');
  });

  it('passes headers, query and a streamed body through, and decodes path parameters', async () => {
    const upload = defineEndpoint({
      method: 'POST',
      path: '/_matrix/media/v3/upload',
      auth: 'accessToken',
      operationId: 'uploadContent',
      async handler({ readBody, request, query, principal }) {
        const bytes = await readBody();
        let sum = 0;
        for (const b of bytes) sum = (sum + b) % 65521;
        return { size: bytes.byteLength, sum, type: request.headers.get('content-type'), filename: query.get('filename'), user: principal.userId };
      },
    });
    const { url } = await start(homeserver([upload]));
    const data = new Uint8Array(1024 * 1024 + 7).map((_, i) => i % 251);
    let expected = 0;
    for (const b of data) expected = (expected + b) % 65521;
    const res = await fetch(`${url}/_matrix/media/v3/upload?filename=a%20b.png`, {
      method: 'POST',
      headers: { Authorization: 'Bearer alice', 'Content-Type': 'image/png' },
      body: data,
    });
    expect(await res.json()).toEqual({ size: data.byteLength, sum: expected, type: 'image/png', filename: 'a b.png', user: '@alice:example.org' });
  });

  it('refuses a body over the host cap with 413 from its Content-Length, without calling the homeserver', async () => {
    const hs = homeserver();
    const fetchSpy = vi.fn(hs.fetch);
    const handleSpy = vi.fn(hs.handle);
    const { url } = await start({ fetch: fetchSpy, handle: handleSpy }, 1024);
    const { res, body } = await raw(`${url}/_matrix/client/v3/createRoom`, {
      method: 'POST',
      headers: { 'Content-Length': String(10 * 1024 * 1024), Authorization: 'Bearer alice' },
    }, (req) => req.end()); // headers only: the server must not wait for the 10 MiB
    expect(res.statusCode).toBe(413);
    expect(JSON.parse(body)).toMatchObject({ errcode: 'M_TOO_LARGE' });
    expect(res.headers.connection).toBe('close');
    expect(fetchSpy).not.toHaveBeenCalled();
    expect(handleSpy).not.toHaveBeenCalled();
  });

  it('refuses an oversized JSON body with 413 M_TOO_LARGE (router limit, chunked upload, not read to the end)', async () => {
    const createRoom = defineEndpoint({ method: 'POST', path: '/_matrix/client/v3/createRoom', auth: 'accessToken', operationId: 'createRoom', handler: () => ({ room_id: '!r:x' }) });
    const { url } = await start(homeserver([createRoom]));
    let written = 0;
    const { res, body } = await raw(`${url}/_matrix/client/v3/createRoom`, {
      method: 'POST',
      headers: { Authorization: 'Bearer alice', 'Transfer-Encoding': 'chunked' },
    }, (req) => {
      // Keep sending 16 KiB chunks until the response arrives (or 8 MiB, far past the 64 KiB limit).
      const chunk = Buffer.alloc(16 * 1024, 0x61);
      let answered = false;
      const pump = (): void => {
        while (!answered && written < 8 * 1024 * 1024) {
          written += chunk.length;
          if (!req.write(chunk)) {
            req.once('drain', pump);
            return;
          }
        }
        if (!answered) req.end();
      };
      req.on('response', () => (answered = true));
      req.write('{"name":"');
      pump();
    });
    expect(res.statusCode).toBe(413);
    expect(JSON.parse(body)).toMatchObject({ errcode: 'M_TOO_LARGE' });
    expect(written).toBeLessThan(8 * 1024 * 1024);
  });

  it('refuses a chunked body past the host cap with 413', async () => {
    const upload = defineEndpoint({
      method: 'POST',
      path: '/_matrix/media/v3/upload',
      auth: 'accessToken',
      operationId: 'uploadContent',
      handler: async ({ readBody }) => ({ size: (await readBody()).byteLength }),
    });
    const { url } = await start(homeserver([upload]), 100 * 1024);
    const { res, body } = await raw(`${url}/_matrix/media/v3/upload`, {
      method: 'POST',
      headers: { Authorization: 'Bearer alice', 'Transfer-Encoding': 'chunked' },
    }, (req) => {
      req.on('error', () => {});
      for (let i = 0; i < 20; i++) req.write(Buffer.alloc(16 * 1024));
      req.end();
    });
    expect(res.statusCode).toBe(413);
    expect(JSON.parse(body)).toMatchObject({ errcode: 'M_TOO_LARGE' });
  });

  it('aborts the handler signal when the client disconnects, so a long poll stops', async () => {
    let started!: () => void;
    const startedP = new Promise<void>((r) => (started = r));
    let abortedAfterMs: number | undefined;
    const sync = defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/sync',
      auth: 'accessToken',
      operationId: 'sync',
      async handler({ signal }) {
        const t0 = Date.now();
        started();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 30_000);
          signal.addEventListener('abort', () => {
            clearTimeout(timer);
            abortedAfterMs = Date.now() - t0;
            resolve();
          });
        });
        return { next_batch: 's' };
      },
    });
    const { url } = await start(homeserver([sync]));
    const req = httpRequest(`${url}/_matrix/client/v3/sync?timeout=30000`, { headers: { Authorization: 'Bearer alice' } });
    req.on('error', () => {});
    req.end();
    await startedP;
    req.destroy();
    await vi.waitFor(() => expect(abortedAfterMs).toBeDefined(), { timeout: 5000 });
    expect(abortedAfterMs!).toBeLessThan(5000);
  });

  it('gives a handler that asks for the signal only after the client left an already-aborted one', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const startedP = new Promise<void>((r) => (started = r));
    let seen: boolean | undefined;
    const late = defineEndpoint({
      method: 'GET',
      path: '/_matrix/test/late',
      auth: 'none',
      operationId: 'testLate',
      async handler(ctx) {
        started();
        await released;
        seen = ctx.signal.aborted;
        return {};
      },
    });
    const { url } = await start(homeserver([late]));
    const req = httpRequest(`${url}/_matrix/test/late`);
    req.on('error', () => {});
    req.end();
    await startedP;
    req.destroy();
    await new Promise((r) => setTimeout(r, 200));
    release();
    await vi.waitFor(() => expect(seen).toBe(true), { timeout: 5000 });
  });

  it('streams a response body chunk by chunk', async () => {
    const stream = defineEndpoint({
      method: 'GET',
      path: '/_matrix/test/stream',
      auth: 'none',
      operationId: 'testStream',
      handler: () => {
        let i = 0;
        const body = new ReadableStream<Uint8Array>({
          async pull(c) {
            if (i === 5) return c.close();
            await new Promise((r) => setTimeout(r, 5));
            c.enqueue(new TextEncoder().encode(`part${i++};`));
          },
        });
        return new Response(body, { headers: { 'Content-Type': 'text/plain' } });
      },
    });
    const { url } = await start(homeserver([stream]));
    const res = await fetch(`${url}/_matrix/test/stream`);
    expect(res.headers.get('transfer-encoding')).toBe('chunked');
    expect(await res.text()).toBe('part0;part1;part2;part3;part4;');
  });

  it('answers HEAD without a body, a wrong method with 405 and Allow, and joins repeated headers', async () => {
    const echo = defineEndpoint({
      method: 'GET',
      path: '/_matrix/test/headers',
      auth: 'none',
      operationId: 'testHeaders',
      handler: ({ request }) => ({ x: request.headers.get('x-test'), host: request.headers.has('connection') }),
    });
    const { url } = await start(homeserver([echo]));
    const head = await raw(`${url}/_matrix/client/versions`, { method: 'HEAD' });
    expect(head.res.statusCode).toBe(200);
    expect(head.body).toBe('');
    expect(head.res.headers['access-control-allow-origin']).toBe('*');
    const wrong = await fetch(`${url}/_matrix/client/versions`, { method: 'DELETE' });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('GET, HEAD, OPTIONS');
    expect(await wrong.json()).toMatchObject({ errcode: 'M_UNRECOGNIZED' });
    const echoed = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(`${url}/_matrix/test/headers`, { headers: ['Host', new URL(url).host, 'X-Test', 'a', 'X-Test', 'b'] as unknown as Record<string, string> }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      });
      req.on('error', reject);
      req.end();
    });
    // Hop-by-hop headers (Connection) never reach the homeserver.
    expect(JSON.parse(echoed)).toEqual({ x: 'a, b', host: false });
  });

  it("passes a handler's own Response through: status, text, several Set-Cookie headers", async () => {
    const custom = defineEndpoint({
      method: 'POST',
      path: '/_matrix/test/custom',
      auth: 'none',
      operationId: 'testCustom',
      handler: ({ body }) => {
        const headers = new Headers({ 'Content-Type': 'text/plain', 'X-Custom': 'yes' });
        headers.append('Set-Cookie', 'a=1');
        headers.append('Set-Cookie', 'b=2');
        return new Response(`got ${JSON.stringify(body)}`, { status: 202, statusText: 'Taken', headers });
      },
    });
    const { url } = await start(homeserver([custom]));
    // A truncated JSON text: 400 M_NOT_JSON before the handler runs.
    const { res, body } = await raw(`${url}/_matrix/test/custom`, { method: 'POST' }, (req) => req.end('{"k":"v"'));
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(body)).toMatchObject({ errcode: 'M_NOT_JSON' });
    const ok = await raw(`${url}/_matrix/test/custom`, { method: 'POST' }, (req) => req.end('{"k":"v"}'));
    expect(ok.res.statusCode).toBe(202);
    expect(ok.res.statusMessage).toBe('Taken');
    expect(ok.res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(ok.res.headers['x-custom']).toBe('yes');
    expect(ok.res.headers['access-control-allow-origin']).toBe('*');
    expect(ok.res.headers['content-length']).toBe(String(ok.body.length));
    expect(ok.body).toBe('got {"k":"v"}');
  });

  it("gives a binary endpoint the request's own body stream when it reads ctx.request.body", async () => {
    const upload = defineEndpoint({
      method: 'POST',
      path: '/_matrix/media/v3/upload',
      auth: 'none',
      operationId: 'uploadContent',
      async handler({ request, readBody }) {
        let n = 0;
        const reader = request.body!.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          n += value.byteLength;
        }
        // The stream went to the Request: reading it again through readBody finds it used up.
        const again = await readBody().then((b) => b.byteLength, (e: Error) => e.name);
        return { n, again: typeof again === 'number' ? 'bytes' : 'error' };
      },
    });
    const { url } = await start(homeserver([upload]));
    const data = new Uint8Array(200 * 1024).fill(3);
    const res = await fetch(`${url}/_matrix/media/v3/upload`, { method: 'POST', body: data });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ n: data.byteLength });
  });

  it('keeps connections alive between requests', async () => {
    const { url } = await start(homeserver());
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const a = await raw(`${url}/_matrix/client/versions`, { agent });
      const b = await raw(`${url}/_matrix/client/versions`, { agent });
      expect([a.res.statusCode, b.res.statusCode]).toEqual([200, 200]);
      expect(b.reused).toBe(true);
    } finally {
      agent.destroy();
    }
  });

  it('closes gracefully: in-flight long polls are aborted and answered, then the port is released', async () => {
    let started!: () => void;
    const startedP = new Promise<void>((r) => (started = r));
    const sync = defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/sync',
      auth: 'accessToken',
      operationId: 'sync',
      async handler({ signal }) {
        started();
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
        return { next_batch: 'closing' };
      },
    });
    const h = await start(homeserver([sync]));
    const pending = fetch(`${h.url}/_matrix/client/v3/sync`, { headers: { Authorization: 'Bearer alice' } });
    await startedP;
    const t0 = Date.now();
    await h.close();
    host = undefined;
    expect(Date.now() - t0).toBeLessThan(1500);
    const res = await pending;
    expect(await res.json()).toEqual({ next_batch: 'closing' });
    await expect(fetch(`${h.url}/_matrix/client/versions`)).rejects.toThrow();
  });
});
