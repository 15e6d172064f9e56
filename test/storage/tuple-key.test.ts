import { describe, expect, it } from 'vitest';
import { compareKeys, normaliseRange, inRange, type KeyPart } from '../../src/storage/kv.js';
import { compareBytes, decodeKey, encodeKey, encodeKeyAfter, encodePrefixEnd, encodePrefixEndAfter } from '../../src/storage/tuple-key.js';
import { ORDERED_KEYS } from './kv-suite.js';

/** A small deterministic PRNG (mulberry32), so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Code units around every boundary of the encoding, plus surrogates.
const UNITS = [0, 1, 0x7e, 0x7f, 0x80, 0xff, 0x100, 0x407e, 0x407f, 0x4080, 0xd7ff, 0xd800, 0xdbff, 0xdc00, 0xdfff, 0xe000, 0xfffe, 0xffff, 0x41, 0x61];
const NUMBERS = [0, 1, 2, 127, 128, 255, 256, 65_535, 65_536, 2 ** 24, 2 ** 32 - 1, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER];

function randomKey(r: () => number): KeyPart[] {
  const len = Math.floor(r() * 4);
  const key: KeyPart[] = [];
  for (let i = 0; i < len; i++) {
    if (r() < 0.4) key.push(r() < 0.5 ? NUMBERS[Math.floor(r() * NUMBERS.length)] : Math.floor(r() * 1e6));
    else {
      const n = Math.floor(r() * 4);
      let s = '';
      for (let j = 0; j < n; j++) s += String.fromCharCode(r() < 0.7 ? UNITS[Math.floor(r() * UNITS.length)] : Math.floor(r() * 0x10000));
      key.push(s);
    }
  }
  return key;
}

describe('compareKeys', () => {
  it('agrees with the hand-written IndexedDB order', () => {
    for (let i = 0; i < ORDERED_KEYS.length; i++) {
      for (let j = 0; j < ORDERED_KEYS.length; j++) {
        expect(Math.sign(compareKeys(ORDERED_KEYS[i], ORDERED_KEYS[j])), `${JSON.stringify(ORDERED_KEYS[i])} vs ${JSON.stringify(ORDERED_KEYS[j])}`).toBe(Math.sign(i - j));
      }
    }
  });
});

describe('tuple-key encoding', () => {
  it('orders the hand-written keys bytewise in the same order', () => {
    const encoded = ORDERED_KEYS.map(encodeKey);
    for (let i = 1; i < encoded.length; i++) expect(compareBytes(encoded[i - 1], encoded[i])).toBeLessThan(0);
  });

  it('round-trips and preserves order on random keys', () => {
    const r = rng(42);
    const keys = Array.from({ length: 3000 }, () => randomKey(r));
    for (const k of keys) expect(decodeKey(encodeKey(k))).toEqual(k);
    for (let i = 0; i + 1 < keys.length; i++) {
      const a = keys[i];
      const b = keys[i + 1];
      expect(Math.sign(compareBytes(encodeKey(a), encodeKey(b))), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`).toBe(Math.sign(compareKeys(a, b)));
    }
  });

  it('bounds a prefix\'s extensions with encodePrefixEnd', () => {
    const r = rng(7);
    for (let i = 0; i < 2000; i++) {
      const p = randomKey(r);
      const k = r() < 0.5 ? [...p, ...randomKey(r)] : randomKey(r);
      const extends_ = k.length >= p.length && p.every((x, j) => x === k[j]);
      const inside = compareBytes(encodeKey(k), encodeKey(p)) >= 0 && compareBytes(encodeKey(k), encodePrefixEnd(p)) < 0;
      expect(inside, `${JSON.stringify(k)} within prefix ${JSON.stringify(p)}`).toBe(extends_);
      // The same judgement by the tuple-level range logic that the memory backend and overlay use.
      expect(inRange(k, normaliseRange({ prefix: p }))).toBe(extends_);
    }
  });

  it('encodes after a prefix as the whole tuple would, and keys longer than any before', () => {
    const r = rng(11);
    for (let i = 0; i < 500; i++) {
      const p = randomKey(r);
      const k = randomKey(r);
      expect(encodeKeyAfter(encodeKey(p), k)).toEqual(encodeKey([...p, ...k]));
      expect(encodePrefixEndAfter(encodeKey(p), k)).toEqual(encodePrefixEnd([...p, ...k]));
    }
    // Longer than the encoder's first buffer: it grows, and earlier results stay intact.
    const short = encodeKey(['a', 1]);
    const long = ['\u4e2d'.repeat(400), 2 ** 53 - 1, 'x'.repeat(1000)];
    expect(decodeKey(encodeKey(long))).toEqual(long);
    expect(decodeKey(short)).toEqual(['a', 1]);
  });

  it('rejects malformed bytes', () => {
    expect(() => decodeKey(Uint8Array.of(0x05))).toThrow(TypeError);
    expect(() => decodeKey(Uint8Array.of(0x20, 0x41))).toThrow(TypeError);
    expect(() => decodeKey(Uint8Array.of(0x12, 0x01))).toThrow(TypeError);
  });
});
