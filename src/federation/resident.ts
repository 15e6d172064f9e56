/**
 * What this server answers as a resident of a room, for other servers: the join/leave/knock handshakes, invites
 * of our users, and reads of the room graph (events, state, auth chains, backfill, missing events).
 *
 * Spec: shared/matrix-spec/content/server-server-api.md §"Joining Rooms", §"Knocking upon a room", §"Inviting to a
 * room", §"Leaving Rooms (Rejecting Invites)", §"Retrieving events", §"Backfilling and retrieving missing events",
 * §"Retrieving event authorisation information"; data/api/server-server/{joins-v1,joins-v2,leaving-v1,leaving-v2,
 * knocks,invites-v2,events,event_auth,backfill}.yaml.
 *
 * Every read checks that the asking server may see the room (access.ts): it is in the room (a joined member), or
 * the room is world-readable; single events are filtered by history visibility.
 */
import {
  badJson,
  forbidden,
  incompatibleRoomVersion,
  invalidParam,
  missingParam,
  notFound,
  unableToAuthoriseJoin,
  unableToGrantJoin,
} from '../api/errors.js';
import { authStateKeysFor } from '../core/auth/auth-events.js';
import { authorize } from '../core/auth/rules.js';
import { powerLevelOf, powerLevelsFrom, roomCreators } from '../core/auth/power-levels.js';
import { encodeBase64 } from '../core/base64.js';
import type { StateMap } from '../core/event.js';
import { Pdu, stateKey } from '../core/event.js';
import { referenceHash } from '../core/hashes.js';
import { isValidEventId, isValidUserId } from '../core/identifiers.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import { checkPduFormat } from '../core/pdu-format.js';
import type { RoomVersion } from '../core/room-versions.js';
import { roomVersion } from '../core/room-versions.js';
import { signEvent } from '../core/signing.js';
import type { ReadTx } from '../storage/kv.js';
import type { EventRecord, MemberRecord, RoomRecord, StreamEntry, UserRoomRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import { loadStateGroup } from '../storage/state-groups.js';
import type { UserRecord } from '../services/accounts.js';
import { currentStateEvent, getRoom, pduOf } from '../services/event-store.js';
import { allocatePosition } from '../services/notifier.js';
import { serverMayReadRoom, serverMaySeeEvent } from './access.js';
import { checkReceivedPdu, domainOf } from './checks.js';
import type { FederationParts } from './parts.js';
import { relay, wireJson } from './parts.js';
import { authChainRecords, federationJson, recordsById } from './pdus.js';

/** Stripped state types sent with invites and knocks (client-server-api "Stripped state"). */
export const STRIPPED_STATE_TYPES = [
  'm.room.create',
  'm.room.name',
  'm.room.avatar',
  'm.room.topic',
  'm.room.join_rules',
  'm.room.canonical_alias',
  'm.room.encryption',
];

const MAX_BACKFILL = 100;
const MAX_MISSING_EVENTS = 100;
const MAX_PREV_EVENTS = 20;

function stripped(json: JsonObject): JsonObject {
  return {
    type: json.type ?? '',
    state_key: json.state_key ?? '',
    sender: json.sender ?? '',
    content: isJsonObject(json.content) ? json.content : {},
  };
}

/** The stripped state of a room now (for invites and knocks), read in one transaction. */
export async function strippedStateIn(tx: ReadTx, roomId: string): Promise<JsonObject[]> {
  const ids = await tx.getMany<string>(
    STORES.currentState,
    STRIPPED_STATE_TYPES.map((t) => [roomId, t, '']),
  );
  const recs = await recordsById(
    tx,
    ids.filter((x): x is string => x !== undefined),
  );
  return [...recs.values()].map((r) => stripped(r.json));
}

/** An event reference list in the room version's shape (v1–v2: `[id, {sha256}]` pairs). */
function refs(ids: readonly string[], recs: Map<string, EventRecord>, version: RoomVersion): JsonValue[] {
  if (version.eventIdFormat !== 'server') return [...ids];
  return ids.map((id) => {
    const r = recs.get(id);
    return [id, { sha256: r ? encodeBase64(referenceHash(r.json, version)) : '' }];
  });
}

export class Resident {
  constructor(private readonly p: FederationParts) {}

  private get ctx() {
    return this.p.ctx;
  }

  /** A room held here with a local user joined (what a resident is); 404 otherwise. */
  private async residentRoom(roomId: string): Promise<{ room: RoomRecord; version: RoomVersion }> {
    const room = await this.ctx.kv.read((tx) => getRoom(tx, roomId));
    const version = room ? roomVersion(room.version) : undefined;
    if (!room || !version || !(await this.p.servers.get(roomId)).has(this.ctx.serverName)) {
      throw notFound(`Room ${roomId} is not known here`);
    }
    return { room, version };
  }

  /** A room the asking server may read (403 otherwise; 404 when not held here). */
  private async readableRoom(roomId: string, origin: string): Promise<RoomVersion> {
    const room = await this.ctx.kv.read((tx) => getRoom(tx, roomId));
    const version = room ? roomVersion(room.version) : undefined;
    if (!room || !version) throw notFound(`Room ${roomId} is not known here`);
    const inRoom = await this.p.servers.get(roomId);
    if (!(await this.ctx.kv.read((tx) => serverMayReadRoom(tx, roomId, origin, inRoom)))) {
      throw forbidden(`${origin} is not in room ${roomId}`);
    }
    return version;
  }

  // ---- Handshakes: make_join / make_leave / make_knock

  /**
   * GET /make_{join,leave,knock}/{roomId}/{userId}: an unsigned template built on the room's current extremities
   * and state, refused with 403 when the auth rules would refuse the membership.
   */
  async makeMembership(
    origin: string,
    roomId: string,
    userId: string,
    membership: 'join' | 'leave' | 'knock',
    versions: readonly string[] | undefined,
  ): Promise<JsonObject> {
    if (!isValidUserId(userId)) throw invalidParam('userId', 'is not a valid user ID');
    if (domainOf(userId) !== origin) throw forbidden(`${userId} is not a user of ${origin}`);
    const { room, version } = await this.residentRoom(roomId);
    if (versions !== undefined && !versions.includes(version.id)) throw incompatibleRoomVersion(version.id);
    if (membership === 'knock' && !version.knock) throw incompatibleRoomVersion(version.id, 'This room version does not support knocking');
    const content: JsonObject = { membership };
    if (membership === 'join') {
      const authoriser = await this.restrictedAuthoriser(roomId, userId, version);
      if (authoriser !== undefined) content.join_authorised_via_users_server = authoriser;
    }
    const subject = { type: 'm.room.member', stateKey: userId, sender: userId, content };
    const keys = authStateKeysFor(subject, version);
    const head = await this.ctx.kv.read(async (tx) => {
      const extRows = await tx.range<boolean>(STORES.forwardExtremities, { prefix: [roomId] });
      const ext = extRows.map(([k]) => String(k[1])).slice(0, MAX_PREV_EVENTS);
      const ids = await tx.getMany<string>(
        STORES.currentState,
        [...keys, ['m.room.create', ''] as [string, string]].map(([t, k]) => [roomId, t, k]),
      );
      const present = ids.filter((x): x is string => x !== undefined);
      const recs = await recordsById(tx, [...ext, ...present]);
      return { ext, ids, recs };
    });
    const stateById = new Map<string, Pdu>();
    const authIds: string[] = [];
    keys.forEach((_key, i) => {
      const id = head.ids[i];
      if (id !== undefined && !authIds.includes(id)) authIds.push(id);
    });
    const state = new Map<string, Pdu>();
    [...keys, ['m.room.create', ''] as [string, string]].forEach(([t, k], i) => {
      const id = head.ids[i];
      const r = id === undefined ? undefined : head.recs.get(id);
      if (r && id) {
        const pdu = pduOf(r, version);
        state.set(stateKey(t, k), pdu);
        stateById.set(id, pdu);
      }
    });
    const depth =
      Math.max(room.maxDepth, ...head.ext.map((id) => Number(head.recs.get(id)?.json.depth ?? 0))) + 1;
    const template: JsonObject = {
      type: 'm.room.member',
      room_id: roomId,
      sender: userId,
      state_key: userId,
      content,
      origin: this.ctx.serverName,
      origin_server_ts: this.ctx.clock.now(),
      depth,
      prev_events: refs(head.ext, head.recs, version),
      auth_events: refs(authIds, head.recs, version),
    };
    // A restricted join's authoriser is ours: we sign the event in send_join.
    const result = authorize(new Pdu('$template', template), { get: (t, k) => state.get(stateKey(t, k)) }, version, {
      isSignedBy: (_e, server) => server === this.ctx.serverName,
    });
    if (!result.ok) throw forbidden(`You may not ${membership} this room: ${result.reason}`);
    return { room_version: version.id, event: template };
  }

  /**
   * Restricted rooms (server-server-api §"Restricted rooms"; client-server-api #restricted-rooms), for a join of
   * `userId` (v8+): undefined when no authoriser is needed (the join rule is not restricted, or the user is
   * already joined or invited); else one of our joined users who may invite, when the user is joined to one of the
   * rooms the join rule allows (as this server knows them). Otherwise 403 M_FORBIDDEN (the user meets no
   * condition), 400 M_UNABLE_TO_AUTHORISE_JOIN (we are in none of the allowed rooms, so we cannot tell) or
   * 400 M_UNABLE_TO_GRANT_JOIN (nobody here may invite: the joining server should try another).
   */
  private async restrictedAuthoriser(roomId: string, userId: string, version: RoomVersion): Promise<string | undefined> {
    if (!version.restrictedJoinRule) return undefined;
    const pre = await this.ctx.kv.read(async (tx) => {
      const [jr, me] = await Promise.all([
        currentStateEvent(tx, roomId, 'm.room.join_rules', ''),
        tx.get<MemberRecord>(STORES.roomMembers, [roomId, userId]),
      ]);
      const c = jr && isJsonObject(jr.json.content) ? jr.json.content : {};
      const rule = c.join_rule;
      const restricted = rule === 'restricted' || (version.knockRestrictedJoinRule && rule === 'knock_restricted');
      if (!restricted || me?.membership === 'join' || me?.membership === 'invite') return undefined;
      // Entries not of the m.room_membership shape are conditions the user cannot meet.
      const allowed = (Array.isArray(c.allow) ? c.allow : [])
        .filter((a): a is JsonObject => isJsonObject(a) && a.type === 'm.room_membership' && typeof a.room_id === 'string')
        .map((a) => a.room_id as string);
      const mine = await tx.getMany<MemberRecord>(
        STORES.roomMembers,
        allowed.map((r) => [r, userId]),
      );
      return { allowed, joinedOne: mine.some((m) => m?.membership === 'join') };
    });
    if (!pre) return undefined;
    if (!pre.joinedOne) {
      let residentInOne = false;
      for (const r of pre.allowed) if ((await this.p.servers.get(r)).has(this.ctx.serverName)) residentInOne = true;
      if (!residentInOne && pre.allowed.length > 0) throw unableToAuthoriseJoin(`This server is in none of the rooms that grant access to ${roomId}`);
      throw forbidden(`${userId} is not a member of any room that grants access to ${roomId}`);
    }
    const authoriser = await this.ctx.kv.read(async (tx) => {
      const [members, plRec, createRec] = await Promise.all([
        tx.range<MemberRecord>(STORES.roomMembers, { prefix: [roomId] }),
        currentStateEvent(tx, roomId, 'm.room.power_levels', ''),
        currentStateEvent(tx, roomId, 'm.room.create', ''),
      ]);
      const pl = plRec ? powerLevelsFrom(pduOf(plRec, version), version) : undefined;
      const creators = roomCreators(createRec ? pduOf(createRec, version) : undefined, version);
      const needed = pl?.invite ?? 0;
      let best: { userId: string; level: number } | undefined;
      for (const [key, m] of members) {
        const u = String(key[1]);
        if (m.membership !== 'join' || domainOf(u) !== this.ctx.serverName) continue;
        const level = powerLevelOf(u, pl, creators, version);
        if (level >= needed && (!best || level > best.level)) best = { userId: u, level };
      }
      return best?.userId;
    });
    if (authoriser === undefined) throw unableToGrantJoin(`No user on ${this.ctx.serverName} may invite to ${roomId}`);
    return authoriser;
  }

  /**
   * send_join of a restricted join naming one of our users as its authoriser: the conditions are checked again
   * and the event is signed by us, as the auth rules require (the signed event goes back in the response).
   */
  private async countersignJoin(roomId: string, body: JsonObject, version: RoomVersion): Promise<JsonObject> {
    if (!version.restrictedJoinRule) return body;
    const authoriser = isJsonObject(body.content) ? body.content.join_authorised_via_users_server : undefined;
    if (typeof authoriser !== 'string' || domainOf(authoriser) !== this.ctx.serverName) return body;
    // Malformed events are left for checkReceivedPdu to refuse with its reason.
    if (!checkPduFormat(body, version).ok || typeof body.sender !== 'string') return body;
    await this.restrictedAuthoriser(roomId, body.sender, version);
    return signEvent(body, version, this.ctx.serverName, this.ctx.identity.key);
  }

  // ---- Handshakes: send_join / send_leave / send_knock

  /**
   * PUT /send_{join,leave,knock}: the joining server's signed event, checked (M_INVALID_PARAM for the checks the
   * spec names), then through every check on receipt and into the room, then relayed to the other servers.
   */
  async sendMembership(
    origin: string,
    roomId: string,
    eventId: string,
    body: JsonObject,
    membership: 'join' | 'leave' | 'knock',
  ): Promise<{ pdu: Pdu; record: EventRecord; version: RoomVersion }> {
    const { version } = await this.residentRoom(roomId);
    const json = membership === 'join' ? await this.countersignJoin(roomId, body, version) : body;
    const checked = await checkReceivedPdu(json, version, roomId);
    if (!checked.ok) throw invalidParam('event', checked.reason);
    const pdu = checked.value.pdu;
    if (pdu.eventId !== eventId) throw invalidParam('eventId', 'does not match the event');
    if (pdu.type !== 'm.room.member') throw invalidParam('type', 'must be m.room.member');
    if (pdu.membership !== membership) throw invalidParam('content.membership', `must be ${membership}`);
    if (domainOf(pdu.sender) !== origin) throw invalidParam('sender', `is not a user of ${origin}`);
    if (pdu.stateKey !== pdu.sender) throw invalidParam('state_key', 'must be the sender');
    const serversBefore = new Set(await this.p.servers.get(roomId));
    const outcome = await this.p.ingest.receiveChecked(origin, checked.value, version, { fetchMissing: true });
    if (outcome.status === 'rejected' || outcome.status === 'soft_failed' || outcome.status === 'dropped') {
      throw forbidden(`The ${membership} event was not accepted: ${outcome.reason ?? outcome.status}`);
    }
    const record = await this.ctx.kv.read((tx) => tx.get<EventRecord>(STORES.events, [eventId]));
    if (!record) throw notFound('Event not found');
    if (outcome.status === 'accepted') {
      // The resident sends the event to the other servers in the room (joins-v2.yaml).
      serversBefore.delete(origin);
      await relay(this.p, roomId, [pdu], { except: [origin], also: [...serversBefore] });
    }
    return { pdu, record, version };
  }

  /** The send_join v2 answer: the state before the join and the auth chain of it and of the join. */
  async joinResponse(roomId: string, pdu: Pdu, record: EventRecord, version: RoomVersion): Promise<JsonObject> {
    return this.ctx.kv.read(async (tx) => {
      const state = await loadStateGroup(tx, record.stateBefore);
      const stateRecs = await recordsById(tx, state.values());
      const chain = await authChainRecords(tx, roomId, [...state.values(), pdu.eventId]);
      const servers = new Set<string>();
      for (const [k, id] of state) {
        if (!k.startsWith('m.room.member\u0000')) continue;
        const r = stateRecs.get(id);
        if (r && isJsonObject(r.json.content) && r.json.content.membership === 'join') servers.add(domainOf(k.slice(14)));
      }
      return {
        origin: this.ctx.serverName,
        state: [...stateRecs.values()].map((r) => federationJson(r, version)),
        auth_chain: [...chain.values()].map((r) => federationJson(r, version)),
        event: wireJson(pdu.json),
        members_omitted: false,
        servers_in_room: [...servers],
      };
    });
  }

  async knockResponse(roomId: string): Promise<JsonObject> {
    return { knock_room_state: await this.ctx.kv.read((tx) => strippedStateIn(tx, roomId)) };
  }

  // ---- Invites of our users (invite v2)

  /** PUT /_matrix/federation/v2/invite/{roomId}/{eventId}: sign an invite of one of our users and keep it. */
  async receiveInvite(origin: string, roomId: string, eventId: string, body: JsonObject): Promise<JsonObject> {
    const versionId = body.room_version;
    if (typeof versionId !== 'string') throw missingParam('room_version');
    const version = roomVersion(versionId);
    if (!version) throw incompatibleRoomVersion(versionId);
    if (!isJsonObject(body.event)) throw missingParam('event');
    if (body.invite_room_state !== undefined && !Array.isArray(body.invite_room_state)) {
      throw badJson("'invite_room_state' must be an array");
    }
    const checked = await checkReceivedPdu(body.event, version, roomId);
    if (!checked.ok) throw invalidParam('event', checked.reason);
    const pdu = checked.value.pdu;
    if (pdu.eventId !== eventId) throw invalidParam('eventId', 'does not match the event');
    if (pdu.type !== 'm.room.member' || pdu.membership !== 'invite') throw invalidParam('event', 'is not an invite');
    const target = pdu.stateKey;
    if (target === undefined || domainOf(target) !== this.ctx.serverName) throw invalidParam('state_key', 'is not a user of this server');
    if (domainOf(pdu.sender) !== origin) throw forbidden(`The inviter is not a user of ${origin}`);
    const { user, member } = await this.ctx.kv.read(async (tx) => ({
      user: await tx.get<UserRecord>(STORES.users, [target]),
      member: await tx.get<MemberRecord>(STORES.roomMembers, [roomId, target]),
    }));
    if (!user || user.deactivated) throw notFound(`Unknown user ${target}`);
    // A room we follow: an invite the room's state would refuse must not reach the user's room list.
    if (member?.membership === 'join' || member?.membership === 'ban') throw forbidden(`${target} is ${member.membership === 'join' ? 'already in' : 'banned from'} the room`);

    const signed = await signEvent(checked.value.pdu.json, version, this.ctx.serverName, this.ctx.identity.key);
    const roomState = (body.invite_room_state ?? []) as JsonValue[];
    const inviteState = roomState.filter(isJsonObject).slice(0, 50).map(stripped);
    await this.storeOutOfBandMembership(target, roomId, new Pdu(eventId, signed), { invite_room_state: inviteState });
    return { event: signed };
  }

  /**
   * Keeps a membership event of one of our users in a room we do not follow (an invite received, a knock or a
   * rejection sent): an outlier record with a stream position, and the user's room list entry, so /sync shows it.
   * A room this server follows gets the event through the room graph instead; the record is then upgraded.
   */
  async storeOutOfBandMembership(userId: string, roomId: string, pdu: Pdu, unsigned: JsonObject): Promise<void> {
    const pos = await this.p.rooms.runExclusive(roomId, () =>
      this.ctx.kv.write(async (tx) => {
        const existing = await tx.get<EventRecord>(STORES.events, [pdu.eventId]);
        if (existing && !existing.outlier) return undefined;
        const p = await allocatePosition(tx);
        // The sender's `unsigned` is not trusted (it is outside the signatures): only ours is kept.
        const json: JsonObject = { ...wireJson(pdu.json), unsigned };
        const rec: EventRecord = { eventId: pdu.eventId, json, roomId, pos: p, stateBefore: 0, stateAfter: 0, outlier: true };
        await tx.put(STORES.events, [pdu.eventId], rec);
        const membership = pdu.membership ?? 'leave';
        await tx.put(STORES.stream, [p], { kind: 'event', roomId, eventId: pdu.eventId, userId, membership } satisfies StreamEntry);
        await tx.put(STORES.userRooms, [userId, roomId], { membership, eventId: pdu.eventId, pos: p } satisfies UserRoomRecord);
        return p;
      }),
    );
    if (pos !== undefined) this.ctx.notifier.notify(pos);
  }

  // ---- Reading the room graph

  /** GET /event/{eventId} */
  async getEvent(origin: string, eventId: string): Promise<JsonObject> {
    if (!isValidEventId(eventId)) throw invalidParam('eventId', 'is not a valid event ID');
    const rec = await this.ctx.kv.read((tx) => tx.get<EventRecord>(STORES.events, [eventId]));
    if (!rec) throw notFound('Event not found');
    await this.p.acls.require(rec.roomId, origin);
    const room = await this.ctx.kv.read((tx) => getRoom(tx, rec.roomId));
    const version = room ? roomVersion(room.version) : undefined;
    if (!version) throw notFound('Event not found');
    const inRoom = (await this.p.servers.get(rec.roomId)).has(origin);
    if (!(await this.ctx.kv.read((tx) => serverMaySeeEvent(tx, rec, origin, inRoom)))) throw notFound('Event not found');
    return { origin: this.ctx.serverName, origin_server_ts: this.ctx.clock.now(), pdus: [federationJson(rec, version)] };
  }

  /** The state before `eventId` (its IDs) and the records, for /state and /state_ids. */
  private async stateAt(origin: string, roomId: string, eventId: string | null): Promise<{ state: Map<string, EventRecord>; chain: Map<string, EventRecord>; version: RoomVersion }> {
    if (eventId === null || eventId === '') throw missingParam('event_id');
    const version = await this.readableRoom(roomId, origin);
    return this.ctx.kv.read(async (tx) => {
      const rec = await tx.get<EventRecord>(STORES.events, [eventId]);
      if (!rec || rec.roomId !== roomId || rec.outlier || rec.rejected !== undefined) throw notFound('Event not found in this room');
      const ids: StateMap = await loadStateGroup(tx, rec.stateBefore);
      const state = await recordsById(tx, ids.values());
      const chain = await authChainRecords(tx, roomId, ids.values());
      return { state, chain, version };
    });
  }

  /** GET /state/{roomId}?event_id= */
  async getState(origin: string, roomId: string, eventId: string | null): Promise<JsonObject> {
    const { state, chain, version } = await this.stateAt(origin, roomId, eventId);
    return {
      pdus: [...state.values()].map((r) => federationJson(r, version)),
      auth_chain: [...chain.values()].map((r) => federationJson(r, version)),
    };
  }

  /** GET /state_ids/{roomId}?event_id= */
  async getStateIds(origin: string, roomId: string, eventId: string | null): Promise<JsonObject> {
    const { state, chain } = await this.stateAt(origin, roomId, eventId);
    return { pdu_ids: [...state.keys()], auth_chain_ids: [...chain.keys()] };
  }

  /** GET /event_auth/{roomId}/{eventId} */
  async getEventAuth(origin: string, roomId: string, eventId: string): Promise<JsonObject> {
    const version = await this.readableRoom(roomId, origin);
    return this.ctx.kv.read(async (tx) => {
      const rec = await tx.get<EventRecord>(STORES.events, [eventId]);
      if (!rec || rec.roomId !== roomId) throw notFound('Event not found in this room');
      const chain = await authChainRecords(tx, roomId, [eventId]);
      return { auth_chain: [...chain.values()].map((r) => federationJson(r, version)) };
    });
  }

  /** GET /backfill/{roomId}?v=…&limit=: the given events and their predecessors, newest first, at most `limit`. */
  async backfill(origin: string, roomId: string, from: readonly string[], limitParam: string | null): Promise<JsonObject> {
    if (from.length === 0) throw missingParam('v');
    if (limitParam === null) throw missingParam('limit');
    const limit = Number(limitParam);
    if (!Number.isInteger(limit) || limit < 0) throw invalidParam('limit', 'must be a non-negative integer');
    const version = await this.readableRoom(roomId, origin);
    const inRoom = (await this.p.servers.get(roomId)).has(origin);
    const pdus = await this.ctx.kv.read(async (tx) => {
      const found = await this.walkBack(tx, roomId, from, new Set(), Math.min(limit, MAX_BACKFILL), 0, true);
      const out: JsonObject[] = [];
      for (const r of found) if (await serverMaySeeEvent(tx, r, origin, inRoom)) out.push(federationJson(r, version));
      return out;
    });
    return { origin: this.ctx.serverName, origin_server_ts: this.ctx.clock.now(), pdus };
  }

  /** POST /get_missing_events/{roomId} */
  async getMissingEvents(origin: string, roomId: string, body: JsonObject): Promise<JsonObject> {
    const earliest = body.earliest_events;
    const latest = body.latest_events;
    if (earliest === undefined) throw missingParam('earliest_events');
    if (latest === undefined) throw missingParam('latest_events');
    if (!Array.isArray(earliest) || !earliest.every((e) => typeof e === 'string')) throw badJson("'earliest_events' must be an array of event IDs");
    if (!Array.isArray(latest) || !latest.every((e) => typeof e === 'string')) throw badJson("'latest_events' must be an array of event IDs");
    const limit = body.limit ?? 10;
    const minDepth = body.min_depth ?? 0;
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0) throw invalidParam('limit', 'must be a non-negative integer');
    if (typeof minDepth !== 'number' || !Number.isInteger(minDepth)) throw invalidParam('min_depth', 'must be an integer');
    const version = await this.readableRoom(roomId, origin);
    const inRoom = (await this.p.servers.get(roomId)).has(origin);
    const events = await this.ctx.kv.read(async (tx) => {
      const latestRecs = await recordsById(tx, latest as string[]);
      const start = [...latestRecs.values()].filter((r) => r.roomId === roomId).flatMap((r) => prevIds(r));
      const found = await this.walkBack(tx, roomId, start, new Set(earliest as string[]), Math.min(limit, MAX_MISSING_EVENTS), minDepth, true);
      const out: EventRecord[] = [];
      for (const r of found) if (await serverMaySeeEvent(tx, r, origin, inRoom)) out.push(r);
      out.sort((a, b) => Number(a.json.depth ?? 0) - Number(b.json.depth ?? 0));
      return out.map((r) => federationJson(r, version));
    });
    return { events };
  }

  /**
   * Breadth-first over prev_events from `start` (included), not entering `stop`, at most `limit` events of the
   * room at depth ≥ minDepth; one batched read per level. Rejected events are skipped but walked through.
   */
  private async walkBack(
    tx: ReadTx,
    roomId: string,
    start: readonly string[],
    stop: Set<string>,
    limit: number,
    minDepth: number,
    skipOutliers: boolean,
  ): Promise<EventRecord[]> {
    const out: EventRecord[] = [];
    const seen = new Set<string>(stop);
    let frontier = start.filter((id) => !seen.has(id));
    for (const id of frontier) seen.add(id);
    while (frontier.length > 0 && out.length < limit) {
      const recs = await recordsById(tx, frontier);
      const next: string[] = [];
      for (const id of frontier) {
        const r = recs.get(id);
        if (!r || r.roomId !== roomId || (skipOutliers && r.outlier)) continue;
        if (Number(r.json.depth ?? 0) < minDepth) continue;
        if (r.rejected === undefined && out.length < limit) out.push(r);
        for (const p of prevIds(r)) {
          if (!seen.has(p)) {
            seen.add(p);
            next.push(p);
          }
        }
      }
      frontier = next;
    }
    return out;
  }
}

function prevIds(r: EventRecord): string[] {
  const list = r.json.prev_events;
  if (!Array.isArray(list)) return [];
  return list.flatMap((item) => (typeof item === 'string' ? [item] : Array.isArray(item) && typeof item[0] === 'string' ? [item[0]] : []));
}


