/**
 * Auth events selection: which state entries an event's `auth_events` should name.
 *
 * Spec: shared/matrix-spec/content/server-server-api.md §Auth events selection; rooms/v12.md (the create event is
 * never selected); rooms/_index.md feature matrix (restricted rooms, v8+).
 */
import type { JsonObject } from '../json.js';
import { isJsonObject } from '../json.js';
import type { RoomVersion } from '../room-versions.js';

/** What the selection looks at; a `Pdu` fits. */
export interface AuthEventSubject {
  readonly type: string;
  readonly stateKey: string | undefined;
  readonly sender: string;
  readonly content: JsonObject;
}

/**
 * The `(type, state_key)` pairs an event's auth events are chosen from, without duplicates. The caller takes the
 * current event for each pair from the room state, where there is one. The create event's own list is empty.
 */
export function authStateKeysFor(event: AuthEventSubject, version: RoomVersion): Array<[type: string, stateKey: string]> {
  if (event.type === 'm.room.create') return [];
  const out: Array<[string, string]> = [];
  const add = (type: string, stateKey: string): void => {
    if (!out.some(([t, k]) => t === type && k === stateKey)) out.push([type, stateKey]);
  };
  // The m.room.create event, depending on the room version (v12: never; the room ID names it).
  if (!version.roomIdFromCreateEvent) add('m.room.create', '');
  // The current m.room.power_levels event, if any.
  add('m.room.power_levels', '');
  // The sender's current m.room.member event, if any.
  add('m.room.member', event.sender);

  if (event.type !== 'm.room.member') return out;
  const content = event.content;
  const membership = content.membership;
  // The target's current m.room.member event, if any.
  if (event.stateKey !== undefined) add('m.room.member', event.stateKey);
  // If membership is join, invite or knock: the current m.room.join_rules event, if any. (knock exists from v7;
  // before that the membership is unknown and the event fails auth anyway, so selecting join rules is harmless.)
  if (membership === 'join' || membership === 'invite' || membership === 'knock') add('m.room.join_rules', '');
  // If membership is invite and content has third_party_invite: the m.room.third_party_invite event whose
  // state_key is content.third_party_invite.signed.token, if any.
  if (membership === 'invite' && isJsonObject(content.third_party_invite)) {
    const signed = content.third_party_invite.signed;
    if (isJsonObject(signed) && typeof signed.token === 'string') add('m.room.third_party_invite', signed.token);
  }
  // If membership is join, content.join_authorised_via_users_server is present and the version supports restricted
  // rooms: the m.room.member event of that user.
  const authoriser = content.join_authorised_via_users_server;
  if (membership === 'join' && version.restrictedJoinRule && typeof authoriser === 'string') {
    add('m.room.member', authoriser);
  }
  return out;
}
