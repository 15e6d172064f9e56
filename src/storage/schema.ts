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
import type { Migration } from './migrations.js';

export const STORES = {
  /** ['identity'] → { seed: Uint8Array } — the server's ed25519 seed (its name is its public key);
   *  ['streamPos'] → number — last allocated stream position; ['nextId', kind] → number;
   *  ['history', roomId] → HistoryRecord — the gap kept below a remote join for backfill (federation/history.ts);
   *  ['deviceListPrev', userId] → number — stream_id of a local user's last m.device_list_update;
   *  ['remoteDeviceList', userId] → number — the last stream_id received for a remote user (federation/edus.ts). */
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
  /** [relatedEventId, relType, pos] → eventId — relations (m.relates_to) of stored events; [relatedEventId] → true marks a parent */
  relations: 'relations',
  /** [userId, deviceId, pos] → ToDeviceRecord */
  toDevice: 'to_device',
  /** [userId, deviceId, txnId] → { ts } — idempotent PUT /sendToDevice */
  toDeviceTxns: 'to_device_txns',
  /** [userId] → { presence, statusMsg?, lastActiveTs, pos } */
  presence: 'presence',
  /** [userId] → PushRulesRecord (push-rules.ts) — the user's own push rules and changes to the default ones */
  pushRules: 'push_rules',
  /** [userId, deviceId] → DeviceKeysRecord { json } — a device's identity keys as uploaded (services/keys.ts) */
  e2eDeviceKeys: 'e2e_device_keys',
  /** [userId, deviceId, algorithm, uploadSeq, keyId] → key JSON — unclaimed one-time keys, in upload order */
  e2eOneTimeKeys: 'e2e_one_time_keys',
  /** [userId, deviceId] → OtkStateRecord { counts, nextSeq, fallback } — one-time key counts and fallback keys */
  e2eOtkState: 'e2e_otk_state',
  /** [userId, usage ('master' | 'self_signing' | 'user_signing')] → CrossSigningKeyRecord { json, publicKey } */
  e2eCrossSigningKeys: 'e2e_cross_signing_keys',
  /** [signerUserId, targetUserId, targetPublicKey] → { [signerKeyId]: signature } — signatures of other users'
   *  master keys, visible only to the signer */
  e2eUserSignatures: 'e2e_user_signatures',
  /** [userId, version] → BackupVersionRecord { algorithm, authData, etag, count, deleted? } — key backups */
  roomKeyBackups: 'room_key_backups',
  /** [userId, version, roomId, sessionId] → KeyBackupData (the wire JSON) */
  roomKeyBackupKeys: 'room_key_backup_keys',
  /** [serverName] → KnownPeerRecord { addrs, lastSeenTs } — libp2p addresses of Hearth peers we have met
   *  (src/net/peer-book.ts), so a restarted peer can dial them again */
  knownPeers: 'known_peers',
  /** [destination, seq] → OutboxItem { eventId } | { edu } — federation items a server did not take yet, sent when
   *  it is back (src/federation/sender.ts); ['nextId', 'outbox'] in `server` numbers them */
  federationOutbox: 'federation_outbox',
} as const;

export const HOMESERVER_STORES: readonly string[] = Object.values(STORES);

/**
 * The homeserver's schema migrations (migrations.ts): append-only, index = schema version. Every host runs them
 * once after opening its storage (the service worker on each start; a no-op when up to date).
 */
export const HOMESERVER_MIGRATIONS: readonly Migration[] = [
  // 1: relations get a parent marker [relatedEventId] → true (putRelation in src/services/event-store.ts).
  async (tx) => {
    const parents = new Set<string>();
    for (const [key] of await tx.range(STORES.relations)) if (key.length > 1) parents.add(String(key[0]));
    for (const id of parents) await tx.put(STORES.relations, [id], true);
  },
];
