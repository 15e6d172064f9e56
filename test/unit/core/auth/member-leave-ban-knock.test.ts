// Rule 5.5 leave, 5.6 ban and 5.7 knock (v7+) [numbered one lower before v8; 4.x in v6–v11].
import { describe, it } from 'vitest';
import { authorize } from '../../../../src/core/auth/rules.js';
import {
  ALICE,
  ALL_VERSIONS,
  BOB,
  CAROL,
  DAVE,
  defaultPowerLevels,
  expectAllowed,
  expectRejected,
  newRoom,
  versionsWhere,
} from './helpers.js';

describe.each(ALL_VERSIONS)('5.5 leave, room version $id', (version) => {
  it.each(['invite', 'join'])('5.5.1: leaving oneself from %s → allow', (m) => {
    const room = newRoom(version);
    room.setMember(BOB, m, m === 'invite' ? ALICE : BOB);
    expectAllowed(authorize(room.memberEvent(BOB, BOB, 'leave'), room, version));
  });
  it.each([['leave'], ['ban'], [undefined]])('5.5.1: leaving oneself from %s → reject', (m) => {
    const room = newRoom(version);
    if (m) room.setMember(BOB, m, ALICE);
    expectRejected(authorize(room.memberEvent(BOB, BOB, 'leave'), room, version), /cannot leave/);
  });
  it(`5.5.1: leaving oneself from knock → ${version.knock ? 'allow (v7+)' : 'reject (before v7)'}`, () => {
    const room = newRoom(version);
    room.setMember(BOB, 'knock');
    const r = authorize(room.memberEvent(BOB, BOB, 'leave'), room, version);
    if (version.knock) expectAllowed(r);
    else expectRejected(r, /cannot leave/);
  });
  it('5.5.2: kicking while not joined → reject', () => {
    const room = newRoom(version, { powerLevels: defaultPowerLevels(version, { [BOB]: 100 }) });
    room.setMember(BOB, 'leave');
    room.setMember(CAROL, 'join');
    expectRejected(authorize(room.memberEvent(BOB, CAROL, 'leave'), room, version), /not joined/);
  });
  it('5.5.4: kick level reached and the target is lower → allow', () => {
    const room = newRoom(version);
    room.setMember(CAROL, 'join');
    expectAllowed(authorize(room.memberEvent(ALICE, CAROL, 'leave'), room, version));
  });
  it('5.5.4: revoking an invite is a kick → allow', () => {
    const room = newRoom(version);
    room.setMember(CAROL, 'invite', ALICE);
    expectAllowed(authorize(room.memberEvent(ALICE, CAROL, 'leave'), room, version));
  });
  it('5.5.5: below the kick level → reject', () => {
    const room = newRoom(version, { powerLevels: defaultPowerLevels(version, { [BOB]: 49 }) });
    room.setMember(BOB, 'join');
    room.setMember(CAROL, 'join');
    expectRejected(authorize(room.memberEvent(BOB, CAROL, 'leave'), room, version), /may not kick/);
  });
  it('5.5.5: a target with the same level → reject', () => {
    const room = newRoom(version, { powerLevels: defaultPowerLevels(version, { [BOB]: 50, [CAROL]: 50 }) });
    room.setMember(BOB, 'join');
    room.setMember(CAROL, 'join');
    expectRejected(authorize(room.memberEvent(BOB, CAROL, 'leave'), room, version), /may not kick/);
  });
  it('5.5.3: unbanning below the ban level → reject (though the kick level is reached)', () => {
    const room = newRoom(version, {
      powerLevels: { ...defaultPowerLevels(version, { [BOB]: 60 }), kick: 50, ban: 70 },
    });
    room.setMember(BOB, 'join');
    room.setMember(CAROL, 'ban', ALICE);
    expectRejected(authorize(room.memberEvent(BOB, CAROL, 'leave'), room, version), /unban/);
  });
  it('5.5.3/5.5.4: unbanning with both ban and kick levels → allow', () => {
    const room = newRoom(version);
    room.setMember(CAROL, 'ban', ALICE);
    expectAllowed(authorize(room.memberEvent(ALICE, CAROL, 'leave'), room, version));
  });
  it('5.5.4: unbanning needs the kick level too', () => {
    const room = newRoom(version, {
      powerLevels: { ...defaultPowerLevels(version, { [BOB]: 60 }), kick: 70, ban: 50 },
    });
    room.setMember(BOB, 'join');
    room.setMember(CAROL, 'ban', ALICE);
    expectRejected(authorize(room.memberEvent(BOB, CAROL, 'leave'), room, version), /may not kick/);
  });
});

describe.each(ALL_VERSIONS)('5.6 ban, room version $id', (version) => {
  it('5.6.2: ban level reached and the target is lower → allow', () => {
    const room = newRoom(version);
    room.setMember(CAROL, 'join');
    expectAllowed(authorize(room.memberEvent(ALICE, CAROL, 'ban'), room, version));
  });
  it('5.6.2: banning someone who never joined → allow', () => {
    const room = newRoom(version);
    expectAllowed(authorize(room.memberEvent(ALICE, DAVE, 'ban'), room, version));
  });
  it('5.6.1: the sender is not joined → reject', () => {
    const room = newRoom(version, { powerLevels: defaultPowerLevels(version, { [BOB]: 100 }) });
    expectRejected(authorize(room.memberEvent(BOB, CAROL, 'ban'), room, version), /not joined/);
  });
  it('5.6.3: below the ban level → reject', () => {
    const room = newRoom(version, { powerLevels: defaultPowerLevels(version, { [BOB]: 49 }) });
    room.setMember(BOB, 'join');
    expectRejected(authorize(room.memberEvent(BOB, CAROL, 'ban'), room, version), /may not ban/);
  });
  it('5.6.3: a target with a higher level → reject', () => {
    const room = newRoom(version, { powerLevels: defaultPowerLevels(version, { [BOB]: 50 }) });
    room.setMember(BOB, 'join');
    expectRejected(authorize(room.memberEvent(BOB, ALICE, 'ban'), room, version), /may not ban/);
  });
  it('the ban level defaults to 50 when unset', () => {
    const pl = defaultPowerLevels(version, { [BOB]: 50 });
    delete pl.ban;
    const room = newRoom(version, { powerLevels: pl });
    room.setMember(BOB, 'join');
    expectAllowed(authorize(room.memberEvent(BOB, CAROL, 'ban'), room, version));
  });
});

describe.each(versionsWhere((v) => v.knock))('5.7 knock (v7+), room version $id', (version) => {
  it('5.7.3: knocking on a knock room with no membership → allow', () => {
    const room = newRoom(version, { joinRule: 'knock' });
    expectAllowed(authorize(room.memberEvent(BOB, BOB, 'knock'), room, version));
  });
  it('5.7.3: knocking again after leaving → allow', () => {
    const room = newRoom(version, { joinRule: 'knock' });
    room.setMember(BOB, 'leave');
    expectAllowed(authorize(room.memberEvent(BOB, BOB, 'knock'), room, version));
  });
  it(`5.7.1: knock_restricted → ${version.knockRestrictedJoinRule ? 'allow (v10+)' : 'reject (v7–v9)'}`, () => {
    const room = newRoom(version, { joinRule: 'knock_restricted' });
    const r = authorize(room.memberEvent(BOB, BOB, 'knock'), room, version);
    if (version.knockRestrictedJoinRule) expectAllowed(r);
    else expectRejected(r, /does not allow knocking/);
  });
  it.each(['public', 'invite', 'restricted', 'private'])('5.7.1: join rule %s → reject', (rule) => {
    const room = newRoom(version, { joinRule: rule });
    expectRejected(authorize(room.memberEvent(BOB, BOB, 'knock'), room, version), /does not allow knocking/);
  });
  it('5.7.1: no join rules event → reject', () => {
    const room = newRoom(version, { joinRule: null });
    expectRejected(authorize(room.memberEvent(BOB, BOB, 'knock'), room, version), /does not allow knocking/);
  });
  it('5.7.2: knocking for someone else → reject', () => {
    const room = newRoom(version, { joinRule: 'knock' });
    room.setMember(BOB, 'join');
    expectRejected(authorize(room.memberEvent(BOB, CAROL, 'knock'), room, version), /user knocking/);
  });
  it.each(['ban', 'invite', 'join'])('5.7.4: knocking while %s → reject', (m) => {
    const room = newRoom(version, { joinRule: 'knock' });
    room.setMember(BOB, m, m === 'join' ? BOB : ALICE);
    expectRejected(authorize(room.memberEvent(BOB, BOB, 'knock'), room, version), /cannot knock/);
  });
});

describe.each(versionsWhere((v) => !v.knock))('knock before v7, room version $id', (version) => {
  it('membership knock is unknown → reject', () => {
    const room = newRoom(version, { joinRule: 'knock' });
    expectRejected(authorize(room.memberEvent(BOB, BOB, 'knock'), room, version), /unknown membership/);
  });
});

describe.each(versionsWhere((v) => v.privilegedCreators))('v12 creators and membership, room version $id', (version) => {
  const setup = () => {
    const room = newRoom(version, {
      createContent: { additional_creators: [CAROL] },
      powerLevels: defaultPowerLevels(version, { [BOB]: 1000 }),
    });
    room.setMember(BOB, 'join');
    room.setMember(CAROL, 'join');
    return room;
  };
  it('a very high power level still cannot ban a creator (infinite power)', () => {
    const room = setup();
    expectRejected(authorize(room.memberEvent(BOB, ALICE, 'ban'), room, version), /may not ban/);
    expectRejected(authorize(room.memberEvent(BOB, CAROL, 'leave'), room, version), /may not kick/);
  });
  it('an additional creator can ban anyone but another creator', () => {
    const room = setup();
    expectAllowed(authorize(room.memberEvent(CAROL, BOB, 'ban'), room, version));
    expectRejected(authorize(room.memberEvent(CAROL, ALICE, 'ban'), room, version), /may not ban/);
  });
});
