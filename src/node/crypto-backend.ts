/**
 * node:crypto as the core's Ed25519 and SHA-256 backends (src/core/crypto/ed25519.ts `setEd25519Backend`,
 * sha256.ts `setSha256Backend`). OpenSSL signs and verifies synchronously in ~0.05 ms, where WebCrypto's promise
 * round trip through the thread pool costs two to three times that plus a hop back to the event loop
 * (shared/PLATFORM-NOTES.md); its SHA-256 is several times faster than the pure-JS one. Same keys, same bytes.
 * Spec: shared/matrix-spec/content/appendices.md §"Signing Details".
 *
 * Keys are imported once as KeyObjects: seeds by object identity (a WeakMap, so no copy of a secret becomes a map
 * key), public keys by value in a bounded LRU map.
 */
import * as nodeCrypto from 'node:crypto';
import { createHash, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { Ed25519Backend } from '../core/crypto/ed25519.js';
import { setEd25519Backend } from '../core/crypto/ed25519.js';
import type { Sha256Backend } from '../core/crypto/sha256.js';
import { setSha256Backend } from '../core/crypto/sha256.js';
import type { ScryptBackend } from '../services/passwords.js';
import { setScryptBackend } from '../services/passwords.js';

/** DER prefixes (RFC 8410) of a PKCS#8 Ed25519 private key and an SPKI public key: the 32 key bytes follow. */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const MAX_PUBLIC_KEYS = 4096;

const privateKeys = new WeakMap<Uint8Array, KeyObject>();
const publicKeys = new Map<string, KeyObject>();

function privateKey(seed: Uint8Array): KeyObject {
  let key = privateKeys.get(seed);
  if (key === undefined) {
    key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
    privateKeys.set(seed, key);
  }
  return key;
}

function publicKey(raw: Uint8Array): KeyObject {
  const id = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('latin1');
  let key = publicKeys.get(id);
  if (key !== undefined) {
    // Refresh its place so the most recently used keys survive eviction.
    publicKeys.delete(id);
  } else {
    key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
    if (publicKeys.size >= MAX_PUBLIC_KEYS) {
      const oldest = publicKeys.keys().next().value;
      if (oldest !== undefined) publicKeys.delete(oldest);
    }
  }
  publicKeys.set(id, key);
  return key;
}

/** The backend itself (exported for tests; `installNodeCrypto` registers it). */
export const nodeEd25519: Ed25519Backend = {
  sign(seed, msg) {
    const sig = sign(null, msg, privateKey(seed));
    return new Uint8Array(sig.buffer, sig.byteOffset, sig.byteLength);
  },
  verify(raw, msg, sig) {
    try {
      return verify(null, msg, publicKey(raw), sig);
    } catch {
      return false;
    }
  },
  publicKey(seed) {
    // The SPKI encoding ends with the 32 raw key bytes.
    const der = createPublicKey(privateKey(seed)).export({ format: 'der', type: 'spki' });
    return new Uint8Array(der.subarray(SPKI_PREFIX.length));
  },
};

// crypto.hash (Node ≥ 20.12) hashes in one call, without a Hash object per digest; createHash where it is missing.
const oneShotHash = (nodeCrypto as { hash?: (alg: string, data: Uint8Array, enc: 'buffer') => Buffer }).hash;

export const nodeSha256: Sha256Backend = (bytes) => {
  const digest = oneShotHash !== undefined ? oneShotHash('sha256', bytes, 'buffer') : createHash('sha256').update(bytes).digest();
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength);
};

/** Registers node:crypto with the core (the core checks each against its reference implementation first). */
/** node:crypto's scrypt for password hashing (src/services/passwords.ts): same bytes, off the main thread. */
export const nodeScrypt: ScryptBackend = (password, salt, { N, r, p, dkLen }) =>
  new Promise((resolve, reject) => {
    // maxmem: scrypt needs 128·N·r·p bytes; Node refuses anything over its 32 MiB default unless told.
    nodeCrypto.scrypt(password, salt, dkLen, { N, r, p, maxmem: 256 * N * r * p + 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(new Uint8Array(key.buffer, key.byteOffset, key.byteLength)),
    );
  });

export function installNodeCrypto(): void {
  setEd25519Backend(nodeEd25519);
  setSha256Backend(nodeSha256);
  setScryptBackend(nodeScrypt);
}
