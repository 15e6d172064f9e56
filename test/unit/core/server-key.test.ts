import { describe, expect, it } from 'vitest';
import { decodeBase64 } from '../../../src/core/base64.js';
import { generateSeed, publicKeyFromSeed } from '../../../src/core/crypto/ed25519.js';
import { isValidServerName, isValidUserId } from '../../../src/core/identifiers.js';
import {
  HEARTH_KEY_ID,
  isHearthServerName,
  newServerIdentity,
  publicKeyFromServerName,
  resolveVerifyKey,
  serverIdentityFromSeed,
  serverKeysResponse,
  serverNameFromPublicKey,
} from '../../../src/core/server-key.js';
import { verifyJsonSignature, verifyJsonSignatureSync } from '../../../src/core/signing.js';

/** RFC 4648 base32, lowercase, unpadded: an independent reference built on bit strings. */
function referenceBase32(bytes: Uint8Array): string {
  const bits = [...bytes].map((b) => b.toString(2).padStart(8, '0')).join('');
  const padded = bits.padEnd(Math.ceil(bits.length / 5) * 5, '0');
  return padded.match(/.{5}/g)!.map((c) => 'abcdefghijklmnopqrstuvwxyz234567'[parseInt(c, 2)]).join('');
}

describe('Hearth server names', () => {
  it('are the lowercase unpadded base32 of the public key: 52 chars, a valid server name', () => {
    for (let i = 0; i < 50; i++) {
      const pub = publicKeyFromSeed(generateSeed());
      const name = serverNameFromPublicKey(pub);
      expect(name).toBe(referenceBase32(pub));
      expect(name).toMatch(/^[a-z2-7]{52}$/);
      expect(isValidServerName(name)).toBe(true);
      expect(isValidUserId(`@alice:${name}`)).toBe(true);
      expect(publicKeyFromServerName(name)).toEqual(pub);
    }
  });

  it('matches RFC 4648 §10 vectors on the encoder (lowercased, unpadded)', () => {
    // serverNameFromPublicKey only takes 32 bytes, so check the alphabet/bit order on a 32-byte key whose
    // first 5 bytes are "fooba" (RFC 4648: BASE32("fooba") = "MZXW6YTB").
    const key = new Uint8Array(32);
    key.set(new TextEncoder().encode('fooba'));
    expect(serverNameFromPublicKey(key).slice(0, 8)).toBe('mzxw6ytb');
  });

  it('rejects anything that is not exactly such a name', () => {
    const name = newServerIdentity().serverName;
    const last = name[51];
    // The last character carries one bit: only 'a' and 'q' have the four low bits zero.
    const nonCanonical = name.slice(0, 51) + (last === 'a' ? 'b' : last === 'q' ? 'r' : 'b');
    for (const bad of [
      name.toUpperCase(),
      name.slice(0, 51),
      name + 'a',
      name + ':8448',
      name + '====',
      nonCanonical,
      name.slice(0, 51) + '1',
      'example.org',
      '',
      name.slice(0, 10) + '.' + name.slice(11),
    ]) {
      expect(publicKeyFromServerName(bad), bad).toBeUndefined();
      expect(isHearthServerName(bad)).toBe(false);
    }
    expect(publicKeyFromServerName(42 as unknown as string)).toBeUndefined();
  });

  it('identity from a seed is stable', () => {
    const seed = new Uint8Array(32).fill(8);
    const a = serverIdentityFromSeed(seed);
    const b = serverIdentityFromSeed(new Uint8Array(32).fill(8));
    expect(a.serverName).toBe(b.serverName);
    expect(a.key.keyId).toBe('ed25519:hearth');
    expect(a.key.publicKey).toEqual(publicKeyFromSeed(seed));
    expect(serverNameFromPublicKey(a.key.publicKey)).toBe(a.serverName);
  });

  it('resolveVerifyKey needs no lookup for Hearth names and refuses everything else', () => {
    const id = newServerIdentity();
    expect(resolveVerifyKey(id.serverName, HEARTH_KEY_ID)).toEqual(id.key.publicKey);
    expect(resolveVerifyKey(id.serverName, 'ed25519:other')).toBeUndefined();
    expect(resolveVerifyKey('matrix.org', HEARTH_KEY_ID)).toBeUndefined();
  });
});

describe('serverKeysResponse', () => {
  it('is a /_matrix/key/v2/server object signed by itself, verifiable from the name alone', async () => {
    const id = newServerIdentity();
    const res = await serverKeysResponse(id, 1_800_000_000_000);
    expect(res.server_name).toBe(id.serverName);
    expect(res.old_verify_keys).toEqual({});
    expect(res.valid_until_ts).toBe(1_800_000_000_000);
    const verifyKeys = res.verify_keys as Record<string, { key: string }>;
    expect(Object.keys(verifyKeys)).toEqual([HEARTH_KEY_ID]);
    expect(decodeBase64(verifyKeys[HEARTH_KEY_ID].key)).toEqual(id.key.publicKey);
    expect(Object.keys(res.signatures as object)).toEqual([id.serverName]);

    // A receiver derives the key from the name and checks the self-signature.
    const pub = resolveVerifyKey(res.server_name as string, HEARTH_KEY_ID)!;
    expect(await verifyJsonSignature(res, id.serverName, HEARTH_KEY_ID, pub)).toBe(true);
    expect(verifyJsonSignatureSync(res, id.serverName, HEARTH_KEY_ID, pub)).toBe(true);
    // Tampering is detected.
    expect(await verifyJsonSignature({ ...res, valid_until_ts: 1 }, id.serverName, HEARTH_KEY_ID, pub)).toBe(false);
    // Someone else's key under this name does not verify.
    const other = newServerIdentity();
    const forged = await serverKeysResponse({ serverName: id.serverName, key: other.key }, 1);
    expect(await verifyJsonSignature(forged, id.serverName, HEARTH_KEY_ID, pub)).toBe(false);
  });
});
