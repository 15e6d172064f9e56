/**
 * Power levels as the authorisation rules read them, for every room version.
 *
 * Spec: shared/matrix-spec/content/server-server-api.md §Definitions (required power level, invite/kick/ban/redact
 * level), data/event-schemas/schema/m.room.power_levels.yaml (defaults), rooms/fragments/v1-stringy-power-levels.md
 * (v1–v9: values may be strings), rooms/fragments/v1-floaty-power-levels.md (v1–v5: values may be floats),
 * rooms/v10.md (integers only) and rooms/v12.md (room creators have infinite power).
 */
import type { Pdu } from '../event.js';
import type { JsonObject, JsonValue } from '../json.js';
import { isJsonObject } from '../json.js';
import type { RoomVersion } from '../room-versions.js';
import { isValidUserId } from '../identifiers.js';

/** The integer-valued top-level properties of m.room.power_levels content. */
export const POWER_LEVEL_KEYS = [
  'users_default',
  'events_default',
  'state_default',
  'ban',
  'redact',
  'kick',
  'invite',
] as const;
export type PowerLevelKey = (typeof POWER_LEVEL_KEYS)[number];

/** A power-levels content read with its defaults filled in. Creators' infinite power (v12) is not in here: ask
 *  `userPowerLevel`. */
export interface PowerLevels {
  readonly users: ReadonlyMap<string, number>;
  readonly usersDefault: number;
  readonly eventsDefault: number;
  readonly stateDefault: number;
  readonly ban: number;
  readonly kick: number;
  readonly invite: number;
  readonly redact: number;
  readonly events: ReadonlyMap<string, number>;
  readonly notifications: ReadonlyMap<string, number>;
}

// m.room.power_levels.yaml: state_default 50 and events_default 0 whether or not the room has a power-levels event;
// ban, kick and redact 50; invite 0; users_default 0; notifications.room 50.
const DEFAULTS = {
  usersDefault: 0,
  eventsDefault: 0,
  stateDefault: 50,
  ban: 50,
  kick: 50,
  invite: 0,
  redact: 50,
} as const;
const DEFAULT_NOTIFICATION_LEVEL = 50;

// v1-stringy-power-levels: optional whitespace, one optional sign, base-10 digits (leading zeroes allowed).
const STRINGY_INTEGER = /^\s*[+-]?\d+\s*$/;

/**
 * One power-level value as a number, or undefined when this room version does not accept it:
 * - v10+ (integerPowerLevels): JSON integers only.
 * - v6–v9: integers, or strings in the "stringy" format. Floats are not canonical JSON from v6 on.
 * - v1–v5: also floats, truncated toward zero; non-finite values are invalid.
 */
export function powerLevelValue(v: JsonValue | undefined, version: RoomVersion): number | undefined {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return undefined;
    if (Number.isInteger(v)) {
      if (version.strictCanonicalJson && !Number.isSafeInteger(v)) return undefined;
      return v;
    }
    return version.strictCanonicalJson ? undefined : Math.trunc(v);
  }
  if (typeof v === 'string' && !version.integerPowerLevels && STRINGY_INTEGER.test(v)) {
    const n = Number.parseInt(v.trim(), 10);
    return Number.isFinite(n) ? n : undefined;
  }
  return undefined;
}

/** Reads a `{key: level}` object, dropping entries whose value this version does not accept. */
function levelMap(v: JsonValue | undefined, version: RoomVersion): Map<string, number> {
  const out = new Map<string, number>();
  if (!isJsonObject(v)) return out;
  for (const [k, raw] of Object.entries(v)) {
    const n = powerLevelValue(raw, version);
    if (n !== undefined) out.set(k, n);
  }
  return out;
}

/**
 * Power levels from a power-levels event (or the defaults when the room has none). Lenient: a value this version
 * cannot read counts as absent, so a malformed event already in the room never makes a check throw. The auth rules
 * check a new power-levels event strictly with `powerLevelsContentProblem`.
 */
export function powerLevelsFrom(plEvent: Pdu | undefined, version: RoomVersion): PowerLevels {
  // The auth rules read the same power-levels event for every event of a room: parse it once. A Pdu's JSON never
  // changes and PowerLevels is read-only, so one parse per (event, version) serves every caller.
  const key: object = plEvent ?? NO_EVENT;
  let byVersion = parsed.get(key);
  const hit = byVersion?.get(version);
  if (hit !== undefined) return hit;
  const pl = parsePowerLevels(plEvent, version);
  if (byVersion === undefined) parsed.set(key, (byVersion = new Map()));
  byVersion.set(version, pl);
  return pl;
}

const NO_EVENT = {};
const parsed = new WeakMap<object, Map<RoomVersion, PowerLevels>>();

function parsePowerLevels(plEvent: Pdu | undefined, version: RoomVersion): PowerLevels {
  const c: JsonObject = plEvent?.content ?? {};
  const level = (key: PowerLevelKey, dflt: number): number => powerLevelValue(c[key], version) ?? dflt;
  return {
    users: levelMap(c.users, version),
    usersDefault: level('users_default', DEFAULTS.usersDefault),
    eventsDefault: level('events_default', DEFAULTS.eventsDefault),
    stateDefault: level('state_default', DEFAULTS.stateDefault),
    ban: level('ban', DEFAULTS.ban),
    kick: level('kick', DEFAULTS.kick),
    invite: level('invite', DEFAULTS.invite),
    redact: level('redact', DEFAULTS.redact),
    events: levelMap(c.events, version),
    notifications: levelMap(c.notifications, version),
  };
}

/**
 * The room creators. v1–v10: `content.creator` of the create event; v11: its `sender`; v12 (privilegedCreators):
 * the `sender` plus every string in `content.additional_creators`.
 */
export function roomCreators(createEvent: Pdu | undefined, version: RoomVersion): string[] {
  if (!createEvent) return [];
  if (!version.implicitRoomCreator) {
    const creator = createEvent.content.creator;
    return typeof creator === 'string' ? [creator] : [];
  }
  const out = createEvent.sender ? [createEvent.sender] : [];
  if (version.privilegedCreators) {
    const extra = createEvent.content.additional_creators;
    if (Array.isArray(extra)) {
      for (const u of extra) if (typeof u === 'string' && !out.includes(u)) out.push(u);
    }
  }
  return out;
}

/**
 * A user's power level. v12: creators have infinite power (Infinity) whatever the power-levels event says.
 * Otherwise `users[userId]`, else `users_default`, else 0; with no power-levels event, v1–v11 give the creator 100
 * and everyone else 0.
 */
export function userPowerLevel(
  userId: string,
  plEvent: Pdu | undefined,
  createEvent: Pdu | undefined,
  version: RoomVersion,
): number {
  const pl = plEvent ? powerLevelsFrom(plEvent, version) : undefined;
  return powerLevelOf(userId, pl, roomCreators(createEvent, version), version);
}

/** `userPowerLevel` from already-read parts: `pl` undefined means the room has no power-levels event. */
export function powerLevelOf(
  userId: string,
  pl: PowerLevels | undefined,
  creators: readonly string[],
  version: RoomVersion,
): number {
  if (version.privilegedCreators && creators.includes(userId)) return Infinity;
  if (!pl) return creators.includes(userId) ? 100 : 0;
  return pl.users.get(userId) ?? pl.usersDefault;
}

/** The level needed to send an event of this type: `events[type]`, else `state_default` or `events_default`. */
export function requiredPowerLevel(eventType: string, isState: boolean, pl: PowerLevels): number {
  return pl.events.get(eventType) ?? (isState ? pl.stateDefault : pl.eventsDefault);
}

export function inviteLevel(pl: PowerLevels): number {
  return pl.invite;
}
export function kickLevel(pl: PowerLevels): number {
  return pl.kick;
}
export function banLevel(pl: PowerLevels): number {
  return pl.ban;
}
export function redactLevel(pl: PowerLevels): number {
  return pl.redact;
}
/** The level for a notification key such as `room` (@room); 50 unless set. */
export function notificationLevel(key: string, pl: PowerLevels): number {
  return pl.notifications.get(key) ?? DEFAULT_NOTIFICATION_LEVEL;
}

/**
 * Why a new power-levels content is not acceptable in this room version, or undefined if it is.
 *
 * v10+ (rules 9.1–9.3 [v10–v11] / 10.1–10.3 [v12]): the seven level properties must be integers when present;
 * `events` and `notifications` objects of integers; `users` an object of user ID → integer.
 * v1–v9 (rule 10.1 [v1–v5] / 9.1 [v6–v9]): the spec only states the `users` check. A value elsewhere that is
 * neither an integer nor a string that is one cannot be compared by the rules that follow, so we reject it too
 * rather than guess; values are read as the stringy (and, v1–v5, floaty) formats allow.
 */
export function powerLevelsContentProblem(content: JsonObject, version: RoomVersion): string | undefined {
  for (const key of POWER_LEVEL_KEYS) {
    if (Object.hasOwn(content, key) && powerLevelValue(content[key], version) === undefined) {
      return `power_levels: '${key}' is not a valid power level`;
    }
  }
  for (const key of ['events', 'notifications'] as const) {
    if (!Object.hasOwn(content, key)) continue;
    const v = content[key];
    if (!isJsonObject(v)) return `power_levels: '${key}' is not an object`;
    for (const [k, raw] of Object.entries(v)) {
      if (powerLevelValue(raw, version) === undefined) return `power_levels: ${key}['${k}'] is not a valid power level`;
    }
  }
  if (Object.hasOwn(content, 'users')) {
    const users = content.users;
    if (!isJsonObject(users)) return "power_levels: 'users' is not an object";
    for (const [k, raw] of Object.entries(users)) {
      if (!isValidUserId(k)) return `power_levels: users key '${k}' is not a valid user ID`;
      if (powerLevelValue(raw, version) === undefined) return `power_levels: users['${k}'] is not a valid power level`;
    }
  }
  return undefined;
}
