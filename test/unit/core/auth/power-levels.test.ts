// Reading power levels: value formats per version, defaults, creators, user levels and required levels.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { JsonObject, JsonValue } from '../../../../src/core/json.js';
import type { RoomVersion } from '../../../../src/core/room-versions.js';
import {
  banLevel,
  inviteLevel,
  kickLevel,
  notificationLevel,
  powerLevelValue,
  powerLevelsContentProblem,
  powerLevelsFrom,
  redactLevel,
  requiredPowerLevel,
  roomCreators,
  userPowerLevel,
} from '../../../../src/core/auth/power-levels.js';
import { ALICE, ALL_VERSIONS, BOB, CAROL, TestRoom, newRoom, versionsWhere } from './helpers.js';

interface ValueCase {
  value: JsonValue;
  v1_v5: number | null;
  v6_v9: number | null;
  v10_v12: number | null;
  proves: string;
}
const fixture = JSON.parse(
  readFileSync(new URL('../../../fixtures/auth/power-level-values.json', import.meta.url), 'utf8'),
) as { cases: ValueCase[] };

function expectedFor(c: ValueCase, v: RoomVersion): number | null {
  if (v.integerPowerLevels) return c.v10_v12;
  return v.strictCanonicalJson ? c.v6_v9 : c.v1_v5;
}

describe.each(ALL_VERSIONS)('powerLevelValue, room version $id', (version) => {
  it.each(fixture.cases)('$proves: $value', (c) => {
    expect(powerLevelValue(c.value, version) ?? null).toBe(expectedFor(c, version));
  });
});

describe.each(ALL_VERSIONS)('powerLevelsFrom, room version $id', (version) => {
  it('no power-levels event: the spec defaults', () => {
    const pl = powerLevelsFrom(undefined, version);
    expect([pl.usersDefault, pl.eventsDefault, pl.stateDefault]).toEqual([0, 0, 50]);
    expect([banLevel(pl), kickLevel(pl), inviteLevel(pl), redactLevel(pl)]).toEqual([50, 50, 0, 50]);
    expect(notificationLevel('room', pl)).toBe(50);
    expect(pl.users.size + pl.events.size + pl.notifications.size).toBe(0);
  });
  it('reads every property', () => {
    const room = newRoom(version);
    const e = room.setPowerLevels({
      users: { [BOB]: 7 },
      users_default: 1,
      events_default: 2,
      state_default: 3,
      ban: 4,
      kick: 5,
      invite: 6,
      redact: 8,
      events: { 'm.x': 9 },
      notifications: { room: 10 },
    });
    const pl = powerLevelsFrom(e, version);
    expect([pl.usersDefault, pl.eventsDefault, pl.stateDefault, pl.ban, pl.kick, pl.invite, pl.redact]).toEqual([1, 2, 3, 4, 5, 6, 8]);
    expect(pl.users.get(BOB)).toBe(7);
    expect(pl.events.get('m.x')).toBe(9);
    expect(notificationLevel('room', pl)).toBe(10);
    expect(notificationLevel('other', pl)).toBe(50);
  });
  it('unreadable values fall back to the defaults, never throwing', () => {
    const room = newRoom(version);
    const e = room.setPowerLevels({ ban: 'lots', users: 'x', events: [1, 2], notifications: null, state_default: {} } as JsonObject);
    const pl = powerLevelsFrom(e, version);
    expect([pl.ban, pl.stateDefault, pl.users.size, pl.events.size]).toEqual([50, 50, 0, 0]);
    const junk = room.put(room.event({ type: 'm.room.power_levels', sender: ALICE, state_key: '', content: 'junk' }));
    expect(powerLevelsFrom(junk, version).stateDefault).toBe(50);
  });
  it(`stringy values ${version.integerPowerLevels ? 'are ignored (v10+)' : 'count (v1–v9)'}`, () => {
    const room = newRoom(version);
    const pl = powerLevelsFrom(room.setPowerLevels({ kick: '10', users: { [BOB]: '20' } }), version);
    expect([pl.kick, pl.users.get(BOB)]).toEqual(version.integerPowerLevels ? [50, undefined] : [10, 20]);
  });
});

describe('requiredPowerLevel', () => {
  const v = ALL_VERSIONS[0];
  const pl = powerLevelsFrom(newRoom(v).setPowerLevels({ events: { 'm.a': 70 }, events_default: 5, state_default: 40 }), v);
  it('events[type] wins for state and messages', () => {
    expect(requiredPowerLevel('m.a', true, pl)).toBe(70);
    expect(requiredPowerLevel('m.a', false, pl)).toBe(70);
  });
  it('otherwise state_default or events_default', () => {
    expect(requiredPowerLevel('m.b', true, pl)).toBe(40);
    expect(requiredPowerLevel('m.b', false, pl)).toBe(5);
  });
});

describe.each(ALL_VERSIONS)('roomCreators, room version $id', (version) => {
  it('names the creator(s) as this version defines them', () => {
    const room = new TestRoom(version, { creator: BOB, additional_creators: [CAROL, ALICE, 5] as JsonValue });
    const expected = !version.implicitRoomCreator ? [BOB] : version.privilegedCreators ? [ALICE, CAROL] : [ALICE];
    expect(roomCreators(room.create, version)).toEqual(expected);
  });
  it('no create event or a malformed one: no creators, no throw', () => {
    expect(roomCreators(undefined, version)).toEqual([]);
    const room = new TestRoom(version);
    const bad = room.event({ type: 'm.room.create', sender: ALICE, state_key: '', content: { creator: 5, additional_creators: 'x' } });
    expect(roomCreators(bad, version)).toEqual(version.implicitRoomCreator ? [ALICE] : []);
  });
});

describe.each(ALL_VERSIONS)('userPowerLevel, room version $id', (version) => {
  it('no power-levels event: the creator 100 (v12: infinite), others 0', () => {
    const room = newRoom(version, { powerLevels: null });
    expect(userPowerLevel(ALICE, undefined, room.create, version)).toBe(version.privilegedCreators ? Infinity : 100);
    expect(userPowerLevel(BOB, undefined, room.create, version)).toBe(0);
  });
  it('with a power-levels event: users, else users_default, else 0', () => {
    const room = newRoom(version);
    const pl = room.setPowerLevels({ users: { [BOB]: 30 }, users_default: 5 });
    expect(userPowerLevel(BOB, pl, room.create, version)).toBe(30);
    expect(userPowerLevel(CAROL, pl, room.create, version)).toBe(5);
    const pl2 = room.setPowerLevels({});
    expect(userPowerLevel(CAROL, pl2, room.create, version)).toBe(0);
  });
  it(`the creator not listed in users: ${version.privilegedCreators ? 'still infinite (v12)' : 'users_default (v1–v11)'}`, () => {
    const room = newRoom(version);
    const pl = room.setPowerLevels({ users: {}, users_default: 3 });
    expect(userPowerLevel(ALICE, pl, room.create, version)).toBe(version.privilegedCreators ? Infinity : 3);
  });
  it('no create event: nobody is the creator', () => {
    expect(userPowerLevel(ALICE, undefined, undefined, version)).toBe(0);
  });
});

describe.each(versionsWhere((v) => !v.implicitRoomCreator))('creator by content.creator, room version $id', (version) => {
  it('the sender of the create event is not the creator when content.creator names someone else', () => {
    const room = new TestRoom(version, { creator: BOB });
    expect(userPowerLevel(BOB, undefined, room.create, version)).toBe(100);
    expect(userPowerLevel(ALICE, undefined, room.create, version)).toBe(0);
  });
});

describe.each(versionsWhere((v) => v.privilegedCreators))('v12 additional creators, room version $id', (version) => {
  it('have infinite power even with a power-levels event', () => {
    const room = newRoom(version, { createContent: { additional_creators: [BOB] } });
    const pl = room.setPowerLevels({ users_default: 10 });
    expect(userPowerLevel(BOB, pl, room.create, version)).toBe(Infinity);
    expect(userPowerLevel(CAROL, pl, room.create, version)).toBe(10);
  });
});

describe.each(ALL_VERSIONS)('powerLevelsContentProblem, room version $id', (version) => {
  it('well-formed content: no problem', () => {
    expect(powerLevelsContentProblem({ users: { [BOB]: 50 }, ban: 50, events: { 'm.a': 1 }, notifications: { room: 2 } }, version)).toBeUndefined();
  });
  it.each([
    ['users not an object', { users: [] }, /users/],
    ['a users key that is not a user ID', { users: { bob: 1 } }, /user ID/],
    ['a users value that is not a level', { users: { [BOB]: 'high' } }, /users/],
    ['events not an object', { events: 5 }, /events/],
    ['an events value that is not a level', { events: { 'm.a': true } }, /events/],
    ['notifications not an object', { notifications: 'x' }, /notifications/],
    ['ban not a level', { ban: null }, /ban/],
  ])('%s → a problem', (_what, content, reason) => {
    expect(powerLevelsContentProblem(content as JsonObject, version)).toMatch(reason);
  });
  it(`stringy values ${version.integerPowerLevels ? 'are a problem (v10+)' : 'are fine (v1–v9)'}`, () => {
    const contents: JsonObject[] = [{ ban: '50' }, { users: { [BOB]: '50' } }, { events: { 'm.a': '5' } }, { notifications: { room: '5' } }];
    for (const content of contents) {
      const p = powerLevelsContentProblem(content, version);
      if (version.integerPowerLevels) expect(p).toBeDefined();
      else expect(p).toBeUndefined();
    }
  });
});

describe('powerLevelsFrom: one parse per event and version', () => {
  it('reads the same event by each version’s own rules, however often it is asked', async () => {
    const { Pdu } = await import('../../../../src/core/event.js');
    const { roomVersion } = await import('../../../../src/core/room-versions.js');
    const pl = new Pdu('$pl', {
      type: 'm.room.power_levels',
      state_key: '',
      sender: ALICE,
      room_id: '!r:example.org',
      content: { ban: '60', users: { [BOB]: '70' } },
    } as never);
    const v9 = roomVersion('9')!;
    const v10 = roomVersion('10')!;
    for (let i = 0; i < 2; i++) {
      // v9 accepts stringy integers; v10 does not (its defaults apply).
      expect(powerLevelsFrom(pl, v9).ban).toBe(60);
      expect(powerLevelsFrom(pl, v9).users.get(BOB)).toBe(70);
      expect(powerLevelsFrom(pl, v10).ban).toBe(50);
      expect(powerLevelsFrom(pl, v10).users.get(BOB)).toBeUndefined();
      expect(powerLevelsFrom(undefined, v10).ban).toBe(50);
    }
    expect(powerLevelsFrom(pl, v9)).toBe(powerLevelsFrom(pl, v9));
  });
});
