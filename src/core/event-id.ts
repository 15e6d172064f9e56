/**
 * Event IDs per room version, and v12 room IDs derived from the create event.
 * Spec: shared/matrix-spec/content/rooms/fragments/v1-event-ids.md (v1–v2: `$opaque:domain` carried in the
 * event), rooms/v3.md §"Event IDs" (reference hash, standard unpadded Base64), fragments/v4-event-ids.md (v4+:
 * URL-safe unpadded Base64), appendices.md §"Room IDs" and rooms/v12.md (room ID = create event ID with `!`).
 */
import { encodeBase64, encodeBase64Url } from './base64.js';
import { Pdu } from './event.js';
import { referenceHash } from './hashes.js';
import { parseEventId } from './identifiers.js';
import type { JsonObject } from './json.js';
import { isJsonObject } from './json.js';
import type { RoomVersion } from './room-versions.js';

/** An event whose ID cannot be determined (a v1–v2 event without a valid `event_id`, or an unencodable event). */
export class EventIdError extends Error {
  override readonly name = 'EventIdError';
}

/**
 * The event's ID in room version `version`: its `event_id` field for v1–v2 (validated), otherwise `$` + its
 * reference hash in the version's Base64 alphabet. Throws `EventIdError` (v1–v2 without a valid `event_id`) or
 * `CanonicalJsonError` (v3+ event that cannot be encoded); `pduFromJson` is the non-throwing form.
 */
export function computeEventId(json: JsonObject, version: RoomVersion): string {
  switch (version.eventIdFormat) {
    case 'server': {
      const id = json.event_id;
      if (typeof id !== 'string') throw new EventIdError('event has no event_id');
      const parsed = parseEventId(id, version);
      if (!parsed.ok) throw new EventIdError(parsed.reason);
      return id;
    }
    case 'base64':
      return '$' + encodeBase64(referenceHash(json, version));
    case 'urlsafe':
      return '$' + encodeBase64Url(referenceHash(json, version));
  }
}

/** Build a `Pdu` view with the event's ID for the room version. Never throws. Does not check the PDU format
 *  (see `checkPduFormat`), hashes or signatures. */
export function pduFromJson(json: unknown, version: RoomVersion): { ok: true; pdu: Pdu } | { ok: false; reason: string } {
  if (!isJsonObject(json)) return { ok: false, reason: 'event is not a JSON object' };
  try {
    return { ok: true, pdu: new Pdu(computeEventId(json, version), json) };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

/**
 * Room version 12: the room ID of a room is its create event's ID with `!` instead of `$`.
 * Returns undefined if `eventId` is not a reference-hash (URL-safe) event ID.
 */
export function roomIdFromCreateEventId(eventId: string): string | undefined {
  const parsed = parseEventId(eventId);
  if (!parsed.ok || parsed.format !== 'urlsafe') return undefined;
  return '!' + eventId.slice(1);
}

/** The inverse of `roomIdFromCreateEventId`: the create event's ID of a v12 room, or undefined. */
export function createEventIdFromRoomId(roomId: string): string | undefined {
  if (typeof roomId !== 'string' || !roomId.startsWith('!')) return undefined;
  const eventId = '$' + roomId.slice(1);
  return roomIdFromCreateEventId(eventId) === undefined ? undefined : eventId;
}
