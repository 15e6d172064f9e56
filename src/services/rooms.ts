/**
 * Rooms and the local event pipeline: every event this server's users create goes through `submit` (one room) or
 * `persist` (createRoom's whole sequence), and this service is the only writer of the room stores
 * (storage/schema.ts). Readers use the helpers in event-store.ts.
 *
 * Spec: shared/matrix-spec/content/client-server-api/_index.md (#room-events, #sending-events-to-a-room,
 * #getting-events-for-a-room, #redactions, #transaction-identifiers), server-server-api.md (#auth-events-selection,
 * "Adding hashes and signatures to outgoing events"), rooms/v1.md … v12.md; data/api/client-server/{room_send,
 * room_state,rooms,redaction,list_joined_rooms}.yaml.
 *
 * The pipeline for one local event, under a per-room lock (in-process: the homeserver is one process):
 *   1. read (one read transaction, two batched round trips): room record, forward extremities, the current state
 *      entries the event's auth needs (plus what the caller asked for), those events, the txn ID record;
 *   2. prepare: the caller turns what was read into a draft (or answers from it: a duplicate txn or state event);
 *   3. build: auth_events by the auth events selection (+ the create event up to v11), prev_events = the forward
 *      extremities (≤ 20), depth = max depth + 1, origin_server_ts = clock; hash and sign (core/build-event.ts);
 *   4. authorize against the current state (core/auth/rules.ts): refusal → 403 M_FORBIDDEN with the reason;
 *   5. ONE write transaction (`persist`): the event record with its state groups, timeline, stream entry,
 *      current state, member lists, relations, redaction marks, txn record, forward extremities, room record;
 *   6. notify /sync after the commit.
 */
import type { Principal } from '../api/endpoint.js';
import type { MatrixError } from '../api/errors.js';
import {
  badAlias,
  badJson,
  duplicateAnnotation,
  forbidden,
  invalidParam,
  notFound,
  tooLarge,
} from '../api/errors.js';
import { powerLevelOf, powerLevelsFrom, roomCreators } from '../core/auth/power-levels.js';
import type { PowerLevels } from '../core/auth/power-levels.js';
import { authStateKeysFor } from '../core/auth/auth-events.js';
import { authorize } from '../core/auth/rules.js';
import { BuildEventError, buildEvent } from '../core/build-event.js';
import { canonicalJson, CanonicalJsonError } from '../core/canonical-json.js';
import type { StateKey, StateMap } from '../core/event.js';
import { splitStateKey, stateKey } from '../core/event.js';
import type { Pdu } from '../core/event.js';
import { isValidRoomAlias, parseRoomAlias, utf8ByteLength } from '../core/identifiers.js';
import type { JsonObject } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { RoomVersion } from '../core/room-versions.js';
import { roomVersion } from '../core/room-versions.js';
import type { ReadTx, WriteTx } from '../storage/kv.js';
import { StorageError } from '../storage/kv.js';
import type { EventRecord, MemberRecord, RoomRecord, StreamEntry, UserRoomRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import { addStateGroup } from '../storage/state-groups.js';
import type { AccountsService, UserRecord } from './accounts.js';
import type { ServiceContext } from './context.js';
import { createRoom } from './create-room.js';
import type { ClientEvent } from './event-store.js';
import {
  clientEvent,
  clientEvents,
  currentStateEvents,
  getEvent,
  getEvents,
  membershipOf,
  pduOf,
  putRelation,
  rememberRoomVersion,
  roomMembers,
  stateAt,
  stateGroupAtPosition,
  userRooms,
  visibleToUser,
  withPrevState,
} from './event-store.js';
import { MembershipOps } from './membership.js';
import type { RoomsFederation } from './membership.js';
import { allocatePosition } from './notifier.js';

/** An event to create: what the client (or the membership logic) decided; the pipeline adds the rest. */
export interface Draft {
  type: string;
  /** Present for state events. */
  stateKey?: string;
  sender: string;
  content: JsonObject;
  /** m.room.redaction: the redacted event (top level before v11, in content from v11). */
  redacts?: string;
}

/** A client transaction ID, scoped (spec "Transaction identifiers") to the device and the request path. */
export interface TxnRef {
  userId: string;
  deviceId: string;
  txnId: string;
  /** The endpoint and its path parameters without the txn ID, e.g. `send/!room/m.room.message`. */
  scope: string;
}

/** txn_ids: [userId, deviceId, scope + '/' + txnId] → TxnRecord */
interface TxnRecord {
  eventId: string;
}

/** A built, authorised event ready for `persist`. */
export interface PreparedEvent {
  pdu: Pdu;
  txn?: TxnRef;
}

export interface SubmitOptions {
  /** The sending user (their member event is always loaded). */
  sender: string;
  /** More current-state entries `prepare` reads (type, state_key); others are loaded on demand. */
  state?: ReadonlyArray<readonly [string, string]>;
  /** Event records `prepare` reads (e.g. a redaction's target), in `head.records`. */
  events?: readonly string[];
  /** User records `prepare` reads (profiles for member events), in `head.users`. */
  users?: readonly string[];
  txn?: TxnRef;
  /** Further checks in the read transaction (await only `tx` operations). */
  check?: (tx: ReadTx, head: RoomHead) => Promise<void>;
}

/** What `prepare` returns: a draft to send, or the ID of an existing event that already answers the request. */
export type Prepared = Draft | { existing: string };

const MAX_PREV_EVENTS = 20;
const PDU_CACHE_LIMIT = 5_000;
const HEAD_CACHE_LIMIT = 1_000;
/** Always loaded: what most events' auth needs. */
const BASE_STATE: ReadonlyArray<readonly [string, string]> = [
  ['m.room.create', ''],
  ['m.room.power_levels', ''],
  ['m.room.join_rules', ''],
];
const BASE_KEYS: readonly StateKey[] = BASE_STATE.map(([t, k]) => stateKey(t, k));

/**
 * What the pipeline knows of a room's head: its record, forward extremities and some of its current state
 * (`stateIds` for the keys in `knownKeys`; every key when `complete`). Kept per room between events (see
 * RoomsService.heads), so a send in a warm room reads nothing before its write.
 */
export interface HeadSnapshot {
  room: RoomRecord;
  version: RoomVersion;
  extremities: string[];
  stateIds: Map<StateKey, string>;
  knownKeys: Set<StateKey>;
  /** stateIds holds the whole current state: a key not in it has no state. */
  complete: boolean;
}

/** A room as read at the start of the pipeline: its record, extremities, and the state entries that were loaded. */
export class RoomHead {
  private pl?: PowerLevels | null;
  /**
   * Events by ID: the current state at the keys the event needs (BASE_STATE, the sender's member event, the keys
   * asked for, its auth events), not the whole state; prev events in v1–v2 rooms.
   */
  readonly pdus = new Map<string, Pdu>();
  /** IDs whose records were looked for and are not stored (read as no state, as before). */
  readonly absent = new Set<string>();
  /** Event records `SubmitOptions.events` asked for. */
  readonly records = new Map<string, EventRecord>();
  /** User records `SubmitOptions.users` asked for. */
  readonly users = new Map<string, UserRecord | undefined>();

  /**
   * @param snap what is known of the room; with `shared`, the cached snapshot itself, which is never changed in
   * place — `ownSnapshot()` copies it before the first change.
   */
  constructor(
    public snap: HeadSnapshot,
    private shared = false,
  ) {}

  /** Hands the snapshot to the cache: from now on it is the cache's own, and `ownSnapshot()` copies it first. */
  share(): HeadSnapshot {
    this.shared = true;
    return this.snap;
  }

  /** The snapshot, copied first if it is the cache's own (call before changing it). */
  ownSnapshot(): HeadSnapshot {
    if (this.shared) {
      this.snap = copySnapshot(this.snap);
      this.shared = false;
    }
    return this.snap;
  }

  get room(): RoomRecord {
    return this.snap.room;
  }
  get version(): RoomVersion {
    return this.snap.version;
  }
  get extremities(): string[] {
    return this.snap.extremities;
  }
  get stateIds(): Map<StateKey, string> {
    return this.snap.stateIds;
  }
  get roomId(): string {
    return this.snap.room.roomId;
  }

  /** Whether the current state at `key` is known (present or absent). */
  knows(key: StateKey): boolean {
    return this.snap.complete || this.snap.knownKeys.has(key);
  }

  /**
   * The current state event (type, state_key), if known and present. Only keys the pipeline loaded may be asked
   * for (`SubmitOptions.state`): reading any other as "no state" could let auth pass on defaults, so that throws.
   */
  get(type: string, key: string): Pdu | undefined {
    const id = this.snap.stateIds.get(stateKey(type, key));
    if (id === undefined) return undefined;
    const pdu = this.pdus.get(id);
    if (pdu === undefined && !this.absent.has(id)) throw new Error(`room head: the state at ${type}|${key} was not loaded`);
    return pdu;
  }

  membership(userId: string): string | undefined {
    return this.get('m.room.member', userId)?.membership;
  }

  get powerLevels(): PowerLevels {
    return powerLevelsFrom(this.get('m.room.power_levels', ''), this.version);
  }

  /** A user's power level (Infinity for v12 creators). */
  levelOf(userId: string): number {
    if (this.pl === undefined) {
      const ev = this.get('m.room.power_levels', '');
      this.pl = ev ? powerLevelsFrom(ev, this.version) : null;
    }
    return powerLevelOf(userId, this.pl ?? undefined, roomCreators(this.get('m.room.create', ''), this.version), this.version);
  }

  /** The profile fields a member event carries for a local user. */
  profileOf(userId: string): JsonObject {
    const u = this.users.get(userId);
    const out: JsonObject = {};
    if (!u || u.deactivated) return out;
    if (typeof u.profile.displayname === 'string') out.displayname = u.profile.displayname;
    if (typeof u.profile.avatar_url === 'string') out.avatar_url = u.profile.avatar_url;
    return out;
  }
}

/** One promise chain per key: `run` calls for the same key run one at a time, in call order. */
class KeyedLock {
  /** Held keys, each with the runs waiting for it (first in first out); a free key has no entry. */
  private readonly waiting = new Map<string, Array<() => void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const queue = this.waiting.get(key);
    // Uncontended (a message into a quiet room), `fn` starts at once: no promise chain to wait through.
    if (queue === undefined) this.waiting.set(key, []);
    else await new Promise<void>((resolve) => queue.push(resolve));
    try {
      return await fn();
    } finally {
      // Hand the key straight to the next run, or free it.
      const next = this.waiting.get(key)!.shift();
      if (next !== undefined) next();
      else this.waiting.delete(key);
    }
  }
}

/** A bounded map that forgets its oldest entries first. */
class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly limit: number) {
    super();
  }
  override set(key: K, value: V): this {
    if (!this.has(key) && this.size >= this.limit) {
      // Drop the oldest tenth (a Map iterates in insertion order).
      let n = Math.max(1, Math.floor(this.limit / 10));
      for (const k of this.keys()) {
        this.delete(k);
        if (--n <= 0) break;
      }
    }
    return super.set(key, value);
  }
}

export function domainOf(id: string): string {
  const i = id.indexOf(':');
  return i < 0 ? '' : id.slice(i + 1);
}

function sameJson(a: JsonObject, b: JsonObject): boolean {
  try {
    return canonicalJson(a) === canonicalJson(b);
  } catch {
    return false;
  }
}

/** Why a built event is refused, as the client should hear it. */
function buildError(e: unknown): MatrixError | undefined {
  if (e instanceof CanonicalJsonError) return badJson(`The event is not valid canonical JSON: ${e.message}`);
  if (e instanceof BuildEventError) {
    if (/bytes/.test(e.message)) return tooLarge(e.message);
    return badJson(e.message);
  }
  return undefined;
}

function copySnapshot(s: HeadSnapshot): HeadSnapshot {
  return {
    ...s,
    room: { ...s.room },
    extremities: [...s.extremities],
    stateIds: new Map(s.stateIds),
    knownKeys: s.complete ? s.knownKeys : new Set(s.knownKeys),
  };
}

function txnKey(t: TxnRef): [string, string, string] {
  return [t.userId, t.deviceId, `${t.scope}/${t.txnId}`];
}

export class RoomsService {
  readonly membership: MembershipOps;
  /** Federation's part of the membership flows (remote joins, invites, leaves); set when the server federates. */
  federation?: RoomsFederation;
  /** Told about the events this server's users created, after they commit (federation sends them on). */
  readonly committed: Array<(events: readonly Pdu[]) => void> = [];
  private readonly locks = new KeyedLock();
  /**
   * Events as auth sees them (redacted when redacted), by ID. Event JSON never changes; redactions evict.
   * State events and (v1–v2, whose references carry hashes) every event are kept.
   */
  private readonly pduCache = new BoundedMap<string, Pdu>(PDU_CACHE_LIMIT);
  /**
   * Room heads between events. Only this service writes room state, always under the room's lock, and it updates
   * the entry after each commit (and drops it when a write fails), so an entry is never stale.
   */
  private readonly heads = new BoundedMap<string, HeadSnapshot>(HEAD_CACHE_LIMIT);
  /** Recently committed txn IDs (the txn_ids store is the authority, checked again in the write). */
  private readonly recentTxns = new BoundedMap<string, string>(1_000); // retries come soon; ~1 MB less than 10,000
  /** Write batches of the pipeline that failed after being ordered (see `submit`). */
  private writeFailures = 0;

  constructor(
    readonly ctx: ServiceContext,
    readonly deps: { accounts: AccountsService },
  ) {
    this.membership = new MembershipOps(this);
    // Hooks of the accounts service (absent in builds without them).
    deps.accounts.onDeactivate?.push((userId) => this.membership.leaveAll(userId));
    deps.accounts.profile?.profileChanged?.push((change) =>
      change.key === 'displayname' || change.key === 'avatar_url' ? this.membership.refreshProfile(change.userId) : undefined,
    );
  }

  get serverName(): string {
    return this.ctx.serverName;
  }

  isLocalUser(userId: string): boolean {
    return domainOf(userId) === this.ctx.serverName;
  }

  // ---- The pipeline

  /**
   * Creates one local event in `roomId`: read → prepare → build → authorize → one write → notify (see the module
   * comment). Returns the new event's ID, or the existing one `prepare` or the txn ID record points at.
   * Throws 404 M_NOT_FOUND for an unknown room and 403 M_FORBIDDEN when the auth rules refuse the event.
   */
  async submit(roomId: string, opts: SubmitOptions, prepare: (head: RoomHead) => Prepared): Promise<string> {
    // The room's lock covers read → build → the write being ordered; the next event of the room may start while
    // the disk syncs this one (kv.writeOrdered). Nobody hears of the event before it is durable.
    const done = await this.locks.run(roomId, async (): Promise<{ eventId: string; durable?: Promise<void>; after?: () => void }> => {
      const txn = opts.txn ? txnKey(opts.txn) : undefined;
      const txnId = txn ? JSON.stringify(txn) : undefined;
      const seen = txnId !== undefined ? this.recentTxns.get(txnId) : undefined;
      if (seen !== undefined) return { eventId: seen };

      const failures = this.writeFailures;
      const head = await this.readHead(roomId, opts);
      const prepared = prepare(head);
      if ('existing' in prepared) return { eventId: prepared.existing };
      const draft = prepared;

      await this.ensureState(head, draft);

      // Sending the state that is already there changes nothing: answer with the existing event (as Synapse does).
      if (draft.stateKey !== undefined && draft.redacts === undefined) {
        const current = head.get(draft.type, draft.stateKey);
        if (current && current.sender === draft.sender && sameJson(current.content, draft.content)) return { eventId: current.eventId };
      }

      const pdu = await this.build(head, draft);
      const result = authorize(pdu, { get: (t, k) => head.get(t, k) }, head.version);
      if (!result.ok) throw forbidden(result.reason);

      const room = { ...head.room };
      const replaced = head.extremities.slice(0, MAX_PREV_EVENTS);
      let ordered: { result: { lastPos: number } | { existing: string }; durable: Promise<void> };
      try {
        ordered = await this.writeOrdered(async (tx) => {
          // A write ordered before ours failed since the head was read: the head may name events that were lost.
          if (this.writeFailures !== failures) throw new StorageError('an earlier write failed; nothing was written');
          if (txn) {
            const rec = await tx.get<TxnRecord>(STORES.txnIds, txn);
            if (rec) return { existing: rec.eventId };
          }
          return this.persist(tx, room, replaced, [{ pdu, txn: opts.txn }]);
        });
      } catch (e) {
        // Whatever the storage holds now, the cached head may not match it.
        this.heads.delete(roomId);
        throw e;
      }
      const { result: written, durable } = ordered;
      if ('existing' in written) return { eventId: written.existing, durable };
      const extremities = [...head.extremities.slice(MAX_PREV_EVENTS), pdu.eventId];
      this.rememberHead({ ...head.snap, room, extremities }, [pdu]);
      // Events after this one build on the head just cached; if this batch fails, so do they (see the check above).
      durable.catch(() => {
        this.writeFailures++;
        this.heads.delete(roomId);
      });
      const after = () => {
        if (txnId !== undefined) this.recentTxns.set(txnId, pdu.eventId);
        this.afterCommit([pdu], written.lastPos);
      };
      return { eventId: pdu.eventId, durable, after };
    });
    if (done.durable) await done.durable;
    done.after?.();
    return done.eventId;
  }

  /** `kv.writeOrdered` where the backend has it (LevelDB's group commit); elsewhere a write, durable once it resolves. */
  private async writeOrdered<T>(fn: (tx: WriteTx) => Promise<T>): Promise<{ result: T; durable: Promise<void> }> {
    const kv = this.ctx.kv;
    if (kv.writeOrdered) return kv.writeOrdered(fn);
    return { result: await kv.write(fn), durable: Promise.resolve() };
  }

  /**
   * Caches a room's head after a commit: `snap` is the head the events were built on, updated with the written
   * room record and extremities; the events' state is applied here.
   */
  rememberHead(snap: HeadSnapshot, events: readonly Pdu[]): void {
    // Cached snapshots are never changed in place (RoomHead copies before changing one): without state events the
    // maps carry over as they are.
    const changesState = events.some((e) => e.stateKey !== undefined);
    const stateIds = changesState ? new Map(snap.stateIds) : snap.stateIds;
    const knownKeys = snap.complete || !changesState ? snap.knownKeys : new Set(snap.knownKeys);
    for (const pdu of events) {
      if (pdu.stateKey !== undefined) {
        const k = stateKey(pdu.type, pdu.stateKey);
        stateIds.set(k, pdu.eventId);
        if (!snap.complete) knownKeys.add(k);
        this.pduCache.set(pdu.eventId, pdu);
      } else if (snap.version.eventIdFormat === 'server') {
        this.pduCache.set(pdu.eventId, pdu);
      }
    }
    this.heads.set(snap.room.roomId, { ...snap, stateIds, knownKeys });
    rememberRoomVersion(snap.room.roomId, snap.version);
  }

  /** Phase 1: the head from the cache, reading only what it lacks (one read transaction, ≤ 2 round trips). */
  private async readHead(roomId: string, opts: SubmitOptions): Promise<RoomHead> {
    const warm = this.warmHead(roomId, opts);
    if (warm) {
      // The common case (a message into a warm room) reads nothing and changes nothing in the snapshot: no copy.
      const head = new RoomHead(warm.snap, true);
      const wanted = this.wantedPdus(head, warm.keys);
      if (!this.pdusFromCache(head, wanted)) await this.ctx.kv.read((tx) => this.loadPdus(tx, head, wanted));
      return head;
    }
    const keys = new Map<StateKey, readonly [string, string]>();
    for (const k of [...BASE_STATE, ['m.room.member', opts.sender] as const, ...(opts.state ?? [])]) {
      keys.set(stateKey(k[0], k[1]), k);
    }
    const cached = this.heads.get(roomId);
    const unknownKeys = cached ? [...keys.keys()].filter((k) => !cached.complete && !cached.knownKeys.has(k)) : [];
    const events = opts.events ?? [];
    const users = [...new Set(opts.users ?? [])];

    const keyList = cached ? unknownKeys.map((k) => keys.get(k)!) : [...keys.values()];
    const head = await this.ctx.kv.read(async (tx) => {
      const [room, extremityRows, stateIds, records, userRecs] = await Promise.all([
        cached ? cached.room : tx.get<RoomRecord>(STORES.rooms, [roomId]),
        cached ? undefined : tx.range<boolean>(STORES.forwardExtremities, { prefix: [roomId] }),
        tx.getMany<string>(
          STORES.currentState,
          keyList.map(([t, k]) => [roomId, t, k]),
        ),
        getEvents(tx, events),
        tx.getMany<UserRecord>(
          STORES.users,
          users.map((u) => [u]),
        ),
      ]);
      if (!room) return undefined;
      let snap: HeadSnapshot;
      if (cached) snap = copySnapshot(cached);
      else {
        const version = roomVersion(room.version);
        if (!version) throw new Error(`room ${roomId} has unknown version ${room.version}`);
        const extremities = extremityRows!.map(([key]) => String(key[1]));
        snap = { room, version, extremities, stateIds: new Map(), knownKeys: new Set(), complete: false };
      }
      keyList.forEach(([t, k], i) => {
        const key = stateKey(t, k);
        snap.knownKeys.add(key);
        const id = stateIds[i];
        if (id !== undefined) snap.stateIds.set(key, id);
      });
      const head = new RoomHead(snap);
      events.forEach((id, i) => {
        const r = records[i];
        if (r) head.records.set(id, r);
      });
      users.forEach((u, i) => head.users.set(u, userRecs[i]));
      // Second round trip, when the cache lacks them: the events behind the state IDs (and v1–v2 prev events).
      const wanted = this.wantedPdus(head, keys.keys());
      if (!this.pdusFromCache(head, wanted)) await this.loadPdus(tx, head, wanted);
      await opts.check?.(tx, head);
      return head;
    });
    if (!head) throw notFound(`Unknown room ${roomId}`);
    // What was learnt is true of the stored room: keep it for the next event. The head shares it rather than
    // copying it again (a copy of every known state key, per join into a big room): it copies before a change.
    this.heads.set(roomId, head.share());
    rememberRoomVersion(roomId, head.version);
    return head;
  }

  /**
   * The cached head when it already knows every state key `opts` needs and nothing else is asked for (no events,
   * users or check): the keys, without the maps and sets the general path builds. Undefined otherwise.
   */
  private warmHead(roomId: string, opts: SubmitOptions): { snap: HeadSnapshot; keys: StateKey[] } | undefined {
    const snap = this.heads.get(roomId);
    if (!snap || opts.check || (opts.events !== undefined && opts.events.length > 0) || (opts.users !== undefined && opts.users.length > 0)) {
      return undefined;
    }
    const keys = [...BASE_KEYS, stateKey('m.room.member', opts.sender)];
    for (const [t, k] of opts.state ?? []) keys.push(stateKey(t, k));
    if (!snap.complete) for (const k of keys) if (!snap.knownKeys.has(k)) return undefined;
    return { snap, keys };
  }

  /**
   * Event IDs whose PDUs `prepare` and the build need: the current state at `keys` (not all of it: a big room's
   * member events would be read or copied for every event), and v1–v2 prev events (hashes).
   */
  private wantedPdus(head: RoomHead, keys: Iterable<StateKey>): string[] {
    const ids: string[] = [];
    for (const k of keys) {
      const id = head.stateIds.get(k);
      if (id !== undefined) ids.push(id);
    }
    if (head.version.eventIdFormat === 'server') ids.push(...head.extremities.slice(0, MAX_PREV_EVENTS));
    return ids;
  }

  /**
   * After `prepare`: the state the draft's auth events selection needs, and its own key (prev_content, unchanged
   * state), known and loaded — from the cache, else one read transaction (rare: callers pass hints).
   */
  private async ensureState(head: RoomHead, draft: Draft): Promise<void> {
    const needed = authStateKeysFor({ ...draft, stateKey: draft.stateKey }, head.version).map(([t, k]) => stateKey(t, k));
    if (draft.stateKey !== undefined) needed.push(stateKey(draft.type, draft.stateKey));
    const unknownKeys = needed.filter((k) => !head.knows(k));
    const ids = this.wantedPdus(head, needed).filter((id) => !head.absent.has(id));
    if (unknownKeys.length === 0 && this.pdusFromCache(head, ids)) return;
    await this.ctx.kv.read(async (tx) => {
      if (unknownKeys.length > 0) await this.loadState(tx, head, unknownKeys);
      await this.loadPdus(tx, head, ids);
    });
  }

  /** Fills `head.pdus` from the cache; false when some are not cached. */
  private pdusFromCache(head: RoomHead, ids: readonly string[]): boolean {
    let all = true;
    for (const id of ids) {
      if (head.pdus.has(id) || head.absent.has(id)) continue;
      const cached = this.pduCache.get(id);
      if (cached) head.pdus.set(id, cached);
      else all = false;
    }
    return all;
  }

  private async loadState(tx: ReadTx, head: RoomHead, keys: readonly StateKey[]): Promise<void> {
    const split = keys.map(splitStateKey);
    const ids = await tx.getMany<string>(
      STORES.currentState,
      split.map(([t, k]) => [head.roomId, t, k]),
    );
    const snap = head.ownSnapshot();
    keys.forEach((k, i) => {
      snap.knownKeys.add(k);
      const id = ids[i];
      if (id !== undefined) snap.stateIds.set(k, id);
    });
    await this.loadPdus(
      tx,
      head,
      ids.filter((x): x is string => x !== undefined),
    );
  }

  /** Fills `head.pdus` from the cache, then one getMany for the rest. */
  private async loadPdus(tx: ReadTx, head: RoomHead, ids: readonly string[]): Promise<void> {
    this.pdusFromCache(head, ids);
    const missing = ids.filter((id) => !head.pdus.has(id) && !head.absent.has(id));
    if (missing.length === 0) return;
    const recs = await getEvents(tx, missing);
    missing.forEach((id, i) => {
      const r = recs[i];
      if (!r) {
        head.absent.add(id);
        return;
      }
      const pdu = pduOf({ ...r, eventId: r.eventId ?? id }, head.version);
      head.pdus.set(id, pdu);
      this.pduCache.set(id, pdu);
    });
  }

  /** Phase 3: the PDU for a draft, hashed and signed. */
  private async build(head: RoomHead, draft: Draft): Promise<Pdu> {
    const v = head.version;
    const authIds: string[] = [];
    for (const [t, k] of authStateKeysFor({ ...draft, stateKey: draft.stateKey }, v)) {
      const id = head.stateIds.get(stateKey(t, k));
      if (id !== undefined) authIds.push(id);
    }
    const content: JsonObject =
      draft.redacts !== undefined && v.redactsInContent ? { ...draft.content, redacts: draft.redacts } : draft.content;
    const proto: JsonObject = {
      type: draft.type,
      room_id: head.roomId,
      sender: draft.sender,
      content,
      prev_events: head.extremities.slice(0, MAX_PREV_EVENTS),
      auth_events: authIds,
      depth: head.room.maxDepth + 1,
      origin_server_ts: this.ctx.clock.now(),
    };
    if (draft.stateKey !== undefined) proto.state_key = draft.stateKey;
    if (draft.redacts !== undefined && !v.redactsInContent) proto.redacts = draft.redacts;
    const pdu = await this.sign(proto, v, (id) => head.pdus.get(id)?.json);
    if (draft.stateKey === undefined) return pdu;
    return withPrevState(pdu, head.get(draft.type, draft.stateKey));
  }

  /** Hashes and signs a template as this server; build errors become the client's 400/413. */
  async sign(proto: JsonObject, version: RoomVersion, resolveEvent?: (id: string) => JsonObject | undefined): Promise<Pdu> {
    try {
      return await buildEvent(proto, version, this.ctx.serverName, this.ctx.identity.key, { resolveEvent });
    } catch (e) {
      throw buildError(e) ?? e;
    }
  }

  /**
   * Phase 5: writes `events` (in order, each on top of the previous) into the room in the caller's write
   * transaction. `room` is updated in place and stored; `replacedExtremities` are the forward extremities the
   * first event references. Returns the first and last stream positions.
   */
  async persist(
    tx: WriteTx,
    room: RoomRecord,
    replacedExtremities: readonly string[],
    events: readonly PreparedEvent[],
    opts: { baseState?: StateMap } = {},
  ): Promise<{ firstPos: number; lastPos: number }> {
    const roomId = room.roomId;
    let firstPos = 0;
    let state = opts.baseState;
    for (const { pdu, txn } of events) {
      const pos = await allocatePosition(tx);
      if (firstPos === 0) firstPos = pos;
      const stateBefore = room.stateGroup;
      let stateAfter = stateBefore;
      const sk = pdu.stateKey;
      if (sk !== undefined) {
        const key = stateKey(pdu.type, sk);
        stateAfter = await addStateGroup(tx, stateBefore, new Map([[key, pdu.eventId]]), state);
        if (state) state = new Map(state).set(key, pdu.eventId);
      }
      const record: EventRecord = { eventId: pdu.eventId, json: pdu.json, roomId, pos, stateBefore, stateAfter };
      if (txn) record.txn = { deviceId: txn.deviceId, txnId: txn.txnId };
      await tx.put(STORES.events, [pdu.eventId], record);
      await tx.put(STORES.roomTimeline, [roomId, pos], pdu.eventId);
      const entry: StreamEntry = { kind: 'event', roomId, eventId: pdu.eventId };
      if (pdu.type === 'm.room.member' && sk !== undefined && pdu.membership !== undefined) {
        entry.userId = sk;
        entry.membership = pdu.membership;
        const member: MemberRecord = { membership: pdu.membership, eventId: pdu.eventId };
        await tx.put(STORES.roomMembers, [roomId, sk], member);
        if (this.isLocalUser(sk)) {
          const ur: UserRoomRecord = { membership: pdu.membership, eventId: pdu.eventId, pos };
          await tx.put(STORES.userRooms, [sk, roomId], ur);
        }
      }
      await tx.put(STORES.stream, [pos], entry);
      if (sk !== undefined) await tx.put(STORES.currentState, [roomId, pdu.type, sk], pdu.eventId);

      const rel = relationOf(pdu.content);
      if (rel) await putRelation(tx, rel.eventId, rel.relType, pos, pdu.eventId);
      if (pdu.type === 'm.room.redaction' && pdu.redacts !== undefined) await this.markRedacted(tx, roomId, pdu);
      if (txn) {
        const rec: TxnRecord = { eventId: pdu.eventId };
        await tx.put(STORES.txnIds, [txn.userId, txn.deviceId, `${txn.scope}/${txn.txnId}`], rec);
      }
      room.stateGroup = stateAfter;
      room.lastPos = pos;
      room.maxDepth = Math.max(room.maxDepth, pdu.depth);
    }
    for (const id of replacedExtremities) await tx.delete(STORES.forwardExtremities, [roomId, id]);
    const last = events[events.length - 1];
    if (last) await tx.put(STORES.forwardExtremities, [roomId, last.pdu.eventId], true);
    await tx.put(STORES.rooms, [roomId], room);
    return { firstPos, lastPos: room.lastPos };
  }

  /** Marks a redaction's target (in the same room) and drops its relation: redaction strips m.relates_to. */
  private async markRedacted(tx: WriteTx, roomId: string, redaction: Pdu): Promise<void> {
    const target = await tx.get<EventRecord>(STORES.events, [redaction.redacts!]);
    if (!target || target.roomId !== roomId || target.redactedBy !== undefined) return;
    await tx.put(STORES.events, [redaction.redacts!], { ...target, redactedBy: redaction.eventId });
    const content = isJsonObject(target.json.content) ? target.json.content : {};
    const rel = relationOf(content);
    if (rel && target.pos !== undefined) await tx.delete(STORES.relations, [rel.eventId, rel.relType, target.pos]);
  }

  /** After a commit: evict redacted events from the cache, wake /sync. */
  afterCommit(events: readonly Pdu[], lastPos: number): void {
    for (const e of events) {
      if (e.type === 'm.room.redaction' && e.redacts !== undefined) this.pduCache.delete(e.redacts);
    }
    this.ctx.notifier.notify(lastPos, ['event']);
    for (const listener of this.committed) {
      try {
        listener(events);
      } catch (e) {
        this.ctx.logger.error('committed-events listener failed', e);
      }
    }
  }

  // ---- For federation (src/federation): other writers of the room stores, and events signed elsewhere too

  /** Runs `fn` under the room's lock, the one the pipeline holds (remote events are persisted under it too). */
  runExclusive<T>(roomId: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(roomId, fn);
  }

  /** Whether the pipeline holds the room's head (then the room exists on this server). Reads nothing. */
  hasCachedHead(roomId: string): boolean {
    return this.heads.has(roomId);
  }

  /**
   * The current state event (type, stateKey) as the pipeline's cache knows it (redacted if redacted), without reading:
   * `null` when the cached head knows there is none, `undefined` when the cache cannot tell.
   */
  cachedState(roomId: string, type: string, key: string): Pdu | null | undefined {
    const snap = this.heads.get(roomId);
    if (!snap) return undefined;
    const k = stateKey(type, key);
    const id = snap.stateIds.get(k);
    if (id === undefined) return snap.complete || snap.knownKeys.has(k) ? null : undefined;
    return this.pduCache.get(id);
  }

  /**
   * The cached head of a room, for federation's ingest (under the room's lock): never change it in place; after
   * a commit that extends it, `rememberHead` a copy, else `forgetHead`.
   */
  cachedHead(roomId: string): HeadSnapshot | undefined {
    return this.heads.get(roomId);
  }

  /** A cached event as auth sees it, or undefined. */
  cachedPdu(eventId: string): Pdu | undefined {
    return this.pduCache.get(eventId);
  }

  /** Caches state events as auth sees them (redacted when redacted), e.g. those ingest read for a head. */
  rememberPdus(pdus: Iterable<Pdu>): void {
    for (const p of pdus) this.pduCache.set(p.eventId, p);
  }

  /** Forgets what the pipeline cached about a room after another writer changed it (call under the room's lock). */
  forgetHead(roomId: string, events: readonly Pdu[] = []): void {
    this.heads.delete(roomId);
    for (const e of events) {
      if (e.type === 'm.room.redaction' && e.redacts !== undefined) this.pduCache.delete(e.redacts);
    }
  }

  /**
   * Builds and authorises one local event as `submit` does, without persisting it: an invite of a user on another
   * server is signed by that server before it enters the room (federation persists it then).
   */
  async prepareEvent(roomId: string, opts: SubmitOptions, prepare: (head: RoomHead) => Draft): Promise<Pdu> {
    return this.locks.run(roomId, async () => {
      const head = await this.readHead(roomId, opts);
      const draft = prepare(head);
      await this.ensureState(head, draft);
      const pdu = await this.build(head, draft);
      const result = authorize(pdu, { get: (t, k) => head.get(t, k) }, head.version);
      if (!result.ok) throw forbidden(result.reason);
      return pdu;
    });
  }

  // ---- Room creation

  /** POST /createRoom (create-room.ts). */
  createRoom(principal: Principal, body: JsonObject): Promise<{ room_id: string }> {
    return createRoom(this, principal, body);
  }

  // ---- Sending

  /** PUT /rooms/{roomId}/send/{eventType}/{txnId} */
  async sendMessage(principal: Principal, roomId: string, type: string, txnId: string, body: JsonObject): Promise<string> {
    checkEventType(type);
    const txn = this.txnRef(principal, `send/${roomId}/${type}`, txnId);
    if (type === 'm.room.redaction') {
      // Redactions may be sent here in every room version (v1.18); `redacts` moves to the top level before v11.
      const redacts = body.redacts;
      if (typeof redacts !== 'string') throw badJson("An m.room.redaction event needs 'redacts' in its content");
      const { redacts: _r, ...rest } = body;
      return this.redact(principal, roomId, redacts, rest, txn);
    }
    const annotation = annotationOf(type, body);
    return this.submit(
      roomId,
      {
        sender: principal.userId,
        txn,
        check: annotation ? (tx) => checkDuplicateAnnotation(tx, principal.userId, annotation) : undefined,
      },
      () => ({ type, sender: principal.userId, content: body }),
    );
  }

  /** PUT /rooms/{roomId}/state/{eventType}/{stateKey} */
  async setState(principal: Principal, roomId: string, type: string, key: string, body: JsonObject): Promise<string> {
    checkEventType(type);
    if (utf8ByteLength(key) > 255) throw tooLarge('state_key is longer than 255 bytes');
    if (type === 'm.room.canonical_alias') await this.checkCanonicalAlias(roomId, body);
    return this.submit(roomId, { sender: principal.userId, state: [[type, key]] }, () => ({
      type,
      stateKey: key,
      sender: principal.userId,
      content: body,
    }));
  }

  /** PUT /rooms/{roomId}/redact/{eventId}/{txnId} */
  redactEvent(principal: Principal, roomId: string, eventId: string, txnId: string, body: JsonObject): Promise<string> {
    return this.redact(principal, roomId, eventId, body, this.txnRef(principal, `redact/${roomId}/${eventId}`, txnId));
  }

  private redact(principal: Principal, roomId: string, eventId: string, content: JsonObject, txn?: TxnRef): Promise<string> {
    const sender = principal.userId;
    return this.submit(roomId, { sender, txn, events: [eventId] }, (head) => {
      const target = head.records.get(eventId);
      if (!target || target.roomId !== roomId || target.rejected !== undefined) throw notFound('Event not found');
      if (target.json.type === 'm.room.create') throw forbidden('Redacting create events is not permitted');
      // Redacting someone else's event needs the redact level (redaction.yaml; rooms v3+ "Handling redactions").
      if (target.json.sender !== sender && head.levelOf(sender) < head.powerLevels.redact) {
        throw forbidden("You don't have permission to redact events sent by others");
      }
      return { type: 'm.room.redaction', sender, content, redacts: eventId };
    });
  }

  private txnRef(principal: Principal, scope: string, txnId: string): TxnRef {
    return { userId: principal.userId, deviceId: principal.deviceId ?? '', txnId, scope };
  }

  /** m.room.canonical_alias may only name aliases of this room (M_BAD_ALIAS); remote ones cannot be checked yet. */
  private async checkCanonicalAlias(roomId: string, content: JsonObject): Promise<void> {
    const aliases: string[] = [];
    if (content.alias !== undefined) {
      if (typeof content.alias !== 'string') throw badJson("'alias' must be a string");
      aliases.push(content.alias);
    }
    if (content.alt_aliases !== undefined) {
      const alt = content.alt_aliases;
      if (!Array.isArray(alt) || !alt.every((a) => typeof a === 'string')) {
        throw badJson("'alt_aliases' must be an array of strings");
      }
      aliases.push(...(alt as string[]));
    }
    for (const a of aliases) if (!isValidRoomAlias(a)) throw invalidParam('alias', `${JSON.stringify(a)} is not a room alias`);
    const local = aliases.filter((a) => parseRoomAlias(a).ok && domainOf(a) === this.ctx.serverName);
    if (local.length === 0) return;
    const recs = await this.ctx.kv.read((tx) => tx.getMany<{ roomId: string }>(STORES.aliases, local.map((a) => [a])));
    recs.forEach((r, i) => {
      if (r?.roomId !== roomId) throw badAlias(`${local[i]} does not point to this room`);
    });
  }

  // ---- Reading

  /**
   * Where `userId` may read the room's state from (rooms.yaml): the current state when joined (or when the room is
   * world-readable); the state when they left for ex-members (not after /forget). Otherwise 403.
   */
  private async readableStateGroup(
    tx: ReadTx,
    roomId: string,
    userId: string,
  ): Promise<{ current: true; member?: MemberRecord } | { current: false; group: number; pos: number }> {
    const [member, ur, hvId] = await Promise.all([
      membershipOf(tx, roomId, userId),
      tx.get<UserRoomRecord>(STORES.userRooms, [userId, roomId]),
      tx.get<string>(STORES.currentState, [roomId, 'm.room.history_visibility', '']),
    ]);
    if (member?.membership === 'join') return { current: true, member };
    if (member && (member.membership === 'leave' || member.membership === 'ban') && ur) {
      const ev = await getEvent(tx, member.eventId);
      if (ev && ev.pos !== undefined) return { current: false, group: ev.stateAfter, pos: ev.pos };
    }
    if (hvId !== undefined) {
      const hv = await getEvent(tx, hvId);
      if (hv && isJsonObject(hv.json.content) && hv.json.content.history_visibility === 'world_readable') {
        return { current: true, member };
      }
    }
    throw forbidden("You aren't a member of the room and weren't previously a member of the room");
  }

  /** GET /rooms/{roomId}/state */
  async getState(principal: Principal, roomId: string): Promise<ClientEvent[]> {
    return this.ctx.kv.read(async (tx) => {
      const at = await this.readableStateGroup(tx, roomId, principal.userId);
      let records: EventRecord[];
      if (at.current) records = await currentStateEvents(tx, roomId);
      else {
        const ids = [...(await stateAt(tx, at.group)).values()];
        records = (await getEvents(tx, ids)).filter((r): r is EventRecord => r !== undefined);
      }
      return clientEvents(tx, records, this.viewer(principal));
    });
  }

  /** GET /rooms/{roomId}/state/{eventType}/{stateKey} */
  async getStateEvent(
    principal: Principal,
    roomId: string,
    type: string,
    key: string,
    format: 'content' | 'event',
  ): Promise<JsonObject> {
    return this.ctx.kv.read(async (tx) => {
      const at = await this.readableStateGroup(tx, roomId, principal.userId);
      let id: string | undefined;
      if (at.current) id = await tx.get<string>(STORES.currentState, [roomId, type, key]);
      else id = (await stateAt(tx, at.group)).get(stateKey(type, key));
      const rec = id === undefined ? undefined : await getEvent(tx, id);
      if (!rec) throw notFound('No state event of that type and key in the room');
      const [ev] = await clientEvents(tx, [rec], this.viewer(principal));
      return format === 'event' ? (ev as unknown as JsonObject) : ev.content;
    });
  }

  /** GET /rooms/{roomId}/members */
  async getMembers(
    principal: Principal,
    roomId: string,
    opts: { at?: number; membership?: string; notMembership?: string },
  ): Promise<ClientEvent[]> {
    return this.ctx.kv.read(async (tx) => {
      const access = await this.readableStateGroup(tx, roomId, principal.userId);
      let ids: string[];
      // `at` is a stream position; an ex-member sees no later than when they left.
      const atPos = access.current ? opts.at : Math.min(opts.at ?? access.pos, access.pos);
      if (atPos === undefined) {
        ids = (await roomMembers(tx, roomId)).map(([, m]) => m.eventId);
      } else {
        const group = access.current ? await stateGroupAtPosition(tx, roomId, atPos) : atPos === access.pos ? access.group : await stateGroupAtPosition(tx, roomId, atPos);
        const state = group === undefined ? new Map<StateKey, string>() : await stateAt(tx, group);
        ids = [];
        for (const [k, id] of state) if (splitStateKey(k)[0] === 'm.room.member') ids.push(id);
      }
      const recs = (await getEvents(tx, ids)).filter((r): r is EventRecord => r !== undefined);
      const kept = recs.filter((r) => {
        const m = isJsonObject(r.json.content) ? r.json.content.membership : undefined;
        const is = opts.membership !== undefined && m === opts.membership;
        const isNot = opts.notMembership !== undefined && m !== opts.notMembership;
        // Both given: either condition (rooms.yaml: an 'or'). One given: that one. None: everything.
        if (opts.membership === undefined && opts.notMembership === undefined) return true;
        return is || isNot;
      });
      return clientEvents(tx, kept, this.viewer(principal));
    });
  }

  /** GET /rooms/{roomId}/joined_members */
  async getJoinedMembers(principal: Principal, roomId: string): Promise<Record<string, JsonObject>> {
    return this.ctx.kv.read(async (tx) => {
      const me = await membershipOf(tx, roomId, principal.userId);
      if (me?.membership !== 'join') throw forbidden("You aren't a member of the room");
      const joined = (await roomMembers(tx, roomId)).filter(([, m]) => m.membership === 'join');
      const recs = await getEvents(
        tx,
        joined.map(([, m]) => m.eventId),
      );
      const out: Record<string, JsonObject> = {};
      joined.forEach(([userId], i) => {
        const c = recs[i] && !recs[i]!.redactedBy && isJsonObject(recs[i]!.json.content) ? recs[i]!.json.content : {};
        const info: JsonObject = {};
        if (typeof c.displayname === 'string') info.display_name = c.displayname;
        if (typeof c.avatar_url === 'string') info.avatar_url = c.avatar_url;
        out[userId] = info;
      });
      return out;
    });
  }

  /** GET /rooms/{roomId}/event/{eventId}: 404 when missing, in another room, or not visible to the user. */
  async getRoomEvent(principal: Principal, roomId: string, eventId: string): Promise<ClientEvent> {
    return this.ctx.kv.read(async (tx) => {
      const rec = await getEvent(tx, eventId);
      if (!rec || rec.roomId !== roomId || rec.pos === undefined || !(await visibleToUser(tx, rec, principal.userId))) {
        throw notFound('Event not found');
      }
      const [ev] = await clientEvents(tx, [rec], this.viewer(principal));
      return ev;
    });
  }

  /** GET /joined_rooms */
  async joinedRooms(principal: Principal): Promise<string[]> {
    return this.ctx.kv.read(async (tx) => (await userRooms(tx, principal.userId, 'join')).map(([roomId]) => roomId));
  }

  private viewer(principal: Principal): { forUserId: string; forDeviceId?: string; now: number } {
    return { forUserId: principal.userId, forDeviceId: principal.deviceId, now: this.ctx.clock.now() };
  }

  /** The client format of one record (for services that already hold one). */
  clientEvent(record: EventRecord, principal?: Principal): ClientEvent {
    return clientEvent(record, principal ? this.viewer(principal) : { now: this.ctx.clock.now() });
  }
}

/** Event types are at most 255 bytes (pdu format); Synapse answers 413 M_TOO_LARGE for longer ones. */
function checkEventType(type: string): void {
  if (type === '') throw invalidParam('eventType', 'must not be empty');
  if (utf8ByteLength(type) > 255) throw tooLarge('event type is longer than 255 bytes');
}

/** content['m.relates_to'] with a rel_type and event_id (relations index), or undefined. */
function relationOf(content: JsonObject): { eventId: string; relType: string } | undefined {
  const rel = content['m.relates_to'];
  if (!isJsonObject(rel)) return undefined;
  const { rel_type: relType, event_id: eventId } = rel;
  if (typeof relType !== 'string' || typeof eventId !== 'string' || relType === '' || eventId === '') return undefined;
  return { eventId, relType };
}

interface Annotation {
  eventId: string;
  key: string;
  type: string;
}

function annotationOf(type: string, content: JsonObject): Annotation | undefined {
  const rel = content['m.relates_to'];
  if (!isJsonObject(rel) || rel.rel_type !== 'm.annotation') return undefined;
  if (typeof rel.event_id !== 'string' || typeof rel.key !== 'string') return undefined;
  return { eventId: rel.event_id, key: rel.key, type };
}

/**
 * Spec "Avoiding duplicate annotations" (modules/event_annotations.md): the same user may not annotate an event
 * twice with the same key and event type → 400 M_DUPLICATE_ANNOTATION. Redacted annotations no longer count.
 */
async function checkDuplicateAnnotation(tx: ReadTx, sender: string, a: Annotation): Promise<void> {
  const rows = await tx.range<string>(STORES.relations, { prefix: [a.eventId, 'm.annotation'] });
  if (rows.length === 0) return;
  const recs = await getEvents(
    tx,
    rows.map(([, id]) => id),
  );
  for (const r of recs) {
    if (!r || r.redactedBy !== undefined || r.json.sender !== sender || r.json.type !== a.type) continue;
    const rel = isJsonObject(r.json.content) ? r.json.content['m.relates_to'] : undefined;
    if (isJsonObject(rel) && rel.key === a.key) throw duplicateAnnotation('You have already sent this annotation');
  }
}
