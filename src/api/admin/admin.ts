/**
 * The operator/researcher API of a Hearth peer, under `/_hearth/admin/v1/` (issue 5, "For operators and
 * researchers"). Every request needs `Authorization: Bearer <admin token>`; errors are Matrix-style like the rest of
 * the server (as Synapse's admin API: no token 401 M_MISSING_TOKEN, an unknown token 401 M_UNKNOWN_TOKEN, a user's
 * valid access token 403 M_FORBIDDEN).
 *
 * - GET rooms                            — the rooms this peer holds, with their version
 * - GET rooms/{roomId}/pdus              — the room's PDUs exactly as stored (hashes, signatures), in timeline
 *                                          order, paginated by stream position (`from`, `limit`, `dir=f|b`)
 * - GET rooms/{roomId}/extremities       — this peer's forward extremities of the room
 * - GET network                          — peers, connections (transport, direction), room topics, send queues
 *
 * Served by its own router (no Client-Server spec table, no body validators): the host sends `/_hearth/admin/`
 * requests here and everything else to the homeserver.
 */
import type { NetworkStatus } from '../../net/libp2p-transport.js';
import { isValidRoomId } from '../../core/identifiers.js';
import type { Kv } from '../../storage/kv.js';
import type { EventRecord, RoomRecord } from '../../storage/records.js';
import { STORES } from '../../storage/schema.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';
import { forbidden, invalidParam, missingToken, notFound, unknownToken } from '../errors.js';
import { createRouter } from '../router.js';
import type { Router } from '../router.js';
import type { ApiLogger } from '../errors.js';

export const ADMIN_PREFIX = '/_hearth/admin/v1';

/** Default and largest page of `rooms/{roomId}/pdus`. */
export const DEFAULT_PDU_PAGE = 100;
export const MAX_PDU_PAGE = 1000;

export interface AdminComponents {
  kv: Kv;
  /** The admin token; compared in constant time. */
  adminToken: string;
  /** Whether a bearer token is a user's valid access token (to answer 403 rather than 401). */
  isUserToken?(token: string): Promise<boolean>;
  /** The libp2p view (Libp2pTransport.status()) and the Hearth servers connected; absent without a network. */
  networkStatus?(): NetworkStatus & { servers: string[] };
  /** Federation send queues per destination (FederationSender.status()). */
  sendQueues?(): SendQueueStatus[];
  logger?: ApiLogger;
}

export interface SendQueueStatus {
  destination: string;
  waiting: number;
  stored: boolean;
  retryInMs?: number;
}

/** The wire form of the network view: snake_case like the rest of the Matrix APIs. */
function networkJson(s: NetworkStatus & { servers: string[] }): object {
  return {
    peer_id: s.peerId,
    multiaddrs: s.multiaddrs,
    servers: s.servers,
    connections: s.connections.map((c) => ({
      peer_id: c.peerId,
      ...(c.serverName !== undefined ? { server_name: c.serverName } : {}),
      remote_addr: c.remoteAddr,
      direction: c.direction,
      transport: c.transport,
      limited: c.limited,
      ...(c.rttMs !== undefined ? { rtt_ms: c.rttMs } : {}),
    })),
    topics: s.topics,
  };
}

export interface AdminApi extends Router {
  /** Whether a request is for this API (by path). */
  handles(url: URL): boolean;
}

function sameToken(given: string, expected: string): boolean {
  if (given.length !== expected.length) return false;
  // Constant time over the length, so timing does not reveal how much of a guess was right.
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff |= given.charCodeAt(i) ^ expected.charCodeAt(i);
  return diff === 0;
}

function bearer(request: Request): string | undefined {
  const h = request.headers.get('authorization');
  const m = h === null ? null : /^Bearer[ \t]+([^ \t]+)[ \t]*$/i.exec(h);
  return m ? m[1] : undefined;
}

function intParam(query: URLSearchParams, name: string, min: number, max: number): number | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  if (!/^\d+$/.test(raw)) throw invalidParam(name, 'must be a non-negative integer');
  const n = Number(raw);
  if (n < min || n > max) throw invalidParam(name, `must be between ${min} and ${max}`);
  return n;
}

export function adminEndpoints(c: AdminComponents): AnyEndpoint[] {
  const authorize = async (request: Request): Promise<void> => {
    const token = bearer(request);
    if (token === undefined) throw missingToken('An admin token is required (Authorization: Bearer <admin token>)');
    if (sameToken(token, c.adminToken)) return;
    if (c.isUserToken && (await c.isUserToken(token).catch(() => false))) throw forbidden('You are not a server admin');
    throw unknownToken(false, 'Unrecognised admin token');
  };

  const room = async (roomIdParam: string): Promise<RoomRecord> => {
    if (!isValidRoomId(roomIdParam)) throw invalidParam('roomId', 'is not a room ID');
    const rec = await c.kv.read((tx) => tx.get<RoomRecord>(STORES.rooms, [roomIdParam]));
    if (rec === undefined) throw notFound('This peer holds no such room');
    return rec;
  };

  return [
    /** GET /_hearth/admin/v1/rooms */
    defineEndpoint({
      method: 'GET',
      path: `${ADMIN_PREFIX}/rooms`,
      auth: 'none',
      operationId: 'hearthAdminRooms',
      async handler({ request }) {
        await authorize(request);
        const rows = await c.kv.read((tx) => tx.range<RoomRecord>(STORES.rooms, {}));
        return { rooms: rows.map(([, r]) => ({ room_id: r.roomId, room_version: r.version })) };
      },
    }),
    /** GET /_hearth/admin/v1/rooms/{roomId}/pdus?from=<stream pos>&limit=<n>&dir=f|b */
    defineEndpoint({
      method: 'GET',
      path: `${ADMIN_PREFIX}/rooms/{roomId}/pdus`,
      auth: 'none',
      operationId: 'hearthAdminRoomPdus',
      async handler({ request, params, query }) {
        await authorize(request);
        const dir = query.get('dir') ?? 'f';
        if (dir !== 'f' && dir !== 'b') throw invalidParam('dir', "must be 'f' or 'b'");
        const limit = intParam(query, 'limit', 1, MAX_PDU_PAGE) ?? DEFAULT_PDU_PAGE;
        const from = intParam(query, 'from', 0, Number.MAX_SAFE_INTEGER);
        const { roomId } = await room(params.roomId);
        // `from` is inclusive, like a /messages token: the next page starts at `next_from`.
        const range =
          from === undefined ? { prefix: [roomId] } : dir === 'f' ? { prefix: [roomId], gte: [roomId, from] } : { prefix: [roomId], lte: [roomId, from] };
        const { rows, records } = await c.kv.read(async (tx) => {
          // One more than the page tells whether there is a next one.
          const rows = await tx.range<string>(STORES.roomTimeline, { ...range, reverse: dir === 'b', limit: limit + 1 });
          const records = await tx.getMany<EventRecord>(STORES.events, rows.slice(0, limit).map(([, id]) => [id]));
          return { rows, records };
        });
        const pdus = rows.slice(0, limit).map(([key, eventId], i) => {
          const rec = records[i];
          return {
            event_id: eventId,
            stream_pos: key[1] as number,
            ...(rec?.rejected !== undefined ? { rejected: rec.rejected } : {}),
            ...(rec?.softFailed ? { soft_failed: true } : {}),
            ...(rec?.outlier ? { outlier: true } : {}),
            ...(rec?.redactedBy !== undefined ? { redacted_by: rec.redactedBy } : {}),
            pdu: rec?.json ?? null,
          };
        });
        const next = rows.length > limit ? (rows[limit][0][1] as number) : undefined;
        return { room_id: roomId, pdus, ...(next !== undefined ? { next_from: next } : {}) };
      },
    }),
    /** GET /_hearth/admin/v1/rooms/{roomId}/extremities */
    defineEndpoint({
      method: 'GET',
      path: `${ADMIN_PREFIX}/rooms/{roomId}/extremities`,
      auth: 'none',
      operationId: 'hearthAdminRoomExtremities',
      async handler({ request, params }) {
        await authorize(request);
        const { roomId } = await room(params.roomId);
        const extremities = await c.kv.read(async (tx) => {
          const ids = (await tx.range<boolean>(STORES.forwardExtremities, { prefix: [roomId] })).map(([k]) => k[1] as string);
          const recs = await tx.getMany<EventRecord>(STORES.events, ids.map((id) => [id]));
          return ids.map((id, i) => {
            const json = recs[i]?.json;
            return {
              event_id: id,
              ...(typeof json?.depth === 'number' ? { depth: json.depth } : {}),
              ...(typeof json?.origin_server_ts === 'number' ? { origin_server_ts: json.origin_server_ts } : {}),
              ...(typeof json?.sender === 'string' ? { sender: json.sender } : {}),
            };
          });
        });
        return { room_id: roomId, extremities };
      },
    }),
    /** GET /_hearth/admin/v1/network */
    defineEndpoint({
      method: 'GET',
      path: `${ADMIN_PREFIX}/network`,
      auth: 'none',
      operationId: 'hearthAdminNetwork',
      async handler({ request }) {
        await authorize(request);
        const queues = (c.sendQueues?.() ?? []).map((q) => ({
          destination: q.destination,
          waiting: q.waiting,
          stored: q.stored,
          ...(q.retryInMs !== undefined ? { retry_in_ms: q.retryInMs } : {}),
        }));
        return { enabled: c.networkStatus !== undefined, ...(c.networkStatus ? networkJson(c.networkStatus()) : {}), send_queues: queues };
      },
    }),
  ];
}

/** The admin API as its own router (see the module comment). */
export function createAdminApi(c: AdminComponents): AdminApi {
  const router = createRouter({ authenticate: () => Promise.reject(unknownToken()), logger: c.logger }, { endpoints: adminEndpoints(c), spec: [], validators: {} });
  return {
    ...router,
    fetch: (request) => router.fetch(request),
    handles: (url) => url.pathname === '/_hearth/admin' || url.pathname.startsWith('/_hearth/admin/'),
  };
}
