import { afterEach, describe, expect, it, vi } from 'vitest';
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
} from '../../../src/core/crypto/ed25519.js';
import type { Ed25519Backend } from '../../../src/core/crypto/ed25519.js';
import { signJson, signJsonSync, verifyJsonSignature } from '../../../src/core/signing.js';
import { getSha256Backend, setSha256Backend, sha256 } from '../../../src/core/crypto/sha256.js';
import type { Sha256Backend } from '../../../src/core/crypto/sha256.js';
import { addContentHash } from '../../../src/core/hashes.js';
import { nodeEd25519, nodeSha256 } from '../../../src/node/crypto-backend.js';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';

/** appendices.md §"Cryptographic Test Vectors": SIGNING_KEY_SEED. */
const SEED = decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1')!;
const utf8 = (s: string) => new TextEncoder().encode(s);
const installed = getEd25519Backend();

/** noble's answer: the module with no backend and WebCrypto off. */
function withNoble<T>(fn: () => T): T {
  const saved = getEd25519Backend();
  setEd25519Backend(null);
  try {
    return fn();
  } finally {
    setEd25519Backend(saved);
  }
}

afterEach(() => {
  setEd25519Backend(installed);
  setWebCryptoEd25519Enabled(true);
  vi.restoreAllMocks();
});

describe('Ed25519 platform backend (node:crypto)', () => {
  it('is registered by the Node polyfills (every Node entry and the test setup load them)', () => {
    expect(installed).toBe(nodeEd25519);
  });

  it('reproduces the spec vectors: signing {} and {"one":1,"two":"Two"}', async () => {
    const key = { keyId: 'ed25519:1', seed: SEED, publicKey: publicKeyFromSeed(SEED) };
    const spy = vi.spyOn(nodeEd25519, 'sign');
    const signed = await signJson({}, 'domain', key);
    expect(signed).toEqual({
      signatures: { domain: { 'ed25519:1': 'K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ' } },
    });
    expect(signJsonSync({ one: 1, two: 'Two' }, 'domain', key).signatures).toEqual({
      domain: { 'ed25519:1': 'KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw' },
    });
    expect(spy).toHaveBeenCalledTimes(2); // the backend did the signing, both async and sync
    expect(await verifyJsonSignature(signed, 'domain', 'ed25519:1', key.publicKey)).toBe(true);
  });

  it('RFC 8032 §7.1 test 3 (two-byte message)', () => {
    const seed = Buffer.from('c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7', 'hex');
    const sig = signSync(seed, Uint8Array.of(0xaf, 0x82));
    expect(Buffer.from(sig).toString('hex')).toBe(
      '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
    );
  });

  it('gives the same bytes as noble and agrees with it on verification', async () => {
    for (let i = 0; i < 30; i++) {
      const seed = i === 0 ? SEED : generateSeed();
      const pub = publicKeyFromSeed(seed);
      const msg = utf8(`message ${i} ${'y'.repeat(i * 37)}`);
      const viaNoble = withNoble(() => signSync(seed, msg));
      expect(encodeBase64(signSync(seed, msg))).toBe(encodeBase64(viaNoble));
      expect(encodeBase64(await sign(seed, msg))).toBe(encodeBase64(viaNoble));
      expect(verifySync(pub, msg, viaNoble)).toBe(true);
      expect(await verify(pub, msg, viaNoble)).toBe(true);

      const tampered = Uint8Array.from(viaNoble);
      tampered[(i * 7) % 64] ^= 1 << i % 8;
      expect(verifySync(pub, msg, tampered)).toBe(withNoble(() => verifySync(pub, msg, tampered)));
      expect(verifySync(pub, msg, tampered)).toBe(false);
      expect(await verify(pub, utf8(`message ${i}!`), viaNoble)).toBe(false);
    }
  });

  it('verifies through the backend without touching WebCrypto', async () => {
    const subtleVerify = vi.spyOn(globalThis.crypto.subtle, 'verify');
    const subtleSign = vi.spyOn(globalThis.crypto.subtle, 'sign');
    const backendVerify = vi.spyOn(nodeEd25519, 'verify');
    const seed = generateSeed();
    const msg = utf8('fast path');
    const sig = await sign(seed, msg);
    for (let i = 0; i < 3; i++) expect(await verify(publicKeyFromSeed(seed), msg, sig)).toBe(true);
    expect(backendVerify).toHaveBeenCalledTimes(3);
    expect(subtleVerify).not.toHaveBeenCalled();
    expect(subtleSign).not.toHaveBeenCalled();
  });

  it('keeps the strict rules: small-order and non-canonical keys, S ≥ L and bad lengths are refused', async () => {
    const pub = publicKeyFromSeed(SEED);
    const msg = utf8('hi');
    const sig = signSync(SEED, msg);
    const smallOrderKey = new Uint8Array(32);
    const identityKey = Uint8Array.of(1, ...new Uint8Array(31));
    const nonCanonicalKey = new Uint8Array(32).fill(0xff);
    const highS = Uint8Array.from(sig);
    highS[63] |= 0xf0;
    // S + L: the same point equation holds, only the S < L rule refuses it.
    const sPlusL = Uint8Array.from(sig);
    const L = [0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14];
    let carry = 0;
    for (let i = 0; i < 32; i++) {
      const v = sPlusL[32 + i] + (i < 16 ? L[i] : i === 31 ? 0x10 : 0) + carry;
      sPlusL[32 + i] = v & 0xff;
      carry = v >> 8;
    }
    const backendVerify = vi.spyOn(nodeEd25519, 'verify');
    for (const check of [verifySync, verify]) {
      expect(await check(pub, msg, sig)).toBe(true);
      expect(await check(smallOrderKey, msg, sig)).toBe(false);
      expect(await check(identityKey, msg, sig)).toBe(false);
      expect(await check(nonCanonicalKey, msg, sig)).toBe(false);
      expect(await check(pub, msg, highS)).toBe(false);
      expect(await check(pub, msg, sPlusL)).toBe(false);
      expect(await check(pub.subarray(1), msg, sig)).toBe(false);
      expect(await check(pub, msg, sig.subarray(1))).toBe(false);
      expect(await check('x' as unknown as Uint8Array, msg, sig)).toBe(false);
    }
    // Only the two good signatures reached the platform: the rest were refused before it.
    expect(backendVerify).toHaveBeenCalledTimes(2);
    expect(withNoble(() => verifySync(pub, msg, sPlusL))).toBe(false);
    await expect(sign(new Uint8Array(31), msg)).rejects.toThrow(RangeError);
  });

  it('refuses a backend that does not give the reference bytes', () => {
    const wrong: Ed25519Backend = { sign: (seed, msg) => nodeEd25519.sign(seed, Uint8Array.of(...msg, 0)), verify: () => true };
    expect(() => setEd25519Backend(wrong)).toThrow(/reference/);
    const throwing: Ed25519Backend = {
      sign: () => {
        throw new Error('no');
      },
      verify: () => true,
    };
    expect(() => setEd25519Backend(throwing)).toThrow(/reference/);
    // Signs right but accepts any signature, or derives the wrong public key.
    expect(() => setEd25519Backend({ sign: nodeEd25519.sign, verify: () => true })).toThrow(/reference/);
    expect(() => setEd25519Backend({ ...nodeEd25519, publicKey: (seed) => nodeEd25519.publicKey!(seed.map((b) => b ^ 1)) })).toThrow(/reference/);
    expect(getEd25519Backend()).toBe(installed);
  });

  it('derives public keys as noble does', () => {
    for (let i = 0; i < 20; i++) {
      const seed = i === 0 ? SEED : generateSeed();
      expect(encodeBase64(nodeEd25519.publicKey!(seed))).toBe(encodeBase64(withNoble(() => publicKeyFromSeed(seed))));
      expect(encodeBase64(publicKeyFromSeed(seed))).toBe(encodeBase64(withNoble(() => publicKeyFromSeed(seed))));
    }
    expect(() => publicKeyFromSeed(new Uint8Array(31))).toThrow();
  });
});

describe('SHA-256 platform backend (node:crypto)', () => {
  it('is registered, and hashes as @noble/hashes does', () => {
    expect(getSha256Backend()).toBe(nodeSha256);
    for (let n = 0; n < 300; n += 7) {
      const bytes = globalThis.crypto.getRandomValues(new Uint8Array(n * 5));
      expect(Buffer.from(sha256(bytes)).toString('hex')).toBe(Buffer.from(nobleSha256(bytes)).toString('hex'));
    }
    // FIPS 180-2 "abc".
    expect(Buffer.from(sha256(utf8('abc'))).toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('gives the spec appendix content hash of the minimal event through the backend', () => {
    const spy = vi.spyOn({ f: nodeSha256 }, 'f');
    const saved = getSha256Backend();
    setSha256Backend(spy as unknown as Sha256Backend);
    try {
      const hashed = addContentHash({ room_id: '!x:domain', sender: '@a:domain', origin: 'domain', origin_server_ts: 1000000, signatures: {}, hashes: {}, type: 'X', content: {}, prev_events: [], auth_events: [], depth: 3, unsigned: { age_ts: 1000000 } });
      // appendices.md §"Event Signing": the minimally-sized event's hash.
      expect(hashed.hashes).toEqual({ sha256: '5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos' });
      expect(spy).toHaveBeenCalled();
    } finally {
      setSha256Backend(saved);
    }
  });

  it('refuses a backend that does not match', () => {
    expect(() => setSha256Backend((b) => nobleSha256(Uint8Array.of(...b, 1)))).toThrow(/reference/);
    expect(() => setSha256Backend(() => new Uint8Array(31))).toThrow(/reference/);
    expect(getSha256Backend()).toBe(nodeSha256);
  });
});

describe('node:crypto scrypt for passwords', () => {
  it('derives the same bytes as @noble/hashes, so hashes made by either verify with the other', async () => {
    const { scryptAsync } = await import('@noble/hashes/scrypt.js');
    const { hashPassword, setScryptBackend, verifyPassword } = await import('../../../src/services/passwords.js');
    const { nodeScrypt } = await import('../../../src/node/crypto-backend.js');
    const salt = utf8('NaCl');
    const params = { N: 1024, r: 8, p: 16, dkLen: 64 };
    // RFC 7914 §12, second vector.
    const expected = 'fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640';
    const native = await nodeScrypt(utf8('password'), salt, params);
    expect(Buffer.from(native).toString('hex')).toBe(expected);
    expect(Buffer.from(await scryptAsync(utf8('password'), salt, params)).toString('hex')).toBe(expected);
    try {
      setScryptBackend(nodeScrypt);
      const byNode = await hashPassword('correct horse');
      setScryptBackend(undefined);
      const byNoble = await hashPassword('correct horse');
      expect(await verifyPassword('correct horse', byNode)).toBe(true);
      expect(await verifyPassword('wrong horse', byNode)).toBe(false);
      setScryptBackend(nodeScrypt);
      expect(await verifyPassword('correct horse', byNoble)).toBe(true);
      expect(await verifyPassword('wrong horse', byNoble)).toBe(false);
    } finally {
      setScryptBackend(nodeScrypt);
    }
  });
});
