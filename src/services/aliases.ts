/**
 * Room aliases: the server's alias → room mapping, and the permission checks shared with the room directory.
 *
 * Spec: shared/matrix-spec/content/client-server-api/_index.md (#room-aliases), content/appendices.md
 * (#room-aliases grammar), data/api/client-server/directory.yaml.
 *
 * Only aliases on this server's name can be created, deleted or resolved; resolving another server's alias needs
 * the federation query (`/_matrix/federation/v1/query/directory`) and answers 404 M_NOT_FOUND until that exists.
 * Where the spec leaves room to choose, this does what Synapse does: only members may create an alias for a room;
 * an alias may be deleted by its creator or by a member with the power to send `m.room.canonical_alias`.
 */
import type { Principal } from '../api/endpoint.js';
import { MatrixError, forbidden, guestAccessForbidden, invalidParam, notFound } from '../api/errors.js';
import { powerLevelOf, powerLevelsFrom, requiredPowerLevel, roomCreators } from '../core/auth/power-levels.js';
import { isValidRoomId, parseRoomAlias } from '../core/identifiers.js';
import { isJsonObject } from '../core/json.js';
import { roomVersion } from '../core/room-versions.js';
import type { ReadTx, WriteTx } from '../storage/kv.js';
import { STORES } from '../storage/schema.js';
import type { ServiceContext } from './context.js';
import { currentStateEvent, getRoom, joinedMembers, membershipOf, pduOf } from './event-store.js';

/** aliases: [alias] → AliasRecord; room_aliases: [roomId, alias] → true */
export interface AliasRecord {
  roomId: string;
  /** Who created it (may delete it whatever their power in the room). */
  creator: string;
}

/** Reads an alias' mapping. */
export async function resolveAliasInTx(tx: ReadTx, alias: string): Promise<AliasRecord | undefined> {
  return tx.get<AliasRecord>(STORES.aliases, [alias]);
}

/** The room's local aliases, in key order. */
export async function roomAliasesInTx(tx: ReadTx, roomId: string): Promise<string[]> {
  const rows = await tx.range<boolean>(STORES.roomAliases, { prefix: [roomId] });
  return rows.map(([key]) => String(key[1]));
}

/**
 * Maps `alias` to `roomId` inside the caller's write transaction (also for createRoom's `room_alias_name`).
 * Returns false, writing nothing, when the alias is taken.
 */
export async function claimAliasInTx(tx: WriteTx, alias: string, roomId: string, creator: string): Promise<boolean> {
  if (await tx.get(STORES.aliases, [alias])) return false;
  const rec: AliasRecord = { roomId, creator };
  await tx.put(STORES.aliases, [alias], rec);
  await tx.put(STORES.roomAliases, [roomId, alias], true);
  return true;
}

/** 409 with M_UNKNOWN: the code the spec's example for a taken alias uses (directory.yaml, PUT 409). */
function aliasExists(alias: string): MatrixError {
  return new MatrixError(409, 'M_UNKNOWN', `Room alias ${alias} already exists`);
}

/**
 * Whether `userId` may change how the room is listed (its aliases, its directory visibility): a joined member
 * whose power level reaches what sending `m.room.canonical_alias` needs (Synapse's `check_can_change_room_list`).
 * Throws 403 when they are not joined.
 */
export async function canChangeRoomListing(tx: ReadTx, roomId: string, userId: string): Promise<boolean> {
  const member = await membershipOf(tx, roomId, userId);
  if (member?.membership !== 'join') throw forbidden('You are not in this room');
  const room = await getRoom(tx, roomId);
  const version = room ? roomVersion(room.version) : undefined;
  if (!version) return false;
  const [plRec, createRec] = await Promise.all([
    currentStateEvent(tx, roomId, 'm.room.power_levels', ''),
    currentStateEvent(tx, roomId, 'm.room.create', ''),
  ]);
  const pl = plRec ? powerLevelsFrom(pduOf(plRec, version), version) : undefined;
  const creators = roomCreators(createRec ? pduOf(createRec, version) : undefined, version);
  const mine = powerLevelOf(userId, pl, creators, version);
  return mine >= requiredPowerLevel('m.room.canonical_alias', true, pl ?? powerLevelsFrom(undefined, version));
}

export class AliasesService {
  constructor(private readonly ctx: ServiceContext) {}

  /** The alias, checked: valid grammar (400 M_INVALID_PARAM). */
  private parse(alias: string): { serverName: string } {
    const parts = parseRoomAlias(alias);
    if (!parts.ok) throw invalidParam('roomAlias', `is not a valid room alias: ${parts.reason}`);
    return parts;
  }

  /** GET /_matrix/client/v3/directory/room/{roomAlias} */
  async resolve(alias: string): Promise<{ room_id: string; servers: string[] }> {
    const { serverName } = this.parse(alias);
    if (serverName !== this.ctx.serverName) {
      throw notFound(`Room alias ${alias} not found: aliases of other servers cannot be resolved yet`);
    }
    return this.ctx.kv.read(async (tx) => {
      const rec = await resolveAliasInTx(tx, alias);
      if (!rec) throw notFound(`Room alias ${alias} not found`);
      // Servers that can help a client join: ours first, then those of the room's joined members.
      const servers = new Set([this.ctx.serverName]);
      for (const u of await joinedMembers(tx, rec.roomId)) servers.add(u.slice(u.indexOf(':') + 1));
      return { room_id: rec.roomId, servers: [...servers] };
    });
  }

  /** PUT /_matrix/client/v3/directory/room/{roomAlias} */
  async create(principal: Principal, alias: string, roomId: string): Promise<void> {
    if (principal.isGuest) throw guestAccessForbidden('Guests cannot create room aliases');
    const { serverName } = this.parse(alias);
    if (serverName !== this.ctx.serverName) throw invalidParam('roomAlias', `must be on this server (${this.ctx.serverName})`);
    if (!isValidRoomId(roomId)) throw invalidParam('room_id', 'is not a valid room ID');
    await this.ctx.kv.write(async (tx) => {
      if (!(await getRoom(tx, roomId))) throw notFound('Room not found');
      const member = await membershipOf(tx, roomId, principal.userId);
      if (member?.membership !== 'join') throw forbidden('You must be in the room to create an alias for it');
      if (!(await claimAliasInTx(tx, alias, roomId, principal.userId))) throw aliasExists(alias);
    });
  }

  /**
   * DELETE /_matrix/client/v3/directory/room/{roomAlias}
   *
   * The room's `m.room.canonical_alias` event is left as it is (the spec allows either); a client that wants it
   * updated sends the new event itself.
   */
  async delete(principal: Principal, alias: string): Promise<void> {
    if (principal.isGuest) throw guestAccessForbidden('Guests cannot delete room aliases');
    const { serverName } = this.parse(alias);
    if (serverName !== this.ctx.serverName) throw invalidParam('roomAlias', `must be on this server (${this.ctx.serverName})`);
    await this.ctx.kv.write(async (tx) => {
      const rec = await resolveAliasInTx(tx, alias);
      if (!rec) throw notFound(`Room alias ${alias} not found`);
      if (rec.creator !== principal.userId && !(await canChangeRoomListing(tx, rec.roomId, principal.userId))) {
        throw forbidden('You may not delete this alias');
      }
      await tx.delete(STORES.aliases, [alias]);
      await tx.delete(STORES.roomAliases, [rec.roomId, alias]);
    });
  }

  /**
   * GET /_matrix/client/v3/rooms/{roomId}/aliases — for joined members, or anyone while the room is world-readable.
   * An unknown room is 403 like a room one may not read (Synapse).
   */
  async localAliases(principal: Principal, roomId: string): Promise<string[]> {
    if (!isValidRoomId(roomId)) throw invalidParam('roomId', 'is not a valid room ID');
    return this.ctx.kv.read(async (tx) => {
      if (!(await getRoom(tx, roomId))) throw forbidden('You are not in this room');
      const member = await membershipOf(tx, roomId, principal.userId);
      if (member?.membership !== 'join') {
        const hv = await currentStateEvent(tx, roomId, 'm.room.history_visibility', '');
        const c = hv && !hv.redactedBy ? hv.json.content : undefined;
        if (!isJsonObject(c) || c.history_visibility !== 'world_readable') throw forbidden('You are not in this room');
      }
      return roomAliasesInTx(tx, roomId);
    });
  }
}
