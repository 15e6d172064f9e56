/**
 * Unpadded Base64 (standard and URL-safe alphabets).
 * Spec: shared/matrix-spec/content/appendices.md §"Unpadded Base64", §"URL-safe unpadded Base64".
 *
 * Encoders never pad. The decoder follows the spec's "accept input with or without padding wherever possible":
 * it takes either alphabet (not both in one string), with or without correct `=` padding, and returns
 * `undefined` for anything else (bad characters, whitespace, a length that no byte string encodes, stray or
 * misplaced `=`). It does not throw: callers such as signature checks treat `undefined` as "check fails".
 * Non-zero bits in the unused low bits of the last character are ignored, as Python's decoder (Synapse) does, so
 * a value other servers accept is not refused here.
 */

const STANDARD = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const URL_SAFE = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Character code → 6-bit value; -1 for characters of neither alphabet. `+`/`/` and `-`/`_` both map. */
const DECODE = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) {
  DECODE[STANDARD.charCodeAt(i)] = i;
  DECODE[URL_SAFE.charCodeAt(i)] = i;
}

function encodeWith(bytes: Uint8Array, alphabet: string): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += alphabet[n >>> 18] + alphabet[(n >>> 12) & 63] + alphabet[(n >>> 6) & 63] + alphabet[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += alphabet[n >>> 18] + alphabet[(n >>> 12) & 63];
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += alphabet[n >>> 18] + alphabet[(n >>> 12) & 63] + alphabet[(n >>> 6) & 63];
  }
  return out;
}

/** Standard unpadded Base64 (`+`, `/`). */
export function encodeBase64(bytes: Uint8Array): string {
  return encodeWith(bytes, STANDARD);
}

/** URL-safe unpadded Base64 (`-`, `_`). */
export function encodeBase64Url(bytes: Uint8Array): string {
  return encodeWith(bytes, URL_SAFE);
}

/**
 * Decode standard or URL-safe Base64, padded or not. Returns `undefined` when `s` is not valid Base64 (see the
 * module comment for what is accepted).
 */
export function decodeBase64(s: string): Uint8Array | undefined {
  if (typeof s !== 'string') return undefined;
  let end = s.length;
  if (end > 0 && s.charCodeAt(end - 1) === 0x3d /* = */) {
    // Padding, if present, must make the length a multiple of 4 and be at most two characters.
    if (end % 4 !== 0) return undefined;
    end--;
    if (s.charCodeAt(end - 1) === 0x3d) end--;
    if (end % 4 < 2) return undefined; // "A===", "AB==" with a third "=", or nothing before the padding
  }
  const rem = end % 4;
  if (rem === 1) return undefined; // 6 bits cannot hold a byte
  let sawStandard = false;
  let sawUrl = false;
  const out = new Uint8Array(Math.floor((end * 3) / 4));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < end; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? DECODE[c] : -1;
    if (v < 0) return undefined;
    if (c === 0x2b || c === 0x2f) sawStandard = true;
    else if (c === 0x2d || c === 0x5f) sawUrl = true;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >>> bits) & 0xff;
    }
  }
  if (sawStandard && sawUrl) return undefined;
  return out;
}

/** True if `s` is valid unpadded Base64 in exactly the given alphabet (no padding, no other characters). */
export function isUnpaddedBase64(s: string, alphabet: 'standard' | 'urlsafe'): boolean {
  if (typeof s !== 'string' || s.length % 4 === 1) return false;
  return (alphabet === 'standard' ? /^[A-Za-z0-9+/]*$/ : /^[A-Za-z0-9_-]*$/).test(s);
}
