/**
 * Membership through other servers, for our users: joining a room we do not hold (make_join → send_join, then the
 * returned state and auth chain are checked and become the room here), inviting a user of another server (invite
 * v2: their server signs the event too), rejecting an invite / withdrawing a knock (make_leave → send_leave),
 * knocking (make_knock → send_knock), and room aliases of other servers (query/directory).
 *
 * Spec: shared/matrix-spec/content/server-server-api.md §"Joining Rooms" (the joining server checks the template's
 * type, room_id, sender, state_key and membership, then signs), §"Inviting to a room", §"Leaving Rooms (Rejecting
 * Invites)", §"Knocking upon a room", §"Querying for information"; data/api/server-server/*.yaml.
 * Where a rejection cannot reach any server, the invite is rejected locally (as Synapse does).
 */
import type { Principal } from '../api/endpoint.js';
import type { MatrixError } from '../api/errors.js';
import { forbidden, incompatibleRoomVersion, notFound, unknown } from '../api/errors.js';
import type { RoomsFederation } from '../services/membership.js';
import { authStateFromEvents, authorize } from '../core/auth/rules.js';
import { buildEvent } from '../core/build-event.js';
import type { StateMap } from '../core/event.js';
import { Pdu, stateKey } from '../core/event.js';
import { pduFromJson } from '../core/event-id.js';
import { isValidRoomAlias, isValidRoomId, parseRoomAlias } from '../core/identifiers.js';
import type { JsonObject } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { RoomVersion } from '../core/room-versions.js';
import { ROOM_VERSIONS, roomVersion } from '../core/room-versions.js';
import { MatrixError as MatrixErrorClass } from '../api/errors.js';
import type { EventRecord, MemberRecord, RoomRecord, StreamEntry, UserRoomRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import { addStateGroup, EMPTY_STATE_GROUP } from '../storage/state-groups.js';
import type { UserRecord } from '../services/accounts.js';
import { rememberRoomVersion } from '../services/event-store.js';
import { allocatePosition, reservePositions } from '../services/notifier.js';
import { HISTORY_GAP, historyKey } from './history.js';
import type { HistoryRecord } from './history.js';
import { checkReceivedPdu, domainOf, hasValidSignature } from './checks.js';
import type { FederationParts } from './parts.js';
import { relay, wireJson } from './parts.js';
import { BadResponseError, enc, objectList, RemoteError } from './remote.js';
import type { Resident } from './resident.js';
import { strippedStateIn } from './resident.js';
import { UnreachableError } from './transport.js';

const ALL_VERSIONS = [...ROOM_VERSIONS.keys()];
/** `unsigned` key of a stored knock naming the server it went through (local bookkeeping, never sent). */
const VIA_KEY = 'io.hearth.via';

/** A remote failure as the client should hear it. */
function clientError(e: unknown, what: string): MatrixError {
  if (e instanceof MatrixErrorClass) return e;
  if (e instanceof RemoteError) {
    if (e.status === 403) return forbidden(`${what}: ${e.message}`);
    if (e.status === 404) return notFound(`${what}: ${e.message}`);
    if (e.errcode === 'M_INCOMPATIBLE_ROOM_VERSION') {
      const v = isJsonObject(e.body) && typeof e.body.room_version === 'string' ? e.body.room_version : '?';
      return incompatibleRoomVersion(v);
    }
    return unknown(`${what}: ${e.message}`, 502);
  }
  if (e instanceof UnreachableError) return unknown(`${what}: ${e.destination} cannot be reached`, 502);
  if (e instanceof BadResponseError) return unknown(`${what}: ${e.message}`, 502);
  return unknown(`${what} failed`, 500);
}

export class RemoteMembership implements RoomsFederation {
  constructor(
    private readonly p: FederationParts,
    private readonly resident: Resident,
  ) {}

  private get ctx() {
    return this.p.ctx;
  }

  async isResident(roomId: string): Promise<boolean> {
    return (await this.p.servers.get(roomId)).has(this.ctx.serverName);
  }

  /** GET /query/directory on the alias's server. */
  async resolveAlias(alias: string): Promise<{ roomId: string; servers: string[] }> {
    const parsed = parseRoomAlias(alias);
    if (!parsed.ok || !isValidRoomAlias(alias)) throw notFound(`Room alias ${alias} not found`);
    let body: JsonObject;
    try {
      body = await this.p.remote.get(parsed.serverName, `/_matrix/federation/v1/query/directory?room_alias=${enc(alias)}`);
    } catch (e) {
      if (e instanceof RemoteError && e.status === 404) throw notFound(`Room alias ${alias} not found`);
      throw clientError(e, `Resolving ${alias}`);
    }
    const roomId = body.room_id;
    if (typeof roomId !== 'string' || !isValidRoomId(roomId)) throw unknown(`${parsed.serverName} gave no valid room ID for ${alias}`, 502);
    const servers = Array.isArray(body.servers) ? body.servers.filter((s): s is string => typeof s === 'string') : [];
    return { roomId, servers: [parsed.serverName, ...servers] };
  }

  /** Servers that may help with a room: the given ones, the inviter's, the room ID's, servers we saw in it. */
  private async candidates(userId: string, roomId: string, given: readonly string[]): Promise<string[]> {
    const out: string[] = [...given];
    const ur = await this.ctx.kv.read((tx) => tx.get<UserRoomRecord>(STORES.userRooms, [userId, roomId]));
    if (ur) {
      const rec = await this.ctx.kv.read((tx) => tx.get<EventRecord>(STORES.events, [ur.eventId]));
      if (rec && typeof rec.json.sender === 'string') out.push(domainOf(rec.json.sender));
      // The server a knock went through (kept with it: the knock's own sender is us).
      const via = rec && isJsonObject(rec.json.unsigned) ? rec.json.unsigned[VIA_KEY] : undefined;
      if (typeof via === 'string') out.push(via);
    }
    const d = domainOf(roomId);
    if (d !== '') out.push(d);
    out.push(...(await this.p.servers.get(roomId)));
    return [...new Set(out)].filter((s) => s !== '' && s !== this.ctx.serverName);
  }

  /** make_{membership} on one server, checked as the spec asks, then signed by us. */
  private async buildFromTemplate(
    server: string,
    roomId: string,
    userId: string,
    membership: 'join' | 'leave' | 'knock',
    content: JsonObject,
  ): Promise<{ pdu: Pdu; version: RoomVersion }> {
    const query = membership === 'leave' ? '' : '?' + ALL_VERSIONS.map((v) => `ver=${enc(v)}`).join('&');
    const res = await this.p.remote.get(server, `/_matrix/federation/v1/make_${membership}/${enc(roomId)}/${enc(userId)}${query}`);
    const versionId = typeof res.room_version === 'string' ? res.room_version : '1';
    const version = roomVersion(versionId);
    if (!version) throw incompatibleRoomVersion(versionId);
    const template = res.event;
    if (!isJsonObject(template)) throw new BadResponseError(`${server} sent no event template`);
    const tc = isJsonObject(template.content) ? template.content : {};
    if (
      template.type !== 'm.room.member' ||
      template.room_id !== roomId ||
      template.sender !== userId ||
      template.state_key !== userId ||
      tc.membership !== membership
    ) {
      throw new BadResponseError(`${server} sent a template that is not a ${membership} of ${userId} in ${roomId}`);
    }
    const { event_id: _e, hashes: _h, signatures: _s, unsigned: _u, ...rest } = template;
    const merged: JsonObject = { ...tc, ...content, membership };
    if (tc.join_authorised_via_users_server !== undefined) merged.join_authorised_via_users_server = tc.join_authorised_via_users_server;
    const proto: JsonObject = { ...rest, content: merged, origin: this.ctx.serverName, origin_server_ts: this.ctx.clock.now() };
    const pdu = await buildEvent(proto, version, this.ctx.serverName, this.ctx.identity.key);
    return { pdu, version };
  }

  private async profileContent(userId: string): Promise<JsonObject> {
    const u = await this.ctx.kv.read((tx) => tx.get<UserRecord>(STORES.users, [userId]));
    const out: JsonObject = {};
    if (u && !u.deactivated) {
      if (typeof u.profile.displayname === 'string') out.displayname = u.profile.displayname;
      if (typeof u.profile.avatar_url === 'string') out.avatar_url = u.profile.avatar_url;
    }
    return out;
  }

  // ---- Join

  async joinRemote(principal: Principal, roomId: string, servers: readonly string[], content: JsonObject): Promise<boolean> {
    const userId = principal.userId;
    const candidates = await this.candidates(userId, roomId, servers);
    if (candidates.length === 0) return false;
    const full = { ...(await this.profileContent(userId)), ...content, membership: 'join' };
    let lastError: unknown;
    for (const server of candidates) {
      try {
        const { pdu, version } = await this.buildFromTemplate(server, roomId, userId, 'join', full);
        const res = await this.p.remote.request(
          server,
          'PUT',
          `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(pdu.eventId)}`,
          wireJson(pdu.json),
          { timeoutMs: 60_000 },
        );
        await this.persistJoin(server, roomId, version, pdu, res);
        return true;
      } catch (e) {
        lastError = e;
        this.ctx.logger.debug('federation: join through a server failed', { server, roomId, error: e });
        // A refusal by the room itself (banned, invite only …) is the answer; another server would say the same.
        if (e instanceof RemoteError && e.status === 403) break;
        if (e instanceof MatrixErrorClass) break;
      }
    }
    throw clientError(lastError, `Joining ${roomId}`);
  }

  /**
   * The send_join answer: the state before the join and the auth chain are checked (steps 1–4 on each event), the
   * join is authorised against that state, and the room is written here in one transaction.
   */
  private async persistJoin(origin: string, roomId: string, version: RoomVersion, ownJoin: Pdu, res: JsonObject): Promise<void> {
    const stateJson = objectList(res, 'state', 20_000);
    const chainJson = objectList(res, 'auth_chain', 50_000);
    // The resident may return the event with its own signature added (restricted joins): same ID, our signature kept.
    let join = ownJoin;
    if (isJsonObject(res.event)) {
      const c = await checkReceivedPdu(res.event, version, roomId);
      if (c.ok && c.value.pdu.eventId === ownJoin.eventId && (await hasValidSignature(c.value.pdu.json, version, this.ctx.serverName))) {
        join = c.value.pdu;
      }
    }
    const checked = await this.p.ingest.storeOutliers(origin, version, roomId, [...chainJson, ...stateJson]);
    const state: StateMap = new Map();
    const statePdus = new Map<string, Pdu>();
    for (const json of stateJson) {
      const id = pduFromJson(json, version);
      if (!id.ok) continue;
      const c = checked.get(id.pdu.eventId);
      if (!c || c.rejected !== undefined || c.pdu.stateKey === undefined) continue;
      state.set(stateKey(c.pdu.type, c.pdu.stateKey), c.pdu.eventId);
      statePdus.set(c.pdu.eventId, c.pdu);
    }
    if (!state.has(stateKey('m.room.create', ''))) throw new BadResponseError(`${origin} sent a room state without a create event`);
    const result = authorize(join, authStateFromEvents(statePdus.values()), version);
    if (!result.ok) throw forbidden(`The join is not allowed by the room's state: ${result.reason}`);

    const userId = join.sender;
    const memberKey = stateKey('m.room.member', userId);
    const pos = await this.p.rooms.runExclusive(roomId, () =>
      this.ctx.kv.write(async (tx) => {
        const existing = await tx.get<RoomRecord>(STORES.rooms, [roomId]);
        const before = await addStateGroup(tx, EMPTY_STATE_GROUP, state);
        const after = await addStateGroup(tx, before, new Map([[memberKey, join.eventId]]), state);
        // Timeline positions below the join, for the history backfilled on demand (history.ts).
        const floor = await reservePositions(tx, HISTORY_GAP);
        const p = await allocatePosition(tx);
        await tx.put(STORES.server, historyKey(roomId), { floor, joinEventId: join.eventId } satisfies HistoryRecord);
        const rec: EventRecord = { eventId: join.eventId, json: join.json, roomId, pos: p, stateBefore: before, stateAfter: after };
        await tx.put(STORES.events, [join.eventId], rec);
        await tx.put(STORES.roomTimeline, [roomId, p], join.eventId);
        await tx.put(STORES.stream, [p], { kind: 'event', roomId, eventId: join.eventId, userId, membership: 'join' } satisfies StreamEntry);
        // The room's current state is the state we were given plus our join.
        await tx.deleteRange(STORES.currentState, { prefix: [roomId] });
        await tx.deleteRange(STORES.roomMembers, { prefix: [roomId] });
        await tx.deleteRange(STORES.forwardExtremities, { prefix: [roomId] });
        const finalState = new Map(state).set(memberKey, join.eventId);
        for (const [k, id] of finalState) {
          const i = k.indexOf('\u0000');
          const type = k.slice(0, i);
          const sk = k.slice(i + 1);
          await tx.put(STORES.currentState, [roomId, type, sk], id);
          if (type !== 'm.room.member') continue;
          const ev = id === join.eventId ? join : statePdus.get(id);
          const membership = ev?.membership ?? 'leave';
          await tx.put(STORES.roomMembers, [roomId, sk], { membership, eventId: id } satisfies MemberRecord);
          if (domainOf(sk) === this.ctx.serverName) {
            await tx.put(STORES.userRooms, [sk, roomId], { membership, eventId: id, pos: p } satisfies UserRoomRecord);
          }
        }
        await tx.put(STORES.forwardExtremities, [roomId, join.eventId], true);
        let maxDepth = join.depth;
        for (const c of checked.values()) maxDepth = Math.max(maxDepth, c.pdu.depth);
        const room: RoomRecord = {
          roomId,
          version: version.id,
          createdTs: existing?.createdTs ?? this.ctx.clock.now(),
          lastPos: p,
          maxDepth,
          stateGroup: after,
        };
        await tx.put(STORES.rooms, [roomId], room);
        return p;
      }),
    );
    rememberRoomVersion(roomId, version);
    this.p.rooms.forgetHead(roomId);
    this.p.servers.invalidate(roomId);
    this.p.acls.invalidate(roomId);
    this.p.transport?.subscribe(roomId);
    this.ctx.notifier.notify(pos);
  }

  // ---- Invite

  async inviteRemote(principal: Principal, roomId: string, target: string, content: JsonObject): Promise<void> {
    const sender = principal.userId;
    const pdu = await this.p.rooms.prepareEvent(
      roomId,
      { sender, state: [['m.room.member', target]] },
      () => ({ type: 'm.room.member', stateKey: target, sender, content: { ...content, membership: 'invite' } }),
    );
    const { version, inviteState } = await this.ctx.kv.read(async (tx) => {
      const room = await tx.get<RoomRecord>(STORES.rooms, [roomId]);
      const inviteState = await strippedStateIn(tx, roomId);
      const me = await tx.get<string>(STORES.currentState, [roomId, 'm.room.member', sender]);
      const meRec = me === undefined ? undefined : await tx.get<EventRecord>(STORES.events, [me]);
      if (meRec) {
        inviteState.push({ type: 'm.room.member', state_key: sender, sender, content: isJsonObject(meRec.json.content) ? meRec.json.content : {} });
      }
      return { version: roomVersion(room?.version ?? '') ?? undefined, inviteState };
    });
    if (!version) throw notFound(`Unknown room ${roomId}`);
    const server = domainOf(target);
    let res: JsonObject;
    try {
      res = await this.p.remote.request(server, 'PUT', `/_matrix/federation/v2/invite/${enc(roomId)}/${enc(pdu.eventId)}`, {
        room_version: version.id,
        event: wireJson(pdu.json),
        invite_room_state: inviteState,
      });
    } catch (e) {
      throw clientError(e, `Inviting ${target}`);
    }
    // Their answer: the same event, now signed by their server too.
    if (!isJsonObject(res.event)) throw unknown(`${server} answered the invite without the event`, 502);
    const checked = await checkReceivedPdu(res.event, version, roomId);
    if (!checked.ok || checked.value.pdu.eventId !== pdu.eventId || checked.value.redacted) {
      throw unknown(`${server} answered the invite with another event`, 502);
    }
    if (!(await hasValidSignature(checked.value.pdu.json, version, server))) throw unknown(`${server} did not sign the invite`, 502);
    const outcome = await this.p.ingest.receiveChecked(this.ctx.serverName, checked.value, version, { fetchMissing: false });
    if (outcome.status !== 'accepted' && outcome.status !== 'known') throw forbidden(`The invite was not accepted: ${outcome.reason ?? outcome.status}`);
    if (outcome.status === 'accepted') await relay(this.p, roomId, [checked.value.pdu], { except: [server] });
  }

  // ---- Leave (reject an invite, withdraw a knock)

  async leaveRemote(principal: Principal, roomId: string, content: JsonObject): Promise<boolean> {
    const userId = principal.userId;
    const ur = await this.ctx.kv.read((tx) => tx.get<UserRoomRecord>(STORES.userRooms, [userId, roomId]));
    if (!ur || (ur.membership !== 'invite' && ur.membership !== 'knock')) return false;
    const candidates = await this.candidates(userId, roomId, []);
    for (const server of candidates) {
      try {
        const { pdu } = await this.buildFromTemplate(server, roomId, userId, 'leave', content);
        await this.p.remote.request(server, 'PUT', `/_matrix/federation/v2/send_leave/${enc(roomId)}/${enc(pdu.eventId)}`, wireJson(pdu.json));
        await this.resident.storeOutOfBandMembership(userId, roomId, pdu, { prev_content: { membership: ur.membership } });
        return true;
      } catch (e) {
        this.ctx.logger.debug('federation: leave through a server failed', { server, roomId, error: e });
      }
    }
    // Nobody could be reached: reject locally (the inviter's server will not hear of it, as in Synapse).
    const version = roomVersion('10')!;
    const local = await buildEvent(
      {
        type: 'm.room.member',
        room_id: roomId,
        sender: userId,
        state_key: userId,
        content: { ...content, membership: 'leave' },
        prev_events: [],
        auth_events: [],
        depth: 1,
        origin_server_ts: this.ctx.clock.now(),
      },
      version,
      this.ctx.serverName,
      this.ctx.identity.key,
    );
    await this.resident.storeOutOfBandMembership(userId, roomId, local, { prev_content: { membership: ur.membership }, out_of_band_membership: true });
    return true;
  }

  // ---- Knock

  async knockRemote(principal: Principal, roomId: string, servers: readonly string[], content: JsonObject): Promise<boolean> {
    const userId = principal.userId;
    const candidates = await this.candidates(userId, roomId, servers);
    if (candidates.length === 0) return false;
    const full = { ...(await this.profileContent(userId)), ...content, membership: 'knock' };
    let lastError: unknown;
    for (const server of candidates) {
      try {
        const { pdu } = await this.buildFromTemplate(server, roomId, userId, 'knock', full);
        const res = await this.p.remote.request(server, 'PUT', `/_matrix/federation/v1/send_knock/${enc(roomId)}/${enc(pdu.eventId)}`, wireJson(pdu.json));
        const state = Array.isArray(res.knock_room_state) ? res.knock_room_state.filter(isJsonObject).slice(0, 50) : [];
        await this.resident.storeOutOfBandMembership(userId, roomId, pdu, { knock_room_state: state, [VIA_KEY]: server });
        return true;
      } catch (e) {
        lastError = e;
        if ((e instanceof RemoteError && e.status === 403) || e instanceof MatrixErrorClass) break;
      }
    }
    throw clientError(lastError, `Knocking on ${roomId}`);
  }
}


