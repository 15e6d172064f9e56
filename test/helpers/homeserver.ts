/**
 * Test builders (Dendrite style): `const hs = await newHomeserver(); const res = await call(hs, 'GET', '/_matrix/…')`.
 * Each homeserver gets its own in-memory storage, which, like IndexedDB, rejects transactions that await anything
 * else.
 */
import { createHomeserver } from '../../src/homeserver.js';
import type { Homeserver } from '../../src/homeserver.js';
import type { Clock, HomeserverConfig } from '../../src/services/context.js';
import { openMemoryKv } from '../../src/storage/memory-kv.js';
import { HOMESERVER_STORES } from '../../src/storage/schema.js';

let counter = 0;

export async function newHomeserver(config: Partial<HomeserverConfig> = {}, clock?: Clock): Promise<Homeserver> {
  const kv = await openMemoryKv({ name: `test-${++counter}`, stores: HOMESERVER_STORES });
  return createHomeserver({ kv, clock }, config);
}

export interface CallResult<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

/** Sends a request to `hs.fetch`. `body` objects are JSON-encoded; strings are sent as they are. */
export async function call<T = any>(
  hs: Homeserver,
  method: string,
  path: string,
  body?: unknown,
  token?: string,
  init: { signal?: AbortSignal; headers?: Record<string, string> } = {},
): Promise<CallResult<T>> {
  const headers: Record<string, string> = { ...init.headers };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await hs.fetch(
    new Request(`http://localhost${path}`, { method, headers, body: payload, signal: init.signal }),
  );
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed as T, headers: res.headers };
}
