// Auth events selection (server-server-api §Auth events selection) and rule 2 [v12: 3], the checks on an event's
// own auth_events list.
import { describe, expect, it } from 'vitest';
import type { Pdu } from '../../../../src/core/event.js';
import type { JsonObject } from '../../../../src/core/json.js';
import type { RoomVersion } from '../../../../src/core/room-versions.js';
import { authStateKeysFor } from '../../../../src/core/auth/auth-events.js';
import { checkAuthEventsSelection } from '../../../../src/core/auth/rules.js';
import type { TestRoom } from './helpers.js';
import { ALICE, ALL_VERSIONS, BOB, CAROL, expectAllowed, expectRejected, newRoom, versionsWhere } from './helpers.js';

const subject = (type: string, sender: string, stateKey?: string, content: JsonObject = {}) => ({
  type,
  sender,
  stateKey,
  content,
});
const createPair = (v: RoomVersion): Array<[string, string]> => (v.roomIdFromCreateEvent ? [] : [['m.room.create', '']]);

describe.each(ALL_VERSIONS)('authStateKeysFor, room version $id', (version) => {
  it('create event: nothing', () => {
    expect(authStateKeysFor(subject('m.room.create', ALICE, ''), version)).toEqual([]);
  });
  it('message: create (not in v12), power levels, sender member', () => {
    expect(authStateKeysFor(subject('m.room.message', BOB), version)).toEqual([
      ...createPair(version),
      ['m.room.power_levels', ''],
      ['m.room.member', BOB],
    ]);
  });
  it('join: adds the join rules; sender = target is listed once', () => {
    expect(authStateKeysFor(subject('m.room.member', BOB, BOB, { membership: 'join' }), version)).toEqual([
      ...createPair(version),
      ['m.room.power_levels', ''],
      ['m.room.member', BOB],
      ['m.room.join_rules', ''],
    ]);
  });
  it.each(['invite', 'knock'])('%s: target member and join rules', (membership) => {
    expect(authStateKeysFor(subject('m.room.member', ALICE, BOB, { membership }), version)).toEqual([
      ...createPair(version),
      ['m.room.power_levels', ''],
      ['m.room.member', ALICE],
      ['m.room.member', BOB],
      ['m.room.join_rules', ''],
    ]);
  });
  it.each(['leave', 'ban'])('%s: target member, no join rules', (membership) => {
    expect(authStateKeysFor(subject('m.room.member', ALICE, BOB, { membership }), version)).toEqual([
      ...createPair(version),
      ['m.room.power_levels', ''],
      ['m.room.member', ALICE],
      ['m.room.member', BOB],
    ]);
  });
  it('third-party invite: the m.room.third_party_invite named by signed.token', () => {
    const content = { membership: 'invite', third_party_invite: { signed: { mxid: BOB, token: 'tok' } } };
    expect(authStateKeysFor(subject('m.room.member', ALICE, BOB, content), version)).toContainEqual([
      'm.room.third_party_invite',
      'tok',
    ]);
  });
  it('third-party invite with a malformed signed: no m.room.third_party_invite, no throw', () => {
    for (const tpi of [null, 'x', { signed: 'x' }, { signed: { token: 5 } }]) {
      const pairs = authStateKeysFor(subject('m.room.member', ALICE, BOB, { membership: 'invite', third_party_invite: tpi }), version);
      expect(pairs.some(([t]) => t === 'm.room.third_party_invite')).toBe(false);
    }
  });
  it('member event without membership or state_key: no throw', () => {
    expect(authStateKeysFor(subject('m.room.member', ALICE), version)).toEqual([
      ...createPair(version),
      ['m.room.power_levels', ''],
      ['m.room.member', ALICE],
    ]);
  });
  it('join_authorised_via_users_server: the authoriser member only where restricted rooms exist', () => {
    const pairs = authStateKeysFor(
      subject('m.room.member', BOB, BOB, { membership: 'join', join_authorised_via_users_server: CAROL }),
      version,
    );
    expect(pairs.some(([t, k]) => t === 'm.room.member' && k === CAROL)).toBe(version.restrictedJoinRule);
  });
  it('join_authorised_via_users_server on a non-join: not selected', () => {
    const pairs = authStateKeysFor(
      subject('m.room.member', ALICE, BOB, { membership: 'invite', join_authorised_via_users_server: CAROL }),
      version,
    );
    expect(pairs.some(([, k]) => k === CAROL)).toBe(false);
  });
});

/** The auth events the selection picks for `e` from the room's state. */
function selectedAuthEvents(room: TestRoom, e: Pdu): Pdu[] {
  const out: Pdu[] = [];
  for (const [t, k] of authStateKeysFor(e, room.version)) {
    const ev = room.get(t, k);
    if (ev) out.push(ev);
  }
  return out;
}
function withAuthEvents(room: TestRoom, e: Pdu, auth: Pdu[]): Pdu {
  return room.event({
    type: e.type,
    sender: e.sender,
    state_key: e.stateKey,
    content: e.content,
    auth_events: room.version.eventIdFormat === 'server' ? auth.map((a) => [a.eventId, { sha256: 'x' }]) : auth.map((a) => a.eventId),
  });
}

describe.each(ALL_VERSIONS)('checkAuthEventsSelection (rule 2 / v12: 3), room version $id', (version) => {
  const setup = () => {
    const room = newRoom(version);
    room.setMember(BOB, 'join');
    const msg = room.event({ type: 'm.room.message', sender: BOB });
    const auth = selectedAuthEvents(room, msg);
    return { room, e: withAuthEvents(room, msg, auth), auth };
  };

  it('the selected events pass', () => {
    const { room, e, auth } = setup();
    expect(auth.some((a) => a.type === 'm.room.create')).toBe(!version.roomIdFromCreateEvent);
    expectAllowed(checkAuthEventsSelection(e, auth, room.version));
  });
  it('a subset of the selection passes (entries are "if any")', () => {
    const { room, auth } = setup();
    const fewer = auth.filter((a) => a.type !== 'm.room.power_levels');
    const e = withAuthEvents(room, room.event({ type: 'm.room.message', sender: BOB }), fewer);
    expectAllowed(checkAuthEventsSelection(e, fewer, version));
  });
  it('2.1: two entries for one (type, state_key) → reject', () => {
    const { room, auth } = setup();
    const otherPl = room.event({ type: 'm.room.power_levels', sender: ALICE, state_key: '', content: {} });
    const list = [...auth, otherPl];
    const e = withAuthEvents(room, room.event({ type: 'm.room.message', sender: BOB }), list);
    expectRejected(checkAuthEventsSelection(e, list, version), /two entries/);
  });
  it('2.1: the same event listed twice → reject', () => {
    const { room, auth } = setup();
    const list = [...auth, auth[auth.length - 1]];
    const e = withAuthEvents(room, room.event({ type: 'm.room.message', sender: BOB }), list);
    expectRejected(checkAuthEventsSelection(e, list, version), /two entries/);
  });
  it('2.2: an entry the selection would not pick → reject', () => {
    const { room, auth } = setup();
    const list = [...auth, room.get('m.room.join_rules', '')!];
    const e = withAuthEvents(room, room.event({ type: 'm.room.message', sender: BOB }), list);
    expectRejected(checkAuthEventsSelection(e, list, version), /not in the auth events selection/);
  });
  it("2.2: someone else's member event → reject", () => {
    const { room, auth } = setup();
    const list = [...auth.filter((a) => a.type !== 'm.room.member'), room.get('m.room.member', ALICE)!];
    const e = withAuthEvents(room, room.event({ type: 'm.room.message', sender: BOB }), list);
    expectRejected(checkAuthEventsSelection(e, list, version), /not in the auth events selection/);
  });
  it('2.3: a rejected entry → reject', () => {
    const { e, auth } = setup();
    const bad = auth[auth.length - 1].eventId;
    expectRejected(checkAuthEventsSelection(e, auth, version, (id) => id === bad), /was rejected/);
  });
  it('2.5: an entry from another room → reject', () => {
    const { room, auth } = setup();
    const foreign = room.event({ type: 'm.room.member', sender: BOB, state_key: BOB, content: { membership: 'join' }, room_id: '!elsewhere:example.org' });
    const list = [...auth.filter((a) => !(a.type === 'm.room.member')), foreign];
    const e = withAuthEvents(room, room.event({ type: 'm.room.message', sender: BOB }), list);
    expectRejected(checkAuthEventsSelection(e, list, version), /another room/);
  });
  it('a listed auth event that is not supplied → reject', () => {
    const { e, auth } = setup();
    expectRejected(checkAuthEventsSelection(e, auth.slice(1), version), /not available/);
  });
  it('create events pass (rule 1 decides them)', () => {
    const { room } = setup();
    expectAllowed(checkAuthEventsSelection(room.create, [], version));
  });
  it('member event: target, join rules and authoriser are accepted when selected', () => {
    const { room } = setup();
    room.setMember(CAROL, 'invite', ALICE);
    const join = room.memberEvent(CAROL, CAROL, 'join');
    const auth = selectedAuthEvents(room, join);
    expect(auth.some((a) => a.type === 'm.room.join_rules')).toBe(true);
    expectAllowed(checkAuthEventsSelection(withAuthEvents(room, join, auth), auth, version));
  });
});

describe.each(versionsWhere((v) => !v.roomIdFromCreateEvent))('rule 2.4, room version $id', (version) => {
  it('no m.room.create among the entries → reject', () => {
    const room = newRoom(version);
    const msg = room.event({ type: 'm.room.message', sender: ALICE });
    const auth = selectedAuthEvents(room, msg).filter((a) => a.type !== 'm.room.create');
    expectRejected(checkAuthEventsSelection(withAuthEvents(room, msg, auth), auth, version), /no m\.room\.create/);
  });
});

describe.each(versionsWhere((v) => v.roomIdFromCreateEvent))('rule 3.2 (v12), room version $id', (version) => {
  it('the create event among the entries → reject (it must not be selected)', () => {
    const room = newRoom(version);
    const msg = room.event({ type: 'm.room.message', sender: ALICE });
    const auth = [room.create, ...selectedAuthEvents(room, msg)];
    expectRejected(checkAuthEventsSelection(withAuthEvents(room, msg, auth), auth, version), /not in the auth events selection/);
  });
  it('no create event among the entries is fine (no rule 2.4)', () => {
    const room = newRoom(version);
    const msg = room.event({ type: 'm.room.message', sender: ALICE });
    const auth = selectedAuthEvents(room, msg);
    expectAllowed(checkAuthEventsSelection(withAuthEvents(room, msg, auth), auth, version));
  });
});
