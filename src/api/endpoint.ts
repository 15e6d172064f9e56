/**
 * Endpoints as data: each handler is declared next to its method, path template, auth kind, rate limiting and
 * spec operationId; the router (router.ts) only lists them. Paths are the spec's current form
 * (`/_matrix/client/v3/…`, `/_matrix/client/v1/…`); the legacy `/r0/` form is served where the spec table says the
 * endpoint had one.
 *
 * ```ts
 * /** PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId} *\/
 * export const sendMessage = defineEndpoint({
 *   method: 'PUT',
 *   path: '/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}',
 *   auth: 'accessToken',
 *   operationId: 'sendMessage',
 *   rateLimited: true,
 *   async handler({ params, principal, body, signal }) {
 *     // params.roomId, params.eventType, params.txnId are decoded strings; principal is set; body is validated
 *     return { event_id: await rooms.send(principal.userId, params.roomId, params.eventType, body, signal) };
 *   },
 * });
 * ```
 */
import type { JsonObject } from '../core/json.js';
import type { BodyValidator } from './request.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/**
 * - `accessToken`: a valid access token is required (401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN otherwise).
 * - `optionalAccessToken`: a token may be given; if it is, it must be valid.
 * - `none`: no authentication; a token, if sent, is passed through unchecked (`ctx.accessToken`).
 * - `federation`: a server-server request signed with `Authorization: X-Matrix …`.
 */
export type AuthKind = 'accessToken' | 'optionalAccessToken' | 'none' | 'federation';

/**
 * How the router treats the request body: `json` is read (size-limited), parsed as a JSON object and validated
 * before the handler runs; `binary` is left for the handler (`ctx.readBody()` or `ctx.request.body`); `none` is ignored.
 */
export type BodyKind = 'json' | 'binary' | 'none';

/** One row of the generated spec table (src/api/generated/cs-endpoints.ts). */
export interface SpecEndpoint<Op extends string = string> {
  readonly method: HttpMethod;
  readonly path: string;
  readonly operationId: Op;
  readonly auth: 'accessToken' | 'optionalAccessToken' | 'none';
  /** Only application services may call it (their `as_token`). */
  readonly appserviceOnly?: boolean;
  /** Also served under the legacy `/r0/` prefix. */
  readonly r0: boolean;
  readonly body: BodyKind;
  /** The spec lists a 429 response. */
  readonly rateLimited: boolean;
  readonly deprecated?: boolean;
  readonly addedIn?: string;
}

/**
 * Who made an authenticated Client-Server request, as the injected `authenticate` port says. Services that need more
 * can add fields by declaration merging (`declare module '../api/endpoint.js' { interface Principal { … } }`).
 */
export interface Principal {
  readonly userId: string;
  /** Absent for tokens without a device (some appservice requests). */
  readonly deviceId?: string;
  readonly isGuest?: boolean;
  /** Set when the token is an application service's `as_token`. */
  readonly appserviceId?: string;
}

type ParamNames<P extends string> = P extends `${string}{${infer Name}}${infer Rest}` ? Name | ParamNames<Rest> : never;

/** `{ roomId: string; txnId: string }` for `/rooms/{roomId}/send/…/{txnId}`; path parameters arrive URL-decoded. */
export type PathParams<P extends string> = string extends P
  ? Readonly<Record<string, string>>
  : { readonly [K in ParamNames<P>]: string };

type PrincipalFor<A extends AuthKind> = A extends 'accessToken'
  ? Principal
  : A extends 'optionalAccessToken'
    ? Principal | undefined
    : undefined;

export interface EndpointContext<A extends AuthKind = AuthKind, P extends string = string> {
  readonly request: Request;
  readonly url: URL;
  readonly query: URLSearchParams;
  readonly params: PathParams<P>;
  /** Set for `accessToken`, maybe for `optionalAccessToken`, never otherwise. */
  readonly principal: PrincipalFor<A>;
  /** The access token as sent (header or query), for `logout` and appservice registration. */
  readonly accessToken: string | undefined;
  /** The authenticated origin server name, for `federation` endpoints. */
  readonly origin: A extends 'federation' ? string : undefined;
  /** The validated JSON body for `json` endpoints; `{}` for the others. Keeps the client's bytes' shape. */
  readonly body: JsonObject;
  /** Reads the raw body within the endpoint's limit (for `binary` endpoints). */
  readBody(): Promise<Uint8Array>;
  /** Aborted when the client goes away (or the host shuts down): long polls and network waits must stop. */
  readonly signal: AbortSignal;
  /** True when the request came in under the legacy `/r0/` prefix. */
  readonly legacyR0: boolean;
}

/** A handler returns a Response, or a JSON object to send as `200 application/json`. */
export type HandlerResult = Response | object;

export interface Endpoint<A extends AuthKind = AuthKind, P extends string = string> {
  readonly method: HttpMethod;
  /** Path template with `{name}` parameters, each one whole path segment. */
  readonly path: P;
  readonly auth: A;
  /** The spec's operationId (`getVersions`, `sendMessage`, …); for C-S endpoints it must match the spec table. */
  readonly operationId: string;
  /** Whether the rate-limit port is consulted; defaults to whether the spec lists a 429 for the endpoint. */
  readonly rateLimited?: boolean;
  /** Also serve under `/r0/`; defaults to the spec table's answer. */
  readonly r0?: boolean;
  /** Defaults to the spec table's answer; for other endpoints `json` for POST/PUT, `none` otherwise. */
  readonly body?: BodyKind;
  /** Body size limit; defaults to `DEFAULT_JSON_BODY_LIMIT`, `BODY_LIMITS[operationId]` or `DEFAULT_BINARY_BODY_LIMIT`. */
  readonly maxBodyBytes?: number;
  /** Overrides the generated body validator; `null` turns validation off. */
  readonly validateBody?: BodyValidator | null;
  // Method syntax on purpose: lets a list of differently-typed endpoints be one `Endpoint[]`.
  handler(ctx: EndpointContext<A, P>): HandlerResult | Promise<HandlerResult>;
}

/** The element type of the router's endpoint list. */
export type AnyEndpoint = Endpoint<AuthKind, string>;

/** Declares an endpoint; the identity function, there so TypeScript infers the auth kind and path parameters. */
export function defineEndpoint<const A extends AuthKind, const P extends string>(endpoint: Endpoint<A, P>): Endpoint<A, P> {
  return endpoint;
}

/** Default limit for `binary` bodies (media uploads) when the endpoint sets none. */
export const DEFAULT_BINARY_BODY_LIMIT = 50 * 1024 * 1024;

/**
 * Spec endpoints whose JSON bodies legitimately outgrow the 64 KiB default (our choice, by what they carry):
 * key-backup uploads carry every session key, to-device sends fan out to many devices, key uploads/queries/claims
 * scale with devices and users, and account data has no size bound in the spec.
 */
export const BODY_LIMITS: Readonly<Record<string, number>> = {
  putRoomKeys: 16 * 1024 * 1024,
  putRoomKeysByRoomId: 4 * 1024 * 1024,
  sendToDevice: 4 * 1024 * 1024,
  uploadKeys: 1024 * 1024,
  queryKeys: 1024 * 1024,
  claimKeys: 1024 * 1024,
  uploadCrossSigningSignatures: 1024 * 1024,
  setAccountData: 1024 * 1024,
  setAccountDataPerRoom: 1024 * 1024,
};

/** A JSON response (`Content-Type: application/json`). */
export function jsonResponse(body: unknown, status = 200, headers?: HeadersInit): Response {
  const h = new Headers(headers);
  h.set('Content-Type', 'application/json');
  return new Response(JSON.stringify(body), { status, headers: h });
}
