/**
 * The one place the client talks HTTP: JSON in, JSON out, Matrix errors as `MatrixApiError`.
 * https://spec.matrix.org/v1.19/client-server-api/#api-standards
 */
import type { JsonObject } from './types.js';

/** The homeserver answered with an error (`errcode`, HTTP status, and the body for UIA and rate limits). */
export class MatrixApiError extends Error {
  override name = 'MatrixApiError';
  constructor(
    readonly status: number,
    readonly errcode: string,
    message: string,
    readonly body: JsonObject = {},
  ) {
    super(message);
  }
}

/** The request never got an answer (offline, the service worker restarting, aborted). */
export class NetworkError extends Error {
  override name = 'NetworkError';
}

export type FetchFn = (input: string, init?: RequestInit) => Promise<Response>;

export interface HttpInit {
  baseUrl: string;
  accessToken?: string;
  fetch?: FetchFn;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  signal?: AbortSignal;
  /** Send without the access token (login, register, versions). */
  anonymous?: boolean;
}

/** Path segments are always escaped: room IDs, user IDs and event IDs contain `!`, `@`, `:`, `$` and `#`. */
export function path(strings: TemplateStringsArray, ...params: string[]): string {
  let out = strings[0];
  params.forEach((p, i) => (out += encodeURIComponent(p) + strings[i + 1]));
  return out;
}

export class Http {
  baseUrl: string;
  accessToken: string | undefined;
  private readonly fetchFn: FetchFn;

  constructor(init: HttpInit) {
    this.baseUrl = init.baseUrl.replace(/\/$/, '');
    this.accessToken = init.accessToken;
    this.fetchFn = init.fetch ?? ((input, i) => globalThis.fetch(input, i));
  }

  async request<T>(method: string, p: string, opts: RequestOptions = {}): Promise<T> {
    let url = this.baseUrl + p;
    if (opts.query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(opts.query)) if (v !== undefined) q.set(k, String(v));
      const s = q.toString();
      if (s) url += '?' + s;
    }
    const headers: Record<string, string> = {};
    if (!opts.anonymous && this.accessToken) headers.authorization = `Bearer ${this.accessToken}`;
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    let res: Response;
    try {
      res = await this.fetchFn(url, { method, headers, body, signal: opts.signal });
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      throw new NetworkError(`could not reach the homeserver: ${(e as Error).message ?? String(e)}`);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text === '' ? {} : JSON.parse(text);
    } catch {
      throw new MatrixApiError(res.status, 'M_UNKNOWN', `the homeserver answered ${res.status} with something that is not JSON`);
    }
    if (!res.ok) {
      const b = (json && typeof json === 'object' ? json : {}) as JsonObject;
      const errcode = typeof b.errcode === 'string' ? b.errcode : 'M_UNKNOWN';
      const msg = typeof b.error === 'string' ? b.error : `HTTP ${res.status}`;
      throw new MatrixApiError(res.status, errcode, msg, b);
    }
    return json as T;
  }
}
