/**
 * Membership changes of local users: join, invite, leave, kick, ban, unban, knock, forget — each one m.room.member
 * event through the rooms pipeline (rooms.ts), with the auth rules deciding what is allowed. This file adds what
 * the rules do not cover: resolving aliases, the checks the endpoints' own errors name (kick a non-member, unban
 * someone not banned, forget a joined room), profiles on member events, restricted joins, guests.
 *
 * Spec: shared/matrix-spec/content/client-server-api/_index.md#room-membership (#joining-rooms, #leaving-rooms,
 * #banning-users-in-a-room, #knocking-on-rooms, #restricted-rooms), modules/guest_access.md; data/api/client-server/
 * {joining,inviting,leaving,kicking,banning,knocking}.yaml; Synapse's RoomMemberHandler where the spec is silent
 * (profile fields on join/invite/knock only, deduplication of unchanged member events).
 *
 * Rooms this server does not hold (or no longer follows) and users of other servers go through federation
 * (`RoomsService.federation`, src/federation/membership.ts): remote joins, invites, leaves and knocks. Without it,
 * those requests get a clear 404 / 403 rather than an attempt.
 */
import type { Principal } from '../api/endpoint.js';
import {
  badState,
  forbidden,
  guestAccessForbidden,
  invalidParam,
  notFound,
  serverNotTrusted,
  unknown,
} from '../api/errors.js';
import { powerLevelOf, powerLevelsFrom, roomCreators } from '../core/auth/power-levels.js';
import { isValidRoomId, isValidUserId, parseRoomAlias } from '../core/identifiers.js';
import type { JsonObject } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import { STORES } from '../storage/schema.js';
import type { MemberRecord, RoomRecord } from '../storage/records.js';
import {
  currentStateEvent,
  membershipOf,
  pduOf,
  roomMembers,
  roomVersionOf,
  userRooms,
} from './event-store.js';
import { resolveAliasInTx } from './aliases.js';
import type { RoomHead, RoomsService } from './rooms.js';

/** What federation adds to the membership flows (implemented in src/federation/membership.ts). */
export interface RoomsFederation {
  /** Whether the room is held here with a local user joined, so its events can be built here. */
  isResident(roomId: string): Promise<boolean>;
  /** A room alias of another server: its room ID and servers to join through (404 when unknown). */
  resolveAlias(alias: string): Promise<{ roomId: string; servers: string[] }>;
  /** Joins through another server (make_join/send_join). False when there is no server to ask. */
  joinRemote(principal: Principal, roomId: string, servers: readonly string[], content: JsonObject): Promise<boolean>;
  /** Invites a user of another server (invite v2: their server signs the event too). */
  inviteRemote(principal: Principal, roomId: string, target: string, content: JsonObject): Promise<void>;
  /** Rejects an invite or withdraws a knock through another server. False when there is nothing to do remotely. */
  leaveRemote(principal: Principal, roomId: string, content: JsonObject): Promise<boolean>;
  /** Knocks through another server (make_knock/send_knock). False when there is no server to ask. */
  knockRemote(principal: Principal, roomId: string, servers: readonly string[], content: JsonObject): Promise<boolean>;
}

function serverOf(id: string): string {
  return id.slice(id.indexOf(':') + 1);
}

function withReason(content: JsonObject, reason: unknown): JsonObject {
  if (typeof reason === 'string') content.reason = reason;
  return content;
}

export class MembershipOps {
  constructor(private readonly rooms: RoomsService) {}

  private get ctx() {
    return this.rooms.ctx;
  }

  /** A room ID, or a local alias resolved to one. 400 for neither; 404 for an unknown or remote alias. */
  async resolveRoom(roomIdOrAlias: string): Promise<string> {
    return (await this.resolveRoomAndServers(roomIdOrAlias)).roomId;
  }

  /** A room ID and, for an alias of another server, the servers its directory names (federation). */
  private async resolveRoomAndServers(roomIdOrAlias: string): Promise<{ roomId: string; servers: string[] }> {
    if (roomIdOrAlias.startsWith('#')) {
      const parsed = parseRoomAlias(roomIdOrAlias);
      const fed = this.rooms.federation;
      if (parsed.ok && parsed.serverName !== this.ctx.serverName && fed) return fed.resolveAlias(roomIdOrAlias);
    }
    return { roomId: await this.resolveLocal(roomIdOrAlias), servers: [] };
  }

  private async resolveLocal(roomIdOrAlias: string): Promise<string> {
    if (roomIdOrAlias.startsWith('!')) {
      if (!isValidRoomId(roomIdOrAlias)) throw invalidParam('roomIdOrAlias', 'is not a valid room ID');
      return roomIdOrAlias;
    }
    if (!roomIdOrAlias.startsWith('#')) throw invalidParam('roomIdOrAlias', 'must be a room ID or a room alias');
    const parsed = parseRoomAlias(roomIdOrAlias);
    if (!parsed.ok) throw invalidParam('roomIdOrAlias', parsed.reason);
    if (parsed.serverName !== this.ctx.serverName) {
      throw notFound(`Room alias ${roomIdOrAlias} is on another server; federation is not available yet`);
    }
    const rec = await this.ctx.kv.read((tx) => resolveAliasInTx(tx, roomIdOrAlias));
    if (!rec) throw notFound(`Room alias ${roomIdOrAlias} not found`);
    return rec.roomId;
  }

  /** A target user for invite/kick/ban/unban: a valid user ID (400 otherwise). */
  private checkTarget(userId: unknown): string {
    if (typeof userId !== 'string' || !isValidUserId(userId)) throw invalidParam('user_id', 'is not a valid user ID');
    return userId;
  }

  /**
   * A room this server does not hold: joining it would need federation (a later issue). 404 M_NOT_FOUND, as for a
   * room that does not exist.
   */
  private async requireLocalRoom(roomId: string): Promise<void> {
    if (this.rooms.hasCachedHead(roomId)) return; // the pipeline holds its head: the room is here, no read needed
    const room = await this.ctx.kv.read((tx) => tx.get<RoomRecord>(STORES.rooms, [roomId]));
    if (!room) throw notFound(`Room ${roomId} is not known to this server (joining rooms elsewhere needs federation, which is not available yet)`);
  }

  /**
   * POST /join/{roomIdOrAlias} and POST /rooms/{roomId}/join. Returns the room ID. `via` (the `via` and
   * `server_name` query parameters) names servers to join through when the room is not held here.
   */
  async join(principal: Principal, roomIdOrAlias: string, body: JsonObject, via: readonly string[] = []): Promise<string> {
    const { roomId, servers } = await this.resolveRoomAndServers(roomIdOrAlias);
    if (body.third_party_signed !== undefined) {
      throw serverNotTrusted('Third-party invites need an identity server, and this server trusts none');
    }
    const fed = this.rooms.federation;
    if (fed && !(await fed.isResident(roomId))) {
      if (principal.isGuest) throw guestAccessForbidden('Guests may not join rooms on other servers');
      const content = withReason({ membership: 'join' }, body.reason);
      if (await fed.joinRemote(principal, roomId, [...via, ...servers], content)) return roomId;
    }
    await this.requireLocalRoom(roomId);
    const user = principal.userId;
    const authoriser = await this.restrictedAuthoriser(roomId, user);
    await this.rooms.submit(
      roomId,
      {
        sender: user,
        users: [user],
        state: [['m.room.guest_access', ''], ...(authoriser ? ([['m.room.member', authoriser]] as const) : [])],
      },
      (head) => {
        if (principal.isGuest && head.get('m.room.guest_access', '')?.content.guest_access !== 'can_join') {
          throw guestAccessForbidden('Guests may not join this room');
        }
        const content = withReason({ membership: 'join', ...head.profileOf(user) }, body.reason);
        const current = head.membership(user);
        // Only a join the join rule alone would refuse needs an authorising member (restricted rooms, v8+).
        if (authoriser && current !== 'join' && current !== 'invite') content.join_authorised_via_users_server = authoriser;
        return { type: 'm.room.member', stateKey: user, sender: user, content };
      },
    );
    return roomId;
  }

  /**
   * Restricted rooms (spec #restricted-rooms): when the join rule is restricted or knock_restricted and the user is
   * joined to one of the rooms it allows, a local joined member who may invite, to name in
   * join_authorised_via_users_server. Undefined otherwise (the auth rules then decide on the join rule alone).
   */
  private async restrictedAuthoriser(roomId: string, userId: string): Promise<string | undefined> {
    // The common case from the pipeline's cache, no read: a join rule that is not restricted needs no authoriser.
    const cached = this.rooms.cachedState(roomId, 'm.room.join_rules', '');
    const rule = cached?.content.join_rule;
    if (cached === null || (cached && rule !== 'restricted' && rule !== 'knock_restricted')) return undefined;
    return this.ctx.kv.read(async (tx) => {
      const jr = await currentStateEvent(tx, roomId, 'm.room.join_rules', '');
      const c = jr && !jr.redactedBy && isJsonObject(jr.json.content) ? jr.json.content : undefined;
      if (!c || (c.join_rule !== 'restricted' && c.join_rule !== 'knock_restricted') || !Array.isArray(c.allow)) return undefined;
      const allowed = c.allow
        .filter((a): a is JsonObject => isJsonObject(a) && a.type === 'm.room_membership' && typeof a.room_id === 'string')
        .map((a) => a.room_id as string);
      if (allowed.length === 0) return undefined;
      const mine = await tx.getMany<MemberRecord>(
        STORES.roomMembers,
        allowed.map((r) => [r, userId]),
      );
      if (!mine.some((m) => m?.membership === 'join')) return undefined;
      const version = await roomVersionOf(tx, roomId);
      if (!version) return undefined;
      const [members, plRec, createRec] = await Promise.all([
        roomMembers(tx, roomId),
        currentStateEvent(tx, roomId, 'm.room.power_levels', ''),
        currentStateEvent(tx, roomId, 'm.room.create', ''),
      ]);
      const pl = plRec ? powerLevelsFrom(pduOf(plRec, version), version) : undefined;
      const creators = roomCreators(createRec ? pduOf(createRec, version) : undefined, version);
      const needed = pl?.invite ?? 0;
      let best: { userId: string; level: number } | undefined;
      for (const [u, m] of members) {
        if (m.membership !== 'join' || serverOf(u) !== this.ctx.serverName) continue;
        const level = powerLevelOf(u, pl, creators, version);
        if (level >= needed && (!best || level > best.level)) best = { userId: u, level };
      }
      return best?.userId;
    });
  }

  /** POST /rooms/{roomId}/invite (user_id form; the third-party form needs an identity server). */
  async invite(principal: Principal, roomId: string, body: JsonObject): Promise<void> {
    if (body.user_id === undefined && (body.medium !== undefined || body.address !== undefined)) {
      throw serverNotTrusted('Third-party invites need an identity server, and this server trusts none');
    }
    const target = this.checkTarget(body.user_id);
    if (serverOf(target) !== this.ctx.serverName) {
      const fed = this.rooms.federation;
      if (fed) return fed.inviteRemote(principal, roomId, target, withReason({ membership: 'invite' }, body.reason));
      // Synapse answers a federation destination it may not contact with 403 M_FORBIDDEN too.
      throw forbidden(`Cannot invite ${target}: federation with other servers is not available yet`);
    }
    const exists = await this.ctx.kv.read((tx) => tx.get<{ deactivated?: boolean }>(STORES.users, [target]));
    if (!exists || exists.deactivated) throw notFound(`Unknown user ${target}`);
    await this.rooms.submit(
      roomId,
      { sender: principal.userId, users: [target], state: [['m.room.member', target]] },
      (head) => ({
        type: 'm.room.member',
        stateKey: target,
        sender: principal.userId,
        content: withReason({ membership: 'invite', ...head.profileOf(target) }, body.reason),
      }),
    );
  }

  /** POST /rooms/{roomId}/leave: leaves, or rejects an invite, or withdraws a knock. */
  async leave(principal: Principal, roomId: string, body: JsonObject): Promise<void> {
    const user = principal.userId;
    const fed = this.rooms.federation;
    if (fed && !(await fed.isResident(roomId))) {
      if (await fed.leaveRemote(principal, roomId, withReason({ membership: 'leave' }, body.reason))) return;
    }
    await this.rooms.submit(roomId, { sender: user }, () => ({
      type: 'm.room.member',
      stateKey: user,
      sender: user,
      content: withReason({ membership: 'leave' }, body.reason),
    }));
  }

  /** POST /rooms/{roomId}/kick: the target must be in the room (joined, invited or knocking). */
  async kick(principal: Principal, roomId: string, body: JsonObject): Promise<void> {
    const target = this.checkTarget(body.user_id);
    await this.rooms.submit(roomId, { sender: principal.userId, state: [['m.room.member', target]] }, (head) => {
      const m = head.membership(target);
      if (m !== 'join' && m !== 'invite' && m !== 'knock') throw forbidden(`${target} is not in the room`);
      return this.memberDraft(head, principal.userId, target, withReason({ membership: 'leave' }, body.reason));
    });
  }

  /** POST /rooms/{roomId}/ban */
  async ban(principal: Principal, roomId: string, body: JsonObject): Promise<void> {
    const target = this.checkTarget(body.user_id);
    await this.rooms.submit(roomId, { sender: principal.userId, state: [['m.room.member', target]] }, (head) =>
      this.memberDraft(head, principal.userId, target, withReason({ membership: 'ban' }, body.reason)),
    );
  }

  /** POST /rooms/{roomId}/unban: 400 M_BAD_STATE when the target is not banned (the spec's own example). */
  async unban(principal: Principal, roomId: string, body: JsonObject): Promise<void> {
    const target = this.checkTarget(body.user_id);
    await this.rooms.submit(roomId, { sender: principal.userId, state: [['m.room.member', target]] }, (head) => {
      if (head.membership(target) !== 'ban') throw badState(`${target} is not banned`);
      return this.memberDraft(head, principal.userId, target, withReason({ membership: 'leave' }, body.reason));
    });
  }

  private memberDraft(_head: RoomHead, sender: string, target: string, content: JsonObject) {
    return { type: 'm.room.member', stateKey: target, sender, content };
  }

  /** POST /knock/{roomIdOrAlias}. Returns the room ID. `via` as for `join`. */
  async knock(principal: Principal, roomIdOrAlias: string, body: JsonObject, via: readonly string[] = []): Promise<string> {
    const { roomId, servers } = await this.resolveRoomAndServers(roomIdOrAlias);
    const fed = this.rooms.federation;
    if (fed && !(await fed.isResident(roomId))) {
      const content = withReason({ membership: 'knock' }, body.reason);
      if (await fed.knockRemote(principal, roomId, [...via, ...servers], content)) return roomId;
    }
    await this.requireLocalRoom(roomId);
    const user = principal.userId;
    await this.rooms.submit(roomId, { sender: user, users: [user] }, (head) => ({
      type: 'm.room.member',
      stateKey: user,
      sender: user,
      content: withReason({ membership: 'knock', ...head.profileOf(user) }, body.reason),
    }));
    return roomId;
  }

  /**
   * POST /rooms/{roomId}/forget: the room leaves the user's room list (user_rooms), so /sync and /joined_rooms stop
   * listing it and its history is no longer readable. 400 while joined, invited or knocking (leaving.yaml).
   */
  async forget(principal: Principal, roomId: string): Promise<void> {
    const user = principal.userId;
    await this.ctx.kv.write(async (tx) => {
      const [room, member] = await Promise.all([tx.get(STORES.rooms, [roomId]), membershipOf(tx, roomId, user)]);
      if (!room) throw notFound(`Unknown room ${roomId}`);
      if (member && member.membership !== 'leave' && member.membership !== 'ban') {
        throw unknown('The user has not left the room', 400);
      }
      await tx.delete(STORES.userRooms, [user, roomId]);
    });
  }

  // ---- Hooks of the accounts service

  /** After a deactivation: leave every room, reject every invite, withdraw every knock. */
  async leaveAll(userId: string): Promise<void> {
    const rooms = await this.ctx.kv.read((tx) => userRooms(tx, userId));
    for (const [roomId, r] of rooms) {
      if (r.membership === 'leave' || r.membership === 'ban') continue;
      try {
        await this.rooms.submit(roomId, { sender: userId }, () => ({
          type: 'm.room.member',
          stateKey: userId,
          sender: userId,
          content: { membership: 'leave' },
        }));
      } catch (e) {
        this.ctx.logger.warn('could not leave a room on deactivation', { userId, roomId, error: e });
      }
    }
  }

  /** After a profile change: a new member event with the new displayname/avatar_url in every joined room. */
  async refreshProfile(userId: string): Promise<void> {
    const rooms = await this.ctx.kv.read((tx) => userRooms(tx, userId, 'join'));
    for (const [roomId] of rooms) {
      try {
        await this.rooms.submit(roomId, { sender: userId, users: [userId] }, (head) => {
          const current = head.get('m.room.member', userId);
          if (!current || current.membership !== 'join') return { existing: current?.eventId ?? '' };
          // Keep the other fields of the member event (as Synapse does); the reason and the restricted-join authoriser
          // belong to the old change.
          const { displayname: _d, avatar_url: _a, reason: _r, join_authorised_via_users_server: _j, ...rest } = current.content;
          return {
            type: 'm.room.member',
            stateKey: userId,
            sender: userId,
            content: { ...rest, membership: 'join', ...head.profileOf(userId) },
          };
        });
      } catch (e) {
        this.ctx.logger.warn('could not update a member event after a profile change', { userId, roomId, error: e });
      }
    }
  }
}
