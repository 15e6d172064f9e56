import { describe, expect, it } from 'vitest';
import type { JsonObject } from '../../../src/core/json.js';
import { redactEvent } from '../../../src/core/redaction.js';
import { roomVersion } from '../../../src/core/room-versions.js';

const V = (id: string) => roomVersion(id)!;
/** One room version per redaction variant. */
const VARIANTS = { v1: V('1'), v6: V('6'), v8: V('8'), v9: V('9'), v11: V('11') } as const;

function event(type: string, content: JsonObject, extra: JsonObject = {}): JsonObject {
  return {
    event_id: '$e:x',
    type,
    room_id: '!r:x',
    sender: '@s:x',
    state_key: '',
    content,
    hashes: { sha256: 'h' },
    signatures: { x: { 'ed25519:1': 's' } },
    depth: 4,
    prev_events: ['$p'],
    prev_state: [],
    auth_events: ['$a'],
    origin: 'x',
    origin_server_ts: 7,
    membership: 'join',
    unsigned: { age: 1 },
    age_ts: 1,
    extra_top_level: true,
    ...extra,
  };
}

describe('redactEvent: top-level keys', () => {
  const kept = ['event_id', 'type', 'room_id', 'sender', 'state_key', 'content', 'hashes', 'signatures', 'depth', 'prev_events', 'auth_events', 'origin_server_ts'];
  it('v1–v10 keep origin, membership and prev_state; drop unsigned and unknown keys', () => {
    for (const v of [VARIANTS.v1, VARIANTS.v6, VARIANTS.v8, VARIANTS.v9]) {
      const r = redactEvent(event('m.room.message', { body: 'hi' }), v);
      expect(Object.keys(r).sort()).toEqual([...kept, 'origin', 'membership', 'prev_state'].sort());
    }
  });
  it('v11 drops origin, membership and prev_state', () => {
    const r = redactEvent(event('m.room.message', { body: 'hi' }), VARIANTS.v11);
    expect(Object.keys(r).sort()).toEqual([...kept].sort());
  });
  it('always yields a content object, and does not modify the input', () => {
    const input = event('m.room.message', { body: 'hi' });
    delete input.content;
    const snapshot = structuredClone(input);
    expect(redactEvent(input, VARIANTS.v1).content).toEqual({});
    expect(redactEvent({ ...input, content: 'str' }, VARIANTS.v11).content).toEqual({});
    expect(input).toEqual(snapshot);
  });
});

/** For each event type: content in, and the content kept by each variant. */
const CONTENT_CASES: [type: string, content: JsonObject, expected: Record<keyof typeof VARIANTS, JsonObject>][] = [
  [
    'm.room.message',
    { body: 'secret', msgtype: 'm.text' },
    { v1: {}, v6: {}, v8: {}, v9: {}, v11: {} },
  ],
  [
    'm.room.member',
    {
      membership: 'join',
      displayname: 'Alice',
      join_authorised_via_users_server: '@b:x',
      third_party_invite: { display_name: 'a', signed: { mxid: '@a:x', token: 't', signatures: {} } },
    },
    {
      v1: { membership: 'join' },
      v6: { membership: 'join' },
      v8: { membership: 'join' },
      v9: { membership: 'join', join_authorised_via_users_server: '@b:x' },
      v11: {
        membership: 'join',
        join_authorised_via_users_server: '@b:x',
        third_party_invite: { signed: { mxid: '@a:x', token: 't', signatures: {} } },
      },
    },
  ],
  [
    'm.room.create',
    { creator: '@s:x', room_version: '1', 'm.federate': false, predecessor: { room_id: '!o:x' } },
    {
      v1: { creator: '@s:x' },
      v6: { creator: '@s:x' },
      v8: { creator: '@s:x' },
      v9: { creator: '@s:x' },
      v11: { creator: '@s:x', room_version: '1', 'm.federate': false, predecessor: { room_id: '!o:x' } },
    },
  ],
  [
    'm.room.join_rules',
    { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: '!o:x' }], other: 1 },
    {
      v1: { join_rule: 'restricted' },
      v6: { join_rule: 'restricted' },
      v8: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: '!o:x' }] },
      v9: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: '!o:x' }] },
      v11: { join_rule: 'restricted', allow: [{ type: 'm.room_membership', room_id: '!o:x' }] },
    },
  ],
  [
    'm.room.power_levels',
    { ban: 50, events: { a: 1 }, events_default: 0, kick: 50, redact: 50, state_default: 50, users: { '@s:x': 100 }, users_default: 0, invite: 0, notifications: { room: 50 } },
    (() => {
      const before = { ban: 50, events: { a: 1 }, events_default: 0, kick: 50, redact: 50, state_default: 50, users: { '@s:x': 100 }, users_default: 0 };
      return { v1: before, v6: before, v8: before, v9: before, v11: { ...before, invite: 0 } };
    })(),
  ],
  [
    'm.room.aliases',
    { aliases: ['#a:x'] },
    { v1: { aliases: ['#a:x'] }, v6: {}, v8: {}, v9: {}, v11: {} },
  ],
  [
    'm.room.history_visibility',
    { history_visibility: 'shared', other: 1 },
    {
      v1: { history_visibility: 'shared' },
      v6: { history_visibility: 'shared' },
      v8: { history_visibility: 'shared' },
      v9: { history_visibility: 'shared' },
      v11: { history_visibility: 'shared' },
    },
  ],
  [
    'm.room.redaction',
    { redacts: '$t', reason: 'spam' },
    { v1: {}, v6: {}, v8: {}, v9: {}, v11: { redacts: '$t' } },
  ],
];

describe('redactEvent: content per event type and variant', () => {
  for (const [type, content, expected] of CONTENT_CASES) {
    for (const [variant, version] of Object.entries(VARIANTS) as [keyof typeof VARIANTS, typeof VARIANTS.v1][]) {
      it(`${type} under ${variant}`, () => {
        expect(redactEvent(event(type, content), version).content).toEqual(expected[variant]);
      });
    }
  }

  it('v11 member: third_party_invite without signed is dropped entirely', () => {
    const r = redactEvent(event('m.room.member', { membership: 'invite', third_party_invite: { display_name: 'a' } }), VARIANTS.v11);
    expect(r.content).toEqual({ membership: 'invite' });
  });

  it('top-level redacts is dropped (it is not a protected key in any version)', () => {
    for (const v of Object.values(VARIANTS)) {
      expect(redactEvent(event('m.room.redaction', {}, { redacts: '$t' }), v).redacts).toBeUndefined();
    }
  });

  it('room versions map onto variants as the spec says', () => {
    const variant = (id: string) => V(id).redaction;
    expect(['1', '2', '3', '4', '5'].map(variant)).toEqual(['v1', 'v1', 'v1', 'v1', 'v1']);
    expect(['6', '7', '8', '9', '10', '11', '12'].map(variant)).toEqual(['v6', 'v6', 'v8', 'v9', 'v9', 'v11', 'v11']);
  });
});
