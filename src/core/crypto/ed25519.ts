/**
 * Ed25519 (RFC 8032) signing and verification for Matrix signatures.
 * Spec: shared/matrix-spec/content/appendices.md §"Signing Details" (`ed25519` as implemented by NaCl) and
 * §"Cryptographic Test Vectors" (the seed is the 32-byte RFC 8032 private key).
 *
 * Three implementations, same keys and same bytes (Ed25519 signatures are deterministic):
 * - A platform backend a host registers (`setEd25519Backend`): synchronous, so it also serves `signSync`/
 *   `verifySync`. The Node host registers node:crypto (src/node/crypto-backend.ts): ~0.05 ms a signature, with no
 *   thread-pool hop. This module stays platform-free: it only calls what it was given.
 * - WebCrypto `crypto.subtle` Ed25519 (Node 20, Chromium ≥ 137, Firefox, Safari): ~10x faster verification
 *   (see shared/PLATFORM-NOTES.md). `sign`/`verify` use it when the platform has it; each key is imported once
 *   and its CryptoKey cached (public keys by value in a bounded map, seeds by object identity in a WeakMap so no
 *   copy of a secret is kept as a map key).
 * - @noble/ed25519 with @noble/hashes' SHA-512: the portable fallback, and the synchronous `signSync`/
 *   `verifySync` that code which cannot await (auth rules) uses when no backend is registered.
 *
 * Verification rules, kept the same on every path: noble's strict RFC 8032 branch (`zip215: false`: canonical
 * encodings of A and R, S < L), and public keys that are small-order are refused (as libsodium does; the
 * WebCrypto and backend paths screen keys with noble first, remembering the answer per key, since OpenSSL accepts
 * them; the backend path also checks S < L itself). The OpenSSL paths (WebCrypto in Node, node:crypto) compare the
 * recomputed R with the signature's bytes, so a non-canonical R fails there too.
 * One edge case can still differ: noble checks the cofactored equation, OpenSSL the cofactorless one, so a
 * signature deliberately crafted with a small-order component in R verifies on the noble path only. Honest
 * signers never produce one.
 */
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';

ed.hashes.sha512 = sha512;

export const SEED_LENGTH = 32;
export const PUBLIC_KEY_LENGTH = 32;
export const SIGNATURE_LENGTH = 64;

const STRICT = { zip215: false } as const;
/** Public keys remembered (imported, or screened) at most; the least recently used go first. */
const MAX_CACHED_PUBLIC_KEYS = 4096;

/** A fresh random 32-byte seed (the private key). */
export function generateSeed(): Uint8Array {
  return globalThis.crypto.getRandomValues(new Uint8Array(SEED_LENGTH));
}

/** The 32-byte public key of a seed. Throws RangeError/TypeError if `seed` is not 32 bytes. */
export function publicKeyFromSeed(seed: Uint8Array): Uint8Array {
  // The backend when it can: noble's base-point multiplication builds a table (~1 MB of points) it keeps for good.
  if (backend?.publicKey !== undefined && seed instanceof Uint8Array && seed.length === SEED_LENGTH) return backend.publicKey(seed);
  return ed.getPublicKey(seed);
}

// ---------------------------------------------------------------------------------------------------------------
// Platform backend

/**
 * Synchronous Ed25519 from the host platform. `sign` gets a 32-byte seed; `verify` gets a 32-byte public key that
 * already passed the strict key screening below and a 64-byte signature, and must return false (never throw) for a
 * bad signature. Implementations cache their imported keys.
 */
export interface Ed25519Backend {
  sign(seed: Uint8Array, msg: Uint8Array): Uint8Array;
  verify(publicKey: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean;
  /** The public key of a 32-byte seed (optional: noble derives it otherwise). */
  publicKey?(seed: Uint8Array): Uint8Array;
}

let backend: Ed25519Backend | null = null;

/**
 * RFC 8032 §7.1 TEST 2 (a one-byte message): the known answer a backend must give. A fixed vector rather than
 * noble's own signature, so that registering a backend does not build noble's base-point table (~1 MB kept for good).
 */
const KNOWN = {
  seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
  publicKey: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
  msg: '72',
  sig: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
} as const;

/**
 * Registers the host's backend (null removes it). It is used only if it gives RFC 8032's known answer (signature,
 * public key), verifies that signature and refuses it with one bit changed (checked here, once); otherwise it is
 * refused with an Error.
 */
export function setEd25519Backend(b: Ed25519Backend | null): void {
  if (b !== null) {
    const { hexToBytes, bytesToHex } = ed.etc;
    const [seed, pub, msg, sig] = [KNOWN.seed, KNOWN.publicKey, KNOWN.msg, KNOWN.sig].map(hexToBytes);
    const tampered = sig.slice();
    tampered[5] ^= 1;
    let ok = false;
    try {
      ok =
        bytesToHex(b.sign(seed, msg)) === KNOWN.sig &&
        (b.publicKey === undefined || bytesToHex(b.publicKey(seed)) === KNOWN.publicKey) &&
        b.verify(pub, msg, sig) &&
        !b.verify(pub, msg, tampered);
    } catch {
      ok = false;
    }
    if (!ok) throw new Error('Ed25519 backend does not match the reference implementation');
  }
  backend = b;
}

/** The registered backend, if any (tests save and restore it). */
export function getEd25519Backend(): Ed25519Backend | null {
  return backend;
}

/** Sign synchronously: the platform backend when registered, @noble/ed25519 otherwise. */
export function signSync(seed: Uint8Array, msg: Uint8Array): Uint8Array {
  if (backend !== null && seed instanceof Uint8Array && seed.length === SEED_LENGTH) return backend.sign(seed, msg);
  return ed.sign(msg, seed);
}

/**
 * Verify synchronously: the platform backend when registered, @noble/ed25519 otherwise. Never throws: wrong
 * lengths or bad encodings give `false`.
 */
export function verifySync(publicKey: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  if (!(publicKey instanceof Uint8Array) || !(sig instanceof Uint8Array) || !(msg instanceof Uint8Array)) return false;
  if (publicKey.length !== PUBLIC_KEY_LENGTH || sig.length !== SIGNATURE_LENGTH) return false;
  if (backend !== null) {
    try {
      return isScreenedPublicKey(publicKey) && sCanonical(sig) && backend.verify(publicKey, msg, sig);
    } catch {
      // The backend refused this input: noble decides instead.
    }
  }
  return nobleVerify(publicKey, msg, sig);
}

function nobleVerify(publicKey: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    return ed.verify(sig, msg, publicKey, STRICT);
  } catch {
    return false;
  }
}

/** Ed25519's group order L, little-endian: a signature's S must be below it (RFC 8032 §5.1.7). */
const L_BYTES = Uint8Array.from([
  0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
]);

/** S < L, checked here too so the rule does not depend on the backend's library. */
function sCanonical(sig: Uint8Array): boolean {
  for (let i = 31; i >= 0; i--) {
    const s = sig[32 + i];
    if (s !== L_BYTES[i]) return s < L_BYTES[i];
  }
  return false; // S == L
}

/** hex(public key) → whether it passed screening; bounded like the WebCrypto key cache. */
const screened = new Map<string, boolean>();

/** `isAcceptablePublicKey`, remembered: decoding a point costs more than a whole platform verification. */
function isScreenedPublicKey(publicKey: Uint8Array): boolean {
  const id = ed.etc.bytesToHex(publicKey);
  let ok = screened.get(id);
  if (ok === undefined) {
    ok = isAcceptablePublicKey(publicKey);
    screened.set(id, ok);
    if (screened.size > MAX_CACHED_PUBLIC_KEYS) {
      const oldest = screened.keys().next().value;
      if (oldest !== undefined) screened.delete(oldest);
    }
  }
  return ok;
}

/** Whether noble's strict rules accept `publicKey` as a key at all: a canonical point that is not small-order. */
function isAcceptablePublicKey(publicKey: Uint8Array): boolean {
  try {
    return !ed.Point.fromBytes(publicKey, false).isSmallOrder();
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// WebCrypto path

const ALGORITHM = { name: 'Ed25519' } as const;
/** DER prefix of a PKCS#8 Ed25519 private key (RFC 8410): the 32-byte seed follows. */
const PKCS8_PREFIX = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20);

let webCryptoEnabled = true;
let probe: Promise<boolean> | undefined;
/** hex(public key) → imported key, or null when the key must not be used (small-order, bad encoding). */
const publicKeys = new Map<string, Promise<CryptoKey | null>>();
const privateKeys = new WeakMap<Uint8Array, Promise<CryptoKey>>();

function subtle(): SubtleCrypto | undefined {
  return (globalThis.crypto as Crypto | undefined)?.subtle;
}

/** True when the platform's WebCrypto can do Ed25519 (checked once by importing and using a known key). */
export function webCryptoEd25519Available(): Promise<boolean> {
  probe ??= (async () => {
    const s = subtle();
    if (!s) return false;
    try {
      const seed = new Uint8Array(SEED_LENGTH).fill(1);
      const msg = Uint8Array.of(1, 2, 3);
      const key = await s.importKey('pkcs8', pkcs8(seed), ALGORITHM, false, ['sign']);
      const sig = new Uint8Array(await s.sign(ALGORITHM, key, msg));
      // Same bytes as the noble implementation, or we do not use it.
      return ed.etc.bytesToHex(sig) === ed.etc.bytesToHex(signSync(seed, msg));
    } catch {
      return false;
    }
  })();
  return probe;
}

/**
 * Turn the WebCrypto path on or off (it is on by default and used only where available). For tests and
 * benchmarks that compare the two implementations.
 */
export function setWebCryptoEd25519Enabled(enabled: boolean): void {
  webCryptoEnabled = enabled;
}

async function useWebCrypto(): Promise<boolean> {
  return webCryptoEnabled && (await webCryptoEd25519Available());
}

/** WebCrypto's types want bytes backed by an ArrayBuffer (not a SharedArrayBuffer): copy only when needed. */
function bufferSource(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
}

function pkcs8(seed: Uint8Array): Uint8Array<ArrayBuffer> {
  const der = new Uint8Array(PKCS8_PREFIX.length + SEED_LENGTH);
  der.set(PKCS8_PREFIX);
  der.set(seed, PKCS8_PREFIX.length);
  return der;
}

function privateKey(s: SubtleCrypto, seed: Uint8Array): Promise<CryptoKey> {
  let key = privateKeys.get(seed);
  if (!key) {
    key = s.importKey('pkcs8', pkcs8(seed), ALGORITHM, false, ['sign']);
    privateKeys.set(seed, key);
    key.catch(() => privateKeys.delete(seed));
  }
  return key;
}

function publicKeyHandle(s: SubtleCrypto, publicKey: Uint8Array): Promise<CryptoKey | null> {
  const id = ed.etc.bytesToHex(publicKey);
  let key = publicKeys.get(id);
  if (key) {
    // Refresh its place so the most recently used keys survive eviction.
    publicKeys.delete(id);
    publicKeys.set(id, key);
    return key;
  }
  key = isAcceptablePublicKey(publicKey)
    ? s.importKey('raw', bufferSource(publicKey), ALGORITHM, false, ['verify'])
    : Promise.resolve(null);
  publicKeys.set(id, key);
  key.catch(() => publicKeys.delete(id));
  if (publicKeys.size > MAX_CACHED_PUBLIC_KEYS) {
    const oldest = publicKeys.keys().next().value;
    if (oldest !== undefined) publicKeys.delete(oldest);
  }
  return key;
}

/** Sign `msg` with `seed`: the platform backend, else WebCrypto where available, else @noble/ed25519. Throws if `seed` is not 32 bytes. */
export async function sign(seed: Uint8Array, msg: Uint8Array): Promise<Uint8Array> {
  if (!(seed instanceof Uint8Array) || seed.length !== SEED_LENGTH) throw new RangeError('Ed25519 seed must be 32 bytes');
  if (backend !== null) return backend.sign(seed, msg);
  const s = subtle();
  if (s && (await useWebCrypto())) {
    try {
      const key = await privateKey(s, seed);
      return new Uint8Array(await s.sign(ALGORITHM, key, bufferSource(msg)));
    } catch {
      // Fall through to noble: the result is the same bytes.
    }
  }
  return signSync(seed, msg);
}

/** Verify `sig` over `msg`: the platform backend, else WebCrypto where available, else @noble/ed25519. Never throws. */
export async function verify(publicKey: Uint8Array, msg: Uint8Array, sig: Uint8Array): Promise<boolean> {
  if (!(publicKey instanceof Uint8Array) || !(sig instanceof Uint8Array) || !(msg instanceof Uint8Array)) return false;
  if (publicKey.length !== PUBLIC_KEY_LENGTH || sig.length !== SIGNATURE_LENGTH) return false;
  if (backend !== null) return verifySync(publicKey, msg, sig);
  const s = subtle();
  if (s && (await useWebCrypto())) {
    try {
      const key = await publicKeyHandle(s, publicKey);
      if (key === null) return false;
      return await s.verify(ALGORITHM, key, bufferSource(sig), bufferSource(msg));
    } catch {
      // The platform refused this key or call: noble decides instead.
    }
  }
  return verifySync(publicKey, msg, sig);
}
