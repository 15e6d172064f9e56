/**
 * Room state resolution: the state of a room where branches of the event graph meet.
 *
 * Spec: shared/matrix-spec/content/server-server-api.md §Room State Resolution; the algorithm depends on the room
 * version — rooms/v1.md §State resolution (v1), rooms/fragments/v2-state-res.md (v2, room versions 2–11) and
 * rooms/v12.md §State resolution (v2.1, room version 12).
 *
 * Bad input is handled, never hung on: events the source lacks or that belong to another room are left out
 * (an unconflicted entry is kept as it is; a conflicted one cannot be auth-checked and is dropped), and cycles in
 * `auth_events` end walks and are broken deterministically when sorting.
 */
import type { Pdu, StateMap } from '../event.js';
import type { RoomVersion } from '../room-versions.js';
import type { ResolveContext } from './context.js';
import { CREATE_KEY } from './context.js';
import { EventCache } from './event-cache.js';
import type { EventSource } from './event-cache.js';
import { resolveV1 } from './v1.js';
import { resolveV2 } from './v2.js';

export { authChain, authChainDifference, conflictedStateSubgraph } from './auth-chain.js';
export type { AuthChainOptions } from './auth-chain.js';
export { EventCache } from './event-cache.js';
export type { EventSource } from './event-cache.js';
export { iterativeAuthChecks } from './iterative-auth.js';
export {
  isPowerEvent,
  mainlinePositions,
  mainlineOrderLess,
  powerOrderLess,
  senderPowerLevel,
  sortByMainline,
  sortByReverseTopologicalPower,
} from './ordering.js';
export { partitionStateSetsV1, sha1Hex, v1AuthOrder, v1NormalOrder } from './v1.js';
export { partitionStateSets } from './v2.js';
export type { ResolveContext } from './context.js';

export interface ResolveStateInput {
  readonly version: RoomVersion;
  /** The states to resolve, e.g. the states after each forward extremity. */
  readonly stateSets: readonly StateMap[];
  readonly events: EventSource;
  /** The room; events of other rooms are ignored. Default: the room of the state sets' m.room.create event. */
  readonly roomId?: string;
  /** Told about each event auth checks leave out during the resolution (for logs and tests). */
  readonly onRejected?: (event: Pdu, reason: string) => void;
}

/** Resolves the state sets into one state map with the room version's algorithm. */
export async function resolveState(input: ResolveStateInput): Promise<StateMap> {
  const { version, stateSets } = input;
  if (stateSets.length === 0) return new Map();
  if (stateSets.length === 1) return new Map(stateSets[0]);
  const cache = new EventCache(input.events);
  cache.roomId = input.roomId ?? (await inferRoomId(stateSets, cache, version));
  const ctx: ResolveContext = { cache, version, onRejected: input.onRejected };
  switch (version.stateRes) {
    case 'v1':
      return resolveV1(stateSets, ctx);
    case 'v2':
      return resolveV2(stateSets, ctx, false);
    case 'v2.1':
      return resolveV2(stateSets, ctx, true);
  }
}

/**
 * The room ID from the m.room.create event the most state sets agree on (ties: the smallest event ID). v12 derives
 * it from the create event's ID; earlier versions read its `room_id`. Undefined (no filtering) when none loads.
 */
async function inferRoomId(stateSets: readonly StateMap[], cache: EventCache, version: RoomVersion): Promise<string | undefined> {
  const votes = new Map<string, number>();
  for (const s of stateSets) {
    const id = s.get(CREATE_KEY);
    if (id !== undefined) votes.set(id, (votes.get(id) ?? 0) + 1);
  }
  const ranked = [...votes].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  await cache.load(ranked.map(([id]) => id));
  for (const [id] of ranked) {
    const create = cache.get(id);
    if (!create || create.type !== 'm.room.create') continue;
    if (version.roomIdFromCreateEvent) return '!' + id.slice(1);
    if (create.roomId) return create.roomId;
  }
  return undefined;
}
