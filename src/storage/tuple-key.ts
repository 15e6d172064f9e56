/**
 * Order-preserving byte encoding of key tuples, so that LevelDB's bytewise order equals IndexedDB's key order
 * (see kv.ts): numbers before strings, strings by UTF-16 code units, a tuple before its extensions.
 *
 * Each part starts with a tag byte; a tuple is its parts concatenated, so a tuple's encoding is a byte prefix of
 * its extensions' encodings (a shorter prefix sorts first), and every extension continues with a tag byte
 * (≤ 0x20), which is why `encoding + 0xFF` is an exclusive upper bound for "all extensions".
 *
 * - number n (0 ≤ n < 2^53): tag 0x10 + L, then n as L big-endian bytes, L minimal (0 for n = 0, at most 7).
 *   A longer L means a larger number, and the tag carries L, so bytes compare like the numbers.
 * - string: tag 0x20, then each UTF-16 code unit u, then the terminator 0x00:
 *     u ≤ 0x7E            → one byte  u + 1                       (0x01–0x7F)
 *     u ≤ 0x407E          → two bytes 0x80 | (v >> 8), v & 0xFF   (v = u − 0x7F; first byte 0x80–0xBF)
 *     otherwise           → three bytes 0xC0, u >> 8, u & 0xFF
 *   The first byte of every unit is > 0x00 (so a string sorts before its extensions) and the three classes have
 *   ascending, disjoint first bytes, so units compare like their code units. Lone surrogates are just code units.
 *
 * Pure TypeScript, no Node built-ins.
 */
import type { Key, KeyPart } from './kv.js';

const NUMBER_TAG = 0x10;
const STRING_TAG = 0x20;
/** A byte greater than every tag: `encodeKey(p) + PREFIX_END` bounds the extensions of `p` from above. */
export const PREFIX_END = 0xff;

/** Encodes a key tuple (assumed valid: see `assertKey`). */
export function encodeKey(key: Key): Uint8Array {
  const out: number[] = [];
  appendKey(out, key);
  return Uint8Array.from(out);
}

/** Encodes `key` followed by one byte greater than any tag: an exclusive upper bound for keys extending `key`. */
export function encodePrefixEnd(key: Key): Uint8Array {
  const out: number[] = [];
  appendKey(out, key);
  out.push(PREFIX_END);
  return Uint8Array.from(out);
}

function appendKey(out: number[], key: Key): void {
  for (const part of key) {
    if (typeof part === 'number') appendNumber(out, part);
    else appendString(out, part);
  }
}

function appendNumber(out: number[], n: number): void {
  // Bytes of n, least significant first; `n / 256` with Math.floor stays exact below 2^53.
  const bytes: number[] = [];
  let rest = n;
  while (rest > 0) {
    bytes.push(rest % 256);
    rest = Math.floor(rest / 256);
  }
  out.push(NUMBER_TAG + bytes.length);
  for (let i = bytes.length - 1; i >= 0; i--) out.push(bytes[i]);
}

function appendString(out: number[], s: string): void {
  out.push(STRING_TAG);
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    if (u <= 0x7e) {
      out.push(u + 1);
    } else if (u <= 0x407e) {
      const v = u - 0x7f;
      out.push(0x80 | (v >> 8), v & 0xff);
    } else {
      out.push(0xc0, u >> 8, u & 0xff);
    }
  }
  out.push(0x00);
}

/** Decodes bytes made by `encodeKey` (from `offset` to the end). Throws a TypeError on malformed input. */
export function decodeKey(bytes: Uint8Array, offset = 0): KeyPart[] {
  const key: KeyPart[] = [];
  let i = offset;
  while (i < bytes.length) {
    const tag = bytes[i++];
    if (tag >= NUMBER_TAG && tag <= NUMBER_TAG + 7) {
      const len = tag - NUMBER_TAG;
      if (i + len > bytes.length) throw new TypeError('truncated number in encoded key');
      let n = 0;
      for (let j = 0; j < len; j++) n = n * 256 + bytes[i++];
      key.push(n);
    } else if (tag === STRING_TAG) {
      const units: number[] = [];
      for (;;) {
        if (i >= bytes.length) throw new TypeError('unterminated string in encoded key');
        const b = bytes[i++];
        if (b === 0x00) break;
        if (b <= 0x7f) {
          units.push(b - 1);
        } else if (b <= 0xbf) {
          if (i >= bytes.length) throw new TypeError('truncated string in encoded key');
          units.push((((b & 0x3f) << 8) | bytes[i++]) + 0x7f);
        } else {
          if (i + 1 >= bytes.length) throw new TypeError('truncated string in encoded key');
          units.push((bytes[i] << 8) | bytes[i + 1]);
          i += 2;
        }
      }
      key.push(stringFromUnits(units));
    } else {
      throw new TypeError(`bad tag 0x${tag.toString(16)} in encoded key`);
    }
  }
  return key;
}

function stringFromUnits(units: number[]): string {
  // fromCharCode takes code units as they are (lone surrogates included); chunk to stay under argument limits.
  if (units.length <= 4096) return String.fromCharCode(...units);
  let s = '';
  for (let i = 0; i < units.length; i += 4096) s += String.fromCharCode(...units.slice(i, i + 4096));
  return s;
}

/** Bytewise comparison (LevelDB's default order). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}
