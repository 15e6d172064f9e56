/**
 * Canonical JSON: the one place in Hearth where JSON becomes the bytes that get hashed and signed.
 * Spec: shared/matrix-spec/content/appendices.md §"Canonical JSON" (and rooms/fragments/v1-canonical-json.md,
 * v6-canonical-json.md for the room-version strictness).
 *
 * - Object keys are sorted by Unicode code point. JavaScript's default string order compares UTF-16 code units,
 *   which puts astral characters (encoded as surrogates D800–DFFF) before U+E000–U+FFFF; code-point order puts
 *   them after, so keys are compared with `compareCodePoints`.
 * - No insignificant whitespace; strings use the shortest escapes (only `"`, `\` and C0 controls are escaped,
 *   everything else is written as raw UTF-8), which is exactly what `JSON.stringify` does for a well-formed string.
 * - Numbers must be integers. `-0` is written `0` and `1e10` as `10000000000` (appendix examples). With
 *   `strictIntegers` (room versions 6+) integers outside [-(2^53)+1, 2^53-1] are rejected; without it (v1–v5
 *   events, which "might not be fully compliant") a large integer is written out in full decimal. `bigint` values
 *   are accepted as integers too, so a caller that parsed old events with a lossless parser can keep them exact.
 * - Anything that is not JSON (floats, NaN, ±Infinity, undefined, functions, symbols, class instances, cycles,
 *   strings with lone surrogates that have no UTF-8 encoding) throws `CanonicalJsonError`.
 */

export class CanonicalJsonError extends Error {
  override readonly name = 'CanonicalJsonError';
}

export interface CanonicalJsonOptions {
  /** Room versions 6+: reject integers outside [-(2^53)+1, 2^53-1]. */
  strictIntegers?: boolean;
}

/**
 * Nesting limit. Deeper input throws instead of overflowing the stack at a depth that differs between engines;
 * Python's encoder (Synapse) stops near 1,000 levels too, so no event it accepts is refused here.
 */
const MAX_DEPTH = 1000;

const MAX_SAFE = 2n ** 53n - 1n;

/** A lead or trail surrogate without its partner: such a string has no UTF-8 encoding. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Compare two strings by Unicode code point (negative, zero or positive). Equal to UTF-16 order except where the
 * first difference is a surrogate against U+E000–U+FFFF: surrogates encode code points ≥ U+10000, so they rank
 * higher. (A difference inside a surrogate pair compares correctly as code units.)
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // Map surrogates above U+E000–U+FFFF, keeping each range's own order.
      x = x < 0xe000 ? x + 0x2000 : x - 0x800;
      y = y < 0xe000 ? y + 0x2000 : y - 0x800;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** The path to the value being encoded, kept as a stack so no path string is built unless encoding fails. */
type Path = (string | number)[];

function fail(message: string, path: Path): never {
  const where = path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('');
  throw new CanonicalJsonError(`${message} at ${where || '(root)'}`);
}

/** `String.prototype.isWellFormed` (ES2024) where the engine has it: several times faster than the regex. */
const isWellFormed: (s: string) => boolean =
  typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function'
    ? (s) => (s as unknown as { isWellFormed(): boolean }).isWellFormed()
    : (s) => !LONE_SURROGATE.test(s);

function encodeString(s: string, path: Path): string {
  if (!isWellFormed(s)) fail('string with a lone surrogate (not encodable as UTF-8)', path);
  return JSON.stringify(s);
}

function encodeNumber(n: number, strict: boolean, path: Path): string {
  if (Number.isSafeInteger(n)) return String(n); // String(-0) is '0'
  if (!Number.isFinite(n)) fail(`non-finite number ${String(n)}`, path);
  if (!Number.isInteger(n)) fail(`non-integer number ${String(n)}`, path);
  if (strict) fail(`integer ${String(n)} outside [-(2^53)+1, 2^53-1]`, path);
  return BigInt(n).toString(); // full decimal, never an exponent
}

function encodeBigint(n: bigint, strict: boolean, path: Path): string {
  if (strict && (n > MAX_SAFE || n < -MAX_SAFE)) fail(`integer ${n.toString()} outside [-(2^53)+1, 2^53-1]`, path);
  return n.toString();
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * The keys in code-point order. The engine's own sort (UTF-16 code units, much faster than a comparator call per
 * pair) gives the same order unless a key holds a character from U+D800 up, which is rare in Matrix JSON.
 */
function sortedKeys(obj: object): string[] {
  const keys = Object.keys(obj);
  for (const k of keys) {
    for (let i = 0; i < k.length; i++) {
      if (k.charCodeAt(i) >= 0xd800) return keys.sort(compareCodePoints);
    }
  }
  return keys.sort();
}

/** Builds the text by string concatenation (V8 ropes: cheaper than collecting parts and joining them). */
function encode(value: unknown, strict: boolean, path: Path, seen: Set<object>): string {
  switch (typeof value) {
    case 'string':
      return encodeString(value, path);
    case 'number':
      return encodeNumber(value, strict, path);
    case 'bigint':
      return encodeBigint(value, strict, path);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      break;
    default:
      fail(`value of type ${typeof value} is not JSON`, path);
  }
  if (value === null) return 'null';
  if (seen.has(value)) fail('cyclic structure', path);
  if (seen.size >= MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`, path);
  seen.add(value);
  let out: string;
  if (Array.isArray(value)) {
    out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      // A hole in a sparse array reads as undefined and is rejected below.
      path.push(i);
      out += encode(value[i], strict, path, seen);
      path.pop();
    }
    out += ']';
  } else {
    if (!isPlainObject(value)) fail('non-plain object is not JSON', path);
    if (Object.getOwnPropertySymbols(value).length > 0) fail('object with symbol keys is not JSON', path);
    const obj = value as Record<string, unknown>;
    const keys = sortedKeys(obj);
    out = '{';
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      if (i > 0) out += ',';
      out += encodeString(k, path) + ':';
      path.push(k);
      out += encode(obj[k], strict, path, seen);
      path.pop();
    }
    out += '}';
  }
  seen.delete(value);
  return out;
}

/** The canonical JSON text of `value`. Throws `CanonicalJsonError` on anything canonical JSON cannot encode. */
export function canonicalJson(value: unknown, opts?: CanonicalJsonOptions): string {
  return encode(value, opts?.strictIntegers === true, [], new Set());
}

const utf8 = new TextEncoder();

/** The canonical JSON of `value` as UTF-8 bytes (what is hashed and signed). */
export function canonicalJsonBytes(value: unknown, opts?: CanonicalJsonOptions): Uint8Array {
  return utf8.encode(canonicalJson(value, opts));
}

/** Encoded top-level values by key, with the value each text was made from (see `canonicalJsonReusing`). */
export type CanonicalParts = Map<string, { readonly value: unknown; readonly text: string }>;

/**
 * The canonical JSON text of the object `obj`, like `canonicalJson`, reusing the text in `parts` for every
 * top-level value that is the very same value (===) it was made from, and recording the values it encodes.
 * Building an event encodes it twice (the content-hash input, then the redacted event that is signed), and most of
 * its top-level values are shared between the two: each is then encoded once. The same `parts` must only be used
 * with the same options.
 */
export function canonicalJsonReusing(obj: Record<string, unknown>, parts: CanonicalParts, opts?: CanonicalJsonOptions): string {
  const strict = opts?.strictIntegers === true;
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj) || !isPlainObject(obj) || Object.getOwnPropertySymbols(obj).length > 0) {
    return canonicalJson(obj, opts);
  }
  const keys = sortedKeys(obj);
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const value = obj[k];
    let part = parts.get(k);
    if (part === undefined || part.value !== value) {
      part = { value, text: encode(value, strict, [k], new Set<object>([obj])) };
      parts.set(k, part);
    }
    if (i > 0) out += ',';
    out += encodeString(k, []) + ':' + part.text;
  }
  return out + '}';
}
