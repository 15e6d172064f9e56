import { describe, expect, it } from 'vitest';
import { decodeBase64, encodeBase64, encodeBase64Url, isUnpaddedBase64 } from '../../../src/core/base64.js';

const utf8 = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));

/** appendices.md §"Unpadded Base64": UNPADDED_BASE64(x) examples. */
const SPEC_EXAMPLES: [string, string][] = [
  ['', ''],
  ['f', 'Zg'],
  ['fo', 'Zm8'],
  ['foo', 'Zm9v'],
  ['foob', 'Zm9vYg'],
  ['fooba', 'Zm9vYmE'],
  ['foobar', 'Zm9vYmFy'],
];

describe('base64', () => {
  it.each(SPEC_EXAMPLES)('UNPADDED_BASE64(%j) = %j, and back', (plain, encoded) => {
    expect(encodeBase64(utf8(plain))).toBe(encoded);
    expect(text(decodeBase64(encoded))).toBe(plain);
  });

  it('uses - and _ in the URL-safe alphabet and + and / in the standard one', () => {
    const bytes = Uint8Array.of(0xfb, 0xff, 0xbf);
    expect(encodeBase64(bytes)).toBe('+/+/');
    expect(encodeBase64Url(bytes)).toBe('-_-_');
    expect(decodeBase64('-_-_')).toEqual(bytes);
    expect(decodeBase64('+/+/')).toEqual(bytes);
  });

  it('accepts correct padding', () => {
    expect(text(decodeBase64('Zg=='))).toBe('f');
    expect(text(decodeBase64('Zm8='))).toBe('fo');
    expect(text(decodeBase64('Zm9vYg=='))).toBe('foob');
  });

  it('round-trips every length and byte value', () => {
    for (let n = 0; n < 70; n++) {
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n * 11) & 0xff);
      expect(decodeBase64(encodeBase64(bytes))).toEqual(bytes);
      expect(decodeBase64(encodeBase64Url(bytes))).toEqual(bytes);
      expect(encodeBase64(bytes)).toBe(Buffer.from(bytes).toString('base64').replace(/=+$/, ''));
      expect(encodeBase64Url(bytes)).toBe(Buffer.from(bytes).toString('base64url'));
    }
  });

  it.each([
    ['bad character', 'Zm9v!'],
    ['whitespace', 'Zm9v Yg'],
    ['newline', 'Zm9v\nYg'],
    ['impossible length', 'Zm9vY'],
    ['single character', 'Z'],
    ['padding only', '=='],
    ['too much padding', 'Z==='],
    ['padding in the middle', 'Zg==Zm8'],
    ['partial padding', 'Zg='],
    ['padding on a full group', 'Zm9v='],
    ['mixed alphabets', '+_+_'],
    ['non-ASCII', 'Zm9vé'],
  ])('rejects %s (returns undefined)', (_name, s) => {
    expect(decodeBase64(s)).toBeUndefined();
  });

  it('returns undefined for a non-string', () => {
    expect(decodeBase64(42 as unknown as string)).toBeUndefined();
  });

  it('ignores non-zero unused trailing bits, like Python does', () => {
    // "Zh" differs from "Zg" only in the 4 unused bits.
    expect(text(decodeBase64('Zh'))).toBe('f');
  });

  it('isUnpaddedBase64 checks one alphabet, no padding', () => {
    expect(isUnpaddedBase64('Zm9vYg', 'standard')).toBe(true);
    expect(isUnpaddedBase64('ab+/', 'standard')).toBe(true);
    expect(isUnpaddedBase64('ab+/', 'urlsafe')).toBe(false);
    expect(isUnpaddedBase64('ab-_', 'urlsafe')).toBe(true);
    expect(isUnpaddedBase64('Zg==', 'standard')).toBe(false);
    expect(isUnpaddedBase64('Zm9vY', 'standard')).toBe(false);
  });
});
