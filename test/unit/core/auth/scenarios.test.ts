// Runs test/fixtures/auth/scenarios.json: whole-room cases, each with one sentence saying what it proves.
import { readFileSync } from 'node:fs';
import { describe, it } from 'vitest';
import { Pdu } from '../../../../src/core/event.js';
import type { JsonObject } from '../../../../src/core/json.js';
import type { RoomVersion } from '../../../../src/core/room-versions.js';
import { authorize, authStateFromEvents } from '../../../../src/core/auth/rules.js';
import { byId, expectAllowed, expectRejected } from './helpers.js';

interface Scenario {
  proves: string;
  versions: string;
  state: JsonObject[];
  event: JsonObject;
  expect: string;
}
const { cases } = JSON.parse(
  readFileSync(new URL('../../../fixtures/auth/scenarios.json', import.meta.url), 'utf8'),
) as { cases: Scenario[] };

/** "1-12" or "12" → the room versions. */
function versionRange(s: string): RoomVersion[] {
  const [lo, hi] = s.split('-').map(Number);
  const ids: string[] = [];
  for (let i = lo; i <= (hi ?? lo); i++) ids.push(String(i));
  return byId(...ids);
}

/** Fills in what depends on the version: room_id, and content.creator on the create event (v1–v10). */
function toPdu(json: JsonObject, version: RoomVersion, createId: string, fallbackId: string): Pdu {
  const { event_id: id, ...rest } = json;
  const j: JsonObject = structuredClone(rest);
  j.prev_events ??= ['$prev'];
  j.auth_events ??= [];
  if (j.type === 'm.room.create') {
    j.prev_events = [];
    const content = j.content as JsonObject;
    if (!version.implicitRoomCreator) content.creator ??= j.sender as string;
    if (!version.roomIdFromCreateEvent) j.room_id = '!room:' + String(j.sender).split(':')[1];
  } else {
    j.room_id = version.roomIdFromCreateEvent ? '!' + createId.slice(1) : '!room:a.org';
  }
  return new Pdu(typeof id === 'string' ? id : fallbackId, j);
}

describe.each(cases)('$proves', (c) => {
  it.each(versionRange(c.versions))('room version $id', (version) => {
    const createJson = c.state.find((e) => e.type === 'm.room.create');
    const createId = typeof createJson?.event_id === 'string' ? createJson.event_id : '$create';
    const state = authStateFromEvents(c.state.map((e, i) => toPdu(e, version, createId, `$s${i}`)));
    const r = authorize(toPdu(c.event, version, createId, '$event'), state, version);
    if (c.expect === 'allow') expectAllowed(r);
    else expectRejected(r, new RegExp(c.expect));
  });
});
