/**
 * Transaction machinery shared by the three backends: each backend supplies a `ReadSource` (its committed data)
 * and commits an `Overlay` (the transaction's buffered writes); this file does the rest — argument checks,
 * read-your-writes by layering the overlay over the source, and the "tx used after it ended" guard.
 *
 * Writes are buffered in the overlay until `fn` returns, on every backend. That is what makes the IndexedDB
 * backend atomic even when a caller breaks the "await only the tx" rule: the broken transaction has nothing in it
 * when IndexedDB auto-commits it, and the flush afterwards fails with TransactionInactiveError.
 */
import {
  INACTIVE_MESSAGE,
  TransactionInactiveError,
  aboveLower,
  assertKey,
  belowUpper,
  checkLimit,
  checkStore,
  checkValue,
  compareKeys,
  inRange,
  keyId,
  makeRange,
  normaliseRange,
} from './kv.js';
import type {
  Entry,
  Key,
  KeyPart,
  KeyRange,
  NormalRange,
  RangeOptions,
  ReadTx,
  StorableValue,
  StoredValue,
  WriteTx,
} from './kv.js';

/** A range read as a source sees it: validated, non-empty, limit > 0 or absent. */
export interface SourceQuery {
  range: NormalRange;
  reverse: boolean;
  limit?: number;
  /** Only keys are needed; the source may return `null` as every value. */
  keysOnly?: boolean;
}

/** Committed data of a backend, as one transaction sees it. Inputs are already validated. */
export interface ReadSource {
  get(store: string, key: Key): Promise<StoredValue | undefined>;
  getMany(store: string, keys: readonly Key[]): Promise<Array<StoredValue | undefined>>;
  range(store: string, query: SourceQuery): Promise<Entry[]>;
  count(store: string, range: NormalRange): Promise<number>;
}

export interface OverlayEntry {
  key: KeyPart[];
  /** `undefined` = deleted. */
  value: StoredValue | undefined;
  /** Whether a Uint8Array occurs below the top level of `value` (for the LevelDB value encoding). */
  nestedBytes: boolean;
  /** Which commit wrote it (the LevelDB group-commit layer drops entries once their batch has landed). */
  seq: number;
  /**
   * The value as its backend's codec encoded it at put time (then `value` is null and reads decode this). The
   * encoding is the copy a put must take anyway, so a LevelDB put serialises its value once, not twice.
   */
  encoded?: Uint8Array;
}

/** A backend's value encoding (LevelDB's bytes), used by an overlay to keep values encoded from put on. */
export interface ValueCodec {
  encode(value: StoredValue, nestedBytes: boolean): Uint8Array;
  decode(bytes: Uint8Array): StoredValue;
}

class StoreOverlay {
  readonly entries = new Map<string, OverlayEntry>();
  /** Ranges deleted wholesale (only when not materialised into single deletes). */
  readonly rangeDeletes: NormalRange[] = [];

  deletedByRange(key: Key): boolean {
    for (const r of this.rangeDeletes) if (inRange(key, r)) return true;
    return false;
  }
}

/** Buffered writes, per store. */
export class Overlay {
  readonly stores = new Map<string, StoreOverlay>();

  /** With a codec, puts keep their values encoded (see OverlayEntry.encoded). */
  constructor(readonly codec?: ValueCodec) {}

  /** A fresh copy of an entry's value (which must not be a deletion). */
  valueOf(e: { value: StoredValue | undefined; encoded?: Uint8Array }): StoredValue {
    if (e.encoded !== undefined && this.codec) return this.codec.decode(e.encoded);
    return copyOut(e.value as StoredValue);
  }

  private store(name: string): StoreOverlay {
    let s = this.stores.get(name);
    if (!s) {
      s = new StoreOverlay();
      this.stores.set(name, s);
    }
    return s;
  }

  set(store: string, entry: OverlayEntry): void {
    this.store(store).entries.set(keyId(entry.key), entry);
  }

  /** Records a deleted range: drops buffered entries in it and remembers the range for reads and the flush. */
  deleteRange(store: string, range: NormalRange): void {
    const s = this.store(store);
    for (const [id, e] of s.entries) if (inRange(e.key, range)) s.entries.delete(id);
    s.rangeDeletes.push(range);
  }

  /** The overlay's say on `key`: an entry (maybe a deletion), or undefined if the source decides. */
  lookup(store: string, key: Key): { value: StoredValue | undefined; encoded?: Uint8Array } | undefined {
    const s = this.stores.get(store);
    if (!s) return undefined;
    const e = s.entries.get(keyId(key));
    if (e) return e;
    if (s.rangeDeletes.length > 0 && s.deletedByRange(key)) return { value: undefined };
    return undefined;
  }

  has(store: string): boolean {
    const s = this.stores.get(store);
    return !!s && (s.entries.size > 0 || s.rangeDeletes.length > 0);
  }

  isEmpty(): boolean {
    for (const name of this.stores.keys()) if (this.has(name)) return false;
    return true;
  }

  /** Entries (deletions included) inside `range`, in iteration order. */
  sorted(store: string, range: NormalRange, reverse: boolean): OverlayEntry[] {
    const s = this.stores.get(store);
    if (!s) return [];
    const out: OverlayEntry[] = [];
    for (const e of s.entries.values()) if (inRange(e.key, range)) out.push(e);
    out.sort(reverse ? (a, b) => compareKeys(b.key, a.key) : (a, b) => compareKeys(a.key, b.key));
    return out;
  }

  /** Drops entries written by commits up to `seq` (they have reached the source). */
  removeUpTo(seq: number): void {
    for (const s of this.stores.values()) {
      for (const [id, e] of s.entries) if (e.seq <= seq) s.entries.delete(id);
    }
  }

  clear(): void {
    this.stores.clear();
  }
}

function copyOut(value: StoredValue): StoredValue {
  // Callers may mutate what they get; the buffered copy must stay as it was put.
  return typeof value === 'object' && value !== null ? structuredClone(value) : value;
}

/** `overlay` layered over `base`: what a write transaction reads. */
export class OverlayView implements ReadSource {
  constructor(
    private readonly base: ReadSource,
    private readonly overlay: Overlay,
  ) {}

  async get(store: string, key: Key): Promise<StoredValue | undefined> {
    const hit = this.overlay.lookup(store, key);
    if (hit) return hit.value === undefined ? undefined : this.overlay.valueOf(hit);
    return this.base.get(store, key);
  }

  async getMany(store: string, keys: readonly Key[]): Promise<Array<StoredValue | undefined>> {
    if (!this.overlay.has(store)) return this.base.getMany(store, keys);
    const out = new Array<StoredValue | undefined>(keys.length);
    const missIdx: number[] = [];
    const missKeys: Key[] = [];
    keys.forEach((key, i) => {
      const hit = this.overlay.lookup(store, key);
      if (hit) out[i] = hit.value === undefined ? undefined : this.overlay.valueOf(hit);
      else {
        missIdx.push(i);
        missKeys.push(key);
      }
    });
    if (missKeys.length > 0) {
      const got = await this.base.getMany(store, missKeys);
      missIdx.forEach((i, j) => (out[i] = got[j]));
    }
    return out;
  }

  async range(store: string, q: SourceQuery): Promise<Entry[]> {
    if (!this.overlay.has(store)) return this.base.range(store, q);
    const so = this.overlay.stores.get(store)!;
    const ov = this.overlay.sorted(store, q.range, q.reverse);
    const limit = q.limit ?? Infinity;
    const before = q.reverse ? (a: Key, b: Key) => compareKeys(a, b) > 0 : (a: Key, b: Key) => compareKeys(a, b) < 0;
    const out: Entry[] = [];
    let oi = 0;
    const emit = (e: OverlayEntry): void => {
      if (e.value !== undefined) out.push([e.key.slice(), q.keysOnly ? null : this.overlay.valueOf(e)]);
    };
    let range = q.range;
    for (;;) {
      // Ask the source for enough to fill the limit even if every buffered entry hides one of its rows.
      const want = q.limit === undefined ? undefined : Math.max(limit - out.length + (ov.length - oi), 32);
      const chunk = range.empty ? [] : await this.base.range(store, { ...q, range, limit: want });
      for (const [k, v] of chunk) {
        while (oi < ov.length && out.length < limit && before(ov[oi].key, k)) emit(ov[oi++]);
        if (out.length >= limit) return out;
        if (oi < ov.length && compareKeys(ov[oi].key, k) === 0) emit(ov[oi++]);
        else if (so.rangeDeletes.length === 0 || !so.deletedByRange(k)) out.push([k, v]);
        if (out.length >= limit) return out;
      }
      if (want === undefined || chunk.length < want) {
        while (oi < ov.length && out.length < limit) emit(ov[oi++]);
        return out;
      }
      // The source had more: continue after its last row.
      const last = chunk[chunk.length - 1][0];
      range = q.reverse
        ? makeRange(range.lower, { key: last, open: true, prefix: false })
        : makeRange({ key: last, open: true }, range.upper);
    }
  }

  async count(store: string, range: NormalRange): Promise<number> {
    if (!this.overlay.has(store)) return this.base.count(store, range);
    const so = this.overlay.stores.get(store)!;
    if (so.rangeDeletes.length > 0) {
      return (await this.range(store, { range, reverse: false, keysOnly: true })).length;
    }
    const ov = this.overlay.sorted(store, range, false);
    let n = await this.base.count(store, range);
    if (ov.length === 0) return n;
    const inBase = await this.base.getMany(store, ov.map((e) => e.key));
    ov.forEach((e, i) => {
      const present = inBase[i] !== undefined;
      if (present && e.value === undefined) n--;
      else if (!present && e.value !== undefined) n++;
    });
    return n;
  }
}

/** Shared by a transaction and its backend: false once `fn` has settled (or the backend saw a foreign await). */
export interface TxState {
  active: boolean;
}

export class ReadTxImpl implements ReadTx {
  constructor(
    protected readonly source: ReadSource,
    protected readonly stores: ReadonlySet<string>,
    protected readonly state: TxState,
  ) {}

  protected check(store: string): void {
    if (!this.state.active) throw new TransactionInactiveError(INACTIVE_MESSAGE);
    checkStore(this.stores, store);
  }

  async get<T = StoredValue>(store: string, key: Key): Promise<T | undefined> {
    this.check(store);
    assertKey(key);
    return (await this.source.get(store, key)) as T | undefined;
  }

  async getMany<T = StoredValue>(store: string, keys: readonly Key[]): Promise<Array<T | undefined>> {
    this.check(store);
    if (!Array.isArray(keys)) throw new TypeError('getMany takes an array of keys');
    keys.forEach(assertKey);
    if (keys.length === 0) return [];
    return (await this.source.getMany(store, keys)) as Array<T | undefined>;
  }

  async range<T = StoredValue>(store: string, options: RangeOptions = {}): Promise<Array<Entry<T>>> {
    this.check(store);
    const range = normaliseRange(options);
    const limit = checkLimit(options.limit);
    if (range.empty || limit === 0) return [];
    return (await this.source.range(store, { range, reverse: !!options.reverse, limit })) as Array<Entry<T>>;
  }

  async count(store: string, range?: KeyRange): Promise<number> {
    this.check(store);
    const r = normaliseRange(range);
    if (r.empty) return 0;
    return this.source.count(store, r);
  }
}

export class WriteTxImpl extends ReadTxImpl implements WriteTx {
  constructor(
    base: ReadSource,
    stores: ReadonlySet<string>,
    state: TxState,
    private readonly overlay: Overlay,
    /** LevelDB has no range delete in a batch: turn `deleteRange` into single deletes of the keys present. */
    private readonly materialiseRangeDeletes: boolean,
  ) {
    super(new OverlayView(base, overlay), stores, state);
  }

  async put(store: string, key: Key, value: StorableValue): Promise<void> {
    this.check(store);
    assertKey(key);
    const { nestedBytes } = checkValue(value);
    // Copy now, as IndexedDB does at put time: later changes by the caller must not leak in.
    const codec = this.overlay.codec;
    if (codec && typeof value === 'object' && value !== null) {
      const encoded = codec.encode(value as StoredValue, nestedBytes);
      this.overlay.set(store, { key: [...key], value: null, nestedBytes, seq: 0, encoded });
      return;
    }
    const copy = (typeof value === 'object' && value !== null ? structuredClone(value) : value) as StoredValue;
    this.overlay.set(store, { key: [...key], value: copy, nestedBytes, seq: 0 });
  }

  async delete(store: string, key: Key): Promise<void> {
    this.check(store);
    assertKey(key);
    this.overlay.set(store, { key: [...key], value: undefined, nestedBytes: false, seq: 0 });
  }

  async deleteRange(store: string, range: KeyRange): Promise<void> {
    this.check(store);
    if (range === undefined || range === null || typeof range !== 'object') {
      throw new TypeError('deleteRange needs a range (use {} to delete the whole store)');
    }
    const r = normaliseRange(range);
    if (r.empty) return;
    if (!this.materialiseRangeDeletes) {
      this.overlay.deleteRange(store, r);
      return;
    }
    const rows = await this.source.range(store, { range: r, reverse: false, keysOnly: true });
    this.check(store);
    for (const [key] of rows) this.overlay.set(store, { key, value: undefined, nestedBytes: false, seq: 0 });
  }
}

/** A FIFO lock: `const release = await mutex.lock(); try { … } finally { release(); }`. */
export class Mutex {
  private locked = false;
  /** Lockers waiting, first in first out; each is handed the lock directly by the release before it. */
  private readonly waiters: Array<() => void> = [];

  /** Uncontended (every sequential request), the lock is taken at once: no promise chain to wait through. */
  lock(): Promise<() => void> {
    if (!this.locked) {
      this.locked = true;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve) => this.waiters.push(() => resolve(this.releaser())));
  }

  /** A release for one holder: calling it again does nothing. */
  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next !== undefined) next();
      else this.locked = false;
    };
  }
}

/** Index of the first entry of `sorted` inside the lower bound (binary search; entries sorted by key). */
export function lowerIndex(sorted: readonly Entry[], range: NormalRange): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (aboveLower(sorted[mid][0], range.lower)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Index just past the last entry of `sorted` inside the upper bound. */
export function upperIndex(sorted: readonly Entry[], range: NormalRange): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (belowUpper(sorted[mid][0], range.upper)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
