/**
 * The Server-Server API endpoints as data (src/api/endpoint.ts), served to other servers through the transport:
 * `FederationInbound.handleRequest(origin, req)` runs them through the same router as the Client-Server API, with
 * the caller's server name taken from the authenticated connection (never from the request).
 *
 * Spec: shared/matrix-spec/data/api/server-server/{transactions,joins-v1,joins-v2,leaving-v1,leaving-v2,knocks,
 * invites-v2,events,event_auth,backfill,query,keys_server,version,user_devices,user_keys,
 * public_rooms,space_hierarchy}.yaml. Bodies are checked by the handlers (the
 * generated validators cover the Client-Server API only); bad input is answered with the spec's errors.
 */
import type { AnyEndpoint } from '../api/endpoint.js';
import { defineEndpoint } from '../api/endpoint.js';
import { badJson, invalidParam, missingParam, notFound, unauthorized, unknownToken } from '../api/errors.js';
import { createRouter } from '../api/router.js';
import type { Router } from '../api/router.js';
import { isValidRoomAlias, isValidRoomId, isValidUserId, parseRoomAlias } from '../core/identifiers.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { serverKeysResponse } from '../core/server-key.js';
import type { ServerIdentity } from '../core/server-key.js';
import { resolveAliasInTx } from '../services/aliases.js';
import type { UserRecord } from '../services/accounts.js';
import { STORES } from '../storage/schema.js';
import type { Logger } from '../services/context.js';
import type { FederationRequest, FederationResponse } from './transport.js';
import { hierarchyEndpoint } from './hierarchy.js';
import type { HierarchyHandlers } from './hierarchy.js';

/** What the endpoints call (FederationService implements it). */
export interface FederationHandlers extends HierarchyHandlers {
  readonly serverName: string;
  readonly identity: ServerIdentity;
  now(): number;
  sendTransaction(origin: string, txnId: string, body: JsonObject): Promise<JsonObject>;
  makeMembership(origin: string, roomId: string, userId: string, membership: 'join' | 'leave' | 'knock', versions: readonly string[] | undefined): Promise<JsonObject>;
  sendJoin(origin: string, roomId: string, eventId: string, body: JsonObject): Promise<JsonObject>;
  sendLeave(origin: string, roomId: string, eventId: string, body: JsonObject): Promise<JsonObject>;
  sendKnock(origin: string, roomId: string, eventId: string, body: JsonObject): Promise<JsonObject>;
  invite(origin: string, roomId: string, eventId: string, body: JsonObject): Promise<JsonObject>;
  getEvent(origin: string, eventId: string): Promise<JsonObject>;
  getState(origin: string, roomId: string, eventId: string | null): Promise<JsonObject>;
  getStateIds(origin: string, roomId: string, eventId: string | null): Promise<JsonObject>;
  getEventAuth(origin: string, roomId: string, eventId: string): Promise<JsonObject>;
  backfill(origin: string, roomId: string, from: readonly string[], limit: string | null): Promise<JsonObject>;
  getMissingEvents(origin: string, roomId: string, body: JsonObject): Promise<JsonObject>;
  readUser(userId: string): Promise<UserRecord | undefined>;
  readAlias(alias: string): Promise<{ roomId: string; servers: string[] } | undefined>;
  userDevices(userId: string): Promise<JsonObject>;
  queryUserKeys(body: JsonObject): Promise<JsonObject>;
  claimUserKeys(body: JsonObject): Promise<JsonObject>;
  publicRoomsGet(query: URLSearchParams): Promise<JsonObject>;
  publicRoomsPost(body: JsonObject): Promise<JsonObject>;
}

/** /send bodies: 50 PDUs and 100 EDUs of at most 64 KiB each, with room to spare. */
export const MAX_TRANSACTION_BYTES = 8 * 1024 * 1024;
/** Invite bodies carry the invite_room_state besides the event. */
const MAX_INVITE_BYTES = 512 * 1024;

const F = '/_matrix/federation';

function roomParam(roomId: string): string {
  if (!isValidRoomId(roomId)) throw invalidParam('roomId', 'is not a valid room ID');
  return roomId;
}

/** GET /_matrix/key/v2/server — also served over HTTP by the Node host (`hearth serve`). */
export function serverKeyEndpoint(identity: ServerIdentity, now: () => number): AnyEndpoint {
  return defineEndpoint({
    method: 'GET',
    path: '/_matrix/key/v2/server',
    auth: 'none',
    operationId: 'getServerKey',
    // The key never changes (it is the server name); receivers cap validity at 7 days anyway.
    handler: () => serverKeysResponse(identity, now() + 7 * 24 * 60 * 60 * 1000),
  });
}

export function federationEndpoints(h: FederationHandlers): AnyEndpoint[] {
  const membership = (m: 'join' | 'leave' | 'knock', op: string, needsVer: boolean): AnyEndpoint =>
    defineEndpoint({
      method: 'GET',
      path: `${F}/v1/make_${m}/{roomId}/{userId}`,
      auth: 'federation',
      operationId: op,
      handler: ({ origin, params, query }) => {
        const vers = query.getAll('ver');
        if (needsVer && vers.length === 0) throw missingParam('ver');
        // make_join: `ver` defaults to ["1"] (joins-v1.yaml); make_leave takes none.
        const versions = m === 'leave' ? undefined : vers.length > 0 ? vers : ['1'];
        return h.makeMembership(origin, roomParam(params.roomId), params.userId, m, versions);
      },
    });
  return [
    serverKeyEndpoint(h.identity, () => h.now()),
    /** GET /_matrix/federation/v1/version */
    defineEndpoint({
      method: 'GET',
      path: `${F}/v1/version`,
      auth: 'federation',
      operationId: 'getVersion',
      handler: () => ({ server: { name: 'Hearth', version: '0.1.0' } }),
    }),
    /** PUT /_matrix/federation/v1/send/{txnId} */
    defineEndpoint({
      method: 'PUT',
      path: `${F}/v1/send/{txnId}`,
      auth: 'federation',
      operationId: 'sendTransaction',
      maxBodyBytes: MAX_TRANSACTION_BYTES,
      validateBody: null,
      handler: ({ origin, params, body }) => h.sendTransaction(origin, params.txnId, body),
    }),
    membership('join', 'makeJoin', false),
    membership('leave', 'makeLeave', false),
    membership('knock', 'makeKnock', true),
    /** PUT /_matrix/federation/v2/send_join/{roomId}/{eventId} */
    defineEndpoint({
      method: 'PUT',
      path: `${F}/v2/send_join/{roomId}/{eventId}`,
      auth: 'federation',
      operationId: 'sendJoinV2',
      validateBody: null,
      handler: ({ origin, params, body }) => h.sendJoin(origin, roomParam(params.roomId), params.eventId, body),
    }),
    /** PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId} */
    defineEndpoint({
      method: 'PUT',
      path: `${F}/v2/send_leave/{roomId}/{eventId}`,
      auth: 'federation',
      operationId: 'sendLeaveV2',
      validateBody: null,
      handler: ({ origin, params, body }) => h.sendLeave(origin, roomParam(params.roomId), params.eventId, body),
    }),
    /** PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId} */
    defineEndpoint({
      method: 'PUT',
      path: `${F}/v1/send_knock/{roomId}/{eventId}`,
      auth: 'federation',
      operationId: 'sendKnock',
      validateBody: null,
      handler: ({ origin, params, body }) => h.sendKnock(origin, roomParam(params.roomId), params.eventId, body),
    }),
    /** PUT /_matrix/federation/v2/invite/{roomId}/{eventId} */
    defineEndpoint({
      method: 'PUT',
      path: `${F}/v2/invite/{roomId}/{eventId}`,
      auth: 'federation',
      operationId: 'sendInviteV2',
      maxBodyBytes: MAX_INVITE_BYTES,
      validateBody: null,
      handler: ({ origin, params, body }) => h.invite(origin, roomParam(params.roomId), params.eventId, body),
    }),
    /** GET /_matrix/federation/v1/event/{eventId} */
    defineEndpoint({
      method: 'GET',
      path: `${F}/v1/event/{eventId}`,
      auth: 'federation',
      operationId: 'getEvent',
      handler: ({ origin, params }) => h.getEvent(origin, params.eventId),
    }),
    /** GET /_matrix/federation/v1/state/{roomId} */
    defineEndpoint({
      method: 'GET',
      path: `${F}/v1/state/{roomId}`,
      auth: 'federation',
      operationId: 'getRoomState',
      handler: ({ origin, params, query }) => h.getState(origin, roomParam(params.roomId), query.get('event_id')),
    }),
    /** GET /_matrix/federation/v1/state_ids/{roomId} */
    defineEndpoint({
      method: 'GET',
      path: `${F}/v1/state_ids/{roomId}`,
      auth: 'federation',
      operationId: 'getRoomStateIds',
      handler: ({ origin, params, query }) => h.getStateIds(origin, roomParam(params.roomId), query.get('event_id')),
    }),
    /** GET /_matrix/federation/v1/event_auth/{roomId}/{eventId} */
    defineEndpoint({
      method: 'GET',
      path: `${F}/v1/event_auth/{roomId}/{eventId}`,
      auth: 'federation',
      operationId: 'getEventAuth',
      handler: ({ origin, params }) => h.getEventAuth(origin, roomParam(params.roomId), params.eventId),
    }),
    /** GET /_matrix/federation/v1/backfill/{roomId} */
    defineEndpoint({
      method: 'GET',
      path: `${F}/v1/backfill/{roomId}`,
      auth: 'federation',
      operationId: 'backfillRoom',
      handler: ({ origin, params, query }) => h.backfill(origin, roomParam(params.roomId), query.getAll('v'), query.get('limit')),
    }),
    /** POST /_matrix/federation/v1/get_missing_events/{roomId} */
    defineEndpoint({
      method: 'POST',
      path: `${F}/v1/get_missing_events/{roomId}`,
      auth: 'federation',
      operationId: 'getMissingPreviousEvents',
      validateBody: null,
      handler: ({ origin, params, body }) => h.getMissingEvents(origin, roomParam(params.roomId), body),
    }),
    /** GET /_matrix/federation/v1/query/profile */
    defineEndpoint({
      method: 'GET',
      path: `${F}/v1/query/profile`,
      auth: 'federation',
      operationId: 'queryProfile',
      handler: async ({ query }) => {
        const userId = query.get('user_id');
        if (userId === null) throw missingParam('user_id');
        if (!isValidUserId(userId)) throw invalidParam('user_id', 'is not a valid user ID');
        if (userId.slice(userId.indexOf(':') + 1) !== h.serverName) throw invalidParam('user_id', 'is not a user of this server');
        const field = query.get('field');
        const user = await h.readUser(userId);
        if (!user || user.deactivated) throw notFound('Profile not found');
        const out: JsonObject = {};
        for (const [k, v] of Object.entries(user.profile)) if (field === null || field === k) out[k] = v as JsonValue;
        if (field !== null && !Object.hasOwn(out, field)) throw notFound('Profile field not found');
        return out;
      },
    }),
    /** GET /_matrix/federation/v1/query/directory */
    defineEndpoint({
      method: 'GET',
      path: `${F}/v1/query/directory`,
      auth: 'federation',
      operationId: 'queryRoomDirectory',
      handler: async ({ query }) => {
        const alias = query.get('room_alias');
        if (alias === null) throw missingParam('room_alias');
        const parsed = parseRoomAlias(alias);
        if (!parsed.ok || !isValidRoomAlias(alias)) throw invalidParam('room_alias', 'is not a room alias');
        if (parsed.serverName !== h.serverName) throw notFound('Room alias not found');
        const found = await h.readAlias(alias);
        if (!found) throw notFound('Room alias not found');
        return { room_id: found.roomId, servers: found.servers };
      },
    }),
    /** GET /_matrix/federation/v1/user/devices/{userId} */
    defineEndpoint({
      method: 'GET',
      path: `${F}/v1/user/devices/{userId}`,
      auth: 'federation',
      operationId: 'getUserDevices',
      handler: ({ params }) => h.userDevices(params.userId),
    }),
    /** POST /_matrix/federation/v1/user/keys/query */
    defineEndpoint({
      method: 'POST',
      path: `${F}/v1/user/keys/query`,
      auth: 'federation',
      operationId: 'queryUserEncryptionKeys',
      validateBody: null,
      handler: ({ body }) => h.queryUserKeys(body),
    }),
    /** POST /_matrix/federation/v1/user/keys/claim */
    defineEndpoint({
      method: 'POST',
      path: `${F}/v1/user/keys/claim`,
      auth: 'federation',
      operationId: 'claimUserEncryptionKeys',
      validateBody: null,
      handler: ({ body }) => h.claimUserKeys(body),
    }),
    /** GET /_matrix/federation/v1/publicRooms */
    defineEndpoint({
      method: 'GET',
      path: `${F}/v1/publicRooms`,
      auth: 'federation',
      operationId: 'getPublicRooms',
      handler: ({ query }) => h.publicRoomsGet(query),
    }),
    /** POST /_matrix/federation/v1/publicRooms */
    defineEndpoint({
      method: 'POST',
      path: `${F}/v1/publicRooms`,
      auth: 'federation',
      operationId: 'queryPublicRooms',
      validateBody: null,
      handler: ({ body }) => h.publicRoomsPost(body),
    }),
    hierarchyEndpoint(h),
  ];
}

/**
 * Serves federation requests: each becomes a web `Request` for the shared router (so paths, 404/405 and errors
 * behave as everywhere else), with `origin` attached out of band.
 */
export class FederationRouter {
  private readonly router: Router;
  private readonly origins = new WeakMap<Request, string>();

  constructor(endpoints: readonly AnyEndpoint[], logger: Logger) {
    this.router = createRouter(
      {
        authenticate: async () => {
          throw unknownToken();
        },
        authenticateFederation: async ({ request }) => {
          const origin = this.origins.get(request);
          if (origin === undefined) throw unauthorized('Federation requests must come through the transport');
          return origin;
        },
        logger,
      },
      { endpoints, spec: [], validators: {} },
    );
  }

  async handle(origin: string, req: FederationRequest): Promise<FederationResponse> {
    let request: Request;
    try {
      if (typeof req.path !== 'string' || !req.path.startsWith('/')) throw new TypeError('bad path');
      const body = req.body === undefined ? undefined : JSON.stringify(req.body);
      request = new Request(`http://federation.invalid${req.path}`, {
        method: req.method,
        body: req.method === 'GET' ? undefined : body,
        headers: body === undefined ? undefined : { 'content-type': 'application/json' },
      });
    } catch {
      const e = badJson('Malformed federation request');
      return { status: e.status, body: e.toJSON() as JsonObject };
    }
    this.origins.set(request, origin);
    const res = await this.router.fetch(request);
    const text = await res.text();
    let body: JsonValue = {};
    if (text !== '') {
      try {
        body = JSON.parse(text) as JsonValue;
      } catch {
        body = {};
      }
    }
    return { status: res.status, body };
  }
}

/** An alias of this server → its room and the servers in it (ours first). */
export async function readAliasWith(
  kv: { read<T>(fn: (tx: import('../storage/kv.js').ReadTx) => Promise<T>): Promise<T> },
  alias: string,
  serversOf: (roomId: string) => Promise<Set<string>>,
  serverName: string,
): Promise<{ roomId: string; servers: string[] } | undefined> {
  const rec = await kv.read((tx) => resolveAliasInTx(tx, alias));
  if (!rec) return undefined;
  const servers = [serverName, ...[...(await serversOf(rec.roomId))].filter((s) => s !== serverName)];
  return { roomId: rec.roomId, servers };
}

export async function readUserWith(kv: { read<T>(fn: (tx: import('../storage/kv.js').ReadTx) => Promise<T>): Promise<T> }, userId: string): Promise<UserRecord | undefined> {
  return kv.read((tx) => tx.get<UserRecord>(STORES.users, [userId]));
}

