/**
 * End-to-end encryption keys over federation, both ways: the resident answers for its own users
 * (GET /user/devices/{userId}, POST /user/keys/query, POST /user/keys/claim), and `FederationKeys` implements the
 * KeysService's `RemoteKeys` hook so our users' /keys/query and /keys/claim reach other servers.
 *
 * Spec: shared/matrix-spec/content/server-server-api.md §"End-to-End Encryption", §"Device Management";
 * data/api/server-server/user_keys.yaml, user_devices.yaml.
 *
 * Device display names are not shared with other servers (Synapse's default,
 * `allow_device_name_lookup_over_federation: false`): they can leak what a user's devices are.
 */
import type { Principal } from '../api/endpoint.js';
import { badJson, invalidParam, missingParam } from '../api/errors.js';
import { isValidUserId } from '../core/identifiers.js';
import type { JsonObject } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { KeysService, RemoteKeys, RemoteKeysQueryResult } from '../services/keys.js';
import type { DeviceRecord } from '../services/accounts.js';
import type { ServiceContext } from '../services/context.js';
import { currentPosition } from '../services/notifier.js';
import { STORES } from '../storage/schema.js';
import { domainOf } from './checks.js';
import type { RemoteClient } from './remote.js';

/** Users one key request may name (a hostile caller cannot make one request unbounded). */
const MAX_USERS = 1000;
/** Devices one claim may name in all. */
const MAX_CLAIMS = 10_000;

/** Asks as nobody in particular: no user-signing keys, no one's private signatures are included. */
const FEDERATION_PRINCIPAL: Principal = { userId: '' };

export class FederationKeys implements RemoteKeys {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly keys: KeysService,
    private readonly remote: RemoteClient,
  ) {}

  // ---- Resident side

  /** A `{ userId: … }` map of local users from a request body field (400 for anything else). */
  private localUsers(body: JsonObject, field: string): JsonObject {
    const v = body[field];
    if (v === undefined) throw missingParam(field);
    if (!isJsonObject(v)) throw badJson(`'${field}' must be an object`);
    const users = Object.keys(v);
    if (users.length > MAX_USERS) throw invalidParam(field, `names more than ${MAX_USERS} users`);
    for (const u of users) {
      if (!isValidUserId(u)) throw invalidParam(field, `${JSON.stringify(u)} is not a valid user ID`);
      // user_keys.yaml: "Requested users must be local to the receiving homeserver" (Synapse: 400).
      if (domainOf(u) !== this.ctx.serverName) throw invalidParam(field, `${u} is not a user of this server`);
    }
    return v;
  }

  /** POST /_matrix/federation/v1/user/keys/query */
  async queryLocal(body: JsonObject): Promise<JsonObject> {
    const requested = this.localUsers(body, 'device_keys');
    const clean: JsonObject = {};
    for (const [u, list] of Object.entries(requested)) {
      if (list !== null && !Array.isArray(list)) throw badJson(`'device_keys[${JSON.stringify(u)}]' must be an array of device IDs`);
      clean[u] = (list ?? []).filter((d): d is string => typeof d === 'string');
    }
    const r = await this.keys.query(FEDERATION_PRINCIPAL, { device_keys: clean });
    const deviceKeys = isJsonObject(r.device_keys) ? r.device_keys : {};
    for (const devices of Object.values(deviceKeys)) {
      if (!isJsonObject(devices)) continue;
      for (const [d, k] of Object.entries(devices)) if (isJsonObject(k)) devices[d] = withoutDisplayName(k);
    }
    return { device_keys: deviceKeys, master_keys: r.master_keys ?? {}, self_signing_keys: r.self_signing_keys ?? {} };
  }

  /** POST /_matrix/federation/v1/user/keys/claim */
  async claimLocal(body: JsonObject): Promise<JsonObject> {
    const requested = this.localUsers(body, 'one_time_keys');
    let n = 0;
    for (const [u, devices] of Object.entries(requested)) {
      if (!isJsonObject(devices)) throw badJson(`'one_time_keys[${JSON.stringify(u)}]' must be an object`);
      n += Object.keys(devices).length;
    }
    if (n > MAX_CLAIMS) throw invalidParam('one_time_keys', `names more than ${MAX_CLAIMS} devices`);
    const r = await this.keys.claim({ one_time_keys: requested });
    return { one_time_keys: r.one_time_keys ?? {} };
  }

  /** GET /_matrix/federation/v1/user/devices/{userId} */
  async devicesOf(userId: string): Promise<JsonObject> {
    if (!isValidUserId(userId)) throw invalidParam('userId', 'is not a valid user ID');
    if (domainOf(userId) !== this.ctx.serverName) throw invalidParam('userId', 'is not a user of this server');
    const { devices, streamId } = await this.ctx.kv.read(async (tx) => ({
      devices: (await tx.range<DeviceRecord>(STORES.devices, { prefix: [userId] })).map(([, d]) => d),
      streamId: await currentPosition(tx),
    }));
    const r = await this.keys.query(FEDERATION_PRINCIPAL, { device_keys: { [userId]: [] } });
    const keyed = isJsonObject(r.device_keys) && isJsonObject(r.device_keys[userId]) ? r.device_keys[userId] : {};
    const out: JsonObject = {
      user_id: userId,
      stream_id: streamId,
      devices: devices.map((d): JsonObject => {
        const k = keyed[d.deviceId];
        // A device without uploaded keys is still listed (user_devices.yaml: `keys` is optional).
        return isJsonObject(k) ? { device_id: d.deviceId, keys: withoutDisplayName(k) } : { device_id: d.deviceId };
      }),
    };
    const mk = isJsonObject(r.master_keys) ? r.master_keys[userId] : undefined;
    const sk = isJsonObject(r.self_signing_keys) ? r.self_signing_keys[userId] : undefined;
    if (isJsonObject(mk)) out.master_key = mk;
    if (isJsonObject(sk)) out.self_signing_key = sk;
    return out;
  }

  // ---- Client side (RemoteKeys)

  async queryKeys(
    serverName: string,
    deviceKeys: Record<string, string[]>,
    opts: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<RemoteKeysQueryResult> {
    const r = await this.remote.request(serverName, 'POST', '/_matrix/federation/v1/user/keys/query', { device_keys: deviceKeys }, opts);
    const out: RemoteKeysQueryResult = { device_keys: {}, master_keys: {}, self_signing_keys: {} };
    const dk = isJsonObject(r.device_keys) ? r.device_keys : {};
    for (const userId of Object.keys(deviceKeys)) {
      // Only keys that say they are the user's own device's (a server cannot slip one device's keys under another).
      const devices = isJsonObject(dk[userId]) ? dk[userId] : {};
      const kept: JsonObject = {};
      for (const [d, k] of Object.entries(devices)) if (isJsonObject(k) && k.user_id === userId && k.device_id === d) kept[d] = k;
      out.device_keys![userId] = kept;
      for (const field of ['master_keys', 'self_signing_keys'] as const) {
        const all = r[field];
        const key = isJsonObject(all) ? all[userId] : undefined;
        if (isJsonObject(key) && key.user_id === userId) out[field]![userId] = key;
      }
    }
    return out;
  }

  async claimKeys(
    serverName: string,
    oneTimeKeys: Record<string, Record<string, string>>,
    opts: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<{ one_time_keys?: JsonObject }> {
    const r = await this.remote.request(serverName, 'POST', '/_matrix/federation/v1/user/keys/claim', { one_time_keys: oneTimeKeys }, opts);
    const got = isJsonObject(r.one_time_keys) ? r.one_time_keys : {};
    const out: JsonObject = {};
    for (const [userId, devices] of Object.entries(oneTimeKeys)) {
      const byDevice = isJsonObject(got[userId]) ? got[userId] : undefined;
      if (!byDevice) continue;
      const kept: JsonObject = {};
      for (const d of Object.keys(devices)) if (isJsonObject(byDevice[d])) kept[d] = byDevice[d];
      out[userId] = kept;
    }
    return { one_time_keys: out };
  }
}

function withoutDisplayName(k: JsonObject): JsonObject {
  if (!isJsonObject(k.unsigned)) return k;
  const { unsigned: _u, ...rest } = k;
  return rest;
}
