/**
 * Reading rooms and events: the helpers every read endpoint (sync, messages, context, relations, state, members)
 * shares. Plain functions over a read transaction (storage/kv.ts): they only await the transaction's own
 * operations, so they can run inside `kv.read` and `kv.write` alike. The rooms service (rooms.ts) is the only writer
 * of these stores; see storage/schema.ts and storage/records.ts for the layouts.
 *
 * Spec: shared/matrix-spec/content/client-server-api/_index.md (#room-events, "ClientEvent" in
 * data/api/client-server/definitions/client_event.yaml), modules/history_visibility.md (#server-behaviour),
 * content/rooms/*.md (redaction per room version).
 *
 * ## API
 * Rooms
 * - `getRoom(tx, roomId)` → RoomRecord | undefined; `roomVersionOf(tx, roomId)` → RoomVersion | undefined
 * Events
 * - `getEvent(tx, eventId)` → EventRecord | undefined; `getEvents(tx, ids)` → (EventRecord | undefined)[] in order
 * - `pduOf(record, version)` → the core `Pdu` view, with the redaction applied when the event was redacted
 * State (a StateMap is `stateKey(type, state_key)` → event ID, core/event.ts)
 * - `currentState(tx, roomId)` → StateMap; `currentStateId(tx, roomId, type, stateKey)` → event ID
 * - `currentStateEvent(tx, roomId, type, stateKey)` → EventRecord | undefined
 * - `currentStateEvents(tx, roomId, type?)` → EventRecord[] (all current state, or one type)
 * - `stateAt(tx, groupId)` → StateMap (full historical state of a state group)
 * - `stateAtEvent(tx, record, 'before' | 'after')` → StateMap
 * - `stateLookup(tx, groupId, keys)` → Map of just those keys (walks deltas only as far as needed)
 * - `stateGroupAtPosition(tx, roomId, pos)` → the group after the room's last timeline event at or before a
 *   stream position (state "as of" a sync token), or undefined when the room had no event yet
 * Membership
 * - `membershipOf(tx, roomId, userId)` → MemberRecord | undefined (current, any user)
 * - `roomMembers(tx, roomId)` → [userId, MemberRecord][]; `joinedMembers(tx, roomId)` → userId[]
 * - `userRooms(tx, userId, membership?)` → [roomId, UserRoomRecord][] (local users; forgotten rooms are absent)
 * Timeline
 * - `timelineRange(tx, roomId, { from?, to?, reverse?, limit? })` → [pos, eventId][] with from < pos ≤ to
 * Visibility (history visibility, spec module "Room History Visibility")
 * - `visibleToUser(tx, record, userId, cache?)` → boolean; `filterVisible(tx, records, userId)` → the visible ones.
 *   Pass one `VisibilityCache` to many calls in one transaction to share state lookups.
 * Client format
 * - `clientEvent(record, opts?)` → ClientEvent (content redacted per room version when `redactedBy` is set;
 *   unsigned: age, transaction_id for the sending device, prev_content/prev_sender/replaces_state for state events,
 *   redacted_because when `opts.redactedBecause` is given)
 * - `clientEvents(tx, records, opts?)` → ClientEvent[], loading room versions and redaction events in batches
 *
 * Stored JSON: `EventRecord.json` is the PDU exactly as built or received. For local state events its `unsigned`
 * also carries `replaces_state`, `prev_content` and `prev_sender` (computed when the event was created; `unsigned`
 * is outside hashes and signatures). The JSON of a redacted event stays whole; redaction is applied on read.
 */
import type { StateKey, StateMap } from '../core/event.js';
import { Pdu, stateKey } from '../core/event.js';
import { computeEventId } from '../core/event-id.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import { redactEvent } from '../core/redaction.js';
import type { RoomVersion } from '../core/room-versions.js';
import { DEFAULT_ROOM_VERSION, roomVersion } from '../core/room-versions.js';
import type { ReadTx, WriteTx } from '../storage/kv.js';
import type { EventRecord, MemberRecord, RoomRecord, UserRoomRecord } from '../storage/records.js';
import type { StateGroupRecord } from '../storage/state-groups.js';
import { EMPTY_STATE_GROUP, loadStateGroup } from '../storage/state-groups.js';
import { STORES } from '../storage/schema.js';

// ---------------------------------------------------------------------------------------------------------------
// Rooms

/**
 * Room versions by room ID. A room's version never changes and room IDs are unique, so this process-wide map is
 * safe across homeservers in one process; it lets `clientEvent` redact without a storage read.
 */
const knownVersions = new Map<string, RoomVersion>();

/** Records a room's version (called when rooms are created or first read). */
export function rememberRoomVersion(roomId: string, version: RoomVersion): void {
  if (knownVersions.size > 50_000) knownVersions.clear();
  knownVersions.set(roomId, version);
}

export async function getRoom(tx: ReadTx, roomId: string): Promise<RoomRecord | undefined> {
  const room = await tx.get<RoomRecord>(STORES.rooms, [roomId]);
  if (room) {
    const v = roomVersion(room.version);
    if (v) rememberRoomVersion(roomId, v);
  }
  return room;
}

export async function roomVersionOf(tx: ReadTx, roomId: string): Promise<RoomVersion | undefined> {
  const known = knownVersions.get(roomId);
  if (known) return known;
  const room = await getRoom(tx, roomId);
  return room ? roomVersion(room.version) : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Events

export async function getEvent(tx: ReadTx, eventId: string): Promise<EventRecord | undefined> {
  return tx.get<EventRecord>(STORES.events, [eventId]);
}

export async function getEvents(tx: ReadTx, eventIds: readonly string[]): Promise<Array<EventRecord | undefined>> {
  if (eventIds.length === 0) return [];
  return tx.getMany<EventRecord>(
    STORES.events,
    eventIds.map((id) => [id]),
  );
}

/**
 * Indexes a child event under the event it relates to: [relatedEventId, relType, pos] → childId, plus the parent's
 * marker [relatedEventId] → true. The marker lets bundled aggregations (/messages, /context, /threads) find the
 * few events that have children with point reads (a few µs each) instead of one range scan per event (a LevelDB
 * iterator costs ~50–90 µs of CPU, which for a page of 100 was most of the page). A marker may outlive its children
 * (redactions remove rows, not markers): it only means "look".
 */
export async function putRelation(tx: WriteTx, relatedEventId: string, relType: string, pos: number, childId: string): Promise<void> {
  await tx.put(STORES.relations, [relatedEventId, relType, pos], childId);
  await tx.put(STORES.relations, [relatedEventId], true);
}

/** Which of `eventIds` may have children in the relations index (see putRelation), in one batched point read. */
export async function mayHaveRelations(tx: ReadTx, eventIds: readonly string[]): Promise<boolean[]> {
  const marks = await tx.getMany(STORES.relations, eventIds.map((id) => [id]));
  return marks.map((m) => m !== undefined);
}

/** The event's ID: stored in the record; recomputed only for records written without it. */
export function eventIdOf(record: EventRecord, version?: RoomVersion): string {
  if (record.eventId) return record.eventId;
  return computeEventId(record.json, version ?? versionFor(record.roomId));
}

/**
 * A new local state event with `unsigned` saying what it replaced (replaces_state, prev_content, prev_sender).
 * `unsigned` is outside hashes and signatures, so the event ID stays.
 */
export function withPrevState(pdu: Pdu, prev: Pdu | undefined): Pdu {
  if (!prev) return pdu;
  const unsigned: JsonObject = { replaces_state: prev.eventId, prev_content: prev.content, prev_sender: prev.sender };
  return new Pdu(pdu.eventId, { ...pdu.json, unsigned });
}

/** The core view of a stored event; a redacted event is seen in its redacted form (as auth and clients see it). */
export function pduOf(record: EventRecord, version: RoomVersion): Pdu {
  const json = record.redactedBy ? redactEvent(record.json, version) : record.json;
  return new Pdu(eventIdOf(record, version), json);
}

function versionFor(roomId: string): RoomVersion {
  // Latest rules when the version is unknown: they keep the least, so nothing is shown that should not be.
  return knownVersions.get(roomId) ?? roomVersion(DEFAULT_ROOM_VERSION)!;
}

// ---------------------------------------------------------------------------------------------------------------
// State

/** The room's current state. */
export async function currentState(tx: ReadTx, roomId: string): Promise<StateMap> {
  const rows = await tx.range<string>(STORES.currentState, { prefix: [roomId] });
  const state: StateMap = new Map();
  for (const [key, eventId] of rows) state.set(stateKey(String(key[1]), String(key[2])), eventId);
  return state;
}

export async function currentStateId(
  tx: ReadTx,
  roomId: string,
  type: string,
  stateKeyValue: string,
): Promise<string | undefined> {
  return tx.get<string>(STORES.currentState, [roomId, type, stateKeyValue]);
}

export async function currentStateEvent(
  tx: ReadTx,
  roomId: string,
  type: string,
  stateKeyValue: string,
): Promise<EventRecord | undefined> {
  const id = await currentStateId(tx, roomId, type, stateKeyValue);
  return id === undefined ? undefined : getEvent(tx, id);
}

/** Every current state event of the room, or of one type. */
export async function currentStateEvents(tx: ReadTx, roomId: string, type?: string): Promise<EventRecord[]> {
  const rows = await tx.range<string>(STORES.currentState, { prefix: type === undefined ? [roomId] : [roomId, type] });
  const records = await getEvents(
    tx,
    rows.map(([, id]) => id),
  );
  return records.filter((r): r is EventRecord => r !== undefined);
}

/**
 * The contents of the current state events (type, state_key '') of `types` in each of `roomIds`, in two batched
 * reads: `result[room][type index]`, `{}` where the event is absent or redacted (a redacted event shows nothing of
 * what it said). For room summaries (directory, space hierarchy).
 */
export async function currentStateContents(tx: ReadTx, roomIds: readonly string[], types: readonly string[]): Promise<JsonObject[][]> {
  const ids = await tx.getMany<string>(
    STORES.currentState,
    roomIds.flatMap((r) => types.map((t) => [r, t, ''] as const)),
  );
  const present = ids.filter((x): x is string => x !== undefined);
  const recs = await getEvents(tx, present);
  const byId = new Map<string, EventRecord>();
  present.forEach((id, i) => {
    const r = recs[i];
    if (r) byId.set(id, r);
  });
  return roomIds.map((_, room) =>
    types.map((_, t) => {
      const id = ids[room * types.length + t];
      const rec = id === undefined ? undefined : byId.get(id);
      return rec && !rec.redactedBy && isJsonObject(rec.json.content) ? rec.json.content : {};
    }),
  );
}

/** The full state of a state group (historical state). */
export async function stateAt(tx: ReadTx, groupId: number): Promise<StateMap> {
  return loadStateGroup(tx, groupId);
}

/** The room state before or after an event (a message event's before and after are the same). */
export async function stateAtEvent(tx: ReadTx, record: EventRecord, when: 'before' | 'after' = 'after'): Promise<StateMap> {
  return loadStateGroup(tx, when === 'before' ? record.stateBefore : record.stateAfter);
}

/**
 * Only `keys` of a state group, walking its delta chain no further than needed. `groups` caches group records
 * (they never change once written) across calls.
 */
export async function stateLookup(
  tx: ReadTx,
  groupId: number,
  keys: readonly StateKey[],
  groups: Map<number, StateGroupRecord | null> = new Map(),
): Promise<Map<StateKey, string>> {
  const found = new Map<StateKey, string>();
  let id: number | undefined = groupId;
  while (id !== undefined && id !== EMPTY_STATE_GROUP && found.size < keys.length) {
    let rec = groups.get(id);
    if (rec === undefined) {
      rec = (await tx.get<StateGroupRecord>(STORES.stateGroups, ['g', id])) ?? null;
      groups.set(id, rec);
    }
    if (rec === null) break;
    for (const k of keys) {
      if (!found.has(k) && Object.hasOwn(rec.delta, k)) found.set(k, rec.delta[k]);
    }
    id = rec.prev;
  }
  return found;
}

/**
 * The state group of the room as of stream position `pos`: the state after its last timeline event at or before
 * `pos`. Undefined when the room has no event at or before `pos`.
 */
export async function stateGroupAtPosition(tx: ReadTx, roomId: string, pos: number): Promise<number | undefined> {
  const rows = await tx.range<string>(STORES.roomTimeline, { gte: [roomId, 0], lte: [roomId, pos], reverse: true, limit: 1 });
  if (rows.length === 0) return undefined;
  const rec = await getEvent(tx, rows[0][1]);
  return rec?.stateAfter;
}

// ---------------------------------------------------------------------------------------------------------------
// Membership

export async function membershipOf(tx: ReadTx, roomId: string, userId: string): Promise<MemberRecord | undefined> {
  return tx.get<MemberRecord>(STORES.roomMembers, [roomId, userId]);
}

export async function roomMembers(tx: ReadTx, roomId: string): Promise<Array<[userId: string, record: MemberRecord]>> {
  const rows = await tx.range<MemberRecord>(STORES.roomMembers, { prefix: [roomId] });
  return rows.map(([key, rec]) => [String(key[1]), rec]);
}

export async function joinedMembers(tx: ReadTx, roomId: string): Promise<string[]> {
  return (await roomMembers(tx, roomId)).filter(([, m]) => m.membership === 'join').map(([u]) => u);
}

/** A local user's rooms (optionally of one membership). Forgotten rooms are not listed. */
export async function userRooms(
  tx: ReadTx,
  userId: string,
  membership?: string,
): Promise<Array<[roomId: string, record: UserRoomRecord]>> {
  const rows = await tx.range<UserRoomRecord>(STORES.userRooms, { prefix: [userId] });
  const out: Array<[string, UserRoomRecord]> = [];
  for (const [key, rec] of rows) {
    if (membership === undefined || rec.membership === membership) out.push([String(key[1]), rec]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Timeline

export interface TimelineRangeOptions {
  /** Exclusive lower bound (a stream position); default: from the start. */
  from?: number;
  /** Inclusive upper bound; default: to the end. */
  to?: number;
  /** Newest first. */
  reverse?: boolean;
  limit?: number;
}

/**
 * A range over an integer key spanning at most this many positions is read as point reads. Keys of the stream and
 * of room timelines are exactly [pos] and [roomId, pos], so the positions in between are all the keys there can be.
 */
export const POINT_READ_SPAN = 16;

/** The integers in (from, to], ascending or (reverse) descending. */
export function positionsBetween(from: number, to: number, reverse = false): number[] {
  const out: number[] = [];
  const low = Math.max(from, -1); // positions are non-negative
  if (reverse) for (let p = to; p > low; p--) out.push(p);
  else for (let p = low + 1; p <= to; p++) out.push(p);
  return out;
}

/** Timeline entries of a room in stream order: [pos, eventId] with from < pos ≤ to. */
export async function timelineRange(
  tx: ReadTx,
  roomId: string,
  opts: TimelineRangeOptions = {},
): Promise<Array<[pos: number, eventId: string]>> {
  const { from, to } = opts;
  if (from !== undefined && to !== undefined && to - from <= POINT_READ_SPAN) {
    // A woken /sync asks for the few positions since its token: every position is a point read (the rows just
    // written are in the backend's row cache), cheaper than opening an iterator.
    const positions = positionsBetween(from, to, opts.reverse);
    const ids = await tx.getMany<string>(STORES.roomTimeline, positions.map((p) => [roomId, p]));
    const out: Array<[number, string]> = [];
    for (let i = 0; i < positions.length && (opts.limit === undefined || out.length < opts.limit); i++) {
      const id = ids[i];
      if (id !== undefined) out.push([positions[i], id]);
    }
    return out;
  }
  const rows = await tx.range<string>(STORES.roomTimeline, {
    prefix: [roomId],
    ...(opts.from !== undefined ? { gt: [roomId, opts.from] } : {}),
    ...(opts.to !== undefined ? { lte: [roomId, opts.to] } : {}),
    reverse: opts.reverse,
    limit: opts.limit,
  });
  return rows.map(([key, id]) => [Number(key[1]), id]);
}

// ---------------------------------------------------------------------------------------------------------------
// History visibility

const HV_KEY = stateKey('m.room.history_visibility', '');

/** Shares state-group and event reads between visibility checks in one transaction. */
export class VisibilityCache {
  readonly groups = new Map<number, StateGroupRecord | null>();
  readonly events = new Map<string, EventRecord | null>();
  readonly current = new Map<string, MemberRecord | null>();
}

async function cachedEvents(tx: ReadTx, cache: VisibilityCache, ids: readonly string[]): Promise<void> {
  const missing = ids.filter((id) => !cache.events.has(id));
  if (missing.length === 0) return;
  const recs = await getEvents(tx, missing);
  missing.forEach((id, i) => cache.events.set(id, recs[i] ?? null));
}

function contentOf(rec: EventRecord | null | undefined): JsonObject {
  return rec && !rec.redactedBy && isJsonObject(rec.json.content) ? rec.json.content : rec ? redactedContentOf(rec) : {};
}

function redactedContentOf(rec: EventRecord): JsonObject {
  const c = redactEvent(rec.json, versionFor(rec.roomId)).content;
  return isJsonObject(c) ? c : {};
}

/** history_visibility as the spec reads it: unknown or absent means `shared`. */
function historyVisibility(content: JsonObject): string {
  const v = content.history_visibility;
  return v === 'world_readable' || v === 'joined' || v === 'invited' || v === 'shared' ? v : 'shared';
}

function membershipIn(content: JsonObject): string | undefined {
  return typeof content.membership === 'string' ? content.membership : undefined;
}

/**
 * Whether `userId` may see `record` (modules/history_visibility.md, "Server behaviour"), judged on the state of
 * the room at the event:
 * 1. world_readable → allow; 2. the user's membership was join → allow; 3. shared, and the user joined at any
 * point after the event → allow; 4. invited and the user's membership was invite → allow; 5. otherwise deny.
 * m.room.history_visibility events are visible if the setting before or after allows; the user's own member
 * events if their membership before or after does. Rejected and soft-failed events are never visible.
 *
 * "Joined at any point after the event" is read from the user's current membership: joined now, or left/banned
 * later by an event that ended a join (its prev_content says join). A user who joined and left more than once may
 * be refused history from an earlier spell; Synapse makes the same approximation (it only looks at "joined now").
 */
export async function visibleToUser(
  tx: ReadTx,
  record: EventRecord,
  userId: string,
  cache: VisibilityCache = new VisibilityCache(),
): Promise<boolean> {
  if (record.rejected !== undefined || record.softFailed) return false;
  const memberKey = stateKey('m.room.member', userId);
  const found = await stateLookup(tx, record.stateBefore, [HV_KEY, memberKey], cache.groups);
  const hvId = found.get(HV_KEY);
  const memberId = found.get(memberKey);
  await cachedEvents(tx, cache, [hvId, memberId].filter((x): x is string => x !== undefined));
  const hvBefore = historyVisibility(hvId ? contentOf(cache.events.get(hvId)) : {});
  const memberBefore = memberId ? membershipIn(contentOf(cache.events.get(memberId))) : undefined;

  const type = record.json.type;
  const content = contentOf(record);
  const hvOptions = [hvBefore];
  const memberOptions = [memberBefore];
  if (type === 'm.room.history_visibility' && record.json.state_key === '') hvOptions.push(historyVisibility(content));
  if (type === 'm.room.member' && record.json.state_key === userId) memberOptions.push(membershipIn(content));

  for (const hv of hvOptions) {
    if (hv === 'world_readable') return true;
    for (const m of memberOptions) {
      if (m === 'join') return true;
      if (hv === 'invited' && m === 'invite') return true;
    }
  }
  if (hvOptions.includes('shared')) return joinedAfter(tx, record, userId, cache);
  return false;
}

/** Whether the user joined the room at some point after `record` (see visibleToUser). */
async function joinedAfter(tx: ReadTx, record: EventRecord, userId: string, cache: VisibilityCache): Promise<boolean> {
  const key = `${record.roomId}\u0000${userId}`;
  let current = cache.current.get(key);
  if (current === undefined) {
    current = (await membershipOf(tx, record.roomId, userId)) ?? null;
    cache.current.set(key, current);
  }
  if (!current) return false;
  if (current.membership === 'join') return true;
  if (current.membership !== 'leave' && current.membership !== 'ban') return false;
  await cachedEvents(tx, cache, [current.eventId]);
  const ended = cache.events.get(current.eventId);
  if (!ended || ended.pos === undefined || record.pos === undefined || ended.pos <= record.pos) return false;
  const unsigned = ended.json.unsigned;
  const prev = isJsonObject(unsigned) && isJsonObject(unsigned.prev_content) ? unsigned.prev_content : undefined;
  return prev?.membership === 'join';
}

/** The records `userId` may see, in their order. */
export async function filterVisible(tx: ReadTx, records: readonly EventRecord[], userId: string): Promise<EventRecord[]> {
  const cache = new VisibilityCache();
  const out: EventRecord[] = [];
  for (const r of records) if (await visibleToUser(tx, r, userId, cache)) out.push(r);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Client format

/** An event as the Client-Server API returns it (definitions/client_event.yaml). */
export interface ClientEvent {
  content: JsonObject;
  event_id: string;
  origin_server_ts: number;
  room_id: string;
  sender: string;
  state_key?: string;
  type: string;
  /** Redaction events: the redacted event's ID (also in content from room version 11). */
  redacts?: string;
  unsigned: JsonObject;
}

export interface ClientEventOptions {
  /** The requesting user and device: `unsigned.transaction_id` is only given to the device that sent the event. */
  forUserId?: string;
  forDeviceId?: string;
  /** For `unsigned.age`; default Date.now(). */
  now?: number;
  /** The room's version (for redacting); default: looked up from rooms seen by this process. */
  version?: RoomVersion;
  /** The redaction event's record, for `unsigned.redacted_because` of a redacted event. */
  redactedBecause?: EventRecord;
  /** `unsigned.membership`: the requesting user's membership at the event, when the caller knows it. */
  membership?: string;
}

const KEPT_UNSIGNED = ['prev_content', 'prev_sender', 'replaces_state'] as const;

/** The client format of a stored event. */
export function clientEvent(record: EventRecord, opts: ClientEventOptions = {}): ClientEvent {
  const version = opts.version ?? versionFor(record.roomId);
  const json = record.json;
  const redacted = record.redactedBy !== undefined;
  const content = redacted ? redactEvent(json, version).content : json.content;
  const ts = typeof json.origin_server_ts === 'number' ? json.origin_server_ts : 0;
  const unsigned: JsonObject = { age: Math.max(0, (opts.now ?? Date.now()) - ts) };
  const stored = isJsonObject(json.unsigned) ? json.unsigned : {};
  for (const k of KEPT_UNSIGNED) {
    // A redacted event keeps replaces_state (as Synapse does) but not the old content.
    if (stored[k] !== undefined && (!redacted || k === 'replaces_state')) unsigned[k] = stored[k];
  }
  if (
    !redacted &&
    record.txn &&
    opts.forDeviceId !== undefined &&
    record.txn.deviceId === opts.forDeviceId &&
    json.sender === opts.forUserId
  ) {
    unsigned.transaction_id = record.txn.txnId;
  }
  if (redacted && opts.redactedBecause) {
    unsigned.redacted_because = clientEvent(opts.redactedBecause, { ...opts, redactedBecause: undefined, membership: undefined }) as unknown as JsonObject;
  }
  if (opts.membership !== undefined) unsigned.membership = opts.membership;
  const out: ClientEvent = {
    content: isJsonObject(content) ? content : {},
    event_id: eventIdOf(record, version),
    origin_server_ts: ts,
    room_id: record.roomId,
    sender: typeof json.sender === 'string' ? json.sender : '',
    type: typeof json.type === 'string' ? json.type : '',
    unsigned,
  };
  if (typeof json.state_key === 'string') out.state_key = json.state_key;
  if (out.type === 'm.room.redaction') {
    // Top level before v11, in content from v11; clients still read the top-level key, so give both.
    const r = typeof json.redacts === 'string' ? json.redacts : (out.content.redacts as JsonValue);
    if (typeof r === 'string') out.redacts = r;
  }
  return out;
}

/** Client events for many records, loading their rooms' versions and the redaction events they need. */
export async function clientEvents(
  tx: ReadTx,
  records: readonly EventRecord[],
  opts: Omit<ClientEventOptions, 'redactedBecause' | 'version'> = {},
): Promise<ClientEvent[]> {
  const versions = new Map<string, RoomVersion | undefined>();
  for (const r of records) {
    if (!versions.has(r.roomId)) versions.set(r.roomId, await roomVersionOf(tx, r.roomId));
  }
  const redactionIds = [...new Set(records.map((r) => r.redactedBy).filter((x): x is string => x !== undefined))];
  const redactions = new Map<string, EventRecord>();
  const recs = await getEvents(tx, redactionIds);
  redactionIds.forEach((id, i) => {
    const rec = recs[i];
    if (rec) redactions.set(id, rec);
  });
  return records.map((r) =>
    clientEvent(r, {
      ...opts,
      version: versions.get(r.roomId),
      redactedBecause: r.redactedBy ? redactions.get(r.redactedBy) : undefined,
    }),
  );
}
