/**
 * GET /sync: the initial snapshot and the incremental deltas of everything a user can see, with long polling.
 *
 * Spec: shared/matrix-spec/content/client-server-api/_index.md ("Syncing", "Filtering", "Lazy-loading room
 * members", "Stripped state"); data/api/client-server/sync.yaml; definitions/sync_filter.yaml,
 * room_event_filter.yaml, event_filter.yaml; modules/send_to_device.md ("Extensions to /sync"), receipts.md,
 * typing_notifications.md, presence.md, account_data.md.
 *
 * ## Tokens
 * - `next_batch` / `since`: `s<pos>`, where pos is the stream position (notifier.ts) the response is complete up to.
 *   When the device's to-device queue was cut at TO_DEVICE_SYNC_LIMIT the token is `s<pos>_<td>`: td is the last
 *   to-device position delivered, and the next sync acknowledges (deletes) messages up to td rather than pos.
 *   A `since` that does not parse, or lies beyond the current position, is 400 M_INVALID_PARAM.
 * - `prev_batch`: `t<pos>`, the /messages pagination token (timeline.ts `paginationToken`): the boundary just after
 *   stream position pos. A timeline's prev_batch is `t<(pos of its first event) − 1>`, so
 *   `/messages?dir=b&from=<prev_batch>` returns that event's predecessors; with an empty timeline it is the
 *   response's own position. A sync token `s<pos>` names the same kind of boundary, so both work as /messages
 *   `from`/`to` (timeline.ts accepts both).
 *
 * ## How a response is computed
 * One read transaction per attempt, so everything is consistent with one stream position `pos`:
 * - initial (no since): every room in user_rooms; per joined room the last `limit` visible events and the state
 *   at the start of that timeline (only the tail of a long room is read);
 * - incremental: the stream range (since, pos] — O(changes), not O(rooms) — grouped by room; only rooms touched
 *   in the range are looked at. A limited timeline gets the state delta between `since` and its start; a room
 *   joined in the range gets its full state.
 * Long poll: compute → if nothing for this user and time remains, wait for the notifier (or the request's abort
 * signal) → recompute. A commit that lands between the read and the wait is caught by comparing the notifier's
 * position with the snapshot's, so a send always wakes a waiting poll.
 *
 * ## Simplifications (documented choices)
 * - unread_notifications (and unread_thread_notifications when the timeline filter asks) evaluate the user's push
 *   rules over the events after their read position, at most UNREAD_SCAN_LIMIT of them, extended incrementally
 *   from the previous sync's counts (push-rules.ts `unreadCountsIn`).
 * - Lazy loading always sends the members of the timeline's senders (redundant ones too: "it is valid for the
 *   server to send redundant membership events"); include_redundant_members is therefore always satisfied.
 * - device_lists: users whose device list changed and who share a room, users who joined a shared room, and users
 *   who no longer share any room (key uploads write the same `device_list` entries: keys.ts).
 */
import type { Principal } from '../api/endpoint.js';
import { badJson, invalidParam, notJson } from '../api/errors.js';
import { defineFilter as validateFilterSchema } from '../api/generated/body-validators.js';
import { validateBody } from '../api/request.js';
import type { StateKey } from '../core/event.js';
import { stateKey } from '../core/event.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import { splitPropertyPath } from '../core/push-rules.js';
import type { ReadTx } from '../storage/kv.js';
import type { EventRecord, StreamEntry, UserRoomRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import type { AccountsService } from './accounts.js';
import type { AccountDataRecord } from './account-data.js';
import type { ServiceContext } from './context.js';
import { EphemeralService, receiptContentIn, typingUsersIn } from './ephemeral.js';
import {
  clientEvents,
  currentStateId,
  getEvent,
  getEvents,
  pduOf,
  roomMembers,
  roomVersionOf,
  stateAt,
  stateGroupAtPosition,
  stateLookup,
  timelineRange,
  userRooms,
  visibleToUser,
  VisibilityCache,
} from './event-store.js';
import { validateFilter } from './filters.js';
import { oneTimeKeyStateIn } from './keys.js';
import { currentPosition, streamRange } from './notifier.js';
import type { PresenceState } from './presence.js';
import type { TimelineRead } from './push-rules.js';
import { PUSH_RULES_TYPE, PushRulesService } from './push-rules.js';
import { PresenceService, joinedRoomsIn, presenceEventsIn, sharingRoomIn } from './presence.js';
import type { RoomsService } from './rooms.js';
import { paginationToken } from './timeline.js';
import { ToDeviceService, toDeviceForSyncIn } from './to-device.js';

// ---------------------------------------------------------------------------------------------------------------
// Tokens

export interface SyncToken {
  pos: number;
  /** Last to-device position delivered, when the queue was cut short. */
  toDevice?: number;
}

export function parseSyncToken(s: string): SyncToken | undefined {
  const m = /^s(\d{1,15})(?:_(\d{1,15}))?$/.exec(s);
  if (!m) return undefined;
  const t: SyncToken = { pos: Number(m[1]) };
  if (m[2] !== undefined) t.toDevice = Number(m[2]);
  return t;
}

export function formatSyncToken(t: SyncToken): string {
  return t.toDevice === undefined ? `s${t.pos}` : `s${t.pos}_${t.toDevice}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Filters (definitions/sync_filter.yaml, room_event_filter.yaml, event_filter.yaml)

/** Synapse's defaults: 10 timeline events unless the filter says otherwise, never more than 100. */
export const DEFAULT_TIMELINE_LIMIT = 10;
export const MAX_TIMELINE_LIMIT = 100;

type Matcher = (value: string) => boolean;

/** `types`/`not_types` patterns: `*` matches any sequence of characters. */
function typeMatcher(patterns: readonly string[]): Matcher {
  const exact = new Set<string>();
  const wild: RegExp[] = [];
  for (const p of patterns) {
    if (!p.includes('*')) exact.add(p);
    else wild.push(new RegExp('^' + p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$', 's'));
  }
  return (v) => exact.has(v) || wild.some((r) => r.test(v));
}

function stringList(v: JsonValue | undefined): string[] | undefined {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined;
}

/** A compiled EventFilter / RoomEventFilter. */
export interface EventFilter {
  limit?: number;
  types?: Matcher;
  notTypes?: Matcher;
  senders?: ReadonlySet<string>;
  notSenders?: ReadonlySet<string>;
  rooms?: ReadonlySet<string>;
  notRooms?: ReadonlySet<string>;
  containsUrl?: boolean;
  lazyLoadMembers: boolean;
  includeRedundantMembers: boolean;
  /** RoomEventFilter `unread_thread_notifications`: count notifications per thread. */
  unreadThreadNotifications: boolean;
}

export function compileEventFilter(v: JsonValue | undefined): EventFilter {
  const f = isJsonObject(v) ? v : {};
  const list = (k: string) => stringList(f[k]);
  const set = (k: string) => {
    const l = list(k);
    return l ? new Set(l) : undefined;
  };
  const types = list('types');
  const notTypes = list('not_types');
  return {
    limit: typeof f.limit === 'number' && Number.isInteger(f.limit) && f.limit > 0 ? f.limit : undefined,
    types: types ? typeMatcher(types) : undefined,
    notTypes: notTypes ? typeMatcher(notTypes) : undefined,
    senders: set('senders'),
    notSenders: set('not_senders'),
    rooms: set('rooms'),
    notRooms: set('not_rooms'),
    containsUrl: typeof f.contains_url === 'boolean' ? f.contains_url : undefined,
    lazyLoadMembers: f.lazy_load_members === true,
    includeRedundantMembers: f.include_redundant_members === true,
    unreadThreadNotifications: f.unread_thread_notifications === true,
  };
}

/** What a filter looks at in an event. */
export interface FilterSubject {
  type: string;
  sender?: string;
  roomId?: string;
  content?: JsonObject;
}

/** Whether `filter` lets the event through (not_* lists win over their positive lists). */
export function filterAllows(f: EventFilter, e: FilterSubject): boolean {
  if (f.notTypes?.(e.type)) return false;
  if (f.types && !f.types(e.type)) return false;
  if (e.sender !== undefined) {
    if (f.notSenders?.has(e.sender)) return false;
    if (f.senders && !f.senders.has(e.sender)) return false;
  }
  if (e.roomId !== undefined) {
    if (f.notRooms?.has(e.roomId)) return false;
    if (f.rooms && !f.rooms.has(e.roomId)) return false;
  }
  if (f.containsUrl !== undefined) {
    const has = typeof e.content?.url === 'string';
    if (has !== f.containsUrl) return false;
  }
  return true;
}

export interface SyncFilter {
  eventFields?: string[][];
  eventFormat: 'client' | 'federation';
  presence: EventFilter;
  accountData: EventFilter;
  room: {
    rooms?: ReadonlySet<string>;
    notRooms?: ReadonlySet<string>;
    includeLeave: boolean;
    ephemeral: EventFilter;
    state: EventFilter;
    timeline: EventFilter;
    accountData: EventFilter;
  };
}

export function compileSyncFilter(json: JsonObject): SyncFilter {
  const room = isJsonObject(json.room) ? json.room : {};
  const rooms = stringList(room.rooms);
  const notRooms = stringList(room.not_rooms);
  const fields = stringList(json.event_fields);
  return {
    eventFields: fields?.map(splitPropertyPath),
    eventFormat: json.event_format === 'federation' ? 'federation' : 'client',
    presence: compileEventFilter(json.presence),
    accountData: compileEventFilter(json.account_data),
    room: {
      rooms: rooms ? new Set(rooms) : undefined,
      notRooms: notRooms ? new Set(notRooms) : undefined,
      includeLeave: room.include_leave === true,
      ephemeral: compileEventFilter(room.ephemeral),
      state: compileEventFilter(room.state),
      timeline: compileEventFilter(room.timeline),
      accountData: compileEventFilter(room.account_data),
    },
  };
}

const DEFAULT_FILTER = compileSyncFilter({});

/** Only the listed fields of an event (sync_filter.yaml `event_fields`). */
function pickFields(event: JsonObject, paths: readonly string[][]): JsonObject {
  const out: JsonObject = {};
  for (const path of paths) {
    let src: JsonValue | undefined = event;
    for (const k of path) src = isJsonObject(src) ? src[k] : undefined;
    if (src === undefined) continue;
    let dst = out;
    for (let i = 0; i < path.length - 1; i++) {
      const next = dst[path[i]];
      dst = isJsonObject(next) ? next : (dst[path[i]] = {});
    }
    dst[path[path.length - 1]] = src;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The request

export interface SyncRequest {
  since?: SyncToken;
  /** Milliseconds to wait for something to report (0: answer at once). */
  timeout: number;
  fullState: boolean;
  setPresence: PresenceState;
  /** The `filter` query parameter: a stored filter ID or inline JSON. */
  filter?: string;
  useStateAfter: boolean;
}

/** Stripped state types (_index.md "Stripped state"): what an invitee or knocker may see of the room. */
const STRIPPED_STATE_TYPES = [
  'm.room.create',
  'm.room.name',
  'm.room.avatar',
  'm.room.topic',
  'm.room.join_rules',
  'm.room.canonical_alias',
  'm.room.encryption',
];

/** Compiled filters remembered at most (oldest dropped first). */
const MAX_CACHED_FILTERS = 1000;
/** Longer inline filters are compiled each time rather than kept (bounds the cache's memory). */
const MAX_CACHED_FILTER_KEY = 2048;
/** Events scanned at most while looking for `limit` events that pass a timeline filter. */
const TIMELINE_SCAN_LIMIT = 1000;
/** Events read at most when counting unread notifications. */
export { UNREAD_SCAN_LIMIT } from './push-rules.js';

export class SyncService {
  readonly ephemeral: EphemeralService;
  readonly presence: PresenceService;
  readonly toDevice: ToDeviceService;
  /** Push rules: the m.push_rules account data and unread notification counts. */
  readonly pushRules: PushRulesService;
  /** The highest stream position a compute has read from storage (undefined before the first). */
  private storedPos?: number;
  /** Compiled filters by inline JSON, or by user and stored filter ID (resolveFilter). */
  private readonly filters = new Map<string, SyncFilter>();

  constructor(
    private readonly ctx: ServiceContext,
    private readonly deps: { rooms: RoomsService; accounts?: AccountsService; pushRules?: PushRulesService },
  ) {
    this.pushRules = deps.pushRules ?? new PushRulesService(ctx);
    this.ephemeral = new EphemeralService(ctx);
    this.presence = new PresenceService(ctx);
    this.toDevice = new ToDeviceService(ctx);
  }

  stop(): void {
    this.ephemeral.stop();
  }

  /**
   * Resolves the `filter` parameter: inline JSON (first character `{`) or a stored filter's ID (sync.yaml). A
   * client sends the same filter with every poll, so compiled filters are remembered: a stored filter never changes
   * (filters.ts writes each [userId, filterId] once, with an ID from a counter) and inline JSON compiles the same
   * way each time. Only filters that resolved are kept; a bad one fails the same way again.
   */
  async resolveFilter(userId: string, param: string | undefined): Promise<SyncFilter> {
    if (param === undefined || param === '') return DEFAULT_FILTER;
    const key = param.startsWith('{') ? param : `${userId}\u0000${param}`;
    const hit = this.filters.get(key);
    if (hit) return hit;
    const filter = await this.resolveFilterUncached(userId, param);
    if (key.length > MAX_CACHED_FILTER_KEY) return filter;
    if (this.filters.size >= MAX_CACHED_FILTERS) this.filters.delete(this.filters.keys().next().value!);
    this.filters.set(key, filter);
    return filter;
  }

  private async resolveFilterUncached(userId: string, param: string): Promise<SyncFilter> {
    if (param.startsWith('{')) {
      let json: unknown;
      try {
        json = JSON.parse(param);
      } catch {
        throw notJson('filter is not valid JSON');
      }
      if (!isJsonObject(json)) throw badJson('filter must be a JSON object');
      validateBody(validateFilterSchema, json);
      validateFilter(json);
      return compileSyncFilter(json);
    }
    const stored = await this.deps.accounts?.filters.getFilter(userId, param);
    // As Synapse: an unknown filter ID is a bad parameter, not a missing resource.
    if (!stored) throw invalidParam('filter', 'No such filter');
    return compileSyncFilter(stored);
  }

  /**
   * GET /sync. Resolves early when the request's `signal` aborts (the answer then goes nowhere). `signal` may be a
   * function giving it: it is asked for only when the sync waits (a host makes an AbortController per request that
   * asks, and a sync that answers at once needs none).
   */
  async sync(principal: Principal, req: SyncRequest, signalOf?: AbortSignal | (() => AbortSignal | undefined)): Promise<JsonObject> {
    let signal: AbortSignal | undefined;
    const signalNow = () => (signal ??= typeof signalOf === 'function' ? signalOf() : signalOf);
    const userId = principal.userId;
    const filter = await this.resolveFilter(userId, req.filter);
    await this.presence.syncing(userId, req.setPresence);
    const deadline = performance.now() + req.timeout;
    let acknowledged = false;
    // A long poll from the position everything is at (a client polling again right after a response): nothing can
    // be new for it until the next commit, so wait for that before computing — the compute would find nothing.
    if (req.timeout > 0 && !req.fullState && req.since !== undefined && req.since.toDevice === undefined && this.isLatest(req.since.pos)) {
      await this.ctx.notifier.waitForChange(req.timeout, signalNow());
    }
    for (;;) {
      const r = await this.compute(principal, req, filter);
      if (!acknowledged && r.ackToDevice !== undefined && principal.deviceId !== undefined) {
        await this.toDevice.acknowledge(userId, principal.deviceId, r.ackToDevice);
      }
      acknowledged = true;
      const remaining = deadline - performance.now();
      if (r.hasContent || req.since === undefined || req.fullState || remaining <= 0 || signal?.aborted) return r.body;
      // Something committed after our snapshot already notified: look again rather than wait.
      if (this.ctx.notifier.position > r.pos) continue;
      await this.ctx.notifier.waitForChange(remaining, signalNow());
      if (signal?.aborted) return r.body;
    }
  }

  /**
   * Whether `pos` is the last committed stream position. Every commit made by this process notifies (after it is
   * durable), and those made before it started are at or below the highest position a compute has read, so a
   * position at or above both has nothing after it (a commit not notified yet will wake the wait).
   */
  private isLatest(pos: number): boolean {
    return this.storedPos !== undefined && pos === Math.max(this.storedPos, this.ctx.notifier.position);
  }

  private compute(principal: Principal, req: SyncRequest, filter: SyncFilter): Promise<Computed> {
    const now = this.ctx.clock.now();
    return this.ctx.kv.read(async (tx) => {
      const pos = await currentPosition(tx);
      this.storedPos = Math.max(this.storedPos ?? 0, pos);
      if (req.since && req.since.pos > pos) throw invalidParam('since', 'is not a sync token this server issued');
      return new SyncBuilder(tx, principal, req, filter, pos, now, this.pushRules, this.toDevice).build();
    });
  }
}

interface Computed {
  body: JsonObject;
  hasContent: boolean;
  pos: number;
  /** Acknowledge (delete) the device's to-device messages up to here. */
  ackToDevice?: number;
}

/** What changed in one room within (since, pos]. */
interface RoomChanges {
  /** The syncing user's own membership events in the range, oldest first. */
  myMemberships: Array<{ pos: number; membership: string; eventId: string }>;
  /** Users whose membership changed in the range, with their latest membership. */
  members: Map<string, string>;
  hasEvents: boolean;
  typing: boolean;
  receipts: boolean;
  accountData: Set<string>;
}

function newRoomChanges(): RoomChanges {
  return { myMemberships: [], members: new Map(), hasEvents: false, typing: false, receipts: false, accountData: new Set() };
}

interface Timeline {
  records: EventRecord[];
  limited: boolean;
  /** The stream position just before the first returned event (or the end when none). */
  prevPos: number;
}

const MEMBER = 'm.room.member';

function contentOf(json: JsonObject): JsonObject {
  return isJsonObject(json.content) ? json.content : {};
}

function strip(json: JsonObject): JsonObject {
  const out: JsonObject = { type: json.type ?? '', state_key: json.state_key ?? '', sender: json.sender ?? '', content: contentOf(json) };
  return out;
}

/**
 * Builds one /sync response inside one read transaction. Only awaits the transaction's operations (and helpers
 * that do only that), as kv.ts requires.
 */
class SyncBuilder {
  private readonly userId: string;
  private readonly since?: number;
  private readonly visibility = new VisibilityCache();
  private hasContent = false;
  private joinedRooms?: string[];
  /** The last complete timeline range read (a room's events in (since, pos]), for the unread count. */
  private timelineRead?: TimelineRead;

  constructor(
    private readonly tx: ReadTx,
    private readonly principal: Principal,
    private readonly req: SyncRequest,
    private readonly filter: SyncFilter,
    private readonly pos: number,
    private readonly now: number,
    private readonly pushRules: PushRulesService,
    private readonly toDevice: ToDeviceService,
  ) {
    this.userId = principal.userId;
    this.since = req.since?.pos;
  }

  async build(): Promise<Computed> {
    const tx = this.tx;
    const me = this.userId;
    const join: JsonObject = {};
    const invite: JsonObject = {};
    const leave: JsonObject = {};
    const knock: JsonObject = {};

    const changes = new Map<string, RoomChanges>();
    const globalAccountData = new Set<string>();
    const presenceUsers = new Set<string>();
    const deviceListUsers = new Set<string>();
    let toDeviceArrived = false;
    if (this.since !== undefined) {
      const rows = await streamRange(tx, this.since, this.pos);
      const roomOf = (roomId: string) => {
        let c = changes.get(roomId);
        if (!c) changes.set(roomId, (c = newRoomChanges()));
        return c;
      };
      for (const [key, e] of rows) {
        const p = Number(key[0]);
        switch (e.kind) {
          case 'event': {
            const c = roomOf(e.roomId);
            c.hasEvents = true;
            if (e.membership !== undefined && e.userId !== undefined) {
              c.members.set(e.userId, e.membership);
              if (e.userId === me) c.myMemberships.push({ pos: p, membership: e.membership, eventId: e.eventId });
            }
            break;
          }
          case 'receipt':
            roomOf(e.roomId).receipts = true;
            break;
          case 'typing':
            roomOf(e.roomId).typing = true;
            break;
          case 'account_data':
            if (e.userId !== me) break;
            if (e.roomId !== undefined && e.roomId !== '') roomOf(e.roomId).accountData.add(e.dataType);
            else globalAccountData.add(e.dataType);
            break;
          case 'presence':
            presenceUsers.add(e.userId);
            break;
          case 'device_list':
            deviceListUsers.add(e.userId);
            break;
          case 'to_device':
            // The device's queue is read below, unless it is known empty and nothing arrived for it.
            if (e.userId === me && e.deviceId === this.principal.deviceId) toDeviceArrived = true;
            break;
        }
      }
    }

    // Which rooms to look at, and the user's membership in each.
    let memberships: Array<[string, UserRoomRecord]>;
    const initialLike = this.since === undefined || this.req.fullState;
    if (initialLike) {
      memberships = await userRooms(tx, me);
    } else {
      const ids = [...changes.keys()];
      const recs = await tx.getMany<UserRoomRecord>(STORES.userRooms, ids.map((r) => [me, r]));
      memberships = [];
      ids.forEach((r, i) => {
        const rec = recs[i];
        if (rec) memberships.push([r, rec]);
      });
    }

    const joinedRooms: string[] = [];
    const newlyJoined: string[] = [];
    const roomFilter = this.filter.room;
    for (const [roomId, ur] of memberships) {
      if (ur.membership === 'join') joinedRooms.push(roomId);
      if (roomFilter.notRooms?.has(roomId) || (roomFilter.rooms && !roomFilter.rooms.has(roomId))) continue;
      const ch = changes.get(roomId);
      const mineChanged = ch !== undefined && ch.myMemberships.length > 0;
      switch (ur.membership) {
        case 'join': {
          const r = await this.joinedRoom(roomId, ur, ch);
          if (r.newlyJoined) newlyJoined.push(roomId);
          if (r.body) join[roomId] = r.body;
          break;
        }
        case 'invite':
          if (this.since === undefined || mineChanged || this.req.fullState) {
            const rec = await getEvent(tx, ur.eventId);
            if (rec) invite[roomId] = { invite_state: { events: await this.strippedState(rec, 'invite_room_state') } };
          }
          break;
        case 'knock':
          if (this.since === undefined || mineChanged || this.req.fullState) {
            const rec = await getEvent(tx, ur.eventId);
            if (rec) knock[roomId] = { knock_state: { events: await this.strippedState(rec, 'knock_room_state') } };
          }
          break;
        case 'leave':
        case 'ban':
          if (this.since === undefined ? roomFilter.includeLeave : mineChanged) {
            const body = await this.leftRoom(roomId, ur, ch);
            if (body) leave[roomId] = body;
          }
          break;
      }
    }
    const roomsWithContent =
      Object.keys(join).length + Object.keys(invite).length + Object.keys(leave).length + Object.keys(knock).length;
    if (roomsWithContent > 0) this.hasContent = true;

    // An incremental sync only looked at the rooms touched in the range: the full list is read when needed.
    if (initialLike) this.joinedRooms = joinedRooms;
    const accountData = await this.globalAccountData(globalAccountData);
    const presence = await this.presenceEvents(presenceUsers);
    const deviceLists = await this.deviceLists(changes, deviceListUsers, newlyJoined);

    // To-device: the device's queue after what the token acknowledges.
    const body: JsonObject = {};
    let token: SyncToken = { pos: this.pos };
    let ackToDevice: number | undefined;
    const deviceId = this.principal.deviceId;
    let toDevice: JsonObject[] = [];
    if (deviceId !== undefined) {
      const since = this.req.since;
      const ack = since ? (since.toDevice ?? since.pos) : 0;
      // The queue held nothing up to `since` (all of it delivered and deleted) and the stream range shows no new
      // message for this device: it is empty, no read needed. This is every woken sync of a quiet device.
      const knownEmpty = since !== undefined && since.toDevice === undefined && !toDeviceArrived && this.toDevice.isClearUpTo(me, deviceId, ack);
      // The snapshot holds every message up to this.pos, so an empty queue in it stays empty up to there.
      if (knownEmpty) this.toDevice.noteClearUpTo(me, deviceId, this.pos);
      else {
        const { hasAcked, pending } = await toDeviceForSyncIn(tx, me, deviceId, ack);
        if (ack > 0 && hasAcked) ackToDevice = ack;
        else this.toDevice.noteClearUpTo(me, deviceId, pending.events.length === 0 ? this.pos : ack);
        toDevice = pending.events;
        if (pending.more && pending.lastPos !== undefined) token = { pos: this.pos, toDevice: pending.lastPos };
      }
    }
    if (accountData.length > 0 || presence.length > 0 || toDevice.length > 0) this.hasContent = true;
    if (deviceLists.changed.length > 0 || deviceLists.left.length > 0) this.hasContent = true;

    body.next_batch = formatSyncToken(token);
    body.rooms = { join, invite, leave, knock };
    body.account_data = { events: accountData };
    body.presence = { events: presence };
    body.to_device = { events: toDevice };
    body.device_lists = deviceLists;
    // Always present, signed_curve25519 included even at zero, as Synapse does (clients read absence ambiguously).
    const otk = deviceId === undefined ? undefined : await oneTimeKeyStateIn(tx, me, deviceId);
    body.device_one_time_keys_count = otk?.counts ?? { signed_curve25519: 0 };
    body.device_unused_fallback_key_types = otk?.unusedFallbackTypes ?? [];
    return { body, hasContent: this.hasContent, pos: this.pos, ackToDevice };
  }

  // ---- Joined rooms

  private async joinedRoom(
    roomId: string,
    ur: UserRoomRecord,
    ch: RoomChanges | undefined,
  ): Promise<{ body?: JsonObject; newlyJoined: boolean }> {
    const tx = this.tx;
    const since = this.since;
    let full = since === undefined || this.req.fullState;
    let newlyJoined = false;
    if (since !== undefined && ch && ch.myMemberships.length > 0) {
      // Joined within the range (not merely a profile change): the client knows nothing of the room yet.
      newlyJoined = (await this.membershipAt(roomId, since)) !== 'join';
      if (newlyJoined) full = true;
    }
    if (!full && !ch) return { newlyJoined };

    const f = this.filter.room;
    const timeline =
      full || ch?.hasEvents
        ? await this.timeline(roomId, since, this.pos, ur, f.timeline)
        : { records: [], limited: false, prevPos: this.pos };
    const summary = full || (ch && ch.members.size > 0) ? await this.summary(roomId) : undefined;
    const state = await this.stateFor(roomId, timeline, full, ch, summary?.heroes);
    const ephemeral = await this.ephemeralEvents(roomId, full, ch);
    const accountData = await this.roomAccountData(roomId, full ? undefined : ch?.accountData);

    const nonEmpty =
      timeline.records.length > 0 || state.length > 0 || ephemeral.length > 0 || accountData.length > 0;
    if (!nonEmpty && since !== undefined && !newlyJoined) return { newlyJoined };

    const body: JsonObject = {
      timeline: {
        events: await this.formatEvents(timeline.records),
        limited: timeline.limited,
        prev_batch: paginationToken(timeline.prevPos),
      },
      ephemeral: { events: ephemeral },
      account_data: { events: accountData },
    };
    const known = this.timelineRead?.roomId === roomId ? this.timelineRead : undefined;
    // The stream range shows whether a receipt of the room changed since `since`: if not, none needs reading.
    const receiptsSince = since !== undefined && !ch?.receipts ? since : undefined;
    const unread = await this.pushRules.unreadCountsIn(tx, this.userId, roomId, ur, this.pos, f.timeline.unreadThreadNotifications, known, receiptsSince);
    body.unread_notifications = unread.main;
    if (unread.threads) body.unread_thread_notifications = unread.threads;
    body[this.req.useStateAfter ? 'state_after' : 'state'] = { events: await this.formatEvents(state) };
    if (summary) body.summary = summary.json;
    return { body, newlyJoined };
  }

  /** The user's membership in a room as of stream position `pos` (undefined when the room had no event yet). */
  private async membershipAt(roomId: string, pos: number): Promise<string | undefined> {
    const group = await stateGroupAtPosition(this.tx, roomId, pos);
    if (group === undefined) return undefined;
    const found = await stateLookup(this.tx, group, [stateKey(MEMBER, this.userId)], this.visibility.groups);
    const id = found.get(stateKey(MEMBER, this.userId));
    const rec = id === undefined ? undefined : await getEvent(this.tx, id);
    const m = rec ? contentOf(rec.json).membership : undefined;
    return typeof m === 'string' ? m : undefined;
  }

  /**
   * The last `limit` events in (from, to] that the user may see and the filter lets through, oldest first.
   * `limited` when more such events exist before them (or the scan gave up looking).
   */
  private async timeline(
    roomId: string,
    from: number | undefined,
    to: number,
    ur: UserRoomRecord,
    f: EventFilter,
  ): Promise<Timeline> {
    const limit = Math.min(f.limit ?? DEFAULT_TIMELINE_LIMIT, MAX_TIMELINE_LIMIT);
    const out: EventRecord[] = [];
    let limited = false;
    let cursor = to;
    let scanned = 0;
    let batch = limit + 1;
    scan: for (;;) {
      if (from !== undefined && cursor <= from) break;
      const rows = await timelineRange(this.tx, roomId, { from, to: cursor, reverse: true, limit: batch });
      if (rows.length === 0) break;
      const recs = await getEvents(this.tx, rows.map(([, id]) => id));
      // The whole range in one batch: kept for the unread count, which reads the same range after a short wait.
      if (from !== undefined && cursor === to && rows.length < batch) this.timelineRead = { roomId, from, to, rows, records: recs };
      for (const rec of recs) {
        if (!rec || rec.rejected !== undefined || rec.softFailed) continue;
        if (!filterAllows(f, { type: String(rec.json.type), sender: String(rec.json.sender), roomId, content: contentOf(rec.json) })) continue;
        if (!(await this.visible(rec, ur))) continue;
        if (out.length === limit) {
          limited = true;
          break scan;
        }
        out.push(rec);
      }
      scanned += rows.length;
      if (rows.length < batch) break;
      cursor = rows[rows.length - 1][0] - 1;
      if (scanned >= TIMELINE_SCAN_LIMIT) {
        // Give up looking further back: report a gap the client can paginate.
        limited = (from === undefined || cursor > from) && cursor > 0;
        break;
      }
      batch = Math.min(batch * 2, 200);
    }
    out.reverse();
    const first = out[0]?.pos;
    return { records: out, limited, prevPos: first !== undefined ? first - 1 : to };
  }

  /** History visibility, with the common case (after the user's own current membership event) answered free. */
  private async visible(rec: EventRecord, ur: UserRoomRecord): Promise<boolean> {
    if (rec.eventId === ur.eventId) return true;
    if (ur.membership === 'join' && rec.pos !== undefined && rec.pos > ur.pos) return true;
    return visibleToUser(this.tx, rec, this.userId, this.visibility);
  }

  /**
   * The `state` section (or `state_after` with use_state_after): the full state at the start (end) of the
   * timeline when `full`; otherwise the delta from `since` when the timeline is limited (or always, for
   * state_after). Lazy loading keeps only the members the timeline needs (plus the user, and the heroes).
   */
  private async stateFor(
    roomId: string,
    tl: Timeline,
    full: boolean,
    ch: RoomChanges | undefined,
    heroes?: readonly string[],
  ): Promise<EventRecord[]> {
    const tx = this.tx;
    const after = this.req.useStateAfter;
    const f = this.filter.room.state;
    const first = tl.records[0];
    const last = tl.records[tl.records.length - 1];
    const atEnd = async () => last?.stateAfter ?? (await stateGroupAtPosition(tx, roomId, this.pos)) ?? 0;
    const group = after ? await atEnd() : (first?.stateBefore ?? (await atEnd()));

    let ids: Map<StateKey, string>;
    let isDelta = false;
    if (full) {
      ids = await stateAt(tx, group);
    } else if (tl.limited || (after && (tl.records.length > 0 || (ch?.members.size ?? 0) > 0))) {
      const base = this.since === undefined ? undefined : await stateGroupAtPosition(tx, roomId, this.since);
      const [now, then] = await Promise.all([stateAt(tx, group), base === undefined ? new Map() : stateAt(tx, base)]);
      ids = new Map();
      for (const [k, id] of now) if (then.get(k) !== id) ids.set(k, id);
      isDelta = true;
    } else {
      ids = new Map();
    }

    if (f.lazyLoadMembers) {
      const wanted = new Set<string>(heroes);
      for (const r of tl.records) wanted.add(String(r.json.sender));
      if (full) wanted.add(this.userId);
      const kept = new Map<StateKey, string>();
      // Member changes in a limited gap are always sent (sync.yaml); a full state keeps only the wanted members.
      for (const [k, id] of ids) if (!k.startsWith(MEMBER + '\u0000') || isDelta) kept.set(k, id);
      const keys = [...wanted].map((u) => stateKey(MEMBER, u));
      const found = full ? new Map(keys.filter((k) => ids.has(k)).map((k) => [k, ids.get(k)!])) : await stateLookup(tx, group, keys, this.visibility.groups);
      for (const [k, id] of found) kept.set(k, id);
      ids = kept;
    }

    const inTimeline = new Set(tl.records.map((r) => r.eventId));
    const wantedIds = [...ids.values()].filter((id) => after || !inTimeline.has(id));
    const recs = await getEvents(tx, wantedIds);
    const events = recs.filter(
      (r): r is EventRecord =>
        r !== undefined &&
        filterAllows(f, { type: String(r.json.type), sender: String(r.json.sender), roomId, content: contentOf(r.json) }),
    );
    // Stable order for clients and tests: stream order, outliers first.
    events.sort((a, b) => (a.pos ?? 0) - (b.pos ?? 0));
    return events;
  }

  private async ephemeralEvents(roomId: string, full: boolean, ch: RoomChanges | undefined): Promise<JsonObject[]> {
    const f = this.filter.room.ephemeral;
    if (f.notRooms?.has(roomId) || (f.rooms && !f.rooms.has(roomId))) return [];
    const out: JsonObject[] = [];
    if ((full || ch?.typing) && filterAllows(f, { type: 'm.typing' })) {
      const users = await typingUsersIn(this.tx, roomId, this.now);
      // An empty list is news only when it changed: it tells clients that everyone stopped typing.
      if (users.length > 0 || ch?.typing) out.push({ type: 'm.typing', content: { user_ids: users } });
    }
    if ((full || ch?.receipts) && filterAllows(f, { type: 'm.receipt' })) {
      const content = await receiptContentIn(this.tx, roomId, this.userId, full ? undefined : this.since);
      if (content) out.push({ type: 'm.receipt', content });
    }
    return f.limit !== undefined ? out.slice(0, f.limit) : out;
  }

  /** Room account data: all of it (types undefined) or the changed types. */
  private async roomAccountData(roomId: string, types: ReadonlySet<string> | undefined): Promise<JsonObject[]> {
    const f = this.filter.room.accountData;
    if (f.notRooms?.has(roomId) || (f.rooms && !f.rooms.has(roomId))) return [];
    return this.accountDataEvents(roomId, types, f);
  }

  private async globalAccountData(types: ReadonlySet<string>): Promise<JsonObject[]> {
    const f = this.filter.accountData;
    const out = await this.accountDataEvents('', this.since === undefined ? undefined : types, f);
    // m.push_rules is kept by the push rules service, not in account_data: always in an initial sync, and again
    // whenever the rules changed (push.md "Push Rules: Events").
    if ((this.since === undefined || types.has(PUSH_RULES_TYPE)) && filterAllows(f, { type: PUSH_RULES_TYPE })) {
      if (f.limit === undefined || out.length < f.limit) out.push(await this.pushRules.pushRulesEventIn(this.tx, this.userId));
    }
    return out;
  }

  private async accountDataEvents(roomId: string, types: ReadonlySet<string> | undefined, f: EventFilter): Promise<JsonObject[]> {
    let rows: Array<[string, AccountDataRecord | undefined]>;
    if (types === undefined) {
      const r = await this.tx.range<AccountDataRecord>(STORES.accountData, { prefix: [this.userId, roomId] });
      rows = r.map(([k, v]) => [String(k[2]), v]);
    } else {
      if (types.size === 0) return [];
      const list = [...types];
      const r = await this.tx.getMany<AccountDataRecord>(STORES.accountData, list.map((t) => [this.userId, roomId, t]));
      rows = list.map((t, i) => [t, r[i]]);
    }
    const out: JsonObject[] = [];
    for (const [type, rec] of rows) {
      if (rec && filterAllows(f, { type })) out.push({ type, content: rec.content });
    }
    return f.limit !== undefined ? out.slice(0, f.limit) : out;
  }

  /**
   * sync.yaml RoomSummary. Heroes are sent only when the room has no name or canonical alias (and then, with lazy
   * loading, their member events go into the state).
   */
  private async summary(roomId: string): Promise<{ json: JsonObject; heroes?: string[] }> {
    const members = await roomMembers(this.tx, roomId);
    let joined = 0;
    let invited = 0;
    for (const [, m] of members) {
      if (m.membership === 'join') joined++;
      else if (m.membership === 'invite') invited++;
    }
    const json: JsonObject = { 'm.joined_member_count': joined, 'm.invited_member_count': invited };
    if (await this.hasNameOrAlias(roomId)) return { json };
    const heroes = await this.heroes(members);
    json['m.heroes'] = heroes;
    return { json, heroes };
  }

  private async hasNameOrAlias(roomId: string): Promise<boolean> {
    const ids = await Promise.all([
      currentStateId(this.tx, roomId, 'm.room.name', ''),
      currentStateId(this.tx, roomId, 'm.room.canonical_alias', ''),
    ]);
    const recs = await getEvents(this.tx, ids.filter((x): x is string => x !== undefined));
    return recs.some((r) => {
      if (!r || r.redactedBy) return false;
      const c = contentOf(r.json);
      return (typeof c.name === 'string' && c.name !== '') || (typeof c.alias === 'string' && c.alias !== '');
    });
  }

  /**
   * Up to 5 members other than the user, joined or invited, in stream order of their membership; the left and
   * banned when there are none (sync.yaml `m.heroes`). In large rooms only the first 50 candidates by user ID are
   * ordered, to bound the reads.
   */
  private async heroes(members: Array<[string, { membership: string; eventId: string }]>): Promise<string[]> {
    const others = members.filter(([u]) => u !== this.userId);
    let pool = others.filter(([, m]) => m.membership === 'join' || m.membership === 'invite');
    if (pool.length === 0) pool = others.filter(([, m]) => m.membership === 'leave' || m.membership === 'ban');
    pool = pool.slice(0, 50);
    const recs = await getEvents(this.tx, pool.map(([, m]) => m.eventId));
    return pool
      .map(([u], i) => [u, recs[i]?.pos ?? 0] as const)
      .sort((a, b) => a[1] - b[1])
      .slice(0, 5)
      .map(([u]) => u);
  }

  // ---- Left rooms

  private async leftRoom(roomId: string, ur: UserRoomRecord, ch: RoomChanges | undefined): Promise<JsonObject | undefined> {
    const tx = this.tx;
    const leaveEvent = await getEvent(tx, ur.eventId);
    if (!leaveEvent || leaveEvent.pos === undefined) return undefined;
    const unsigned = isJsonObject(leaveEvent.json.unsigned) ? leaveEvent.json.unsigned : {};
    const prev = isJsonObject(unsigned.prev_content) ? unsigned.prev_content.membership : undefined;
    let records: EventRecord[];
    let tl: Timeline;
    let stateEvents: EventRecord[] = [];
    if (prev !== 'join') {
      // A rejected invite, a withdrawn knock, a ban from outside: the user never saw the room, so nothing but
      // their own membership event (as Synapse).
      records = [leaveEvent];
      tl = { records, limited: false, prevPos: leaveEvent.pos - 1 };
    } else {
      tl = await this.timeline(roomId, this.since, leaveEvent.pos, ur, this.filter.room.timeline);
      if (!tl.records.some((r) => r.eventId === leaveEvent.eventId)) {
        // The user's own leave is always shown, whatever the filter says: it is why the room is here.
        tl.records.push(leaveEvent);
      }
      stateEvents = await this.stateFor(roomId, tl, this.since === undefined, ch);
    }
    return {
      timeline: { events: await this.formatEvents(tl.records), limited: tl.limited, prev_batch: paginationToken(tl.prevPos) },
      [this.req.useStateAfter ? 'state_after' : 'state']: { events: await this.formatEvents(stateEvents) },
      account_data: { events: await this.roomAccountData(roomId, this.since === undefined ? undefined : ch?.accountData) },
    };
  }

  // ---- Invited and knocked rooms

  /**
   * Stripped state for an invite or knock: what the member event carries in `unsigned` (remote invites), else the
   * room's stripped-state events at that event; always with the member event itself.
   */
  private async strippedState(rec: EventRecord, unsignedKey: string): Promise<JsonObject[]> {
    const unsigned = isJsonObject(rec.json.unsigned) ? rec.json.unsigned : {};
    const carried = unsigned[unsignedKey];
    let events: JsonObject[];
    if (Array.isArray(carried)) {
      events = carried.filter(isJsonObject).map(strip);
    } else {
      const keys = STRIPPED_STATE_TYPES.map((t) => stateKey(t, ''));
      const found = await stateLookup(this.tx, rec.stateBefore, keys, this.visibility.groups);
      const recs = await getEvents(this.tx, [...found.values()]);
      events = recs.filter((r): r is EventRecord => r !== undefined).map((r) => strip(r.json));
    }
    events = events.filter((e) => !(e.type === MEMBER && e.state_key === rec.json.state_key));
    events.push(strip(rec.json));
    return events;
  }

  // ---- Presence, account data, device lists

  /** Every room the user has joined (as of the snapshot). */
  private async allJoinedRooms(): Promise<string[]> {
    this.joinedRooms ??= await joinedRoomsIn(this.tx, this.userId);
    return this.joinedRooms;
  }

  private async presenceEvents(changed: ReadonlySet<string>): Promise<JsonObject[]> {
    const f = this.filter.presence;
    if (f.notTypes?.('m.presence') || (f.types && !f.types('m.presence'))) return [];
    let candidates: string[];
    if (this.since === undefined) {
      const rows = await this.tx.range(STORES.presence, {});
      candidates = rows.map(([k]) => String(k[0]));
    } else {
      candidates = [...changed];
    }
    if (candidates.length === 0) return [];
    const visible = await sharingRoomIn(this.tx, this.userId, candidates, await this.allJoinedRooms());
    const users = candidates.filter((u) => visible.has(u) && filterAllows(f, { type: 'm.presence', sender: u }));
    const events = await presenceEventsIn(this.tx, users, this.now);
    return f.limit !== undefined ? events.slice(0, f.limit) : events;
  }

  private async deviceLists(
    changes: ReadonlyMap<string, RoomChanges>,
    deviceListUsers: ReadonlySet<string>,
    newlyJoined: readonly string[],
  ): Promise<{ changed: string[]; left: string[] }> {
    if (this.since === undefined) return { changed: [], left: [] };
    if (deviceListUsers.size === 0 && ![...changes.values()].some((c) => c.members.size > 0)) return { changed: [], left: [] };
    const me = this.userId;
    const joinedRooms = await this.allJoinedRooms();
    const joinedSet = new Set(joinedRooms);
    const changedCandidates = new Set(deviceListUsers);
    const leftCandidates = new Set<string>();
    for (const [roomId, ch] of changes) {
      const iLeft = ch.myMemberships.length > 0 && !joinedSet.has(roomId);
      for (const [u, m] of ch.members) {
        if (u === me) continue;
        if (m === 'join' && joinedSet.has(roomId)) changedCandidates.add(u);
        else if ((m === 'leave' || m === 'ban') && !iLeft) leftCandidates.add(u);
      }
      if (iLeft) for (const [u] of await roomMembers(this.tx, roomId)) if (u !== me) leftCandidates.add(u);
    }
    for (const roomId of newlyJoined) {
      for (const [u, m] of await roomMembers(this.tx, roomId)) if (u !== me && m.membership === 'join') changedCandidates.add(u);
    }
    if (changedCandidates.size === 0 && leftCandidates.size === 0) return { changed: [], left: [] };
    const sharing = await sharingRoomIn(this.tx, me, [...changedCandidates, ...leftCandidates], joinedRooms);
    return {
      changed: [...changedCandidates].filter((u) => sharing.has(u)),
      left: [...leftCandidates].filter((u) => !sharing.has(u) && !changedCandidates.has(u)),
    };
  }

  // ---- Formatting

  /** Room events as the filter asks: client format without room_id (sync.yaml), or the federation PDU. */
  private async formatEvents(records: readonly EventRecord[]): Promise<JsonObject[]> {
    if (records.length === 0) return [];
    if (this.filter.eventFormat === 'federation') {
      const out: JsonObject[] = [];
      for (const r of records) {
        const v = await roomVersionOf(this.tx, r.roomId);
        out.push(v ? pduOf(r, v).json : r.json);
      }
      return out;
    }
    const events = await clientEvents(this.tx, records, {
      forUserId: this.userId,
      forDeviceId: this.principal.deviceId,
      now: this.now,
    });
    const fields = this.filter.eventFields;
    return events.map((e) => {
      const json = e as unknown as JsonObject;
      delete json.room_id;
      return fields ? pickFields(json, fields) : json;
    });
  }
}
