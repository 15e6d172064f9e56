// Malformed events and malformed state: authorisation returns a reason and never throws.
import { describe, expect, it } from 'vitest';
import { Pdu } from '../../../../src/core/event.js';
import type { JsonObject, JsonValue } from '../../../../src/core/json.js';
import { authStateKeysFor } from '../../../../src/core/auth/auth-events.js';
import type { AuthResult } from '../../../../src/core/auth/rules.js';
import { authorize, checkAuthEventsSelection } from '../../../../src/core/auth/rules.js';
import { ALICE, ALL_VERSIONS, BOB, expectRejected, newRoom } from './helpers.js';

const JUNK: JsonValue[] = [null, 0, -1.5, 'x', '', true, [], [null], {}, { a: { b: [] } }];

/** A decided result that did not come from the internal-error safety net. */
function expectDecided(r: AuthResult): void {
  expect(typeof r.ok).toBe('boolean');
  if (!r.ok) {
    expect(typeof r.reason).toBe('string');
    expect(r.reason).not.toMatch(/internal error/);
  }
}

describe.each(ALL_VERSIONS)('malformed events, room version $id', (version) => {
  const types = ['m.room.create', 'm.room.member', 'm.room.power_levels', 'm.room.join_rules', 'm.room.third_party_invite', 'm.room.redaction', 'm.room.aliases', 'm.room.message'];

  it('junk content for every auth-relevant type: decided, never thrown', () => {
    const room = newRoom(version);
    room.setMember(BOB, 'join');
    for (const type of types) {
      for (const content of JUNK) {
        for (const sender of [ALICE, BOB]) {
          const e = room.event({ type, sender, state_key: type === 'm.room.message' ? undefined : '', content });
          expectDecided(authorize(e, room, version));
          expectDecided(checkAuthEventsSelection(e, [], version));
          expect(() => authStateKeysFor(e, version)).not.toThrow();
        }
      }
    }
  });

  it('junk member content values (membership, third_party_invite, join_authorised_via_users_server)', () => {
    const room = newRoom(version, { joinRule: 'restricted' });
    for (const membership of ['join', 'invite', 'leave', 'ban', 'knock']) {
      for (const v of JUNK) {
        const extras: JsonObject[] = [{ third_party_invite: v }, { join_authorised_via_users_server: v }, { third_party_invite: { signed: v } }];
        for (const extra of extras) {
          const e = room.memberEvent(ALICE, BOB, membership, extra);
          expectDecided(authorize(e, room, version));
          expect(() => authStateKeysFor(e, version)).not.toThrow();
        }
      }
    }
  });

  it('junk top-level fields: missing type, sender, state_key of the wrong type, prev_events/auth_events junk', () => {
    const room = newRoom(version);
    for (const v of JUNK) {
      const json: JsonObject = { type: v, sender: v, state_key: v, content: { membership: 'join' }, prev_events: v, auth_events: v, room_id: v, redacts: v };
      const e = new Pdu('$junk', json);
      expectDecided(authorize(e, room, version));
      expectDecided(checkAuthEventsSelection(e, [], version));
      const member = new Pdu('$junk2', { ...json, type: 'm.room.member' });
      expectDecided(authorize(member, room, version));
    }
  });

  it('junk in the state (create, power levels, join rules, members, third-party invite): decided, never thrown', () => {
    for (const v of JUNK) {
      const room = newRoom(version);
      room.put(room.event({ type: 'm.room.power_levels', sender: ALICE, state_key: '', content: { users: v, ban: v, events: v, notifications: v } }));
      room.put(room.event({ type: 'm.room.join_rules', sender: ALICE, state_key: '', content: { join_rule: v } }));
      room.put(room.event({ type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: v } }));
      room.put(room.event({ type: 'm.room.third_party_invite', sender: ALICE, state_key: 'tok', content: { public_key: v, public_keys: v } }));
      const create = new Pdu(room.create.eventId, { ...room.create.json, content: v });
      room.put(create);
      const events = [
        room.event({ type: 'm.room.message', sender: ALICE }),
        room.memberEvent(BOB, BOB, 'join'),
        room.memberEvent(ALICE, BOB, 'ban'),
        room.memberEvent(ALICE, BOB, 'invite', { third_party_invite: { signed: { mxid: BOB, token: 'tok', signatures: v } } }),
        room.event({ type: 'm.room.power_levels', sender: ALICE, state_key: '', content: { users: {} } }),
      ];
      for (const e of events) expectDecided(authorize(e, room, version));
    }
  });

  it('an empty state: every event is rejected with a reason', () => {
    const empty = { get: () => undefined };
    const room = newRoom(version);
    expectRejected(authorize(room.event({ type: 'm.room.message', sender: ALICE }), empty, version), /m\.room\.create/);
    expectRejected(authorize(room.memberEvent(ALICE, ALICE, 'join'), empty, version), /m\.room\.create/);
  });

  it('an AuthState that throws is reported as a rejection, not thrown', () => {
    const state = {
      get: () => {
        throw new Error('storage broke');
      },
    };
    const room = newRoom(version);
    expectRejected(authorize(room.event({ type: 'm.room.message', sender: ALICE }), state, version), /storage broke/);
  });
});
