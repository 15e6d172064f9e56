// Rule 10 [v6–v11: 9] for m.room.power_levels. Numbers in test names are v12's (10.1–10.10); v10–v11 lack 10.4,
// v1–v9 also lack 10.1–10.2 (see src/core/auth/rules.ts).
import { describe, it } from 'vitest';
import type { JsonObject } from '../../../../src/core/json.js';
import type { RoomVersion } from '../../../../src/core/room-versions.js';
import { authorize } from '../../../../src/core/auth/rules.js';
import type { TestRoom } from './helpers.js';
import { ALICE, ALL_VERSIONS, BOB, CAROL, DAVE, expectAllowed, expectRejected, newRoom, versionsWhere } from './helpers.js';

/** The current power levels: Bob (the sender in most cases) at 60, Carol at 30. */
function basePl(version: RoomVersion): JsonObject {
  return {
    users: { ...(version.privilegedCreators ? {} : { [ALICE]: 100 }), [BOB]: 60, [CAROL]: 30 },
    users_default: 0,
    events_default: 0,
    state_default: 50,
    ban: 50,
    kick: 50,
    redact: 50,
    invite: 0,
    events: { 'm.room.name': 50, 'm.high': 80 },
    notifications: { room: 50, high: 80 },
  };
}
function setup(version: RoomVersion, pl: JsonObject | null = basePl(version)): TestRoom {
  const room = newRoom(version, { powerLevels: pl });
  room.setMember(BOB, 'join');
  room.setMember(CAROL, 'join');
  return room;
}
/** Bob's new power levels: the base with `patch` applied (undefined values delete a key). */
function plBy(room: TestRoom, patch: (c: JsonObject) => void, sender = BOB) {
  const content = structuredClone(basePl(room.version));
  patch(content);
  return room.event({ type: 'm.room.power_levels', sender, state_key: '', content });
}
const sub = (c: JsonObject, key: string): JsonObject => c[key] as JsonObject;

describe.each(ALL_VERSIONS)('power levels: structure (10.1–10.3), room version $id', (version) => {
  it('an unchanged copy → allow', () => {
    const room = setup(version);
    expectAllowed(authorize(plBy(room, () => {}), room, version));
  });
  it(`10.1: a stringy ban level → ${version.integerPowerLevels ? 'reject (v10+)' : 'allow (v1–v9)'}`, () => {
    const room = setup(version);
    const r = authorize(plBy(room, (c) => (c.ban = '50')), room, version);
    if (version.integerPowerLevels) expectRejected(r, /'ban' is not a valid power level/);
    else expectAllowed(r);
  });
  it(`10.1: a float kick level → ${version.strictCanonicalJson ? 'reject (v6+)' : 'allow, truncated (v1–v5)'}`, () => {
    const room = setup(version);
    const r = authorize(plBy(room, (c) => (c.kick = 50.5)), room, version);
    if (version.strictCanonicalJson) expectRejected(r, /'kick'/);
    else expectAllowed(r);
  });
  it.each([['state_default', true], ['users_default', null], ['invite', {}], ['redact', [1]]])(
    '10.1: %s = %j → reject',
    (key, value) => {
      const room = setup(version);
      expectRejected(authorize(plBy(room, (c) => (c[key] = value)), room, version), new RegExp(`'${key}'`));
    },
  );
  it(`10.2: a stringy events entry → ${version.integerPowerLevels ? 'reject (v10+)' : 'allow (v1–v9)'}`, () => {
    const room = setup(version);
    const r = authorize(plBy(room, (c) => (sub(c, 'events')['m.room.topic'] = '50')), room, version);
    if (version.integerPowerLevels) expectRejected(r, /events\['m.room.topic'\]/);
    else expectAllowed(r);
  });
  it.each([['events', 'x'], ['notifications', [50]], ['events', null]])('10.2: %s = %j → reject', (key, value) => {
    const room = setup(version);
    expectRejected(authorize(plBy(room, (c) => (c[key] = value)), room, version), new RegExp(`'${key}' is not an object`));
  });
  it('10.2: a notifications entry that is not a level → reject', () => {
    const room = setup(version);
    expectRejected(authorize(plBy(room, (c) => (sub(c, 'notifications').room = 'x')), room, version), /notifications\['room'\]/);
  });
  it.each([['not an object', 'x'], ['an array', []]])('10.3: users %s → reject', (_w, value) => {
    const room = setup(version);
    expectRejected(authorize(plBy(room, (c) => (c.users = value)), room, version), /'users' is not an object/);
  });
  it.each(['bob', '@bob', '@bob:', '@bob:bad host'])('10.3: users key %j is not a user ID → reject', (key) => {
    const room = setup(version);
    expectRejected(authorize(plBy(room, (c) => (sub(c, 'users')[key] = 0)), room, version), /not a valid user ID/);
  });
  it(`10.3: a stringy users value → ${version.integerPowerLevels ? 'reject (v10+)' : 'allow (v1–v9)'}`, () => {
    const room = setup(version);
    const r = authorize(plBy(room, (c) => (sub(c, 'users')[CAROL] = '30')), room, version);
    if (version.integerPowerLevels) expectRejected(r, /users\['@carol:other.org'\]/);
    else expectAllowed(r);
  });
  it('10.3: a users value that is not a level → reject', () => {
    const room = setup(version);
    expectRejected(authorize(plBy(room, (c) => (sub(c, 'users')[CAROL] = 'thirty')), room, version), /users\[/);
  });
  it('10.3: no users at all is fine (and removes entries below the sender)', () => {
    const room = setup(version);
    const r = authorize(plBy(room, (c) => delete c.users), room, version);
    // Removing Alice (100 ≥ 60) is not allowed before v12; in v12 Alice is a creator and not listed.
    if (version.privilegedCreators) expectAllowed(r);
    else expectRejected(r, /level of @alice/);
  });
  it('non-object content: read as {} and checked as removals (no throw)', () => {
    const room = setup(version);
    const e = room.event({ type: 'm.room.power_levels', sender: ALICE, state_key: '', content: 'junk' });
    expectAllowed(authorize(e, room, version));
    const e2 = room.event({ type: 'm.room.power_levels', sender: BOB, state_key: '', content: 'junk' });
    expectRejected(authorize(e2, room, version), /power_levels/);
  });
});

describe.each(ALL_VERSIONS)('power levels: changes (10.5–10.10), room version $id', (version) => {
  it('10.5: no previous power levels → allow, whatever the levels', () => {
    const room = setup(version, null);
    const e = room.event({
      type: 'm.room.power_levels',
      sender: ALICE,
      state_key: '',
      content: { users: { [BOB]: 1000 }, ban: 999, events: { 'm.x': 500 } },
    });
    expectAllowed(authorize(e, room, version));
  });
  it('10.5: with no previous power levels, only someone reaching state_default (50) may send them', () => {
    const room = setup(version, null);
    expectRejected(authorize(plBy(room, () => {}), room, version), /too low/);
  });

  it('10.6: lowering ban from 50 to 40 → allow', () => {
    const room = setup(version);
    expectAllowed(authorize(plBy(room, (c) => (c.ban = 40)), room, version));
  });
  it('10.6.2: raising ban above the sender (61) → reject; to the sender’s level (60) → allow', () => {
    const room = setup(version);
    expectRejected(authorize(plBy(room, (c) => (c.ban = 61)), room, version), /cannot set 'ban'/);
    expectAllowed(authorize(plBy(room, (c) => (c.ban = 60)), room, version));
  });
  it('10.6.1: changing a level that is above the sender → reject', () => {
    const room = setup(version, { ...basePl(version), kick: 70 });
    expectRejected(authorize(plBy(room, (c) => (c.kick = 10)), room, version), /cannot change 'kick'/);
  });
  it('10.6.1: removing a level that is above the sender → reject', () => {
    const room = setup(version, { ...basePl(version), redact: 70 });
    expectRejected(authorize(plBy(room, (c) => delete c.redact), room, version), /cannot change 'redact'/);
  });
  it('10.6: removing a level at or below the sender → allow (the default applies)', () => {
    const room = setup(version);
    expectAllowed(authorize(plBy(room, (c) => delete c.state_default), room, version));
  });
  it('10.6.2: adding a level above the sender → reject', () => {
    const room = setup(version);
    const pl = basePl(version);
    delete pl.invite;
    room.setPowerLevels(pl);
    expectRejected(authorize(plBy(room, (c) => (c.invite = 70)), room, version), /cannot set 'invite'/);
  });
  it.each(['users_default', 'events_default', 'state_default', 'ban', 'redact', 'kick', 'invite'])(
    '10.6: %s raised above the sender → reject',
    (key) => {
      const room = setup(version);
      expectRejected(authorize(plBy(room, (c) => (c[key] = 61)), room, version), new RegExp(`'${key}'`));
    },
  );
  if (!version.integerPowerLevels) {
    it('10.6 (v1–v9): "50" → 50 is not a change, even when the value is above the sender', () => {
      const room = setup(version, { ...basePl(version), kick: '70' });
      expectAllowed(authorize(plBy(room, (c) => (c.kick = 70)), room, version));
    });
  }

  it('10.7.1: changing an events entry above the sender → reject', () => {
    const room = setup(version);
    expectRejected(authorize(plBy(room, (c) => (sub(c, 'events')['m.high'] = 10)), room, version), /events\['m.high'\]/);
  });
  it('10.7.1: removing an events entry above the sender → reject', () => {
    const room = setup(version);
    expectRejected(authorize(plBy(room, (c) => delete sub(c, 'events')['m.high']), room, version), /events\['m.high'\]/);
  });
  it('10.8.1: adding an events entry above the sender → reject; at the sender’s level → allow', () => {
    const room = setup(version);
    expectRejected(authorize(plBy(room, (c) => (sub(c, 'events')['m.new'] = 61)), room, version), /events\['m.new'\]/);
    expectAllowed(authorize(plBy(room, (c) => (sub(c, 'events')['m.new'] = 60)), room, version));
  });
  it('10.7/10.8: changing an events entry within the sender’s level → allow', () => {
    const room = setup(version);
    expectAllowed(authorize(plBy(room, (c) => (sub(c, 'events')['m.room.name'] = 20)), room, version));
  });
  it(`notifications above the sender: ${version.limitNotificationsPowerLevels ? 'checked (v6+)' : 'not checked (v1–v5)'}`, () => {
    const room = setup(version);
    const change = authorize(plBy(room, (c) => (sub(c, 'notifications').high = 10)), room, version);
    const add = authorize(plBy(room, (c) => (sub(c, 'notifications').new = 70)), room, version);
    if (version.limitNotificationsPowerLevels) {
      expectRejected(change, /notifications\['high'\]/);
      expectRejected(add, /notifications\['new'\]/);
    } else {
      expectAllowed(change);
      expectAllowed(add);
    }
  });
  it('notifications within the sender’s level → allow', () => {
    const room = setup(version);
    expectAllowed(authorize(plBy(room, (c) => (sub(c, 'notifications').room = 60)), room, version));
  });

  it('10.9: changing a lower user → allow', () => {
    const room = setup(version);
    expectAllowed(authorize(plBy(room, (c) => (sub(c, 'users')[CAROL] = 59)), room, version));
  });
  it('10.9: removing a lower user → allow', () => {
    const room = setup(version);
    expectAllowed(authorize(plBy(room, (c) => delete sub(c, 'users')[CAROL]), room, version));
  });
  it('10.9.1: changing a user at the sender’s level → reject', () => {
    const room = setup(version, { ...basePl(version), users: { ...(basePl(version).users as JsonObject), [CAROL]: 60 } });
    expectRejected(authorize(plBy(room, (c) => (sub(c, 'users')[CAROL] = 10)), room, version), /level of @carol/);
  });
  it('10.9.1: removing a user above the sender → reject', () => {
    const room = setup(version, { ...basePl(version), users: { ...(basePl(version).users as JsonObject), [DAVE]: 90 } });
    expectRejected(authorize(plBy(room, (c) => delete sub(c, 'users')[DAVE]), room, version), /level of @dave/);
  });
  it("10.9: the sender's own entry may be lowered or removed", () => {
    const room = setup(version);
    expectAllowed(authorize(plBy(room, (c) => (sub(c, 'users')[BOB] = 10)), room, version));
    expectAllowed(authorize(plBy(room, (c) => delete sub(c, 'users')[BOB]), room, version));
  });
  it("10.10.1: raising one's own level → reject", () => {
    const room = setup(version);
    expectRejected(authorize(plBy(room, (c) => (sub(c, 'users')[BOB] = 61)), room, version), /cannot set users\['@bob/);
  });
  it('10.10.1: adding a user above the sender → reject; at the sender’s level → allow', () => {
    const room = setup(version);
    expectRejected(authorize(plBy(room, (c) => (sub(c, 'users')[DAVE] = 61)), room, version), /users\['@dave/);
    expectAllowed(authorize(plBy(room, (c) => (sub(c, 'users')[DAVE] = 60)), room, version));
  });
  it('the rules use the sender’s level from the current power levels, not the new ones', () => {
    const room = setup(version);
    expectRejected(
      authorize(plBy(room, (c) => ((sub(c, 'users')[CAROL] = 100), (c.ban = 100)), CAROL), room, version),
      /too low|cannot/,
    );
  });
});

describe.each(versionsWhere((v) => v.privilegedCreators))('power levels and creators (v12), room version $id', (version) => {
  const room12 = () => {
    const room = newRoom(version, { createContent: { additional_creators: [DAVE] }, powerLevels: basePl(version) });
    room.setMember(BOB, 'join');
    room.setMember(DAVE, 'join');
    return room;
  };
  it('10.4: users naming the create sender → reject', () => {
    const room = room12();
    expectRejected(authorize(plBy(room, (c) => (sub(c, 'users')[ALICE] = 100), ALICE), room, version), /room creator @alice/);
  });
  it('10.4: users naming an additional creator → reject', () => {
    const room = room12();
    expectRejected(authorize(plBy(room, (c) => (sub(c, 'users')[DAVE] = 0), ALICE), room, version), /room creator @dave/);
  });
  it('a creator (infinite power) may set any level', () => {
    const room = room12();
    expectAllowed(
      authorize(plBy(room, (c) => ((sub(c, 'users')[BOB] = 9000), (c.ban = 9000), (sub(c, 'events')['m.high'] = 9000)), DAVE), room, version),
    );
  });
});

describe.each(versionsWhere((v) => !v.privilegedCreators))('power levels and the creator before v12, room version $id', (version) => {
  it('the creator may be listed in users (and is, with 100)', () => {
    const room = setup(version);
    expectAllowed(authorize(plBy(room, (c) => (sub(c, 'users')[ALICE] = 100), ALICE), room, version));
  });
  it('the creator may be demoted by themselves', () => {
    const room = setup(version);
    expectAllowed(authorize(plBy(room, (c) => (sub(c, 'users')[ALICE] = 0), ALICE), room, version));
  });
  it('nobody else may demote the creator', () => {
    const room = setup(version);
    expectRejected(authorize(plBy(room, (c) => (sub(c, 'users')[ALICE] = 0)), room, version), /level of @alice/);
  });
});
