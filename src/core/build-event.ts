/**
 * Turning an event template into a signed PDU in a room version's format.
 * Spec: shared/matrix-spec/content/server-server-api.md §"Adding hashes and signatures to outgoing events"
 * (content hash, then sign the redacted event, then copy the signatures back); the event formats in
 * data/api/server-server/definitions/pdu_v*.yaml; event IDs per content/rooms/fragments/v1-event-ids.md,
 * rooms/v3.md and fragments/v4-event-ids.md; v12 room IDs per content/rooms/v12.md.
 *
 * The template lists `prev_events`/`auth_events` as event IDs (v1–v2 `[id, hashes]` pairs are accepted too).
 * For v1–v2 each reference needs the referenced event's reference hash: it is taken from
 * `opts.referenceHashes`, else computed from the event returned by `opts.resolveEvent`; a reference that
 * neither gives is an error (a wrong hash would make the event unverifiable for others, so none is invented).
 */
import { encodeBase64, encodeBase64Url } from './base64.js';
import { canonicalJsonBytes, canonicalJsonReusing } from './canonical-json.js';
import type { CanonicalParts } from './canonical-json.js';
import { sign } from './crypto/ed25519.js';
import { sha256 } from './crypto/sha256.js';
import { Pdu } from './event.js';
import { pduFromJson } from './event-id.js';
import { addContentHash, referenceHash } from './hashes.js';
import type { JsonObject, JsonValue } from './json.js';
import { checkPduFormat } from './pdu-format.js';
import { redactEvent } from './redaction.js';
import type { RoomVersion } from './room-versions.js';
import type { SigningKey } from './signing.js';
import { signEvent } from './signing.js';

export class BuildEventError extends Error {
  override readonly name = 'BuildEventError';
}

export interface BuildEventOptions {
  /** v1–v2: event ID → unpadded Base64 SHA-256 reference hash of referenced events. */
  referenceHashes?: ReadonlyMap<string, string>;
  /** v1–v2: the JSON of a referenced event, to compute its reference hash when it is not in `referenceHashes`. */
  resolveEvent?: (eventId: string) => JsonObject | undefined;
  /** v1–v2: the opaque part of the new `$opaque:origin` event ID (default: 16 random URL-safe characters). */
  eventIdLocalpart?: string;
}

function refIdOf(item: JsonValue, key: string): string {
  if (typeof item === 'string') return item;
  if (Array.isArray(item) && typeof item[0] === 'string') return item[0];
  throw new BuildEventError(`${key} entries must be event IDs`);
}

function referenceList(
  list: JsonValue | undefined,
  key: string,
  version: RoomVersion,
  opts: BuildEventOptions | undefined,
): JsonValue[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw new BuildEventError(`${key} must be a list of event IDs`);
  return list.map((item): JsonValue => {
    const id = refIdOf(item, key);
    if (version.eventIdFormat !== 'server') return id;
    if (Array.isArray(item) && item.length === 2) return item; // already a v1–v2 pair
    let hash = opts?.referenceHashes?.get(id);
    if (hash === undefined) {
      const ev = opts?.resolveEvent?.(id);
      if (ev !== undefined) hash = encodeBase64(referenceHash(ev, version));
    }
    if (hash === undefined) throw new BuildEventError(`no reference hash known for ${key} entry ${id}`);
    return [id, { sha256: hash }];
  });
}

function randomLocalpart(): string {
  return encodeBase64Url(globalThis.crypto.getRandomValues(new Uint8Array(12)));
}

/**
 * Build, hash and sign an event from `proto` (type, room_id, sender, content, state_key?, prev_events,
 * auth_events, depth, origin_server_ts, and optionally unsigned) as server `origin`. Returns the PDU with its
 * event ID. Throws `BuildEventError` if the template is incomplete or the result is not a valid PDU for `version`
 * (e.g. over 64 KiB), and `CanonicalJsonError` for non-JSON values.
 */
export async function buildEvent(
  proto: JsonObject,
  version: RoomVersion,
  origin: string,
  key: SigningKey,
  opts?: BuildEventOptions,
): Promise<Pdu> {
  // Whatever the template carries for these is recomputed below.
  const { hashes: _hashes, signatures: _signatures, event_id: _eventId, ...json } = proto;
  json.prev_events = referenceList(proto.prev_events, 'prev_events', version, opts);
  json.auth_events = referenceList(proto.auth_events, 'auth_events', version, opts);
  // v12: the create event has no room_id (the room ID is derived from its event ID).
  if (version.roomIdFromCreateEvent && proto.type === 'm.room.create') delete json.room_id;
  // `origin` is a protected top-level key until v11, which drops it from the format's essentials.
  if (version.redaction !== 'v11' && json.origin === undefined) json.origin = origin;
  if (version.eventIdFormat === 'server') json.event_id = `$${opts?.eventIdLocalpart ?? randomLocalpart()}:${origin}`;
  json.signatures = {};

  const fast = await hashAndSignOnce(json, version, origin, key);
  if (fast) return fast;
  const signed = await signEvent(addContentHash(json), version, origin, key);
  const format = checkPduFormat(signed, version);
  if (!format.ok) throw new BuildEventError(`built event is not a valid PDU: ${format.reason}`);
  const built = pduFromJson(signed, version);
  if (!built.ok) throw new BuildEventError(built.reason);
  return built.pdu;
}

const utf8 = new TextEncoder();

/**
 * `buildEvent`'s common case with each canonical encoding done once: the content-hash input, and the redacted
 * event, whose bytes are both what gets signed and (with no `signatures`, `unsigned` or `age_ts` in it) the
 * reference-hash input; the format check is handed the full event's size instead of encoding it again. Encodes
 * with the version's integer strictness up front; returns undefined when anything does not encode (or the event
 * is unusual), so the step-by-step path above reports the problem exactly as before.
 */
async function hashAndSignOnce(json: JsonObject, version: RoomVersion, origin: string, key: SigningKey): Promise<Pdu | undefined> {
  const strict = { strictIntegers: version.strictCanonicalJson };
  let hashed: JsonObject;
  let signedBytes: Uint8Array;
  let size: number;
  try {
    const { unsigned, signatures: _signatures, hashes: _hashes, ...rest } = json;
    // The top-level values the redacted event shares with the full one are encoded once, for both.
    const parts: CanonicalParts = new Map();
    const content = utf8.encode(canonicalJsonReusing(rest, parts, strict));
    hashed = { ...json, hashes: { sha256: encodeBase64(sha256(content)) } };
    const redacted = redactEvent(hashed, version);
    if ('age_ts' in redacted || 'unsigned' in redacted) return undefined;
    const { signatures: _rs, ...toSign } = redacted;
    signedBytes = utf8.encode(canonicalJsonReusing(toSign, parts, strict));
    // The full event's canonical size: the hashed part plus `,"key":value` for each key left out of it.
    size = content.length + extraBytes('hashes', hashed.hashes, strict);
    if (unsigned !== undefined) size += extraBytes('unsigned', unsigned, strict);
  } catch {
    return undefined;
  }
  const sig = encodeBase64(await sign(key.seed, signedBytes));
  const signed: JsonObject = { ...hashed, signatures: { [origin]: { [key.keyId]: sig } } };
  size += extraBytes('signatures', signed.signatures, strict);
  const format = checkPduFormat(signed, version, { canonicalBytes: size });
  if (!format.ok) throw new BuildEventError(`built event is not a valid PDU: ${format.reason}`);
  let eventId: string;
  switch (version.eventIdFormat) {
    case 'server': {
      const built = pduFromJson(signed, version); // validates the `event_id` field
      if (!built.ok) throw new BuildEventError(built.reason);
      return built.pdu;
    }
    case 'base64':
      eventId = '$' + encodeBase64(sha256(signedBytes));
      break;
    case 'urlsafe':
      eventId = '$' + encodeBase64Url(sha256(signedBytes));
      break;
  }
  return new Pdu(eventId, signed);
}

/** Bytes that `"name":value` adds to a canonical JSON object that has other keys (with its comma). */
function extraBytes(name: string, value: JsonValue, strict: { strictIntegers: boolean }): number {
  return name.length + 4 + canonicalJsonBytes(value, strict).length;
}
