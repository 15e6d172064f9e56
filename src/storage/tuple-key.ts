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

/** Grown as needed; keys are encoded into it, then copied out at their exact length. */
let scratch = new Uint8Array(256);

/** Encodes a key tuple (assumed valid: see `assertKey`). */
export function encodeKey(key: Key): Uint8Array {
  const n = appendKey(key, undefined, false);
  return scratch.slice(0, n); // read `scratch` after appendKey: it may have grown it
}

/** Encodes `key` followed by one byte greater than any tag: an exclusive upper bound for keys extending `key`. */
export function encodePrefixEnd(key: Key): Uint8Array {
  const n = appendKey(key, undefined, true);
  return scratch.slice(0, n);
}

/** `prefix` (already encoded bytes) followed by the encoding of `key`, in one allocation. */
export function encodeKeyAfter(prefix: Uint8Array, key: Key): Uint8Array {
  const n = appendKey(key, prefix, false);
  return scratch.slice(0, n);
}

/** `encodeKeyAfter` then PREFIX_END: the exclusive upper bound of the keys extending `prefix` + `key`. */
export function encodePrefixEndAfter(prefix: Uint8Array, key: Key): Uint8Array {
  const n = appendKey(key, prefix, true);
  return scratch.slice(0, n);
}

/** Writes `prefix`, `key` (and PREFIX_END) into `scratch`; returns the length. */
function appendKey(key: Key, prefix: Uint8Array | undefined, end: boolean): number {
  // At most 8 bytes a number, 3 a UTF-16 unit plus tag and terminator a string.
  let max = (prefix?.length ?? 0) + 1;
  for (const part of key) max += typeof part === 'number' ? 8 : part.length * 3 + 2;
  if (max > scratch.length) scratch = new Uint8Array(Math.max(max, scratch.length * 2));
  const out = scratch;
  let i = 0;
  if (prefix) {
    out.set(prefix, 0);
    i = prefix.length;
  }
  for (const part of key) {
    if (typeof part === 'number') i = writeNumber(out, i, part);
    else i = writeString(out, i, part);
  }
  if (end) out[i++] = PREFIX_END;
  return i;
}

function writeNumber(out: Uint8Array, i: number, n: number): number {
  // L = the number of bytes of n; `/ 256` with Math.floor stays exact below 2^53.
  let len = 0;
  for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) len++;
  out[i] = NUMBER_TAG + len;
  let rest = n;
  for (let j = len; j >= 1; j--) {
    out[i + j] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  return i + 1 + len;
}

function writeString(out: Uint8Array, i: number, s: string): number {
  out[i++] = STRING_TAG;
  for (let k = 0; k < s.length; k++) {
    const u = s.charCodeAt(k);
    if (u <= 0x7e) {
      out[i++] = u + 1;
    } else if (u <= 0x407e) {
      const v = u - 0x7f;
      out[i++] = 0x80 | (v >> 8);
      out[i++] = v & 0xff;
    } else {
      out[i++] = 0xc0;
      out[i++] = u >> 8;
      out[i++] = u & 0xff;
    }
  }
  out[i++] = 0x00;
  return i;
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
