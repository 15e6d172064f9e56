// The rules outside m.room.create, m.room.member and m.room.power_levels: m.federate (3 [v12: 4]), m.room.aliases
// (4, v1–v5), sender joined (6 [v6–v11: 5]), m.room.third_party_invite (7 [6]), required power level (8 [7]),
// '@' state keys (9 [8]), m.room.redaction (11, v1–v2) and the final allow.
import { describe, it } from 'vitest';
import type { JsonObject } from '../../../../src/core/json.js';
import { authorize, authStateFromEvents } from '../../../../src/core/auth/rules.js';
import {
  ALICE,
  ALL_VERSIONS,
  BOB,
  CAROL,
  defaultPowerLevels,
  expectAllowed,
  expectRejected,
  newRoom,
  versionsWhere,
} from './helpers.js';

describe.each(ALL_VERSIONS)('m.federate (rule 3 / v12: 4), room version $id', (version) => {
  it('m.federate false: a user from another server → reject', () => {
    const room = newRoom(version, { joinRule: 'public', createContent: { 'm.federate': false } });
    expectRejected(authorize(room.memberEvent(CAROL, CAROL, 'join'), room, version), /not federated/);
  });
  it('m.federate false: a user from the creating server → allow', () => {
    const room = newRoom(version, { joinRule: 'public', createContent: { 'm.federate': false } });
    expectAllowed(authorize(room.memberEvent(BOB, BOB, 'join'), room, version));
  });
  it('m.federate true or absent: other servers are fine', () => {
    const contents: JsonObject[] = [{ 'm.federate': true }, {}];
    for (const createContent of contents) {
      const room = newRoom(version, { joinRule: 'public', createContent });
      expectAllowed(authorize(room.memberEvent(CAROL, CAROL, 'join'), room, version));
    }
  });
  it('m.federate "false" (a string) is not false', () => {
    const room = newRoom(version, { joinRule: 'public', createContent: { 'm.federate': 'false' } });
    expectAllowed(authorize(room.memberEvent(CAROL, CAROL, 'join'), room, version));
  });
});

describe.each(versionsWhere((v) => v.specialCaseAliasesAuth))('m.room.aliases (rule 4, v1–v5), room version $id', (version) => {
  it("4.3: state_key = the sender's domain → allow, even for a non-member with no power", () => {
    const room = newRoom(version);
    expectAllowed(authorize(room.event({ type: 'm.room.aliases', sender: CAROL, state_key: 'other.org', content: {} }), room, version));
  });
  it('4.1: no state_key → reject', () => {
    const room = newRoom(version);
    expectRejected(authorize(room.event({ type: 'm.room.aliases', sender: ALICE, content: {} }), room, version), /no state_key/);
  });
  it("4.2: state_key ≠ the sender's domain → reject", () => {
    const room = newRoom(version);
    expectRejected(
      authorize(room.event({ type: 'm.room.aliases', sender: ALICE, state_key: 'other.org', content: {} }), room, version),
      /domain/,
    );
  });
});

describe.each(versionsWhere((v) => !v.specialCaseAliasesAuth))('m.room.aliases from v6, room version $id', (version) => {
  it('follows the normal rules: a non-member → reject', () => {
    const room = newRoom(version);
    expectRejected(
      authorize(room.event({ type: 'm.room.aliases', sender: CAROL, state_key: 'other.org', content: {} }), room, version),
      /not joined/,
    );
  });
  it('follows the normal rules: a joined user below state_default → reject', () => {
    const room = newRoom(version);
    room.setMember(CAROL, 'join');
    expectRejected(
      authorize(room.event({ type: 'm.room.aliases', sender: CAROL, state_key: 'other.org', content: {} }), room, version),
      /power level/,
    );
  });
  it('follows the normal rules: the creator → allow for any state_key', () => {
    const room = newRoom(version);
    expectAllowed(
      authorize(room.event({ type: 'm.room.aliases', sender: ALICE, state_key: 'other.org', content: {} }), room, version),
    );
  });
});

describe.each(ALL_VERSIONS)('sender must be joined (rule 6 / v6–v11: 5), room version $id', (version) => {
  it('a joined sender → allow', () => {
    const room = newRoom(version);
    room.setMember(BOB, 'join');
    expectAllowed(authorize(room.event({ type: 'm.room.message', sender: BOB, content: { body: 'hi' } }), room, version));
  });
  it.each([['invite'], ['leave'], ['ban'], ['knock'], [undefined]])('a sender whose membership is %s → reject', (m) => {
    const room = newRoom(version);
    if (m) room.setMember(BOB, m, ALICE);
    expectRejected(authorize(room.event({ type: 'm.room.message', sender: BOB }), room, version), /not joined/);
  });
  it('a member event with malformed content in the state is not a join', () => {
    const room = newRoom(version);
    room.put(room.event({ type: 'm.room.member', sender: BOB, state_key: BOB, content: 'join' }));
    expectRejected(authorize(room.event({ type: 'm.room.message', sender: BOB }), room, version), /not joined/);
  });
});

describe.each(ALL_VERSIONS)('m.room.third_party_invite (rule 7 / v6–v11: 6), room version $id', (version) => {
  const tpi = (sender: string) => ({ type: 'm.room.third_party_invite', sender, state_key: 'tok', content: {} });
  it('at the invite level → allow (state_default does not apply)', () => {
    const room = newRoom(version);
    room.setMember(BOB, 'join');
    expectAllowed(authorize(room.event(tpi(BOB)), room, version));
  });
  it('below the invite level → reject', () => {
    const room = newRoom(version, { powerLevels: { ...defaultPowerLevels(version), invite: 1 } });
    room.setMember(BOB, 'join');
    expectRejected(authorize(room.event(tpi(BOB)), room, version), /third-party invites/);
  });
  it('a non-member → reject (rule 6 comes first)', () => {
    const room = newRoom(version);
    expectRejected(authorize(room.event(tpi(BOB)), room, version), /not joined/);
  });
});

describe.each(ALL_VERSIONS)('required power level (rule 8 / v6–v11: 7), room version $id', (version) => {
  const setup = () => {
    const room = newRoom(version, {
      powerLevels: {
        ...defaultPowerLevels(version, { [BOB]: 10 }),
        events: { 'm.room.name': 5, 'm.custom': 20, 'm.room.topic': 60 },
        events_default: 10,
        state_default: 50,
      },
    });
    room.setMember(BOB, 'join');
    room.setMember(CAROL, 'join');
    return room;
  };
  it('a message at events_default → allow; below → reject', () => {
    const room = setup();
    expectAllowed(authorize(room.event({ type: 'm.room.message', sender: BOB }), room, version));
    expectRejected(authorize(room.event({ type: 'm.room.message', sender: CAROL }), room, version), /too low/);
  });
  it('events[type] overrides the defaults, for messages and state', () => {
    const room = setup();
    expectRejected(authorize(room.event({ type: 'm.custom', sender: BOB }), room, version), /too low/);
    expectAllowed(authorize(room.event({ type: 'm.room.name', sender: BOB, state_key: '', content: { name: 'x' } }), room, version));
  });
  it('state events use state_default', () => {
    const room = setup();
    expectRejected(authorize(room.event({ type: 'm.room.avatar', sender: BOB, state_key: '' }), room, version), /too low/);
    expectAllowed(authorize(room.event({ type: 'm.room.avatar', sender: ALICE, state_key: '' }), room, version));
  });
  it('no power-levels event: state_default is 50, so only the creator (100) may send state', () => {
    const room = newRoom(version, { powerLevels: null });
    room.setMember(BOB, 'join');
    expectAllowed(authorize(room.event({ type: 'm.room.topic', sender: ALICE, state_key: '' }), room, version));
    expectRejected(authorize(room.event({ type: 'm.room.topic', sender: BOB, state_key: '' }), room, version), /too low/);
    expectAllowed(authorize(room.event({ type: 'm.room.message', sender: BOB }), room, version));
  });
  it(`redactions use events/events_default, not the redact level${version.eventIdFormat === 'server' ? ' (then rule 11)' : ''}`, () => {
    const room = newRoom(version, {
      powerLevels: { ...defaultPowerLevels(version), events: { 'm.room.redaction': 5 } },
    });
    room.setMember(BOB, 'join');
    expectRejected(authorize(room.event({ type: 'm.room.redaction', sender: BOB, redacts: '$x:example.org' }), room, version), /too low/);
  });
});

describe.each(ALL_VERSIONS)("state_key starting with '@' (rule 9 / v6–v11: 8), room version $id", (version) => {
  it("another user's ID as state_key → reject", () => {
    const room = newRoom(version);
    expectRejected(authorize(room.event({ type: 'm.custom.state', sender: ALICE, state_key: BOB }), room, version), /'@'/);
  });
  it("the sender's own ID → allow", () => {
    const room = newRoom(version);
    expectAllowed(authorize(room.event({ type: 'm.custom.state', sender: ALICE, state_key: ALICE }), room, version));
  });
  it("a state_key not starting with '@' → allow", () => {
    const room = newRoom(version);
    expectAllowed(authorize(room.event({ type: 'm.custom.state', sender: ALICE, state_key: 'x@y' }), room, version));
  });
});

describe.each(versionsWhere((v) => v.eventIdFormat === 'server'))('m.room.redaction (rule 11, v1–v2), room version $id', (version) => {
  const setup = () => {
    const room = newRoom(version);
    room.setMember(BOB, 'join');
    room.setMember(CAROL, 'join');
    return room;
  };
  it('11.1: at the redact level → allow, whatever is redacted', () => {
    const room = setup();
    expectAllowed(authorize(room.event({ type: 'm.room.redaction', sender: ALICE, redacts: '$x:other.org' }), room, version));
  });
  it("11.2: below the redact level, an event from the redaction's own server → allow", () => {
    const room = setup();
    const e = room.event({ type: 'm.room.redaction', sender: BOB, redacts: '$x:example.org', id: '$r:example.org' });
    expectAllowed(authorize(e, room, version));
  });
  it('11.3: below the redact level, an event from another server → reject', () => {
    const room = setup();
    const e = room.event({ type: 'm.room.redaction', sender: BOB, redacts: '$x:other.org', id: '$r:example.org' });
    expectRejected(authorize(e, room, version), /redact/);
  });
  it('11.3: no redacts, or one in content only → reject, no throw', () => {
    const room = setup();
    expectRejected(authorize(room.event({ type: 'm.room.redaction', sender: BOB, id: '$r:example.org' }), room, version), /redact/);
    const inContent = room.event({ type: 'm.room.redaction', sender: BOB, id: '$r:example.org', content: { redacts: '$x:example.org' } });
    expectRejected(authorize(inContent, room, version), /redact/);
  });
});

describe.each(versionsWhere((v) => v.eventIdFormat !== 'server'))('m.room.redaction from v3, room version $id', (version) => {
  it('passes auth below the redact level (checked when applied instead)', () => {
    const room = newRoom(version);
    room.setMember(BOB, 'join');
    const e = room.event({ type: 'm.room.redaction', sender: BOB, redacts: '$someone-elses', content: { redacts: '$someone-elses' } });
    expectAllowed(authorize(e, room, version));
  });
});

describe.each(ALL_VERSIONS)('authStateFromEvents, room version $id', (version) => {
  it('maps auth events by (type, state_key), ignoring non-state events', () => {
    const room = newRoom(version);
    room.setMember(BOB, 'join');
    const list = [room.create, room.get('m.room.power_levels', '')!, room.get('m.room.member', BOB)!, room.event({ type: 'm.room.message', sender: BOB })];
    const state = authStateFromEvents(list);
    expectAllowed(authorize(room.event({ type: 'm.room.message', sender: BOB }), state, version));
    expectRejected(authorize(room.event({ type: 'm.room.message', sender: CAROL }), state, version), /not joined/);
  });
});
