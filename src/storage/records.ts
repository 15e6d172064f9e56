/**
 * Record shapes shared by several services (see schema.ts for where each lives). Records are camelCase; event JSON
 * stays the wire JSON. Records a single service owns are declared next to that service.
 */
import type { JsonObject } from '../core/json.js';

/** events: [eventId] → EventRecord */
export interface EventRecord {
  /** The event's ID (for v3+ rooms it is a hash of `json`; kept so readers never recompute it). */
  eventId: string;
  json: JsonObject;
  roomId: string;
  /** Stream position when the event entered the room's timeline; absent for outliers (auth/state-only events). */
  pos?: number;
  /** State group of the room state before this event (see state-groups.ts). */
  stateBefore: number;
  /** State group after it: equal to stateBefore for message events and rejected state events. */
  stateAfter: number;
  /** Failed authorization: kept for the DAG, never shown to clients or used as state. */
  rejected?: string;
  /** Passed auth against its auth events but not against current state: stored, not shown, not in state. */
  softFailed?: boolean;
  /**
   * Received over federation for its own sake (an auth or state event of a remote room), not as part of the room
   * graph we follow: its state groups mean nothing (src/federation/ingest.ts).
   */
  outlier?: boolean;
  /** The redaction event that redacted this one, if any (the JSON above stays unredacted; apply on read). */
  redactedBy?: string;
  /** txn ID and device of the local sender, for `unsigned.transaction_id` in the sender's own sync. */
  txn?: { deviceId: string; txnId: string };
}

/**
 * stream: [pos] → StreamEntry — one client-visible change. Incremental /sync reads the range (since, now].
 * - event: a timeline event in `roomId` (membership events also carry `userId` = state_key and `membership`)
 * - account_data: `userId`'s account data `dataType` (room `roomId`, or global)
 * - receipt / typing: ephemeral change in `roomId`
 * - to_device: a message for `userId` / `deviceId`
 * - device_list: `userId`'s devices or keys changed: device `deviceId` (`deleted` when it was removed), or with no
 *   `deviceId` their cross-signing keys (federation/edus.ts sends m.device_list_update / m.signing_key_update)
 * - presence: `userId`'s presence changed
 */
export type StreamEntry =
  | { kind: 'event'; roomId: string; eventId: string; userId?: string; membership?: string }
  | { kind: 'account_data'; userId: string; roomId?: string; dataType: string }
  | { kind: 'receipt'; roomId: string }
  | { kind: 'typing'; roomId: string }
  | { kind: 'to_device'; userId: string; deviceId: string }
  | { kind: 'device_list'; userId: string; deviceId?: string; deleted?: boolean }
  | { kind: 'presence'; userId: string };

/** rooms: [roomId] → RoomRecord */
export interface RoomRecord {
  roomId: string;
  version: string;
  createdTs: number;
  /** Last timeline stream position of the room (for ordering room lists). */
  lastPos: number;
  /** Highest depth among its events (new local events take max(prev depths)+1). */
  maxDepth: number;
  /** State group (state-groups.ts) of the room's current state: the base of the next state event's group. */
  stateGroup: number;
}

/** user_rooms: [userId, roomId] → UserRoomRecord (local users); room_members: [roomId, userId] → MemberRecord */
export interface UserRoomRecord {
  membership: string;
  eventId: string;
  pos: number;
}
export interface MemberRecord {
  membership: string;
  eventId: string;
}
