/**
 * The storage contract: a small ordered key-value store with named stores and atomic transactions.
 *
 * Three backends implement it — IndexedDB (browser, `idb-kv.ts`), LevelDB (Node peer, `level-kv.ts`) and memory
 * (unit tests, `memory-kv.ts`) — and one shared suite (test/storage/kv-suite.ts) holds all three to the same
 * behaviour. Everything above this file (event, room, account stores) is written once against `Kv`.
 *
 * Keys are tuples of strings and non-negative safe integers, ordered exactly as IndexedDB orders array keys:
 * element by element, numbers before strings, numbers numerically, strings by UTF-16 code units, and a tuple
 * before its own extensions (`['a'] < ['a', 0] < ['a', 'x'] < ['b']`).
 *
 * Values are JSON-compatible (objects, arrays, strings, finite numbers, booleans, null) and Uint8Array, at the top
 * level or nested. `undefined`, NaN/Infinity, Dates, Maps, class instances and functions are refused with a
 * TypeError on every backend, so a value one backend accepts is accepted by all.
 *
 * ## Transactions — READ THIS BEFORE WRITING A `fn`
 * `kv.read(fn)` and `kv.write(fn)` run `fn` inside one transaction: one logical operation, all or nothing.
 *
 * **Inside `fn`, await nothing but the transaction's own operations** (`tx.get`, `tx.range`, `tx.put`, …, and
 * plain async helpers that themselves only await those). No `fetch`, no timers, no `crypto.subtle`, no awaiting
 * another `kv.read`/`kv.write`, no waiting for the network. IndexedDB commits a transaction by itself as soon as
 * control returns to the event loop with no request of its own pending; after that the transaction is dead.
 * Do async work that is not storage *before* the transaction (read → compute/sign/hash → write), as in Hydrogen.
 *
 * What happens if you break the rule: the IndexedDB and memory backends reject with {@link TransactionInactiveError}
 * and write nothing (writes are buffered until `fn` returns, so there is never a partial commit). The LevelDB
 * backend cannot detect it and will work, so run higher-layer unit tests on the memory backend, which detects it
 * the same way IndexedDB does.
 *
 * Other guarantees, on every backend:
 * - If `fn` throws (or rejects), nothing is written and `write()` rejects with that error.
 * - Inside `write`, reads see the transaction's own earlier writes.
 * - Writers are serialised: a read-modify-write in `write()` never loses an update.
 * - A reader never sees part of a write: it sees a write entirely or not at all.
 * - When `write()` resolves, the data is durable (LevelDB `sync: true`; IndexedDB durability 'strict').
 * - Do not keep the `tx` object after `fn` settles: using it later throws {@link TransactionInactiveError}.
 */

/** One element of a key tuple. Numbers must be non-negative safe integers. */
export type KeyPart = string | number;
/** A key: a tuple of parts. */
export type Key = readonly KeyPart[];

/** What a store returns: JSON-compatible values and Uint8Array. */
export type StoredValue = null | boolean | number | string | Uint8Array | StoredValue[] | { [key: string]: StoredValue };
/**
 * What `put` accepts. `object` is allowed so that records typed with interfaces (which TypeScript does not treat
 * as index signatures) can be stored; the shape is checked at run time.
 */
export type StorableValue = StoredValue | object;

/** Bounds of a key range. All given bounds apply together (their intersection). */
export interface KeyRange {
  /** Keys that start with these parts (the prefix itself included). */
  prefix?: Key;
  gte?: Key;
  gt?: Key;
  lte?: Key;
  lt?: Key;
}

export interface RangeOptions extends KeyRange {
  /** Largest key first. */
  reverse?: boolean;
  /** At most this many entries (a non-negative integer). */
  limit?: number;
}

export type Entry<T = StoredValue> = [key: KeyPart[], value: T];

export interface ReadTx {
  get<T = StoredValue>(store: string, key: Key): Promise<T | undefined>;
  /** Values in the order of `keys`; `undefined` where a key is absent. */
  getMany<T = StoredValue>(store: string, keys: readonly Key[]): Promise<Array<T | undefined>>;
  range<T = StoredValue>(store: string, options?: RangeOptions): Promise<Array<Entry<T>>>;
  count(store: string, range?: KeyRange): Promise<number>;
}

export interface WriteTx extends ReadTx {
  put(store: string, key: Key, value: StorableValue): Promise<void>;
  delete(store: string, key: Key): Promise<void>;
  deleteRange(store: string, range: KeyRange): Promise<void>;
}

export interface Kv {
  /** Which backend this is: 'memory' | 'idb' | 'level'. */
  readonly kind: string;
  /** The declared stores (including {@link META_STORE}). */
  readonly stores: readonly string[];
  /** Runs `fn` in a read-only transaction on a consistent view. See the module comment for the rules. */
  read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T>;
  /** Runs `fn` in a serialised read-write transaction; resolves once the writes are durable. */
  write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T>;
  /**
   * Optional (LevelDB's group commit): runs `fn` as `write` does, but resolves as soon as the transaction is ordered —
   * every later write transaction sees its writes — and `durable` resolves once they are on disk (`read()`s see them
   * from then on). If `durable` rejects, nothing of it was written and the write transactions ordered after it fail
   * too. Tell nobody outside the process about the writes before `durable` resolves. Lets a caller that serialises
   * its own work (a room's event pipeline) start the next transaction while the disk syncs the previous one.
   */
  writeOrdered?<T>(fn: (tx: WriteTx) => Promise<T>): Promise<{ result: T; durable: Promise<void> }>;
  /** Waits for writes in progress, then closes. Later calls reject with {@link StorageClosedError}. */
  close(): Promise<void>;
}

/** Options every backend's `openX` takes. */
export interface KvInit {
  /** Database name (IndexedDB) or directory (LevelDB). */
  name: string;
  /** Every store the caller will use. Stores are never dropped: removing one from the list keeps its data. */
  stores: readonly string[];
}

/**
 * A store every backend adds, for the storage layer's own records:
 * key: ['schemaVersion'] → number (see migrations.ts); key: ['probe', …] → scratch data of probe.ts.
 */
export const META_STORE = '_meta';

// ---------------------------------------------------------------------------------------------------------------
// Errors

/** Base class of every failure the storage layer reports. */
export class StorageError extends Error {
  override name = 'StorageError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The browser (or disk) refused to store more data. The homeserver answers this clearly rather than with 500. */
export class QuotaExceededError extends StorageError {
  override name = 'QuotaExceededError';
}

/**
 * The transaction was no longer active: `fn` awaited something other than the transaction's own operations (so
 * IndexedDB had already committed it), or the `tx` object was used after `fn` settled. Nothing was written.
 */
export class TransactionInactiveError extends StorageError {
  override name = 'TransactionInactiveError';
}

/** The database is closed (by `close()`, or because another context upgraded the IndexedDB database). */
export class StorageClosedError extends StorageError {
  override name = 'StorageClosedError';
}

export const INACTIVE_MESSAGE =
  'transaction is no longer active: inside kv.read/kv.write, await only the transaction\'s own operations ' +
  '(IndexedDB commits as soon as control returns to the event loop); do other async work before or after. ' +
  'Nothing was written.';

// ---------------------------------------------------------------------------------------------------------------
// Keys

/** Throws a TypeError unless `key` is a tuple of strings and non-negative safe integers. */
export function assertKey(key: unknown): asserts key is Key {
  if (!Array.isArray(key)) throw new TypeError(`storage key must be an array, got ${typeof key}`);
  for (const part of key) {
    if (typeof part === 'string') continue;
    if (typeof part === 'number' && Number.isSafeInteger(part) && part >= 0) continue;
    throw new TypeError(`storage key parts must be strings or non-negative safe integers, got ${String(part)}`);
  }
}

/** Compares two keys in IndexedDB's order (see module comment). Returns <0, 0 or >0. */
export function compareKeys(a: Key, b: Key): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (x === y) continue;
    const xs = typeof x === 'string';
    const ys = typeof y === 'string';
    if (xs !== ys) return xs ? 1 : -1;
    // JS string comparison is by UTF-16 code units, as IndexedDB's.
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** Whether `key` starts with all the parts of `prefix`. */
export function hasPrefix(key: Key, prefix: Key): boolean {
  if (key.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}

/** A key as a string that identifies it exactly (for Maps). */
export function keyId(key: Key): string {
  return JSON.stringify(key);
}

// ---------------------------------------------------------------------------------------------------------------
// Ranges

export interface LowerBound {
  key: KeyPart[];
  open: boolean;
}
export interface UpperBound {
  key: KeyPart[];
  open: boolean;
  /** When true the bound is "every extension of `key`" (a prefix's end) and `open` is ignored. */
  prefix: boolean;
}
/** A range reduced to at most one lower and one upper bound. `empty` when nothing can match. */
export interface NormalRange {
  lower?: LowerBound;
  upper?: UpperBound;
  empty: boolean;
}

function tighterLower(a: LowerBound | undefined, b: LowerBound): LowerBound {
  if (!a) return b;
  const c = compareKeys(a.key, b.key);
  if (c !== 0) return c > 0 ? a : b;
  return a.open ? a : b;
}

/** Which of two upper bounds admits less. */
function tighterUpper(a: UpperBound | undefined, b: UpperBound): UpperBound {
  if (!a) return b;
  if (a.prefix && b.prefix) {
    if (hasPrefix(a.key, b.key)) return a;
    if (hasPrefix(b.key, a.key)) return b;
    return compareKeys(a.key, b.key) < 0 ? a : b;
  }
  if (a.prefix || b.prefix) {
    const p = a.prefix ? a : b;
    const u = a.prefix ? b : a;
    // A plain bound inside (or at) the prefix region ends before the region does.
    if (hasPrefix(u.key, p.key)) return u;
    return compareKeys(u.key, p.key) < 0 ? u : p;
  }
  const c = compareKeys(a.key, b.key);
  if (c !== 0) return c < 0 ? a : b;
  return a.open ? a : b;
}

/** Whether `key` is at or above the lower bound. */
export function aboveLower(key: Key, lower: LowerBound | undefined): boolean {
  if (!lower) return true;
  const c = compareKeys(key, lower.key);
  return lower.open ? c > 0 : c >= 0;
}

/** Whether `key` is at or below the upper bound. */
export function belowUpper(key: Key, upper: UpperBound | undefined): boolean {
  if (!upper) return true;
  if (upper.prefix) return hasPrefix(key, upper.key) || compareKeys(key, upper.key) < 0;
  const c = compareKeys(key, upper.key);
  return upper.open ? c < 0 : c <= 0;
}

export function inRange(key: Key, r: NormalRange): boolean {
  return !r.empty && aboveLower(key, r.lower) && belowUpper(key, r.upper);
}

/** Validates a range and reduces it to one lower and one upper bound. */
export function normaliseRange(range: KeyRange | undefined): NormalRange {
  let lower: LowerBound | undefined;
  let upper: UpperBound | undefined;
  if (range) {
    const { prefix, gte, gt, lte, lt } = range;
    if (prefix !== undefined) {
      assertKey(prefix);
      lower = { key: [...prefix], open: false };
      upper = { key: [...prefix], open: false, prefix: true };
    }
    if (gte !== undefined) {
      assertKey(gte);
      lower = tighterLower(lower, { key: [...gte], open: false });
    }
    if (gt !== undefined) {
      assertKey(gt);
      lower = tighterLower(lower, { key: [...gt], open: true });
    }
    if (lte !== undefined) {
      assertKey(lte);
      upper = tighterUpper(upper, { key: [...lte], open: false, prefix: false });
    }
    if (lt !== undefined) {
      assertKey(lt);
      upper = tighterUpper(upper, { key: [...lt], open: true, prefix: false });
    }
  }
  return makeRange(lower, upper);
}

/** A range from two bounds, with `empty` worked out. */
export function makeRange(lower: LowerBound | undefined, upper: UpperBound | undefined): NormalRange {
  let empty = false;
  if (lower && upper) {
    if (upper.prefix) {
      // Empty when the lower bound lies beyond every extension of the prefix.
      empty = !hasPrefix(lower.key, upper.key) && compareKeys(lower.key, upper.key) > 0;
    } else {
      const c = compareKeys(lower.key, upper.key);
      empty = c > 0 || (c === 0 && (lower.open || upper.open));
    }
  }
  return { lower, upper, empty };
}

/** Validates `limit` (undefined = no limit). */
export function checkLimit(limit: number | undefined): number | undefined {
  if (limit === undefined) return undefined;
  if (!Number.isSafeInteger(limit) || limit < 0) throw new TypeError(`range limit must be a non-negative integer, got ${limit}`);
  return limit;
}

// ---------------------------------------------------------------------------------------------------------------
// Values

/**
 * Throws a TypeError unless `value` is storable (see module comment). Returns whether a Uint8Array occurs below
 * the top level (the LevelDB value encoding needs to know).
 */
export function checkValue(value: unknown): { nestedBytes: boolean } {
  const state = { nestedBytes: false };
  walkValue(value, 0, state, new Set());
  return state;
}

function walkValue(v: unknown, depth: number, state: { nestedBytes: boolean }, seen: Set<object>): void {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError(`storage values must be finite numbers, got ${v}`);
      return;
    case 'object':
      break;
    default:
      throw new TypeError(`storage values must be JSON-compatible or Uint8Array, got ${typeof v}`);
  }
  if (v === null) return;
  if (v instanceof Uint8Array) {
    if (depth > 0) state.nestedBytes = true;
    return;
  }
  if (seen.has(v)) throw new TypeError('storage values must not contain cycles');
  seen.add(v);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) walkValue(v[i], depth + 1, state, seen);
  } else {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) {
      throw new TypeError(`storage values must be plain objects, got ${proto?.constructor?.name ?? 'an exotic object'}`);
    }
    for (const k of Object.keys(v)) walkValue((v as Record<string, unknown>)[k], depth + 1, state, seen);
  }
  seen.delete(v);
}

/** Throws a TypeError unless `store` was declared. */
export function checkStore(stores: ReadonlySet<string>, store: string): void {
  if (!stores.has(store)) throw new TypeError(`unknown store '${store}': declare it in the stores list when opening`);
}

/** The declared stores plus {@link META_STORE}, validated. */
export function declaredStores(stores: readonly string[]): string[] {
  const out = new Set<string>([META_STORE]);
  for (const s of stores) {
    if (typeof s !== 'string' || s.length === 0) throw new TypeError('store names must be non-empty strings');
    out.add(s);
  }
  return [...out];
}
