/**
 * Builders for auth-rule tests: a room's state for a given room version, made of Pdus with fake event IDs
 * (authorisation never looks at hashes or signatures, except where a test adds them).
 */
import { Pdu } from '../../../../src/core/event.js';
import type { JsonObject, JsonValue } from '../../../../src/core/json.js';
import type { RoomVersion } from '../../../../src/core/room-versions.js';
import { ROOM_VERSIONS } from '../../../../src/core/room-versions.js';
import type { AuthResult, AuthState } from '../../../../src/core/auth/rules.js';

export const ALICE = '@alice:example.org'; // the creator
export const BOB = '@bob:example.org';
export const CAROL = '@carol:other.org';
export const DAVE = '@dave:third.org';

export const ALL_VERSIONS: RoomVersion[] = [...ROOM_VERSIONS.values()];
/** The room versions with (or without) a feature, for describe.each / it.each. */
export function versionsWhere(pred: (v: RoomVersion) => boolean): RoomVersion[] {
  return ALL_VERSIONS.filter(pred);
}
export function byId(...ids: string[]): RoomVersion[] {
  return ids.map((id) => {
    const v = ROOM_VERSIONS.get(id);
    if (!v) throw new Error(`no room version ${id}`);
    return v;
  });
}

let counter = 0;
/** A fresh fake event ID; v1–v2 IDs carry the sender's domain as the spec's `$local:domain` format does. */
export function fakeEventId(version: RoomVersion, sender: string): string {
  counter++;
  if (version.eventIdFormat === 'server') {
    const i = sender.indexOf(':');
    return `$e${counter}:${i < 0 ? 'example.org' : sender.slice(i + 1)}`;
  }
  return `$e${counter}`;
}

export interface EventFields {
  type: string;
  sender: string;
  state_key?: string;
  content?: JsonValue;
  prev_events?: JsonValue;
  auth_events?: JsonValue;
  redacts?: string;
  room_id?: string;
  signatures?: JsonValue;
  /** Set the event ID instead of making one up. */
  id?: string;
  /** Extra top-level keys. */
  extra?: JsonObject;
}

/** The default power levels of a test room: the spec's defaults, the creator at 100 (v12: creators are implicit). */
export function defaultPowerLevels(version: RoomVersion, users: Record<string, number> = {}): JsonObject {
  const u: JsonObject = version.privilegedCreators ? {} : { [ALICE]: 100 };
  for (const [k, v] of Object.entries(users)) u[k] = v;
  return {
    users: u,
    users_default: 0,
    events_default: 0,
    state_default: 50,
    ban: 50,
    kick: 50,
    redact: 50,
    invite: 0,
  };
}

export interface RoomOptions {
  /** The join rule of the m.room.join_rules event; null for no join rules event. Default 'invite'. */
  joinRule?: string | null;
  /** Power-levels content; null for no power-levels event. Default `defaultPowerLevels(version)`. */
  powerLevels?: JsonObject | null;
  /** Extra create-event content (e.g. m.federate, additional_creators). */
  createContent?: JsonObject;
}

/** A room's state as an AuthState, with helpers to make events in it and to change it. */
export class TestRoom implements AuthState {
  readonly version: RoomVersion;
  readonly create: Pdu;
  readonly roomId: string;
  private readonly state = new Map<string, Pdu>();

  constructor(version: RoomVersion, createContent: JsonObject = {}) {
    this.version = version;
    const content: JsonObject = version.implicitRoomCreator ? {} : { creator: ALICE };
    content.room_version = version.id;
    Object.assign(content, createContent);
    const createId = fakeEventId(version, ALICE);
    const json: JsonObject = {
      type: 'm.room.create',
      sender: ALICE,
      state_key: '',
      content,
      prev_events: [],
      auth_events: [],
      depth: 1,
      origin_server_ts: 0,
    };
    if (!version.roomIdFromCreateEvent) json.room_id = '!room:example.org';
    this.create = new Pdu(createId, json);
    this.roomId = version.roomIdFromCreateEvent ? '!' + createId.slice(1) : '!room:example.org';
    this.put(this.create);
  }

  get(type: string, stateKey: string): Pdu | undefined {
    return this.state.get(type + '\u0000' + stateKey);
  }

  /** Sets a state event (no auth check). */
  put(pdu: Pdu): Pdu {
    if (pdu.stateKey !== undefined) this.state.set(pdu.type + '\u0000' + pdu.stateKey, pdu);
    return pdu;
  }
  /** Removes a state entry. */
  remove(type: string, stateKey: string): void {
    this.state.delete(type + '\u0000' + stateKey);
  }
  /** A copy with the same state. */
  clone(): TestRoom {
    const copy = Object.create(TestRoom.prototype) as TestRoom;
    Object.assign(copy, { version: this.version, create: this.create, roomId: this.roomId, state: new Map(this.state) });
    return copy;
  }

  /** Makes an event in this room (not added to the state). */
  event(f: EventFields): Pdu {
    const json: JsonObject = {
      type: f.type,
      sender: f.sender,
      content: f.content ?? {},
      room_id: f.room_id ?? this.roomId,
      prev_events: f.prev_events ?? ['$prev'],
      auth_events: f.auth_events ?? [],
      depth: 10,
      origin_server_ts: 1000,
    };
    if (f.state_key !== undefined) json.state_key = f.state_key;
    if (f.redacts !== undefined) json.redacts = f.redacts;
    if (f.signatures !== undefined) json.signatures = f.signatures;
    if (f.extra) Object.assign(json, f.extra);
    return new Pdu(f.id ?? fakeEventId(this.version, f.sender), json);
  }

  /** An m.room.member event (not added). */
  memberEvent(sender: string, target: string, membership: string | undefined, extra: JsonObject = {}): Pdu {
    const content: JsonObject = { ...extra };
    if (membership !== undefined) content.membership = membership;
    return this.event({ type: 'm.room.member', sender, state_key: target, content });
  }
  /** Sets `target`'s membership in the state, as sent by `sender` (default: the target). */
  setMember(target: string, membership: string, sender: string = target, extra: JsonObject = {}): Pdu {
    return this.put(this.memberEvent(sender, target, membership, extra));
  }
  setPowerLevels(content: JsonObject): Pdu {
    return this.put(this.event({ type: 'm.room.power_levels', sender: ALICE, state_key: '', content }));
  }
  setJoinRule(rule: string, extra: JsonObject = {}): Pdu {
    return this.put(this.event({ type: 'm.room.join_rules', sender: ALICE, state_key: '', content: { join_rule: rule, ...extra } }));
  }
}

/** A room with create, the creator joined, power levels and join rules (see RoomOptions for the defaults). */
export function newRoom(version: RoomVersion, opts: RoomOptions = {}): TestRoom {
  const room = new TestRoom(version, opts.createContent);
  room.setMember(ALICE, 'join');
  const pl = opts.powerLevels === undefined ? defaultPowerLevels(version) : opts.powerLevels;
  if (pl !== null) room.setPowerLevels(pl);
  const rule = opts.joinRule === undefined ? 'invite' : opts.joinRule;
  if (rule !== null) room.setJoinRule(rule);
  return room;
}

/** For expect(): the reason of a rejection, or 'ok'. */
export function outcome(r: AuthResult): string {
  return r.ok ? 'ok' : `rejected: ${r.reason}`;
}

/** Asserts an allow (showing the reason when it was rejected). */
export function expectAllowed(r: AuthResult): void {
  if (!r.ok) throw new Error(`expected allow, got rejected: ${r.reason}`);
}
/** Asserts a rejection whose reason matches `reason`. */
export function expectRejected(r: AuthResult, reason: RegExp): void {
  if (r.ok) throw new Error(`expected rejection matching ${reason}, got allow`);
  if (!reason.test(r.reason)) throw new Error(`expected rejection matching ${reason}, got: ${r.reason}`);
}
