/**
 * Step 1 of the checks on a received PDU: is it a valid event in the format of its room version?
 * Spec: shared/matrix-spec/content/server-server-api.md §"Checks performed on receipt of a PDU" (step 1);
 * the schemas data/api/server-server/definitions/pdu_v1.yaml (v1–v2), pdu_v3.yaml (v3), pdu_v4.yaml (v4–v5),
 * pdu_v6.yaml (v6–v10), pdu_v11.yaml (v11), pdu_v12.yaml (v12) and their components/; size limits from
 * content/client-server-api/_index.md §"Size limits"; identifier grammar from content/appendices.md; canonical
 * JSON strictness from content/rooms/fragments/v1-canonical-json.md and v6-canonical-json.md.
 *
 * Signatures (step 2) and hashes (step 3) are not checked here: see `verifyEventSignature` in signing.ts and
 * `checkContentHash` in hashes.ts. Never throws, whatever `json` is.
 */
import { canonicalJsonBytes } from './canonical-json.js';
import { parseEventId, parseRoomId, parseUserId, utf8ByteLength } from './identifiers.js';
import type { JsonObject, JsonValue } from './json.js';
import { isJsonObject } from './json.js';
import type { RoomVersion } from './room-versions.js';

export type FormatResult = { ok: true } | { ok: false; reason: string };

/** Largest event, as canonical JSON including signatures (client-server API §"Size limits"). */
export const MAX_PDU_BYTES = 65536;
/** `type` and `state_key` limits (bytes). */
export const MAX_TYPE_BYTES = 255;
export const MAX_STATE_KEY_BYTES = 255;
/** "Must contain less than or equal to" (pdu schemas). */
export const MAX_PREV_EVENTS = 20;
export const MAX_AUTH_EVENTS = 10;
/** v1–v5 depth bound ("less than 2^63 - 1"); v6+ is bounded by strict canonical JSON to 2^53 - 1. */
const MAX_DEPTH_V1 = 2 ** 63;

class FormatError extends Error {}

function bad(reason: string): never {
  throw new FormatError(reason);
}

function isInteger(v: JsonValue | undefined): v is number {
  return typeof v === 'number' && Number.isInteger(v);
}

function checkEventRef(v: JsonValue, version: RoomVersion, what: string): void {
  if (typeof v !== 'string') bad(`${what}: event ID is not a string`);
  const p = parseEventId(v, version);
  if (!p.ok) bad(`${what}: ${p.reason}`);
}

function checkRefList(json: JsonObject, key: 'prev_events' | 'auth_events', max: number, version: RoomVersion): void {
  const list = json[key];
  if (!Array.isArray(list)) bad(`'${key}' is missing or not an array`);
  if (list.length > max) bad(`'${key}' has ${list.length} entries (at most ${max})`);
  list.forEach((item, i) => {
    const what = `${key}[${i}]`;
    if (version.eventIdFormat === 'server') {
      // v1–v2: [event_id, {sha256: reference hash}]
      if (!Array.isArray(item) || item.length !== 2) bad(`${what} is not an [event ID, hashes] pair`);
      checkEventRef(item[0], version, what);
      const hashes = item[1];
      if (!isJsonObject(hashes) || typeof hashes.sha256 !== 'string') bad(`${what} has no sha256 reference hash`);
    } else {
      checkEventRef(item, version, what);
    }
  });
}

function checkFormat(json: unknown, version: RoomVersion, canonicalBytes?: number): void {
  if (!isJsonObject(json)) bad('event is not a JSON object');

  // Canonical JSON: v6+ rejects out-of-range integers (and every version rejects what cannot be encoded:
  // floats, non-JSON values). Then the 64 KiB limit on the whole event. A caller that has just encoded the
  // event itself (buildEvent) passes the size, saving a second encoding.
  let size: number;
  try {
    size = canonicalBytes ?? canonicalJsonBytes(json, { strictIntegers: version.strictCanonicalJson }).length;
  } catch (e) {
    bad(`not canonical JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (size > MAX_PDU_BYTES) bad(`event is ${size} bytes as canonical JSON (limit ${MAX_PDU_BYTES})`);

  const { type, sender, content, state_key: stateKey } = json;
  if (typeof type !== 'string') bad("'type' is missing or not a string");
  if (utf8ByteLength(type) > MAX_TYPE_BYTES) bad(`'type' is longer than ${MAX_TYPE_BYTES} bytes`);
  if (stateKey !== undefined) {
    if (typeof stateKey !== 'string') bad("'state_key' is not a string");
    if (utf8ByteLength(stateKey) > MAX_STATE_KEY_BYTES) bad(`'state_key' is longer than ${MAX_STATE_KEY_BYTES} bytes`);
  }
  if (typeof sender !== 'string') bad("'sender' is missing or not a string");
  const user = parseUserId(sender);
  if (!user.ok) bad(`'sender': ${user.reason}`);
  if (!isJsonObject(content)) bad("'content' is missing or not an object");

  // room_id: `!opaque:server` before v12; in v12 `!` + reference hash, and absent from the create event.
  const roomId = json.room_id;
  if (roomId === undefined) {
    if (!(version.roomIdFromCreateEvent && type === 'm.room.create')) bad("'room_id' is missing");
  } else {
    if (typeof roomId !== 'string') bad("'room_id' is not a string");
    const r = parseRoomId(roomId, version);
    if (!r.ok) bad(`'room_id': ${r.reason}`);
  }

  if (version.eventIdFormat === 'server') {
    const eventId = json.event_id;
    if (eventId === undefined) bad("'event_id' is missing");
    checkEventRef(eventId, version, "'event_id'");
  }

  if (!isInteger(json.origin_server_ts)) bad("'origin_server_ts' is missing or not an integer");
  const depth = json.depth;
  if (!isInteger(depth)) bad("'depth' is missing or not an integer");
  if (depth >= MAX_DEPTH_V1) bad("'depth' is too large");

  checkRefList(json, 'prev_events', MAX_PREV_EVENTS, version);
  checkRefList(json, 'auth_events', MAX_AUTH_EVENTS, version);

  const hashes = json.hashes;
  if (!isJsonObject(hashes)) bad("'hashes' is missing or not an object");
  if (typeof hashes.sha256 !== 'string') bad("'hashes.sha256' is missing or not a string");

  const signatures = json.signatures;
  if (!isJsonObject(signatures)) bad("'signatures' is missing or not an object");
  for (const [server, sigs] of Object.entries(signatures)) {
    if (!isJsonObject(sigs)) bad(`'signatures.${server}' is not an object`);
    for (const [keyId, sig] of Object.entries(sigs)) {
      if (typeof sig !== 'string') bad(`'signatures.${server}.${keyId}' is not a string`);
    }
  }

  if (json.unsigned !== undefined && !isJsonObject(json.unsigned)) bad("'unsigned' is not an object");

  // `redacts`: a top-level property of redaction events before v11 (still tolerated later), in content from v11.
  if (json.redacts !== undefined) checkEventRef(json.redacts, version, "'redacts'");
  if (version.redactsInContent && type === 'm.room.redaction' && content.redacts !== undefined) {
    checkEventRef(content.redacts, version, "'content.redacts'");
  }
}

/**
 * Check that `json` is a well-formed PDU for `version`: required fields and their types, `prev_events`/
 * `auth_events` in the version's shape, identifiers valid for the version, size limits, and canonical JSON
 * (strict integers from v6). Returns the first problem found.
 */
export function checkPduFormat(
  json: unknown,
  version: RoomVersion,
  known?: { /** The event's size as canonical JSON (strict for v6+), already checked encodable. */ canonicalBytes: number },
): FormatResult {
  try {
    checkFormat(json, version, known?.canonicalBytes);
    return { ok: true };
  } catch (e) {
    if (e instanceof FormatError) return { ok: false, reason: e.message };
    // Not expected for JSON input (e.g. a throwing getter on a non-JSON object): still an invalid event.
    return { ok: false, reason: `unreadable event: ${e instanceof Error ? e.message : String(e)}` };
  }
}
