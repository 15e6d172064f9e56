/**
 * Password hashing and random secrets (access/refresh tokens, device IDs, UIA sessions).
 * Spec: shared/matrix-spec/content/client-server-api/_index.md#password-based (the server stores only a hash),
 * #using-access-tokens (tokens are opaque strings).
 *
 * Passwords: scrypt from @noble/hashes, async variant (it yields to the event loop every few ms so /sync and
 * other requests keep flowing while a login hashes). Stored as `scrypt$<logN>$<r>$<p>$<salt>$<hash>` (unpadded
 * URL-safe Base64), so parameters can be raised later without breaking old hashes (`needsRehash`).
 *
 * Why N = 2^13, r = 8, p = 1 (8 MiB, ~50–80 ms in Node here and similar in a browser's service worker): it is pure
 * JavaScript in both hosts, where N = 2^15 already costs ~0.5 s, which would make every login and UIA step
 * sluggish on phones. OWASP's guidance (N = 2^17) assumes native code; this is the strongest cost that keeps a
 * login under ~100 ms. Argon2id in the same library measured 3–4× slower for the same memory.
 *
 * A host may register a native scrypt with the same parameters and output (`setScryptBackend`; the Node host
 * registers node:crypto's, which runs in the thread pool and frees its 8 MiB table at once, where the JS one's lives
 * until a full GC and showed in the Node peer's peak RSS).
 */
import { scryptAsync } from '@noble/hashes/scrypt.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { decodeBase64, encodeBase64Url } from '../core/base64.js';

const SCHEME = 'scrypt';
const LOG_N = 13;
const R = 8;
const P = 1;
const KEY_LEN = 32;
const SALT_LEN = 16;
/** Longest password accepted (as Synapse): hashing megabytes would be a cheap denial of service. */
export const MAX_PASSWORD_LENGTH = 512;

const encoder = new TextEncoder();

interface ParsedHash {
  logN: number;
  r: number;
  p: number;
  salt: Uint8Array;
  hash: Uint8Array;
}

function parseHash(stored: string): ParsedHash | undefined {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== SCHEME) return undefined;
  const [logN, r, p] = parts.slice(1, 4).map(Number);
  const salt = decodeBase64(parts[4]);
  const hash = decodeBase64(parts[5]);
  if (!salt || !hash || ![logN, r, p].every((n) => Number.isInteger(n) && n > 0) || logN > 22) return undefined;
  return { logN, r, p, salt, hash };
}

/** scrypt as RFC 7914 defines it: the same bytes as @noble/hashes' for the same input. */
export type ScryptBackend = (password: Uint8Array, salt: Uint8Array, params: { N: number; r: number; p: number; dkLen: number }) => Promise<Uint8Array>;

let scryptBackend: ScryptBackend | undefined;

/** Registers (or, with undefined, removes) a platform scrypt for password hashing. */
export function setScryptBackend(backend: ScryptBackend | undefined): void {
  scryptBackend = backend;
}

/** The last KDF run queued (settled or not): the next one starts only when it has settled. */
let kdfTail: Promise<unknown> = Promise.resolve();

/**
 * Runs KDFs one at a time. Each scrypt run holds a 128·N·r-byte table (8 MiB today) for its whole duration, so k
 * logins or registrations at once would hold k of them (the Node host's thread pool runs four at once): one at a time
 * bounds password hashing to one table, whatever arrives, and leaves the other pool threads to storage. A burst
 * waits its turn instead (~20–80 ms a run), which is what a host with fewer cores than requests does anyway.
 */
function oneAtATime<T>(run: () => Promise<T>): Promise<T> {
  const result = kdfTail.then(run);
  kdfTail = result.catch(() => {}); // a failed run must not stop the queue
  return result;
}

async function derive(password: string, salt: Uint8Array, logN: number, r: number, p: number, dkLen: number): Promise<Uint8Array> {
  // NFC-normalise so the same password typed on different keyboards/platforms matches.
  const bytes = encoder.encode(password.normalize('NFC'));
  const params = { N: 2 ** logN, r, p, dkLen };
  const backend = scryptBackend;
  if (backend) return oneAtATime(() => backend(bytes, salt, params));
  return oneAtATime(() => scryptAsync(bytes, salt, { ...params, asyncTick: 10 }));
}

/** Hashes a password for storage. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_LEN);
  const hash = await derive(password, salt, LOG_N, R, P, KEY_LEN);
  return [SCHEME, LOG_N, R, P, encodeBase64Url(salt), encodeBase64Url(hash)].join('$');
}

/** A hash of nothing, verified against when the user is unknown so failures take the same time either way. */
let dummyHash: Promise<string> | undefined;

/**
 * Whether `password` matches `stored`. With `stored` undefined (no such user, or no password) it still spends a
 * hash's worth of time and returns false, so response timing does not reveal which user IDs exist.
 */
export async function verifyPassword(password: string, stored: string | undefined): Promise<boolean> {
  const parsed = parseHash(stored ?? (await (dummyHash ??= hashPassword('not a password'))));
  if (!parsed) return false;
  const got = await derive(password, parsed.salt, parsed.logN, parsed.r, parsed.p, parsed.hash.length);
  return stored !== undefined && constantTimeEqual(got, parsed.hash);
}

/** Whether a stored hash uses weaker parameters than today's (rehash it at the next successful login). */
export function needsRehash(stored: string): boolean {
  const p = parseHash(stored);
  return !p || p.logN < LOG_N || p.r < R || p.p < P;
}

/** Compares two byte strings in time independent of where they differ. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export function randomBytes(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** A random secret: `prefix` + 256 random bits as URL-safe Base64 (the prefix lets secret scanners spot leaks). */
export function randomToken(prefix: string): string {
  return prefix + encodeBase64Url(randomBytes(32));
}

/**
 * How tokens are stored: the SHA-256 of the token, not the token. A leaked database or backup then holds no usable
 * credentials, and the lookup stays one `get` (the hash is as unique as the token; no salt is needed because the
 * token is 256 random bits, not a guessable password).
 */
export function tokenKey(token: string): string {
  return encodeBase64Url(sha256(encoder.encode(token)));
}

const DEVICE_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** A device ID like Synapse's: ten upper-case letters (~47 bits; unique per user, checked on creation). */
export function randomDeviceId(): string {
  const bytes = randomBytes(10);
  let out = '';
  // 256 % 26 leaves a bias of < 1%, harmless for an identifier that is not a secret.
  for (const b of bytes) out += DEVICE_ALPHABET[b % 26];
  return out;
}
