// Rule 5 [v6–v11: 4] for m.room.member: 5.1 (state_key and membership present), 5.2 (v8+: signature of the
// join_authorised_via_users_server server) and 5.3 [v1–v7: .2] (membership join).
import { describe, it } from 'vitest';
import type { Pdu } from '../../../../src/core/event.js';
import type { JsonObject } from '../../../../src/core/json.js';
import { authorize } from '../../../../src/core/auth/rules.js';
import type { TestRoom } from './helpers.js';
import {
  ALICE,
  ALL_VERSIONS,
  BOB,
  CAROL,
  DAVE,
  TestRoom as Room,
  expectAllowed,
  expectRejected,
  newRoom,
  versionsWhere,
} from './helpers.js';

const signedBy = (...servers: string[]): JsonObject =>
  Object.fromEntries(servers.map((s) => [s, { 'ed25519:1': 'sig' }]));

function join(room: TestRoom, user: string, extra: JsonObject = {}, signatures?: JsonObject): Pdu {
  return room.event({
    type: 'm.room.member',
    sender: user,
    state_key: user,
    content: { membership: 'join', ...extra },
    ...(signatures ? { signatures } : {}),
  });
}

describe.each(ALL_VERSIONS)('5.1: state_key and membership, room version $id', (version) => {
  it('a member event without state_key → reject', () => {
    const room = newRoom(version, { joinRule: 'public' });
    const e = room.event({ type: 'm.room.member', sender: BOB, content: { membership: 'join' } });
    expectRejected(authorize(e, room, version), /no state_key/);
  });
  it('a member event without membership → reject', () => {
    const room = newRoom(version, { joinRule: 'public' });
    expectRejected(authorize(room.memberEvent(BOB, BOB, undefined), room, version), /no membership/);
  });
  it('non-object content → reject, no throw', () => {
    const room = newRoom(version, { joinRule: 'public' });
    const e = room.event({ type: 'm.room.member', sender: BOB, state_key: BOB, content: ['join'] });
    expectRejected(authorize(e, room, version), /no membership/);
  });
  it.each([[5], [null], [{ m: 'join' }]])('a non-string membership %j → reject as unknown', (m) => {
    const room = newRoom(version, { joinRule: 'public' });
    const e = room.event({ type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: m } });
    expectRejected(authorize(e, room, version), /unknown membership/);
  });
  it.each(['unknown', 'JOIN', ''])('5.8: unknown membership %j → reject', (m) => {
    const room = newRoom(version, { joinRule: 'public' });
    expectRejected(authorize(room.memberEvent(BOB, BOB, m), room, version), /unknown membership/);
  });
});

describe.each(ALL_VERSIONS)('5.3 join, room version $id', (version) => {
  /** create only; the creator's first join names the create event as its only prev event. */
  const fresh = () => new Room(version);
  const firstJoin = (room: TestRoom, user: string, prev: string[]) =>
    room.event({ type: 'm.room.member', sender: user, state_key: user, content: { membership: 'join' }, prev_events: prev });

  it("5.3.1: the creator's join right after the create event → allow", () => {
    const room = fresh();
    expectAllowed(authorize(firstJoin(room, ALICE, [room.create.eventId]), room, version));
  });
  it('5.3.1: not directly after the create event → falls through (no join rules: reject)', () => {
    const room = fresh();
    expectRejected(authorize(firstJoin(room, ALICE, [room.create.eventId, '$other']), room, version), /join rule/);
  });
  it('5.3.1: another user right after the create event → falls through and is rejected', () => {
    const room = fresh();
    expectRejected(authorize(firstJoin(room, BOB, [room.create.eventId]), room, version), /join rule/);
  });
  if (version.implicitRoomCreator) {
    it('5.3.1 (v11+): the creator is the create sender; content.creator is ignored', () => {
      const room = new Room(version, { creator: BOB });
      expectAllowed(authorize(firstJoin(room, ALICE, [room.create.eventId]), room, version));
      expectRejected(authorize(firstJoin(room, BOB, [room.create.eventId]), room, version), /join rule/);
    });
  } else {
    it('5.3.1 (v1–v10): the creator is content.creator, not the sender', () => {
      const room = new Room(version, { creator: BOB });
      expectAllowed(authorize(firstJoin(room, BOB, [room.create.eventId]), room, version));
      expectRejected(authorize(firstJoin(room, ALICE, [room.create.eventId]), room, version), /join rule/);
    });
  }

  it('5.3.2: sender ≠ state_key → reject', () => {
    const room = newRoom(version, { joinRule: 'public' });
    const e = room.event({ type: 'm.room.member', sender: ALICE, state_key: BOB, content: { membership: 'join' } });
    expectRejected(authorize(e, room, version), /sent by the user joining/);
  });
  it('5.3.3: a banned sender → reject, even in a public room', () => {
    const room = newRoom(version, { joinRule: 'public' });
    room.setMember(BOB, 'ban', ALICE);
    expectRejected(authorize(join(room, BOB), room, version), /banned/);
  });

  it('5.3.4: invite rule, invited → allow', () => {
    const room = newRoom(version, { joinRule: 'invite' });
    room.setMember(BOB, 'invite', ALICE);
    expectAllowed(authorize(join(room, BOB), room, version));
  });
  it('5.3.4: invite rule, already joined (profile change) → allow', () => {
    const room = newRoom(version, { joinRule: 'invite' });
    room.setMember(BOB, 'join');
    expectAllowed(authorize(join(room, BOB, { displayname: 'Bob' }), room, version));
  });
  it.each([['no membership', undefined], ['left', 'leave'], ['knocked', 'knock']])(
    '5.3.4: invite rule, %s → reject',
    (_what, m) => {
      const room = newRoom(version, { joinRule: 'invite' });
      if (m) room.setMember(BOB, m);
      expectRejected(authorize(join(room, BOB), room, version), /invite-only/);
    },
  );

  it('5.3.6: public rule → allow', () => {
    const room = newRoom(version, { joinRule: 'public' });
    expectAllowed(authorize(join(room, BOB), room, version));
  });
  it('5.3.6: public rule, after leaving → allow', () => {
    const room = newRoom(version, { joinRule: 'public' });
    room.setMember(BOB, 'leave');
    expectAllowed(authorize(join(room, BOB), room, version));
  });
  it.each([['private'], ['unknown'], [null]])('5.3.7: join rule %j → reject', (rule) => {
    const room = newRoom(version, { joinRule: rule as string | null });
    expectRejected(authorize(join(room, BOB), room, version), /join rule/);
  });
  it('5.3.7: join rules content that is not an object → reject, no throw', () => {
    const room = newRoom(version);
    room.put(room.event({ type: 'm.room.join_rules', sender: ALICE, state_key: '', content: 'public' }));
    expectRejected(authorize(join(room, BOB), room, version), /join rule/);
  });
  it('5.3.7: a non-string join_rule → reject', () => {
    const room = newRoom(version);
    room.put(room.event({ type: 'm.room.join_rules', sender: ALICE, state_key: '', content: { join_rule: ['public'] } }));
    expectRejected(authorize(join(room, BOB), room, version), /join rule/);
  });
});

describe.each(versionsWhere((v) => v.knock))('5.3.4 knock join rule (v7+), room version $id', (version) => {
  it('invited → allow', () => {
    const room = newRoom(version, { joinRule: 'knock' });
    room.setMember(BOB, 'invite', ALICE);
    expectAllowed(authorize(join(room, BOB), room, version));
  });
  it('only knocked → reject', () => {
    const room = newRoom(version, { joinRule: 'knock' });
    room.setMember(BOB, 'knock');
    expectRejected(authorize(join(room, BOB), room, version), /invite-only/);
  });
});

describe.each(versionsWhere((v) => !v.knock))('knock join rule before v7, room version $id', (version) => {
  it('is unknown: even an invited user is rejected', () => {
    const room = newRoom(version, { joinRule: 'knock' });
    room.setMember(BOB, 'invite', ALICE);
    expectRejected(authorize(join(room, BOB), room, version), /join rule/);
  });
});

describe.each(versionsWhere((v) => v.restrictedJoinRule))('5.3.5 restricted joins (v8+), room version $id', (version) => {
  const rules = version.knockRestrictedJoinRule ? ['restricted', 'knock_restricted'] : ['restricted'];
  describe.each(rules)('join rule %s', (rule) => {
    const setup = () => {
      const room = newRoom(version, { joinRule: rule, powerLevels: { ...defaultPl(version), invite: 50 } });
      room.setMember(CAROL, 'join');
      return room;
    };
    it('5.3.5.1: invited → allow', () => {
      const room = setup();
      room.setMember(BOB, 'invite', ALICE);
      expectAllowed(authorize(join(room, BOB), room, version));
    });
    it('5.3.5.1: already joined → allow', () => {
      const room = setup();
      room.setMember(BOB, 'join');
      expectAllowed(authorize(join(room, BOB), room, version));
    });
    it('5.3.5.3: authorised by a joined member who may invite → allow', () => {
      const room = setup();
      expectAllowed(authorize(join(room, BOB, { join_authorised_via_users_server: ALICE }, signedBy('example.org')), room, version));
    });
    it('5.3.5.2: no join_authorised_via_users_server → reject', () => {
      const room = setup();
      expectRejected(authorize(join(room, BOB), room, version), /join_authorised_via_users_server/);
    });
    it('5.3.5.2: the authoriser may not invite → reject', () => {
      const room = setup();
      expectRejected(
        authorize(join(room, BOB, { join_authorised_via_users_server: CAROL }, signedBy('other.org')), room, version),
        /may not invite/,
      );
    });
    it('5.3.5.2: the authoriser is not joined → reject', () => {
      const room = setup();
      room.setPowerLevels({ ...defaultPl(version), invite: 0 });
      expectRejected(
        authorize(join(room, BOB, { join_authorised_via_users_server: DAVE }, signedBy('third.org')), room, version),
        /not joined/,
      );
    });
    it('5.3.5.2: the authoriser left → reject', () => {
      const room = setup();
      room.setPowerLevels({ ...defaultPl(version), invite: 0 });
      room.setMember(CAROL, 'leave');
      expectRejected(
        authorize(join(room, BOB, { join_authorised_via_users_server: CAROL }, signedBy('other.org')), room, version),
        /not joined/,
      );
    });
    it('5.3.3 comes first: a banned user is rejected even when authorised', () => {
      const room = setup();
      room.setMember(BOB, 'ban', ALICE);
      expectRejected(
        authorize(join(room, BOB, { join_authorised_via_users_server: ALICE }, signedBy('example.org')), room, version),
        /banned/,
      );
    });
  });

  it('5.2: join_authorised_via_users_server without a signature from its server → reject', () => {
    const room = newRoom(version, { joinRule: 'restricted' });
    expectRejected(
      authorize(join(room, BOB, { join_authorised_via_users_server: ALICE }, signedBy('example.com')), room, version),
      /not signed by/,
    );
  });
  it('5.2: applies to every membership, not only joins (an invite carrying the key, unsigned → reject)', () => {
    const room = newRoom(version);
    const e = room.memberEvent(ALICE, BOB, 'invite', { join_authorised_via_users_server: CAROL });
    expectRejected(authorize(e, room, version), /not signed by/);
  });
  it('5.2: the signature check is the isSignedBy option when given', () => {
    const room = newRoom(version, { joinRule: 'restricted' });
    const e = join(room, BOB, { join_authorised_via_users_server: ALICE });
    expectAllowed(authorize(e, room, version, { isSignedBy: (_ev, server) => server === 'example.org' }));
    expectRejected(
      authorize(join(room, BOB, { join_authorised_via_users_server: ALICE }, signedBy('example.org')), room, version, {
        isSignedBy: () => false,
      }),
      /not signed by/,
    );
  });
  it.each([[5], [null], ['not-a-user']])('5.2: a malformed join_authorised_via_users_server %j → reject', (v) => {
    const room = newRoom(version, { joinRule: 'restricted' });
    expectRejected(
      authorize(join(room, BOB, { join_authorised_via_users_server: v as string }, signedBy('example.org')), room, version),
      /join_authorised_via_users_server is not a user ID/,
    );
  });
  it('the key is irrelevant in a public room once signed', () => {
    const room = newRoom(version, { joinRule: 'public' });
    expectAllowed(authorize(join(room, BOB, { join_authorised_via_users_server: DAVE }, signedBy('third.org')), room, version));
  });
});

describe.each(versionsWhere((v) => !v.restrictedJoinRule))('restricted before v8, room version $id', (version) => {
  it('the restricted join rule is unknown → reject even with an authoriser', () => {
    const room = newRoom(version, { joinRule: 'restricted' });
    expectRejected(
      authorize(join(room, BOB, { join_authorised_via_users_server: ALICE }, signedBy('example.org')), room, version),
      /join rule/,
    );
  });
  it('5.2 does not exist: join_authorised_via_users_server is ignored (unsigned public join → allow)', () => {
    const room = newRoom(version, { joinRule: 'public' });
    expectAllowed(authorize(join(room, BOB, { join_authorised_via_users_server: 'junk' }), room, version));
  });
});

describe.each(versionsWhere((v) => v.restrictedJoinRule && !v.knockRestrictedJoinRule))(
  'knock_restricted before v10, room version $id',
  (version) => {
    it('is unknown → reject even when authorised', () => {
      const room = newRoom(version, { joinRule: 'knock_restricted' });
      expectRejected(
        authorize(join(room, BOB, { join_authorised_via_users_server: ALICE }, signedBy('example.org')), room, version),
        /join rule/,
      );
    });
    it('is unknown → reject even when invited', () => {
      const room = newRoom(version, { joinRule: 'knock_restricted' });
      room.setMember(BOB, 'invite', ALICE);
      expectRejected(authorize(join(room, BOB), room, version), /join rule/);
    });
  },
);

function defaultPl(version: TestRoom['version']): JsonObject {
  return {
    users: version.privilegedCreators ? {} : { [ALICE]: 100 },
    ban: 50,
    kick: 50,
    redact: 50,
    invite: 0,
  };
}
