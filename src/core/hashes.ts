/**
 * Content hashes and reference hashes of events.
 * Spec: shared/matrix-spec/content/server-server-api.md §"Calculating the content hash for an event",
 * §"Calculating the reference hash for an event", §"Validating hashes and signatures on received events".
 *
 * SHA-256 is synchronous (crypto/sha256.ts: @noble/hashes, or the host's registered backend) so hashing can run
 * inside code that cannot await.
 */
import { canonicalJsonBytes } from './canonical-json.js';
import { sha256 } from './crypto/sha256.js';
import { decodeBase64, encodeBase64 } from './base64.js';
import type { JsonObject } from './json.js';
import { isJsonObject } from './json.js';
import { redactEvent } from './redaction.js';
import type { RoomVersion } from './room-versions.js';

/** A copy without `keys`. (Object.fromEntries defines data properties: a "__proto__" key stays a key.) */
function without(json: JsonObject, keys: readonly string[]): JsonObject {
  return Object.fromEntries(Object.entries(json).filter(([k]) => !keys.includes(k)));
}

/**
 * SHA-256 of the canonical JSON of the event without `unsigned`, `signatures` and `hashes`.
 * Throws `CanonicalJsonError` if the event cannot be encoded (integers are not range-checked here; the PDU
 * format check applies the room version's strictness).
 */
export function contentHash(json: JsonObject): Uint8Array {
  return sha256(canonicalJsonBytes(without(json, ['unsigned', 'signatures', 'hashes'])));
}

/** A copy of the event with `hashes` set to `{ sha256: <unpadded Base64 content hash> }` (as the spec's example
 *  code does, any other entries of an existing `hashes` are dropped: they would no longer match). */
export function addContentHash(json: JsonObject): JsonObject {
  return { ...json, hashes: { sha256: encodeBase64(contentHash(json)) } };
}

/**
 * True if `hashes.sha256` decodes to the event's content hash. False for a missing or malformed hash, or an event
 * that is not encodable; never throws. A false result means the event must be replaced by its redacted form.
 */
export function checkContentHash(json: JsonObject): boolean {
  try {
    if (!isJsonObject(json) || !isJsonObject(json.hashes)) return false;
    const claimed = json.hashes.sha256;
    if (typeof claimed !== 'string') return false;
    const expected = decodeBase64(claimed);
    if (expected === undefined || expected.length !== 32) return false;
    const actual = contentHash(json);
    let diff = 0;
    for (let i = 0; i < 32; i++) diff |= actual[i] ^ expected[i];
    return diff === 0;
  } catch {
    return false;
  }
}

/**
 * The event's reference hash: SHA-256 of the canonical JSON of the redacted event without `signatures`,
 * `unsigned` (and `age_ts`, which redaction removes anyway). Integers are range-checked for room versions 6+.
 * Throws `CanonicalJsonError` if the event cannot be encoded.
 */
export function referenceHash(json: JsonObject, version: RoomVersion): Uint8Array {
  const redacted = without(redactEvent(json, version), ['signatures', 'unsigned', 'age_ts']);
  return sha256(canonicalJsonBytes(redacted, { strictIntegers: version.strictCanonicalJson }));
}
