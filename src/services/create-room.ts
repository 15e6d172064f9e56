/**
 * POST /createRoom: the whole initial event sequence is built and authorised in memory, then written in ONE write
 * transaction (with the alias and the directory entry), so a room is never half created.
 *
 * Spec: shared/matrix-spec/data/api/client-server/create_room.yaml (the event order 1–8, presets, power levels per
 * room version), content/client-server-api/_index.md#creation, rooms/v12.md (room ID from the create event,
 * additional_creators, creators not in power levels, tombstone level above state_default), modules/dm.md
 * (`is_direct`).
 */
import type { Principal } from '../api/endpoint.js';
import {
  badJson,
  forbidden,
  invalidParam,
  invalidRoomState,
  notFound,
  roomInUse,
  serverNotTrusted,
  unknown,
  unsupportedRoomVersion,
} from '../api/errors.js';
import { authStateKeysFor } from '../core/auth/auth-events.js';
import { authorize } from '../core/auth/rules.js';
import type { Pdu, StateKey } from '../core/event.js';
import { stateKey } from '../core/event.js';
import { roomIdFromCreateEventId } from '../core/event-id.js';
import { encodeBase64Url } from '../core/base64.js';
import { isValidRoomAlias, isValidUserId } from '../core/identifiers.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { RoomVersion } from '../core/room-versions.js';
import { DEFAULT_ROOM_VERSION, roomVersion } from '../core/room-versions.js';
import type { RoomRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import { EMPTY_STATE_GROUP } from '../storage/state-groups.js';
import type { UserRecord } from './accounts.js';
import { claimAliasInTx } from './aliases.js';
import { publishRoomInTx } from './directory.js';
import { withPrevState } from './event-store.js';
import type { RoomsService } from './rooms.js';

type Preset = 'private_chat' | 'trusted_private_chat' | 'public_chat';

interface StateDraft {
  type: string;
  stateKey: string;
  content: JsonObject;
}

/** Last create-event timestamp per process: v12 room IDs are the create event's hash, so two must never match. */
let lastCreateTs = 0;

function uniqueCreateTs(now: number): number {
  lastCreateTs = Math.max(now, lastCreateTs + 1);
  return lastCreateTs;
}

function randomRoomLocalpart(): string {
  // 18 URL-safe characters (108 random bits), letters only where it matters: any localpart is valid.
  return encodeBase64Url(globalThis.crypto.getRandomValues(new Uint8Array(14))).slice(0, 18);
}

function optionalObject(body: JsonObject, key: string): JsonObject | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (!isJsonObject(v)) throw badJson(`'${key}' must be an object`);
  return v;
}

function optionalString(body: JsonObject, key: string): string | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw badJson(`'${key}' must be a string`);
  return v;
}

/**
 * The default m.room.power_levels content (Synapse's defaults; create_room.yaml step 3): the creator gets 100 in
 * v1–v11 (creators have infinite power in v12 and must not be listed); private presets let anyone invite.
 */
function defaultPowerLevels(version: RoomVersion, creator: string, preset: Preset, extraOps: readonly string[]): JsonObject {
  const users: JsonObject = {};
  if (!version.privilegedCreators) {
    users[creator] = 100;
    for (const u of extraOps) users[u] = 100;
  }
  return {
    users,
    users_default: 0,
    events: {
      'm.room.name': 50,
      'm.room.power_levels': 100,
      'm.room.history_visibility': 100,
      'm.room.canonical_alias': 50,
      'm.room.avatar': 50,
      // v12: "MUST explicitly be higher than state_default" — room creators alone may upgrade by default.
      'm.room.tombstone': version.privilegedCreators ? 150 : 100,
      'm.room.server_acl': 100,
      'm.room.encryption': 100,
    },
    events_default: 0,
    state_default: 50,
    ban: 50,
    kick: 50,
    redact: 50,
    invite: preset === 'public_chat' ? 50 : 0,
  };
}

function presetState(preset: Preset): StateDraft[] {
  const pub = preset === 'public_chat';
  return [
    { type: 'm.room.join_rules', stateKey: '', content: { join_rule: pub ? 'public' : 'invite' } },
    { type: 'm.room.history_visibility', stateKey: '', content: { history_visibility: 'shared' } },
    { type: 'm.room.guest_access', stateKey: '', content: { guest_access: pub ? 'forbidden' : 'can_join' } },
  ];
}

function readInitialState(body: JsonObject): StateDraft[] {
  const list = body.initial_state;
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw badJson("'initial_state' must be an array");
  return list.map((item, i): StateDraft => {
    if (!isJsonObject(item) || typeof item.type !== 'string' || !isJsonObject(item.content)) {
      throw badJson(`initial_state[${i}] must have a string 'type' and an object 'content'`);
    }
    const sk = item.state_key ?? '';
    if (typeof sk !== 'string') throw badJson(`initial_state[${i}].state_key must be a string`);
    return { type: item.type, stateKey: sk, content: item.content };
  });
}

function readUserList(v: JsonValue | undefined, field: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw badJson(`'${field}' must be an array`);
  const out: string[] = [];
  v.forEach((u, i) => {
    if (typeof u !== 'string' || !isValidUserId(u)) throw invalidParam(`${field}[${i}]`, 'is not a user ID');
    if (!out.includes(u)) out.push(u);
  });
  return out;
}

/** POST /createRoom. */
export async function createRoom(rooms: RoomsService, principal: Principal, body: JsonObject): Promise<{ room_id: string }> {
  const { ctx } = rooms;
  const creator = principal.userId;

  // ---- Validate the request (the schema has checked the types the spec declares).
  const versionId = optionalString(body, 'room_version') ?? DEFAULT_ROOM_VERSION;
  const version = roomVersion(versionId);
  if (!version) throw unsupportedRoomVersion(`Room version ${JSON.stringify(versionId)} is not supported`);
  const visibility = optionalString(body, 'visibility') ?? 'private';
  const preset = (optionalString(body, 'preset') ?? (visibility === 'public' ? 'public_chat' : 'private_chat')) as Preset;
  const creationContent = optionalObject(body, 'creation_content') ?? {};
  const plOverride = optionalObject(body, 'power_level_content_override');
  const initialState = readInitialState(body);
  const name = optionalString(body, 'name');
  const topic = optionalString(body, 'topic');
  const isDirect = body.is_direct === true;

  let alias: string | undefined;
  const aliasName = optionalString(body, 'room_alias_name');
  if (aliasName !== undefined) {
    // Synapse refuses whitespace and ':' in the local part.
    if (aliasName === '' || /[\s:]/.test(aliasName)) throw invalidParam('room_alias_name', 'contains invalid characters');
    alias = `#${aliasName}:${ctx.serverName}`;
    if (!isValidRoomAlias(alias)) throw invalidParam('room_alias_name', 'makes an invalid or too long alias');
  }

  const allInvites = readUserList(body.invite, 'invite').filter((u) => u !== creator);
  // Users of other servers are invited over federation once the room exists (their server signs the invite).
  const isRemote = (u: string) => u.slice(u.indexOf(':') + 1) !== ctx.serverName;
  const remoteInvites = allInvites.filter(isRemote);
  const invites = allInvites.filter((u) => !isRemote(u));
  for (const u of remoteInvites) {
    // Without federation they cannot be reached (Synapse answers a denied federation destination with 403 too).
    if (!rooms.federation) throw forbidden(`Cannot invite ${u}: federation with other servers is not available yet`);
  }
  if (Array.isArray(body.invite_3pid) && body.invite_3pid.length > 0) {
    throw serverNotTrusted('Third-party invites need an identity server, and this server trusts none');
  }

  let additionalCreators: string[] = [];
  if (version.privilegedCreators) {
    additionalCreators = readUserList(creationContent.additional_creators, 'creation_content.additional_creators');
    // trusted_private_chat: the invitees become creators too (create_room.yaml, creation_content).
    if (preset === 'trusted_private_chat') for (const u of allInvites) if (!additionalCreators.includes(u)) additionalCreators.push(u);
    additionalCreators = additionalCreators.filter((u) => u !== creator);
  }

  // ---- Read: profiles and existence of the users involved, the alias.
  const userIds = [creator, ...invites];
  const { users, aliasTaken } = await ctx.kv.read(async (tx) => {
    const [recs, aliasRec] = await Promise.all([
      tx.getMany<UserRecord>(
        STORES.users,
        userIds.map((u) => [u]),
      ),
      alias ? tx.get(STORES.aliases, [alias]) : undefined,
    ]);
    return { users: recs, aliasTaken: aliasRec !== undefined };
  });
  if (aliasTaken) throw roomInUse(`The alias ${alias} is already in use`);
  invites.forEach((u, i) => {
    const rec = users[i + 1];
    if (!rec || rec.deactivated) throw notFound(`Unknown user ${u}`);
  });
  const profile = (rec: UserRecord | undefined): JsonObject => {
    const out: JsonObject = {};
    if (rec && typeof rec.profile.displayname === 'string') out.displayname = rec.profile.displayname;
    if (rec && typeof rec.profile.avatar_url === 'string') out.avatar_url = rec.profile.avatar_url;
    return out;
  };

  // ---- Build the sequence (create_room.yaml steps 1–8), authorising each event against the state so far.
  const now = uniqueCreateTs(ctx.clock.now());
  let roomId = version.roomIdFromCreateEvent ? '' : `!${randomRoomLocalpart()}:${ctx.serverName}`;
  const state = new Map<StateKey, Pdu>();
  const byId = new Map<string, Pdu>();
  const events: Pdu[] = [];
  const authState = { get: (t: string, k: string) => state.get(stateKey(t, k)) };

  const add = async (type: string, key: string, content: JsonObject): Promise<void> => {
    const subject = { type, stateKey: key, sender: creator, content };
    const authIds: string[] = [];
    for (const [t, k] of authStateKeysFor(subject, version)) {
      const ev = state.get(stateKey(t, k));
      if (ev) authIds.push(ev.eventId);
    }
    const prev = events[events.length - 1];
    const proto: JsonObject = {
      type,
      room_id: roomId,
      sender: creator,
      state_key: key,
      content,
      prev_events: prev ? [prev.eventId] : [],
      auth_events: authIds,
      depth: events.length + 1,
      origin_server_ts: now,
    };
    let pdu = await rooms.sign(proto, version, (id) => byId.get(id)?.json);
    if (type === 'm.room.create' && version.roomIdFromCreateEvent) {
      const derived = roomIdFromCreateEventId(pdu.eventId);
      if (!derived) throw unknown('Could not derive the room ID from the create event');
      roomId = derived;
    }
    const result = authorize(pdu, authState, version);
    if (!result.ok) throw invalidRoomState(`The initial state is not allowed (${type} ${JSON.stringify(key)}): ${result.reason}`);
    pdu = withPrevState(pdu, state.get(stateKey(type, key)));
    state.set(stateKey(type, key), pdu);
    byId.set(pdu.eventId, pdu);
    events.push(pdu);
  };

  const initialKeys = new Set(initialState.map((s) => stateKey(s.type, s.stateKey)));
  const plKey = stateKey('m.room.power_levels', '');

  // 1. m.room.create
  const createContent: JsonObject = { ...creationContent, room_version: version.id };
  if (version.implicitRoomCreator) delete createContent.creator;
  else createContent.creator = creator;
  if (version.privilegedCreators) {
    if (additionalCreators.length > 0) createContent.additional_creators = additionalCreators;
    else delete createContent.additional_creators;
  }
  await add('m.room.create', '', createContent);
  // 2. The creator joins.
  await add('m.room.member', creator, { membership: 'join', ...profile(users[0]) });
  // 3. Power levels: the defaults (or initial_state's), with the override on top.
  const fromInitial = initialState.filter((s) => s.type === 'm.room.power_levels' && s.stateKey === '').pop();
  const trustedOps = preset === 'trusted_private_chat' ? allInvites : [];
  const plContent: JsonObject = { ...(fromInitial?.content ?? defaultPowerLevels(version, creator, preset, trustedOps)), ...(plOverride ?? {}) };
  await add('m.room.power_levels', '', plContent);
  // 4. The canonical alias.
  if (alias) await add('m.room.canonical_alias', '', { alias });
  // 5. The preset's state, unless initial_state sets it.
  for (const s of presetState(preset)) {
    if (!initialKeys.has(stateKey(s.type, s.stateKey))) await add(s.type, s.stateKey, s.content);
  }
  // 6. initial_state, in order (power levels were step 3; name and topic below win over these).
  for (const s of initialState) {
    const k = stateKey(s.type, s.stateKey);
    if (k === plKey) continue;
    if (name !== undefined && k === stateKey('m.room.name', '')) continue;
    if (topic !== undefined && k === stateKey('m.room.topic', '')) continue;
    await add(s.type, s.stateKey, s.content);
  }
  // 7. Name and topic (a text/plain topic, with the m.topic form of v1.15).
  if (name !== undefined) await add('m.room.name', '', { name });
  if (topic !== undefined) {
    await add('m.room.topic', '', { topic, 'm.topic': { 'm.text': [{ body: topic, mimetype: 'text/plain' }] } });
  }
  // 8. Invites.
  for (let i = 0; i < invites.length; i++) {
    const content: JsonObject = { membership: 'invite', ...profile(users[i + 1]) };
    if (isDirect) content.is_direct = true;
    await add('m.room.member', invites[i], content);
  }

  // ---- Write everything at once.
  const room: RoomRecord = {
    roomId,
    version: version.id,
    createdTs: now,
    lastPos: 0,
    maxDepth: 0,
    stateGroup: EMPTY_STATE_GROUP,
  };
  const { lastPos } = await ctx.kv.write(async (tx) => {
    if (await tx.get(STORES.rooms, [roomId])) throw unknown('Room ID collision; please retry');
    // Checked again here: another room may have taken the alias since the read.
    if (alias && !(await claimAliasInTx(tx, alias, roomId, creator))) throw roomInUse(`The alias ${alias} is already in use`);
    if (visibility === 'public') await publishRoomInTx(tx, roomId);
    return rooms.persist(
      tx,
      room,
      [],
      events.map((pdu) => ({ pdu })),
      { baseState: new Map() },
    );
  });
  // The whole state of the new room is known: the next events in it need no read.
  const stateIds = new Map<StateKey, string>();
  for (const [k, pdu] of state) stateIds.set(k, pdu.eventId);
  const last = events[events.length - 1];
  rooms.rememberHead({ room, version, extremities: [last.eventId], stateIds, knownKeys: new Set(), complete: true }, events);
  rooms.afterCommit(events, lastPos);
  for (const u of remoteInvites) {
    const content: JsonObject = { membership: 'invite' };
    if (isDirect) content.is_direct = true;
    try {
      await rooms.federation!.inviteRemote(principal, roomId, u, content);
    } catch (e) {
      // The room exists; the client can invite again (Synapse also creates the room before inviting).
      ctx.logger.warn('could not invite a remote user to a new room', { roomId, userId: u, error: e });
    }
  }
  return { room_id: roomId };
}
