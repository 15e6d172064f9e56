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
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation, SyncView } from '../helpers/federation.js';

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

function fedCall(hs: Homeserver, origin: string, method: 'GET' | 'POST', path: string, body?: JsonObject) {
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
