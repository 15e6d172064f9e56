/**
 * SHA-256 for content hashes, reference hashes and event IDs (shared/matrix-spec/content/server-server-api.md
 * §"Calculating the content hash for an event", §"Calculating the reference hash for an event").
 *
 * Synchronous, so hashing can run inside code that cannot await: @noble/hashes by default (~0.03 ms for a typical
 * event), or a platform backend a host registers (`setSha256Backend`; the Node host registers node:crypto's,
 * several times faster). This module stays platform-free: it only calls what it was given.
 */
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';

/** A synchronous SHA-256 of the platform: bytes in, 32 bytes out. */
export type Sha256Backend = (bytes: Uint8Array) => Uint8Array;

let backend: Sha256Backend | null = null;

/** SHA-256 of `bytes`: the registered backend, else @noble/hashes. */
export function sha256(bytes: Uint8Array): Uint8Array {
  return backend !== null ? backend(bytes) : nobleSha256(bytes);
}

/**
 * Registers the host's SHA-256 (null removes it). Checked once against @noble/hashes on known inputs; a backend that
 * differs is refused with an Error.
 */
export function setSha256Backend(b: Sha256Backend | null): void {
  if (b !== null) {
    for (const input of [new Uint8Array(0), new TextEncoder().encode('{"a":"\u00e9"}'), new Uint8Array(200).fill(9)]) {
      let got: Uint8Array | undefined;
      try {
        got = b(input);
      } catch {
        got = undefined;
      }
      const want = nobleSha256(input);
      if (got === undefined || got.length !== 32 || got.some((x, i) => x !== want[i])) {
        throw new Error('SHA-256 backend does not match the reference implementation');
      }
    }
  }
  backend = b;
}

/** The registered backend, if any (tests save and restore it). */
export function getSha256Backend(): Sha256Backend | null {
  return backend;
}
