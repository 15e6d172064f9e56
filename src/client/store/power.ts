/**
 * Who may do what in a room, read from m.room.power_levels and (room v12+) m.room.create.
 * https://spec.matrix.org/v1.19/client-server-api/#mroompower_levels
 * https://spec.matrix.org/v1.19/rooms/v12/ (creators have infinite power level)
 */
import type { JsonObject } from '../api/types.js';
import { getState } from './room-state.js';
import type { RoomState } from './room-state.js';

export interface PowerLevels {
  users: Record<string, number>;
  usersDefault: number;
  events: Record<string, number>;
  eventsDefault: number;
  stateDefault: number;
  invite: number;
  kick: number;
  ban: number;
  redact: number;
}

function num(v: unknown, d: number): number {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return Number(v); // old rooms allow string values
  return d;
}

function numMap(v: unknown): Record<string, number> {
  const out: Record<string, number> = {};
  if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) out[k] = num(x, 0);
  return out;
}

export function powerLevels(room: RoomState): PowerLevels {
  const ev = getState(room, 'm.room.power_levels');
  if (!ev) {
    // Without the event: the creator has 100, everyone else 0; state needs 50 (spec defaults)
    const creator = getState(room, 'm.room.create')?.sender;
    return {
      users: creator ? { [creator]: 100 } : {},
      usersDefault: 0,
      events: {},
      eventsDefault: 0,
      stateDefault: 50,
      invite: 0,
      kick: 50,
      ban: 50,
      redact: 50,
    };
  }
  const c: JsonObject = ev.content;
  return {
    users: numMap(c.users),
    usersDefault: num(c.users_default, 0),
    events: numMap(c.events),
    eventsDefault: num(c.events_default, 0),
    stateDefault: num(c.state_default, 50),
    invite: num(c.invite, 0),
    kick: num(c.kick, 50),
    ban: num(c.ban, 50),
    redact: num(c.redact, 50),
  };
}

/** Room versions whose creators hold infinite power (v12 and later numbered versions). */
function creatorsAreOwners(roomVersion: unknown): boolean {
  return typeof roomVersion === 'string' && /^\d+$/.test(roomVersion) && Number(roomVersion) >= 12;
}

export function creators(room: RoomState): string[] {
  const create = getState(room, 'm.room.create');
  if (!create || !creatorsAreOwners(create.content.room_version)) return [];
  const extra = Array.isArray(create.content.additional_creators) ? create.content.additional_creators : [];
  return [create.sender, ...extra.filter((x): x is string => typeof x === 'string')];
}

export function userPower(room: RoomState, userId: string, pl = powerLevels(room)): number {
  if (creators(room).includes(userId)) return Infinity;
  return pl.users[userId] ?? pl.usersDefault;
}

export type MemberAction = 'invite' | 'kick' | 'ban' | 'redact';

/** Whether `me` may perform the action at all (invite), or on `target` (kick, ban: only on lower power). */
export function can(room: RoomState, me: string, action: MemberAction, target?: string): boolean {
  const pl = powerLevels(room);
  const mine = userPower(room, me, pl);
  if (mine < pl[action]) return false;
  if (target === undefined || action === 'invite' || action === 'redact') return true;
  return target !== me && mine > userPower(room, target, pl);
}

export function canSendState(room: RoomState, me: string, type: string): boolean {
  const pl = powerLevels(room);
  return userPower(room, me, pl) >= (pl.events[type] ?? pl.stateDefault);
}

/** A short role name for a power level, or undefined for ordinary members. */
export function roleName(level: number): string | undefined {
  if (level === Infinity) return 'Owner';
  if (level >= 100) return 'Admin';
  if (level >= 50) return 'Moderator';
  if (level > 0) return `Power ${level}`;
  return undefined;
}
