/**
 * Matrix errors: one `MatrixError` (errcode, HTTP status, message, extra response fields) with a named constructor
 * for every errcode the Client-Server spec lists, and `errorResponse`, the one place errors become responses.
 *
 * Spec: shared/matrix-spec/content/client-server-api/_index.md#standard-error-response ("Common error codes",
 * "Other error codes", "Rate limiting"), plus the endpoint-specific codes in data/api/client-server/*.yaml.
 * Statuses follow the spec where it names one, otherwise the status the spec's examples and deployed servers use.
 */

/** Extra top-level fields of an error body (`retry_after_ms`, `soft_logout`, `room_version`, …). */
export type ErrorData = Readonly<Record<string, unknown>>;

export interface MatrixErrorInit {
  /** Extra response-body fields; `errcode` and `error` always win over these. */
  data?: ErrorData;
  /** Extra response headers (`Retry-After`, `Allow`, …). */
  headers?: Readonly<Record<string, string>>;
}

/** Where internal detail goes instead of the response body. `console` fits. */
export interface ApiLogger {
  error(message: string, detail?: unknown): void;
  warn?(message: string, detail?: unknown): void;
  debug?(message: string, detail?: unknown): void;
}

export class MatrixError extends Error {
  override readonly name = 'MatrixError';
  readonly status: number;
  readonly errcode: string;
  readonly data: ErrorData;
  readonly headers: Readonly<Record<string, string>>;

  constructor(status: number, errcode: string, message: string, init: MatrixErrorInit = {}) {
    super(message);
    this.status = status;
    this.errcode = errcode;
    this.data = init.data ?? {};
    this.headers = init.headers ?? {};
  }

  /** The standard error response body. */
  toJSON(): Record<string, unknown> {
    return { ...this.data, errcode: this.errcode, error: this.message };
  }
}

export function isMatrixError(e: unknown): e is MatrixError {
  return e instanceof MatrixError;
}

const make = (status: number, errcode: string, message: string, data?: ErrorData): MatrixError =>
  new MatrixError(status, errcode, message, data ? { data } : {});

// ---- Common error codes (any endpoint)

/** 400 M_BAD_JSON: valid JSON, but malformed (missing keys, wrong types). */
export const badJson = (message = 'Malformed JSON body'): MatrixError => make(400, 'M_BAD_JSON', message);
/** 403 M_FORBIDDEN. */
export const forbidden = (message = 'Forbidden'): MatrixError => make(403, 'M_FORBIDDEN', message);
/**
 * 429 M_LIMIT_EXCEEDED with a `Retry-After` header (seconds, rounded up) and the deprecated `retry_after_ms`.
 * Spec: #rate-limiting.
 */
export function limitExceeded(retryAfterMs?: number, message = 'Too many requests'): MatrixError {
  if (retryAfterMs === undefined) return make(429, 'M_LIMIT_EXCEEDED', message);
  const ms = Math.max(0, Math.ceil(retryAfterMs));
  return new MatrixError(429, 'M_LIMIT_EXCEEDED', message, {
    data: { retry_after_ms: ms },
    headers: { 'Retry-After': String(Math.ceil(ms / 1000)) },
  });
}
/** 401 M_MISSING_TOKEN: the endpoint needs an access token and none was given. */
export const missingToken = (message = 'Missing access token'): MatrixError => make(401, 'M_MISSING_TOKEN', message);
/** 404 M_NOT_FOUND. */
export const notFound = (message = 'Not found'): MatrixError => make(404, 'M_NOT_FOUND', message);
/** 400 M_NOT_JSON: the body is not valid (UTF-8) JSON. */
export const notJson = (message = 'Request body is not valid JSON'): MatrixError => make(400, 'M_NOT_JSON', message);
/** 403 M_RESOURCE_LIMIT_EXCEEDED; the spec requires `admin_contact`. */
export const resourceLimitExceeded = (adminContact: string, message = 'Resource limit exceeded'): MatrixError =>
  make(403, 'M_RESOURCE_LIMIT_EXCEEDED', message, { admin_contact: adminContact });
/**
 * 403 M_RESOURCE_LIMIT_EXCEEDED for storage that refuses more data (a browser's quota, a full disk), the spec's own
 * example of this error; Synapse also answers its resource limits with 403. `limit_type: 'storage'` says which.
 * The write was refused whole: nothing half-stored.
 */
export const storageFull = (
  adminContact: string,
  message = 'Storage is full: this homeserver could not save the change. Free some space (or allow persistent storage) and retry.',
): MatrixError => make(403, 'M_RESOURCE_LIMIT_EXCEEDED', message, { admin_contact: adminContact, limit_type: 'storage' });
/** M_UNKNOWN, 500 unless told (a 400 M_UNKNOWN means "the request was invalid"). */
export const unknown = (message = 'Internal server error', status = 500): MatrixError =>
  make(status, 'M_UNKNOWN', message);
/** 400 M_UNKNOWN_DEVICE: an appservice asserted a device that does not belong to the user (v1.17). */
export const unknownDevice = (message = 'Unknown device'): MatrixError => make(400, 'M_UNKNOWN_DEVICE', message);
/** 401 M_UNKNOWN_TOKEN; `soft_logout: true` tells the client it may re-login keeping its data. Spec: #soft-logout. */
export function unknownToken(softLogout = false, message = 'Unrecognised access token'): MatrixError {
  return make(401, 'M_UNKNOWN_TOKEN', message, softLogout ? { soft_logout: true } : undefined);
}
/** 404 M_UNRECOGNIZED: no such endpoint here (or not implemented). */
export const unrecognized = (message = 'Unrecognized request'): MatrixError => make(404, 'M_UNRECOGNIZED', message);
/** 405 M_UNRECOGNIZED: the endpoint exists but not with this method; `Allow` lists the methods that do. */
export function unrecognizedMethod(allowed: readonly string[], message = 'Method not allowed'): MatrixError {
  return new MatrixError(405, 'M_UNRECOGNIZED', message, { headers: { Allow: allowed.join(', ') } });
}
/**
 * M_USER_LIMIT_EXCEEDED (v1.18): a per-account limit. The spec requires `info_uri`; the status depends on the
 * endpoint (403 here unless told).
 */
export function userLimitExceeded(
  infoUri: string,
  opts: { canUpgrade?: boolean; status?: number; message?: string } = {},
): MatrixError {
  const data: Record<string, unknown> = { info_uri: infoUri };
  if (opts.canUpgrade !== undefined) data.can_upgrade = opts.canUpgrade;
  return make(opts.status ?? 403, 'M_USER_LIMIT_EXCEEDED', opts.message ?? 'User limit exceeded', data);
}
/** 401 M_USER_LOCKED with `soft_logout: true`, as the spec requires (#account-locking). */
export const userLocked = (message = 'This account has been locked'): MatrixError =>
  make(401, 'M_USER_LOCKED', message, { soft_logout: true });
/** 403 M_USER_SUSPENDED (#account-suspension). */
export const userSuspended = (message = 'This account has been suspended'): MatrixError =>
  make(403, 'M_USER_SUSPENDED', message);

// ---- Other error codes (specific endpoints)

/** 400 M_BAD_STATE: e.g. unbanning a user who is not banned. */
export const badState = (message = 'Bad state'): MatrixError => make(400, 'M_BAD_STATE', message);
/** 403 M_CANNOT_LEAVE_SERVER_NOTICE_ROOM. */
export const cannotLeaveServerNoticeRoom = (message = 'You cannot reject this invite'): MatrixError =>
  make(403, 'M_CANNOT_LEAVE_SERVER_NOTICE_ROOM', message);
/** 400 M_CAPTCHA_INVALID. */
export const captchaInvalid = (message = 'Invalid captcha'): MatrixError => make(400, 'M_CAPTCHA_INVALID', message);
/** 401 M_CAPTCHA_NEEDED. */
export const captchaNeeded = (message = 'Captcha needed'): MatrixError => make(401, 'M_CAPTCHA_NEEDED', message);
/** 400 M_EXCLUSIVE: the resource is reserved by an application service. */
export const exclusive = (message = 'This resource is reserved by an application service'): MatrixError =>
  make(400, 'M_EXCLUSIVE', message);
/** 403 M_GUEST_ACCESS_FORBIDDEN. */
export const guestAccessForbidden = (message = 'Guest access is not allowed'): MatrixError =>
  make(403, 'M_GUEST_ACCESS_FORBIDDEN', message);
/** 400 M_INCOMPATIBLE_ROOM_VERSION with the room's `room_version`. */
export const incompatibleRoomVersion = (roomVersion: string, message?: string): MatrixError =>
  make(400, 'M_INCOMPATIBLE_ROOM_VERSION', message ?? `This server does not support room version ${roomVersion}`, {
    room_version: roomVersion,
  });
/** 400 M_INVALID_PARAM naming the parameter. */
export const invalidParam = (name: string, why = 'has an invalid value'): MatrixError =>
  make(400, 'M_INVALID_PARAM', `'${name}' ${why}`);
/** 400 M_INVALID_ROOM_STATE: createRoom's initial state is invalid. */
export const invalidRoomState = (message = 'Invalid initial room state'): MatrixError =>
  make(400, 'M_INVALID_ROOM_STATE', message);
/** 400 M_INVALID_USERNAME. */
export const invalidUsername = (message = 'Invalid username'): MatrixError => make(400, 'M_INVALID_USERNAME', message);
/** 400 M_MISSING_PARAM naming the parameter. */
export const missingParam = (name: string, message?: string): MatrixError =>
  make(400, 'M_MISSING_PARAM', message ?? `Missing required parameter '${name}'`);
/** 400 M_ROOM_IN_USE: the alias asked for in createRoom is taken. */
export const roomInUse = (message = 'Room alias already taken'): MatrixError => make(400, 'M_ROOM_IN_USE', message);
/** 400 M_SERVER_NOT_TRUSTED: a third-party server (identity server) this server does not trust. */
export const serverNotTrusted = (message = 'Untrusted server'): MatrixError =>
  make(400, 'M_SERVER_NOT_TRUSTED', message);
/** 400 M_THREEPID_AUTH_FAILED. */
export const threepidAuthFailed = (message = 'Third-party identifier authentication failed'): MatrixError =>
  make(400, 'M_THREEPID_AUTH_FAILED', message);
/** 403 M_THREEPID_DENIED. */
export const threepidDenied = (message = 'Third-party identifier is not allowed'): MatrixError =>
  make(403, 'M_THREEPID_DENIED', message);
/** 400 M_THREEPID_IN_USE. */
export const threepidInUse = (message = 'Third-party identifier already in use'): MatrixError =>
  make(400, 'M_THREEPID_IN_USE', message);
/** 400 M_THREEPID_MEDIUM_NOT_SUPPORTED. */
export const threepidMediumNotSupported = (message = 'Third-party identifier medium not supported'): MatrixError =>
  make(400, 'M_THREEPID_MEDIUM_NOT_SUPPORTED', message);
/** 400 M_THREEPID_NOT_FOUND. */
export const threepidNotFound = (message = 'Third-party identifier not found'): MatrixError =>
  make(400, 'M_THREEPID_NOT_FOUND', message);
/** 413 M_TOO_LARGE: the request or entity is too large. */
export const tooLarge = (message = 'Request body too large'): MatrixError => make(413, 'M_TOO_LARGE', message);
/** 401 M_UNAUTHORIZED: not correctly authorised (login failures). */
export const unauthorized = (message = 'Unauthorized'): MatrixError => make(401, 'M_UNAUTHORIZED', message);
/** 400 M_UNABLE_TO_AUTHORISE_JOIN (server-server "Restricted rooms"): no state here to check the join's conditions. */
export const unableToAuthoriseJoin = (message = 'Unable to check the conditions of this restricted room'): MatrixError =>
  make(400, 'M_UNABLE_TO_AUTHORISE_JOIN', message);
/** 400 M_UNABLE_TO_GRANT_JOIN (server-server "Restricted rooms"): no user here may authorise the join. */
export const unableToGrantJoin = (message = 'No user on this server can authorise the join; try another server'): MatrixError =>
  make(400, 'M_UNABLE_TO_GRANT_JOIN', message);
/** 400 M_UNSUPPORTED_ROOM_VERSION: createRoom/upgrade asked for a version this server does not support. */
export const unsupportedRoomVersion = (message = 'Unsupported room version'): MatrixError =>
  make(400, 'M_UNSUPPORTED_ROOM_VERSION', message);
/** 403 M_USER_DEACTIVATED (login.yaml). */
export const userDeactivated = (message = 'This account has been deactivated'): MatrixError =>
  make(403, 'M_USER_DEACTIVATED', message);
/** 400 M_USER_IN_USE: registering a taken user ID. */
export const userInUse = (message = 'User ID already taken'): MatrixError => make(400, 'M_USER_IN_USE', message);
/** 400 M_WEAK_PASSWORD (password management). */
export const weakPassword = (message = 'Password too weak'): MatrixError => make(400, 'M_WEAK_PASSWORD', message);

// ---- Codes documented on single endpoints (data/api/client-server/*.yaml)

/** 400 M_APPSERVICE_LOGIN_UNSUPPORTED (login, register; v1.17). */
export const appserviceLoginUnsupported = (message = 'Application service login is not supported'): MatrixError =>
  make(400, 'M_APPSERVICE_LOGIN_UNSUPPORTED', message);
/** 400 M_BAD_ALIAS: an alias in m.room.canonical_alias does not point to the room. */
export const badAlias = (message = 'Alias does not point to this room'): MatrixError => make(400, 'M_BAD_ALIAS', message);
/** 502 M_BAD_STATUS (appservice ping): the appservice answered with an error `status` and `body`. */
export const badStatus = (status: number, body: string, message = 'Application service returned an error'): MatrixError =>
  make(502, 'M_BAD_STATUS', message, { status, body });
/** 409 M_CANNOT_OVERWRITE_MEDIA (upload to an mxc URI that already has content). */
export const cannotOverwriteMedia = (message = 'Media already uploaded'): MatrixError =>
  make(409, 'M_CANNOT_OVERWRITE_MEDIA', message);
/** 502 M_CONNECTION_FAILED (appservice ping). */
export const connectionFailed = (message = 'Connection failed'): MatrixError => make(502, 'M_CONNECTION_FAILED', message);
/** 504 M_CONNECTION_TIMEOUT (appservice ping). */
export const connectionTimeout = (message = 'Connection timed out'): MatrixError =>
  make(504, 'M_CONNECTION_TIMEOUT', message);
/** 400 M_DUPLICATE_ANNOTATION (sending the same annotation twice). */
export const duplicateAnnotation = (message = 'Duplicate annotation'): MatrixError =>
  make(400, 'M_DUPLICATE_ANNOTATION', message);
/** 400 M_INVALID_SIGNATURE (cross-signing uploads). */
export const invalidSignature = (message = 'Invalid signature'): MatrixError => make(400, 'M_INVALID_SIGNATURE', message);
/** 403 M_INVITE_BLOCKED: the invitee blocks invites (v1.18). */
export const inviteBlocked = (message = 'Invites are blocked'): MatrixError => make(403, 'M_INVITE_BLOCKED', message);
/** 400 M_KEY_TOO_LARGE: a profile key name is too long. */
export const keyTooLarge = (message = 'Profile key too large'): MatrixError => make(400, 'M_KEY_TOO_LARGE', message);
/** 504 M_NOT_YET_UPLOADED: the async-upload media has no content yet. */
export const notYetUploaded = (message = 'Content has not yet been uploaded'): MatrixError =>
  make(504, 'M_NOT_YET_UPLOADED', message);
/** 400 M_PROFILE_TOO_LARGE. */
export const profileTooLarge = (message = 'Profile too large'): MatrixError => make(400, 'M_PROFILE_TOO_LARGE', message);
/** 400 M_URL_NOT_SET (appservice ping: the appservice has no URL). */
export const urlNotSet = (message = 'Application service has no URL configured'): MatrixError =>
  make(400, 'M_URL_NOT_SET', message);
/** 403 M_WRONG_ROOM_KEYS_VERSION with the backup's `current_version`. */
export const wrongRoomKeysVersion = (currentVersion: string, message = 'Wrong backup version'): MatrixError =>
  make(403, 'M_WRONG_ROOM_KEYS_VERSION', message, { current_version: currentVersion });

/**
 * The MatrixError to answer with for anything thrown (errorResponse's policy, for hosts that build responses
 * without `Response`): a MatrixError itself, logged when it is a 5xx; anything else `500 M_UNKNOWN`, logged.
 */
export function asMatrixError(err: unknown, logger?: ApiLogger): MatrixError {
  if (err instanceof MatrixError) {
    if (err.status >= 500) logger?.error(`${err.errcode}: ${err.message}`, err);
    return err;
  }
  logger?.error('Unhandled error while serving a request', err);
  return unknown();
}

/**
 * Turns anything thrown into a JSON error response. A MatrixError becomes its standard error body; anything else
 * becomes `500 M_UNKNOWN` with a fixed message, and its detail goes to the logger only.
 */
export function errorResponse(err: unknown, logger?: ApiLogger): Response {
  const e = asMatrixError(err, logger);
  const headers = new Headers(e.headers);
  headers.set('Content-Type', 'application/json');
  return new Response(JSON.stringify(e.toJSON()), { status: e.status, headers });
}
