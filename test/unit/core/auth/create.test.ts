// Rule 1: the m.room.create event, and v12's rule 2 (the room ID names the create event).
import { describe, expect, it } from 'vitest';
import { Pdu } from '../../../../src/core/event.js';
import type { JsonObject } from '../../../../src/core/json.js';
import type { RoomVersion } from '../../../../src/core/room-versions.js';
import { authorize } from '../../../../src/core/auth/rules.js';
import { ALICE, ALL_VERSIONS, BOB, CAROL, expectAllowed, expectRejected, newRoom, versionsWhere } from './helpers.js';

const empty = { get: () => undefined };

function createEvent(version: RoomVersion, patch: JsonObject = {}, contentPatch: JsonObject = {}): Pdu {
  const content: JsonObject = { room_version: version.id };
  if (!version.implicitRoomCreator) content.creator = ALICE;
  Object.assign(content, contentPatch);
  const json: JsonObject = { type: 'm.room.create', sender: ALICE, state_key: '', content, prev_events: [], auth_events: [] };
  if (!version.roomIdFromCreateEvent) json.room_id = '!room:example.org';
  Object.assign(json, patch);
  return new Pdu('$create', json);
}

describe.each(ALL_VERSIONS)('create event, room version $id', (version) => {
  it('1.5: a well-formed create event is allowed', () => {
    expectAllowed(authorize(createEvent(version), empty, version));
  });
  it('1.1: prev_events → reject', () => {
    expectRejected(authorize(createEvent(version, { prev_events: ['$x'] }), empty, version), /prev_events/);
  });
  it('1.1: malformed prev_events → reject', () => {
    expectRejected(authorize(createEvent(version, { prev_events: 'nope' }), empty, version), /prev_events/);
  });
  it('1.3: an unrecognised room_version → reject', () => {
    expectRejected(authorize(createEvent(version, {}, { room_version: '99' }), empty, version), /room_version/);
  });
  it('1.3: a non-string room_version → reject', () => {
    expectRejected(authorize(createEvent(version, {}, { room_version: 1 }), empty, version), /room_version/);
  });
  it('1.3: no room_version (v1 default) is allowed', () => {
    const e = createEvent(version);
    delete (e.json.content as JsonObject).room_version;
    expectAllowed(authorize(e, empty, version));
  });
  it('1.3: any recognised room_version is allowed', () => {
    expectAllowed(authorize(createEvent(version, {}, { room_version: '1' }), empty, version));
  });
  it('never throws on non-object content', () => {
    const e = createEvent(version, { content: 'garbage' });
    const r = authorize(e, empty, version);
    // Non-object content reads as {}: v1–v10 reject for the missing creator, v11+ allow.
    if (version.implicitRoomCreator) expectAllowed(r);
    else expectRejected(r, /creator/);
  });
});

describe.each(versionsWhere((v) => !v.roomIdFromCreateEvent))('create event room_id, room version $id', (version) => {
  it("1.2: room_id domain ≠ sender's domain → reject", () => {
    expectRejected(authorize(createEvent(version, { sender: CAROL }), empty, version), /domain/);
  });
  it('1.2: no room_id → reject', () => {
    const e = createEvent(version);
    delete e.json.room_id;
    expectRejected(authorize(e, empty, version), /domain/);
  });
});

describe.each(versionsWhere((v) => !v.implicitRoomCreator))('create event creator, room version $id', (version) => {
  it('1.4: no creator → reject', () => {
    const e = createEvent(version);
    delete (e.json.content as JsonObject).creator;
    expectRejected(authorize(e, empty, version), /creator/);
  });
});

describe.each(versionsWhere((v) => v.implicitRoomCreator))('create event without creator, room version $id', (version) => {
  it('1.4 is gone: no creator is fine', () => {
    expectAllowed(authorize(createEvent(version), empty, version));
  });
});

describe.each(versionsWhere((v) => v.roomIdFromCreateEvent))('v12 create event, room version $id', (version) => {
  it('1.2: a room_id → reject', () => {
    expectRejected(authorize(createEvent(version, { room_id: '!room:example.org' }), empty, version), /room_id/);
  });
  it('1.2: the sender domain does not matter (no room_id domain)', () => {
    expectAllowed(authorize(createEvent(version, { sender: CAROL }), empty, version));
  });
  it('1.4: additional_creators as an array of user IDs is allowed', () => {
    expectAllowed(authorize(createEvent(version, {}, { additional_creators: [BOB, CAROL] }), empty, version));
  });
  it.each([
    ['not an array', BOB],
    ['a non-string entry', [BOB, 5]],
    ['an invalid user ID', ['bob']],
    ['a user ID without server name', ['@bob']],
  ])('1.4: additional_creators %s → reject', (_what, value) => {
    expectRejected(
      authorize(createEvent(version, {}, { additional_creators: value as JsonObject[string] }), empty, version),
      /additional_creators/,
    );
  });
});

describe.each(versionsWhere((v) => !v.privilegedCreators))('additional_creators before v12, room version $id', (version) => {
  it('is ignored by rule 1', () => {
    expectAllowed(authorize(createEvent(version, {}, { additional_creators: 'junk' }), empty, version));
  });
});

describe.each(versionsWhere((v) => v.roomIdFromCreateEvent))('v12 rule 2: room_id is the create event ID, $id', (version) => {
  it('2: an event whose room_id is the create event ID with ! is checked further (allowed)', () => {
    const room = newRoom(version);
    const e = room.event({ type: 'm.room.message', sender: ALICE });
    expect(e.json.room_id).toBe('!' + room.create.eventId.slice(1));
    expectAllowed(authorize(e, room, version));
  });
  it('2: another room_id → reject', () => {
    const room = newRoom(version);
    const e = room.event({ type: 'm.room.message', sender: ALICE, room_id: '!other' });
    expectRejected(authorize(e, room, version), /create event's ID/);
  });
  it('2: a missing room_id → reject', () => {
    const room = newRoom(version);
    const e = room.event({ type: 'm.room.message', sender: ALICE });
    delete e.json.room_id;
    expectRejected(authorize(e, room, version), /create event's ID/);
  });
});

describe.each(versionsWhere((v) => !v.roomIdFromCreateEvent))('no room_id rule before v12, room version $id', (version) => {
  it('an event whose room_id is not derived from the create ID is fine (rule 2.5 checks rooms instead)', () => {
    const room = newRoom(version);
    expectAllowed(authorize(room.event({ type: 'm.room.message', sender: ALICE }), room, version));
  });
});

describe.each(ALL_VERSIONS)('no create event in the state, room version $id', (version) => {
  it('→ reject', () => {
    const room = newRoom(version);
    room.remove('m.room.create', '');
    expectRejected(authorize(room.event({ type: 'm.room.message', sender: ALICE }), room, version), /m\.room\.create/);
  });
});
