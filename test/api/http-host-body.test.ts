/**
 * The Node host reads small bodies whole before the homeserver sees the request (http-host.ts PRELOAD_MAX): the
 * router's readBody gets the bytes directly, and the Request still behaves as one with that body for anything that
 * reads it itself; its signal still fires on disconnect; a client that leaves mid-body never reaches the homeserver.
 * The same holds for the plain-data entry (`handle`) that `hearth serve` uses for Matrix paths.
 */
import { request as httpRequest } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { defineEndpoint } from '../../src/api/endpoint.js';
import { createRouter } from '../../src/api/router.js';
import { serveHttp } from '../../src/node/http-host.js';
import type { HttpHost } from '../../src/node/http-host.js';

let host: HttpHost | undefined;
afterEach(async () => {
  await host?.close();
  host = undefined;
});

async function start(fetch: (r: Request) => Promise<Response>): Promise<HttpHost> {
  host = await serveHttp({ host: '127.0.0.1', port: 0, fetch, closeGraceMs: 2000 });
  return host;
}

describe('small request bodies', () => {
  it('reach a JSON endpoint through the router, and a too-large one is still refused with 413', async () => {
    const router = createRouter(
      { authenticate: async () => ({ userId: '@a:example.org' }) },
      {
        endpoints: [
          defineEndpoint({
            method: 'POST',
            path: '/_matrix/client/v3/echo',
            auth: 'none',
            operationId: 'echoTest',
            maxBodyBytes: 100,
            handler: ({ body }) => ({ got: body }),
          }),
        ],
      },
    );
    const { url } = await start((r) => router.fetch(r));
    const ok = await fetch(`${url}/_matrix/client/v3/echo`, { method: 'POST', body: JSON.stringify({ a: [1, 'ü'] }) });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ got: { a: [1, 'ü'] } });
    const big = await fetch(`${url}/_matrix/client/v3/echo`, { method: 'POST', body: JSON.stringify({ a: 'x'.repeat(200) }) });
    expect(big.status).toBe(413);
    expect((await big.json()).errcode).toBe('M_TOO_LARGE');
    const bad = await fetch(`${url}/_matrix/client/v3/echo`, { method: 'POST', body: '{not json' });
    expect(bad.status).toBe(400);
    expect((await bad.json()).errcode).toBe('M_NOT_JSON');
  });

  it('can still be read from the Request itself: body stream, text, json, arrayBuffer', async () => {
    const seen: unknown[] = [];
    const { url } = await start(async (r) => {
      const kind = new URL(r.url).pathname.slice(1);
      if (kind === 'stream') {
        const reader = r.body!.getReader();
        const parts: Uint8Array[] = [];
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          parts.push(value);
        }
        seen.push(Buffer.concat(parts).toString('utf8'));
      } else if (kind === 'text') seen.push(await r.text());
      else if (kind === 'json') seen.push(await r.json());
      else seen.push(Buffer.from(await r.arrayBuffer()).toString('utf8'));
      expect(r.bodyUsed).toBe(true);
      return new Response('{}', { headers: { 'content-type': 'application/json' } });
    });
    for (const kind of ['stream', 'text', 'json', 'bytes']) {
      const res = await fetch(`${url}/${kind}`, { method: 'PUT', body: JSON.stringify({ kind }) });
      expect(res.status).toBe(200);
    }
    expect(seen).toEqual(['{"kind":"stream"}', '{"kind":"text"}', { kind: 'json' }, '{"kind":"bytes"}']);
  });

  it('keep the request signal: it aborts when the client disconnects', async () => {
    let aborted!: () => void;
    const wasAborted = new Promise<void>((r) => (aborted = r));
    const { url } = await start(async (r) => {
      expect(await r.text()).toBe('{}');
      r.signal.addEventListener('abort', () => aborted());
      await Promise.race([wasAborted, new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
      return new Response('{}');
    });
    const req = httpRequest(`${url}/wait`, { method: 'POST', headers: { 'content-length': '2' } });
    req.on('error', () => {});
    req.end('{}');
    await new Promise((r) => setTimeout(r, 200));
    req.destroy();
    await wasAborted;
  });

  it('a client that leaves mid-body never reaches the homeserver', async () => {
    let calls = 0;
    const { url } = await start(async () => {
      calls++;
      return new Response('{}');
    });
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${url}/partial`, { method: 'PUT', headers: { 'content-length': '100' } });
      req.on('error', () => resolve());
      req.write('{"half":');
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 100);
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(calls).toBe(0);
    // The host still serves.
    const res = await fetch(`${url}/after`, { method: 'PUT', body: '{}' });
    expect(res.status).toBe(200);
    expect(calls).toBe(1);
  });
});

describe('small request bodies through handle (plain data)', () => {
  it('reach the router as bytes: JSON parsed, too large refused, bad JSON refused, ctx.request still readable', async () => {
    const seen: unknown[] = [];
    const router = createRouter(
      { authenticate: async () => ({ userId: '@a:example.org' }) },
      {
        endpoints: [
          defineEndpoint({
            method: 'POST',
            path: '/_matrix/client/v3/echo',
            auth: 'none',
            operationId: 'echoTest',
            maxBodyBytes: 100,
            handler: async ({ body, request }) => {
              seen.push(await request.json());
              return { got: body };
            },
          }),
        ],
      },
    );
    const handle = vi.fn(router.handle);
    host = await serveHttp({ host: '127.0.0.1', port: 0, fetch: () => Promise.reject(new Error('not here')), handle, closeGraceMs: 2000 });
    const { url } = host;
    const ok = await fetch(`${url}/_matrix/client/v3/echo`, { method: 'POST', body: JSON.stringify({ a: [1, 'ü'] }) });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ got: { a: [1, 'ü'] } });
    expect(seen).toEqual([{ a: [1, 'ü'] }]);
    expect(handle.mock.calls[0][0].body).toBeInstanceOf(Uint8Array); // read whole by the host, no stream
    const big = await fetch(`${url}/_matrix/client/v3/echo`, { method: 'POST', body: JSON.stringify({ a: 'x'.repeat(200) }) });
    expect(big.status).toBe(413);
    expect((await big.json()).errcode).toBe('M_TOO_LARGE');
    const bad = await fetch(`${url}/_matrix/client/v3/echo`, { method: 'POST', body: '{not json' });
    expect(bad.status).toBe(400);
    expect((await bad.json()).errcode).toBe('M_NOT_JSON');
  });

  it('a client that leaves mid-body never reaches the homeserver', async () => {
    const handle = vi.fn(async () => ({ status: 200, headers: {}, body: '{}' }));
    host = await serveHttp({ host: '127.0.0.1', port: 0, fetch: () => Promise.reject(new Error('not here')), handle, closeGraceMs: 2000 });
    const { url } = host;
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${url}/partial`, { method: 'PUT', headers: { 'content-length': '100' } });
      req.on('error', () => resolve());
      req.write('{"half":');
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 100);
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(handle).not.toHaveBeenCalled();
    const res = await fetch(`${url}/after`, { method: 'PUT', body: '{}' });
    expect(res.status).toBe(200);
    expect(handle).toHaveBeenCalledTimes(1);
  });
});
