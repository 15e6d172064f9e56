import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CanonicalJsonError } from '../../../src/core/canonical-json.js';
import {
  EventIdError,
  computeEventId,
  createEventIdFromRoomId,
  pduFromJson,
  roomIdFromCreateEventId,
} from '../../../src/core/event-id.js';
import { addContentHash, checkContentHash, contentHash, referenceHash } from '../../../src/core/hashes.js';
import type { JsonObject } from '../../../src/core/json.js';
import { roomVersion } from '../../../src/core/room-versions.js';

const V = (id: string) => roomVersion(id)!;
const sha256b64 = (text: string, urlsafe = false) => {
  const b = createHash('sha256').update(Buffer.from(text, 'utf8')).digest();
  return urlsafe ? b.toString('base64url') : b.toString('base64').replace(/=+$/, '');
};

/** A message event in v4+ format; its redacted canonical JSON is written out by hand below. */
const MESSAGE: JsonObject = {
  auth_events: ['$auth'],
  content: { body: 'hello', msgtype: 'm.text' },
  depth: 5,
  hashes: { sha256: 'HASH' },
  origin: 'example.org',
  origin_server_ts: 1700000000000,
  prev_events: ['$prev'],
  room_id: '!room:example.org',
  sender: '@alice:example.org',
  signatures: { 'example.org': { 'ed25519:1': 'SIG' } },
  type: 'm.room.message',
  unsigned: { age: 10 },
};
const MESSAGE_REDACTED_V4 =
  '{"auth_events":["$auth"],"content":{},"depth":5,"hashes":{"sha256":"HASH"},"origin":"example.org","origin_server_ts":1700000000000,"prev_events":["$prev"],"room_id":"!room:example.org","sender":"@alice:example.org","type":"m.room.message"}';
const MESSAGE_REDACTED_V11 =
  '{"auth_events":["$auth"],"content":{},"depth":5,"hashes":{"sha256":"HASH"},"origin_server_ts":1700000000000,"prev_events":["$prev"],"room_id":"!room:example.org","sender":"@alice:example.org","type":"m.room.message"}';

describe('hashes', () => {
  it('content hash covers everything but unsigned, signatures and hashes', () => {
    const expectedText =
      '{"auth_events":["$auth"],"content":{"body":"hello","msgtype":"m.text"},"depth":5,"origin":"example.org","origin_server_ts":1700000000000,"prev_events":["$prev"],"room_id":"!room:example.org","sender":"@alice:example.org","type":"m.room.message"}';
    expect(Buffer.from(contentHash(MESSAGE)).toString('base64').replace(/=+$/, '')).toBe(sha256b64(expectedText));
    const hashed = addContentHash(MESSAGE);
    expect(hashed.hashes).toEqual({ sha256: sha256b64(expectedText) });
    expect(checkContentHash(hashed)).toBe(true);
    // unsigned and signatures may change; content may not
    expect(checkContentHash({ ...hashed, unsigned: { age: 99 }, signatures: {} })).toBe(true);
    expect(checkContentHash({ ...hashed, content: { body: 'hellO', msgtype: 'm.text' } })).toBe(false);
  });

  it('a "__proto__" key in a parsed event is covered by the content hash', () => {
    const withProto = JSON.parse(JSON.stringify(MESSAGE).replace('"content":{', '"content":{"__proto__":{"p":1},')) as JsonObject;
    const hashed = addContentHash(withProto);
    expect(checkContentHash(hashed)).toBe(true);
    expect(Buffer.from(contentHash(withProto)).toString('hex')).not.toBe(Buffer.from(contentHash(MESSAGE)).toString('hex'));
  });

  it('checkContentHash is false, never throwing, on missing or malformed hashes', () => {
    const hashed = addContentHash(MESSAGE);
    const h = (hashed.hashes as { sha256: string }).sha256;
    for (const bad of [
      { ...hashed, hashes: undefined as unknown as JsonObject },
      { ...hashed, hashes: {} },
      { ...hashed, hashes: { sha256: 5 } },
      { ...hashed, hashes: { sha256: '%%%' } },
      { ...hashed, hashes: { sha256: h.slice(0, 20) } },
      { ...hashed, depth: 1.5 },
      'not an object' as unknown as JsonObject,
    ]) {
      expect(checkContentHash(bad)).toBe(false);
    }
  });

  it('reference hash is the hash of the redacted event without signatures/unsigned, per version', () => {
    expect(Buffer.from(referenceHash(MESSAGE, V('4'))).toString('base64url')).toBe(sha256b64(MESSAGE_REDACTED_V4, true));
    expect(Buffer.from(referenceHash(MESSAGE, V('11'))).toString('base64url')).toBe(sha256b64(MESSAGE_REDACTED_V11, true));
  });

  it('reference hash is unchanged by redaction, unsigned and signatures', () => {
    const v = V('10');
    const base = Buffer.from(referenceHash(MESSAGE, v)).toString('hex');
    expect(Buffer.from(referenceHash({ ...MESSAGE, content: {}, unsigned: {}, signatures: {} }, v)).toString('hex')).toBe(base);
    expect(Buffer.from(referenceHash({ ...MESSAGE, depth: 6 }, v)).toString('hex')).not.toBe(base);
  });
});

describe('computeEventId', () => {
  it('v1–v2: the event_id field, validated', () => {
    const ev = { ...MESSAGE, event_id: '$abc:example.org' };
    expect(computeEventId(ev, V('1'))).toBe('$abc:example.org');
    expect(computeEventId(ev, V('2'))).toBe('$abc:example.org');
    expect(() => computeEventId(MESSAGE, V('1'))).toThrow(EventIdError);
    expect(() => computeEventId({ ...MESSAGE, event_id: '$nodomain' }, V('1'))).toThrow(EventIdError);
    expect(() => computeEventId({ ...MESSAGE, event_id: 5 }, V('2'))).toThrow(EventIdError);
  });

  it('v3: $ + standard Base64 reference hash; v4+: URL-safe', () => {
    const expectedStd = '$' + sha256b64(MESSAGE_REDACTED_V4);
    const expectedUrl = '$' + sha256b64(MESSAGE_REDACTED_V4, true);
    expect(computeEventId(MESSAGE, V('3'))).toBe(expectedStd);
    for (const id of ['4', '5']) expect(computeEventId(MESSAGE, V(id))).toBe(expectedUrl);
    expect(computeEventId(MESSAGE, V('11'))).toBe('$' + sha256b64(MESSAGE_REDACTED_V11, true));
  });

  it('v3 and v4 IDs of one event differ only in the alphabet', () => {
    // Find a depth whose hash has a '+' or '/' in it, so the two alphabets visibly differ.
    let ev = MESSAGE;
    for (let d = 0; d < 200; d++) {
      ev = { ...MESSAGE, depth: d };
      if (/[+/]/.test(computeEventId(ev, V('3')))) break;
    }
    const v3 = computeEventId(ev, V('3'));
    const v4 = computeEventId(ev, V('4'));
    expect(v3).toMatch(/[+/]/);
    expect(v4).not.toMatch(/[+/]/);
    expect(v4).toBe(v3.replace(/\+/g, '-').replace(/\//g, '_'));
    expect(v4.length).toBe(44);
  });

  it('v6+: out-of-range integers make the ID uncomputable (strict canonical JSON); v5 tolerates them', () => {
    // Only the redacted form counts: a big number in a message's content does not matter...
    expect(computeEventId({ ...MESSAGE, content: { n: 2 ** 60 } }, V('6'))).toMatch(/^\$[A-Za-z0-9_-]{43}$/);
    // ...one in a kept field does.
    const bigDepth = { ...MESSAGE, depth: 2 ** 60 };
    expect(computeEventId(bigDepth, V('5'))).toMatch(/^\$[A-Za-z0-9_-]{43}$/);
    expect(() => computeEventId(bigDepth, V('6'))).toThrow(CanonicalJsonError);
  });
});

describe('pduFromJson', () => {
  it('builds a Pdu with the version-specific ID', () => {
    const r = pduFromJson(MESSAGE, V('10'));
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.pdu.eventId).toBe(computeEventId(MESSAGE, V('10')));
      expect(r.pdu.prevEvents).toEqual(['$prev']);
      expect(r.pdu.sender).toBe('@alice:example.org');
    }
  });

  it('returns reasons instead of throwing', () => {
    expect(pduFromJson(MESSAGE, V('1'))).toMatchObject({ ok: false, reason: 'event has no event_id' });
    expect(pduFromJson(null, V('10'))).toMatchObject({ ok: false });
    expect(pduFromJson([], V('10'))).toMatchObject({ ok: false });
    expect(pduFromJson({ ...MESSAGE, depth: 0.5 }, V('10'))).toMatchObject({ ok: false, reason: expect.stringMatching(/non-integer/) });
  });
});

describe('v12 room IDs', () => {
  const create: JsonObject = {
    auth_events: [],
    content: { room_version: '12' },
    depth: 1,
    hashes: { sha256: 'HASH' },
    origin_server_ts: 1700000000000,
    prev_events: [],
    sender: '@alice:example.org',
    signatures: {},
    state_key: '',
    type: 'm.room.create',
  };

  it('room ID = ! + the create event ID body', () => {
    const redactedText =
      '{"auth_events":[],"content":{"room_version":"12"},"depth":1,"hashes":{"sha256":"HASH"},"origin_server_ts":1700000000000,"prev_events":[],"sender":"@alice:example.org","state_key":"","type":"m.room.create"}';
    const eventId = computeEventId(create, V('12'));
    expect(eventId).toBe('$' + sha256b64(redactedText, true));
    const roomId = roomIdFromCreateEventId(eventId);
    expect(roomId).toBe('!' + eventId.slice(1));
    expect(createEventIdFromRoomId(roomId!)).toBe(eventId);
    const r = pduFromJson(create, V('12'));
    expect(r.ok && r.pdu.roomId).toBe(roomId);
  });

  it('create content is kept whole by v11+ redaction, so it is part of the room ID', () => {
    const a = computeEventId(create, V('12'));
    const b = computeEventId({ ...create, content: { room_version: '12', additional_creators: ['@b:x'] } }, V('12'));
    expect(a).not.toBe(b);
  });

  it('rejects non-hash IDs', () => {
    expect(roomIdFromCreateEventId('$abc:example.org')).toBeUndefined();
    expect(roomIdFromCreateEventId('$' + 'a+'.repeat(21) + 'a')).toBeUndefined();
    expect(roomIdFromCreateEventId('!' + 'a'.repeat(43))).toBeUndefined();
    expect(createEventIdFromRoomId('!abc:example.org')).toBeUndefined();
  });
});
