/**
 * The Node host's request target → URL (src/node/http-host.ts): origin-form targets are joined to the Host header,
 * other forms resolved against it (RFC 9112 §3.2), and nothing odd in the target reaches a handler as another host
 * or crashes the server.
 */
import { connect } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { defineEndpoint } from '../../src/api/endpoint.js';
import { createRouter } from '../../src/api/router.js';
import { serveHttp } from '../../src/node/http-host.js';
import type { HttpHost } from '../../src/node/http-host.js';

let host: HttpHost | undefined;
afterEach(async () => {
  await host?.close();
  host = undefined;
});

/** A homeserver whose one endpoint echoes the URL the handler saw. */
async function start(): Promise<HttpHost> {
  const router = createRouter(
    { authenticate: () => Promise.reject(new Error('no auth here')) },
    {
      endpoints: [
        defineEndpoint({
          method: 'GET',
          path: '/_matrix/test/echo/{thing}',
          auth: 'none',
          operationId: 'echoUrl',
          handler: ({ url, params }) => ({ origin: url.origin, path: url.pathname, query: url.search, thing: params.thing }),
        }),
      ],
      spec: [],
    },
  );
  host = await serveHttp({ host: '127.0.0.1', port: 0, fetch: router.fetch, handle: router.handle, handlePaths: ['/_matrix/'] });
  return host;
}

/** One raw HTTP/1.1 request line and headers; the response's status and JSON body. */
function rawRequest(url: string, target: string, hostHeader: string): Promise<{ status: number; body: any }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(`GET ${target} HTTP/1.1\r\nHost: ${hostHeader}\r\nConnection: close\r\n\r\n`);
    });
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('error', reject);
    socket.on('end', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
      const body = text.slice(text.indexOf('\r\n\r\n') + 4);
      try {
        resolve({ status, body: JSON.parse(body) });
      } catch {
        resolve({ status, body });
      }
    });
  });
}

it('joins an origin-form target to the Host header, query and percent-encoding intact', async () => {
  const { url } = await start();
  const r = await rawRequest(url, '/_matrix/test/echo/a%3Ab?x=1', 'matrix.example.org:8448');
  expect(r.status).toBe(200);
  expect(r.body).toEqual({ origin: 'http://matrix.example.org:8448', path: '/_matrix/test/echo/a%3Ab', query: '?x=1', thing: 'a:b' });
});

it('falls back to the bound address when the Host header is not a host', async () => {
  const { url } = await start();
  const r = await rawRequest(url, '/_matrix/test/echo/x', 'bad host/with space');
  expect(r.status).toBe(200);
  expect(r.body.origin).toBe(url);
});

it('serves an absolute-form target (RFC 9112 §3.2.2)', async () => {
  const { url } = await start();
  const r = await rawRequest(url, 'http://other.example/_matrix/test/echo/y', 'other.example');
  expect(r.status).toBe(200);
  expect(r.body).toMatchObject({ path: '/_matrix/test/echo/y', thing: 'y' });
});

it('a target starting with // stays a path on this host (origin-form), not another authority', async () => {
  const { url } = await start();
  const r = await rawRequest(url, '//evil.example/_matrix/test/echo/z', '127.0.0.1');
  // Its path is `//evil.example/_matrix/…`, which no endpoint serves: it must not reach the echo endpoint as
  // `/_matrix/test/echo/z` of evil.example.
  expect(r.status).toBe(404);
  expect(r.body.errcode).toBe('M_UNRECOGNIZED');
  const after = await rawRequest(url, '/_matrix/test/echo/ok', '127.0.0.1');
  expect(after.status).toBe(200);
});
