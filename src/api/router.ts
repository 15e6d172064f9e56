/**
 * The router: takes a list of endpoint declarations (endpoint.ts) and serves them through one web-standard
 * `fetch(request) → Response`, the same in the service worker, the Node host and libp2p stream handlers.
 * Underneath is `handle(PlainRequest) → PlainResponse`: the same thing over plain data, for a host (Node's http
 * server) that would otherwise build a WHATWG Request and read a Response back for every call, which cost more
 * than routing, authentication and JSON together. `fetch` is a thin wrapper over it; a handler that asks for
 * `ctx.request` still gets a real Request (built on first use).
 *
 * Per request: OPTIONS → CORS preflight; match the path (legacy `/r0/` mapped to `/v3/` where the endpoint had an r0
 * form); unknown → 404 M_UNRECOGNIZED, a spec endpoint not implemented here → 404 M_UNRECOGNIZED, a known path with
 * another method → 405 M_UNRECOGNIZED; authenticate; rate limit; read, parse and validate the JSON body; run the
 * handler; add CORS headers; anything thrown becomes an error response (errors.ts).
 *
 * Spec: shared/matrix-spec/content/client-server-api/_index.md (#api-standards, #using-access-tokens,
 * #web-browser-clients, M_UNRECOGNIZED under #common-error-codes).
 */
import type { JsonObject } from '../core/json.js';
import { QuotaExceededError } from '../storage/kv.js';
import { CORS_HEADERS, isCorsPath } from './cors.js';
import type {
  AnyEndpoint,
  AuthKind,
  BodyKind,
  EndpointContext,
  Principal,
  SpecEndpoint,
} from './endpoint.js';
import { BODY_LIMITS, DEFAULT_BINARY_BODY_LIMIT } from './endpoint.js';
import type { ApiLogger } from './errors.js';
import type { MatrixError } from './errors.js';
import {
  asMatrixError,
  invalidParam,
  isMatrixError,
  missingToken,
  storageFull,
  unknown,
  unrecognized,
  unrecognizedMethod,
} from './errors.js';
import * as generatedValidators from './generated/body-validators.js';
import { CS_ENDPOINTS } from './generated/cs-endpoints.js';
import type { BodySource, BodyValidator, ValidationFailure } from './request.js';
import { DEFAULT_JSON_BODY_LIMIT, parseJsonObject, readBodySource, validateBody } from './request.js';

/** A request as plain data: what a host hands `handle` instead of a WHATWG Request. */
export interface PlainRequest {
  readonly method: string;
  /** The absolute URL (`http://host:port/path?query`). */
  readonly url: string | URL;
  /** Header names in lower case; a repeated header's values joined with ", " (what `Headers.get` returns). */
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** Whole bytes or text when the host has read the body (small ones), a stream otherwise, null for none. */
  readonly body: BodySource;
  /** Aborted when the client goes away (or the host closes): long polls stop. */
  readonly signal?: AbortSignal;
}

/** A response as plain data. Header names are lower case; `set-cookie` may hold several values. */
export interface PlainResponse {
  status: number;
  statusText?: string;
  headers: Record<string, string | string[]>;
  /** Text or bytes for a whole body (every JSON answer), a stream for a streamed one, null for none. */
  body: string | Uint8Array | ReadableStream<Uint8Array> | null;
}

export interface RouterComponents {
  /**
   * Resolves an access token (from `Authorization: Bearer` or `?access_token=`) to its principal, or throws a
   * MatrixError: `unknownToken(softLogout)`, `userLocked()`, … The URL is passed for appservice identity assertion
   * (`user_id`, `device_id` query parameters).
   */
  authenticate(token: string, url: URL): Promise<Principal>;
  /** Verifies an `X-Matrix` signed request and returns the origin server name. Needed for `federation` endpoints. */
  authenticateFederation?(input: { request: Request; url: URL; body: JsonObject | undefined }): Promise<string>;
  /** Throws `limitExceeded(ms)` to refuse. Called for rate-limited endpoints, after authentication. */
  rateLimit?(input: { endpoint: AnyEndpoint; request: Request; principal?: Principal; origin?: string }): void | Promise<void>;
  logger?: ApiLogger;
}

export interface RouterInit {
  readonly endpoints: readonly AnyEndpoint[];
  /** The spec's endpoint table; defaults to the generated Client-Server table. */
  readonly spec?: readonly SpecEndpoint[];
  /** Body validators by operationId; defaults to the generated ones. */
  readonly validators?: Readonly<Record<string, BodyValidator>>;
}

export interface Router {
  fetch(request: Request): Promise<Response>;
  /** `fetch` over plain data (never rejects: errors become error responses). */
  handle(request: PlainRequest): Promise<PlainResponse>;
  readonly endpoints: readonly AnyEndpoint[];
}

/**
 * The spec: "The state_key for the state to send. Defaults to the empty string. When an empty string, the trailing
 * slash on this endpoint is optional." (room_state.yaml, rooms.yaml). A trailing parameter with one of these names
 * may be empty or absent.
 */
const OPTIONAL_TRAILING_PARAMS = new Set(['stateKey']);

type Segment = { readonly literal: string } | { readonly param: string };

interface Template {
  readonly segments: readonly Segment[];
  /** The template ends in `/` (`/pushrules/`): also match without it. */
  readonly trailingSlash: boolean;
  /** The last parameter may be empty or absent (see OPTIONAL_TRAILING_PARAMS). */
  readonly optionalTrailing: boolean;
}

interface Route {
  readonly endpoint: AnyEndpoint;
  readonly template: Template;
  readonly r0: boolean;
  readonly body: BodyKind;
  readonly maxBodyBytes: number;
  readonly rateLimited: boolean;
  readonly validate: BodyValidator | null;
}

interface SpecRoute {
  readonly spec: SpecEndpoint;
  readonly template: Template;
}

function compileTemplate(path: string): Template {
  if (!path.startsWith('/')) throw new Error(`endpoint path must start with '/': ${path}`);
  const raw = path.slice(1).split('/');
  const trailingSlash = raw.length > 1 && raw[raw.length - 1] === '';
  if (trailingSlash) raw.pop();
  const segments = raw.map((s): Segment => {
    const m = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(s);
    if (m) return { param: m[1] };
    if (s.includes('{') || s.includes('}')) throw new Error(`a path parameter must be a whole segment: ${path}`);
    return { literal: s };
  });
  const last = segments[segments.length - 1];
  const optionalTrailing = !trailingSlash && last !== undefined && 'param' in last && OPTIONAL_TRAILING_PARAMS.has(last.param);
  return { segments, trailingSlash, optionalTrailing };
}

/** Matches raw (still percent-encoded) path segments; returns raw parameter values, or null. */
function matchTemplate(t: Template, segs: readonly string[]): Record<string, string> | null {
  let parts = segs;
  if (t.trailingSlash && parts.length === t.segments.length + 1 && parts[parts.length - 1] === '') {
    parts = parts.slice(0, -1);
  }
  const n = t.segments.length;
  if (t.optionalTrailing && parts.length === n - 1) parts = [...parts, ''];
  if (parts.length !== n) return null;
  // Literals first, allocating nothing: most candidate routes of a request fail here.
  for (let i = 0; i < n; i++) {
    const s = t.segments[i];
    const v = parts[i];
    if ('literal' in s) {
      if (s.literal !== v) return null;
    } else if (v === '' && !(t.optionalTrailing && i === n - 1)) return null;
  }
  const params: Record<string, string> = {};
  for (let i = 0; i < n; i++) {
    const s = t.segments[i];
    if ('param' in s) params[s.param] = parts[i];
  }
  return params;
}

/** Literal segments sort before parameters, position by position, so `/a/b` wins over `/a/{x}`. */
function compareSpecificity(a: Template, b: Template): number {
  const n = Math.min(a.segments.length, b.segments.length);
  for (let i = 0; i < n; i++) {
    const la = 'literal' in a.segments[i];
    const lb = 'literal' in b.segments[i];
    if (la !== lb) return la ? -1 : 1;
  }
  return b.segments.length - a.segments.length;
}

function templateKey(method: string, t: Template): string {
  const body = t.segments.map((s) => ('literal' in s ? s.literal : '{}')).join('/');
  return `${method} /${body}${t.trailingSlash ? '/' : ''}`;
}

/**
 * Several spec operations share one method and path (POST /rooms/{roomId}/invite is inviteUser or inviteBy3PID):
 * the body is valid if either schema accepts it; otherwise the failure reported is the one that got furthest.
 */
function anyOfValidators(validators: readonly BodyValidator[]): BodyValidator {
  const v = ((data: unknown): boolean => {
    let best: ValidationFailure | undefined;
    for (const validate of validators) {
      if (validate(data)) {
        v.errors = null;
        return true;
      }
      const f = validate.errors?.[0];
      if (f && (!best || depth(f) > depth(best))) best = f;
    }
    v.errors = best ? [best] : null;
    return false;
  }) as BodyValidator;
  return v;
}

function depth(f: ValidationFailure): number {
  // A missing property is a failure one level below the object that lacks it.
  return f.instancePath.split('/').length + (f.keyword === 'required' ? 0.5 : 1);
}

/** `/_matrix/client/r0/…` and `/_matrix/media/r0/…` are the v3 endpoints' legacy names. */
function splitPath(pathname: string): { segs: string[]; legacyR0: boolean } {
  const segs = pathname.slice(1).split('/');
  const legacyR0 = segs[0] === '_matrix' && (segs[1] === 'client' || segs[1] === 'media') && segs[2] === 'r0';
  if (legacyR0) segs[2] = 'v3';
  return { segs, legacyR0 };
}

/**
 * The access token from `Authorization: Bearer` or the (deprecated) `access_token` query parameter. The spec
 * requires both methods; it says nothing of a request using both, so we follow RFC 6750 §2/§3.1 ("clients MUST NOT
 * use more than one method"; the server answers 400 invalid_request) with 400 M_INVALID_PARAM.
 */
function extractAccessToken(header: string | undefined, url: URL): { token: string | undefined; conflict: boolean } {
  const m = header === undefined ? null : /^Bearer[ \t]+([^ \t]+)[ \t]*$/i.exec(header);
  const fromHeader = m ? m[1] : undefined;
  // Most requests carry no query at all: skip URLSearchParams then.
  const fromQuery = url.search === '' ? [] : url.searchParams.getAll('access_token').filter((t) => t !== '');
  const conflict = fromQuery.length > 1 || (fromHeader !== undefined && fromQuery.length > 0);
  return { token: fromHeader ?? fromQuery[0], conflict };
}

export function createRouter(components: RouterComponents, init: RouterInit): Router {
  const spec = init.spec ?? CS_ENDPOINTS;
  const validators = init.validators ?? (generatedValidators as unknown as Readonly<Record<string, BodyValidator>>);
  const logger = components.logger;

  const specById = new Map<string, SpecEndpoint>();
  for (const s of spec) specById.set(s.operationId, s);
  const specRoutes: SpecRoute[] = spec.map((s) => ({ spec: s, template: compileTemplate(s.path) }));

  const seen = new Set<string>();
  const routes: Route[] = init.endpoints.map((endpoint) => {
    const template = compileTemplate(endpoint.path);
    const key = templateKey(endpoint.method, template);
    if (seen.has(key)) throw new Error(`two endpoints for ${key}`);
    seen.add(key);
    const s = specById.get(endpoint.operationId);
    if (s && (s.method !== endpoint.method || s.path !== endpoint.path)) {
      throw new Error(`${endpoint.operationId} is ${s.method} ${s.path} in the spec, not ${endpoint.method} ${endpoint.path}`);
    }
    if (endpoint.auth === 'federation' && !components.authenticateFederation) {
      throw new Error(`${endpoint.operationId} needs the authenticateFederation port`);
    }
    const body = endpoint.body ?? s?.body ?? (endpoint.method === 'POST' || endpoint.method === 'PUT' ? 'json' : 'none');
    const maxBodyBytes =
      endpoint.maxBodyBytes ??
      BODY_LIMITS[endpoint.operationId] ??
      (body === 'binary' ? DEFAULT_BINARY_BODY_LIMIT : DEFAULT_JSON_BODY_LIMIT);
    let validate: BodyValidator | null = null;
    if (endpoint.validateBody !== undefined) {
      validate = endpoint.validateBody;
    } else if (body === 'json') {
      // Every spec operation on this method + path (usually one).
      const found = specRoutes
        .filter((r) => templateKey(r.spec.method, r.template) === key)
        .map((r) => validators[r.spec.operationId])
        .filter((v): v is BodyValidator => typeof v === 'function');
      validate = found.length === 0 ? null : found.length === 1 ? found[0] : anyOfValidators(found);
    }
    return {
      endpoint,
      template,
      r0: endpoint.r0 ?? s?.r0 ?? false,
      body,
      maxBodyBytes,
      rateLimited: endpoint.rateLimited ?? s?.rateLimited ?? false,
      validate,
    };
  });
  routes.sort((a, b) => compareSpecificity(a.template, b.template));
  specRoutes.sort((a, b) => compareSpecificity(a.template, b.template));
  // Routes by the number of path segments they can match (most requests then try a handful, not all of them).
  const routesByLength = new Map<number, Route[]>();
  for (const r of routes) {
    const n = r.template.segments.length;
    const lengths = [n];
    if (r.template.trailingSlash) lengths.push(n + 1);
    if (r.template.optionalTrailing) lengths.push(n - 1);
    for (const len of lengths) {
      let list = routesByLength.get(len);
      if (list === undefined) routesByLength.set(len, (list = []));
      list.push(r);
    }
  }

  async function serve(x: Exchange): Promise<PlainResponse> {
    const { req, url } = x;
    const materialize = (): Request => x.request();
    const method = req.method.toUpperCase();
    if (method === 'OPTIONS' && isCorsPath(url.pathname)) return { status: 204, headers: {}, body: null };

    const { segs, legacyR0 } = splitPath(url.pathname);
    const lookup = method === 'HEAD' ? 'GET' : method;
    const candidates = routesByLength.get(segs.length) ?? [];
    let route: Route | undefined;
    let rawParams: Record<string, string> | undefined;
    for (const r of candidates) {
      if (r.endpoint.method !== lookup || (legacyR0 && !r.r0)) continue;
      const p = matchTemplate(r.template, segs);
      if (!p) continue;
      route = r;
      rawParams = p;
      break;
    }
    if (!route || !rawParams) {
      // Only a request nothing serves pays for finding the methods its path has.
      const allowed = new Set<string>();
      for (const r of candidates) {
        if (!(legacyR0 && !r.r0) && matchTemplate(r.template, segs) !== null) allowed.add(r.endpoint.method);
      }
      const inSpec = specRoutes.some(
        (r) => r.spec.method === lookup && (!legacyR0 || r.spec.r0) && matchTemplate(r.template, segs) !== null,
      );
      if (inSpec || allowed.size === 0) throw unrecognized();
      if (allowed.has('GET')) allowed.add('HEAD');
      throw unrecognizedMethod([...allowed, 'OPTIONS']);
    }

    // Decoded in place: the object is this request's own.
    const params = rawParams;
    for (const name in params) {
      const raw = params[name];
      if (!raw.includes('%')) continue;
      try {
        params[name] = decodeURIComponent(raw);
      } catch {
        throw invalidParam(name, 'is not valid percent-encoding');
      }
    }

    const endpoint = route.endpoint;
    const auth: AuthKind = endpoint.auth;
    const { token, conflict } = extractAccessToken(req.headers.authorization, url);
    let principal: Principal | undefined;
    if (auth === 'accessToken' || auth === 'optionalAccessToken') {
      if (conflict) {
        throw invalidParam('access_token', 'must be sent once: in the Authorization header or the query, not both');
      }
      if (token !== undefined) principal = await components.authenticate(token, url);
      else if (auth === 'accessToken') throw missingToken();
    }

    const limit = route.rateLimited ? components.rateLimit : undefined;
    // Refuse before reading the body where we can; a federation request is only known after its signature is.
    if (limit && auth !== 'federation') {
      await limit({ endpoint, get request() { return materialize(); }, principal });
    }

    const maxBodyBytes = route.maxBodyBytes;
    const readBody = (): Promise<Uint8Array> => x.readBody(maxBodyBytes);
    let body: JsonObject = {};
    if (route.body === 'json') {
      // An absent body counts as {}: the spec's object "may be empty", some clients omit it (join, leave, forget),
      // and the schema still refuses it where fields are required.
      body = parseJsonObject(await readBody(), true);
    }

    let origin: string | undefined;
    if (auth === 'federation') {
      // The X-Matrix signature covers the body, so it is read first.
      const signed = route.body === 'json' ? body : undefined;
      origin = await components.authenticateFederation!({ get request() { return materialize(); }, url, body: signed });
      if (limit) await limit({ endpoint, get request() { return materialize(); }, origin });
    }

    if (route.validate) validateBody(route.validate, body);

    // Read from the host only when a handler asks: the Node host makes its AbortController on first use.
    let signal: AbortSignal | undefined;
    const ctx: EndpointContext = {
      get request() {
        return materialize();
      },
      url,
      get query() {
        return url.searchParams;
      },
      params,
      principal,
      accessToken: token,
      origin,
      body,
      readBody,
      // A host that gives no signal (a test calling `handle`) gets one that never fires, made only if asked for.
      get signal() {
        return (signal ??= req.signal ?? new AbortController().signal);
      },
      legacyR0,
    };
    const result = await endpoint.handler(ctx);
    const res: PlainResponse =
      isResponse(result)
        ? fromResponse(result)
        : { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(result) };
    if (method === 'HEAD') {
      if (res.body instanceof ReadableStream) await res.body.cancel().catch(() => {});
      res.body = null;
    }
    return res;
  }

  /** Serves `req`; `original` is the Request when it came through `fetch`. Never rejects. */
  async function run(req: PlainRequest, original?: Request): Promise<PlainResponse> {
    let url: URL | undefined;
    try {
      try {
        url = typeof req.url === 'string' ? new URL(req.url) : req.url;
      } catch {
        throw unknown('Malformed request', 400);
      }
      return withCors(await serve(new Exchange(req, url, original)));
    } catch (e) {
      // Storage over quota: a clear 403 M_RESOURCE_LIMIT_EXCEEDED; the person running this server is at its origin.
      if (e instanceof QuotaExceededError && url !== undefined) return withCors(errorPlain(storageFull(`${url.origin}/`)));
      if (req.signal?.aborted && !isMatrixError(e)) {
        // The client went away (or the host is closing): whatever failed, nobody is listening.
        logger?.debug?.('request aborted', e);
        return withCors(errorPlain(unknown('Request aborted')));
      }
      return withCors(errorPlain(asMatrixError(e, logger)));
    }
  }

  return {
    endpoints: init.endpoints,
    handle: (request) => run(request),
    async fetch(request: Request): Promise<Response> {
      const headers: Record<string, string> = {};
      for (const [name, value] of request.headers) headers[name] = value;
      const plain: PlainRequest = { method: request.method, url: request.url, headers, body: request.body, signal: request.signal };
      return toResponse(await run(plain, request));
    },
  };
}

/** One request's body and its Request view, each made at most once. */
class Exchange {
  private built: Request | undefined;
  private reading: Promise<Uint8Array> | undefined;
  private bytes: Uint8Array | undefined;
  /** The Request built for a handler took over the host's body stream: read it from there. */
  private streamMoved = false;

  constructor(
    readonly req: PlainRequest,
    readonly url: URL,
    original: Request | undefined,
  ) {
    this.built = original;
  }

  /** The whole body within `maxBytes` (413 M_TOO_LARGE past it); read once, the same bytes every call. */
  readBody(maxBytes: number): Promise<Uint8Array> {
    if (this.reading === undefined) {
      const source = this.streamMoved ? this.built!.body : this.req.body;
      this.reading = readBodySource(source, this.req.headers['content-length'], maxBytes).then((b) => (this.bytes = b));
    }
    return this.reading;
  }

  /** A WHATWG Request for code that wants one (a handler's `ctx.request`, the ports): built on first use. */
  request(): Request {
    if (this.built !== undefined) return this.built;
    const { req } = this;
    const method = req.method.toUpperCase();
    const headers = new Headers();
    try {
      for (const name in req.headers) {
        const value = req.headers[name];
        if (value !== undefined) headers.append(name, value);
      }
    } catch {
      throw unknown('Malformed request', 400);
    }
    const init: RequestInit & { duplex?: 'half' } = { method, headers };
    if (method !== 'GET' && method !== 'HEAD' && req.body !== null) {
      if (!(req.body instanceof ReadableStream)) {
        init.body = req.body as BodyInit;
      } else if (this.reading === undefined) {
        init.body = req.body;
        init.duplex = 'half';
        this.streamMoved = true;
      } else if (this.bytes !== undefined) {
        init.body = this.bytes as BodyInit;
      }
      // (A stream being read right now has no body to give: the reader has it.)
    }
    let request: Request;
    try {
      request = new Request(this.url, init);
    } catch {
      // A header value the host let through but WHATWG Headers refuses: the client's fault, not ours.
      throw unknown('Malformed request', 400);
    }
    // The host's signal as the request's own (given to the constructor, undici would follow it with a second one).
    if (req.signal) Object.defineProperty(request, 'signal', { value: req.signal });
    this.built = request;
    return request;
  }
}

const CORS_ENTRIES = Object.entries(CORS_HEADERS).map(([k, v]) => [k.toLowerCase(), v] as const);

function withCors(res: PlainResponse): PlainResponse {
  for (const [k, v] of CORS_ENTRIES) res.headers[k] = v;
  return res;
}

/** An error as a JSON response (errors.ts `errorResponse`, as plain data). */
export function errorPlain(e: MatrixError): PlainResponse {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(e.headers)) headers[k.toLowerCase()] = v;
  headers['content-type'] = 'application/json';
  return { status: e.status, headers, body: JSON.stringify(e.toJSON()) };
}

/**
 * Whether a handler answered with a WHATWG Response rather than a JSON body. Not `instanceof Response`: in Node the
 * first read of the global `Response` loads undici (with http2, perf_hooks and assert): ~5 MiB of the Node peer's
 * memory for a class whose instances only some handlers make (media, redirects), which load it themselves.
 */
function isResponse(x: unknown): x is Response {
  return typeof x === 'object' && x !== null && Object.prototype.toString.call(x) === '[object Response]';
}

/** A handler's Response as plain data; its body stays a stream (a streamed answer is passed on as one). */
function fromResponse(res: Response): PlainResponse {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of res.headers) if (k !== 'set-cookie') headers[k] = v;
  const cookies = res.headers.getSetCookie();
  if (cookies.length > 0) headers['set-cookie'] = cookies;
  return { status: res.status, statusText: res.statusText || undefined, headers, body: res.body };
}

/** Plain data back to a Response, for `fetch`. */
function toResponse(res: PlainResponse): Response {
  const headers = new Headers();
  for (const [k, v] of Object.entries(res.headers)) {
    if (Array.isArray(v)) for (const one of v) headers.append(k, one);
    else headers.set(k, v);
  }
  // A status that forbids a body (204, 304) gets none, as before.
  const body = res.status === 204 || res.status === 304 ? null : (res.body as BodyInit | null);
  return new Response(body, { status: res.status, statusText: res.statusText, headers });
}
