/**
 * Issue 3's acceptance sweep: every endpoint the homeserver serves (enumerated from `hs.endpoints` at test time, so a
 * new endpoint is swept without editing this file) answers bad input with the spec's errcode and status, never a 500,
 * always as a JSON error body with CORS headers.
 *
 * - no token / a bad token → 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN;
 * - JSON bodies: not JSON → 400 M_NOT_JSON; an array or a string → 400 M_BAD_JSON; a field of the wrong type (made
 *   from the spec's own request example, or from WRONG_TYPED where the spec has none) → 400 M_BAD_JSON; over the
 *   endpoint's limit → 413 M_TOO_LARGE;
 * - path parameters that are not IDs → 400 M_INVALID_PARAM (or the code the spec gives); a valid but unknown room →
 *   403/404 as the spec (or, where it is silent, Synapse) answers;
 * - query parameters (read from the spec's OpenAPI files): integers, booleans, enums and tokens that are not →
 *   400 M_INVALID_PARAM; required ones missing → 400 M_MISSING_PARAM;
 * - all 166 spec endpoints answer something other than a 500 (unimplemented → 404 M_UNRECOGNIZED), the legacy
 *   `/r0/` prefix is served exactly where the endpoint had an r0 form, and a wrong method is 405 M_UNRECOGNIZED.
 *
 * Spec: shared/matrix-spec/content/client-server-api/_index.md (#standard-error-response, #common-error-codes,
 * #using-access-tokens, #web-browser-clients), data/api/client-server/*.yaml.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AnyEndpoint, BodyKind, SpecEndpoint } from '../../src/api/endpoint.js';
import { BODY_LIMITS, DEFAULT_BINARY_BODY_LIMIT } from '../../src/api/endpoint.js';
import * as validators from '../../src/api/generated/body-validators.js';
import { CS_ENDPOINTS } from '../../src/api/generated/cs-endpoints.js';
import type { BodyValidator } from '../../src/api/request.js';
import { DEFAULT_JSON_BODY_LIMIT } from '../../src/api/request.js';
import type { Homeserver } from '../../src/homeserver.js';
import { defaultSpecDir, requestBodyExamples } from '../../scripts/gen-endpoints.js';
import type { CallResult } from '../helpers/homeserver.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import { newRoom, sendText } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';

const C = '/_matrix/client/v3';
const enc = encodeURIComponent;
const SPEC_DIR = defaultSpecDir();
const VALIDATORS = validators as unknown as Readonly<Record<string, BodyValidator>>;

// ---- The spec, read at test time

interface QueryParam {
  name: string;
  type?: string;
  enum?: string[];
  required: boolean;
}

/** Query parameters of every operation, from data/api/client-server/*.yaml. */
function specQueryParams(): Map<string, QueryParam[]> {
  const dir = join(SPEC_DIR, 'data/api/client-server');
  const out = new Map<string, QueryParam[]>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
    const doc = parseYaml(readFileSync(join(dir, file), 'utf8'));
    for (const item of Object.values<Record<string, any>>(doc.paths ?? {})) {
      for (const op of Object.values<any>(item)) {
        if (typeof op?.operationId !== 'string') continue;
        const params: QueryParam[] = [];
        for (let p of [...(item.parameters ?? []), ...(op.parameters ?? [])]) {
          if (p.$ref) p = doc.components.parameters[String(p.$ref).split('/').pop()!];
          if (p.in !== 'query') continue;
          params.push({ name: p.name, type: p.schema?.type, enum: p.schema?.enum, required: p.required === true });
        }
        out.set(op.operationId, params);
      }
    }
  }
  return out;
}

const QUERY_PARAMS = specQueryParams();
const EXAMPLES = new Map<string, unknown>();
for (const { operationId, example } of requestBodyExamples(SPEC_DIR)) {
  if (!EXAMPLES.has(operationId)) EXAMPLES.set(operationId, example);
}
const SPEC_BY_ID = new Map<string, SpecEndpoint>(CS_ENDPOINTS.map((s) => [s.operationId, s]));

// ---- Fixtures: one user with a room, an event, an alias, a filter, a key backup and a sync token

interface Fixtures {
  hs: Homeserver;
  user: TestUser;
  roomId: string;
  eventId: string;
  alias: string;
  filterId: string;
  backupVersion: string;
  syncToken: string;
}

let fixtureCounter = 0;

async function makeFixtures(hs: Homeserver): Promise<Fixtures> {
  const user = await newUser(hs);
  const local = `sweep${++fixtureCounter}`;
  const roomId = await newRoom(hs, user, { room_alias_name: local });
  const eventId = await sendText(hs, user, roomId, 'hello');
  const filter = await call(hs, 'POST', `${C}/user/${enc(user.userId)}/filter`, {}, user.accessToken);
  const backup = await call(
    hs,
    'POST',
    `${C}/room_keys/version`,
    { algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'abcdefg', signatures: {} } },
    user.accessToken,
  );
  const sync = await call(hs, 'GET', `${C}/sync?timeout=0`, undefined, user.accessToken);
  for (const res of [filter, backup, sync]) expect(res.status, JSON.stringify(res.body)).toBe(200);
  return {
    hs,
    user,
    roomId,
    eventId,
    alias: `#${local}:${hs.serverName}`,
    filterId: filter.body.filter_id,
    backupVersion: backup.body.version,
    syncToken: sync.body.next_batch,
  };
}

let txn = 0;

/** A valid value for each path parameter name; a name not listed fails the sweep until it gets one. */
function validParam(name: string, op: string, fx: Fixtures): string {
  switch (name) {
    case 'roomId':
    case 'roomIdOrAlias':
      return fx.roomId;
    case 'userId':
      return fx.user.userId;
    case 'eventId':
      return fx.eventId;
    case 'eventType':
      return /RoomState/.test(op) ? 'm.room.topic' : 'm.room.message';
    case 'stateKey':
      return '';
    case 'txnId':
      return `sweep${++txn}`;
    case 'type':
      return 'org.example.sweep';
    case 'roomAlias':
      return fx.alias;
    case 'deviceId':
      return fx.user.deviceId;
    case 'filterId':
      return fx.filterId;
    case 'receiptType':
      return 'm.read';
    case 'relType':
      return 'm.thread';
    case 'tag':
      return 'u.sweep';
    case 'keyName':
      return 'displayname';
    case 'kind':
      return 'override';
    case 'ruleId':
      return '.m.rule.master';
    case 'version':
      return fx.backupVersion;
    case 'sessionId':
      return 'session';
    case 'serverName':
      return fx.hs.serverName;
    case 'mediaId':
      return 'media';
    case 'fileName':
      return 'file.txt';
    case 'appserviceId':
    case 'networkId':
    case 'protocol':
    case 'idpId':
      return 'x';
    default:
      throw new Error(`no fixture value for path parameter {${name}} of ${op}`);
  }
}

/** Valid values for the spec's required query parameters. */
function validQueryParam(name: string, op: string, fx: Fixtures): string {
  switch (name) {
    case 'dir':
      return 'b';
    case 'ts':
      return String(Date.now());
    case 'from':
    case 'to':
      return fx.syncToken;
    case 'version':
      return fx.backupVersion;
    case 'username':
      return `free${++txn}`;
    case 'token':
    case 'userid':
      return 'x';
    case 'user_id':
      return fx.user.userId;
    case 'room_id':
      return fx.roomId;
    case 'alias':
      return fx.alias;
    case 'url':
    case 'redirectUrl':
      return 'https://example.org/';
    case 'width':
    case 'height':
      return '32';
    default:
      throw new Error(`no fixture value for required query parameter ${name} of ${op}`);
  }
}

function paramNames(path: string): string[] {
  return [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
}

/** The concrete path and query of an endpoint: valid fixtures except where `params` / `query` say otherwise. */
function urlOf(
  ep: { path: string; operationId: string },
  fx: Fixtures,
  params: Record<string, string> = {},
  query: Record<string, string | null> = {},
): string {
  const path = ep.path.replace(/\{([^}]+)\}/g, (_, name: string) =>
    enc(name in params ? params[name] : validParam(name, ep.operationId, fx)),
  );
  const q = new URLSearchParams();
  for (const p of QUERY_PARAMS.get(ep.operationId) ?? []) {
    if (p.required && !(p.name in query)) q.set(p.name, validQueryParam(p.name, ep.operationId, fx));
  }
  for (const [k, v] of Object.entries(query)) if (v !== null) q.set(k, v);
  const qs = q.toString();
  return qs ? `${path}?${qs}` : path;
}

function bodyKind(ep: AnyEndpoint): BodyKind {
  return ep.body ?? SPEC_BY_ID.get(ep.operationId)?.body ?? (ep.method === 'POST' || ep.method === 'PUT' ? 'json' : 'none');
}

function bodyLimit(ep: AnyEndpoint): number {
  return ep.maxBodyBytes ?? BODY_LIMITS[ep.operationId] ?? (bodyKind(ep) === 'binary' ? DEFAULT_BINARY_BODY_LIMIT : DEFAULT_JSON_BODY_LIMIT);
}

/** The body validator the router uses for an endpoint (null: any JSON object). */
function validatorOf(ep: AnyEndpoint): BodyValidator | null {
  if (ep.validateBody !== undefined) return ep.validateBody;
  return VALIDATORS[ep.operationId] ?? null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A body the endpoint's schema accepts, as JSON: the spec's example when there is one, else `{}`. */
function validBody(ep: AnyEndpoint): string | undefined {
  if (bodyKind(ep) !== 'json') return undefined;
  const ex = EXAMPLES.get(ep.operationId);
  const v = validatorOf(ep);
  return JSON.stringify(isObject(ex) && (v === null || v(ex)) ? ex : {});
}

/** The spec's example with one top-level field given a value of the wrong JSON type that the schema refuses. */
function wrongTypedBody(ep: AnyEndpoint): { field: string; body: string } | undefined {
  const v = validatorOf(ep);
  const ex = EXAMPLES.get(ep.operationId);
  if (v === null || !isObject(ex)) return undefined;
  for (const [field, value] of Object.entries(ex)) {
    const wrong = typeof value === 'string' ? 12345 : typeof value === 'object' || typeof value === 'boolean' ? 'not-this-type' : true;
    const body = { ...ex, [field]: wrong };
    const f = v(body) ? undefined : v.errors?.[0];
    if (f?.keyword === 'type' && f.instancePath === `/${field}`) return { field, body: JSON.stringify(body) };
  }
  return undefined;
}

function send(fx: Fixtures, method: string, url: string, body?: string, token?: string): Promise<CallResult> {
  return call(fx.hs, method, url, body, token);
}

/** Every answer: never a 500, CORS headers, and an error is a JSON object with errcode and error. */
function expectSane(res: CallResult, what: string): void {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBeLessThan(500);
  expect(res.headers.get('access-control-allow-origin'), `${what}: CORS`).toBe('*');
  // A user-interactive auth challenge is a 401 with flows and a session instead (#user-interactive-authentication-api).
  if (res.status === 401 && Array.isArray(res.body?.flows)) return;
  if (res.status >= 400) {
    expect(res.headers.get('content-type'), what).toBe('application/json');
    expect(typeof res.body?.errcode, `${what}: errcode in ${JSON.stringify(res.body)}`).toBe('string');
    expect(typeof res.body?.error, `${what}: error in ${JSON.stringify(res.body)}`).toBe('string');
  }
}

function expectError(res: CallResult, expected: readonly [number, string], what: string): void {
  expectSane(res, what);
  expect([res.status, res.body?.errcode], `${what}: ${JSON.stringify(res.body)}`).toEqual(expected);
}

// ---- The homeserver under test (built at load time, so its endpoint list can name the tests)

const fx = await makeFixtures(await newHomeserver());
const ENDPOINTS: readonly AnyEndpoint[] = fx.hs.endpoints;
const label = (ep: AnyEndpoint): string => `${ep.method} ${ep.path} (${ep.operationId})`;
const token = () => fx.user.accessToken;

/** Endpoints outside the Client-Server spec that the homeserver serves through the same fetch. */
const NON_CS = new Set(['getServerKey']);

describe('the endpoint list', () => {
  it('is the spec table’s endpoints, each with its spec method and path, plus the server key endpoint', () => {
    expect(ENDPOINTS.length).toBeGreaterThan(100);
    for (const ep of ENDPOINTS) {
      if (NON_CS.has(ep.operationId)) continue;
      const spec = SPEC_BY_ID.get(ep.operationId);
      expect(spec, label(ep)).toBeDefined();
      expect([spec!.method, spec!.path], label(ep)).toEqual([ep.method, ep.path]);
    }
    expect(ENDPOINTS.filter((ep) => NON_CS.has(ep.operationId)).map((ep) => ep.path)).toEqual(['/_matrix/key/v2/server']);
  });
});

// ---- (a), (b) Access tokens

const TOKEN_ENDPOINTS = ENDPOINTS.filter((ep) => ep.auth === 'accessToken' || ep.auth === 'optionalAccessToken');

describe('access tokens', () => {
  it.each(TOKEN_ENDPOINTS.map((ep) => [label(ep), ep] as const))('%s', async (what, ep) => {
    const url = urlOf(ep, fx);
    const body = validBody(ep);
    if (ep.auth === 'accessToken') expectError(await send(fx, ep.method, url, body), [401, 'M_MISSING_TOKEN'], `${what} without a token`);
    expectError(await send(fx, ep.method, url, body, 'hat_not-a-real-token'), [401, 'M_UNKNOWN_TOKEN'], `${what} with a bad token`);
  });
});

// ---- (c) JSON bodies

const JSON_ENDPOINTS = ENDPOINTS.filter((ep) => bodyKind(ep) === 'json');

/** JSON-body endpoints whose body is free-form content (event content, account data): any JSON object is valid. */
const FREE_FORM = new Set(['sendMessage', 'setRoomStateWithKey', 'setAccountData', 'setAccountDataPerRoom']);

/** A wrong-typed field for the endpoints whose spec gives no whole-body example to derive one from. */
const WRONG_TYPED: Readonly<Record<string, Record<string, unknown>>> = {
  register: { username: 42 },
  changePassword: { new_password: 42 },
  deactivateAccount: { erase: 'yes' },
  deleteDevice: { auth: 'password' },
  deleteDevices: { devices: 'DEVICE' },
  setProfileField: { displayname: 42 },
  setRoomTag: { order: 'first' },
  joinRoom: { reason: 42 },
  joinRoomById: { reason: 42 },
  knockRoom: { reason: 42 },
  setReadMarker: { 'm.fully_read': 42 },
  sendToDevice: { messages: 'hello' },
  uploadKeys: { one_time_keys: 'keys' },
  queryKeys: { device_keys: ['@alice:example.org'] },
  claimKeys: { one_time_keys: 'keys' },
  postRoomKeysVersion: { algorithm: 42, auth_data: {} },
  putRoomKeysVersion: { algorithm: 42, auth_data: {} },
  putRoomKeys: { rooms: [] },
  putRoomKeysByRoomId: { sessions: [] },
  putRoomKeyBySessionId: { first_message_index: 'first', forwarded_count: 0, is_verified: false, session_data: {} },
};

describe('JSON bodies', () => {
  it.each(JSON_ENDPOINTS.map((ep) => [label(ep), ep] as const))('%s', async (what, ep) => {
    const url = () => urlOf(ep, fx);
    expectError(await send(fx, ep.method, url(), 'this is not JSON', token()), [400, 'M_NOT_JSON'], `${what}: not JSON`);
    expectError(await send(fx, ep.method, url(), '{"unterminated": ', token()), [400, 'M_NOT_JSON'], `${what}: truncated JSON`);
    expectError(await send(fx, ep.method, url(), '[1, 2, 3]', token()), [400, 'M_BAD_JSON'], `${what}: an array`);
    expectError(await send(fx, ep.method, url(), '"a string"', token()), [400, 'M_BAD_JSON'], `${what}: a string`);
    const big = `{"padding": "${'x'.repeat(bodyLimit(ep))}"}`;
    expectError(await send(fx, ep.method, url(), big, token()), [413, 'M_TOO_LARGE'], `${what}: over ${bodyLimit(ep)} bytes`);
    if (FREE_FORM.has(ep.operationId)) return;
    const fromTable = WRONG_TYPED[ep.operationId];
    const wrong = fromTable ? { field: Object.keys(fromTable)[0], body: JSON.stringify(fromTable) } : wrongTypedBody(ep);
    expect(wrong, `${what}: no wrong-typed case (add one to WRONG_TYPED, or the endpoint to FREE_FORM)`).toBeDefined();
    expectError(await send(fx, ep.method, url(), wrong!.body, token()), [400, 'M_BAD_JSON'], `${what}: wrong-typed '${wrong!.field}'`);
  });
});

// ---- (d) Path parameters that are not IDs; rooms that do not exist

const NOT_AN_ID: Readonly<Record<string, string>> = {
  roomId: 'not-a-room',
  userId: 'not-a-user',
  eventId: 'not-an-event',
  roomAlias: 'not-an-alias',
  roomIdOrAlias: 'neither-room-nor-alias',
};

/**
 * Where a malformed ID is not 400 M_INVALID_PARAM: an event that cannot exist is "not found", the spec's 404 for
 * these endpoints (rooms.yaml getOneRoomEvent, event_context.yaml, relations.yaml); redaction follows them.
 */
const NOT_AN_ID_EXPECTED: Readonly<Record<string, readonly [number, string]>> = {
  'getOneRoomEvent eventId': [404, 'M_NOT_FOUND'],
  'getEventContext eventId': [404, 'M_NOT_FOUND'],
  'redactEvent eventId': [404, 'M_NOT_FOUND'],
  'getRelatingEvents eventId': [404, 'M_NOT_FOUND'],
  'getRelatingEventsWithRelType eventId': [404, 'M_NOT_FOUND'],
  'getRelatingEventsWithRelTypeAndEventType eventId': [404, 'M_NOT_FOUND'],
};

/**
 * Path parameters that are opaque to the server: backed-up room keys are stored under whatever room ID the client
 * names (as Synapse does: the backup is the client's encrypted data, and the room may be long gone or remote).
 */
const OPAQUE_ID_PARAMS = new Set<string>(
  ['putRoomKeysByRoomId', 'getRoomKeysByRoomId', 'deleteRoomKeysByRoomId', 'putRoomKeyBySessionId', 'getRoomKeyBySessionId', 'deleteRoomKeyBySessionId'].map(
    (op) => `${op} roomId`,
  ),
);

const ID_CASES = ENDPOINTS.flatMap((ep) =>
  paramNames(ep.path)
    .filter((name) => name in NOT_AN_ID && !OPAQUE_ID_PARAMS.has(`${ep.operationId} ${name}`))
    .map((name) => [`${label(ep)} {${name}}`, ep, name] as const),
);

describe('path parameters that are not IDs', () => {
  it.each(ID_CASES)('%s', async (what, ep, name) => {
    const res = await send(fx, ep.method, urlOf(ep, fx, { [name]: NOT_AN_ID[name] }), validBody(ep), token());
    expectError(res, NOT_AN_ID_EXPECTED[`${ep.operationId} ${name}`] ?? [400, 'M_INVALID_PARAM'], what);
  });
});

/**
 * A well-formed room ID this server has never seen. The default is the spec's 403 for a room the user is not in;
 * these answer otherwise:
 * - 404 M_NOT_FOUND where the room itself is what is looked for: sending and setting state (Synapse: the room's
 *   version is not found), single events (rooms.yaml 404), membership changes of a room this server does not know
 *   (Synapse: "Not a known room"; knocking.yaml 404), the directory visibility (list_public_rooms.yaml 404), and
 *   reading per-room account data that was never set (account-data.yaml 404);
 * - 200 where Synapse keeps per-room account data and tags without asking whether the room exists.
 */
const UNKNOWN_ROOM_EXPECTED: Readonly<Record<string, readonly [number, string | undefined]>> = {
  sendMessage: [404, 'M_NOT_FOUND'],
  setRoomStateWithKey: [404, 'M_NOT_FOUND'],
  getOneRoomEvent: [404, 'M_NOT_FOUND'],
  redactEvent: [404, 'M_NOT_FOUND'],
  joinRoom: [404, 'M_NOT_FOUND'],
  joinRoomById: [404, 'M_NOT_FOUND'],
  knockRoom: [404, 'M_NOT_FOUND'],
  leaveRoom: [404, 'M_NOT_FOUND'],
  forgetRoom: [404, 'M_NOT_FOUND'],
  kick: [404, 'M_NOT_FOUND'],
  ban: [404, 'M_NOT_FOUND'],
  unban: [404, 'M_NOT_FOUND'],
  getRoomVisibilityOnDirectory: [404, 'M_NOT_FOUND'],
  setRoomVisibilityOnDirectory: [404, 'M_NOT_FOUND'],
  getAccountDataPerRoom: [404, 'M_NOT_FOUND'],
  setAccountDataPerRoom: [200, undefined],
  getRoomTags: [200, undefined],
  setRoomTag: [200, undefined],
  deleteRoomTag: [200, undefined],
};

const ROOM_CASES = ENDPOINTS.flatMap((ep) =>
  paramNames(ep.path)
    .filter((name) => (name === 'roomId' || name === 'roomIdOrAlias') && !OPAQUE_ID_PARAMS.has(`${ep.operationId} ${name}`))
    .map((name) => [`${label(ep)} {${name}}`, ep, name] as const),
);

describe('a valid room ID of a room nobody knows', () => {
  it.each(ROOM_CASES)('%s', async (what, ep, name) => {
    const unknownRoom = `!unknown${++txn}:${fx.hs.serverName}`;
    const res = await send(fx, ep.method, urlOf(ep, fx, { [name]: unknownRoom }), validBody(ep), token());
    const [status, errcode] = UNKNOWN_ROOM_EXPECTED[ep.operationId] ?? [403, 'M_FORBIDDEN'];
    expectSane(res, what);
    expect([res.status, res.body?.errcode], `${what}: ${JSON.stringify(res.body)}`).toEqual([status, errcode]);
  });
});

// ---- (e) Query parameters

/** Pagination and sync tokens. */
const TOKEN_PARAMS = new Set(['from', 'to', 'since', 'at', 'next_batch']);

/** A value of the wrong kind for a query parameter, or undefined where any string is a value (names, URLs …). */
function badQueryValue(p: QueryParam): string | undefined {
  if (p.enum) return 'not-one-of-them';
  if (p.type === 'integer') return 'abc';
  if (p.type === 'boolean') return 'maybe';
  if (TOKEN_PARAMS.has(p.name)) return 'garbage';
  if (p.name === 'filter') return '{not json';
  return undefined;
}

/**
 * A `filter` that is not JSON: /sync's may be a filter ID or inline JSON, and text starting with `{` that does not
 * parse is M_NOT_JSON (as Synapse); elsewhere the parameter is JSON only, so it is an invalid parameter.
 */
const QUERY_EXPECTED: Readonly<Record<string, readonly [number, string]>> = {
  'sync filter': [400, 'M_NOT_JSON'],
};

const QUERY_CASES = ENDPOINTS.flatMap((ep) =>
  (QUERY_PARAMS.get(ep.operationId) ?? []).flatMap((p) => {
    const bad = badQueryValue(p);
    return bad === undefined ? [] : [[`${label(ep)} ?${p.name}=${bad}`, ep, p.name, bad] as const];
  }),
);

const REQUIRED_QUERY_CASES = ENDPOINTS.flatMap((ep) =>
  (QUERY_PARAMS.get(ep.operationId) ?? []).filter((p) => p.required).map((p) => [`${label(ep)} without ?${p.name}`, ep, p.name] as const),
);

describe('query parameters', () => {
  it.each(QUERY_CASES)('%s', async (what, ep, name, bad) => {
    const res = await send(fx, ep.method, urlOf(ep, fx, {}, { [name]: bad }), validBody(ep), token());
    expectError(res, QUERY_EXPECTED[`${ep.operationId} ${name}`] ?? [400, 'M_INVALID_PARAM'], what);
  });

  it.each(REQUIRED_QUERY_CASES)('%s', async (what, ep, name) => {
    const res = await send(fx, ep.method, urlOf(ep, fx, {}, { [name]: null }), validBody(ep), token());
    expectError(res, [400, 'M_MISSING_PARAM'], what);
  });
});

// ---- Every spec endpoint, the legacy prefix, wrong methods

/** Served method + path (two spec operations may share one: inviteUser and inviteBy3PID). */
const SERVED = new Set(ENDPOINTS.map((ep) => `${ep.method} ${ep.path}`));

/** Request bodies for spec operations that give no whole-body example. */
const EXAMPLE_BODIES: Readonly<Record<string, string>> = {
  inviteBy3PID: JSON.stringify({ id_server: 'id.example.org', id_access_token: 'abc', medium: 'email', address: 'cheeky@example.org' }),
};

/** Calls that end the session they are made with: each gets a user of its own. */
const ENDS_SESSION = new Set(['logout', 'logout_all', 'deactivateAccount', 'changePassword', 'deleteDevice', 'deleteDevices']);

describe('all 166 spec endpoints', () => {
  let spare: Fixtures;
  beforeAll(async () => {
    spare = await makeFixtures(await newHomeserver());
  });

  it('answer a well-formed request with something other than a 500; unimplemented ones with 404 M_UNRECOGNIZED', async () => {
    expect(CS_ENDPOINTS.length).toBe(166);
    for (const spec of CS_ENDPOINTS) {
      const ep = { ...spec, body: spec.body } as unknown as AnyEndpoint;
      const own = ENDS_SESSION.has(spec.operationId) ? { ...spare, user: await newUser(spare.hs) } : spare;
      const body = EXAMPLE_BODIES[spec.operationId] ?? validBody(ep);
      const res = await send(own, spec.method, urlOf(spec, own), body, own.user.accessToken);
      const what = `${spec.method} ${spec.path} (${spec.operationId})`;
      expectSane(res, what);
      if (SERVED.has(`${spec.method} ${spec.path}`)) {
        expect([res.status, res.body?.errcode], `${what} is served: ${JSON.stringify(res.body)}`).not.toEqual([404, 'M_UNRECOGNIZED']);
      } else {
        expectError(res, [404, 'M_UNRECOGNIZED'], `${what} (not implemented)`);
      }
    }
  });
});

/** `/_matrix/client/v3/…` → `/_matrix/client/r0/…` (also for media), or undefined for paths with no such form. */
function r0Form(path: string): string | undefined {
  const m = /^\/_matrix\/(client|media)\/(v1|v3)\//.exec(path);
  return m ? path.replace(m[0], `/_matrix/${m[1]}/r0/`) : undefined;
}

const R0_CASES = ENDPOINTS.filter((ep) => r0Form(ep.path) !== undefined).map((ep) => [label(ep), ep] as const);

describe('the legacy /r0/ prefix', () => {
  it.each(R0_CASES)('%s', async (what, ep) => {
    const url = urlOf(ep, fx);
    const legacy = r0Form(url)!;
    // No token and a body that is not an object: the answer comes from the router (auth, then body) before a handler
    // runs, so the same request under both prefixes must get the same answer where r0 is served.
    const body = bodyKind(ep) === 'json' ? '[]' : undefined;
    const viaR0 = await send(fx, ep.method, legacy, body);
    expectSane(viaR0, `${what} under r0`);
    const hasR0 = (e: AnyEndpoint) => SPEC_BY_ID.get(e.operationId)?.r0 === true && e.path.includes('/v3/');
    if (!hasR0(ep)) {
      // Unknown under r0 (404) — unless the same path has other methods there, which makes it a wrong method (405).
      const siblings = BY_PATH.get(ep.path)!.some((other) => other !== ep && hasR0(other));
      expectError(viaR0, [siblings ? 405 : 404, 'M_UNRECOGNIZED'], `${what} has no r0 form`);
      return;
    }
    const viaV3 = await send(fx, ep.method, url, body);
    expect([viaR0.status, viaR0.body?.errcode], `${what} under r0`).toEqual([viaV3.status, viaV3.body?.errcode]);
    expect([viaR0.status, viaR0.body?.errcode], `${what} under r0 is served`).not.toEqual([404, 'M_UNRECOGNIZED']);
  });

  it('serves real requests: whoami, joined_rooms, sync and a send under r0', async () => {
    const whoami = await send(fx, 'GET', '/_matrix/client/r0/account/whoami', undefined, token());
    expect([whoami.status, whoami.body.user_id]).toEqual([200, fx.user.userId]);
    const joined = await send(fx, 'GET', '/_matrix/client/r0/joined_rooms', undefined, token());
    expect(joined.body.joined_rooms).toContain(fx.roomId);
    const sent = await send(fx, 'PUT', `/_matrix/client/r0/rooms/${enc(fx.roomId)}/send/m.room.message/r0txn`, '{"msgtype":"m.text","body":"r0"}', token());
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    const sync = await send(fx, 'GET', `/_matrix/client/r0/sync?since=${fx.syncToken}&timeout=0`, undefined, token());
    expect(sync.body.rooms.join[fx.roomId].timeline.events.map((e: any) => e.event_id)).toContain(sent.body.event_id);
  });
});

/** A spec template as a regular expression over concrete paths (a parameter is one segment, the state key may be empty). */
function templateRegex(path: string): RegExp {
  const body = path
    .split(/(\{[^}]+\})/)
    .map((part) => (part.startsWith('{') ? '[^/]*' : part.replace(/[.*+?^$()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${body}/?$`);
}

const METHODS = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH'] as const;
const BY_PATH = new Map<string, AnyEndpoint[]>();
for (const ep of ENDPOINTS) BY_PATH.set(ep.path, [...(BY_PATH.get(ep.path) ?? []), ep]);

const METHOD_CASES = [...BY_PATH.entries()].flatMap(([path, eps]) =>
  METHODS.filter((m) => !eps.some((ep) => ep.method === m)).map((m) => [`${m} ${path}`, eps[0], m] as const),
);

describe('a method the path does not serve', () => {
  it.each(METHOD_CASES)('%s', async (what, ep, method) => {
    const url = urlOf(ep, fx).split('?')[0];
    const res = await send(fx, method, url, method === 'GET' || method === 'DELETE' ? undefined : '{}', token());
    // Another spec operation owns this method here but is not implemented: that is a missing endpoint (404).
    const inSpec = CS_ENDPOINTS.some((s) => s.method === method && templateRegex(s.path).test(url));
    if (inSpec) {
      expectError(res, [404, 'M_UNRECOGNIZED'], `${what} (a spec endpoint not implemented)`);
      return;
    }
    expectError(res, [405, 'M_UNRECOGNIZED'], what);
    const allow = (res.headers.get('allow') ?? '').split(/,\s*/);
    for (const served of BY_PATH.get(ep.path)!) expect(allow, `${what}: Allow`).toContain(served.method);
  });
});

describe('paths nobody serves', () => {
  it.each([
    ['GET', '/_matrix/client/v3/no_such_endpoint'],
    ['POST', '/_matrix/client/v3/rooms/!a:b/no_such_action'],
    ['GET', '/_matrix/client/r0/no_such_endpoint'],
    ['GET', '/_matrix/media/v3/no_such_endpoint'],
    ['GET', '/_matrix/client/v4/sync'],
  ])('%s %s → 404 M_UNRECOGNIZED', async (method, path) => {
    expectError(await send(fx, method, path, undefined, token()), [404, 'M_UNRECOGNIZED'], `${method} ${path}`);
  });
});
