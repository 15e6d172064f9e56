import { describe, expect, it } from 'vitest';
import { decodeBase64 } from '../../../src/core/base64.js';
import { publicKeyFromSeed } from '../../../src/core/crypto/ed25519.js';
import { addContentHash, checkContentHash } from '../../../src/core/hashes.js';
import type { JsonObject } from '../../../src/core/json.js';
import { roomVersion } from '../../../src/core/room-versions.js';
import {
  signatureKeyIds,
  signEvent,
  signJson,
  signJsonSync,
  verifyEventSignature,
  verifyEventSignatureSync,
  verifyJsonSignature,
  verifyJsonSignatureSync,
} from '../../../src/core/signing.js';
import type { SigningKey } from '../../../src/core/signing.js';

// appendices.md §"Cryptographic Test Vectors": SIGNING_KEY_SEED, SERVER_NAME = "domain", KEY_ID = "ed25519:1".
const seed = decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1')!;
const KEY: SigningKey = { keyId: 'ed25519:1', seed, publicKey: publicKeyFromSeed(seed) };
const SERVER = 'domain';
const v1 = roomVersion('1')!;

describe('JSON signing: appendix test vectors', () => {
  it('signs {}', async () => {
    const expected = {
      signatures: {
        domain: {
          'ed25519:1': 'K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ',
        },
      },
    };
    expect(await signJson({}, SERVER, KEY)).toEqual(expected);
    expect(signJsonSync({}, SERVER, KEY)).toEqual(expected);
    expect(await verifyJsonSignature(expected, SERVER, 'ed25519:1', KEY.publicKey)).toBe(true);
  });

  it('signs {"one": 1, "two": "Two"}', async () => {
    const expected = {
      one: 1,
      signatures: {
        domain: {
          'ed25519:1': 'KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw',
        },
      },
      two: 'Two',
    };
    expect(await signJson({ one: 1, two: 'Two' }, SERVER, KEY)).toEqual(expected);
    expect(verifyJsonSignatureSync(expected, SERVER, 'ed25519:1', KEY.publicKey)).toBe(true);
  });
});

describe('event signing: appendix test vectors', () => {
  it('signs the minimally-sized event (hash and signature exactly)', async () => {
    const input: JsonObject = {
      room_id: '!x:domain',
      sender: '@a:domain',
      origin: 'domain',
      origin_server_ts: 1000000,
      signatures: {},
      hashes: {},
      type: 'X',
      content: {},
      prev_events: [],
      auth_events: [],
      depth: 3,
      unsigned: { age_ts: 1000000 },
    };
    const expected = {
      auth_events: [],
      content: {},
      depth: 3,
      hashes: { sha256: '5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos' },
      origin: 'domain',
      origin_server_ts: 1000000,
      prev_events: [],
      room_id: '!x:domain',
      sender: '@a:domain',
      signatures: {
        domain: {
          'ed25519:1': 'KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg',
        },
      },
      type: 'X',
      unsigned: { age_ts: 1000000 },
    };
    const signed = await signEvent(addContentHash(input), v1, SERVER, KEY);
    expect(signed).toEqual(expected);
    expect(checkContentHash(expected)).toBe(true);
    expect(await verifyEventSignature(expected, v1, SERVER, 'ed25519:1', KEY.publicKey)).toBe(true);
  });

  it('signs the event containing redactable content (hash and signature exactly)', async () => {
    const input: JsonObject = {
      content: { body: 'Here is the message content' },
      event_id: '$0:domain',
      origin: 'domain',
      origin_server_ts: 1000000,
      type: 'm.room.message',
      room_id: '!r:domain',
      sender: '@u:domain',
      signatures: {},
      unsigned: { age_ts: 1000000 },
    };
    const expected = {
      content: { body: 'Here is the message content' },
      event_id: '$0:domain',
      hashes: { sha256: 'onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g' },
      origin: 'domain',
      origin_server_ts: 1000000,
      type: 'm.room.message',
      room_id: '!r:domain',
      sender: '@u:domain',
      signatures: {
        domain: {
          'ed25519:1': 'Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA',
        },
      },
      unsigned: { age_ts: 1000000 },
    };
    const signed = await signEvent(addContentHash(input), v1, SERVER, KEY);
    expect(signed).toEqual(expected);
    expect(checkContentHash(expected)).toBe(true);
    expect(verifyEventSignatureSync(expected, v1, SERVER, 'ed25519:1', KEY.publicKey)).toBe(true);

    // The signature covers only the redacted form: a redacted copy still verifies, its content hash does not.
    const redactedCopy = { ...expected, content: {} };
    expect(await verifyEventSignature(redactedCopy, v1, SERVER, 'ed25519:1', KEY.publicKey)).toBe(true);
    expect(checkContentHash(redactedCopy)).toBe(false);
    // ...but a change to a protected key breaks it.
    const moved = { ...expected, origin_server_ts: 1000001 };
    expect(await verifyEventSignature(moved, v1, SERVER, 'ed25519:1', KEY.publicKey)).toBe(false);
  });
});

describe('signJson / verifyJsonSignature', () => {
  const other: SigningKey = (() => {
    const s = new Uint8Array(32).fill(9);
    return { keyId: 'ed25519:other', seed: s, publicKey: publicKeyFromSeed(s) };
  })();

  it('excludes signatures and unsigned from the signed bytes and keeps existing signatures', async () => {
    const once = await signJson({ a: 1, unsigned: { age: 5 } }, SERVER, KEY);
    const twice = await signJson(once, 'other.example', other);
    expect(twice.unsigned).toEqual({ age: 5 });
    expect(signatureKeyIds(twice, SERVER)).toEqual(['ed25519:1']);
    expect(signatureKeyIds(twice, 'other.example')).toEqual(['ed25519:other']);
    expect(await verifyJsonSignature(twice, SERVER, 'ed25519:1', KEY.publicKey)).toBe(true);
    expect(await verifyJsonSignature(twice, 'other.example', 'ed25519:other', other.publicKey)).toBe(true);
    // unsigned may change in transit
    expect(await verifyJsonSignature({ ...twice, unsigned: { age: 99 } }, SERVER, 'ed25519:1', KEY.publicKey)).toBe(true);
  });

  it('signs a "__proto__" key like any other key (it is not lost when copying)', async () => {
    const obj = JSON.parse('{"a":1,"__proto__":{"x":1}}') as JsonObject;
    const signed = await signJson(obj, SERVER, KEY);
    expect(Object.keys(signed)).toContain('__proto__');
    expect(await verifyJsonSignature(signed, SERVER, 'ed25519:1', KEY.publicKey)).toBe(true);
    const stripped = JSON.parse('{"a":1}') as JsonObject;
    stripped.signatures = signed.signatures;
    expect(await verifyJsonSignature(stripped, SERVER, 'ed25519:1', KEY.publicKey)).toBe(false);
  });

  it('does not modify its input', async () => {
    const input: JsonObject = { a: 1, signatures: { x: { 'ed25519:a': 'sig' } } };
    const snapshot = structuredClone(input);
    await signJson(input, 'x', KEY);
    expect(input).toEqual(snapshot);
  });

  it('adds a second key of the same server beside the first', async () => {
    const signed = await signJson(await signJson({ a: 1 }, SERVER, KEY), SERVER, { ...other, keyId: 'ed25519:2' });
    expect(signatureKeyIds(signed, SERVER).sort()).toEqual(['ed25519:1', 'ed25519:2']);
  });

  it('fails, without throwing, for every way a check can fail', async () => {
    const good = await signJson({ a: 1 }, SERVER, KEY);
    const sig = (good.signatures as Record<string, Record<string, string>>).domain['ed25519:1'];
    const cases: [string, unknown, string, string, Uint8Array][] = [
      ['no signatures', { a: 1 }, SERVER, 'ed25519:1', KEY.publicKey],
      ['no entry for server', good, 'elsewhere', 'ed25519:1', KEY.publicKey],
      ['no such key ID', good, SERVER, 'ed25519:2', KEY.publicKey],
      ['wrong public key', good, SERVER, 'ed25519:1', other.publicKey],
      ['tampered content', { ...good, a: 2 }, SERVER, 'ed25519:1', KEY.publicKey],
      ['undecodable signature', { a: 1, signatures: { domain: { 'ed25519:1': '!!!' } } }, SERVER, 'ed25519:1', KEY.publicKey],
      ['short signature', { a: 1, signatures: { domain: { 'ed25519:1': sig.slice(0, 40) } } }, SERVER, 'ed25519:1', KEY.publicKey],
      ['signature not a string', { a: 1, signatures: { domain: { 'ed25519:1': 5 } } }, SERVER, 'ed25519:1', KEY.publicKey],
      ['signatures not an object', { a: 1, signatures: [] }, SERVER, 'ed25519:1', KEY.publicKey],
      ['float in object', { ...good, a: 1.5 }, SERVER, 'ed25519:1', KEY.publicKey],
      ['not an object', 'nope', SERVER, 'ed25519:1', KEY.publicKey],
      ['bad key length', good, SERVER, 'ed25519:1', new Uint8Array(5)],
    ];
    for (const [name, obj, server, keyId, pub] of cases) {
      expect(await verifyJsonSignature(obj as JsonObject, server, keyId, pub), name).toBe(false);
      expect(verifyJsonSignatureSync(obj as JsonObject, server, keyId, pub), name).toBe(false);
    }
  });

  it('accepts a padded signature (decoders accept padding)', async () => {
    const good = await signJson({ a: 1 }, SERVER, KEY);
    const sig = (good.signatures as Record<string, Record<string, string>>).domain['ed25519:1'];
    const padded = { a: 1, signatures: { domain: { 'ed25519:1': sig + '==' } } };
    expect(await verifyJsonSignature(padded, SERVER, 'ed25519:1', KEY.publicKey)).toBe(true);
  });
});
