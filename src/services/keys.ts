/**
 * End-to-end encryption keys: device identity keys, one-time and fallback keys, cross-signing keys and their
 * signatures, key-change tracking, and server-side key backups.
 *
 * Spec: shared/matrix-spec/content/client-server-api/modules/end_to_end_encryption.md (#device-keys,
 * #one-time-and-fallback-keys, #uploading-keys, #tracking-the-device-list-for-a-user, #cross-signing,
 * #server-side-key-backups, #e2e-extensions-to-sync); data/api/client-server/keys.yaml, cross_signing.yaml,
 * key_backup.yaml.
 *
 * ## Storage (schema.ts)
 * - e2e_device_keys [userId, deviceId] → the device_keys object as uploaded (plus signatures added later by the
 *   user's self-signing key). A different identity-key upload for a device replaces the old keys (a fresh client
 *   on a reused device_id) and drops the one-time and fallback keys of the old identity.
 * - e2e_one_time_keys [userId, deviceId, algorithm, uploadSeq, keyId] → key; the upload sequence number makes a
 *   range read return keys in upload order, which /keys/claim must follow.
 * - e2e_otk_state [userId, deviceId] → counts per algorithm and the fallback keys, so /sync reads one record.
 * - e2e_cross_signing_keys [userId, usage] → the key; e2e_user_signatures [signer, target, targetPublicKey] →
 *   signatures of another user's master key by the signer's user-signing key (only the signer sees them).
 * - room_key_backups [userId, version] and room_key_backup_keys [userId, version, roomId, sessionId].
 *
 * ## Change notification
 * A change other users must learn about (new device keys, cross-signing keys, signatures) writes a `device_list`
 * stream entry for the user whose keys changed in the same transaction; /sync (sync.ts) turns those into
 * `device_lists.changed` for everyone sharing a room with them, and /keys/changes reads the same entries.
 * A new signature on another user's master key is announced as a change of that user (Synapse tells only the
 * signer; announcing it to all who share a room with the target costs them one extra /keys/query).
 *
 * Remote users: answered from `RemoteKeys` when the federation layer provides one, else listed in `failures`.
 */
import type { Principal } from '../api/endpoint.js';
import {
  MatrixError,
  badJson,
  forbidden,
  guestAccessForbidden,
  invalidParam,
  invalidSignature,
  missingParam,
  notFound,
  wrongRoomKeysVersion,
} from '../api/errors.js';
import { decodeBase64 } from '../core/base64.js';
import { canonicalJson } from '../core/canonical-json.js';
import { isValidRoomId, parseUserId } from '../core/identifiers.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import { verifyJsonSignature } from '../core/signing.js';
import type { ReadTx, WriteTx } from '../storage/kv.js';
import type { StreamEntry } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import type { AccountsService, DeviceRecord } from './accounts.js';
import type { ServiceContext } from './context.js';
import { roomMembers } from './event-store.js';
import { allocatePosition, currentPosition } from './notifier.js';
import { joinedRoomsIn, sharingRoomIn } from './presence.js';
import { LOGIN_DUMMY, LOGIN_PASSWORD, endSession } from './uia.js';
import type { UiaResult } from './uia.js';

// ---------------------------------------------------------------------------------------------------------------
// Records

/** e2e_device_keys: [userId, deviceId] → DeviceKeysRecord */
export interface DeviceKeysRecord {
  /** The device_keys object (user_id, device_id, algorithms, keys, signatures), without `unsigned`. */
  json: JsonObject;
}

/** A fallback key of one algorithm: reused by /keys/claim once the one-time keys run out. */
export interface FallbackKeyRecord {
  keyId: string;
  key: JsonValue;
  /** Handed out by /keys/claim at least once (then no longer listed in device_unused_fallback_key_types). */
  used: boolean;
}

/** e2e_otk_state: [userId, deviceId] → OtkStateRecord */
export interface OtkStateRecord {
  /** Unclaimed one-time keys per algorithm. */
  counts: Record<string, number>;
  /** Upload sequence number for the next upload (orders e2e_one_time_keys). */
  nextSeq: number;
  /** At most one fallback key per algorithm. */
  fallback: Record<string, FallbackKeyRecord>;
}

export type CrossSigningUsage = 'master' | 'self_signing' | 'user_signing';
const USAGES: readonly CrossSigningUsage[] = ['master', 'self_signing', 'user_signing'];

/** e2e_cross_signing_keys: [userId, usage] → CrossSigningKeyRecord */
export interface CrossSigningKeyRecord {
  json: JsonObject;
  /** The unpadded base64 ed25519 public key (the key ID is `ed25519:<publicKey>`). */
  publicKey: string;
}

/** room_key_backups: [userId, version] → BackupVersionRecord */
export interface BackupVersionRecord {
  algorithm: string;
  authData: JsonObject;
  /** Bumped whenever the stored keys change. */
  etag: number;
  /** Number of session keys stored. */
  count: number;
  /** Deleted backups stay as tombstones: deleting again succeeds, and version numbers are never reused. */
  deleted?: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// The federation hook

/** The result of asking one remote server for keys (the federation API's shapes). */
export interface RemoteKeysQueryResult {
  device_keys?: JsonObject;
  master_keys?: JsonObject;
  self_signing_keys?: JsonObject;
}

/**
 * Keys of users on other servers. The federation layer implements it (POST /_matrix/federation/v1/user/keys/query
 * and /user/keys/claim); without it, remote users are reported in `failures`. A rejection means "server
 * unreachable": the server is listed in `failures`.
 */
export interface RemoteKeys {
  queryKeys(
    serverName: string,
    deviceKeys: Record<string, string[]>,
    opts: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<RemoteKeysQueryResult>;
  claimKeys(
    serverName: string,
    oneTimeKeys: Record<string, Record<string, string>>,
    opts: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<{ one_time_keys?: JsonObject }>;
}

export interface KeysComponents {
  accounts: AccountsService;
  remote?: RemoteKeys;
}

/** keys.yaml: "10 seconds is the recommended default" for waiting on remote servers. */
const DEFAULT_REMOTE_TIMEOUT_MS = 10_000;
const MAX_REMOTE_TIMEOUT_MS = 60_000;
/** Longest algorithm name or key ID accepted (they become storage key parts). */
const MAX_KEY_PART_LENGTH = 255;
/** Synapse reports it even when zero: clients read its absence ambiguously. */
const SIGNED_CURVE25519 = 'signed_curve25519';

// ---------------------------------------------------------------------------------------------------------------
// Helpers usable inside other services' transactions (sync.ts)

/** The device's unclaimed one-time key counts (always with signed_curve25519) and its unused fallback key types. */
export async function oneTimeKeyStateIn(
  tx: ReadTx,
  userId: string,
  deviceId: string,
): Promise<{ counts: Record<string, number>; unusedFallbackTypes: string[] }> {
  const st = await tx.get<OtkStateRecord>(STORES.e2eOtkState, [userId, deviceId]);
  return { counts: countsOf(st), unusedFallbackTypes: unusedFallbackTypes(st) };
}

function countsOf(st: OtkStateRecord | undefined): Record<string, number> {
  const out: Record<string, number> = { [SIGNED_CURVE25519]: 0 };
  if (st) for (const [alg, n] of Object.entries(st.counts)) if (n > 0) out[alg] = n;
  return out;
}

function unusedFallbackTypes(st: OtkStateRecord | undefined): string[] {
  if (!st) return [];
  return Object.entries(st.fallback)
    .filter(([, f]) => !f.used)
    .map(([alg]) => alg);
}

// ---------------------------------------------------------------------------------------------------------------
// The service

export class KeysService {
  private remote: RemoteKeys | undefined;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly deps: KeysComponents,
  ) {
    // Deleted devices take their keys with them (their device-list change is already recorded by accounts).
    deps.accounts.onDevicesDeleted.push((userId, deviceIds) => this.forgetDevices(userId, deviceIds));
    deps.accounts.onDeactivate.push((userId) => this.forgetDevices(userId, undefined));
    this.remote = deps.remote;
  }

  /** Lets the federation layer, created after the homeserver, answer for remote users. */
  useRemote(remote: RemoteKeys | undefined): void {
    this.remote = remote;
  }

  private isLocal(userId: string): boolean {
    const p = parseUserId(userId);
    return p.ok && p.serverName === this.ctx.serverName;
  }

  // ---- POST /keys/upload

  async upload(principal: Principal, body: JsonObject): Promise<{ one_time_key_counts: Record<string, number> }> {
    const userId = principal.userId;
    const deviceId = principal.deviceId;
    if (deviceId === undefined) throw missingParam('device_id', 'Keys can only be uploaded for a device');

    let deviceKeys: JsonObject | undefined;
    if (body.device_keys !== undefined) {
      deviceKeys = await this.checkDeviceKeys(body.device_keys, userId, deviceId);
    }
    const otks = parseKeyMap(body.one_time_keys, 'one_time_keys');
    // "There can only be at most one key per algorithm uploaded, and the server will only persist one key per
    // algorithm": the last one of an algorithm wins.
    const fallbacks = new Map<string, { keyId: string; key: JsonValue }>();
    for (const k of parseKeyMap(body.fallback_keys, 'fallback_keys')) fallbacks.set(k.algorithm, k);

    const { counts, pos } = await this.ctx.kv.write(async (tx) => {
      if (!(await tx.get(STORES.devices, [userId, deviceId]))) throw notFound('Unknown device');
      let pos: number | undefined;
      if (deviceKeys) {
        const existing = await tx.get<DeviceKeysRecord>(STORES.e2eDeviceKeys, [userId, deviceId]);
        let json: JsonObject | undefined = deviceKeys;
        if (existing) {
          if (sameSignedContent(existing.json, deviceKeys)) {
            // The same keys again: keep them, adding any new signatures.
            json = mergeSignatures(existing.json, deviceKeys);
          } else {
            // New identity keys for this device (a fresh client logged in again with the same device_id): they
            // replace the old ones, as Synapse lets them. One-time and fallback keys made by the old identity are
            // useless to anyone who claims them, so they go in the same transaction.
            await tx.deleteRange(STORES.e2eOneTimeKeys, { prefix: [userId, deviceId] });
            await tx.delete(STORES.e2eOtkState, [userId, deviceId]);
          }
        }
        if (json) {
          await tx.put(STORES.e2eDeviceKeys, [userId, deviceId], { json } satisfies DeviceKeysRecord);
          pos = await deviceListChanged(tx, userId, deviceId);
        }
      }

      let st = await tx.get<OtkStateRecord>(STORES.e2eOtkState, [userId, deviceId]);
      if (otks.length === 0 && fallbacks.size === 0) return { counts: countsOf(st), pos };
      st = st ? { counts: { ...st.counts }, nextSeq: st.nextSeq, fallback: { ...st.fallback } } : { counts: {}, nextSeq: 0, fallback: {} };
      if (otks.length > 0) {
        const seq = st.nextSeq++;
        // Keys already held, to recognise a repeated upload (same ID, same key: fine; different key: refused).
        const held = new Map<string, JsonValue>();
        for (const alg of new Set(otks.map((k) => k.algorithm))) {
          const rows = await tx.range<JsonValue>(STORES.e2eOneTimeKeys, { prefix: [userId, deviceId, alg] });
          for (const [key, value] of rows) held.set(`${alg}:${String(key[4])}`, value);
        }
        for (const k of otks) {
          const id = `${k.algorithm}:${k.keyId}`;
          const old = held.get(id);
          if (old !== undefined) {
            if (sameJson(old, k.key)) continue;
            throw invalidParam(`one_time_keys[${JSON.stringify(id)}]`, 'already exists with a different key');
          }
          held.set(id, k.key);
          await tx.put(STORES.e2eOneTimeKeys, [userId, deviceId, k.algorithm, seq, k.keyId], k.key as JsonValue);
          st.counts[k.algorithm] = (st.counts[k.algorithm] ?? 0) + 1;
        }
      }
      for (const [alg, k] of fallbacks) {
        const old = st.fallback[alg];
        // Re-uploading the current fallback key must not make a used key look unused.
        if (old && old.keyId === k.keyId && sameJson(old.key, k.key)) continue;
        st.fallback[alg] = { keyId: k.keyId, key: k.key, used: false };
      }
      await tx.put(STORES.e2eOtkState, [userId, deviceId], st);
      return { counts: countsOf(st), pos };
    });
    if (pos !== undefined) this.ctx.notifier.notify(pos);
    return { one_time_key_counts: counts };
  }

  /** Checks an uploaded device_keys object (keys.yaml, #uploading-keys) and returns it without `unsigned`. */
  private async checkDeviceKeys(v: JsonValue, userId: string, deviceId: string): Promise<JsonObject> {
    if (!isJsonObject(v)) throw badJson("'device_keys' must be an object");
    if (v.user_id !== userId) throw invalidParam('device_keys.user_id', 'must be the user ID of the requester');
    if (v.device_id !== deviceId) throw invalidParam('device_keys.device_id', "must be the requester's device ID");
    const keys = isJsonObject(v.keys) ? v.keys : {};
    for (const [id, key] of Object.entries(keys)) {
      if (typeof key !== 'string') throw badJson(`'device_keys.keys[${JSON.stringify(id)}]' must be a string`);
    }
    const keyId = `ed25519:${deviceId}`;
    const ed25519 = keys[keyId];
    // "must be signed by that key": checked whenever the device's ed25519 key is given.
    if (typeof ed25519 === 'string') {
      const publicKey = decodeBase64(ed25519);
      if (!publicKey || publicKey.length !== 32) {
        throw invalidParam(`device_keys.keys[${JSON.stringify(keyId)}]`, 'is not an unpadded base64 ed25519 key');
      }
      if (!(await verifyJsonSignature(v, userId, keyId, publicKey))) {
        throw invalidSignature("device_keys is not signed by the device's ed25519 key");
      }
    }
    const { unsigned: _unsigned, ...json } = v;
    return json;
  }

  // ---- POST /keys/query

  async query(principal: Principal, body: JsonObject, signal?: AbortSignal): Promise<JsonObject> {
    const me = principal.userId;
    const requested = isJsonObject(body.device_keys) ? body.device_keys : {};
    const local = new Map<string, string[]>();
    const remote = new Map<string, Record<string, string[]>>();
    for (const [userId, list] of Object.entries(requested)) {
      const p = parseUserId(userId);
      if (!p.ok) throw invalidParam(`device_keys[${JSON.stringify(userId)}]`, 'is not a valid user ID');
      const devices = Array.isArray(list) ? list.filter((d): d is string => typeof d === 'string') : [];
      if (p.serverName === this.ctx.serverName) local.set(userId, devices);
      else (remote.get(p.serverName) ?? remote.set(p.serverName, {}).get(p.serverName)!)[userId] = devices;
    }

    const deviceKeys: JsonObject = {};
    const masterKeys: JsonObject = {};
    const selfSigningKeys: JsonObject = {};
    const userSigningKeys: JsonObject = {};
    await this.ctx.kv.read(async (tx) => {
      for (const [userId, wanted] of local) {
        const out: JsonObject = {};
        deviceKeys[userId] = out;
        let devices: DeviceRecord[];
        if (wanted.length === 0) {
          devices = (await tx.range<DeviceRecord>(STORES.devices, { prefix: [userId] })).map(([, d]) => d);
        } else {
          const found = await tx.getMany<DeviceRecord>(STORES.devices, [...new Set(wanted)].map((d) => [userId, d]));
          devices = found.filter((d): d is DeviceRecord => d !== undefined);
        }
        // Keys only for devices that still exist: a deleted device's keys may outlive it briefly.
        const keys = await tx.getMany<DeviceKeysRecord>(STORES.e2eDeviceKeys, devices.map((d) => [userId, d.deviceId]));
        devices.forEach((d, i) => {
          const k = keys[i];
          if (!k) return;
          const unsigned: JsonObject = {};
          if (d.displayName !== undefined) unsigned.device_display_name = d.displayName;
          out[d.deviceId] = { ...k.json, unsigned };
        });

        // The user-signing key is only for its owner (keys.yaml `user_signing_keys`).
        const usages: CrossSigningUsage[] = userId === me ? ['master', 'self_signing', 'user_signing'] : ['master', 'self_signing'];
        const cs = await tx.getMany<CrossSigningKeyRecord>(STORES.e2eCrossSigningKeys, usages.map((u) => [userId, u]));
        let master = cs[0]?.json;
        if (master && userId !== me) {
          // The requester's own signatures of this user's master key (made with their user-signing key).
          const sigs = await tx.get<Record<string, string>>(STORES.e2eUserSignatures, [me, userId, cs[0]!.publicKey]);
          if (sigs) master = addSignatures(master, me, sigs);
        }
        if (master) masterKeys[userId] = master;
        if (cs[1]) selfSigningKeys[userId] = cs[1].json;
        if (cs[2]) userSigningKeys[userId] = cs[2].json;
      }
    });

    const failures = await this.askRemoteServers(remote, body.timeout, signal, 'query', async (remoteKeys, server, users, opts) => {
      const r = await remoteKeys.queryKeys(server, users, opts);
      // Only what the remote server may speak for: its own users.
      for (const userId of Object.keys(users)) {
        const dk = r.device_keys?.[userId];
        deviceKeys[userId] = isJsonObject(dk) ? dk : {};
        const mk = r.master_keys?.[userId];
        if (isJsonObject(mk)) masterKeys[userId] = mk;
        const sk = r.self_signing_keys?.[userId];
        if (isJsonObject(sk)) selfSigningKeys[userId] = sk;
      }
    });
    const res: JsonObject = { device_keys: deviceKeys, failures };
    res.master_keys = masterKeys;
    res.self_signing_keys = selfSigningKeys;
    res.user_signing_keys = userSigningKeys;
    return res;
  }

  // ---- POST /keys/claim

  async claim(body: JsonObject, signal?: AbortSignal): Promise<JsonObject> {
    const requested = isJsonObject(body.one_time_keys) ? body.one_time_keys : {};
    const local: Array<{ userId: string; deviceId: string; algorithm: string }> = [];
    const remote = new Map<string, Record<string, Record<string, string>>>();
    for (const [userId, byDevice] of Object.entries(requested)) {
      const p = parseUserId(userId);
      if (!p.ok) throw invalidParam(`one_time_keys[${JSON.stringify(userId)}]`, 'is not a valid user ID');
      if (!isJsonObject(byDevice)) throw badJson(`'one_time_keys[${JSON.stringify(userId)}]' must be an object`);
      for (const [deviceId, algorithm] of Object.entries(byDevice)) {
        if (typeof algorithm !== 'string') {
          throw badJson(`'one_time_keys[${JSON.stringify(userId)}][${JSON.stringify(deviceId)}]' must be a string`);
        }
        if (p.serverName === this.ctx.serverName) local.push({ userId, deviceId, algorithm });
        else {
          const users = remote.get(p.serverName) ?? remote.set(p.serverName, {}).get(p.serverName)!;
          (users[userId] ??= {})[deviceId] = algorithm;
        }
      }
    }

    const oneTimeKeys: JsonObject = {};
    if (local.length > 0) {
      await this.ctx.kv.write(async (tx) => {
        const states = await tx.getMany<OtkStateRecord>(STORES.e2eOtkState, local.map((r) => [r.userId, r.deviceId]));
        const changed = new Map<string, { key: [string, string]; st: OtkStateRecord }>();
        for (let i = 0; i < local.length; i++) {
          const { userId, deviceId, algorithm } = local[i];
          const id = JSON.stringify([userId, deviceId]);
          const st = changed.get(id)?.st ?? states[i];
          if (!st) continue; // no keys were ever uploaded for this device
          let claimed: { keyId: string; key: JsonValue } | undefined;
          if ((st.counts[algorithm] ?? 0) > 0) {
            const rows = await tx.range<JsonValue>(STORES.e2eOneTimeKeys, { prefix: [userId, deviceId, algorithm], limit: 1 });
            if (rows.length > 0) {
              const [key, value] = rows[0];
              await tx.delete(STORES.e2eOneTimeKeys, key);
              claimed = { keyId: String(key[4]), key: value };
            }
          }
          if (claimed) {
            const next: OtkStateRecord = { ...st, counts: { ...st.counts, [algorithm]: Math.max(0, (st.counts[algorithm] ?? 1) - 1) } };
            changed.set(id, { key: [userId, deviceId], st: next });
          } else {
            // Out of one-time keys: the fallback key, which stays (marked used) until the device replaces it.
            const fb = st.fallback[algorithm];
            if (!fb) continue;
            claimed = { keyId: fb.keyId, key: fb.key };
            if (!fb.used) {
              const next: OtkStateRecord = { ...st, fallback: { ...st.fallback, [algorithm]: { ...fb, used: true } } };
              changed.set(id, { key: [userId, deviceId], st: next });
            }
          }
          setIn(oneTimeKeys, userId, deviceId, { [`${algorithm}:${claimed.keyId}`]: claimed.key });
        }
        for (const { key, st } of changed.values()) await tx.put(STORES.e2eOtkState, key, st);
      });
    }

    const failures = await this.askRemoteServers(remote, body.timeout, signal, 'claim', async (remoteKeys, server, users, opts) => {
      const r = await remoteKeys.claimKeys(server, users, opts);
      for (const userId of Object.keys(users)) {
        const got = r.one_time_keys?.[userId];
        if (isJsonObject(got)) oneTimeKeys[userId] = got;
      }
    });
    return { one_time_keys: oneTimeKeys, failures };
  }

  /**
   * Asks each server in `remote` (server → what to ask it for) in parallel through the federation hook; a server
   * that cannot be reached, or no hook at all, lands in the returned `failures` map (the spec's shape).
   */
  private async askRemoteServers<U>(
    remote: ReadonlyMap<string, U>,
    timeout: JsonValue | undefined,
    signal: AbortSignal | undefined,
    what: string,
    ask: (remoteKeys: RemoteKeys, server: string, users: U, opts: { timeoutMs: number; signal?: AbortSignal }) => Promise<void>,
  ): Promise<JsonObject> {
    const failures: JsonObject = {};
    if (remote.size === 0) return failures;
    const opts = { timeoutMs: remoteTimeout(timeout), signal };
    await Promise.all(
      [...remote].map(async ([server, users]) => {
        const remoteKeys = this.remote;
        if (!remoteKeys) {
          failures[server] = federationUnavailable();
          return;
        }
        try {
          await ask(remoteKeys, server, users, opts);
        } catch (e) {
          this.ctx.logger.debug(`remote key ${what} failed`, { server, error: e });
          failures[server] = { status: 503, message: 'Could not reach the server' };
        }
      }),
    );
    return failures;
  }

  // ---- GET /keys/changes

  /**
   * Users whose keys changed in (from, to] and who share a room with the requester now, users who joined a room
   * the requester is in (or whose room the requester joined), and users who no longer share any room.
   */
  async changes(userId: string, from: number, to: number): Promise<{ changed: string[]; left: string[] }> {
    return this.ctx.kv.read(async (tx) => {
      const now = await currentPosition(tx);
      const upTo = Math.min(to, now);
      if (from >= upTo) return { changed: [], left: [] };
      const rows = await tx.range<StreamEntry>(STORES.stream, { gt: [from], lte: [upTo] });
      const changedCandidates = new Set<string>();
      const leftCandidates = new Set<string>();
      const memberChanges = new Map<string, Map<string, string>>();
      for (const [, e] of rows) {
        if (e.kind === 'device_list') changedCandidates.add(e.userId);
        else if (e.kind === 'event' && e.membership !== undefined && e.userId !== undefined) {
          let m = memberChanges.get(e.roomId);
          if (!m) memberChanges.set(e.roomId, (m = new Map()));
          m.set(e.userId, e.membership);
        }
      }
      const joinedRooms = await joinedRoomsIn(tx, userId);
      const joined = new Set(joinedRooms);
      for (const [roomId, members] of memberChanges) {
        const mine = members.get(userId);
        if (mine === 'join' && joined.has(roomId)) {
          // The requester joined: everyone there may be new to them.
          for (const [u, m] of await roomMembers(tx, roomId)) if (u !== userId && m.membership === 'join') changedCandidates.add(u);
        } else if (mine === 'leave' || mine === 'ban') {
          // The requester left: everyone there may be gone.
          for (const [u] of await roomMembers(tx, roomId)) if (u !== userId) leftCandidates.add(u);
        }
        for (const [u, m] of members) {
          if (u === userId) continue;
          if (m === 'join' && joined.has(roomId)) changedCandidates.add(u);
          else if (m === 'leave' || m === 'ban') leftCandidates.add(u);
        }
      }
      if (changedCandidates.size === 0 && leftCandidates.size === 0) return { changed: [], left: [] };
      const sharing = await sharingRoomIn(tx, userId, [...changedCandidates, ...leftCandidates], joinedRooms);
      return {
        changed: [...changedCandidates].filter((u) => sharing.has(u)),
        left: [...leftCandidates].filter((u) => !sharing.has(u) && !changedCandidates.has(u)),
      };
    });
  }

  // ---- POST /keys/device_signing/upload

  async uploadCrossSigningKeys(principal: Principal, body: JsonObject): Promise<JsonObject> {
    if (principal.isGuest) throw guestAccessForbidden();
    const userId = principal.userId;
    const given = new Map<CrossSigningUsage, { json: JsonObject; publicKey: string }>();
    const fields: Record<CrossSigningUsage, string> = {
      master: 'master_key',
      self_signing: 'self_signing_key',
      user_signing: 'user_signing_key',
    };
    for (const usage of USAGES) {
      const v = body[fields[usage]];
      if (v === undefined || v === null) continue;
      given.set(usage, checkCrossSigningKey(v, fields[usage], userId, usage));
    }
    if (given.size === 0) return {};

    const stored = await this.ctx.kv.read((tx) =>
      tx.getMany<CrossSigningKeyRecord>(STORES.e2eCrossSigningKeys, USAGES.map((u) => [userId, u])),
    );
    const existing = new Map<CrossSigningUsage, CrossSigningKeyRecord>();
    USAGES.forEach((u, i) => {
      if (stored[i]) existing.set(u, stored[i]!);
    });
    const unchanged = [...given].every(([u, k]) => {
      const old = existing.get(u);
      return old !== undefined && sameSignedContent(old.json, k.json);
    });
    // cross_signing.yaml: no UIA when there is no master key yet, or when the request holds no new keys (a
    // retried upload). Replacing keys needs UIA, as Synapse asks for it.
    if (existing.has('master') && unchanged) return {};
    const master = given.get('master') ?? existing.get('master');
    for (const usage of ['self_signing', 'user_signing'] as const) {
      const k = given.get(usage);
      if (!k) continue;
      if (!master) throw missingParam('master_key', 'No master signing key is available');
      const ok = await verifyJsonSignature(k.json, userId, `ed25519:${master.publicKey}`, decodeBase64(master.publicKey)!);
      if (!ok) throw invalidSignature(`'${fields[usage]}' is not signed by the master signing key`);
    }

    let uia: UiaResult | undefined;
    if (existing.has('master')) {
      const user = await this.deps.accounts.getUser(userId);
      uia = await this.deps.accounts.uia.check({
        operation: 'POST /keys/device_signing/upload',
        flows: user?.passwordHash !== undefined ? [[LOGIN_PASSWORD]] : [[LOGIN_DUMMY]],
        userId,
        auth: body.auth,
      });
    }
    const pos = await this.ctx.kv.write(async (tx) => {
      // "Servers therefore must ensure that device IDs will not collide with cross-signing public keys."
      const keys = [...given.values()];
      const clash = await tx.getMany(STORES.devices, keys.map((k) => [userId, k.publicKey]));
      if (clash.some((d) => d !== undefined)) throw forbidden('Key ID in use');
      for (const [usage, k] of given) {
        await tx.put(STORES.e2eCrossSigningKeys, [userId, usage], { json: k.json, publicKey: k.publicKey } satisfies CrossSigningKeyRecord);
      }
      if (uia) await endSession(tx, uia);
      return deviceListChanged(tx, userId);
    });
    this.ctx.notifier.notify(pos);
    return {};
  }

  // ---- POST /keys/signatures/upload

  async uploadSignatures(principal: Principal, body: JsonObject): Promise<{ failures: JsonObject }> {
    const me = principal.userId;
    const failures: JsonObject = {};
    const fail = (userId: string, keyId: string, e: MatrixError) => {
      const f = isJsonObject(failures[userId]) ? failures[userId] : (failures[userId] = {});
      f[keyId] = { errcode: e.errcode, error: e.message };
    };

    // Read what the signatures are about: my cross-signing keys, my devices' keys, other users' master keys.
    const targets = Object.keys(body);
    const others = targets.filter((u) => u !== me && this.isLocal(u));
    const snapshot = await this.ctx.kv.read(async (tx) => {
      const mine = await tx.getMany<CrossSigningKeyRecord>(STORES.e2eCrossSigningKeys, USAGES.map((u) => [me, u]));
      const devices = body[me] !== undefined ? await tx.range<DeviceKeysRecord>(STORES.e2eDeviceKeys, { prefix: [me] }) : [];
      const masters = await tx.getMany<CrossSigningKeyRecord>(STORES.e2eCrossSigningKeys, others.map((u) => [u, 'master']));
      return { mine, devices, masters };
    });
    const [myMaster, mySelfSigning, myUserSigning] = snapshot.mine;
    const myDevices = new Map(snapshot.devices.map(([k, v]) => [String(k[1]), v.json]));
    const otherMasters = new Map(others.map((u, i) => [u, snapshot.masters[i]]));

    /** A verified signature to store: on my device or cross-signing key (merged into it), or on another's master. */
    type Update =
      | { kind: 'device'; deviceId: string; signed: JsonObject; signerKeyId: string; signature: string }
      | { kind: 'master'; signed: JsonObject; signatures: Record<string, string> }
      | { kind: 'other'; target: string; publicKey: string; signed: JsonObject; signerKeyId: string; signature: string };
    const updates: Update[] = [];

    for (const [target, byKey] of Object.entries(body)) {
      if (!isJsonObject(byKey)) throw badJson(`'${target}' must be an object`);
      for (const [keyId, obj] of Object.entries(byKey)) {
        if (!isJsonObject(obj)) {
          fail(target, keyId, badJson('The signed object must be a JSON object'));
          continue;
        }
        try {
          if (target === me) {
            if (myMaster && keyId === myMaster.publicKey) {
              updates.push(await this.checkMasterSelfSignatures(me, myMaster, obj, myDevices));
            } else {
              const device = myDevices.get(keyId);
              if (!device) throw notFound('Unknown device or key');
              if (!mySelfSigning) throw notFound('No self-signing key has been uploaded');
              const signed = await checkSignedBy(obj, device, me, mySelfSigning);
              updates.push({ kind: 'device', deviceId: keyId, signed: device, ...signed });
            }
          } else {
            const master = otherMasters.get(target);
            if (!this.isLocal(target) || !master) throw notFound('Unknown user or master key');
            if (keyId !== master.publicKey) throw invalidParam(keyId, "is not the user's master key: only it can be signed");
            if (!myUserSigning) throw notFound('No user-signing key has been uploaded');
            const signed = await checkSignedBy(obj, master.json, me, myUserSigning);
            updates.push({ kind: 'other', target, publicKey: master.publicKey, signed: master.json, ...signed });
          }
        } catch (e) {
          if (!(e instanceof MatrixError)) throw e;
          fail(target, keyId, e);
        }
      }
    }

    if (updates.length > 0) {
      const pos = await this.ctx.kv.write(async (tx) => {
        const changedUsers = new Set<string>();
        const changedDevices = new Set<string>();
        for (const u of updates) {
          if (u.kind === 'device') {
            const rec = await tx.get<DeviceKeysRecord>(STORES.e2eDeviceKeys, [me, u.deviceId]);
            // Keys replaced since the check: the signature is about keys that are gone.
            if (!rec || !sameSignedContent(rec.json, u.signed)) continue;
            await tx.put(STORES.e2eDeviceKeys, [me, u.deviceId], { json: addSignatures(rec.json, me, { [u.signerKeyId]: u.signature }) });
            changedDevices.add(u.deviceId);
          } else if (u.kind === 'master') {
            const rec = await tx.get<CrossSigningKeyRecord>(STORES.e2eCrossSigningKeys, [me, 'master']);
            if (!rec || !sameSignedContent(rec.json, u.signed)) continue;
            await tx.put(STORES.e2eCrossSigningKeys, [me, 'master'], { ...rec, json: addSignatures(rec.json, me, u.signatures) });
            changedUsers.add(me);
          } else {
            const key = [me, u.target, u.publicKey];
            const sigs = (await tx.get<Record<string, string>>(STORES.e2eUserSignatures, key)) ?? {};
            await tx.put(STORES.e2eUserSignatures, key, { ...sigs, [u.signerKeyId]: u.signature });
            changedUsers.add(u.target);
          }
        }
        let pos: number | undefined;
        for (const d of changedDevices) pos = await deviceListChanged(tx, me, d);
        for (const u of changedUsers) pos = await deviceListChanged(tx, u);
        return pos;
      });
      if (pos !== undefined) this.ctx.notifier.notify(pos);
    }
    return { failures };
  }

  /** My master key signed by my own devices (migration from device verification): every new signature must verify. */
  private async checkMasterSelfSignatures(
    me: string,
    master: CrossSigningKeyRecord,
    obj: JsonObject,
    devices: ReadonlyMap<string, JsonObject>,
  ): Promise<{ kind: 'master'; signed: JsonObject; signatures: Record<string, string> }> {
    if (!sameSignedContent(obj, master.json)) throw invalidSignature('The signed object does not match the stored key');
    const mine = isJsonObject(obj.signatures) && isJsonObject(obj.signatures[me]) ? obj.signatures[me] : {};
    const stored = isJsonObject(master.json.signatures) && isJsonObject(master.json.signatures[me]) ? master.json.signatures[me] : {};
    const added: Record<string, string> = {};
    for (const [signerKeyId, sig] of Object.entries(mine)) {
      if (typeof sig !== 'string' || stored[signerKeyId] === sig) continue;
      if (signerKeyId === `ed25519:${master.publicKey}`) continue; // its own self-signature adds nothing
      const deviceId = signerKeyId.startsWith('ed25519:') ? signerKeyId.slice('ed25519:'.length) : undefined;
      const device = deviceId === undefined ? undefined : devices.get(deviceId);
      const keys = device && isJsonObject(device.keys) ? device.keys : {};
      const pub = typeof keys[signerKeyId] === 'string' ? decodeBase64(keys[signerKeyId] as string) : undefined;
      if (!pub) throw notFound(`Unknown signing device '${signerKeyId}'`);
      if (!(await verifyJsonSignature(obj, me, signerKeyId, pub))) throw invalidSignature();
      added[signerKeyId] = sig;
    }
    if (Object.keys(added).length === 0) throw invalidSignature('No new signature by one of your devices');
    return { kind: 'master', signed: master.json, signatures: added };
  }

  // ---- Key backup: versions

  async createBackup(userId: string, body: JsonObject): Promise<{ version: string }> {
    const algorithm = String(body.algorithm);
    const authData = body.auth_data as JsonObject;
    const version = await this.ctx.kv.write(async (tx) => {
      const last = await tx.range(STORES.roomKeyBackups, { prefix: [userId], reverse: true, limit: 1 });
      const version = last.length > 0 ? Number(last[0][0][1]) + 1 : 1;
      await tx.put(STORES.roomKeyBackups, [userId, version], { algorithm, authData, etag: 0, count: 0 } satisfies BackupVersionRecord);
      return version;
    });
    return { version: String(version) };
  }

  /** GET /room_keys/version[/{version}]: the current backup when `version` is undefined. */
  async getBackup(userId: string, version: string | undefined): Promise<JsonObject> {
    const found = await this.ctx.kv.read((tx) =>
      version === undefined ? currentBackupIn(tx, userId) : backupIn(tx, userId, version),
    );
    if (!found) throw notFound(version === undefined ? 'No current backup version' : 'Unknown backup version');
    const { rec, v } = found;
    return { algorithm: rec.algorithm, auth_data: rec.authData, count: rec.count, etag: String(rec.etag), version: String(v) };
  }

  /** PUT /room_keys/version/{version}: only auth_data may change. */
  async updateBackup(userId: string, version: string, body: JsonObject): Promise<void> {
    if (body.version !== undefined && body.version !== version) {
      throw invalidParam('version', 'does not match the version in the path');
    }
    await this.ctx.kv.write(async (tx) => {
      const found = await backupIn(tx, userId, version);
      if (!found) throw notFound('Unknown backup version');
      if (body.algorithm !== found.rec.algorithm) throw invalidParam('algorithm', 'does not match the backup algorithm');
      await tx.put(STORES.roomKeyBackups, [userId, found.v], { ...found.rec, authData: body.auth_data as JsonObject });
    });
  }

  /** DELETE /room_keys/version/{version}: the backup and all its keys; deleting twice succeeds. */
  async deleteBackup(userId: string, version: string): Promise<void> {
    await this.ctx.kv.write(async (tx) => {
      const v = parseVersion(version);
      const rec = v === undefined ? undefined : await tx.get<BackupVersionRecord>(STORES.roomKeyBackups, [userId, v]);
      if (!rec || v === undefined) throw notFound('Unknown backup version');
      if (rec.deleted) return;
      await tx.deleteRange(STORES.roomKeyBackupKeys, { prefix: [userId, v] });
      await tx.put(STORES.roomKeyBackups, [userId, v], { ...rec, deleted: true, count: 0, authData: {} });
    });
  }

  // ---- Key backup: keys

  /**
   * PUT /room_keys/keys[/{roomId}[/{sessionId}]]: stores session keys in the current backup, keeping the better
   * key where one is already stored (#server-side-key-backups).
   */
  async putBackupKeys(userId: string, version: string, rooms: JsonObject): Promise<{ etag: string; count: number }> {
    const entries: Array<{ roomId: string; sessionId: string; data: JsonObject }> = [];
    for (const [roomId, room] of Object.entries(rooms)) {
      if (!isValidRoomId(roomId)) throw invalidParam('roomId', `'${roomId}' is not a valid room ID`);
      if (!isJsonObject(room) || !isJsonObject(room.sessions)) throw badJson(`'rooms[${JSON.stringify(roomId)}].sessions' must be an object`);
      for (const [sessionId, data] of Object.entries(room.sessions)) {
        entries.push({ roomId, sessionId, data: checkKeyBackupData(data, `rooms[${JSON.stringify(roomId)}].sessions[${JSON.stringify(sessionId)}]`) });
      }
    }
    return this.ctx.kv.write(async (tx) => {
      const current = await currentBackupIn(tx, userId);
      if (!current) throw notFound('Unknown backup version');
      if (String(current.v) !== version) throw wrongRoomKeysVersion(String(current.v));
      const { v } = current;
      const rec = { ...current.rec };
      const olds = await tx.getMany<JsonObject>(STORES.roomKeyBackupKeys, entries.map((e) => [userId, v, e.roomId, e.sessionId]));
      let changed = false;
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i];
        const old = olds[i];
        if (old && !betterBackupKey(e.data, old)) continue;
        if (!old) rec.count++;
        await tx.put(STORES.roomKeyBackupKeys, [userId, v, e.roomId, e.sessionId], e.data);
        changed = true;
      }
      if (changed) {
        rec.etag++;
        await tx.put(STORES.roomKeyBackups, [userId, v], rec);
      }
      return { etag: String(rec.etag), count: rec.count };
    });
  }

  /** GET /room_keys/keys[/{roomId}[/{sessionId}]] from any existing (not deleted) backup version. */
  async getBackupKeys(userId: string, version: string, roomId?: string, sessionId?: string): Promise<JsonObject> {
    return this.ctx.kv.read(async (tx) => {
      const found = await backupIn(tx, userId, version);
      if (!found) throw notFound('Unknown backup version');
      const { v } = found;
      if (roomId !== undefined && sessionId !== undefined) {
        const data = await tx.get<JsonObject>(STORES.roomKeyBackupKeys, [userId, v, roomId, sessionId]);
        if (!data) throw notFound('No room key found for this session');
        return data;
      }
      const prefix = roomId === undefined ? [userId, v] : [userId, v, roomId];
      const rows = await tx.range<JsonObject>(STORES.roomKeyBackupKeys, { prefix });
      if (roomId !== undefined) {
        const sessions: JsonObject = {};
        for (const [k, data] of rows) sessions[String(k[3])] = data;
        return { sessions };
      }
      const out: JsonObject = {};
      for (const [k, data] of rows) {
        const r = String(k[2]);
        const room = (out[r] ??= { sessions: {} }) as { sessions: JsonObject };
        room.sessions[String(k[3])] = data;
      }
      return { rooms: out };
    });
  }

  /** DELETE /room_keys/keys[/{roomId}[/{sessionId}]]. */
  async deleteBackupKeys(userId: string, version: string, roomId?: string, sessionId?: string): Promise<{ etag: string; count: number }> {
    return this.ctx.kv.write(async (tx) => {
      const found = await backupIn(tx, userId, version);
      if (!found) throw notFound('Unknown backup version');
      const { v } = found;
      const rec = { ...found.rec };
      let removed: number;
      if (roomId !== undefined && sessionId !== undefined) {
        const key = [userId, v, roomId, sessionId];
        removed = (await tx.get(STORES.roomKeyBackupKeys, key)) === undefined ? 0 : 1;
        if (removed > 0) await tx.delete(STORES.roomKeyBackupKeys, key);
      } else {
        const prefix = roomId === undefined ? [userId, v] : [userId, v, roomId];
        removed = await tx.count(STORES.roomKeyBackupKeys, { prefix });
        if (removed > 0) await tx.deleteRange(STORES.roomKeyBackupKeys, { prefix });
      }
      if (removed > 0) {
        rec.count = Math.max(0, rec.count - removed);
        rec.etag++;
        await tx.put(STORES.roomKeyBackups, [userId, v], rec);
      }
      return { etag: String(rec.etag), count: rec.count };
    });
  }

  // ---- Device deletion

  /** Drops the end-to-end keys of deleted devices (all of the user's devices when `deviceIds` is undefined). */
  private async forgetDevices(userId: string, deviceIds: readonly string[] | undefined): Promise<void> {
    await this.ctx.kv.write(async (tx) => {
      if (deviceIds === undefined) {
        await tx.deleteRange(STORES.e2eDeviceKeys, { prefix: [userId] });
        await tx.deleteRange(STORES.e2eOneTimeKeys, { prefix: [userId] });
        await tx.deleteRange(STORES.e2eOtkState, { prefix: [userId] });
        return;
      }
      for (const d of deviceIds) {
        // A device ID reused by a new login in the meantime keeps its keys.
        if (await tx.get(STORES.devices, [userId, d])) continue;
        await tx.delete(STORES.e2eDeviceKeys, [userId, d]);
        await tx.deleteRange(STORES.e2eOneTimeKeys, { prefix: [userId, d] });
        await tx.delete(STORES.e2eOtkState, [userId, d]);
      }
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

/**
 * Records that `userId`'s keys changed, for /sync `device_lists.changed`, /keys/changes and federation: the keys of
 * device `deviceId`, or without it the user's cross-signing keys.
 */
async function deviceListChanged(tx: WriteTx, userId: string, deviceId?: string): Promise<number> {
  const pos = await allocatePosition(tx);
  await tx.put(STORES.stream, [pos], { kind: 'device_list', userId, ...(deviceId !== undefined ? { deviceId } : {}) } satisfies StreamEntry);
  return pos;
}

/** `<algorithm>:<key_id>` maps (one_time_keys, fallback_keys) as a list. */
function parseKeyMap(v: JsonValue | undefined, field: string): Array<{ algorithm: string; keyId: string; key: JsonValue }> {
  if (v === undefined || v === null) return [];
  if (!isJsonObject(v)) throw badJson(`'${field}' must be an object`);
  const out: Array<{ algorithm: string; keyId: string; key: JsonValue }> = [];
  for (const [id, key] of Object.entries(v)) {
    const at = id.indexOf(':');
    const algorithm = id.slice(0, at);
    const keyId = id.slice(at + 1);
    if (at <= 0 || keyId === '' || algorithm.length > MAX_KEY_PART_LENGTH || keyId.length > MAX_KEY_PART_LENGTH) {
      throw invalidParam(`${field}[${JSON.stringify(id)}]`, 'must be named <algorithm>:<key_id>');
    }
    if (typeof key !== 'string' && !(isJsonObject(key) && typeof key.key === 'string')) {
      throw badJson(`'${field}[${JSON.stringify(id)}]' must be a key string or a key object with 'key'`);
    }
    out.push({ algorithm, keyId, key });
  }
  return out;
}

/** Checks a cross-signing key (definitions/cross_signing_key.yaml) and returns it with its public key. */
function checkCrossSigningKey(
  v: JsonValue,
  field: string,
  userId: string,
  usage: CrossSigningUsage,
): { json: JsonObject; publicKey: string } {
  if (!isJsonObject(v)) throw badJson(`'${field}' must be an object`);
  if (v.user_id !== userId) throw invalidParam(`${field}.user_id`, 'must be the user ID of the requester');
  if (!Array.isArray(v.usage) || !v.usage.includes(usage)) throw invalidParam(`${field}.usage`, `must include '${usage}'`);
  const keys = isJsonObject(v.keys) ? Object.entries(v.keys) : [];
  if (keys.length !== 1) throw invalidParam(`${field}.keys`, 'must hold exactly one key');
  const [[keyId, publicKey]] = keys;
  const bytes = typeof publicKey === 'string' ? decodeBase64(publicKey) : undefined;
  if (keyId !== `ed25519:${String(publicKey)}` || !bytes || bytes.length !== 32) {
    throw invalidParam(`${field}.keys`, "must be { 'ed25519:<public key>': '<public key>' } with an unpadded base64 ed25519 key");
  }
  const { unsigned: _unsigned, ...json } = v;
  return { json, publicKey: publicKey as string };
}

/**
 * Checks that `obj` is `stored` (ignoring signatures) and carries a valid signature by `signer`'s cross-signing
 * key; returns that signature.
 */
async function checkSignedBy(
  obj: JsonObject,
  stored: JsonObject,
  signerUserId: string,
  signer: CrossSigningKeyRecord,
): Promise<{ signerKeyId: string; signature: string }> {
  if (!sameSignedContent(obj, stored)) throw invalidSignature('The signed object does not match the stored key');
  const signerKeyId = `ed25519:${signer.publicKey}`;
  const sigs = isJsonObject(obj.signatures) && isJsonObject(obj.signatures[signerUserId]) ? obj.signatures[signerUserId] : {};
  const signature = sigs[signerKeyId];
  if (typeof signature !== 'string') throw invalidSignature(`Missing signature by ${signerKeyId}`);
  if (!(await verifyJsonSignature(obj, signerUserId, signerKeyId, decodeBase64(signer.publicKey)!))) throw invalidSignature();
  return { signerKeyId, signature };
}

function canonicalOrUndefined(v: unknown): string | undefined {
  try {
    return canonicalJson(v);
  } catch {
    return undefined;
  }
}

function sameJson(a: unknown, b: unknown): boolean {
  const x = canonicalOrUndefined(a);
  return x !== undefined && x === canonicalOrUndefined(b);
}

/** Equal apart from `signatures` and `unsigned` (what a signature covers). */
function sameSignedContent(a: JsonObject, b: JsonObject): boolean {
  const { signatures: _s1, unsigned: _u1, ...x } = a;
  const { signatures: _s2, unsigned: _u2, ...y } = b;
  return sameJson(x, y);
}

/** `stored` with the signatures of `incoming` it lacks added; undefined when nothing is new. */
function mergeSignatures(stored: JsonObject, incoming: JsonObject): JsonObject | undefined {
  const add = isJsonObject(incoming.signatures) ? incoming.signatures : {};
  let out: JsonObject | undefined;
  for (const [signer, sigs] of Object.entries(add)) {
    if (!isJsonObject(sigs)) continue;
    const fresh: Record<string, string> = {};
    const have = isJsonObject(stored.signatures) && isJsonObject(stored.signatures[signer]) ? stored.signatures[signer] : {};
    for (const [k, s] of Object.entries(sigs)) if (typeof s === 'string' && have[k] !== s) fresh[k] = s;
    if (Object.keys(fresh).length > 0) out = addSignatures(out ?? stored, signer, fresh);
  }
  return out;
}

function addSignatures(json: JsonObject, signer: string, sigs: Readonly<Record<string, string>>): JsonObject {
  const all = isJsonObject(json.signatures) ? json.signatures : {};
  const mine = isJsonObject(all[signer]) ? all[signer] : {};
  return { ...json, signatures: { ...all, [signer]: { ...mine, ...sigs } } };
}

function setIn(out: JsonObject, userId: string, deviceId: string, value: JsonObject): void {
  const u = isJsonObject(out[userId]) ? out[userId] : (out[userId] = {});
  u[deviceId] = value;
}

function remoteTimeout(v: JsonValue | undefined): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) return DEFAULT_REMOTE_TIMEOUT_MS;
  return Math.min(v, MAX_REMOTE_TIMEOUT_MS);
}

function federationUnavailable(): JsonObject {
  // Synapse's shape for an unreachable server.
  return { status: 503, message: 'Federation is not available' };
}

/** Backup versions are positive integers; anything else names no backup. */
function parseVersion(s: string): number | undefined {
  return /^[1-9]\d{0,14}$/.test(s) ? Number(s) : undefined;
}

async function backupIn(tx: ReadTx, userId: string, version: string): Promise<{ v: number; rec: BackupVersionRecord } | undefined> {
  const v = parseVersion(version);
  if (v === undefined) return undefined;
  const rec = await tx.get<BackupVersionRecord>(STORES.roomKeyBackups, [userId, v]);
  return rec && !rec.deleted ? { v, rec } : undefined;
}

/** The current backup: the newest one not deleted (as Synapse: deleting it makes the previous one current). */
async function currentBackupIn(tx: ReadTx, userId: string): Promise<{ v: number; rec: BackupVersionRecord } | undefined> {
  const rows = await tx.range<BackupVersionRecord>(STORES.roomKeyBackups, { prefix: [userId], reverse: true });
  for (const [k, rec] of rows) if (!rec.deleted) return { v: Number(k[1]), rec };
  return undefined;
}

/** definitions/key_backup_data.yaml, checked here too because `rooms` keys outside `^!` escape the schema. */
function checkKeyBackupData(v: JsonValue, field: string): JsonObject {
  if (!isJsonObject(v)) throw badJson(`'${field}' must be an object`);
  for (const k of ['first_message_index', 'forwarded_count'] as const) {
    const n = v[k];
    if (n === undefined) throw missingParam(`${field}.${k}`);
    if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw badJson(`'${field}.${k}' must be an integer`);
    if (n < 0) throw invalidParam(`${field}.${k}`, 'must not be negative');
  }
  if (v.is_verified === undefined) throw missingParam(`${field}.is_verified`);
  if (typeof v.is_verified !== 'boolean') throw badJson(`'${field}.is_verified' must be a boolean`);
  if (v.session_data === undefined) throw missingParam(`${field}.session_data`);
  if (!isJsonObject(v.session_data)) throw badJson(`'${field}.session_data' must be an object`);
  return v;
}

/**
 * Whether a new backup key replaces the stored one (#server-side-key-backups): a verified key beats an unverified
 * one; then the lower first_message_index wins; then the lower forwarded_count. A tie keeps the stored key.
 */
export function betterBackupKey(incoming: JsonObject, stored: JsonObject): boolean {
  if (incoming.is_verified !== stored.is_verified) return incoming.is_verified === true;
  const a = Number(incoming.first_message_index);
  const b = Number(stored.first_message_index);
  if (a !== b) return a < b;
  return Number(incoming.forwarded_count) < Number(stored.forwarded_count);
}
