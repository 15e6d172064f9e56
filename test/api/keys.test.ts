/**
 * End-to-end encryption endpoints (keys.yaml, cross_signing.yaml, key_backup.yaml) and their /sync extensions
 * (modules/end_to_end_encryption.md #e2e-extensions-to-sync), through `hs.fetch` with real ed25519 signatures.
 */
import { describe, expect, test } from 'vitest';
import { encodeBase64 } from '../../src/core/base64.js';
import { generateSeed, publicKeyFromSeed } from '../../src/core/crypto/ed25519.js';
import type { JsonObject } from '../../src/core/json.js';
import { signJson } from '../../src/core/signing.js';
import type { Homeserver } from '../../src/homeserver.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import { joinRoom, membership, newRoom } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { login, newUser } from '../helpers/users.js';

const C = '/_matrix/client/v3';
const enc = encodeURIComponent;

// ---- Builders

interface Ed25519Key {
  seed: Uint8Array;
  publicKey: Uint8Array;
  /** Unpadded base64 public key. */
  b64: string;
}

function newKey(): Ed25519Key {
  const seed = generateSeed();
  const publicKey = publicKeyFromSeed(seed);
  return { seed, publicKey, b64: encodeBase64(publicKey) };
}

function signAs(obj: JsonObject, userId: string, keyId: string, key: Ed25519Key): Promise<JsonObject> {
  return signJson(obj, userId, { keyId, seed: key.seed, publicKey: key.publicKey });
}

/** A device's identity keys, signed by its own ed25519 key. */
async function deviceKeys(user: TestUser, overrides: JsonObject = {}): Promise<{ json: JsonObject; key: Ed25519Key }> {
  const key = newKey();
  const json = {
    user_id: user.userId,
    device_id: user.deviceId,
    algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
    keys: { [`curve25519:${user.deviceId}`]: encodeBase64(newKey().publicKey), [`ed25519:${user.deviceId}`]: key.b64 },
    ...overrides,
  };
  return { json: await signAs(json, user.userId, `ed25519:${user.deviceId}`, key), key };
}

async function uploadDeviceKeys(hs: Homeserver, user: TestUser): Promise<{ json: JsonObject; key: Ed25519Key }> {
  const dk = await deviceKeys(user);
  const res = await call(hs, 'POST', `${C}/keys/upload`, { device_keys: dk.json }, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return dk;
}

/** A master key and self-signing / user-signing keys signed by it. */
async function crossSigning(user: TestUser) {
  const master = newKey();
  const ssk = newKey();
  const usk = newKey();
  const mk = (usage: string, k: Ed25519Key) => ({ user_id: user.userId, usage: [usage], keys: { [`ed25519:${k.b64}`]: k.b64 } });
  return {
    master,
    ssk,
    usk,
    body: {
      master_key: mk('master', master),
      self_signing_key: await signAs(mk('self_signing', ssk), user.userId, `ed25519:${master.b64}`, master),
      user_signing_key: await signAs(mk('user_signing', usk), user.userId, `ed25519:${master.b64}`, master),
    } as Record<string, JsonObject>,
  };
}

async function sync(hs: Homeserver, user: TestUser, params: Record<string, string> = {}) {
  const q = new URLSearchParams(params).toString();
  const res = await call(hs, 'GET', `${C}/sync${q ? `?${q}` : ''}`, undefined, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

function query(hs: Homeserver, user: TestUser, deviceKeys: Record<string, string[]>) {
  return call(hs, 'POST', `${C}/keys/query`, { device_keys: deviceKeys }, user.accessToken);
}

function otk(user: TestUser, n: number, extra: JsonObject = {}): { key: string; signatures: JsonObject } & JsonObject {
  return { key: `otk-${n}`, signatures: { [user.userId]: { [`ed25519:${user.deviceId}`]: 'sig' } }, ...extra };
}

// ---- /keys/upload

describe('POST /keys/upload', () => {
  test('device keys, one-time keys and a fallback key: counts in the answer and in /sync', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs, undefined, { displayName: "Alice's phone" });
    const dk = await deviceKeys(alice);
    const res = await call(
      hs,
      'POST',
      `${C}/keys/upload`,
      {
        device_keys: dk.json,
        one_time_keys: { 'signed_curve25519:AAAAAQ': otk(alice, 1), 'signed_curve25519:AAAAAg': otk(alice, 2), 'curve25519:AAAAAw': 'plain' },
        fallback_keys: { 'signed_curve25519:AAAABA': otk(alice, 4, { fallback: true }) },
      },
      alice.accessToken,
    );
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toEqual({ one_time_key_counts: { signed_curve25519: 2, curve25519: 1 } });

    const s = await sync(hs, alice);
    expect(s.device_one_time_keys_count).toEqual({ signed_curve25519: 2, curve25519: 1 });
    expect(s.device_unused_fallback_key_types).toEqual(['signed_curve25519']);

    const q = await query(hs, alice, { [alice.userId]: [] });
    expect(q.status).toBe(200);
    expect(q.body.device_keys[alice.userId][alice.deviceId]).toEqual({ ...dk.json, unsigned: { device_display_name: "Alice's phone" } });
  });

  test('an empty upload reports signed_curve25519 as zero', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const res = await call(hs, 'POST', `${C}/keys/upload`, {}, alice.accessToken);
    expect(res.body).toEqual({ one_time_key_counts: { signed_curve25519: 0 } });
    expect((await sync(hs, alice)).device_one_time_keys_count).toEqual({ signed_curve25519: 0 });
  });

  test("device_keys must be the caller's and signed by the device's ed25519 key", async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const upload = (body: unknown) => call(hs, 'POST', `${C}/keys/upload`, body, alice.accessToken);

    const wrongUser = await deviceKeys(alice, { user_id: bob.userId });
    let res = await upload({ device_keys: wrongUser.json });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe('M_INVALID_PARAM');

    const wrongDevice = await deviceKeys(alice, { device_id: 'OTHERDEVICE' });
    res = await upload({ device_keys: wrongDevice.json });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe('M_INVALID_PARAM');

    const good = await deviceKeys(alice);
    const forged = { ...good.json, algorithms: ['m.megolm.v1.aes-sha2'] }; // changed after signing
    res = await upload({ device_keys: forged });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe('M_INVALID_SIGNATURE');

    const badKey = await deviceKeys(alice);
    (badKey.json.keys as JsonObject)[`ed25519:${alice.deviceId}`] = 'not base64!';
    res = await upload({ device_keys: badKey.json });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe('M_INVALID_PARAM');

    // Nothing of the refused uploads was stored.
    expect((await query(hs, bob, { [alice.userId]: [] })).body.device_keys[alice.userId]).toEqual({});
  });

  test('the same identity keys again are accepted; different ones replace them and drop the old one-time keys', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const first = await uploadDeviceKeys(hs, alice);
    const again = await call(hs, 'POST', `${C}/keys/upload`, { device_keys: first.json }, alice.accessToken);
    expect(again.status).toBe(200);
    const otk = await call(hs, 'POST', `${C}/keys/upload`, { one_time_keys: { 'signed_curve25519:OLD': { key: 'old', signatures: {} } } }, alice.accessToken);
    expect(otk.body.one_time_key_counts.signed_curve25519).toBe(1);
    const other = await deviceKeys(alice);
    const res = await call(hs, 'POST', `${C}/keys/upload`, { device_keys: other.json }, alice.accessToken);
    expect(res.status).toBe(200);
    expect(res.body.one_time_key_counts).toEqual({ signed_curve25519: 0 });
    const q = await query(hs, alice, { [alice.userId]: [alice.deviceId] });
    expect(q.body.device_keys[alice.userId][alice.deviceId].keys).toEqual(other.json.keys);
  });

  test('malformed bodies', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const upload = (body: unknown) => call(hs, 'POST', `${C}/keys/upload`, body, alice.accessToken);
    expect((await upload('{not json')).body.errcode).toBe('M_NOT_JSON');
    let res = await upload({ device_keys: 'nope' });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    res = await upload({ device_keys: { user_id: alice.userId } });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    res = await upload({ one_time_keys: { nocolon: 'k' } });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    res = await upload({ one_time_keys: { 'signed_curve25519:A': 5 } });
    expect(res.status).toBe(400);
    res = await upload({ one_time_keys: { 'signed_curve25519:A': { signatures: {} } } });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_BAD_JSON']); // neither a string nor a key object
    expect((await call(hs, 'POST', `${C}/keys/upload`, {})).body.errcode).toBe('M_MISSING_TOKEN');
  });

  test('a one-time key ID reused with a different key is refused; the same key again is not counted twice', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const upload = (keys: JsonObject) => call(hs, 'POST', `${C}/keys/upload`, { one_time_keys: keys }, alice.accessToken);
    expect((await upload({ 'signed_curve25519:A': otk(alice, 1) })).body.one_time_key_counts.signed_curve25519).toBe(1);
    expect((await upload({ 'signed_curve25519:A': otk(alice, 1) })).body.one_time_key_counts.signed_curve25519).toBe(1);
    const res = await upload({ 'signed_curve25519:A': otk(alice, 99) });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
  });
});

// ---- /keys/query

describe('POST /keys/query', () => {
  test('all or some devices of local users; unknown users and devices are simply absent', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs, undefined, { password: 'pw-alice-q' });
    const alice2 = await login(hs, alice.userId, 'pw-alice-q');
    const bob = await newUser(hs);
    await uploadDeviceKeys(hs, alice);
    await uploadDeviceKeys(hs, { ...alice, ...alice2 });

    let res = await query(hs, bob, { [alice.userId]: [] });
    expect(Object.keys(res.body.device_keys[alice.userId]).sort()).toEqual([alice.deviceId, alice2.deviceId].sort());
    expect(res.body.device_keys[alice.userId][alice2.deviceId].unsigned).toEqual({});
    res = await query(hs, bob, { [alice.userId]: [alice2.deviceId, 'NOSUCHDEVICE'] });
    expect(Object.keys(res.body.device_keys[alice.userId])).toEqual([alice2.deviceId]);
    const ghost = `@ghost:${hs.serverName}`;
    res = await query(hs, bob, { [ghost]: [] });
    expect(res.body.device_keys).toEqual({ [ghost]: {} });
    expect(res.body.failures).toEqual({});
  });

  test('remote users are reported as failures of their server (no federation yet)', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const res = await query(hs, alice, { '@bob:elsewhere.example': [] });
    expect(res.status).toBe(200);
    expect(res.body.failures['elsewhere.example']).toMatchObject({ status: 503 });
    expect(res.body.device_keys).toEqual({});
  });

  test('a RemoteKeys hook answers for remote users', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const asked: unknown[] = [];
    hs.services.keys.useRemote({
      async queryKeys(server, users) {
        asked.push([server, users]);
        return { device_keys: { '@bob:elsewhere.example': { DEV: { device_id: 'DEV' } }, '@eve:other.example': {} } };
      },
      async claimKeys() {
        throw new Error('unreachable');
      },
    });
    const res = await query(hs, alice, { '@bob:elsewhere.example': ['DEV'] });
    expect(asked).toEqual([['elsewhere.example', { '@bob:elsewhere.example': ['DEV'] }]]);
    // Only the server's own users are taken from its answer.
    expect(res.body.device_keys).toEqual({ '@bob:elsewhere.example': { DEV: { device_id: 'DEV' } } });
    const claim = await call(hs, 'POST', `${C}/keys/claim`, { one_time_keys: { '@bob:elsewhere.example': { DEV: 'signed_curve25519' } } }, alice.accessToken);
    expect(claim.body.failures['elsewhere.example']).toMatchObject({ status: 503 });
  });

  test('bad input', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    let res = await call(hs, 'POST', `${C}/keys/query`, {}, alice.accessToken);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    res = await query(hs, alice, { '@no-server': [] });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    res = await call(hs, 'POST', `${C}/keys/query`, { device_keys: { [alice.userId]: 'all' } }, alice.accessToken);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_BAD_JSON']);
  });

  test("a deleted device's keys are gone", async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    await uploadDeviceKeys(hs, alice);
    await call(hs, 'POST', `${C}/keys/upload`, { one_time_keys: { 'signed_curve25519:A': otk(alice, 1) } }, alice.accessToken);
    expect((await call(hs, 'POST', `${C}/logout`, {}, alice.accessToken)).status).toBe(200);
    expect((await query(hs, bob, { [alice.userId]: [] })).body.device_keys[alice.userId]).toEqual({});
    const rows = await hs.services.ctx.kv.read((tx) => tx.range('e2e_one_time_keys', { prefix: [alice.userId] }));
    expect(rows).toEqual([]);
  });
});

// ---- /keys/claim

describe('POST /keys/claim', () => {
  test('one-time keys in upload order, each once; then the fallback key, which stays and is marked used', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const upload = (body: JsonObject) => call(hs, 'POST', `${C}/keys/upload`, body, alice.accessToken);
    await upload({ one_time_keys: { 'signed_curve25519:Z1': otk(alice, 1) } });
    await upload({ one_time_keys: { 'signed_curve25519:A2': otk(alice, 2) }, fallback_keys: { 'signed_curve25519:F': otk(alice, 9, { fallback: true }) } });
    const claim = () =>
      call(hs, 'POST', `${C}/keys/claim`, { one_time_keys: { [alice.userId]: { [alice.deviceId]: 'signed_curve25519' } } }, bob.accessToken);

    let res = await claim();
    expect(res.status).toBe(200);
    expect(res.body.one_time_keys).toEqual({ [alice.userId]: { [alice.deviceId]: { 'signed_curve25519:Z1': otk(alice, 1) } } });
    expect((await claim()).body.one_time_keys[alice.userId][alice.deviceId]).toEqual({ 'signed_curve25519:A2': otk(alice, 2) });
    let s = await sync(hs, alice);
    expect(s.device_one_time_keys_count).toEqual({ signed_curve25519: 0 });
    expect(s.device_unused_fallback_key_types).toEqual(['signed_curve25519']);

    const fb = { 'signed_curve25519:F': otk(alice, 9, { fallback: true }) };
    expect((await claim()).body.one_time_keys[alice.userId][alice.deviceId]).toEqual(fb);
    expect((await claim()).body.one_time_keys[alice.userId][alice.deviceId]).toEqual(fb);
    s = await sync(hs, alice);
    expect(s.device_unused_fallback_key_types).toEqual([]);

    // Re-uploading the same fallback key keeps it used; a new one is unused.
    await upload({ fallback_keys: fb });
    expect((await sync(hs, alice)).device_unused_fallback_key_types).toEqual([]);
    await upload({ fallback_keys: { 'signed_curve25519:G': otk(alice, 10, { fallback: true }) } });
    expect((await sync(hs, alice)).device_unused_fallback_key_types).toEqual(['signed_curve25519']);
  });

  test('devices without keys, unknown devices and other algorithms are absent from the result', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    await call(hs, 'POST', `${C}/keys/upload`, { one_time_keys: { 'signed_curve25519:A': otk(alice, 1) } }, alice.accessToken);
    const res = await call(
      hs,
      'POST',
      `${C}/keys/claim`,
      { one_time_keys: { [alice.userId]: { [alice.deviceId]: 'curve25519', NODEVICE: 'signed_curve25519' }, [bob.userId]: { [bob.deviceId]: 'signed_curve25519' } } },
      bob.accessToken,
    );
    expect(res.body).toEqual({ one_time_keys: {}, failures: {} });
  });

  test('bad input', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    let res = await call(hs, 'POST', `${C}/keys/claim`, {}, alice.accessToken);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    res = await call(hs, 'POST', `${C}/keys/claim`, { one_time_keys: { [alice.userId]: { DEV: 7 } } }, alice.accessToken);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    res = await call(hs, 'POST', `${C}/keys/claim`, { one_time_keys: { '@bad': { DEV: 'x' } } }, alice.accessToken);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
  });
});

// ---- device lists: /sync and /keys/changes

describe('device list changes', () => {
  test("another user's key upload wakes a waiting /sync with device_lists.changed", async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const loner = await newUser(hs);
    const room = await newRoom(hs, alice, { preset: 'public_chat' });
    await joinRoom(hs, bob, room);
    const a0 = await sync(hs, alice);
    const l0 = await sync(hs, loner);

    const started = Date.now();
    const waiting = sync(hs, alice, { since: a0.next_batch, timeout: '10000' });
    await new Promise((r) => setTimeout(r, 50));
    await uploadDeviceKeys(hs, bob);
    const a1 = await waiting;
    expect(Date.now() - started).toBeLessThan(5000);
    expect(a1.device_lists.changed).toEqual([bob.userId]);
    // Someone sharing no room hears nothing.
    expect((await sync(hs, loner, { since: l0.next_batch })).device_lists).toEqual({ changed: [], left: [] });
  });

  test('/keys/changes lists key changes and joins of users sharing a room, and users who left', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const carol = await newUser(hs);
    const loner = await newUser(hs);
    const room = await newRoom(hs, alice, { preset: 'public_chat' });
    await joinRoom(hs, bob, room);
    const from = (await sync(hs, alice)).next_batch;
    await uploadDeviceKeys(hs, bob);
    await uploadDeviceKeys(hs, loner);
    await joinRoom(hs, carol, room);
    const mid = (await sync(hs, alice)).next_batch;
    const changes = (f: string, t: string) => call(hs, 'GET', `${C}/keys/changes?from=${f}&to=${t}`, undefined, alice.accessToken);

    let res = await changes(from, mid);
    expect(res.status).toBe(200);
    expect(res.body.changed.sort()).toEqual([bob.userId, carol.userId].sort());
    expect(res.body.left).toEqual([]);

    expect((await membership(hs, bob, room, 'leave')).status).toBe(200);
    const to = (await sync(hs, alice)).next_batch;
    res = await changes(mid, to);
    expect(res.body).toEqual({ changed: [], left: [bob.userId] });
    // Nothing in an empty range.
    expect((await changes(to, to)).body).toEqual({ changed: [], left: [] });
  });

  test('/keys/changes bad input', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    let res = await call(hs, 'GET', `${C}/keys/changes?to=s1`, undefined, alice.accessToken);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    res = await call(hs, 'GET', `${C}/keys/changes?from=banana&to=s1`, undefined, alice.accessToken);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
  });
});

// ---- Cross-signing

describe('cross-signing', () => {
  test('the first upload needs no UIA; others see master and self-signing keys, only the owner the user-signing key', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs, undefined, { password: 'pw-alice-cs' });
    const bob = await newUser(hs);
    const room = await newRoom(hs, alice, { preset: 'public_chat' });
    await joinRoom(hs, bob, room);
    const b0 = await sync(hs, bob);
    const cs = await crossSigning(alice);
    const res = await call(hs, 'POST', `${C}/keys/device_signing/upload`, cs.body, alice.accessToken);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect((await sync(hs, bob, { since: b0.next_batch })).device_lists.changed).toEqual([alice.userId]);

    const byBob = (await query(hs, bob, { [alice.userId]: [] })).body;
    expect(byBob.master_keys[alice.userId]).toEqual(cs.body.master_key);
    expect(byBob.self_signing_keys[alice.userId]).toEqual(cs.body.self_signing_key);
    expect(byBob.user_signing_keys).toEqual({});
    const byAlice = (await query(hs, alice, { [alice.userId]: [] })).body;
    expect(byAlice.user_signing_keys[alice.userId]).toEqual(cs.body.user_signing_key);

    // The same keys again: no UIA (a retried request).
    expect((await call(hs, 'POST', `${C}/keys/device_signing/upload`, cs.body, alice.accessToken)).status).toBe(200);

    // New keys: UIA with the password.
    const next = await crossSigning(alice);
    const challenge = await call(hs, 'POST', `${C}/keys/device_signing/upload`, next.body, alice.accessToken);
    expect(challenge.status).toBe(401);
    expect(challenge.body.flows).toEqual([{ stages: ['m.login.password'] }]);
    const wrong = await call(
      hs,
      'POST',
      `${C}/keys/device_signing/upload`,
      { ...next.body, auth: { type: 'm.login.password', session: challenge.body.session, identifier: { type: 'm.id.user', user: alice.userId }, password: 'nope' } },
      alice.accessToken,
    );
    expect([wrong.status, wrong.body.errcode]).toEqual([401, 'M_FORBIDDEN']);
    const done = await call(
      hs,
      'POST',
      `${C}/keys/device_signing/upload`,
      { ...next.body, auth: { type: 'm.login.password', session: challenge.body.session, identifier: { type: 'm.id.user', user: alice.userId }, password: 'pw-alice-cs' } },
      alice.accessToken,
    );
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    expect((await query(hs, bob, { [alice.userId]: [] })).body.master_keys[alice.userId]).toEqual(next.body.master_key);
  });

  test('bad cross-signing uploads', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const up = (body: unknown) => call(hs, 'POST', `${C}/keys/device_signing/upload`, body, alice.accessToken);
    const cs = await crossSigning(alice);

    // Not signed by the master key.
    const other = newKey();
    const forged = await signAs({ ...cs.body.self_signing_key, signatures: {} }, alice.userId, `ed25519:${other.b64}`, other);
    let res = await up({ master_key: cs.body.master_key, self_signing_key: forged });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_SIGNATURE']);
    // No master key anywhere.
    res = await up({ self_signing_key: cs.body.self_signing_key });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    // Someone else's key.
    const bobs = await crossSigning(bob);
    res = await up({ master_key: bobs.body.master_key });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    // Wrong usage; key ID not matching the key.
    res = await up({ master_key: { ...cs.body.master_key, usage: ['self_signing'] } });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    res = await up({ master_key: { ...cs.body.master_key, keys: { 'ed25519:abc': cs.master.b64 } } });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    // Schema: keys must hold exactly one entry.
    res = await up({ master_key: { user_id: alice.userId, usage: ['master'], keys: {} } });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    res = await up({ master_key: 'x' });
    expect([res.status, res.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    // A public key equal to a device ID.
    const clash = { user_id: alice.userId, usage: ['master'], keys: { [`ed25519:${cs.master.b64}`]: cs.master.b64 } };
    const mallory = await newUser(hs, undefined, { deviceId: cs.master.b64 });
    res = await call(hs, 'POST', `${C}/keys/device_signing/upload`, { master_key: { ...clash, user_id: mallory.userId } }, mallory.accessToken);
    expect([res.status, res.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    // None of it was stored.
    expect((await query(hs, bob, { [alice.userId]: [] })).body.master_keys).toEqual({});
  });

  test('signatures: own device by the self-signing key, own master key by a device, another user by the user-signing key', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const carol = await newUser(hs);
    const aliceDevice = await uploadDeviceKeys(hs, alice);
    const acs = await crossSigning(alice);
    const bcs = await crossSigning(bob);
    expect((await call(hs, 'POST', `${C}/keys/device_signing/upload`, acs.body, alice.accessToken)).status).toBe(200);
    expect((await call(hs, 'POST', `${C}/keys/device_signing/upload`, bcs.body, bob.accessToken)).status).toBe(200);

    const deviceSigned = await signAs(aliceDevice.json, alice.userId, `ed25519:${acs.ssk.b64}`, acs.ssk);
    const masterSigned = await signAs(acs.body.master_key, alice.userId, `ed25519:${alice.deviceId}`, aliceDevice.key);
    const bobMasterSigned = await signAs(bcs.body.master_key, alice.userId, `ed25519:${acs.usk.b64}`, acs.usk);
    const badSig = { ...bcs.body.master_key, signatures: { [alice.userId]: { [`ed25519:${acs.usk.b64}`]: encodeBase64(new Uint8Array(64)) } } };
    const res = await call(
      hs,
      'POST',
      `${C}/keys/signatures/upload`,
      {
        [alice.userId]: { [alice.deviceId]: deviceSigned, [acs.master.b64]: masterSigned, NODEVICE: deviceSigned },
        [bob.userId]: { [bcs.master.b64]: bobMasterSigned, [bcs.ssk.b64]: badSig },
      },
      alice.accessToken,
    );
    expect(res.status).toBe(200);
    expect(res.body.failures[alice.userId].NODEVICE.errcode).toBe('M_NOT_FOUND');
    expect(res.body.failures[bob.userId][bcs.ssk.b64].errcode).toBe('M_INVALID_PARAM');
    expect(Object.keys(res.body.failures[alice.userId])).toEqual(['NODEVICE']);
    expect(Object.keys(res.body.failures[bob.userId])).toEqual([bcs.ssk.b64]);

    const byCarol = (await query(hs, carol, { [alice.userId]: [], [bob.userId]: [] })).body;
    expect(byCarol.device_keys[alice.userId][alice.deviceId].signatures[alice.userId]).toHaveProperty(`ed25519:${acs.ssk.b64}`);
    expect(byCarol.master_keys[alice.userId].signatures[alice.userId]).toHaveProperty(`ed25519:${alice.deviceId}`);
    // Alice's signature of Bob's master key is Alice's business only.
    expect(byCarol.master_keys[bob.userId].signatures?.[alice.userId]).toBeUndefined();
    const byBob = (await query(hs, bob, { [bob.userId]: [] })).body;
    expect(byBob.master_keys[bob.userId].signatures?.[alice.userId]).toBeUndefined();
    const byAlice = (await query(hs, alice, { [bob.userId]: [] })).body;
    expect(byAlice.master_keys[bob.userId].signatures[alice.userId]).toEqual((bobMasterSigned.signatures as JsonObject)[alice.userId]);

    // A bad signature of Bob's master key is a failure, not an error.
    const bad = await call(hs, 'POST', `${C}/keys/signatures/upload`, { [bob.userId]: { [bcs.master.b64]: badSig } }, alice.accessToken);
    expect(bad.status).toBe(200);
    expect(bad.body.failures[bob.userId][bcs.master.b64].errcode).toBe('M_INVALID_SIGNATURE');
    // A signed object that is not the stored key.
    const tampered = await signAs({ ...aliceDevice.json, algorithms: [] }, alice.userId, `ed25519:${acs.ssk.b64}`, acs.ssk);
    const mismatch = await call(hs, 'POST', `${C}/keys/signatures/upload`, { [alice.userId]: { [alice.deviceId]: tampered } }, alice.accessToken);
    expect(mismatch.body.failures[alice.userId][alice.deviceId].errcode).toBe('M_INVALID_SIGNATURE');
  });

  test('guests cannot use cross-signing or backups', async () => {
    const hs = await newHomeserver();
    const guest = (await call(hs, 'POST', `${C}/register?kind=guest`, {})).body;
    const g = { userId: guest.user_id, accessToken: guest.access_token, deviceId: guest.device_id };
    const cs = await crossSigning(g);
    let res = await call(hs, 'POST', `${C}/keys/device_signing/upload`, cs.body, g.accessToken);
    expect([res.status, res.body.errcode]).toEqual([403, 'M_GUEST_ACCESS_FORBIDDEN']);
    res = await call(hs, 'GET', `${C}/room_keys/version`, undefined, g.accessToken);
    expect([res.status, res.body.errcode]).toEqual([403, 'M_GUEST_ACCESS_FORBIDDEN']);
    // Guests may still publish device keys.
    expect((await call(hs, 'POST', `${C}/keys/upload`, {}, g.accessToken)).status).toBe(200);
  });
});

// ---- Key backup

const ALG = 'm.megolm_backup.v1.curve25519-aes-sha2';
const ROOM = '!room:example.org';

function keyData(over: JsonObject = {}): JsonObject {
  return { first_message_index: 1, forwarded_count: 0, is_verified: false, session_data: { ciphertext: 'c', mac: 'm', ephemeral: 'e' }, ...over };
}

describe('key backup', () => {
  test('versions: create, read the current one, update auth_data, delete (twice)', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const t = alice.accessToken;
    let res = await call(hs, 'GET', `${C}/room_keys/version`, undefined, t);
    expect([res.status, res.body.errcode]).toEqual([404, 'M_NOT_FOUND']);

    res = await call(hs, 'POST', `${C}/room_keys/version`, { algorithm: ALG, auth_data: { public_key: 'abc' } }, t);
    expect(res.body).toEqual({ version: '1' });
    res = await call(hs, 'POST', `${C}/room_keys/version`, { algorithm: ALG, auth_data: { public_key: 'def' } }, t);
    expect(res.body).toEqual({ version: '2' });
    res = await call(hs, 'GET', `${C}/room_keys/version`, undefined, t);
    expect(res.body).toEqual({ algorithm: ALG, auth_data: { public_key: 'def' }, count: 0, etag: '0', version: '2' });
    expect((await call(hs, 'GET', `${C}/room_keys/version/1`, undefined, t)).body.auth_data).toEqual({ public_key: 'abc' });
    for (const v of ['3', 'x', '0']) {
      res = await call(hs, 'GET', `${C}/room_keys/version/${v}`, undefined, t);
      expect([res.status, res.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    }
    // Another user's backups are not visible.
    const bob = await newUser(hs);
    expect((await call(hs, 'GET', `${C}/room_keys/version/2`, undefined, bob.accessToken)).status).toBe(404);

    res = await call(hs, 'PUT', `${C}/room_keys/version/2`, { algorithm: ALG, auth_data: { public_key: 'ghi' }, version: '2' }, t);
    expect([res.status, res.body]).toEqual([200, {}]);
    expect((await call(hs, 'GET', `${C}/room_keys/version/2`, undefined, t)).body.auth_data).toEqual({ public_key: 'ghi' });
    res = await call(hs, 'PUT', `${C}/room_keys/version/2`, { algorithm: ALG, auth_data: {}, version: '1' }, t);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    res = await call(hs, 'PUT', `${C}/room_keys/version/2`, { algorithm: 'm.other', auth_data: {} }, t);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    res = await call(hs, 'PUT', `${C}/room_keys/version/9`, { algorithm: ALG, auth_data: {} }, t);
    expect([res.status, res.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    res = await call(hs, 'POST', `${C}/room_keys/version`, { algorithm: ALG }, t);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);

    expect((await call(hs, 'DELETE', `${C}/room_keys/version/2`, undefined, t)).status).toBe(200);
    expect((await call(hs, 'DELETE', `${C}/room_keys/version/2`, undefined, t)).status).toBe(200);
    expect((await call(hs, 'DELETE', `${C}/room_keys/version/7`, undefined, t)).status).toBe(404);
    expect((await call(hs, 'GET', `${C}/room_keys/version/2`, undefined, t)).status).toBe(404);
    // The previous backup is current again; new versions never reuse a number.
    expect((await call(hs, 'GET', `${C}/room_keys/version`, undefined, t)).body.version).toBe('1');
    expect((await call(hs, 'POST', `${C}/room_keys/version`, { algorithm: ALG, auth_data: {} }, t)).body.version).toBe('3');
  });

  test('keys: store, count and etag, the replacement rule, read and delete at every level', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const t = alice.accessToken;
    const { version } = (await call(hs, 'POST', `${C}/room_keys/version`, { algorithm: ALG, auth_data: {} }, t)).body;
    const put = (path: string, body: unknown, v = version) => call(hs, 'PUT', `${C}/room_keys/keys${path}?version=${v}`, body, t);
    const get = (path: string, v = version) => call(hs, 'GET', `${C}/room_keys/keys${path}?version=${v}`, undefined, t);

    let res = await put('', { rooms: { [ROOM]: { sessions: { s1: keyData(), s2: keyData() } } } });
    expect(res.body).toEqual({ etag: '1', count: 2 });
    res = await put(`/${enc(ROOM)}`, { sessions: { s3: keyData() } });
    expect(res.body).toEqual({ etag: '2', count: 3 });
    res = await put(`/${enc('!other:example.org')}/s1`, keyData());
    expect(res.body).toEqual({ etag: '3', count: 4 });

    // The replacement rule: verified beats unverified, then lower first_message_index, then lower forwarded_count.
    const sessionNow = async () => (await get(`/${enc(ROOM)}/s1`)).body;
    res = await put(`/${enc(ROOM)}/s1`, keyData({ first_message_index: 0, forwarded_count: 5 }));
    expect(res.body).toEqual({ etag: '4', count: 4 });
    expect((await sessionNow()).first_message_index).toBe(0);
    res = await put(`/${enc(ROOM)}/s1`, keyData({ first_message_index: 3 }));
    expect(res.body).toEqual({ etag: '4', count: 4 }); // kept: higher index
    await put(`/${enc(ROOM)}/s1`, keyData({ first_message_index: 0, forwarded_count: 1 }));
    expect((await sessionNow()).forwarded_count).toBe(1);
    await put(`/${enc(ROOM)}/s1`, keyData({ first_message_index: 9, forwarded_count: 9, is_verified: true }));
    expect((await sessionNow()).is_verified).toBe(true);
    await put(`/${enc(ROOM)}/s1`, keyData({ first_message_index: 0, forwarded_count: 0, is_verified: false }));
    expect((await sessionNow()).first_message_index).toBe(9); // an unverified key never replaces a verified one
    expect((await call(hs, 'GET', `${C}/room_keys/version`, undefined, t)).body).toMatchObject({ count: 4, etag: '6' });

    res = await get('');
    expect(Object.keys(res.body.rooms).sort()).toEqual(['!other:example.org', ROOM]);
    expect(Object.keys(res.body.rooms[ROOM].sessions).sort()).toEqual(['s1', 's2', 's3']);
    expect((await get(`/${enc('!empty:example.org')}`)).body).toEqual({ sessions: {} });
    res = await get(`/${enc(ROOM)}/nosuch`);
    expect([res.status, res.body.errcode]).toEqual([404, 'M_NOT_FOUND']);

    res = await call(hs, 'DELETE', `${C}/room_keys/keys/${enc(ROOM)}/s2?version=${version}`, undefined, t);
    expect(res.body).toEqual({ etag: '7', count: 3 });
    res = await call(hs, 'DELETE', `${C}/room_keys/keys/${enc(ROOM)}?version=${version}`, undefined, t);
    expect(res.body).toEqual({ etag: '8', count: 1 });
    res = await call(hs, 'DELETE', `${C}/room_keys/keys?version=${version}`, undefined, t);
    expect(res.body).toEqual({ etag: '9', count: 0 });
    expect((await get('')).body).toEqual({ rooms: {} });
  });

  test('bad versions and bodies', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const t = alice.accessToken;
    let res = await call(hs, 'PUT', `${C}/room_keys/keys?version=1`, { rooms: {} }, t);
    expect([res.status, res.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    await call(hs, 'POST', `${C}/room_keys/version`, { algorithm: ALG, auth_data: {} }, t);
    await call(hs, 'POST', `${C}/room_keys/version`, { algorithm: ALG, auth_data: {} }, t);

    // Only the current backup takes keys.
    res = await call(hs, 'PUT', `${C}/room_keys/keys?version=1`, { rooms: { [ROOM]: { sessions: { s: keyData() } } } }, t);
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ errcode: 'M_WRONG_ROOM_KEYS_VERSION', current_version: '2' });
    res = await call(hs, 'PUT', `${C}/room_keys/keys/${enc(ROOM)}/s?version=42`, keyData(), t);
    expect([res.status, res.body.errcode, res.body.current_version]).toEqual([403, 'M_WRONG_ROOM_KEYS_VERSION', '2']);

    res = await call(hs, 'PUT', `${C}/room_keys/keys`, { rooms: {} }, t);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    res = await call(hs, 'GET', `${C}/room_keys/keys?version=9`, undefined, t);
    expect([res.status, res.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    res = await call(hs, 'DELETE', `${C}/room_keys/keys?version=9`, undefined, t);
    expect([res.status, res.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    res = await call(hs, 'PUT', `${C}/room_keys/keys/${enc(ROOM)}/s?version=2`, { first_message_index: 1 }, t);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    res = await call(hs, 'PUT', `${C}/room_keys/keys/${enc(ROOM)}/s?version=2`, keyData({ first_message_index: -1 }), t);
    expect(res.status).toBe(400);
    res = await call(hs, 'PUT', `${C}/room_keys/keys/${enc(ROOM)}/s?version=2`, keyData({ is_verified: 'yes' }), t);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    res = await call(hs, 'PUT', `${C}/room_keys/keys/not-a-room/s?version=2`, keyData(), t);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    // Room keys outside the `^!` pattern escape the schema, not the checks.
    res = await call(hs, 'PUT', `${C}/room_keys/keys?version=2`, { rooms: { nope: { sessions: { s: keyData() } } } }, t);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    res = await call(hs, 'PUT', `${C}/room_keys/keys?version=2`, { rooms: { [ROOM]: { sessions: { s: 'x' } } } }, t);
    expect([res.status, res.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    expect((await call(hs, 'GET', `${C}/room_keys/version`, undefined, t)).body.count).toBe(0);
  });
});
