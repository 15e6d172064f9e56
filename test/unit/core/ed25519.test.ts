import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { decodeBase64, encodeBase64 } from '../../../src/core/base64.js';
import {
  generateSeed,
  getEd25519Backend,
  publicKeyFromSeed,
  setEd25519Backend,
  setWebCryptoEd25519Enabled,
  sign,
  signSync,
  verify,
  verifySync,
  webCryptoEd25519Available,
} from '../../../src/core/crypto/ed25519.js';

/** appendices.md §"Signing Key": SIGNING_KEY_SEED. */
const SEED = decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1')!;
const utf8 = (s: string) => new TextEncoder().encode(s);

// These tests are about WebCrypto and noble: the Node platform backend the setup registers is off while they run
// (ed25519-backend.test.ts covers it).
const platformBackend = getEd25519Backend();
beforeEach(() => setEd25519Backend(null));

afterEach(() => {
  setEd25519Backend(platformBackend);
  setWebCryptoEd25519Enabled(true);
  vi.restoreAllMocks();
});

describe('ed25519', () => {
  it('decodes the spec seed to 32 bytes and derives its key', () => {
    expect(SEED.length).toBe(32);
    expect(publicKeyFromSeed(SEED).length).toBe(32);
  });

  it('RFC 8032 §7.1 test 2 (one-byte message)', () => {
    const seed = Buffer.from('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', 'hex');
    const pub = publicKeyFromSeed(seed);
    expect(Buffer.from(pub).toString('hex')).toBe('3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c');
    const sig = signSync(seed, Uint8Array.of(0x72));
    expect(Buffer.from(sig).toString('hex')).toBe(
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
    );
  });

  it('WebCrypto Ed25519 is available on this platform (Node 20)', async () => {
    expect(await webCryptoEd25519Available()).toBe(true);
  });

  it('WebCrypto and noble produce the same signatures and agree on verification', async () => {
    for (let i = 0; i < 20; i++) {
      const seed = i === 0 ? SEED : generateSeed();
      const pub = publicKeyFromSeed(seed);
      const msg = utf8(`message ${i} ${'x'.repeat(i * 13)}`);
      const viaWebCrypto = await sign(seed, msg);
      const viaNoble = signSync(seed, msg);
      expect(encodeBase64(viaWebCrypto)).toBe(encodeBase64(viaNoble));
      setWebCryptoEd25519Enabled(false);
      expect(encodeBase64(await sign(seed, msg))).toBe(encodeBase64(viaNoble)); // async fallback path
      expect(await verify(pub, msg, viaNoble)).toBe(true);
      setWebCryptoEd25519Enabled(true);
      expect(await verify(pub, msg, viaNoble)).toBe(true);
      expect(verifySync(pub, msg, viaWebCrypto)).toBe(true);

      const tampered = Uint8Array.from(viaNoble);
      tampered[i % 64] ^= 1;
      const otherMsg = utf8(`message ${i}!`);
      for (const enabled of [true, false]) {
        setWebCryptoEd25519Enabled(enabled);
        expect(await verify(pub, msg, tampered)).toBe(false);
        expect(await verify(pub, otherMsg, viaNoble)).toBe(false);
      }
      expect(verifySync(pub, msg, tampered)).toBe(false);
    }
  });

  it('uses WebCrypto when enabled, importing each key once; noble when disabled', async () => {
    await webCryptoEd25519Available(); // the one-time probe imports a key of its own
    const subtle = globalThis.crypto.subtle;
    const importKey = vi.spyOn(subtle, 'importKey');
    const subtleVerify = vi.spyOn(subtle, 'verify');
    const subtleSign = vi.spyOn(subtle, 'sign');
    const seed = generateSeed();
    const pub = publicKeyFromSeed(seed);
    const msg = utf8('cached');
    const sig = await sign(seed, msg);
    await sign(seed, msg);
    for (let i = 0; i < 5; i++) expect(await verify(pub, msg, sig)).toBe(true);
    expect(subtleSign).toHaveBeenCalledTimes(2);
    expect(subtleVerify).toHaveBeenCalledTimes(5);
    // One PKCS#8 import for the seed, one raw import for the public key.
    expect(importKey.mock.calls.map((c) => c[0]).sort()).toEqual(['pkcs8', 'raw']);

    setWebCryptoEd25519Enabled(false);
    expect(await verify(pub, msg, sig)).toBe(true);
    await sign(seed, msg);
    expect(subtleVerify).toHaveBeenCalledTimes(5);
    expect(subtleSign).toHaveBeenCalledTimes(2);
  });

  it('rejects malformed inputs without throwing, on both paths', async () => {
    const pub = publicKeyFromSeed(SEED);
    const msg = utf8('hi');
    const sig = signSync(SEED, msg);
    const smallOrderKey = new Uint8Array(32); // y = 0: a point of order 4
    const identityKey = Uint8Array.of(1, ...new Uint8Array(31)); // the neutral element
    const nonCanonicalKey = new Uint8Array(32).fill(0xff); // y ≥ p
    const highS = Uint8Array.from(sig);
    highS[63] |= 0xf0; // S ≥ L
    for (const enabled of [true, false]) {
      setWebCryptoEd25519Enabled(enabled);
      expect(await verify(pub.subarray(1), msg, sig)).toBe(false);
      expect(await verify(pub, msg, sig.subarray(1))).toBe(false);
      expect(await verify(smallOrderKey, msg, sig)).toBe(false);
      expect(await verify(identityKey, msg, sig)).toBe(false);
      expect(await verify(nonCanonicalKey, msg, sig)).toBe(false);
      expect(await verify(pub, msg, highS)).toBe(false);
      expect(await verify('x' as unknown as Uint8Array, msg, sig)).toBe(false);
    }
    expect(verifySync(smallOrderKey, msg, sig)).toBe(false);
    expect(verifySync(identityKey, msg, sig)).toBe(false);
    expect(verifySync(pub, msg, highS)).toBe(false);
    await expect(sign(new Uint8Array(31), msg)).rejects.toThrow(RangeError);
  });

  it('generates distinct random seeds', () => {
    const a = generateSeed();
    const b = generateSeed();
    expect(a.length).toBe(32);
    expect(encodeBase64(a)).not.toBe(encodeBase64(b));
  });
});
