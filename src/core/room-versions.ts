/**
 * Room versions 1–12 as data: every algorithm in src/core branches on these flags, never on the version string.
 * Spec: shared/matrix-spec/content/rooms/_index.md and rooms/v1.md … v12.md.
 */
export interface RoomVersion {
  readonly id: string;
  /** 'server': `$local:server` IDs carried in the event (v1, v2); 'base64': reference hash, standard base64 (v3);
   *  'urlsafe': reference hash, URL-safe base64 (v4+). */
  readonly eventIdFormat: 'server' | 'base64' | 'urlsafe';
  /** v1 (v1), v2 (v2–v11), v2.1 (v12). */
  readonly stateRes: 'v1' | 'v2' | 'v2.1';
  /** Redaction algorithm variant: v1 (v1–v5), v6 (v6–v7), v8 (v8), v9 (v9–v10), v11 (v11–v12). */
  readonly redaction: 'v1' | 'v6' | 'v8' | 'v9' | 'v11';
  /** v1–v5: m.room.aliases has its own auth rule (rule 4 in v1). */
  readonly specialCaseAliasesAuth: boolean;
  /** v6+: integers outside [-(2^53)+1, 2^53-1] are rejected and power-levels `notifications` is checked. */
  readonly strictCanonicalJson: boolean;
  readonly limitNotificationsPowerLevels: boolean;
  /** v5+: the signing key must be valid at origin_server_ts (valid_until_ts). */
  readonly enforceKeyValidity: boolean;
  /** v7+: the `knock` join rule and membership. */
  readonly knock: boolean;
  /** v8+: the `restricted` join rule (join_authorised_via_users_server). */
  readonly restrictedJoinRule: boolean;
  /** v10+: the `knock_restricted` join rule. */
  readonly knockRestrictedJoinRule: boolean;
  /** v10+: power-level values must be JSON integers (no strings, no floats). */
  readonly integerPowerLevels: boolean;
  /** v11+: the create event has no `creator`; the creator is the create event's `sender`. The
   *  `redacts` key of m.room.redaction moves into `content`. */
  readonly implicitRoomCreator: boolean;
  readonly redactsInContent: boolean;
  /** v12: room ID is derived from the create event's ID; creators (sender + additional_creators) have infinite
   *  power; the create event is never listed in auth_events and carries no room_id. */
  readonly roomIdFromCreateEvent: boolean;
  readonly privilegedCreators: boolean;
}

const v1: RoomVersion = {
  id: '1',
  eventIdFormat: 'server',
  stateRes: 'v1',
  redaction: 'v1',
  specialCaseAliasesAuth: true,
  strictCanonicalJson: false,
  limitNotificationsPowerLevels: false,
  enforceKeyValidity: false,
  knock: false,
  restrictedJoinRule: false,
  knockRestrictedJoinRule: false,
  integerPowerLevels: false,
  implicitRoomCreator: false,
  redactsInContent: false,
  roomIdFromCreateEvent: false,
  privilegedCreators: false,
};
const v2: RoomVersion = { ...v1, id: '2', stateRes: 'v2' };
const v3: RoomVersion = { ...v2, id: '3', eventIdFormat: 'base64' };
const v4: RoomVersion = { ...v3, id: '4', eventIdFormat: 'urlsafe' };
const v5: RoomVersion = { ...v4, id: '5', enforceKeyValidity: true };
const v6: RoomVersion = {
  ...v5,
  id: '6',
  redaction: 'v6',
  specialCaseAliasesAuth: false,
  strictCanonicalJson: true,
  limitNotificationsPowerLevels: true,
};
const v7: RoomVersion = { ...v6, id: '7', knock: true };
const v8: RoomVersion = { ...v7, id: '8', redaction: 'v8', restrictedJoinRule: true };
const v9: RoomVersion = { ...v8, id: '9', redaction: 'v9' };
const v10: RoomVersion = { ...v9, id: '10', knockRestrictedJoinRule: true, integerPowerLevels: true };
const v11: RoomVersion = { ...v10, id: '11', redaction: 'v11', implicitRoomCreator: true, redactsInContent: true };
const v12: RoomVersion = { ...v11, id: '12', stateRes: 'v2.1', roomIdFromCreateEvent: true, privilegedCreators: true };

export const ROOM_VERSIONS: ReadonlyMap<string, RoomVersion> = new Map(
  [v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12].map((v) => [v.id, v]),
);

/** The spec's recommended default for new rooms (v1.19 §Room versions). */
export const DEFAULT_ROOM_VERSION = '12';

export function roomVersion(id: string): RoomVersion | undefined {
  return ROOM_VERSIONS.get(id);
}
