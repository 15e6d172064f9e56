import { describe, expect, it } from 'vitest';
import { BuildEventError, buildEvent } from '../../../src/core/build-event.js';
import { CanonicalJsonError } from '../../../src/core/canonical-json.js';
import { publicKeyFromSeed } from '../../../src/core/crypto/ed25519.js';
import { computeEventId, roomIdFromCreateEventId } from '../../../src/core/event-id.js';
import { checkContentHash, referenceHash } from '../../../src/core/hashes.js';
import { encodeBase64 } from '../../../src/core/base64.js';
import type { JsonObject } from '../../../src/core/json.js';
import { checkPduFormat } from '../../../src/core/pdu-format.js';
import { ROOM_VERSIONS, roomVersion } from '../../../src/core/room-versions.js';
import type { SigningKey } from '../../../src/core/signing.js';
import { verifyEventSignature } from '../../../src/core/signing.js';

const V = (id: string) => roomVersion(id)!;
const seed = new Uint8Array(32).fill(3);
const KEY: SigningKey = { keyId: 'ed25519:a', seed, publicKey: publicKeyFromSeed(seed) };
const ORIGIN = 'example.org';

function createProto(versionId: string): JsonObject {
  return {
    type: 'm.room.create',
    state_key: '',
    room_id: '!room:example.org',
    sender: '@alice:example.org',
    content: { room_version: versionId },
    prev_events: [],
    auth_events: [],
    depth: 1,
    origin_server_ts: 1700000000000,
  };
}

describe('buildEvent', () => {
  for (const version of ROOM_VERSIONS.values()) {
    it(`builds a valid, hashed, signed create event in room version ${version.id}`, async () => {
      const pdu = await buildEvent(createProto(version.id), version, ORIGIN, KEY);
      expect(checkPduFormat(pdu.json, version)).toEqual({ ok: true });
      expect(checkContentHash(pdu.json)).toBe(true);
      expect(await verifyEventSignature(pdu.json, version, ORIGIN, KEY.keyId, KEY.publicKey)).toBe(true);
      expect(pdu.eventId).toBe(computeEventId(pdu.json, version));
      if (version.eventIdFormat === 'server') expect(pdu.eventId).toMatch(/^\$[A-Za-z0-9_-]{16}:example\.org$/);
      if (version.eventIdFormat === 'base64') expect(pdu.eventId).toMatch(/^\$[A-Za-z0-9+/]{43}$/);
      if (version.eventIdFormat === 'urlsafe') expect(pdu.eventId).toMatch(/^\$[A-Za-z0-9_-]{43}$/);
      if (version.roomIdFromCreateEvent) {
        expect(pdu.json.room_id).toBeUndefined();
        expect(pdu.roomId).toBe(roomIdFromCreateEventId(pdu.eventId));
      } else {
        expect(pdu.json.room_id).toBe('!room:example.org');
      }
      // origin is kept until v11 drops it from the protected keys.
      expect(pdu.json.origin === ORIGIN).toBe(version.redaction !== 'v11');
    });
  }

  it('v1–v2: references become [id, {sha256}] pairs, from the map or computed from the event', async () => {
    const v1 = V('1');
    const create = await buildEvent(createProto('1'), v1, ORIGIN, KEY, { eventIdLocalpart: 'create' });
    expect(create.eventId).toBe('$create:example.org');
    const createHash = encodeBase64(referenceHash(create.json, v1));
    const events = new Map([[create.eventId, create.json]]);
    const proto: JsonObject = {
      type: 'm.room.member',
      state_key: '@alice:example.org',
      room_id: '!room:example.org',
      sender: '@alice:example.org',
      content: { membership: 'join' },
      prev_events: [create.eventId],
      auth_events: [create.eventId],
      depth: 2,
      origin_server_ts: 1700000000001,
    };
    const fromEvents = await buildEvent(proto, v1, ORIGIN, KEY, { resolveEvent: (id) => events.get(id) });
    expect(fromEvents.json.prev_events).toEqual([[create.eventId, { sha256: createHash }]]);
    expect(fromEvents.prevEvents).toEqual([create.eventId]);
    const fromMap = await buildEvent(proto, v1, ORIGIN, KEY, { referenceHashes: new Map([[create.eventId, 'given']]) });
    expect(fromMap.json.auth_events).toEqual([[create.eventId, { sha256: 'given' }]]);
    await expect(buildEvent(proto, v1, ORIGIN, KEY)).rejects.toThrow(BuildEventError);
  });

  it('v3+: references stay plain event IDs (pairs are reduced to their ID)', async () => {
    const v10 = V('10');
    const id = '$' + 'A'.repeat(43);
    const proto: JsonObject = { ...createProto('10'), type: 'm.room.message', prev_events: [[id, { sha256: 'x' }]], auth_events: [id], depth: 2 };
    delete proto.state_key;
    const ok = await buildEvent(proto, v10, ORIGIN, KEY);
    expect(ok.json.prev_events).toEqual([id]);
    expect(ok.isState).toBe(false);
    // A template must leave absent fields out: undefined is not JSON.
    await expect(buildEvent({ ...proto, state_key: undefined } as unknown as JsonObject, v10, ORIGIN, KEY)).rejects.toThrow(
      CanonicalJsonError,
    );
  });

  it('replaces template hashes/signatures/event_id and keeps unsigned out of the hash', async () => {
    const v = V('11');
    const a = await buildEvent({ ...createProto('11'), hashes: { sha256: 'bogus' }, signatures: { evil: {} }, event_id: '$x:y' }, v, ORIGIN, KEY);
    const b = await buildEvent({ ...createProto('11'), unsigned: { age: 1 } }, v, ORIGIN, KEY);
    expect(a.json.event_id).toBeUndefined();
    expect(Object.keys(a.json.signatures as object)).toEqual([ORIGIN]);
    expect(a.eventId).toBe(b.eventId);
    expect(b.json.unsigned).toEqual({ age: 1 });
  });

  it('refuses to build an invalid PDU', async () => {
    const v = V('12');
    await expect(buildEvent({ ...createProto('12'), content: { big: 'x'.repeat(70000) } }, v, ORIGIN, KEY)).rejects.toThrow(/65536/);
    await expect(buildEvent({ ...createProto('12'), sender: 'alice' }, v, ORIGIN, KEY)).rejects.toThrow(BuildEventError);
    await expect(buildEvent({ ...createProto('12'), prev_events: 'x' }, v, ORIGIN, KEY)).rejects.toThrow(BuildEventError);
  });
});
