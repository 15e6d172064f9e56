/**
 * Identifier grammar: server names, user IDs, room IDs, event IDs, room aliases and signing key IDs.
 * Spec: shared/matrix-spec/content/appendices.md §"Identifier Grammar" (Server Name, User Identifiers, Historical
 * User IDs, Room IDs, Room Aliases, Event IDs), content/rooms/fragments/v1-event-ids.md, v4-event-ids.md,
 * rooms/v3.md (standard-Base64 event IDs), rooms/v12.md (domain-less room IDs) and
 * content/server-server-api.md §"Publishing Keys" (key ID versions `[a-zA-Z0-9_]`).
 *
 * Every parser returns `{ ok: true, ... } | { ok: false, reason }` and never throws, whatever it is given.
 */
import type { RoomVersion } from './room-versions.js';

export type ParseResult<T> = ({ ok: true } & T) | { ok: false; reason: string };

/** Limit on user IDs, room IDs, room aliases and event IDs, sigil and domain included (UTF-8 bytes). */
export const MAX_ID_BYTES = 255;

/** Number of bytes `s` takes in UTF-8 (a lone surrogate counts as the 3 bytes of U+FFFD). */
export function utf8ByteLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

function fail(reason: string): { ok: false; reason: string } {
  return { ok: false, reason };
}

// ---------------------------------------------------------------------------------------------------------------
// Server names

export type HostKind = 'dns' | 'ipv4' | 'ipv6';

export interface ServerNameParts {
  /** As written: a DNS name, a dotted quad, or an IPv6 literal including its brackets. */
  host: string;
  hostKind: HostKind;
  port?: number;
}

const DNS_NAME = /^[A-Za-z0-9.-]{1,255}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const PORT = /^[0-9]{1,5}$/;

/** RFC 3513 §2.2 text forms: eight hex groups, one `::` standing for one or more zero groups, and an optional
 *  trailing dotted quad in place of the last two groups. */
export function isIpv6Address(s: string): boolean {
  if (s.length < 2 || s.length > 45 || !/^[0-9A-Fa-f:.]+$/.test(s)) return false;
  let groups = 8;
  let body = s;
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.') >= 0) {
    const quad = IPV4.exec(s.slice(lastColon + 1));
    if (!quad || !quad.slice(1).every((p) => Number(p) <= 255)) return false;
    body = s.slice(0, lastColon + 1);
    // "::1.2.3.4" keeps its "::"; "a:b:c:d:e:f:1.2.3.4" ends in a single ":" that separated the quad.
    if (!body.endsWith('::')) body = body.slice(0, -1);
    groups = 6;
  }
  const halves = body.split('::');
  if (halves.length > 2) return false;
  const parse = (part: string): number | undefined => {
    if (part === '') return 0;
    const gs = part.split(':');
    return gs.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g)) ? gs.length : undefined;
  };
  if (halves.length === 1) return parse(halves[0]) === groups && halves[0] !== '';
  const a = parse(halves[0]);
  const b = parse(halves[1]);
  return a !== undefined && b !== undefined && a + b < groups;
}

/**
 * `server_name = hostname [ ":" port ]` with hostname an IPv4 literal, a bracketed IPv6 literal or a DNS name.
 * The grammar's `dns-name` (1–255 of `[A-Za-z0-9.-]`) is checked as written; the "conventional" label rules and
 * the 230-character recommendation are advice for choosing a name and are not enforced on received IDs. A dotted
 * quad with a part above 255 is still a grammatical dns-name, so it parses as `hostKind: 'dns'`.
 */
export function parseServerName(s: string): ParseResult<ServerNameParts> {
  if (typeof s !== 'string' || s.length === 0) return fail('empty server name');
  let host: string;
  let portText: string | undefined;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) return fail('unterminated IPv6 literal');
    host = s.slice(0, close + 1);
    const rest = s.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return fail('junk after IPv6 literal');
      portText = rest.slice(1);
    }
    if (!isIpv6Address(host.slice(1, -1))) return fail('invalid IPv6 literal');
  } else {
    const colon = s.indexOf(':');
    host = colon < 0 ? s : s.slice(0, colon);
    if (colon >= 0) portText = s.slice(colon + 1);
    if (!DNS_NAME.test(host)) return fail('invalid hostname');
  }
  let port: number | undefined;
  if (portText !== undefined) {
    if (!PORT.test(portText)) return fail('invalid port');
    port = Number(portText);
  }
  let hostKind: HostKind = 'dns';
  if (host.startsWith('[')) hostKind = 'ipv6';
  else {
    const quad = IPV4.exec(host);
    if (quad && quad.slice(1).every((p) => Number(p) <= 255)) hostKind = 'ipv4';
  }
  return port === undefined ? { ok: true, host, hostKind } : { ok: true, host, hostKind, port };
}

export function isValidServerName(s: string): boolean {
  return parseServerName(s).ok;
}

// ---------------------------------------------------------------------------------------------------------------
// Localparts shared by historical user IDs, v1–v11 room IDs, room aliases and v1–v2 event IDs

/** Any non-surrogate code points except `:` and NUL (the spec's lenient localpart): astral characters are
 *  legal as surrogate pairs; lone surrogates are not code points. */
const LENIENT_LOCALPART = /^(?:[^:\u0000\uD800-\uDFFF]|[\uD800-\uDBFF][\uDC00-\uDFFF])*$/;

function isLenientLocalpart(s: string): boolean {
  return LENIENT_LOCALPART.test(s);
}

interface SigilParts {
  localpart: string;
  serverName: string;
}

/** Split `&localpart:server`; the localpart cannot contain `:`, so the first colon separates them. */
function splitSigil(s: unknown, sigil: string, what: string): ParseResult<SigilParts> {
  if (typeof s !== 'string') return fail(`${what} is not a string`);
  if (!s.startsWith(sigil)) return fail(`${what} does not start with '${sigil}'`);
  if (utf8ByteLength(s) > MAX_ID_BYTES) return fail(`${what} is longer than ${MAX_ID_BYTES} bytes`);
  const colon = s.indexOf(':');
  if (colon < 0) return fail(`${what} has no server name`);
  const localpart = s.slice(1, colon);
  const serverName = s.slice(colon + 1);
  if (!isLenientLocalpart(localpart)) return fail(`${what} localpart contains NUL or a lone surrogate`);
  const sn = parseServerName(serverName);
  if (!sn.ok) return fail(`${what} server name: ${sn.reason}`);
  return { ok: true, localpart, serverName };
}

// ---------------------------------------------------------------------------------------------------------------
// User IDs

const STRICT_USER_LOCALPART = /^[a-z0-9._=\-/+]+$/;
const COMPLIANT_USER_LOCALPART = /^[\u0021-\u007e]+$/;

export interface UserIdParts {
  localpart: string;
  serverName: string;
  /** False for historical localparts (empty, or characters outside U+0021–U+007E): still valid in events, but
   *  servers SHOULD NOT forward them to clients outside an event. */
  compliant: boolean;
}

/**
 * Parse a user ID. By default the historical grammar that received IDs must be accepted with (any localpart
 * without `:` or NUL, even empty); `{ strict: true }` applies the current grammar (`[a-z0-9._=\-/+]+`) that new
 * registrations must follow. Both enforce the 255-byte limit and the server-name grammar.
 */
export function parseUserId(s: string, opts?: { strict?: boolean }): ParseResult<UserIdParts> {
  const parts = splitSigil(s, '@', 'user ID');
  if (!parts.ok) return parts;
  const { localpart, serverName } = parts;
  if (opts?.strict === true && !STRICT_USER_LOCALPART.test(localpart)) {
    return fail('user ID localpart must be non-empty and only contain a-z 0-9 . _ = - / +');
  }
  return { ok: true, localpart, serverName, compliant: COMPLIANT_USER_LOCALPART.test(localpart) };
}

/** Valid as a received user ID (historical grammar). */
export function isValidUserId(s: string): boolean {
  return parseUserId(s).ok;
}

/** Valid under the current grammar, as required for IDs a server creates. */
export function isValidStrictUserId(s: string): boolean {
  return parseUserId(s, { strict: true }).ok;
}

/** Whether `localpart` may be used for a new registration (current grammar; length checked with the server). */
export function isValidNewUserLocalpart(localpart: string, serverName: string): boolean {
  return isValidStrictUserId(`@${localpart}:${serverName}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Room IDs

/** `$`/`!` + the 43-character unpadded Base64 of a SHA-256 reference hash. */
const HASH_URLSAFE = /^[A-Za-z0-9_-]{43}$/;
const HASH_STANDARD = /^[A-Za-z0-9+/]{43}$/;

export type RoomIdParts = { format: 'server'; localpart: string; serverName: string } | { format: 'hash'; hash: string };

/**
 * Parse a room ID. With a room version, only that version's form is accepted: `!opaque:server` (v1–v11) or
 * `!` + 43 URL-safe Base64 characters (v12, the create event's reference hash, no server part). Without one,
 * either form.
 */
export function parseRoomId(s: string, version?: RoomVersion): ParseResult<RoomIdParts> {
  if (typeof s !== 'string') return fail('room ID is not a string');
  if (!s.startsWith('!')) return fail("room ID does not start with '!'");
  const body = s.slice(1);
  const hashForm = version === undefined ? !s.includes(':') : version.roomIdFromCreateEvent;
  if (hashForm) {
    if (!HASH_URLSAFE.test(body)) return fail('room ID is not ! followed by 43 URL-safe Base64 characters');
    return { ok: true, format: 'hash', hash: body };
  }
  const parts = splitSigil(s, '!', 'room ID');
  if (!parts.ok) return parts;
  return { ok: true, format: 'server', localpart: parts.localpart, serverName: parts.serverName };
}

export function isValidRoomId(s: string, version?: RoomVersion): boolean {
  return parseRoomId(s, version).ok;
}

// ---------------------------------------------------------------------------------------------------------------
// Event IDs

export type EventIdParts =
  | { format: 'server'; localpart: string; serverName: string }
  | { format: 'base64' | 'urlsafe'; hash: string };

/**
 * Parse an event ID. With a room version: `$opaque:server` (v1–v2), `$` + 43 standard Base64 characters (v3),
 * or `$` + 43 URL-safe Base64 characters (v4+). Without one, any of the three (a 43-character body using only
 * the characters both alphabets share is reported as 'urlsafe').
 */
export function parseEventId(s: string, version?: RoomVersion): ParseResult<EventIdParts> {
  if (typeof s !== 'string') return fail('event ID is not a string');
  if (!s.startsWith('$')) return fail("event ID does not start with '$'");
  const body = s.slice(1);
  const format = version?.eventIdFormat;
  if (format === 'server' || (format === undefined && s.includes(':'))) {
    const parts = splitSigil(s, '$', 'event ID');
    if (!parts.ok) return parts;
    return { ok: true, format: 'server', localpart: parts.localpart, serverName: parts.serverName };
  }
  if (format !== 'base64' && HASH_URLSAFE.test(body)) return { ok: true, format: 'urlsafe', hash: body };
  if (format !== 'urlsafe' && HASH_STANDARD.test(body)) return { ok: true, format: 'base64', hash: body };
  const alphabet = format === 'base64' ? 'standard' : format === 'urlsafe' ? 'URL-safe' : 'standard or URL-safe';
  return fail(`event ID is not $ followed by 43 ${alphabet} Base64 characters`);
}

export function isValidEventId(s: string, version?: RoomVersion): boolean {
  return parseEventId(s, version).ok;
}

// ---------------------------------------------------------------------------------------------------------------
// Room aliases

export interface RoomAliasParts {
  localpart: string;
  serverName: string;
}

/** `#localpart:server`: any localpart without `:` or NUL, 255 bytes in all. */
export function parseRoomAlias(s: string): ParseResult<RoomAliasParts> {
  const parts = splitSigil(s, '#', 'room alias');
  if (!parts.ok) return parts;
  return { ok: true, localpart: parts.localpart, serverName: parts.serverName };
}

export function isValidRoomAlias(s: string): boolean {
  return parseRoomAlias(s).ok;
}

// ---------------------------------------------------------------------------------------------------------------
// Signing key IDs

export interface KeyIdParts {
  algorithm: string;
  /** The key "version": `[a-zA-Z0-9_]+`. */
  version: string;
}

/**
 * `algorithm:version`. Any algorithm name of `[A-Za-z0-9_]` is parsed (a signature check must be able to skip
 * algorithms it does not understand); `isValidEd25519KeyId` is the check for the one algorithm Matrix uses.
 */
export function parseKeyId(s: string): ParseResult<KeyIdParts> {
  if (typeof s !== 'string') return fail('key ID is not a string');
  const m = /^([A-Za-z0-9_]+):([A-Za-z0-9_]+)$/.exec(s);
  if (!m) return fail('key ID is not algorithm:version with version of [a-zA-Z0-9_]');
  return { ok: true, algorithm: m[1], version: m[2] };
}

export function isValidEd25519KeyId(s: string): boolean {
  return typeof s === 'string' && /^ed25519:[A-Za-z0-9_]+$/.test(s);
}
