/**
 * The checks on a received PDU that need no room state: steps 1–4 of "Checks performed on receipt of a PDU".
 * Spec: shared/matrix-spec/content/server-server-api.md §"Checks performed on receipt of a PDU",
 * §"Validating hashes and signatures on received events"; rooms/v1.md … v12.md (event formats, auth rules).
 *
 *   1. valid format for the room version (core/pdu-format.ts) — otherwise dropped;
 *   2. signatures: the sender's server, the event ID's server (v1–v2), and the authorising server of a restricted
 *      join (v8+) must each have a valid signature; keys come from the server names (core/server-key.ts
 *      resolveVerifyKey — a Hearth name is its key, so nothing is fetched) — otherwise dropped;
 *   3. content hash — on a mismatch the event is replaced by its redacted form and processed further;
 *   4. authorisation against its own auth events (`checkAgainstAuthEvents`) — otherwise rejected.
 * Steps 5–6 (state before the event, current state) need storage and live in ingest.ts.
 *
 * Everything here is pure and never throws on hostile input.
 */
import type { AuthResult } from '../core/auth/rules.js';
import { authStateFromEvents, authorize, checkAuthEventsSelection } from '../core/auth/rules.js';
import type { Pdu } from '../core/event.js';
import { pduFromJson } from '../core/event-id.js';
import { checkContentHash } from '../core/hashes.js';
import type { JsonObject } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import { checkPduFormat } from '../core/pdu-format.js';
import { redactEvent } from '../core/redaction.js';
import type { RoomVersion } from '../core/room-versions.js';
import { resolveVerifyKey } from '../core/server-key.js';
import { signatureKeyIds, verifyEventSignature } from '../core/signing.js';

/** A PDU that passed steps 1–3. `redacted` when its content hash did not match (step 3). */
export interface CheckedPdu {
  readonly pdu: Pdu;
  readonly redacted: boolean;
}

export type CheckResult = { ok: true; value: CheckedPdu } | { ok: false; reason: string };

export function domainOf(id: string): string {
  const i = id.indexOf(':');
  return i < 0 ? '' : id.slice(i + 1);
}

/** The servers whose signatures a PDU must carry (server-server-api §"Validating hashes and signatures"). */
export function requiredSigners(json: JsonObject, version: RoomVersion): string[] {
  const out = new Set<string>();
  if (typeof json.sender === 'string') out.add(domainOf(json.sender));
  if (version.eventIdFormat === 'server' && typeof json.event_id === 'string') out.add(domainOf(json.event_id));
  const content = isJsonObject(json.content) ? json.content : {};
  const authoriser = content.join_authorised_via_users_server;
  if (
    version.restrictedJoinRule &&
    json.type === 'm.room.member' &&
    content.membership === 'join' &&
    typeof authoriser === 'string'
  ) {
    out.add(domainOf(authoriser));
  }
  return [...out];
}

/** Whether `server` has a valid signature on the event under a key we can resolve from its name. */
export async function hasValidSignature(json: JsonObject, version: RoomVersion, server: string): Promise<boolean> {
  for (const keyId of signatureKeyIds(json, server)) {
    const key = resolveVerifyKey(server, keyId);
    if (key && (await verifyEventSignature(json, version, server, keyId, key))) return true;
  }
  return false;
}

/**
 * Steps 1–3 on a received event of a room of `version`. `roomId`, when given, is the room the event must belong
 * to (a PDU in a `/send` for another room, or an answer about another room, is dropped). `built`: the event as
 * `pduFromJson(json, version)` already made it (its ID is a hash: computing it twice costs).
 */
export async function checkReceivedPdu(json: unknown, version: RoomVersion, roomId?: string, built?: Pdu): Promise<CheckResult> {
  // 1. Format.
  const format = checkPduFormat(json, version);
  if (!format.ok) return { ok: false, reason: `invalid event: ${format.reason}` };
  const obj = json as JsonObject;
  const made = built !== undefined && built.json === obj ? { ok: true as const, pdu: built } : pduFromJson(obj, version);
  if (!made.ok) return { ok: false, reason: `invalid event: ${made.reason}` };
  const pdu = made.pdu;
  if (roomId !== undefined && pdu.roomId !== roomId) return { ok: false, reason: 'event is for another room' };
  // 2. Signatures.
  for (const server of requiredSigners(obj, version)) {
    if (!(await hasValidSignature(obj, version, server))) {
      return { ok: false, reason: `event is not validly signed by ${server}` };
    }
  }
  // 3. Content hash: redact on a mismatch (the signatures cover the redacted form, so they stay valid).
  if (!checkContentHash(obj)) {
    const redacted = pduFromJson(redactEvent(obj, version), version);
    if (!redacted.ok || redacted.pdu.eventId !== pdu.eventId) return { ok: false, reason: 'event ID changed on redaction' };
    return { ok: true, value: { pdu: redacted.pdu, redacted: true } };
  }
  return { ok: true, value: { pdu, redacted: false } };
}

/** The v12 create event ID a room ID names (`!x` → `$x`); undefined before v12. */
export function impliedCreateId(roomId: string, version: RoomVersion): string | undefined {
  return version.roomIdFromCreateEvent && roomId.startsWith('!') ? '$' + roomId.slice(1) : undefined;
}

/**
 * Step 4: the event against its own auth events. `lookup` gives auth events by ID (the event's `auth_events`, and
 * in v12 the create event its room ID names); `isRejected` tells whether one was itself rejected.
 */
export function checkAgainstAuthEvents(
  pdu: Pdu,
  lookup: (id: string) => Pdu | undefined,
  version: RoomVersion,
  isRejected: (id: string) => boolean,
): AuthResult {
  if (pdu.type === 'm.room.create') return authorize(pdu, authStateFromEvents([]), version);
  const listed: Pdu[] = [];
  for (const id of pdu.authEvents) {
    const e = lookup(id);
    if (!e) return { ok: false, reason: `auth event ${id} is not available` };
    listed.push(e);
  }
  const selection = checkAuthEventsSelection(pdu, listed, version, isRejected);
  if (!selection.ok) return selection;
  const stateEvents = [...listed];
  const createId = impliedCreateId(pdu.roomId, version);
  if (createId !== undefined) {
    const create = lookup(createId);
    if (!create || isRejected(createId)) return { ok: false, reason: 'the room create event is not available' };
    stateEvents.unshift(create);
  }
  return authorize(pdu, authStateFromEvents(stateEvents), version);
}
