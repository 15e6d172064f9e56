import { beforeAll, describe, expect, it } from 'vitest';
import { buildEvent } from '../../../src/core/build-event.js';
import { publicKeyFromSeed } from '../../../src/core/crypto/ed25519.js';
import { checkContentHash } from '../../../src/core/hashes.js';
import type { JsonObject, JsonValue } from '../../../src/core/json.js';
import { checkPduFormat } from '../../../src/core/pdu-format.js';
import type { RoomVersion } from '../../../src/core/room-versions.js';
import { roomVersion } from '../../../src/core/room-versions.js';
import type { SigningKey } from '../../../src/core/signing.js';
import { verifyEventSignature } from '../../../src/core/signing.js';

const V = (id: string) => roomVersion(id)!;
const seed = new Uint8Array(32).fill(4);
const KEY: SigningKey = { keyId: 'ed25519:a', seed, publicKey: publicKeyFromSeed(seed) };
const ORIGIN = 'example.org';
const HASH_ID = '$' + 'B'.repeat(43);

/** A valid signed message event for each version shape: v1 (pairs), v3 (std Base64), v6 (strict), v12. */
const samples: Record<string, JsonObject> = {};

function messageProto(version: RoomVersion): JsonObject {
  const ref = version.eventIdFormat === 'server' ? '$prev:example.org' : HASH_ID;
  return {
    type: 'm.room.message',
    room_id: version.roomIdFromCreateEvent ? '!' + 'R'.repeat(43) : '!room:example.org',
    sender: '@alice:example.org',
    content: { body: 'hi', msgtype: 'm.text' },
    prev_events: [ref],
    auth_events: [ref],
    depth: 3,
    origin_server_ts: 1700000000000,
  };
}

beforeAll(async () => {
  for (const id of ['1', '3', '6', '11', '12']) {
    const v = V(id);
    const pdu = await buildEvent(messageProto(v), v, ORIGIN, KEY, { referenceHashes: new Map([['$prev:example.org', 'h']]) });
    samples[id] = pdu.json;
  }
});

function without(json: JsonObject, key: string): JsonObject {
  const copy = { ...json };
  delete copy[key];
  return copy;
}

function expectRejected(json: unknown, version: RoomVersion, reason: RegExp): void {
  const r = checkPduFormat(json, version);
  expect(r.ok, JSON.stringify(r)).toBe(false);
  if (!r.ok) expect(r.reason).toMatch(reason);
}

describe('checkPduFormat accepts well-formed events', () => {
  it.each(['1', '3', '6', '11', '12'])('room version %s', (id) => {
    expect(checkPduFormat(samples[id], V(id))).toEqual({ ok: true });
  });
  it('accepts a v12 create event without room_id', async () => {
    const v = V('12');
    const create = await buildEvent(
      { type: 'm.room.create', state_key: '', sender: '@a:x', content: { room_version: '12' }, prev_events: [], auth_events: [], depth: 1, origin_server_ts: 1 },
      v,
      'x',
      KEY,
    );
    expect(create.json.room_id).toBeUndefined();
    expect(checkPduFormat(create.json, v)).toEqual({ ok: true });
  });
  it('accepts historical user IDs as sender', () => {
    expect(checkPduFormat({ ...samples['6'], sender: '@Old Style!:example.org' }, V('6'))).toEqual({ ok: true });
  });
});

describe('checkPduFormat rejects missing fields', () => {
  const required = ['type', 'sender', 'content', 'room_id', 'origin_server_ts', 'depth', 'prev_events', 'auth_events', 'hashes', 'signatures'];
  for (const id of ['1', '3', '6', '11', '12']) {
    it.each(required)(`room version ${id}: without %s`, (key) => {
      expectRejected(without(samples[id], key), V(id), new RegExp(`'${key}'`));
    });
  }
  it('v1–v2 need event_id; v12 non-create events need room_id', () => {
    expectRejected(without(samples['1'], 'event_id'), V('1'), /'event_id' is missing/);
    expectRejected(without(samples['12'], 'room_id'), V('12'), /'room_id' is missing/);
  });
});

describe('checkPduFormat rejects wrong types', () => {
  const cases: [string, JsonValue, RegExp][] = [
    ['type', 5, /'type'/],
    ['sender', ['@a:x'], /'sender'/],
    ['content', 'text', /'content'/],
    ['content', [], /'content'/],
    ['room_id', 7, /'room_id'/],
    ['origin_server_ts', '1700000000000', /'origin_server_ts'/],
    ['depth', '3', /'depth'/],
    ['prev_events', {}, /'prev_events'/],
    ['auth_events', 'x', /'auth_events'/],
    ['hashes', 'h', /'hashes'/],
    ['hashes', {}, /'hashes.sha256'/],
    ['hashes', { sha256: 1 }, /'hashes.sha256'/],
    ['signatures', [], /'signatures'/],
    ['signatures', { 'example.org': 'sig' }, /'signatures.example.org'/],
    ['signatures', { 'example.org': { 'ed25519:a': 1 } }, /'signatures.example.org.ed25519:a'/],
    ['state_key', 1, /'state_key'/],
    ['state_key', null, /'state_key'/],
    ['unsigned', 'u', /'unsigned'/],
    ['redacts', 5, /'redacts'/],
    ['redacts', 'not-an-id', /'redacts'/],
  ];
  it.each(cases)('%s = %j', (key, value, reason) => {
    expectRejected({ ...samples['6'], [key]: value }, V('6'), reason);
  });
  it('a float anywhere is not canonical JSON', () => {
    expectRejected({ ...samples['6'], depth: 3.5 }, V('6'), /not canonical JSON/);
    expectRejected({ ...samples['3'], content: { x: 0.5 } }, V('3'), /not canonical JSON/);
  });
  it('non-objects', () => {
    for (const v of [null, undefined, 1, 'x', [], true]) expectRejected(v, V('6'), /not a JSON object/);
  });
});

describe('checkPduFormat rejects the wrong room-version format', () => {
  it('v1–v2 references must be [id, {sha256}] pairs of $opaque:server IDs', () => {
    expectRejected({ ...samples['1'], prev_events: ['$prev:example.org'] }, V('1'), /prev_events\[0\] is not an \[event ID, hashes\] pair/);
    expectRejected({ ...samples['1'], prev_events: [['$prev:example.org']] }, V('1'), /pair/);
    expectRejected({ ...samples['1'], auth_events: [['$prev:example.org', {}]] }, V('1'), /auth_events\[0\] has no sha256/);
    expectRejected({ ...samples['1'], prev_events: [[HASH_ID, { sha256: 'h' }]] }, V('1'), /prev_events\[0\]/);
    expectRejected({ ...samples['1'], event_id: HASH_ID }, V('1'), /'event_id'/);
  });
  it('v3 references are standard Base64 hashes, v4+ URL-safe', () => {
    const url = '$' + 'a-'.repeat(21) + 'a';
    const std = '$' + 'a+'.repeat(21) + 'a';
    expectRejected({ ...samples['3'], prev_events: [url] }, V('3'), /prev_events\[0\].*standard/);
    expectRejected({ ...samples['6'], prev_events: [std] }, V('6'), /prev_events\[0\].*URL-safe/);
    expectRejected({ ...samples['6'], auth_events: [['$x:y', { sha256: 'h' }]] }, V('6'), /auth_events\[0\]/);
    expectRejected({ ...samples['6'], prev_events: ['$prev:example.org'] }, V('6'), /prev_events\[0\]/);
  });
  it('room IDs: !opaque:server before v12, the hash form in v12', () => {
    expectRejected({ ...samples['11'], room_id: '!' + 'R'.repeat(43) }, V('11'), /'room_id'/);
    expectRejected({ ...samples['12'], room_id: '!room:example.org' }, V('12'), /'room_id'/);
  });
  it('v11+ m.room.redaction: content.redacts must be an event ID when present', () => {
    expectRejected({ ...samples['11'], type: 'm.room.redaction', content: { redacts: 5 } }, V('11'), /'content.redacts'/);
    expect(checkPduFormat({ ...samples['11'], type: 'm.room.redaction', content: { redacts: HASH_ID } }, V('11'))).toEqual({ ok: true });
  });
  it('identifiers must be valid', () => {
    expectRejected({ ...samples['6'], sender: 'alice' }, V('6'), /'sender'/);
    expectRejected({ ...samples['6'], sender: '@alice:bad host' }, V('6'), /'sender'/);
    expectRejected({ ...samples['6'], room_id: 'room' }, V('6'), /'room_id'/);
  });
});

describe('checkPduFormat size limits', () => {
  it('the whole event must be at most 65536 bytes of canonical JSON', () => {
    const base = samples['6'];
    const overhead = new TextEncoder().encode(JSON.stringify({ ...base, content: { body: '' } })).length;
    // JSON.stringify and canonical JSON agree on size for this ASCII-only event (no whitespace either way).
    const fits = { ...base, content: { body: 'x'.repeat(65536 - overhead) } };
    expect(checkPduFormat(fits, V('6'))).toEqual({ ok: true });
    expectRejected({ ...base, content: { body: 'x'.repeat(65537 - overhead) } }, V('6'), /65537 bytes.*limit 65536/);
  });
  it('counts bytes, not characters', () => {
    const base = samples['6'];
    expectRejected({ ...base, content: { body: '日'.repeat(22000) } }, V('6'), /limit 65536/);
  });
  it('type and state_key at most 255 bytes; sender and room_id at most 255 bytes', () => {
    const base = samples['6'];
    expect(checkPduFormat({ ...base, type: 't'.repeat(255) }, V('6'))).toEqual({ ok: true });
    expectRejected({ ...base, type: 't'.repeat(256) }, V('6'), /'type' is longer than 255 bytes/);
    expectRejected({ ...base, type: 'é'.repeat(128) }, V('6'), /'type' is longer/);
    expect(checkPduFormat({ ...base, state_key: 's'.repeat(255) }, V('6'))).toEqual({ ok: true });
    expectRejected({ ...base, state_key: 's'.repeat(256) }, V('6'), /'state_key' is longer/);
    expectRejected({ ...base, sender: '@' + 'a'.repeat(250) + ':example.org' }, V('6'), /'sender'.*255/);
    expectRejected({ ...base, room_id: '!' + 'a'.repeat(250) + ':example.org' }, V('6'), /'room_id'.*255/);
  });
  it('at most 20 prev_events and 10 auth_events', () => {
    const base = samples['6'];
    expect(checkPduFormat({ ...base, prev_events: Array(20).fill(HASH_ID), auth_events: Array(10).fill(HASH_ID) }, V('6'))).toEqual({ ok: true });
    expectRejected({ ...base, prev_events: Array(21).fill(HASH_ID) }, V('6'), /'prev_events' has 21 entries/);
    expectRejected({ ...base, auth_events: Array(11).fill(HASH_ID) }, V('6'), /'auth_events' has 11 entries/);
  });
});

describe('checkPduFormat: strict integers from v6', () => {
  it('v6+ rejects integers outside ±(2^53-1); v1–v5 accept them', () => {
    const big = 2 ** 53;
    expectRejected({ ...samples['6'], content: { n: big } }, V('6'), /outside/);
    expectRejected({ ...samples['12'], origin_server_ts: big }, V('12'), /outside/);
    expect(checkPduFormat({ ...samples['3'], content: { n: big } }, V('3'))).toEqual({ ok: true });
    expect(checkPduFormat({ ...samples['1'], depth: big }, V('1'))).toEqual({ ok: true });
    expectRejected({ ...samples['1'], depth: 2 ** 63 }, V('1'), /'depth' is too large/);
  });
});

describe('bad hashes and bad signatures are detected by the check functions', () => {
  it('a modified body fails the content hash but keeps a valid signature (redact, do not drop)', async () => {
    const v = V('6');
    const tampered = { ...samples['6'], content: { body: 'changed', msgtype: 'm.text' } };
    expect(checkPduFormat(tampered, v)).toEqual({ ok: true });
    expect(checkContentHash(tampered)).toBe(false);
    expect(await verifyEventSignature(tampered, v, ORIGIN, KEY.keyId, KEY.publicKey)).toBe(true);
  });
  it('a modified protected field fails the signature', async () => {
    const v = V('6');
    const tampered = { ...samples['6'], sender: '@mallory:example.org' };
    expect(checkPduFormat(tampered, v)).toEqual({ ok: true });
    expect(await verifyEventSignature(tampered, v, ORIGIN, KEY.keyId, KEY.publicKey)).toBe(false);
  });
  it('a signature from another key fails', async () => {
    const v = V('12');
    const other = publicKeyFromSeed(new Uint8Array(32).fill(5));
    expect(await verifyEventSignature(samples['12'], v, ORIGIN, KEY.keyId, other)).toBe(false);
    expect(await verifyEventSignature(samples['12'], v, ORIGIN, KEY.keyId, KEY.publicKey)).toBe(true);
  });
});

describe('checkPduFormat never throws (fuzz)', () => {
  // Deterministic PRNG so a failure reproduces.
  let state = 0x12345678;
  const rand = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const weird: readonly unknown[] = [
    undefined, null, true, false, 0, -0, -1, 1.5, NaN, Infinity, 2 ** 60, 2n ** 70n, '', 'x', '\ud800', '$', '!', '@:',
    '\u0000', [], {}, [[]], [{}], [null], () => 1, Symbol('s'), new Date(0), new Uint8Array(3), Object.create(null),
    ['$a:b', { sha256: 1 }], HASH_ID, [HASH_ID, HASH_ID],
  ];
  const randomValue = (depth: number): unknown => {
    const r = rand();
    if (depth > 3 || r < 0.5) return pick(weird);
    if (r < 0.75) return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(depth + 1));
    const o: Record<string, unknown> = {};
    for (let i = 0; i < Math.floor(rand() * 4); i++) o[pick(['type', 'sha256', 'content', 'x', 'ed25519:a', 'example.org', 'redacts'])] = randomValue(depth + 1);
    return o;
  };
  const keys = ['type', 'sender', 'room_id', 'content', 'state_key', 'origin_server_ts', 'depth', 'prev_events', 'auth_events', 'hashes', 'signatures', 'unsigned', 'redacts', 'event_id', 'origin'];
  const versions = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12'].map(V);

  it('on random values and on valid events with random fields replaced', () => {
    let rejected = 0;
    for (let i = 0; i < 3000; i++) {
      const version = pick(versions);
      let input: unknown;
      if (i % 3 === 0) input = randomValue(0);
      else {
        const base: Record<string, unknown> = { ...samples[pick(['1', '3', '6', '11', '12'])] };
        for (let j = 0; j < 1 + Math.floor(rand() * 3); j++) {
          const k = pick(keys);
          if (rand() < 0.2) delete base[k];
          else base[k] = randomValue(1);
        }
        input = base;
      }
      let result: ReturnType<typeof checkPduFormat> | undefined;
      expect(() => {
        result = checkPduFormat(input, version);
      }).not.toThrow();
      expect(result).toBeDefined();
      if (result && !result.ok) {
        rejected++;
        expect(typeof result.reason).toBe('string');
        expect(result.reason.length).toBeGreaterThan(0);
      }
    }
    expect(rejected).toBeGreaterThan(2500);
  });

  it('even with a throwing getter', () => {
    const evil = { ...samples['6'] };
    Object.defineProperty(evil, 'type', { enumerable: true, get: () => { throw new Error('boom'); } });
    const r = checkPduFormat(evil, V('6'));
    expect(r.ok).toBe(false);
  });
});
