/**
 * The homeserver's stores on the key-value contract (kv.ts), with their key layouts. Every host opens its backend
 * with `HOMESERVER_STORES`; IndexedDB needs them all up front. Records are camelCase; event JSON is kept exactly as
 * received or built (hashes and signatures depend on its bytes).
 *
 * Stream positions: one counter for the whole server (`server` ['streamPos']). Every change a client can see
 * through /sync (timeline event, account data, receipt, typing, to-device, profile …) takes the next position in the
 * same write transaction that stores it, and a sync token is that position. "What changed since token N" is the
 * `stream` range (N, now].
 */
export const STORES = {
  /** ['identity'] → { seed: Uint8Array } — the server's ed25519 seed (its name is its public key);
   *  ['streamPos'] → number — last allocated stream position; ['nextId', kind] → number. */
  server: 'server',
  /** [userId] → UserRecord */
  users: 'users',
  /** [userId, deviceId] → DeviceRecord */
  devices: 'devices',
  /** [sha256(accessToken)] → AccessTokenRecord (accounts.ts; the token itself is never stored, see passwords.ts) */
  accessTokens: 'access_tokens',
  /** [sha256(refreshToken)] → RefreshTokenRecord (accounts.ts) */
  refreshTokens: 'refresh_tokens',
  /** [sessionId] → UiaSessionRecord — user-interactive auth sessions */
  uiaSessions: 'uia_sessions',
  /** [userId, roomId or '', type] → { content, pos } — global account data has roomId '' */
  accountData: 'account_data',
  /** [userId, filterId] → filter JSON */
  filters: 'filters',
  /** [userId, deviceId, txnId] → { eventId } — idempotent sends */
  txnIds: 'txn_ids',
  /** [roomId] → RoomRecord { roomId, version, createdTs, … } */
  rooms: 'rooms',
  /** [eventId] → EventRecord { json, roomId, pos?, stateBefore (state group), rejected?, outlier? } */
  events: 'events',
  /** [roomId, pos] → eventId — a room's timeline in stream order */
  roomTimeline: 'room_timeline',
  /** [pos] → StreamEntry { kind, roomId?, userId?, … } — every client-visible change, for incremental sync */
  stream: 'stream',
  /** [roomId, type, stateKey] → eventId — current state */
  currentState: 'current_state',
  /** ['g', groupId] → StateGroupRecord (state-groups.ts) — historical state as deltas with periodic snapshots */
  stateGroups: 'state_groups',
  /** [roomId, eventId] → true — forward extremities */
  forwardExtremities: 'forward_extremities',
  /** [userId, roomId] → { membership, eventId, pos } — memberships of local users, for sync and joined_rooms */
  userRooms: 'user_rooms',
  /** [roomId, userId] → { membership, eventId } — current membership of every user, for member lists */
  roomMembers: 'room_members',
  /** [roomId, receiptType, threadId or '', userId] → { eventId, ts, pos } */
  receipts: 'receipts',
  /** [roomId, userId] → { expiresTs, pos } — typing notifications (kept in storage: the service worker may stop) */
  typing: 'typing',
  /** [alias] → { roomId, creator } */
  aliases: 'aliases',
  /** [roomId, alias] → true */
  roomAliases: 'room_aliases',
  /** [roomId] → { visibility: 'public' } — rooms published in the directory */
  publicRooms: 'public_rooms',
  /** [relatedEventId, relType, pos] → eventId — relations (m.relates_to) of stored events */
  relations: 'relations',
  /** [userId, deviceId, pos] → ToDeviceRecord */
  toDevice: 'to_device',
  /** [userId, deviceId, txnId] → { ts } — idempotent PUT /sendToDevice */
  toDeviceTxns: 'to_device_txns',
  /** [userId] → { presence, statusMsg?, lastActiveTs, pos } */
  presence: 'presence',
} as const;

export const HOMESERVER_STORES: readonly string[] = Object.values(STORES);
