/**
 * What every step of one resolution shares: the event cache, the room version and where dropped events are
 * reported.
 */
import type { Pdu } from '../event.js';
import type { RoomVersion } from '../room-versions.js';
import type { EventCache } from './event-cache.js';

export interface ResolveContext {
  readonly cache: EventCache;
  readonly version: RoomVersion;
  /** Called for each event the iterative auth checks (or v1's auth checks) leave out, with the auth failure. */
  readonly onRejected?: (event: Pdu, reason: string) => void;
}

export const CREATE_KEY = 'm.room.create\u0000';
export const POWER_LEVELS_KEY = 'm.room.power_levels\u0000';

/** The create event's ID in a v12 room: the room ID with `$` for `!` (rooms/v12.md §Event format). */
export function createEventIdOfRoom(roomId: string): string | undefined {
  return roomId.startsWith('!') ? '$' + roomId.slice(1) : undefined;
}

/**
 * The create event an event's auth looks at when its `auth_events` cannot name it: in room version 12 the event's
 * room ID names it. Undefined before v12 (the create event is then an ordinary auth event) or when not loaded.
 */
export function impliedCreateEvent(event: Pdu, ctx: ResolveContext): Pdu | undefined {
  if (!ctx.version.roomIdFromCreateEvent) return undefined;
  const id = createEventIdOfRoom(event.roomId);
  return id === undefined ? undefined : ctx.cache.get(id);
}
