/**
 * Ingesting events from other servers: the checks performed on receipt of a PDU, in the spec's order, then one
 * write transaction that adds the event to the room graph.
 *
 * Spec: shared/matrix-spec/content/server-server-api.md §"Checks performed on receipt of a PDU" (steps 1–6),
 * §Rejection, §"Soft failure", §"Backfilling and retrieving missing events", §"Room State Resolution";
 * rooms/*.md (auth rules and state resolution per version).
 *
 * For one PDU (`receive`):
 *   0. the room must be held here (its version decides the format);
 *   1–3. format, signatures, content hash (checks.ts; dropped / redacted);
 *   –  missing auth events are fetched with /event_auth; unknown prev events with /get_missing_events (bounded,
 *      a few rounds), and where the graph still has holes the state after each unknown prev event is fetched with
 *      /state_ids (+ /state or /event for the events it names);
 *   4. auth against the event's own auth events → rejected (stored, never in the timeline or state);
 *   5. auth against the state before the event (the prev events' states, resolved when they differ) → rejected;
 *   6. auth against the current state → soft-failed (stored with its state, not shown, not an extremity);
 *   then, under the room's lock (the one local sends take), ONE write: the event record and its state groups, the
 *   timeline and stream entry, forward extremities, and the new current state — the state after the event when it
 *   extends every extremity, else the resolution of the states after all extremities (core/state-res).
 *
 * Events fetched only for their state or auth role are stored as outliers (records.ts `outlier`): checked (1–4)
 * but outside the graph we follow.
 */
import { authStateKeysFor } from '../core/auth/auth-events.js';
import type { AuthState } from '../core/auth/rules.js';
import { authorize } from '../core/auth/rules.js';
import { powerLevelOf, powerLevelsFrom, roomCreators } from '../core/auth/power-levels.js';
import type { StateKey, StateMap } from '../core/event.js';
import { Pdu, splitStateKey, stateKey } from '../core/event.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { RoomVersion } from '../core/room-versions.js';
import { resolveState } from '../core/state-res/index.js';
import type { WriteTx } from '../storage/kv.js';
import type { EventRecord, MemberRecord, RoomRecord, StreamEntry, UserRoomRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import { addStateGroup, EMPTY_STATE_GROUP, loadStateGroup } from '../storage/state-groups.js';
import type { ServiceContext } from '../services/context.js';
import { getRoom, pduOf, putRelation, stateLookup } from '../services/event-store.js';
import { pduFromJson } from '../core/event-id.js';
import { roomVersion } from '../core/room-versions.js';
import { allocatePosition } from '../services/notifier.js';
import type { HeadSnapshot, RoomsService } from '../services/rooms.js';
import type { CheckedPdu } from './checks.js';
import { checkAgainstAuthEvents, checkReceivedPdu, domainOf, impliedCreateId } from './checks.js';
import { recordsById, StoreEventSource } from './pdus.js';
import type { RemoteClient } from './remote.js';
import { enc, objectList, stringList } from './remote.js';
import { traceIdentified, traceStage } from './trace.js';

export type PduStatus = 'accepted' | 'soft_failed' | 'rejected' | 'known' | 'dropped';

export interface PduOutcome {
  /** Absent when the event was too malformed to have one. */
  eventId?: string;
  status: PduStatus;
  reason?: string;
  pdu?: Pdu;
}

export interface ReceiveOptions {
  /** Ask the origin for unknown prev events (false for events that are themselves being fetched). */
  fetchMissing?: boolean;
  /** The room the event must belong to. */
  roomId?: string;
}

export interface IngestHooks {
  /**
   * After a commit that added events to a room's timeline (membership changes, servers in the room …).
   * `stateTypes`: the event types whose entries in the room's current state changed (by the events themselves or
   * by a state resolution), so caches of other state stay.
   */
  persisted?(roomId: string, pdus: readonly Pdu[], stateTypes: ReadonlySet<string>): void;
}

/** get_missing_events: events asked for per round, and rounds at most (server-server-api: bounded). */
const MISSING_EVENTS_LIMIT = 50;
const MISSING_EVENTS_ROUNDS = 4;
/** Prev events at most whose state is fetched for one event. */
const MAX_REMOTE_PREV_STATES = 5;
/** Fetching more than this many events one by one: ask for the whole state instead. */
const FETCH_ONE_BY_ONE = 10;

/** `receiveChecked`'s prefetched records when the event was found to extend the room's cached head. */
const ON_HEAD = Symbol('on the cached head');

/** Auth plus prev events read ahead with the duplicate check (the format allows 10 + 20). */
const MAX_PREFETCH_REFS = 30;

/** The events a PDU refers to that its checks read: auth events (and v12's implied create event), prev events. */
function refsOf(pdu: Pdu, version: RoomVersion): string[] {
  const createId = impliedCreateId(pdu.roomId, version);
  return [...pdu.authEvents, ...(createId ? [createId] : []), ...pdu.prevEvents];
}

type StateSource = { group: number } | { map: StateMap };
/** State entries of some state groups, read ahead: group → the IDs found, their records, and the keys looked up. */
type Preloaded = Map<number, PreloadedState>;
/** State entries of one group: the IDs found for the keys looked up, and their events as auth sees them. */
interface PreloadedState {
  ids: Map<StateKey, string>;
  pdus: Map<string, Pdu>;
  looked: Set<StateKey>;
}
/** The room's head from the pipeline's cache, for an event that extends its single forward extremity. */
interface LinearHead {
  snap: HeadSnapshot;
  /** The current state at the keys the checks and the write need. */
  state: PreloadedState;
}

/**
 * The JSON we keep of a received event: `unsigned` is the sender's, outside hashes and signatures, so it is not
 * trusted (clients read prev_content from it); ours replaces it.
 */
function storedJson(json: JsonObject, unsigned?: JsonObject): JsonObject {
  const { unsigned: _theirs, ...rest } = json;
  return unsigned ? { ...rest, unsigned } : rest;
}

/** A record for an outlier. */
function outlierRecord(pdu: Pdu, rejected?: string): EventRecord {
  const rec: EventRecord = { eventId: pdu.eventId, json: storedJson(pdu.json), roomId: pdu.roomId, stateBefore: 0, stateAfter: 0, outlier: true };
  if (rejected !== undefined) rec.rejected = rejected;
  return rec;
}

/** The (type, state_key) pairs an event's auth reads, including the v12 create event (not in its auth_events). */
function authKeys(pdu: Pdu, version: RoomVersion): StateKey[] {
  const keys = authStateKeysFor(pdu, version).map(([t, k]) => stateKey(t, k));
  const create = stateKey('m.room.create', '');
  if (!keys.includes(create)) keys.push(create);
  return keys;
}

function topoSort(pdus: readonly Pdu[]): Pdu[] {
  // Kahn over prev and auth links inside the set; ties by depth then ID, so the order is deterministic.
  const byId = new Map(pdus.map((p) => [p.eventId, p]));
  const indeg = new Map<string, number>();
  const children = new Map<string, string[]>();
  for (const p of pdus) {
    const parents = new Set([...p.prevEvents, ...p.authEvents].filter((id) => byId.has(id) && id !== p.eventId));
    indeg.set(p.eventId, parents.size);
    for (const parent of parents) {
      const c = children.get(parent) ?? [];
      c.push(p.eventId);
      children.set(parent, c);
    }
  }
  const cmp = (a: Pdu, b: Pdu) => a.depth - b.depth || (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0);
  const ready = pdus.filter((p) => indeg.get(p.eventId) === 0).sort(cmp);
  const out: Pdu[] = [];
  while (ready.length > 0) {
    const p = ready.shift()!;
    out.push(p);
    for (const c of children.get(p.eventId) ?? []) {
      const n = indeg.get(c)! - 1;
      indeg.set(c, n);
      if (n === 0) {
        ready.push(byId.get(c)!);
        ready.sort(cmp);
      }
    }
  }
  // A cycle (never in a valid graph): what is left, by depth.
  if (out.length < pdus.length) {
    const done = new Set(out.map((p) => p.eventId));
    out.push(...pdus.filter((p) => !done.has(p.eventId)).sort(cmp));
  }
  return out;
}

export class Ingest {
  readonly hooks: IngestHooks = {};

  constructor(
    private readonly ctx: ServiceContext,
    private readonly rooms: RoomsService,
    private readonly remote: RemoteClient,
  ) {}

  private get kv() {
    return this.ctx.kv;
  }

  /** Events being received right now, by ID. */
  private readonly inFlight = new Map<string, Promise<PduOutcome>>();
  /** Versions of rooms held here (a room's version never changes and rooms are never dropped). */
  private readonly versions = new Map<string, RoomVersion>();

  /** The version of a room held here (its record exists), or undefined. */
  async versionOf(roomId: string): Promise<RoomVersion | undefined> {
    const known = this.versions.get(roomId);
    if (known) return known;
    const room = await this.kv.read((tx) => getRoom(tx, roomId));
    const v = room ? roomVersion(room.version) : undefined;
    if (v) this.versions.set(roomId, v);
    return v;
  }

  /** One PDU from `origin` (a /send transaction, gossip, a fetched missing event): every check, then persist. */
  async receive(origin: string, json: JsonValue, opts: ReceiveOptions = {}): Promise<PduOutcome> {
    if (!isJsonObject(json)) return { status: 'dropped', reason: 'PDU is not an object' };
    const roomId = json.room_id;
    if (typeof roomId !== 'string') return { status: 'dropped', reason: 'PDU has no room_id' };
    if (opts.roomId !== undefined && roomId !== opts.roomId) return { status: 'dropped', reason: 'PDU is for another room' };
    // 0. Only rooms held here: their version says how to read the event.
    const version = await this.versionOf(roomId);
    if (!version) return { status: 'dropped', reason: `room ${roomId} is not known here` };
    // An event we already have (gossip and /send both bring each one) needs no signature check: its ID is a hash
    // of it (v3+), so a stored event with that ID is this event. v1–v2 IDs are not, so those are always checked.
    if (version.eventIdFormat !== 'server') {
      const id = pduFromJson(json, version);
      if (id.ok) {
        const eventId = id.pdu.eventId;
        traceIdentified(json, eventId);
        // The same event arriving twice at once (gossip and /send): the second waits for the first.
        const running = this.inFlight.get(eventId);
        if (running) {
          const first = await running;
          return first.status === 'accepted' || first.status === 'soft_failed' ? { ...first, status: 'known' } : first;
        }
        // Registered before the first await, so a copy arriving meanwhile waits for this one.
        const work = this.receiveNew(origin, json, version, roomId, opts, id.pdu);
        this.inFlight.set(eventId, work);
        try {
          return await work;
        } finally {
          this.inFlight.delete(eventId);
        }
      }
    }
    return this.checkAndReceive(origin, json, version, roomId, opts);
  }

  /** A v3+ event not being received already: known → done; else every check and the write. */
  private async receiveNew(origin: string, json: JsonObject, version: RoomVersion, roomId: string, opts: ReceiveOptions, built: Pdu): Promise<PduOutcome> {
    const eventId = built.eventId;
    // On the room's cached head (the usual message): its prev and auth events are known, and an event we already
    // accepted cannot have the head as its prev event, so nothing need be read before the checks. Under the lock
    // the write itself asks whether the event is new (a rejected copy may be).
    if (this.onCachedHead(built, version)) {
      traceStage(eventId, 'B receive');
      return this.checkAndReceive(origin, json, version, roomId, opts, built, ON_HEAD);
    }
    // One read for the event and what it refers to: whether it is known, and (usually) all that the steps before
    // the room's lock need. Lists longer than the format allows are not read ahead.
    const refs = built.authEvents.length + built.prevEvents.length <= MAX_PREFETCH_REFS ? refsOf(built, version) : [];
    const have = await this.kv.read((tx) => recordsById(tx, [eventId, ...refs]));
    const stored = have.get(eventId);
    if (stored && !stored.outlier) return { eventId, status: 'known', pdu: built };
    traceStage(eventId, 'B receive');
    return this.checkAndReceive(origin, json, version, roomId, opts, built, refs.length > 0 ? have : undefined);
  }

  private async checkAndReceive(
    origin: string,
    json: JsonObject,
    version: RoomVersion,
    roomId: string,
    opts: ReceiveOptions,
    built?: Pdu,
    have?: ReadonlyMap<string, EventRecord> | typeof ON_HEAD,
  ): Promise<PduOutcome> {
    const checked = await checkReceivedPdu(json, version, roomId, built);
    if (!checked.ok) {
      // The result names the event when it has an ID at all (the transaction's per-PDU results are by ID).
      const id = pduFromJson(json, version);
      return { eventId: id.ok ? id.pdu.eventId : undefined, status: 'dropped', reason: checked.reason };
    }
    traceStage(checked.value.pdu.eventId, 'B checked 1-3');
    return this.receiveChecked(origin, checked.value, version, opts, have);
  }

  /**
   * Steps 4–6 and the write for an event that passed steps 1–3. `prefetched`: the records of the event, its auth
   * and prev events (`refsOf`), read just before (a redacted event keeps its auth and prev events).
   */
  async receiveChecked(
    origin: string,
    checked: CheckedPdu,
    version: RoomVersion,
    opts: ReceiveOptions = {},
    prefetched?: ReadonlyMap<string, EventRecord> | typeof ON_HEAD,
  ): Promise<PduOutcome> {
    const pdu = checked.pdu;
    if (pdu.type === 'm.room.create') {
      // A room's create event only ever comes with the room (send_join); a new one here is an outlier at most.
      return { eventId: pdu.eventId, status: 'dropped', reason: 'create events are not accepted into a room held here' };
    }
    const createId = impliedCreateId(pdu.roomId, version);
    const auth = [...pdu.authEvents, ...(createId ? [createId] : [])];
    if (prefetched === ON_HEAD) {
      // Still on the head after steps 1–3 (else read as usual); commit checks again under the lock.
      if (this.onCachedHead(pdu, version)) {
        traceStage(pdu.eventId, 'B prereqs');
        return this.runCommit(pdu, version, new Map(), undefined);
      }
      prefetched = undefined;
    }
    // One read tells whether anything must be fetched first (usually nothing). Records only become more complete,
    // so a read from just before at worst sends us to fetch what is here by now (and that re-reads first).
    const have = prefetched ?? (await this.kv.read((tx) => recordsById(tx, [pdu.eventId, ...auth, ...pdu.prevEvents])));
    const existing = have.get(pdu.eventId);
    if (existing && !existing.outlier) return { eventId: pdu.eventId, status: 'known', pdu };
    const graphHas = (id: string) => {
      const r = have.get(id);
      return r !== undefined && !r.outlier;
    };
    try {
      if (!auth.every((id) => have.has(id))) await this.ensureAuthEvents(origin, pdu, version);
      let remoteStates = new Map<string, StateMap>();
      if (!pdu.prevEvents.every(graphHas)) {
        if (opts.fetchMissing !== false) await this.fetchMissingPrevs(origin, pdu, version);
        remoteStates = await this.statesOfUnknownPrevs(origin, pdu, version);
      }
      traceStage(pdu.eventId, 'B prereqs');
      // The records read before the lock answer step 4 only when nothing was fetched since.
      const authKnown = auth.every((id) => have.has(id)) ? have : undefined;
      return await this.runCommit(pdu, version, remoteStates, authKnown);
    } catch (e) {
      this.ctx.logger.warn('federation: could not process an event', { eventId: pdu.eventId, error: e });
      return { eventId: pdu.eventId, status: 'dropped', reason: e instanceof Error ? e.message : String(e) };
    }
  }

  /** `commit` under the room's lock; a failure is the event's (dropped), not the caller's. */
  private async runCommit(pdu: Pdu, version: RoomVersion, remoteStates: Map<string, StateMap>, authKnown?: ReadonlyMap<string, EventRecord>): Promise<PduOutcome> {
    try {
      return await this.rooms.runExclusive(pdu.roomId, () => this.commit(pdu, version, remoteStates, authKnown));
    } catch (e) {
      this.ctx.logger.warn('federation: could not process an event', { eventId: pdu.eventId, error: e });
      return { eventId: pdu.eventId, status: 'dropped', reason: e instanceof Error ? e.message : String(e) };
    }
  }

  /**
   * Whether `pdu` extends the single forward extremity of the room's cached head and each of its auth events
   * (v12: and the create event) is in the head's current state: then everything it refers to is stored.
   */
  private onCachedHead(pdu: Pdu, version: RoomVersion): boolean {
    const snap = this.rooms.cachedHead(pdu.roomId);
    if (!snap || snap.extremities.length !== 1 || pdu.prevEvents.length !== 1 || pdu.prevEvents[0] !== snap.extremities[0]) return false;
    const createId = impliedCreateId(pdu.roomId, version);
    for (const aid of createId ? [...pdu.authEvents, createId] : pdu.authEvents) {
      const p = this.rooms.cachedPdu(aid);
      if (!p || p.stateKey === undefined || snap.stateIds.get(stateKey(p.type, p.stateKey)) !== aid) return false;
    }
    return true;
  }

  // ---- Fetching what an event needs

  /** Auth events we do not have are fetched with /event_auth and stored as outliers. */
  private async ensureAuthEvents(origin: string, pdu: Pdu, version: RoomVersion): Promise<void> {
    const ids = [...pdu.authEvents];
    const createId = impliedCreateId(pdu.roomId, version);
    if (createId) ids.push(createId);
    const have = await this.kv.read((tx) => recordsById(tx, ids));
    if (ids.every((id) => have.has(id))) return;
    const body = await this.remote.get(origin, `/_matrix/federation/v1/event_auth/${enc(pdu.roomId)}/${enc(pdu.eventId)}`);
    await this.storeOutliers(origin, version, pdu.roomId, objectList(body, 'auth_chain', 5000));
  }

  /**
   * Unknown prev events: /get_missing_events from the origin, a few bounded rounds, then each fetched event is
   * ingested oldest first (without fetching further).
   */
  private async fetchMissingPrevs(origin: string, pdu: Pdu, version: RoomVersion): Promise<void> {
    const roomId = pdu.roomId;
    const start = await this.kv.read(async (tx) => {
      const recs = await recordsById(tx, pdu.prevEvents);
      const extRows = await tx.range<boolean>(STORES.forwardExtremities, { prefix: [roomId] });
      const ext = extRows.map(([k]) => String(k[1]));
      const extRecs = await recordsById(tx, ext);
      return { recs, ext, extRecs };
    });
    const missingOf = (p: Pdu, known: (id: string) => boolean) => p.prevEvents.filter((id) => !known(id));
    const storedOk = (id: string) => {
      const r = start.recs.get(id);
      return r !== undefined && !r.outlier;
    };
    if (missingOf(pdu, storedOk).length === 0) return;
    const minDepth = Math.min(...[...start.extRecs.values()].map((r) => (typeof r.json.depth === 'number' ? r.json.depth : 0)), pdu.depth);
    const fetched = new Map<string, CheckedPdu>();
    let latest = [pdu.eventId];
    for (let round = 0; round < MISSING_EVENTS_ROUNDS && latest.length > 0; round++) {
      let events: JsonObject[];
      try {
        const body = await this.remote.request(origin, 'POST', `/_matrix/federation/v1/get_missing_events/${enc(roomId)}`, {
          earliest_events: start.ext,
          latest_events: latest,
          limit: MISSING_EVENTS_LIMIT,
          min_depth: Number.isFinite(minDepth) ? minDepth : 0,
        });
        events = objectList(body, 'events', MISSING_EVENTS_LIMIT);
      } catch (e) {
        // No get_missing_events from this server: backfill from the events we lack the parents of.
        this.ctx.logger.debug('federation: get_missing_events failed, trying backfill', { origin, roomId, error: e });
        events = await this.backfillFrom(origin, roomId, round === 0 ? pdu.prevEvents : latest);
      }
      let added = 0;
      for (const json of events) {
        const c = await checkReceivedPdu(json, version, roomId);
        if (!c.ok || fetched.has(c.value.pdu.eventId) || c.value.pdu.eventId === pdu.eventId) continue;
        fetched.set(c.value.pdu.eventId, c.value);
        added++;
      }
      if (added === 0) break;
      // Still-unknown prev events of what we fetched: ask again from the events that point at them.
      const stored = await this.kv.read((tx) =>
        recordsById(tx, [...fetched.values()].flatMap((c) => c.pdu.prevEvents)),
      );
      const known = (id: string) => fetched.has(id) || (stored.has(id) && !stored.get(id)!.outlier) || storedOk(id);
      latest = [...fetched.values()].filter((c) => missingOf(c.pdu, known).length > 0 && c.pdu.depth > minDepth).map((c) => c.pdu.eventId);
    }
    const order = topoSort([...fetched.values()].map((c) => c.pdu));
    for (const p of order) await this.receiveChecked(origin, fetched.get(p.eventId)!, version, { fetchMissing: false });
  }

  /** GET /backfill from `ids` (the events and their predecessors); [] when the server cannot help. */
  private async backfillFrom(origin: string, roomId: string, ids: readonly string[]): Promise<JsonObject[]> {
    if (ids.length === 0) return [];
    const v = ids.slice(0, 20).map((id) => `v=${enc(id)}`).join('&');
    try {
      const body = await this.remote.get(origin, `/_matrix/federation/v1/backfill/${enc(roomId)}?${v}&limit=${MISSING_EVENTS_LIMIT}`);
      return objectList(body, 'pdus', MISSING_EVENTS_LIMIT);
    } catch (e) {
      this.ctx.logger.debug('federation: backfill failed', { origin, roomId, error: e });
      return [];
    }
  }

  /**
   * The state after each prev event we still lack (or hold only as an outlier): /state_ids at it from the origin,
   * with the events it names fetched and checked, plus the prev event itself.
   */
  private async statesOfUnknownPrevs(origin: string, pdu: Pdu, version: RoomVersion): Promise<Map<string, StateMap>> {
    const out = new Map<string, StateMap>();
    const recs = await this.kv.read((tx) => recordsById(tx, pdu.prevEvents));
    const unknown = pdu.prevEvents.filter((id) => {
      const r = recs.get(id);
      return !r || r.outlier;
    });
    for (const prevId of unknown.slice(0, MAX_REMOTE_PREV_STATES)) {
      try {
        const state = await this.remoteStateAfter(origin, pdu.roomId, prevId, version);
        if (state) out.set(prevId, state);
      } catch (e) {
        this.ctx.logger.debug('federation: could not fetch the state at a prev event', { origin, prevId, error: e });
      }
    }
    return out;
  }

  /** The state after `eventId` as `origin` sees it (its state before, plus the event when it is state). */
  async remoteStateAfter(origin: string, roomId: string, eventId: string, version: RoomVersion): Promise<StateMap | undefined> {
    const ids = await this.remote.get(
      origin,
      `/_matrix/federation/v1/state_ids/${enc(roomId)}?event_id=${enc(eventId)}`,
    );
    const pduIds = stringList(ids, 'pdu_ids', 10_000);
    const authIds = stringList(ids, 'auth_chain_ids', 20_000);
    const wanted = [...new Set([...pduIds, ...authIds, eventId])];
    const have = await this.kv.read((tx) => recordsById(tx, wanted));
    const need = wanted.filter((id) => !have.has(id));
    if (need.length > 0) {
      const jsons: JsonObject[] = [];
      if (need.length > FETCH_ONE_BY_ONE) {
        const st = await this.remote.get(origin, `/_matrix/federation/v1/state/${enc(roomId)}?event_id=${enc(eventId)}`);
        jsons.push(...objectList(st, 'pdus', 10_000), ...objectList(st, 'auth_chain', 20_000));
        if (!have.has(eventId)) jsons.push(...(await this.fetchEvents(origin, [eventId])));
      } else {
        jsons.push(...(await this.fetchEvents(origin, need)));
      }
      await this.storeOutliers(origin, version, roomId, jsons);
    }
    const recs = await this.kv.read((tx) => recordsById(tx, [...pduIds, eventId]));
    const prev = recs.get(eventId);
    if (!prev) return undefined;
    const state: StateMap = new Map();
    for (const id of pduIds) {
      const r = recs.get(id);
      if (!r || r.rejected !== undefined || r.roomId !== roomId) continue;
      const p = pduOf(r, version);
      if (p.stateKey !== undefined) state.set(stateKey(p.type, p.stateKey), id);
    }
    const prevPdu = pduOf(prev, version);
    if (prevPdu.stateKey !== undefined && prev.rejected === undefined) state.set(stateKey(prevPdu.type, prevPdu.stateKey), eventId);
    return state;
  }

  /** GET /event/{id} for each ID (concurrently); events that fail to arrive are left out. */
  async fetchEvents(origin: string, ids: readonly string[]): Promise<JsonObject[]> {
    const got = await Promise.all(
      ids.map(async (id) => {
        try {
          const body = await this.remote.get(origin, `/_matrix/federation/v1/event/${enc(id)}`);
          return objectList(body, 'pdus', 1)[0];
        } catch {
          return undefined;
        }
      }),
    );
    return got.filter((j): j is JsonObject => j !== undefined);
  }

  /**
   * Checks a bag of events (steps 1–4) and stores the new ones as outliers, rejected ones marked. Events failing
   * steps 1–2 are dropped. Returns the checked events by ID with whether each was rejected.
   */
  async storeOutliers(
    origin: string,
    version: RoomVersion,
    roomId: string,
    jsons: readonly JsonValue[],
    fetchAuth = true,
  ): Promise<Map<string, { pdu: Pdu; rejected?: string }>> {
    const checked = new Map<string, Pdu>();
    for (const json of jsons) {
      // A v12 create event has no room_id; it belongs to the room its ID names.
      const c = await checkReceivedPdu(json, version);
      if (!c.ok) continue;
      const p = c.value.pdu;
      if (p.roomId !== roomId) continue;
      checked.set(p.eventId, p);
    }
    const order = topoSort([...checked.values()]);
    const authIds = new Set<string>();
    for (const p of order) {
      for (const a of p.authEvents) if (!checked.has(a)) authIds.add(a);
      const c = impliedCreateId(roomId, version);
      if (c && !checked.has(c)) authIds.add(c);
    }
    let stored = await this.kv.read((tx) => recordsById(tx, [...authIds, ...checked.keys()]));
    const lacking = order.filter((p) => p.authEvents.some((a) => !checked.has(a) && !stored.has(a)));
    if (fetchAuth && lacking.length > 0) {
      // Auth events neither sent nor held: their auth chains from the origin, checked and stored first.
      for (const p of lacking.slice(0, 5)) {
        try {
          const body = await this.remote.get(origin, `/_matrix/federation/v1/event_auth/${enc(roomId)}/${enc(p.eventId)}`);
          await this.storeOutliers(origin, version, roomId, objectList(body, 'auth_chain', 5000), false);
        } catch (e) {
          this.ctx.logger.debug('federation: could not fetch an auth chain', { origin, eventId: p.eventId, error: e });
        }
      }
      stored = await this.kv.read((tx) => recordsById(tx, [...authIds, ...checked.keys()]));
    }
    const result = new Map<string, { pdu: Pdu; rejected?: string }>();
    const lookup = (id: string): Pdu | undefined => {
      const inBatch = result.get(id);
      if (inBatch) return inBatch.pdu;
      const r = stored.get(id);
      return r ? pduOf(r, version) : undefined;
    };
    const isRejected = (id: string) => {
      const inBatch = result.get(id);
      if (inBatch) return inBatch.rejected !== undefined;
      return stored.get(id)?.rejected !== undefined;
    };
    for (const p of order) {
      const auth = checkAgainstAuthEvents(p, lookup, version, isRejected);
      result.set(p.eventId, auth.ok ? { pdu: p } : { pdu: p, rejected: auth.reason });
    }
    const fresh = [...result.values()].filter((r) => !stored.has(r.pdu.eventId));
    if (fresh.length > 0) {
      await this.kv.write(async (tx) => {
        const again = await recordsById(tx, fresh.map((f) => f.pdu.eventId));
        for (const f of fresh) {
          if (again.has(f.pdu.eventId)) continue;
          await tx.put(STORES.events, [f.pdu.eventId], outlierRecord(f.pdu, f.rejected));
        }
      });
    }
    return result;
  }

  // ---- The write

  /**
   * The room's head when `pdu` extends its single forward extremity and the pipeline's cache (RoomsService) holds
   * the current state at `wanted` and the event's auth events: then the state before the event is the current
   * state, and the checks need no read. Undefined otherwise (the event goes the general way).
   */
  private linearHead(pdu: Pdu, auth: readonly string[], wanted: readonly StateKey[], prefetched?: ReadonlyMap<string, EventRecord>): LinearHead | undefined {
    const snap = this.rooms.cachedHead(pdu.roomId);
    if (!snap || snap.extremities.length !== 1 || pdu.prevEvents.length !== 1 || pdu.prevEvents[0] !== snap.extremities[0]) return undefined;
    const ids = new Map<StateKey, string>();
    const pdus = new Map<string, Pdu>();
    for (const k of wanted) {
      const sid = snap.stateIds.get(k);
      if (sid === undefined) {
        if (!snap.complete && !snap.knownKeys.has(k)) return undefined;
        continue;
      }
      const p = this.rooms.cachedPdu(sid);
      if (!p) return undefined;
      ids.set(k, sid);
      pdus.set(sid, p);
    }
    // Auth events outside the current state: from the records read before the lock (they never change).
    for (const aid of auth) if (!pdus.has(aid) && !prefetched?.has(aid)) return undefined;
    return { snap, state: { ids, pdus, looked: new Set(wanted) } };
  }

  /** Steps 4–6 and the write, under the room's lock. */
  private async commit(pdu: Pdu, version: RoomVersion, remoteStates: Map<string, StateMap>, prefetched?: ReadonlyMap<string, EventRecord>): Promise<PduOutcome> {
    const roomId = pdu.roomId;
    const id = pdu.eventId;
    traceStage(id, 'B locked');
    const createId = impliedCreateId(roomId, version);
    const auth = [...pdu.authEvents, ...(createId ? [createId] : [])];
    // State entries read together with the prev events, by state group: the checks then need no more reads.
    const pre: Preloaded = new Map();

    const keys = authKeys(pdu, version);
    const ownKey = pdu.stateKey !== undefined ? stateKey(pdu.type, pdu.stateKey) : undefined;
    const wanted = ownKey !== undefined && !keys.includes(ownKey) ? [...keys, ownKey] : keys;
    // A redaction's effect is decided from storage (redactionAllowed): it goes the general way.
    const head = pdu.type === 'm.room.redaction' ? undefined : this.linearHead(pdu, auth, wanted, prefetched);

    let room: RoomRecord;
    let ext: string[];
    let recs: ReadonlyMap<string, EventRecord>;
    let lookupAuth: (aid: string) => Pdu | undefined;
    let authRejected: (aid: string) => boolean;
    const sources: StateSource[] = [];
    if (head) {
      // The state before the event is the current state; whether the event is new is asked in the write.
      room = head.snap.room;
      ext = head.snap.extremities;
      recs = new Map();
      pre.set(room.stateGroup, head.state);
      sources.push({ group: room.stateGroup });
      const inState = head.state.pdus;
      const prefetchedPdu = (aid: string) => {
        const r = prefetched?.get(aid);
        return r && r.roomId === roomId ? pduOf(r, version) : undefined;
      };
      // Events of the current state are never rejected ones.
      lookupAuth = (aid) => inState.get(aid) ?? prefetchedPdu(aid);
      authRejected = (aid) => !inState.has(aid) && prefetched?.get(aid)?.rejected !== undefined;
    } else {
      const read = await this.kv.read(async (tx) => {
        const [room, existing, extRows] = await Promise.all([
          getRoom(tx, roomId),
          tx.get<EventRecord>(STORES.events, [id]),
          tx.range<boolean>(STORES.forwardExtremities, { prefix: [roomId] }),
        ]);
        const ext = extRows.map(([k]) => String(k[1]));
        const recs = await recordsById(tx, [...pdu.prevEvents, ...auth, ...ext]);
        // The usual case: every prev event known, one state group before the event (and it may be the current
        // state). Its entries the checks read are loaded here, in the same round trip.
        const groups = new Set<number>();
        for (const p of pdu.prevEvents) {
          const r = recs.get(p);
          if (!r || r.outlier || r.roomId !== roomId) return { room, existing, ext, recs };
          groups.add(r.stateAfter);
        }
        if (groups.size === 1) {
          for (const g of new Set([...groups, ...(room ? [room.stateGroup] : [])])) {
            const ids = await stateLookup(tx, g, wanted);
            const stateRecs = await recordsById(tx, ids.values());
            const pdus = new Map<string, Pdu>();
            for (const [sid, r] of stateRecs) pdus.set(sid, pduOf(r, version));
            pre.set(g, { ids, pdus, looked: new Set(wanted) });
          }
        }
        return { room, existing, ext, recs };
      });
      if (!read.room) return { eventId: id, status: 'dropped', reason: 'unknown room' };
      if (read.existing && !read.existing.outlier) return { eventId: id, status: 'known', pdu };
      room = read.room;
      ext = read.ext;
      recs = read.recs;
      // The state before the event: the states after its prev events, resolved when they differ.
      const seenGroups = new Set<number>();
      for (const prev of pdu.prevEvents) {
        const r = recs.get(prev);
        if (r && !r.outlier && r.roomId === roomId) {
          if (!seenGroups.has(r.stateAfter)) {
            seenGroups.add(r.stateAfter);
            sources.push({ group: r.stateAfter });
          }
        } else {
          const m = remoteStates.get(prev);
          if (m) sources.push({ map: m });
        }
      }
      lookupAuth = (aid) => {
        const r = recs.get(aid);
        return r && r.roomId === roomId ? pduOf(r, version) : undefined;
      };
      authRejected = (aid) => recs.get(aid)?.rejected !== undefined;
    }
    traceStage(id, 'B read');
    if (sources.length === 0) return { eventId: id, status: 'dropped', reason: 'the state before the event could not be determined' };
    const source = new StoreEventSource(this.kv, version);
    const before = await this.resolveSources(sources, version, roomId, source);

    // 4. Against its own auth events.
    const step4 = checkAgainstAuthEvents(pdu, lookupAuth, version, authRejected);
    let rejected: string | undefined = step4.ok ? undefined : `auth events: ${step4.reason}`;

    // 5. Against the state before the event.
    if (rejected === undefined) {
      const state = await this.authStateOf(before, keys, version, pre);
      const step5 = authorize(pdu, state, version);
      if (!step5.ok) rejected = `state before the event: ${step5.reason}`;
    }

    // 6. Against the current state (the same state when the event extends the room's current state).
    let softFailed = false;
    if (rejected === undefined && !('group' in before && before.group === room.stateGroup)) {
      const state = await this.authStateOf({ group: room.stateGroup }, keys, version, pre);
      softFailed = !authorize(pdu, state, version).ok;
    }

    // The new current state, when the event joins the graph we follow.
    const accepted = rejected === undefined && !softFailed;
    const isState = pdu.stateKey !== undefined && rejected === undefined;
    const key = isState ? stateKey(pdu.type, pdu.stateKey!) : undefined;
    const newExt = accepted ? [...ext.filter((e) => !pdu.prevEvents.includes(e)), id] : ext;
    // same: the current state does not change; after: it becomes the state after the event; map: resolved.
    let current: { kind: 'same' } | { kind: 'after' } | { kind: 'map'; map: StateMap } = { kind: 'same' };
    const linear = 'group' in before && before.group === room.stateGroup;
    if (accepted) {
      const others = newExt.filter((e) => e !== id);
      const otherGroups = new Set<number>();
      for (const e of others) {
        const r = recs.get(e);
        if (r) otherGroups.add(r.stateAfter);
      }
      if (others.length === 0) current = { kind: 'after' };
      else if (key === undefined && linear && [...otherGroups].every((g) => g === room.stateGroup)) current = { kind: 'same' };
      else {
        // A fork: the current state is the resolution of the states after every forward extremity.
        const afterMap = new Map(await this.mapOf(before));
        if (key !== undefined) afterMap.set(key, id);
        source.extra.set(id, pdu);
        const sets: StateMap[] = [afterMap];
        for (const g of otherGroups) sets.push(await this.kv.read((tx) => loadStateGroup(tx, g)));
        current = { kind: 'map', map: await resolveState({ version, stateSets: sets, events: source, roomId }) };
      }
    }
    const beforeMap = 'map' in before ? before.map : undefined;

    // What changes in the current state.
    const changes = new Map<StateKey, string | undefined>();
    let oldCurrent: StateMap | undefined;
    if (current.kind === 'after' && linear) {
      if (key !== undefined) changes.set(key, id);
    } else if (current.kind !== 'same') {
      oldCurrent = await this.kv.read((tx) => loadStateGroup(tx, room.stateGroup));
      let next: StateMap;
      if (current.kind === 'map') next = current.map;
      else {
        next = new Map(await this.mapOf(before));
        if (key !== undefined) next.set(key, id);
      }
      for (const [k, v] of next) if (oldCurrent.get(k) !== v) changes.set(k, v);
      for (const k of oldCurrent.keys()) if (!next.has(k)) changes.set(k, undefined);
    }
    const memberIds = [...changes].filter(([k, v]) => v !== undefined && v !== id && splitStateKey(k)[0] === 'm.room.member').map(([, v]) => v!);
    const memberRecs = memberIds.length > 0 ? await this.kv.read((tx) => recordsById(tx, memberIds)) : new Map<string, EventRecord>();
    const redactionTarget = accepted && pdu.type === 'm.room.redaction' && pdu.redacts !== undefined
      ? await this.redactionAllowed(pdu, version, before)
      : undefined;
    // What a state event replaced (unsigned.replaces_state / prev_content / prev_sender, as for local events).
    const unsigned = key !== undefined ? await this.replacedState(before, key, version, pre) : undefined;

    const status: PduStatus = rejected !== undefined ? 'rejected' : softFailed ? 'soft_failed' : 'accepted';
    traceStage(id, 'B checked 4-6');
    let updated: RoomRecord | undefined;
    const written = await this.kv.write(async (tx): Promise<number | 'known' | undefined> => {
      if (head) {
        const existing = await tx.get<EventRecord>(STORES.events, [id]);
        if (existing && !existing.outlier) return 'known';
      }
      const beforeGroup = 'group' in before ? before.group : await this.groupFor(tx, room.stateGroup, beforeMap!);
      const afterGroup = key !== undefined ? await addStateGroup(tx, beforeGroup, new Map([[key, id]]), beforeMap && new Map(beforeMap).set(key, id)) : beforeGroup;
      const rec: EventRecord = { eventId: id, json: storedJson(pdu.json, unsigned), roomId, stateBefore: beforeGroup, stateAfter: afterGroup };
      if (rejected !== undefined) rec.rejected = rejected;
      if (softFailed) rec.softFailed = true;
      let pos: number | undefined;
      if (accepted) {
        pos = await allocatePosition(tx);
        rec.pos = pos;
        await tx.put(STORES.roomTimeline, [roomId, pos], id);
        const entry: StreamEntry = { kind: 'event', roomId, eventId: id };
        if (pdu.type === 'm.room.member' && pdu.stateKey !== undefined && pdu.membership !== undefined) {
          entry.userId = pdu.stateKey;
          entry.membership = pdu.membership;
        }
        await tx.put(STORES.stream, [pos], entry);
        const rel = relationOf(pdu.content);
        if (rel) await putRelation(tx, rel.eventId, rel.relType, pos, id);
        if (redactionTarget) await markRedacted(tx, roomId, redactionTarget, id);
      }
      await tx.put(STORES.events, [id], rec);
      if (!accepted) return undefined;

      // Current state, member lists, local users' rooms.
      let currentGroup = room.stateGroup;
      if (current.kind === 'after') currentGroup = afterGroup;
      else if (current.kind === 'map') currentGroup = await this.groupFor(tx, room.stateGroup, current.map, oldCurrent);
      for (const [k, v] of changes) {
        const [type, sk] = splitStateKey(k);
        if (v === undefined) {
          await tx.delete(STORES.currentState, [roomId, type, sk]);
          if (type === 'm.room.member') await tx.delete(STORES.roomMembers, [roomId, sk]);
          continue;
        }
        await tx.put(STORES.currentState, [roomId, type, sk], v);
        if (type !== 'm.room.member') continue;
        const json = v === id ? pdu.json : memberRecs.get(v)?.json;
        const content = json && isJsonObject(json.content) ? json.content : {};
        const membership = typeof content.membership === 'string' ? content.membership : 'leave';
        await tx.put(STORES.roomMembers, [roomId, sk], { membership, eventId: v } satisfies MemberRecord);
        if (domainOf(sk) === this.ctx.serverName) {
          await tx.put(STORES.userRooms, [sk, roomId], { membership, eventId: v, pos: pos! } satisfies UserRoomRecord);
        }
      }
      for (const e of ext) if (!newExt.includes(e)) await tx.delete(STORES.forwardExtremities, [roomId, e]);
      await tx.put(STORES.forwardExtremities, [roomId, id], true);
      updated = {
        ...room,
        stateGroup: currentGroup,
        lastPos: pos!,
        maxDepth: Math.max(room.maxDepth, pdu.depth),
      };
      await tx.put(STORES.rooms, [roomId], updated);
      traceStage(id, 'B write queued');
      return pos;
    }).catch((e: unknown) => {
      // What the storage holds now may not match the cached head.
      this.rooms.forgetHead(roomId);
      throw e;
    });
    if (written === 'known') return { eventId: id, status: 'known', pdu };
    const lastPos = written;
    traceStage(id, 'B written');
    this.afterWrite(pdu, version, updated, current.kind === 'after' && newExt.length === 1 && linear ? (head?.snap ?? pre.get(room.stateGroup)) : undefined);
    if (lastPos !== undefined) {
      // Only an 'event' entry: the stream's presence/device-list follower (edus.ts) need not look.
      this.ctx.notifier.notify(lastPos, ['event']);
      traceStage(id, 'B notified');
      this.hooks.persisted?.(roomId, [pdu], new Set([...changes.keys()].map((k) => splitStateKey(k)[0])));
    }
    return { eventId: id, status, reason: rejected, pdu };
  }

  /**
   * Keeps the pipeline's head of the room right after a write: as it was when the event was not accepted (only
   * its record was written: the room, its extremities and current state are unchanged); extended by the event when
   * it was accepted onto the room's single forward extremity and the state before it is known (`base`: the cached
   * head, or the current state ingest read at the keys it looked up); else dropped.
   */
  private afterWrite(pdu: Pdu, version: RoomVersion, updated: RoomRecord | undefined, base: HeadSnapshot | PreloadedState | undefined): void {
    const roomId = pdu.roomId;
    if (updated === undefined) return;
    if (base === undefined || pdu.type === 'm.room.redaction') {
      this.rooms.forgetHead(roomId, [pdu]);
      return;
    }
    let snap: HeadSnapshot;
    if ('stateIds' in base) snap = base;
    else {
      this.rooms.rememberPdus(base.pdus.values());
      snap = { room: updated, version, extremities: [], stateIds: new Map(base.ids), knownKeys: new Set(base.looked), complete: false };
    }
    this.rooms.rememberHead({ ...snap, room: updated, extremities: [pdu.eventId] }, [pdu]);
  }

  /** `unsigned` for a state event: the event it replaces in the state before it, if any. */
  private async replacedState(before: StateSource, key: StateKey, version: RoomVersion, preloaded?: Preloaded): Promise<JsonObject | undefined> {
    const pre = 'group' in before ? preloaded?.get(before.group) : undefined;
    if (pre && pre.looked.has(key)) {
      const id = pre.ids.get(key);
      const p = id === undefined ? undefined : pre.pdus.get(id);
      if (!p || id === undefined) return undefined;
      return { replaces_state: id, prev_content: p.content, prev_sender: p.sender };
    }
    return this.kv.read(async (tx) => {
      const id = 'group' in before ? (await stateLookup(tx, before.group, [key])).get(key) : before.map.get(key);
      const prev = id === undefined ? undefined : await tx.get<EventRecord>(STORES.events, [id]);
      if (!prev || id === undefined) return undefined;
      const p = pduOf(prev, version);
      return { replaces_state: id, prev_content: p.content, prev_sender: p.sender };
    });
  }

  /** One state from several: a single group as it is, else the resolution of all of them. */
  private async resolveSources(sources: StateSource[], version: RoomVersion, roomId: string, events: StoreEventSource): Promise<StateSource> {
    if (sources.length === 1) return sources[0];
    const sets = await Promise.all(sources.map((s) => this.mapOf(s)));
    return { map: await resolveState({ version, stateSets: sets, events, roomId }) };
  }

  private async mapOf(s: StateSource): Promise<StateMap> {
    return 'map' in s ? s.map : this.kv.read((tx) => loadStateGroup(tx, s.group));
  }

  /** The auth state for `keys` of a state (the events behind them, redacted as auth sees them). */
  private async authStateOf(s: StateSource, keys: readonly StateKey[], version: RoomVersion, preloaded?: Preloaded): Promise<AuthState> {
    const pre = 'group' in s ? preloaded?.get(s.group) : undefined;
    if (pre && keys.every((k) => pre.looked.has(k))) {
      const out = new Map<StateKey, Pdu>();
      for (const k of keys) {
        const v = pre.ids.get(k);
        const p = v === undefined ? undefined : pre.pdus.get(v);
        if (p) out.set(k, p);
      }
      return { get: (t, k) => out.get(stateKey(t, k)) };
    }
    const found = await this.kv.read(async (tx) => {
      let ids: Map<StateKey, string>;
      if ('group' in s) ids = await stateLookup(tx, s.group, keys);
      else {
        ids = new Map();
        for (const k of keys) {
          const v = s.map.get(k);
          if (v !== undefined) ids.set(k, v);
        }
      }
      const recs = await recordsById(tx, ids.values());
      const out = new Map<StateKey, Pdu>();
      for (const [k, v] of ids) {
        const r = recs.get(v);
        if (r) out.set(k, pduOf(r, version));
      }
      return out;
    });
    return { get: (t, k) => found.get(stateKey(t, k)) };
  }

  /** A state group holding exactly `map`: a delta on `base` when only additions/changes, else a snapshot. */
  private async groupFor(tx: WriteTx, base: number, map: StateMap, baseMap?: StateMap): Promise<number> {
    const b = baseMap ?? (await loadStateGroup(tx, base));
    const delta = new Map<StateKey, string>();
    for (const [k, v] of map) if (b.get(k) !== v) delta.set(k, v);
    const removes = [...b.keys()].some((k) => !map.has(k));
    if (!removes) return delta.size === 0 ? base : addStateGroup(tx, base, delta, b);
    return addStateGroup(tx, EMPTY_STATE_GROUP, map);
  }

  /**
   * Whether a redaction may take effect (rooms v3+ "Handling redactions": the redacter has the redact level, or
   * is on the same server as the redacted event's sender). Returns the target ID when it may.
   */
  private async redactionAllowed(pdu: Pdu, version: RoomVersion, before: StateSource): Promise<string | undefined> {
    const targetId = pdu.redacts!;
    const target = await this.kv.read((tx) => tx.get<EventRecord>(STORES.events, [targetId]));
    if (!target || target.roomId !== pdu.roomId) return undefined;
    if (target.json.type === 'm.room.create') return undefined;
    const targetSender = typeof target.json.sender === 'string' ? target.json.sender : '';
    if (domainOf(targetSender) === domainOf(pdu.sender)) return targetId;
    const state = await this.authStateOf(before, [stateKey('m.room.power_levels', ''), stateKey('m.room.create', '')], version);
    const pl = powerLevelsFrom(state.get('m.room.power_levels', ''), version);
    const level = powerLevelOf(pdu.sender, pl, roomCreators(state.get('m.room.create', ''), version), version);
    return level >= pl.redact ? targetId : undefined;
  }
}

/** content['m.relates_to'] with a rel_type and event_id (relations index), or undefined. */
function relationOf(content: JsonObject): { eventId: string; relType: string } | undefined {
  const rel = content['m.relates_to'];
  if (!isJsonObject(rel)) return undefined;
  const { rel_type: relType, event_id: eventId } = rel;
  if (typeof relType !== 'string' || typeof eventId !== 'string' || relType === '' || eventId === '') return undefined;
  return { eventId, relType };
}

/** Marks a redaction's target and drops its relation (as the local pipeline does, rooms.ts). */
async function markRedacted(tx: WriteTx, roomId: string, targetId: string, redactionId: string): Promise<void> {
  const target = await tx.get<EventRecord>(STORES.events, [targetId]);
  if (!target || target.roomId !== roomId || target.redactedBy !== undefined) return;
  await tx.put(STORES.events, [targetId], { ...target, redactedBy: redactionId });
  const content = isJsonObject(target.json.content) ? target.json.content : {};
  const rel = relationOf(content);
  if (rel && target.pos !== undefined) await tx.delete(STORES.relations, [rel.eventId, rel.relType, target.pos]);
}

/** For tests and the read side: whether a stored event is shown in the room's timeline. */
export function inTimeline(rec: EventRecord | undefined): boolean {
  return rec !== undefined && rec.pos !== undefined && rec.rejected === undefined && !rec.softFailed;
}

