/**
 * The published room directory: which rooms this server lists, and the list itself.
 *
 * Spec: shared/matrix-spec/content/client-server-api/_index.md (#published-room-directory),
 * data/api/client-server/list_public_rooms.yaml, definitions/public_rooms_{response,chunk}.yaml.
 *
 * Order (v1.19 lets the server choose): most joined members first, then by room ID, a stable order. Pagination is
 * by key, not offset: `next_batch` is `n` + the last room's (members, room ID) and `prev_batch` `p` + the first
 * room's, Base64url-encoded JSON, so a room joining or leaving the list between pages does not shift the rest.
 * `server=<another>` asks that server through the federation layer's `remoteDirectory` hook (404 without one).
 */
import type { Principal } from '../api/endpoint.js';
import { badJson, forbidden, guestAccessForbidden, invalidParam, notFound } from '../api/errors.js';
import { decodeBase64, encodeBase64Url } from '../core/base64.js';
import { isValidRoomId, isValidServerName } from '../core/identifiers.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { ReadTx, WriteTx } from '../storage/kv.js';
import { STORES } from '../storage/schema.js';
import { canChangeRoomListing } from './aliases.js';
import type { ServiceContext } from './context.js';
import { currentStateContents, getRoom, joinedMembers } from './event-store.js';

/** public_rooms: [roomId] → PublicRoomRecord */
export interface PublicRoomRecord {
  visibility: 'public';
}

/** Lists the room in the directory, inside the caller's write transaction (also for createRoom's `visibility`). */
export async function publishRoomInTx(tx: WriteTx, roomId: string): Promise<void> {
  const rec: PublicRoomRecord = { visibility: 'public' };
  await tx.put(STORES.publicRooms, [roomId], rec);
}

/** One entry of the directory (definitions/public_rooms_chunk.yaml). */
export interface PublicRoomsChunk {
  room_id: string;
  num_joined_members: number;
  world_readable: boolean;
  guest_can_join: boolean;
  name?: string;
  topic?: string;
  canonical_alias?: string;
  avatar_url?: string;
  join_rule?: string;
  room_type?: string;
}

export interface PublicRoomsResponse {
  chunk: PublicRoomsChunk[];
  next_batch?: string;
  prev_batch?: string;
  total_room_count_estimate: number;
}

export interface PublicRoomsQuery {
  server?: string;
  /** Undefined or 0: up to MAX_PAGE. */
  limit?: number;
  since?: string;
  filter?: JsonValue;
  includeAllNetworks?: boolean;
  thirdPartyInstanceId?: string;
}

/** Largest page, also the page size when the client gives no limit. */
export const MAX_PAGE = 500;

/** The state the directory shows, by (type, state_key ''). */
const SUMMARY_TYPES = [
  'm.room.name',
  'm.room.topic',
  'm.room.canonical_alias',
  'm.room.avatar',
  'm.room.join_rules',
  'm.room.history_visibility',
  'm.room.guest_access',
  'm.room.create',
] as const;

function str(v: JsonValue | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** The plain-text topic: an `m.topic` text/plain representation, else the `topic` string (m.room.topic). */
export function plainTopic(content: JsonObject): string | undefined {
  const rich = content['m.topic'];
  if (isJsonObject(rich) && Array.isArray(rich['m.text'])) {
    for (const t of rich['m.text']) {
      if (isJsonObject(t) && typeof t.body === 'string' && (t.mimetype === undefined || t.mimetype === 'text/plain')) {
        return t.body;
      }
    }
  }
  return str(content.topic);
}

/** A directory entry for each room, reading their summary state in two batched reads. */
async function summaries(tx: ReadTx, roomIds: readonly string[]): Promise<PublicRoomsChunk[]> {
  const contents = await currentStateContents(tx, roomIds, SUMMARY_TYPES);
  const out: PublicRoomsChunk[] = [];
  for (let i = 0; i < roomIds.length; i++) {
    const [name, topic, canonical, avatar, joinRules, hv, guest, create] = contents[i];
    const entry: PublicRoomsChunk = {
      room_id: roomIds[i],
      num_joined_members: (await joinedMembers(tx, roomIds[i])).length,
      world_readable: hv.history_visibility === 'world_readable',
      guest_can_join: guest.guest_access === 'can_join',
    };
    const n = str(name.name);
    if (n) entry.name = n;
    const tp = plainTopic(topic);
    if (tp) entry.topic = tp;
    const a = str(canonical.alias);
    if (a) entry.canonical_alias = a;
    const av = str(avatar.url);
    if (av) entry.avatar_url = av;
    const jr = str(joinRules.join_rule);
    if (jr) entry.join_rule = jr;
    const rt = str(create.type);
    if (rt) entry.room_type = rt;
    out.push(entry);
  }
  return out;
}

/** Most joined members first, then room ID. */
function compareEntries(a: { n: number; id: string }, b: { n: number; id: string }): number {
  if (a.n !== b.n) return b.n - a.n;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

const utf8 = new TextEncoder();
const utf8Decode = new TextDecoder();

function encodeSince(dir: 'n' | 'p', e: PublicRoomsChunk): string {
  return dir + encodeBase64Url(utf8.encode(JSON.stringify([e.num_joined_members, e.room_id])));
}

function decodeSince(token: string): { dir: 'n' | 'p'; key: { n: number; id: string } } {
  const bad = () => invalidParam('since', 'is not a valid pagination token');
  const dir = token[0];
  if (dir !== 'n' && dir !== 'p') throw bad();
  const bytes = decodeBase64(token.slice(1));
  if (!bytes) throw bad();
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8Decode.decode(bytes));
  } catch {
    throw bad();
  }
  if (!Array.isArray(parsed) || !Number.isSafeInteger(parsed[0]) || typeof parsed[1] !== 'string') throw bad();
  return { dir, key: { n: parsed[0] as number, id: parsed[1] } };
}

/** The filter of POST /publicRooms, checked. */
function readFilter(f: JsonValue | undefined): { term?: string; roomTypes?: Array<string | null> } {
  if (f === undefined || f === null) return {};
  if (!isJsonObject(f)) throw badJson("'filter' must be an object");
  const term = f.generic_search_term;
  if (term !== undefined && term !== null && typeof term !== 'string') throw badJson("'filter.generic_search_term' must be a string");
  const types = f.room_types;
  if (types !== undefined && types !== null && (!Array.isArray(types) || types.some((t) => t !== null && typeof t !== 'string'))) {
    throw badJson("'filter.room_types' must be an array of strings or nulls");
  }
  const out: { term?: string; roomTypes?: Array<string | null> } = {};
  if (typeof term === 'string' && term.trim() !== '') out.term = term.trim().toLowerCase();
  // An empty list filters nothing (Synapse), as if it were absent.
  if (Array.isArray(types) && types.length > 0) out.roomTypes = types as Array<string | null>;
  return out;
}

function matches(e: PublicRoomsChunk, f: { term?: string; roomTypes?: Array<string | null> }): boolean {
  if (f.roomTypes && !f.roomTypes.includes(e.room_type ?? null)) return false;
  if (f.term) {
    const hay = [e.name, e.topic, e.canonical_alias].filter((x): x is string => x !== undefined);
    if (!hay.some((h) => h.toLowerCase().includes(f.term!))) return false;
  }
  return true;
}

export class DirectoryService {
  constructor(private readonly ctx: ServiceContext) {}

  /** GET /_matrix/client/v3/directory/list/room/{roomId} */
  async getVisibility(roomId: string): Promise<{ visibility: 'public' | 'private' }> {
    if (!isValidRoomId(roomId)) throw invalidParam('roomId', 'is not a valid room ID');
    return this.ctx.kv.read(async (tx) => {
      if (!(await getRoom(tx, roomId))) throw notFound('Room not found');
      const rec = await tx.get<PublicRoomRecord>(STORES.publicRooms, [roomId]);
      return { visibility: rec ? 'public' : 'private' };
    });
  }

  /**
   * PUT /_matrix/client/v3/directory/list/room/{roomId} — by a joined member with the power to send
   * `m.room.canonical_alias` (Synapse's rule; the spec lets servers choose). `visibility` defaults to public.
   */
  async setVisibility(principal: Principal, roomId: string, visibility: 'public' | 'private'): Promise<void> {
    if (principal.isGuest) throw guestAccessForbidden('Guests cannot change the room directory');
    if (!isValidRoomId(roomId)) throw invalidParam('roomId', 'is not a valid room ID');
    await this.ctx.kv.write(async (tx) => {
      if (!(await getRoom(tx, roomId))) throw notFound('Room not found');
      if (!(await canChangeRoomListing(tx, roomId, principal.userId))) {
        throw forbidden('You do not have the power to change how this room is listed');
      }
      if (visibility === 'public') await publishRoomInTx(tx, roomId);
      else await tx.delete(STORES.publicRooms, [roomId]);
    });
  }

  /** Set by the federation layer: another server's directory (GET/POST /_matrix/federation/v1/publicRooms). */
  remoteDirectory?: (server: string, q: PublicRoomsQuery) => Promise<PublicRoomsResponse>;

  /** GET and POST /_matrix/client/v3/publicRooms */
  async publicRooms(q: PublicRoomsQuery): Promise<PublicRoomsResponse> {
    if (q.server !== undefined && q.server !== this.ctx.serverName) {
      if (!isValidServerName(q.server)) throw invalidParam('server', 'is not a valid server name');
      if (this.remoteDirectory) return this.remoteDirectory(q.server, { ...q, server: undefined });
      throw notFound(`The room directory of ${q.server} cannot be fetched: federation is not available`);
    }
    if (q.limit !== undefined && (!Number.isSafeInteger(q.limit) || q.limit < 0)) {
      throw invalidParam('limit', 'must be a non-negative integer');
    }
    const limit = q.limit === undefined || q.limit === 0 ? MAX_PAGE : Math.min(q.limit, MAX_PAGE);
    const since = q.since === undefined || q.since === '' ? undefined : decodeSince(q.since);
    const filter = readFilter(q.filter);
    // No application-service networks exist here: a third-party network's list is empty.
    if (q.thirdPartyInstanceId !== undefined && !q.includeAllNetworks) return { chunk: [], total_room_count_estimate: 0 };

    const all = await this.ctx.kv.read(async (tx) => {
      const rows = await tx.range<PublicRoomRecord>(STORES.publicRooms);
      return summaries(
        tx,
        rows.map(([key]) => String(key[0])),
      );
    });
    const list = all.filter((e) => matches(e, filter));
    list.sort((a, b) => compareEntries({ n: a.num_joined_members, id: a.room_id }, { n: b.num_joined_members, id: b.room_id }));
    const keyOf = (e: PublicRoomsChunk) => ({ n: e.num_joined_members, id: e.room_id });
    let startIdx = 0;
    let endIdx = Math.min(limit, list.length);
    if (since?.dir === 'n') {
      startIdx = list.findIndex((e) => compareEntries(keyOf(e), since.key) > 0);
      if (startIdx < 0) startIdx = list.length;
      endIdx = Math.min(startIdx + limit, list.length);
    } else if (since?.dir === 'p') {
      endIdx = list.findIndex((e) => compareEntries(keyOf(e), since.key) >= 0);
      if (endIdx < 0) endIdx = list.length;
      startIdx = Math.max(0, endIdx - limit);
    }
    const chunk = list.slice(startIdx, endIdx);
    const res: PublicRoomsResponse = { chunk, total_room_count_estimate: list.length };
    if (endIdx < list.length && chunk.length > 0) res.next_batch = encodeSince('n', chunk[chunk.length - 1]);
    if (startIdx > 0 && chunk.length > 0) res.prev_batch = encodeSince('p', chunk[0]);
    return res;
  }
}
