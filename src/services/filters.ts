/**
 * Stored filters for /sync and /messages.
 * Spec: shared/matrix-spec/content/client-server-api/_index.md#filtering, data/api/client-server/filter.yaml,
 * definitions/{sync_filter,room_event_filter,event_filter}.yaml.
 *
 * The generated body validator has already checked the JSON types against the spec's schema; here come the value
 * rules the schema states only in prose (limits greater than 0, room and user IDs that parse).
 */
import type { Principal } from '../api/endpoint.js';
import { forbidden, invalidParam, notFound } from '../api/errors.js';
import { isValidRoomId, isValidUserId } from '../core/identifiers.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import { STORES } from '../storage/schema.js';
import type { ServiceContext } from './context.js';

const NEXT_FILTER_ID = ['nextId', 'filter'] as const;

export class FiltersService {
  constructor(private readonly ctx: ServiceContext) {}

  /** POST /user/{userId}/filter: stores the filter and returns its ID. */
  async create(principal: Principal, userId: string, filter: JsonObject): Promise<string> {
    // A malformed user ID is 400, as Synapse answers, before "not yours" (403).
    if (!isValidUserId(userId)) throw invalidParam('userId', 'is not a valid user ID');
    if (principal.userId !== userId) throw forbidden('Cannot create filters for other users');
    validateFilter(filter);
    return this.ctx.kv.write(async (tx) => {
      // Plain decimal IDs (as Synapse's): never starting with '{', so /sync can tell an ID from inline JSON.
      const n = ((await tx.get<number>(STORES.server, NEXT_FILTER_ID)) ?? 0) + 1;
      await tx.put(STORES.server, NEXT_FILTER_ID, n);
      const filterId = String(n);
      await tx.put(STORES.filters, [userId, filterId], filter);
      return filterId;
    });
  }

  /** GET /user/{userId}/filter/{filterId} */
  async get(principal: Principal, userId: string, filterId: string): Promise<JsonObject> {
    if (!isValidUserId(userId)) throw invalidParam('userId', 'is not a valid user ID');
    if (principal.userId !== userId) throw forbidden('Cannot get filters for other users');
    const filter = await this.getFilter(userId, filterId);
    if (!filter) throw notFound('No such filter');
    return filter;
  }

  /** A stored filter of `userId`, or undefined (for /sync's and /messages' `filter` parameter). */
  async getFilter(userId: string, filterId: string): Promise<JsonObject | undefined> {
    return this.ctx.kv.read((tx) => tx.get<JsonObject>(STORES.filters, [userId, filterId]));
  }
}

/**
 * Checks the prose rules of a filter (a sync filter, or a room event filter when given to /messages inline);
 * throws 400 M_INVALID_PARAM naming the field.
 */
export function validateFilter(filter: JsonObject): void {
  checkEventFilter(filter.account_data, 'account_data');
  checkEventFilter(filter.presence, 'presence');
  const room = filter.room;
  if (isJsonObject(room)) {
    checkIds(room.rooms, 'room.rooms', isValidRoomId, 'room ID');
    checkIds(room.not_rooms, 'room.not_rooms', isValidRoomId, 'room ID');
    for (const part of ['ephemeral', 'state', 'timeline', 'account_data']) checkEventFilter(room[part], `room.${part}`);
  }
}

function checkEventFilter(f: JsonValue | undefined, at: string): void {
  if (!isJsonObject(f)) return;
  const limit = f.limit;
  if (limit !== undefined && (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1)) {
    throw invalidParam(`${at}.limit`, 'must be an integer greater than 0');
  }
  checkIds(f.senders, `${at}.senders`, isValidUserId, 'user ID');
  checkIds(f.not_senders, `${at}.not_senders`, isValidUserId, 'user ID');
  checkIds(f.rooms, `${at}.rooms`, isValidRoomId, 'room ID');
  checkIds(f.not_rooms, `${at}.not_rooms`, isValidRoomId, 'room ID');
}

function checkIds(list: JsonValue | undefined, at: string, valid: (s: string) => boolean, what: string): void {
  if (!Array.isArray(list)) return;
  list.forEach((id, i) => {
    if (typeof id !== 'string' || !valid(id)) throw invalidParam(`${at}[${i}]`, `is not a valid ${what}`);
  });
}
