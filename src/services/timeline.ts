/**
 * Reading a room's history: /messages, /context, /timestamp_to_event, /relations and /threads.
 *
 * Spec: shared/matrix-spec/content/client-server-api/_index.md (#get_matrixclientv3roomsroomidmessages,
 * #filtering, #lazy-loading-room-members, #aggregations-of-child-events, #relationships-api),
 * modules/history_visibility.md, modules/event_context.md, modules/threading.md, modules/event_replacements.md,
 * modules/reference_relations.md; data/api/client-server/{message_pagination,event_context,
 * room_event_by_timestamp,relations,threads_list}.yaml.
 *
 * ## Pagination tokens
 * A token names a boundary in the server's stream (storage/schema.ts): `t<N>` sits just after stream position N,
 * so events with pos ≤ N are before it and events with pos > N after it. One format serves /messages (`start`,
 * `end`, `from`, `to`), /context, /relations (`next_batch`, `prev_batch`) and /threads. It is the same boundary a
 * sync token marks: /sync's `next_batch` (everything up to position N delivered) is `from` for backward pagination,
 * and a room's timeline `prev_batch` is `t<(pos of its first timeline event) − 1>`. Sync tokens written `s<N>` (with
 * or without `_…` parts after N) are accepted too. Anything else is 400 M_INVALID_PARAM.
 *
 * Paging never skips or repeats an event: a page's `end` is the boundary just past the last event *scanned* (shown
 * or filtered out), and the next page starts there.
 *
 * ## Who may read
 * Joined members; users who left or were banned, up to their leave (nothing after it); anyone else only while the
 * room's current history visibility is `world_readable` (peeking). Others get 403 M_FORBIDDEN, as do unknown rooms
 * (Synapse: the server does not say whether a room it will not show you exists). Each event is then checked against
 * the history visibility at that event (event-store.ts `visibleToUser`), and events of ignored users are dropped.
 */
import type { Principal } from '../api/endpoint.js';
import { badJson, forbidden, invalidParam, notFound } from '../api/errors.js';
import type { StateKey } from '../core/event.js';
import { splitStateKey, stateKey } from '../core/event.js';
import { isValidRoomId, isValidUserId } from '../core/identifiers.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import { redactEvent } from '../core/redaction.js';
import type { RoomVersion } from '../core/room-versions.js';
import { DEFAULT_ROOM_VERSION, roomVersion } from '../core/room-versions.js';
import type { ReadTx } from '../storage/kv.js';
import type { EventRecord, RoomRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import { readAccountData } from './account-data.js';
import type { ServiceContext } from './context.js';
import type { ClientEvent } from './event-store.js';
import {
  VisibilityCache,
  clientEvents,
  currentStateEvent,
  getEvent,
  getEvents,
  getRoom,
  mayHaveRelations,
  membershipOf,
  stateAt,
  stateLookup,
  timelineRange,
  visibleToUser,
} from './event-store.js';

// ---------------------------------------------------------------------------------------------------------------
// Tokens

/** The token for the boundary just after stream position `pos`. */
export function paginationToken(pos: number): string {
  return `t${Math.max(0, pos)}`;
}

const TOKEN = /^[ts](\d{1,15})(?:_[^]*)?$/;

/** The stream position a token names; 400 M_INVALID_PARAM for anything that is not a token. */
export function parsePaginationToken(raw: string, param: string): number {
  const m = TOKEN.exec(raw);
  if (!m) throw invalidParam(param, 'is not a valid pagination token');
  return Number(m[1]);
}

// ---------------------------------------------------------------------------------------------------------------
// Filters

/** A RoomEventFilter (definitions/room_event_filter.yaml), read and checked. */
export interface RoomEventFilter {
  types?: string[];
  notTypes?: string[];
  senders?: string[];
  notSenders?: string[];
  rooms?: string[];
  notRooms?: string[];
  containsUrl?: boolean;
  lazyLoadMembers: boolean;
  includeRedundantMembers: boolean;
  /** Relation types (MSC3874, as Synapse reads it: `rel_types` / `org.matrix.msc3874.rel_types`). */
  relTypes?: string[];
  notRelTypes?: string[];
}

export const EMPTY_FILTER: RoomEventFilter = { lazyLoadMembers: false, includeRedundantMembers: false };

function stringList(f: JsonObject, key: string, check?: (s: string) => boolean, what?: string): string[] | undefined {
  const v = f[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw badJson(`filter.${key} must be an array of strings`);
  const list = v as string[];
  if (check) {
    list.forEach((s, i) => {
      if (!check(s)) throw invalidParam(`filter.${key}[${i}]`, `is not a valid ${what}`);
    });
  }
  return list;
}

function bool(f: JsonObject, key: string): boolean | undefined {
  const v = f[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw badJson(`filter.${key} must be a boolean`);
  return v;
}

/**
 * Reads a RoomEventFilter given inline (the `filter` query parameter). Wrong JSON types → 400 M_BAD_JSON; values
 * the spec's prose refuses (limit ≤ 0, malformed user or room IDs) → 400 M_INVALID_PARAM.
 */
export function parseRoomEventFilter(value: JsonValue | undefined): RoomEventFilter {
  if (value === undefined) return EMPTY_FILTER;
  if (!isJsonObject(value)) throw badJson('filter must be a JSON object');
  const limit = value.limit;
  if (limit !== undefined && (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1)) {
    throw invalidParam('filter.limit', 'must be an integer greater than 0');
  }
  const f: RoomEventFilter = {
    types: stringList(value, 'types'),
    notTypes: stringList(value, 'not_types'),
    senders: stringList(value, 'senders', isValidUserId, 'user ID'),
    notSenders: stringList(value, 'not_senders', isValidUserId, 'user ID'),
    rooms: stringList(value, 'rooms', (s) => isValidRoomId(s), 'room ID'),
    notRooms: stringList(value, 'not_rooms', (s) => isValidRoomId(s), 'room ID'),
    containsUrl: bool(value, 'contains_url'),
    lazyLoadMembers: bool(value, 'lazy_load_members') ?? false,
    includeRedundantMembers: bool(value, 'include_redundant_members') ?? false,
    relTypes: stringList(value, 'rel_types') ?? stringList(value, 'org.matrix.msc3874.rel_types'),
    notRelTypes: stringList(value, 'not_rel_types') ?? stringList(value, 'org.matrix.msc3874.not_rel_types'),
  };
  bool(value, 'unread_thread_notifications');
  return f;
}

const globCache = new Map<string, RegExp>();

/** `*` matches any run of characters (event_filter.yaml); everything else literally. */
function globMatch(pattern: string, value: string): boolean {
  if (!pattern.includes('*')) return pattern === value;
  let re = globCache.get(pattern);
  if (!re) {
    const body = pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('[^]*');
    re = new RegExp(`^${body}$`);
    if (globCache.size > 1000) globCache.clear();
    globCache.set(pattern, re);
  }
  return re.test(value);
}

/** The parts of an event a filter looks at. */
interface FilterView {
  type: string;
  sender: string;
  roomId: string;
  content: JsonObject;
}

/** Whether an event passes the filter. "not_" lists win over their positive lists (event_filter.yaml). */
export function matchesFilter(f: RoomEventFilter, ev: FilterView): boolean {
  if (f.notRooms?.includes(ev.roomId)) return false;
  if (f.rooms && !f.rooms.includes(ev.roomId)) return false;
  if (f.notSenders?.includes(ev.sender)) return false;
  if (f.senders && !f.senders.includes(ev.sender)) return false;
  if (f.notTypes?.some((p) => globMatch(p, ev.type))) return false;
  if (f.types && !f.types.some((p) => globMatch(p, ev.type))) return false;
  if (f.containsUrl !== undefined && (typeof ev.content.url === 'string') !== f.containsUrl) return false;
  if (f.relTypes || f.notRelTypes) {
    const rel = relationOf(ev.content)?.relType;
    if (f.notRelTypes && rel !== undefined && f.notRelTypes.includes(rel)) return false;
    if (f.relTypes && (rel === undefined || !f.relTypes.includes(rel))) return false;
  }
  return true;
}

/** `content['m.relates_to']` with a `rel_type`, if the event has one. */
export function relationOf(content: JsonObject): { relType: string; eventId: string } | undefined {
  const r = content['m.relates_to'];
  if (!isJsonObject(r) || typeof r.rel_type !== 'string' || typeof r.event_id !== 'string') return undefined;
  return { relType: r.rel_type, eventId: r.event_id };
}

// ---------------------------------------------------------------------------------------------------------------
// Reading helpers

/** The content a client sees: redacted events lose theirs (and with it any relation). */
function shownContent(rec: EventRecord): JsonObject {
  const json = rec.redactedBy ? redactEvent(rec.json, versionHint(rec)) : rec.json;
  return isJsonObject(json.content) ? json.content : {};
}

/** Room versions seen by `roomAccess`, for redacting (a room's version never changes). */
const cachedVersions = new Map<string, RoomVersion>();
const LATEST: RoomVersion = roomVersion(DEFAULT_ROOM_VERSION)!;

function versionHint(rec: EventRecord): RoomVersion {
  // Unknown version: the latest rules keep the least, so nothing is shown that should not be.
  return cachedVersions.get(rec.roomId) ?? LATEST;
}

function viewOf(rec: EventRecord): FilterView {
  const j = rec.json;
  return {
    type: typeof j.type === 'string' ? j.type : '',
    sender: typeof j.sender === 'string' ? j.sender : '',
    roomId: rec.roomId,
    content: shownContent(rec),
  };
}

function senderOf(rec: EventRecord): string {
  return typeof rec.json.sender === 'string' ? rec.json.sender : '';
}

/** The users `userId` ignores (m.ignored_user_list account data, modules/ignore_users.md). */
async function ignoredUsers(tx: ReadTx, userId: string): Promise<Set<string>> {
  const content = await readAccountData(tx, userId, undefined, 'm.ignored_user_list');
  const list = content && isJsonObject(content.ignored_users) ? Object.keys(content.ignored_users) : [];
  return new Set(list);
}

/** What a user may read of a room (see the module comment). */
interface RoomAccess {
  room: RoomRecord;
  /** Highest stream position the user may see (their leave), or undefined for no cap. */
  cap: number | undefined;
}

async function roomAccess(tx: ReadTx, userId: string, roomId: string): Promise<RoomAccess> {
  const room = await getRoom(tx, roomId);
  if (!room) throw forbidden('You are not allowed to view this room');
  const version = roomVersion(room.version);
  if (version) {
    if (cachedVersions.size > 10_000) cachedVersions.clear();
    cachedVersions.set(roomId, version);
  }
  const member = await membershipOf(tx, roomId, userId);
  if (member?.membership === 'join') return { room, cap: undefined };
  if (member?.membership === 'leave' || member?.membership === 'ban') {
    const ended = await getEvent(tx, member.eventId);
    // A leave that never followed a join (a rejected invite) still caps what they see at that point.
    if (ended?.pos !== undefined) return { room, cap: ended.pos };
  }
  const hv = await currentStateEvent(tx, roomId, 'm.room.history_visibility', '');
  if (hv && !hv.redactedBy && isJsonObject(hv.json.content) && hv.json.content.history_visibility === 'world_readable') {
    return { room, cap: undefined };
  }
  throw forbidden('You are not allowed to view this room');
}

/** One step of a scan: what was shown and where the scan stopped. */
interface ScanResult {
  records: EventRecord[];
  /** Position of the last event looked at, or undefined when none was. */
  lastPos: number | undefined;
  /** No events are left in the range. */
  exhausted: boolean;
}

interface ScanOptions {
  roomId: string;
  userId: string;
  /** Exclusive lower and inclusive upper stream bound: events with lo < pos ≤ hi. */
  lo: number;
  hi: number;
  reverse: boolean;
  limit: number;
  filter: RoomEventFilter;
  ignored: ReadonlySet<string>;
  cache: VisibilityCache;
  /** Stop after looking at this many events even if fewer than `limit` were shown (the caller gets a token). */
  maxScan: number;
}

/** Largest read of timeline entries at once. */
const SCAN_BATCH = 200;

/**
 * Walks a room's timeline from one boundary towards the other, keeping the events the user may see that pass the
 * filter, until `limit` are kept, the range ends, or `maxScan` events were looked at.
 */
async function scanTimeline(tx: ReadTx, o: ScanOptions): Promise<ScanResult> {
  const records: EventRecord[] = [];
  let lo = o.lo;
  let hi = o.hi;
  let lastPos: number | undefined;
  let scanned = 0;
  if (o.limit <= 0 || lo >= hi) {
    return { records, lastPos, exhausted: lo >= hi || (await timelineRange(tx, o.roomId, { from: lo, to: hi, limit: 1 })).length === 0 };
  }
  for (;;) {
    const want = Math.min(SCAN_BATCH, Math.max(o.limit - records.length, 1) * 2, o.maxScan - scanned);
    const rows = await timelineRange(tx, o.roomId, { from: lo, to: hi, reverse: o.reverse, limit: want });
    const recs = await getEvents(
      tx,
      rows.map(([, id]) => id),
    );
    for (let i = 0; i < rows.length; i++) {
      const pos = rows[i][0];
      lastPos = pos;
      scanned++;
      const rec = recs[i];
      if (rec && (await shown(tx, rec, o))) records.push(rec);
      if (records.length >= o.limit) {
        // Exhausted only if this was the range's last event: a shorter read than asked for means no more rows.
        return { records, lastPos, exhausted: i === rows.length - 1 && rows.length < want };
      }
    }
    if (rows.length < want) return { records, lastPos, exhausted: true };
    if (scanned >= o.maxScan) return { records, lastPos, exhausted: false };
    if (o.reverse) hi = lastPos! - 1;
    else lo = lastPos!;
  }
}

async function shown(
  tx: ReadTx,
  rec: EventRecord,
  o: { userId: string; filter: RoomEventFilter; ignored: ReadonlySet<string>; cache: VisibilityCache },
): Promise<boolean> {
  if (rec.rejected !== undefined || rec.softFailed) return false;
  const view = viewOf(rec);
  // Ignored users' messages go; their state events stay (the room state must remain whole).
  if (o.ignored.has(view.sender) && typeof rec.json.state_key !== 'string') return false;
  if (!matchesFilter(o.filter, view)) return false;
  return visibleToUser(tx, rec, o.userId, o.cache);
}

/**
 * Member events of the given senders at a state group, for lazy-loading (#lazy-loading-room-members). Redundant
 * members are always included: the server keeps no record of what each client was sent, which the spec allows.
 */
async function memberEventsAt(tx: ReadTx, group: number, senders: Iterable<string>, cache: VisibilityCache): Promise<EventRecord[]> {
  const keys = [...new Set(senders)].map((u) => stateKey('m.room.member', u));
  if (keys.length === 0) return [];
  const found = await stateLookup(tx, group, keys, cache.groups);
  const recs = await getEvents(tx, [...found.values()]);
  return recs.filter((r): r is EventRecord => r !== undefined);
}

// ---------------------------------------------------------------------------------------------------------------
// Bundled aggregations (#aggregations-of-child-events)

/** Relation types whose aggregations are bundled into `unsigned['m.relations']`. */
const BUNDLED = ['m.thread', 'm.replace', 'm.reference'] as const;

interface BundleContext {
  userId: string;
  deviceId?: string;
  now: number;
  ignored: ReadonlySet<string>;
  cache: VisibilityCache;
}

/** A child event in the relations index. */
async function childrenOf(tx: ReadTx, eventId: string, relType: string): Promise<Array<[pos: number, id: string]>> {
  const rows = await tx.range<string>(STORES.relations, { prefix: [eventId, relType] });
  return rows.map(([key, id]) => [Number(key[2]), id]);
}

/**
 * Adds the server-side aggregations of `m.thread` (latest_event, count, current_user_participated), `m.replace`
 * (the most recent valid edit) and `m.reference` (chunk of event IDs) to client events. State events get none
 * (the spec's warning under "Server-side aggregation"); children from ignored users or the user cannot see are
 * not counted.
 */
export async function bundleAggregations(
  tx: ReadTx,
  pairs: ReadonlyArray<readonly [EventRecord, ClientEvent]>,
  b: BundleContext,
  depth = 0,
): Promise<void> {
  const candidates = pairs.filter(([rec]) => typeof rec.json.state_key !== 'string' && !rec.redactedBy);
  if (candidates.length === 0) return;
  // Most events have no children: one batched point read of the parent markers finds the few that may.
  const marked = await mayHaveRelations(
    tx,
    candidates.map(([rec]) => rec.eventId),
  );
  for (let i = 0; i < candidates.length; i++) {
    if (!marked[i]) continue;
    const [rec, ev] = candidates[i];
    const relations: JsonObject = {};
    for (const relType of BUNDLED) {
      const rows = await childrenOf(tx, rec.eventId, relType);
      if (rows.length === 0) continue;
      const children = (await getEvents(
        tx,
        rows.map(([, id]) => id),
      )).filter((c): c is EventRecord => c !== undefined && c.roomId === rec.roomId && !c.redactedBy && !b.ignored.has(senderOf(c)));
      const seen: EventRecord[] = [];
      for (const c of children) if (await visibleToUser(tx, c, b.userId, b.cache)) seen.push(c);
      if (seen.length === 0) continue;
      if (relType === 'm.thread') {
        const latest = seen[seen.length - 1];
        const [latestEv] = await clientEvents(tx, [latest], { forUserId: b.userId, forDeviceId: b.deviceId, now: b.now });
        // The latest event's own children are aggregated too (one level: threads cannot nest).
        if (depth === 0) await bundleAggregations(tx, [[latest, latestEv]], b, depth + 1);
        relations['m.thread'] = {
          latest_event: latestEv as unknown as JsonObject,
          count: seen.length,
          current_user_participated: senderOf(rec) === b.userId || seen.some((c) => senderOf(c) === b.userId),
        };
      } else if (relType === 'm.replace') {
        // A valid edit has the original's sender and type and is not a state event (event_replacements.md).
        const valid = seen.filter(
          (c) => senderOf(c) === senderOf(rec) && c.json.type === rec.json.type && typeof c.json.state_key !== 'string',
        );
        if (valid.length === 0) continue;
        const best = valid.reduce((a, c) => (newerEdit(c, a) ? c : a));
        const [bestEv] = await clientEvents(tx, [best], { forUserId: b.userId, forDeviceId: b.deviceId, now: b.now });
        relations['m.replace'] = bestEv as unknown as JsonObject;
      } else {
        relations['m.reference'] = { chunk: seen.map((c) => ({ event_id: c.eventId })) };
      }
    }
    if (Object.keys(relations).length > 0) ev.unsigned['m.relations'] = relations;
  }
}

/** The most recent edit: by origin_server_ts, then the lexicographically largest event ID. */
function newerEdit(a: EventRecord, b: EventRecord): boolean {
  const ta = Number(a.json.origin_server_ts ?? 0);
  const tb = Number(b.json.origin_server_ts ?? 0);
  return ta !== tb ? ta > tb : a.eventId > b.eventId;
}

// ---------------------------------------------------------------------------------------------------------------
// The service

export interface MessagesOptions {
  dir: 'b' | 'f';
  from?: number;
  to?: number;
  limit: number;
  filter: RoomEventFilter;
}

export interface MessagesResponse {
  start: string;
  end?: string;
  chunk: ClientEvent[];
  state?: ClientEvent[];
}

export interface ContextResponse {
  start: string;
  end: string;
  events_before: ClientEvent[];
  event: ClientEvent;
  events_after: ClientEvent[];
  state: ClientEvent[];
}

export interface RelationsOptions {
  relType?: string;
  eventType?: string;
  from?: number;
  to?: number;
  limit: number;
  dir: 'b' | 'f';
  /** Undefined when the client did not send `recurse` (then `recursion_depth` is left out). */
  recurse?: boolean;
}

export interface RelationsResponse {
  chunk: ClientEvent[];
  next_batch?: string;
  prev_batch?: string;
  recursion_depth?: number;
}

export interface ThreadsOptions {
  include: 'all' | 'participated';
  limit: number;
  from?: number;
}

/** Most events /messages looks at for one page when the filter or visibility hides many (Synapse pages likewise). */
const MAX_SCAN = 2000;
/** Events searched on each side of the binary search's result by /timestamp_to_event. */
const TS_WINDOW = 64;
/** How deep `recurse=true` follows relations (the spec asks for at least 3). */
export const RELATIONS_RECURSION_DEPTH = 3;

export class TimelineService {
  constructor(private readonly ctx: ServiceContext) {}

  private async present(
    tx: ReadTx,
    principal: Principal,
    records: readonly EventRecord[],
    bundle?: Omit<BundleContext, 'userId' | 'deviceId' | 'now'>,
  ): Promise<ClientEvent[]> {
    const now = this.ctx.clock.now();
    const events = await clientEvents(tx, records, { forUserId: principal.userId, forDeviceId: principal.deviceId, now });
    if (bundle) {
      await bundleAggregations(
        tx,
        records.map((r, i) => [r, events[i]] as const),
        { ...bundle, userId: principal.userId, deviceId: principal.deviceId, now },
      );
    }
    return events;
  }

  /**
   * Set by the federation layer: fetches up to `limit` events older than the oldest the room holds (history from
   * before a remote join); resolves true when it stored some. Called when a backward /messages runs out.
   */
  fetchHistory?: (roomId: string, limit: number) => Promise<boolean>;

  /** GET /_matrix/client/v3/rooms/{roomId}/messages */
  async messages(principal: Principal, roomId: string, o: MessagesOptions): Promise<MessagesResponse> {
    const { res } = await this.readMessages(principal, roomId, o);
    // Paging back past the start of what we hold: ask the federation for more, then read again.
    if (o.dir === 'b' && o.to === undefined && res.end === undefined && this.fetchHistory) {
      const more = await this.fetchHistory(roomId, Math.max(1, o.limit - res.chunk.length)).catch((e: unknown) => {
        this.ctx.logger.warn('fetching room history failed', { roomId, error: e });
        return false;
      });
      if (more) {
        const again = await this.readMessages(principal, roomId, o);
        // There may be more history below what was just fetched: a token to come back for it.
        if (again.res.end === undefined && again.lastPos !== undefined) again.res.end = paginationToken(again.lastPos - 1);
        return again.res;
      }
    }
    return res;
  }

  private async readMessages(principal: Principal, roomId: string, o: MessagesOptions): Promise<{ res: MessagesResponse; lastPos?: number }> {
    const userId = principal.userId;
    return this.ctx.kv.read(async (tx) => {
      const access = await roomAccess(tx, userId, roomId);
      const cap = access.cap ?? Number.MAX_SAFE_INTEGER;
      const ignored = await ignoredUsers(tx, userId);
      const cache = new VisibilityCache();
      // Without `from`, start at the end (b) or the beginning (f) of what the user may see (v1.3).
      const from = o.from ?? (o.dir === 'b' ? Math.min(cap, access.room.lastPos) : 0);
      const lo = o.dir === 'b' ? (o.to ?? 0) : from;
      const hi = o.dir === 'b' ? Math.min(from, cap) : Math.min(o.to ?? Number.MAX_SAFE_INTEGER, cap);
      const scan = await scanTimeline(tx, {
        roomId,
        userId,
        lo,
        hi,
        reverse: o.dir === 'b',
        limit: o.limit,
        filter: o.filter,
        ignored,
        cache,
        maxScan: Math.max(MAX_SCAN, o.limit),
      });
      const res: MessagesResponse = {
        start: paginationToken(from),
        chunk: await this.present(tx, principal, scan.records, { ignored, cache }),
      };
      if (!scan.exhausted) {
        const at = scan.lastPos ?? from;
        res.end = paginationToken(o.dir === 'b' ? at - 1 : at);
      }
      if (o.filter.lazyLoadMembers && scan.records.length > 0) {
        const members = await memberEventsAt(tx, scan.records[0].stateAfter, scan.records.map(senderOf), cache);
        res.state = await this.present(tx, principal, members);
      }
      return { res, lastPos: scan.lastPos };
    });
  }

  /** GET /_matrix/client/v3/rooms/{roomId}/context/{eventId} */
  async context(
    principal: Principal,
    roomId: string,
    eventId: string,
    limit: number,
    filter: RoomEventFilter,
  ): Promise<ContextResponse> {
    const userId = principal.userId;
    return this.ctx.kv.read(async (tx) => {
      const access = await roomAccess(tx, userId, roomId);
      const cap = access.cap ?? Number.MAX_SAFE_INTEGER;
      const rec = await getEvent(tx, eventId);
      if (!rec || rec.roomId !== roomId || rec.pos === undefined || rec.rejected !== undefined || rec.softFailed) {
        throw notFound('Event not found');
      }
      const ignored = await ignoredUsers(tx, userId);
      const cache = new VisibilityCache();
      if (rec.pos > cap || !(await visibleToUser(tx, rec, userId, cache))) {
        // Synapse answers 403 for an event the user may not see (the event exists; the room is theirs to read).
        throw forbidden("You don't have permission to access that event");
      }
      // Half before, the rest after (as Synapse splits it).
      const beforeLimit = Math.floor(limit / 2);
      const common = { roomId, userId, filter, ignored, cache, maxScan: Math.max(MAX_SCAN, limit) };
      const before = await scanTimeline(tx, { ...common, lo: 0, hi: rec.pos - 1, reverse: true, limit: beforeLimit });
      const after = await scanTimeline(tx, { ...common, lo: rec.pos, hi: cap, reverse: false, limit: limit - beforeLimit });
      const last = after.records.length > 0 ? after.records[after.records.length - 1] : rec;
      const state = await this.contextState(tx, last, [...before.records, rec, ...after.records], filter);
      const bundle = { ignored, cache };
      return {
        start: paginationToken((before.lastPos ?? rec.pos) - 1),
        end: paginationToken(after.lastPos ?? rec.pos),
        events_before: await this.present(tx, principal, before.records, bundle),
        event: (await this.present(tx, principal, [rec], bundle))[0],
        events_after: await this.present(tx, principal, after.records, bundle),
        state: await this.present(tx, principal, state),
      };
    });
  }

  /**
   * The state after `last` (the spec: "the state of the room at the last event returned"), through the filter; with
   * lazy-loading, membership only for the senders of the returned events.
   */
  private async contextState(
    tx: ReadTx,
    last: EventRecord,
    shownRecords: readonly EventRecord[],
    filter: RoomEventFilter,
  ): Promise<EventRecord[]> {
    const state = await stateAt(tx, last.stateAfter);
    const senders = new Set(shownRecords.map(senderOf));
    const ids: string[] = [];
    for (const [k, id] of state) {
      const [type, key] = splitStateKey(k as StateKey);
      if (filter.lazyLoadMembers && type === 'm.room.member' && !senders.has(key)) continue;
      ids.push(id);
    }
    const recs = await getEvents(tx, ids);
    return recs.filter((r): r is EventRecord => r !== undefined && matchesFilter(filter, viewOf(r)));
  }

  /**
   * GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event
   *
   * There is no index by timestamp. Stream order mostly follows origin_server_ts, so a binary search over stream
   * positions (O(log n) reads) finds the neighbourhood; then a window of TS_WINDOW events on each side of it is
   * searched for the closest event in the asked direction that the user may see (dir f: the smallest
   * origin_server_ts ≥ ts; dir b: the largest ≤ ts), which absorbs clocks that are out of order (other servers,
   * clock steps). When the window has none, the scan carries on in the asked direction.
   */
  async timestampToEvent(
    principal: Principal,
    roomId: string,
    ts: number,
    dir: 'b' | 'f',
  ): Promise<{ event_id: string; origin_server_ts: number }> {
    const userId = principal.userId;
    const found = await this.ctx.kv.read(async (tx) => {
      const access = await roomAccess(tx, userId, roomId);
      const cap = Math.min(access.cap ?? Number.MAX_SAFE_INTEGER, access.room.lastPos);
      const cache = new VisibilityCache();
      const tsOf = (r: EventRecord): number => (typeof r.json.origin_server_ts === 'number' ? r.json.origin_server_ts : 0);
      const load = async (rows: Array<[number, string]>): Promise<EventRecord[]> =>
        (await getEvents(
          tx,
          rows.map(([, id]) => id),
        )).filter((r): r is EventRecord => r !== undefined);

      // Smallest position p whose first event at or after p has origin_server_ts ≥ ts (when ts is monotonic).
      let lo = 1;
      let hi = cap + 1;
      while (lo < hi) {
        const mid = Math.floor((lo + hi) / 2);
        const [first] = await load(await timelineRange(tx, roomId, { from: mid - 1, to: cap, limit: 1 }));
        if (!first || tsOf(first) >= ts) hi = mid;
        else lo = mid + 1;
      }
      const boundary = lo;

      let best: EventRecord | undefined;
      const consider = async (recs: readonly EventRecord[]): Promise<void> => {
        for (const r of recs) {
          const t = tsOf(r);
          if (dir === 'f' ? t < ts : t > ts) continue;
          if (best && (dir === 'f' ? t > tsOf(best) : t < tsOf(best))) continue;
          if (best && t === tsOf(best) && (dir === 'f' ? r.pos! > best.pos! : r.pos! < best.pos!)) continue;
          if (r.rejected !== undefined || r.softFailed || !(await visibleToUser(tx, r, userId, cache))) continue;
          best = r;
        }
      };
      const before = await timelineRange(tx, roomId, { to: boundary - 1, reverse: true, limit: TS_WINDOW });
      const after = await timelineRange(tx, roomId, { from: boundary - 1, to: cap, limit: TS_WINDOW });
      await consider(await load([...before, ...after]));
      // Nothing in the window: go on in the asked direction until something fits.
      let edge = dir === 'f' ? after[after.length - 1]?.[0] : before[before.length - 1]?.[0];
      let more = dir === 'f' ? after.length === TS_WINDOW : before.length === TS_WINDOW;
      for (let scanned = 0; !best && more && edge !== undefined && scanned < MAX_SCAN; ) {
        const rows = await timelineRange(
          tx,
          roomId,
          dir === 'f' ? { from: edge, to: cap, limit: SCAN_BATCH } : { to: edge - 1, reverse: true, limit: SCAN_BATCH },
        );
        await consider(await load(rows));
        scanned += rows.length;
        more = rows.length === SCAN_BATCH;
        edge = rows[rows.length - 1]?.[0];
      }
      return best ? { event_id: best.eventId, origin_server_ts: tsOf(best) } : undefined;
    });
    if (!found) throw notFound(`Unable to find event from ${ts} in ${dir === 'f' ? 'forward' : 'backward'} direction`);
    return found;
  }

  /** GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] */
  async relations(principal: Principal, roomId: string, eventId: string, o: RelationsOptions): Promise<RelationsResponse> {
    const userId = principal.userId;
    return this.ctx.kv.read(async (tx) => {
      const access = await roomAccess(tx, userId, roomId);
      const cap = access.cap ?? Number.MAX_SAFE_INTEGER;
      const cache = new VisibilityCache();
      const parent = await getEvent(tx, eventId);
      if (
        !parent ||
        parent.roomId !== roomId ||
        parent.rejected !== undefined ||
        parent.softFailed ||
        (parent.pos !== undefined && parent.pos > cap) ||
        !(await visibleToUser(tx, parent, userId, cache))
      ) {
        throw notFound('Event not found');
      }
      const ignored = await ignoredUsers(tx, userId);
      const depth = o.recurse ? RELATIONS_RECURSION_DEPTH : 1;
      // Children in stream order, each reached only through events that match the rel_type/event_type filter.
      const found = new Map<string, EventRecord>();
      let frontier = [eventId];
      for (let level = 0; level < depth && frontier.length > 0; level++) {
        const rows: Array<[number, string]> = [];
        for (const id of frontier) {
          const r = await tx.range<string>(STORES.relations, { prefix: o.relType === undefined ? [id] : [id, o.relType] });
          // Skip the parent marker [id] (putRelation): children have [id, relType, pos].
          for (const [key, childId] of r) if (key.length > 2) rows.push([Number(key[2]), childId]);
        }
        const recs = await getEvents(
          tx,
          rows.map(([, id]) => id),
        );
        frontier = [];
        for (const rec of recs) {
          if (!rec || found.has(rec.eventId) || rec.eventId === eventId) continue;
          if (rec.roomId !== roomId || rec.pos === undefined || rec.redactedBy) continue;
          if (o.eventType !== undefined && rec.json.type !== o.eventType) continue;
          found.set(rec.eventId, rec);
          frontier.push(rec.eventId);
        }
      }
      const lo = o.dir === 'b' ? (o.to ?? 0) : (o.from ?? 0);
      const hi = Math.min(cap, o.dir === 'b' ? (o.from ?? Number.MAX_SAFE_INTEGER) : (o.to ?? Number.MAX_SAFE_INTEGER));
      const ordered = [...found.values()]
        .filter((r) => r.pos! > lo && r.pos! <= hi)
        .sort((a, b) => (o.dir === 'b' ? b.pos! - a.pos! : a.pos! - b.pos!));
      const chunk: EventRecord[] = [];
      let lastPos: number | undefined;
      let i = 0;
      for (; i < ordered.length && chunk.length < o.limit; i++) {
        const rec = ordered[i];
        lastPos = rec.pos;
        if (ignored.has(senderOf(rec))) continue;
        if (await visibleToUser(tx, rec, userId, cache)) chunk.push(rec);
      }
      const res: RelationsResponse = { chunk: await this.present(tx, principal, chunk, { ignored, cache }) };
      if (i < ordered.length && lastPos !== undefined) res.next_batch = paginationToken(o.dir === 'b' ? lastPos - 1 : lastPos);
      if (o.from !== undefined) res.prev_batch = paginationToken(o.from);
      if (o.recurse !== undefined) res.recursion_depth = depth;
      return res;
    });
  }

  /**
   * GET /_matrix/client/v1/rooms/{roomId}/threads
   *
   * Thread roots ordered by their latest reply, newest first. Walking the timeline backwards, the first reply seen
   * for a root is its latest one below the page boundary; a root whose latest reply lies above the boundary was
   * listed on an earlier page and is skipped. So pages never repeat or skip a thread, and no extra index is kept.
   */
  async threads(principal: Principal, roomId: string, o: ThreadsOptions): Promise<{ chunk: ClientEvent[]; next_batch?: string }> {
    const userId = principal.userId;
    return this.ctx.kv.read(async (tx) => {
      const access = await roomAccess(tx, userId, roomId);
      const cap = Math.min(access.cap ?? Number.MAX_SAFE_INTEGER, access.room.lastPos);
      const top = Math.min(o.from ?? cap, cap);
      const ignored = await ignoredUsers(tx, userId);
      const cache = new VisibilityCache();
      const roots: EventRecord[] = [];
      const seen = new Set<string>();
      let hi = top;
      let scanned = 0;
      let lastPos: number | undefined;
      let exhausted = false;
      outer: while (roots.length < o.limit) {
        const rows = await timelineRange(tx, roomId, { to: hi, reverse: true, limit: SCAN_BATCH });
        const recs = await getEvents(
          tx,
          rows.map(([, id]) => id),
        );
        for (let i = 0; i < rows.length; i++) {
          lastPos = rows[i][0];
          scanned++;
          const rel = recs[i] && !recs[i]!.redactedBy ? relationOf(shownContent(recs[i]!)) : undefined;
          if (rel?.relType === 'm.thread' && !seen.has(rel.eventId)) {
            seen.add(rel.eventId);
            const root = await this.threadRoot(tx, rel.eventId, roomId, top, userId, o.include, ignored, cache);
            if (root) roots.push(root);
            if (roots.length >= o.limit) {
              exhausted = i === rows.length - 1 && rows.length < SCAN_BATCH;
              break outer;
            }
          }
        }
        if (rows.length < SCAN_BATCH) {
          exhausted = true;
          break;
        }
        if (scanned >= MAX_SCAN) break;
        hi = lastPos! - 1;
      }
      const res: { chunk: ClientEvent[]; next_batch?: string } = {
        chunk: await this.present(tx, principal, roots, { ignored, cache }),
      };
      if (!exhausted && lastPos !== undefined) res.next_batch = paginationToken(lastPos - 1);
      return res;
    });
  }

  /** The thread root `rootId` if it belongs on a page bounded by `top` and the user may see it. */
  private async threadRoot(
    tx: ReadTx,
    rootId: string,
    roomId: string,
    top: number,
    userId: string,
    include: 'all' | 'participated',
    ignored: ReadonlySet<string>,
    cache: VisibilityCache,
  ): Promise<EventRecord | undefined> {
    // Listed on an earlier page: it has a reply above the boundary.
    const newer = await tx.range<string>(STORES.relations, { gt: [rootId, 'm.thread', top], prefix: [rootId, 'm.thread'], limit: 1 });
    if (newer.length > 0) return undefined;
    const root = await getEvent(tx, rootId);
    if (!root || root.roomId !== roomId || root.rejected !== undefined || root.softFailed) return undefined;
    if (ignored.has(senderOf(root)) || !(await visibleToUser(tx, root, userId, cache))) return undefined;
    if (include === 'participated' && senderOf(root) !== userId) {
      const replies = await getEvents(
        tx,
        (await childrenOf(tx, rootId, 'm.thread')).map(([, id]) => id),
      );
      if (!replies.some((r) => r && senderOf(r) === userId)) return undefined;
    }
    return root;
  }
}
