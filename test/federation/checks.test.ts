/**
 * Unit tests of the state-free checks on a received PDU (src/federation/checks.ts): format, signatures of the
 * servers that must sign, content hash (redact on mismatch), auth against the event's own auth events.
 * Spec: server-server-api.md §"Checks performed on receipt of a PDU", §"Validating hashes and signatures on
 * received events".
 */
import { describe, expect, test } from 'vitest';
import { buildEvent } from '../../src/core/build-event.js';
import { addContentHash } from '../../src/core/hashes.js';
import type { Pdu } from '../../src/core/event.js';
import type { JsonObject } from '../../src/core/json.js';
import { roomVersion } from '../../src/core/room-versions.js';
import { newServerIdentity } from '../../src/core/server-key.js';
import { signEvent } from '../../src/core/signing.js';
import { checkAgainstAuthEvents, checkReceivedPdu, requiredSigners } from '../../src/federation/checks.js';

const s1 = newServerIdentity();
const s2 = newServerIdentity();
const v10 = roomVersion('10')!;
const v12 = roomVersion('12')!;
const v1 = roomVersion('1')!;

function base(server = s1.serverName, extra: JsonObject = {}): JsonObject {
  return {
    type: 'm.room.message',
    room_id: `!room:${server}`,
    sender: `@u:${server}`,
    content: { body: 'hi' },
    prev_events: [],
    auth_events: [],
    depth: 3,
    origin_server_ts: 1,
    ...extra,
  };
}

describe('checkReceivedPdu', () => {
  test('a well-formed, signed event passes with its event ID', async () => {
    const ev = await buildEvent(base(), v10, s1.serverName, s1.key);
    const r = await checkReceivedPdu(ev.json, v10);
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.value.pdu.eventId).toBe(ev.eventId);
      expect(r.value.redacted).toBe(false);
    }
  });

  test('step 1: a malformed event is dropped', async () => {
    const ev = await buildEvent(base(), v10, s1.serverName, s1.key);
    const { type: _t, ...noType } = ev.json;
    for (const bad of [noType, { ...ev.json, depth: 'deep' }, { ...ev.json, prev_events: 'x' }, 'not an event', null]) {
      const r = await checkReceivedPdu(bad, v10);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).toMatch(/invalid event/);
    }
  });

  test('step 2: no signature, a signature by another key, or a name whose key cannot be resolved: dropped', async () => {
    const ev = await buildEvent(base(), v10, s1.serverName, s1.key);
    const unsigned = { ...ev.json, signatures: {} };
    expect((await checkReceivedPdu(unsigned, v10)).ok).toBe(false);
    // s2 signs under s1's name: the key does not match the one s1's name encodes.
    const impostor = await signEvent({ ...ev.json, signatures: {} }, v10, s1.serverName, s2.key);
    expect((await checkReceivedPdu(impostor, v10)).ok).toBe(false);
    const dns = await buildEvent(base('example.org'), v10, 'example.org', s1.key);
    const r = await checkReceivedPdu(dns.json, v10);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/not validly signed by example\.org/);
  });

  test('step 2, rooms v1–v2: the server of the event ID must sign too', async () => {
    const ev = await buildEvent(base(), v1, s1.serverName, s1.key, { eventIdLocalpart: 'abc' });
    expect((await checkReceivedPdu(ev.json, v1)).ok).toBe(true);
    // The same event claiming an ID on s2, signed by s1 only.
    const moved = await buildEvent({ ...base(), event_id: `$abc:${s2.serverName}` }, v1, s1.serverName, s1.key);
    const json = addContentHash({ ...moved.json, event_id: `$abc:${s2.serverName}`, signatures: {} });
    const resigned = await signEvent(json, v1, s1.serverName, s1.key);
    expect(requiredSigners(resigned, v1).sort()).toEqual([s1.serverName, s2.serverName].sort());
    expect((await checkReceivedPdu(resigned, v1)).ok).toBe(false);
    const both = await signEvent(resigned, v1, s2.serverName, s2.key);
    const r = await checkReceivedPdu(both, v1);
    expect(r.ok && !r.value.redacted).toBe(true);
  });

  test('step 2, restricted joins (v8+): the authorising server must sign', async () => {
    const join = base(s1.serverName, {
      type: 'm.room.member',
      state_key: `@u:${s1.serverName}`,
      content: { membership: 'join', join_authorised_via_users_server: `@mod:${s2.serverName}` },
    });
    const ev = await buildEvent(join, v10, s1.serverName, s1.key);
    expect((await checkReceivedPdu(ev.json, v10)).ok).toBe(false);
    const both = await signEvent(ev.json, v10, s2.serverName, s2.key);
    expect((await checkReceivedPdu(both, v10)).ok).toBe(true);
  });

  test('step 3: a content hash mismatch redacts the event (same ID, content stripped)', async () => {
    const ev = await buildEvent(base(), v10, s1.serverName, s1.key);
    const tampered = { ...ev.json, content: { body: 'changed' } };
    const r = await checkReceivedPdu(tampered, v10);
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.value.redacted).toBe(true);
      expect(r.value.pdu.eventId).toBe(ev.eventId);
      expect(r.value.pdu.content).toEqual({});
    }
  });

  test('an event for another room than expected is dropped', async () => {
    const ev = await buildEvent(base(), v10, s1.serverName, s1.key);
    expect((await checkReceivedPdu(ev.json, v10, `!other:${s1.serverName}`)).ok).toBe(false);
  });
});

describe('checkAgainstAuthEvents (step 4)', () => {
  async function room12() {
    const creator = `@c:${s1.serverName}`;
    const create = await buildEvent(
      { type: 'm.room.create', state_key: '', sender: creator, content: { room_version: '12' }, prev_events: [], auth_events: [], depth: 1, origin_server_ts: 1 },
      v12,
      s1.serverName,
      s1.key,
    );
    const roomId = '!' + create.eventId.slice(1);
    const join = await buildEvent(
      { type: 'm.room.member', state_key: creator, room_id: roomId, sender: creator, content: { membership: 'join' }, prev_events: [create.eventId], auth_events: [], depth: 2, origin_server_ts: 2 },
      v12,
      s1.serverName,
      s1.key,
    );
    const msg = await buildEvent(
      { type: 'm.room.message', room_id: roomId, sender: creator, content: { body: 'x' }, prev_events: [join.eventId], auth_events: [join.eventId], depth: 3, origin_server_ts: 3 },
      v12,
      s1.serverName,
      s1.key,
    );
    return { create, join, msg };
  }

  const lookupOf = (...pdus: Pdu[]) => (id: string) => pdus.find((p) => p.eventId === id);

  test('passes with its auth events (and, in v12, the create event its room ID names)', async () => {
    const { create, join, msg } = await room12();
    expect(checkAgainstAuthEvents(join, lookupOf(create), v12, () => false).ok).toBe(true);
    expect(checkAgainstAuthEvents(msg, lookupOf(create, join), v12, () => false).ok).toBe(true);
  });

  test('fails when an auth event is missing, rejected, or the create event is unknown', async () => {
    const { create, join, msg } = await room12();
    expect(checkAgainstAuthEvents(msg, lookupOf(create), v12, () => false).ok).toBe(false);
    expect(checkAgainstAuthEvents(msg, lookupOf(create, join), v12, (id) => id === join.eventId).ok).toBe(false);
    expect(checkAgainstAuthEvents(msg, lookupOf(join), v12, () => false).ok).toBe(false);
  });

  test('fails when the sender is not allowed by its auth events (not joined)', async () => {
    const { create, join } = await room12();
    const stranger = `@s:${s2.serverName}`;
    const msg = await buildEvent(
      { type: 'm.room.message', room_id: join.roomId, sender: stranger, content: { body: 'x' }, prev_events: [join.eventId], auth_events: [], depth: 3, origin_server_ts: 3 },
      v12,
      s2.serverName,
      s2.key,
    );
    const r = checkAgainstAuthEvents(msg, lookupOf(create, join), v12, () => false);
    expect(r.ok).toBe(false);
  });
});
