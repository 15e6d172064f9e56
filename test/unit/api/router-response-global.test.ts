/**
 * The plain-data path (`Homeserver.handle`, what `hearth serve` calls) answers JSON endpoints without reading the
 * global `Response`: in Node that read loads undici and its dependencies (~5 MiB of the peer's memory; bench/README.md,
 * Peak RSS). Handlers that do answer with a Response are still passed on as one.
 */
import { afterEach, expect, it } from 'vitest';
import { newHomeserver } from '../../helpers/homeserver.js';

const original = Object.getOwnPropertyDescriptor(globalThis, 'Response')!;
afterEach(() => Object.defineProperty(globalThis, 'Response', original));

it('a JSON answer through handle() never reads globalThis.Response', async () => {
  const hs = await newHomeserver();
  let reads = 0;
  const value = globalThis.Response;
  Object.defineProperty(globalThis, 'Response', {
    configurable: true,
    get() {
      reads++;
      return value;
    },
  });
  const res = await hs.handle({ method: 'GET', url: 'http://localhost/_matrix/client/versions', headers: {}, body: null });
  expect(res.status).toBe(200);
  expect(JSON.parse(res.body as string).versions).toContain('v1.11');
  expect(reads).toBe(0);
});
