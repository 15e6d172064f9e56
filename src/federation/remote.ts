/**
 * Requests to other servers: the spec's federation paths and bodies over the FederationTransport
 * (transport.ts), with answers turned into values or errors the callers can act on.
 * Spec: shared/matrix-spec/data/api/server-server/*.yaml.
 */
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { FederationMethod, FederationTransport } from './transport.js';
import { UnreachableError } from './transport.js';

/** The remote server answered with an error status (its errcode and message kept). */
export class RemoteError extends Error {
  override name = 'RemoteError';
  constructor(
    readonly destination: string,
    readonly status: number,
    readonly errcode: string,
    message: string,
    readonly body: JsonValue,
  ) {
    super(message);
  }
}

/** The remote server answered 200 with a body that is not what the spec says. */
export class BadResponseError extends Error {
  override name = 'BadResponseError';
}

/** `/_matrix/federation/v1/…` path segments, percent-encoded. */
export const enc = encodeURIComponent;

/** Default time a request may take (the transport may have its own). */
const DEFAULT_TIMEOUT_MS = 10_000;

export class RemoteClient {
  constructor(
    private readonly transport: FederationTransport | undefined,
    private readonly serverName: string,
  ) {}

  get available(): boolean {
    return this.transport !== undefined;
  }

  /** Sends one request and returns the JSON object answer; throws RemoteError, UnreachableError or BadResponseError. */
  async request(
    destination: string,
    method: FederationMethod,
    path: string,
    body?: JsonObject,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<JsonObject> {
    if (!this.transport) throw new UnreachableError(destination, 'federation is not available on this server');
    if (destination === this.serverName) throw new UnreachableError(destination, 'refusing to send a request to ourselves');
    const res = await this.transport.request(
      destination,
      { method, path, body },
      { timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, signal: opts.signal },
    );
    if (res.status >= 400 || res.status < 200) {
      const b = isJsonObject(res.body) ? res.body : {};
      const errcode = typeof b.errcode === 'string' ? b.errcode : 'M_UNKNOWN';
      const error = typeof b.error === 'string' ? b.error : `HTTP ${res.status}`;
      throw new RemoteError(destination, res.status, errcode, `${destination}: ${errcode}: ${error}`, res.body);
    }
    if (!isJsonObject(res.body)) throw new BadResponseError(`${destination} answered ${method} ${path} with a non-object`);
    return res.body;
  }

  get(destination: string, path: string, opts?: { timeoutMs?: number }): Promise<JsonObject> {
    return this.request(destination, 'GET', path, undefined, opts);
  }
}

/** A JSON array of objects from `body[key]` (BadResponseError otherwise), at most `max` entries kept. */
export function objectList(body: JsonObject, key: string, max = Infinity): JsonObject[] {
  const v = body[key];
  if (!Array.isArray(v)) throw new BadResponseError(`'${key}' is missing or not an array`);
  return v.slice(0, max).filter(isJsonObject);
}

/** A JSON array of strings from `body[key]`. */
export function stringList(body: JsonObject, key: string, max = Infinity): string[] {
  const v = body[key];
  if (!Array.isArray(v)) throw new BadResponseError(`'${key}' is missing or not an array`);
  return v.slice(0, max).filter((x): x is string => typeof x === 'string');
}
