/**
 * E2EE keys across servers: a client's /keys/query and /keys/claim for a remote user go to the user's server
 * (POST /user/keys/query, /user/keys/claim), GET /user/devices answers for local users, unreachable servers land
 * in `failures`, device-list updates reach users sharing a room, and bad input gets the spec's errors.
 * Spec: server-server-api.md §"End-to-End Encryption"; data/api/server-server/user_keys.yaml, user_devices.yaml.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { encodeBase64 } from '../../src/core/base64.js';
import { generateSeed, publicKeyFromSeed } from '../../src/core/crypto/ed25519.js';
import type { JsonObject } from '../../src/core/json.js';
import { signJson } from '../../src/core/signing.js';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from '../helpers/homeserver.js';
import { enc, newPublicRoom } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { login, newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation, SyncView, waitFor } from '../helpers/federation.js';

const C = '/_matrix/client/v3';
const F = '/_matrix/federation/v1';
let fed: Federation;
let a: Homeserver, b: Homeserver, c: Homeserver;
let alice: TestUser, bob: TestUser;
let bobKeys: JsonObject;

async function uploadKeys(hs: Homeserver, user: TestUser, otks: JsonObject): Promise<JsonObject> {
  const seed = generateSeed();
  const publicKey = publicKeyFromSeed(seed);
  const json: JsonObject = {
    user_id: user.userId,
    device_id: user.deviceId,
    algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
    keys: { [`curve25519:${user.deviceId}`]: encodeBase64(publicKeyFromSeed(generateSeed())), [`ed25519:${user.deviceId}`]: encodeBase64(publicKey) },
  };
  const signed = await signJson(json, user.userId, { keyId: `ed25519:${user.deviceId}`, seed, publicKey });
  const res = await call(hs, 'POST', `${C}/keys/upload`, { device_keys: signed, one_time_keys: otks }, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return signed;
}

function fedCall(hs: Homeserver, origin: string, method: 'GET' | 'POST' | 'PUT', path: string, body?: JsonObject) {
  return hs.federation.handleRequest(origin, { method, path, body }) as Promise<{ status: number; body: any }>;
}

beforeAll(async () => {
  fed = await newFederation(3);
  [a, b, c] = fed.servers;
  alice = await newUser(a, 'alice');
  bob = await newUser(b, 'bob', { displayName: 'Bob phone' });
  const room = await newPublicRoom(a, alice);
  expect((await call(b, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, bob.accessToken)).status).toBe(200);
  await fed.settle();
  bobKeys = await uploadKeys(b, bob, { 'curve25519:AAAAAQ': 'otk-one', 'curve25519:AAAAAg': 'otk-two' });
});

afterAll(async () => {
  await fed?.stop();
});

describe('E2EE keys over federation', () => {
  test("alice's /keys/query returns bob's device keys from his server", async () => {
    const res = await call(a, 'POST', `${C}/keys/query`, { device_keys: { [bob.userId]: [] } }, alice.accessToken);
    expect(res.status).toBe(200);
    expect(res.body.failures).toEqual({});
    const got = res.body.device_keys[bob.userId][bob.deviceId];
    expect(got.keys).toEqual(bobKeys.keys);
    expect(got.signatures).toEqual(bobKeys.signatures);
    // Display names stay on bob's server (Synapse's default).
    expect(got.unsigned?.device_display_name).toBeUndefined();
  });

  test("alice's /keys/claim gets bob's one-time keys, each once", async () => {
    const claim = () => call(a, 'POST', `${C}/keys/claim`, { one_time_keys: { [bob.userId]: { [bob.deviceId]: 'curve25519' } } }, alice.accessToken);
    const first = await claim();
    expect(first.status).toBe(200);
    expect(first.body.failures).toEqual({});
    expect(first.body.one_time_keys[bob.userId][bob.deviceId]).toEqual({ 'curve25519:AAAAAQ': 'otk-one' });
    const second = await claim();
    expect(second.body.one_time_keys[bob.userId][bob.deviceId]).toEqual({ 'curve25519:AAAAAg': 'otk-two' });
    const third = await claim();
    expect(third.body.one_time_keys[bob.userId]?.[bob.deviceId]).toBeUndefined();
  });

  test('an unreachable server is reported in failures', async () => {
    fed.offline(c);
    try {
      const res = await call(a, 'POST', `${C}/keys/query`, { device_keys: { [`@carol:${c.serverName}`]: [] }, timeout: 2000 }, alice.accessToken);
      expect(res.status).toBe(200);
      expect(res.body.failures[c.serverName]).toBeDefined();
    } finally {
      fed.online(c);
    }
  });

  test('GET /user/devices lists the devices and keys of a local user', async () => {
    const res = await fedCall(b, a.serverName, 'GET', `${F}/user/devices/${enc(bob.userId)}`);
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(bob.userId);
    expect(typeof res.body.stream_id).toBe('number');
    expect(res.body.devices).toHaveLength(1);
    expect(res.body.devices[0].device_id).toBe(bob.deviceId);
    expect(res.body.devices[0].keys.keys).toEqual(bobKeys.keys);
  });

  test("bob's new device keys reach alice's device_lists.changed, and her re-query sees it", async () => {
    const va = new SyncView(a, alice);
    await va.poll();
    // bob's client reinstalled on the same device: new identity keys replace the old ones.
    const newBobKeys = await uploadKeys(b, bob, {});
    await va.until(() => va.deviceListsChanged.has(bob.userId), 5000, 'device list change');
    const q = await call(a, 'POST', `${C}/keys/query`, { device_keys: { [bob.userId]: [bob.deviceId] } }, alice.accessToken);
    expect(q.body.device_keys[bob.userId][bob.deviceId].keys).toEqual(newBobKeys.keys);
  });

  test('a new device on B reaches A as m.device_list_update with its ID and keys, chained by prev_id; its deletion too', async () => {
    const bea = await newUser(b, 'bea', { password: 'correct horse' });
    const room = await newPublicRoom(a, alice);
    expect((await call(b, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, bea.accessToken)).status).toBe(200);
    await fed.settle();
    const from = (await call(a, 'GET', `${C}/sync?timeout=0`, undefined, alice.accessToken)).body.next_batch as string;
    const changedSince = async (since: string) => {
      const to = (await call(a, 'GET', `${C}/sync?timeout=0`, undefined, alice.accessToken)).body.next_batch as string;
      const r = await call(a, 'GET', `${C}/keys/changes?from=${enc(since)}&to=${enc(to)}`, undefined, alice.accessToken);
      expect(r.status).toBe(200);
      return { changed: r.body.changed as string[], to };
    };
    // What B sends A about bea, as it goes over the wire.
    const updates: JsonObject[] = [];
    fed.net.intercept = (from, to, req) => {
      if (from === b.serverName && to === a.serverName && req.path.startsWith(`${F}/send/`)) {
        for (const edu of (req.body?.edus ?? []) as JsonObject[]) {
          const content = edu.content as JsonObject;
          if (edu.edu_type === 'm.device_list_update' && content.user_id === bea.userId) updates.push(content);
        }
      }
      return undefined;
    };
    try {
      const phone = await login(b, bea.userId, 'correct horse', { initial_device_display_name: 'Bea phone' });
      const phoneKeys = await uploadKeys(b, { ...phone, password: 'correct horse' }, {});
      // B announces from its stream after the commit: wait for the update with the keys, then for its delivery.
      await waitFor(async () => updates.some((u) => u.device_id === phone.deviceId && u.keys !== undefined), 5000, 'the keys update');
      await fed.settle();
      const forPhone = updates.filter((u) => u.device_id === phone.deviceId);
      expect(forPhone.length).toBeGreaterThanOrEqual(2); // the new device, then its keys
      const last = forPhone[forPhone.length - 1];
      expect(last.keys).toEqual(phoneKeys);
      expect(last.deleted).toBeUndefined();
      expect(last.device_display_name).toBeUndefined(); // names stay on their server (federation/keys.ts)
      // One chain per user: each update points at the one before it.
      for (let i = 1; i < updates.length; i++) expect(updates[i].prev_id).toEqual([updates[i - 1].stream_id]);
      expect(new Set(updates.map((u) => u.stream_id)).size).toBe(updates.length);

      const first = await changedSince(from);
      expect(first.changed).toContain(bea.userId);
      const q = await call(a, 'POST', `${C}/keys/query`, { device_keys: { [bea.userId]: [] } }, alice.accessToken);
      expect(Object.keys(q.body.device_keys[bea.userId])).toContain(phone.deviceId);
      expect(q.body.device_keys[bea.userId][phone.deviceId].keys).toEqual(phoneKeys.keys);

      // Logging out deletes the device: A hears `deleted`, and it is gone from alice's query.
      expect((await call(b, 'POST', `${C}/logout`, {}, phone.accessToken)).status).toBe(200);
      await waitFor(async () => updates.some((u) => u.deleted === true), 5000, 'the deletion update');
      await fed.settle();
      const gone = updates[updates.length - 1];
      expect(gone).toMatchObject({ device_id: phone.deviceId, deleted: true, prev_id: [updates[updates.length - 2].stream_id] });
      expect(gone.keys).toBeUndefined();
      expect((await changedSince(first.to)).changed).toContain(bea.userId);
      const after = await call(a, 'POST', `${C}/keys/query`, { device_keys: { [bea.userId]: [] } }, alice.accessToken);
      expect(Object.keys(after.body.device_keys[bea.userId] ?? {})).not.toContain(phone.deviceId);
    } finally {
      fed.net.intercept = undefined;
    }
  });

  test('a device-list update received twice marks the user changed once; malformed ones are ignored', async () => {
    const send = (txn: string, content: JsonObject) =>
      fedCall(a, b.serverName, 'PUT', `${F}/send/${txn}`, {
        origin: b.serverName,
        origin_server_ts: Date.now(),
        pdus: [],
        edus: [{ edu_type: 'm.device_list_update', content }],
      });
    const since = (await call(a, 'GET', `${C}/sync?timeout=0`, undefined, alice.accessToken)).body.next_batch as string;
    const update = { user_id: bob.userId, device_id: 'REPLAYED', stream_id: 1_000_000, prev_id: [] };
    expect((await send('dl-1', update)).status).toBe(200);
    const once = (await call(a, 'GET', `${C}/sync?timeout=0&since=${enc(since)}`, undefined, alice.accessToken)).body;
    expect(once.device_lists?.changed).toContain(bob.userId);
    expect((await send('dl-2', update)).status).toBe(200);
    for (const bad of [{ ...update, stream_id: 'x' }, { ...update, device_id: 7 }, { ...update, user_id: alice.userId, stream_id: 1_000_001 }]) {
      expect((await send(`dl-bad-${Math.random()}`, bad as JsonObject)).status).toBe(200);
    }
    const again = (await call(a, 'GET', `${C}/sync?timeout=0&since=${enc(once.next_batch)}`, undefined, alice.accessToken)).body;
    expect(again.device_lists?.changed ?? []).toEqual([]);
  });

  test('bad input on the federation key endpoints gets the spec errors', async () => {
    const cases: Array<[string, 'GET' | 'POST', string, JsonObject | undefined, number, string]> = [
      ['devices of a remote user', 'GET', `${F}/user/devices/${enc(alice.userId)}`, undefined, 400, 'M_INVALID_PARAM'],
      ['devices of a bad user ID', 'GET', `${F}/user/devices/not-a-user`, undefined, 400, 'M_INVALID_PARAM'],
      ['query without device_keys', 'POST', `${F}/user/keys/query`, {}, 400, 'M_MISSING_PARAM'],
      ['query with device_keys not an object', 'POST', `${F}/user/keys/query`, { device_keys: [] }, 400, 'M_BAD_JSON'],
      ['query for a remote user', 'POST', `${F}/user/keys/query`, { device_keys: { [alice.userId]: [] } }, 400, 'M_INVALID_PARAM'],
      ['query with a device list not an array', 'POST', `${F}/user/keys/query`, { device_keys: { [bob.userId]: 'x' } }, 400, 'M_BAD_JSON'],
      ['claim without one_time_keys', 'POST', `${F}/user/keys/claim`, {}, 400, 'M_MISSING_PARAM'],
      ['claim with a bad user ID', 'POST', `${F}/user/keys/claim`, { one_time_keys: { nobody: {} } }, 400, 'M_INVALID_PARAM'],
      ['claim with devices not an object', 'POST', `${F}/user/keys/claim`, { one_time_keys: { [bob.userId]: [] } }, 400, 'M_BAD_JSON'],
      ['claim with an algorithm not a string', 'POST', `${F}/user/keys/claim`, { one_time_keys: { [bob.userId]: { D: 1 } } }, 400, 'M_BAD_JSON'],
    ];
    for (const [what, method, path, body, status, errcode] of cases) {
      const res = await fedCall(b, a.serverName, method, path, body);
      expect({ what, status: res.status, errcode: res.body.errcode }).toEqual({ what, status, errcode });
    }
  });
});
