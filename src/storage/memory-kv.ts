/**
 * In-memory backend, for fast unit tests of the layers above storage. Same contract and same shared test suite
 * as the IndexedDB and LevelDB backends; nothing survives `close()`.
 *
 * It enforces IndexedDB's transaction-lifetime rule the way IndexedDB does: its operations settle within
 * microtasks, so if `fn` is still pending when a macrotask (a timer) runs, `fn` must be awaiting something other
 * than the transaction. From then on the transaction is inactive: its operations throw, and a write transaction
 * that buffered writes rejects with TransactionInactiveError and writes nothing. Unit tests on this backend thus
 * catch code that would break in the browser.
 *
 * Each store is an immutable sorted array; a commit replaces the arrays it changes, so a reader holding the old
 * state sees a consistent snapshot (copy-on-write: fine for tests, O(n) per changed store per commit).
 */
import { INACTIVE_MESSAGE, StorageClosedError, TransactionInactiveError, compareKeys, declaredStores, inRange } from './kv.js';
import type { Entry, Key, Kv, KvInit, NormalRange, ReadTx, StoredValue, WriteTx } from './kv.js';
import { Mutex, Overlay, ReadTxImpl, WriteTxImpl, lowerIndex, upperIndex } from './overlay.js';
import type { OverlayEntry, ReadSource, SourceQuery, TxState } from './overlay.js';

type State = ReadonlyMap<string, readonly Entry[]>;

function copyOut(value: StoredValue): StoredValue {
  return typeof value === 'object' && value !== null ? structuredClone(value) : value;
}

function findIndex(sorted: readonly Entry[], key: Key): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareKeys(sorted[mid][0], key);
    if (c === 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

class MemorySource implements ReadSource {
  constructor(private readonly state: State) {}

  private rows(store: string): readonly Entry[] {
    return this.state.get(store) ?? [];
  }

  async get(store: string, key: Key): Promise<StoredValue | undefined> {
    const rows = this.rows(store);
    const i = findIndex(rows, key);
    return i < 0 ? undefined : copyOut(rows[i][1]);
  }

  async getMany(store: string, keys: readonly Key[]): Promise<Array<StoredValue | undefined>> {
    const rows = this.rows(store);
    return keys.map((key) => {
      const i = findIndex(rows, key);
      return i < 0 ? undefined : copyOut(rows[i][1]);
    });
  }

  async range(store: string, q: SourceQuery): Promise<Entry[]> {
    const rows = this.rows(store);
    const from = lowerIndex(rows, q.range);
    const to = upperIndex(rows, q.range);
    const n = Math.min(to - from, q.limit ?? Infinity);
    const out: Entry[] = [];
    for (let j = 0; j < n; j++) {
      const [k, v] = rows[q.reverse ? to - 1 - j : from + j];
      out.push([k.slice(), q.keysOnly ? null : copyOut(v)]);
    }
    return out;
  }

  async count(store: string, range: NormalRange): Promise<number> {
    const rows = this.rows(store);
    return Math.max(0, upperIndex(rows, range) - lowerIndex(rows, range));
  }
}

/** Applies a committed overlay to a store's sorted rows (a linear merge). */
function applyToRows(rows: readonly Entry[], rangeDeletes: readonly NormalRange[], sorted: OverlayEntry[]): Entry[] {
  const base = rangeDeletes.length === 0 ? rows : rows.filter(([k]) => !rangeDeletes.some((r) => inRange(k, r)));
  const out: Entry[] = [];
  let i = 0;
  for (const e of sorted) {
    while (i < base.length && compareKeys(base[i][0], e.key) < 0) out.push(base[i++]);
    if (i < base.length && compareKeys(base[i][0], e.key) === 0) i++;
    if (e.value !== undefined) out.push([e.key, e.value]);
  }
  while (i < base.length) out.push(base[i++]);
  return out;
}

export class MemoryKv implements Kv {
  readonly kind = 'memory';
  readonly stores: readonly string[];
  private readonly storeSet: ReadonlySet<string>;
  private state: State = new Map();
  private readonly mutex = new Mutex();
  private closed = false;

  constructor(init: KvInit) {
    this.stores = declaredStores(init.stores);
    this.storeSet = new Set(this.stores);
  }

  async read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T> {
    this.ensureOpen();
    const state: TxState = { active: true };
    const tx = new ReadTxImpl(new MemorySource(this.state), this.storeSet, state);
    const settled = watchLifetime(state);
    try {
      return await fn(tx);
    } finally {
      settled();
    }
  }

  async write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
    this.ensureOpen();
    const release = await this.mutex.lock();
    try {
      const overlay = new Overlay();
      const state: TxState = { active: true };
      const tx = new WriteTxImpl(new MemorySource(this.state), this.storeSet, state, overlay, false);
      const settled = watchLifetime(state);
      let result: T;
      let wasActive: boolean;
      try {
        result = await fn(tx);
      } finally {
        wasActive = state.active;
        settled();
      }
      if (overlay.isEmpty()) return result;
      if (!wasActive) throw new TransactionInactiveError(INACTIVE_MESSAGE);
      const next = new Map(this.state);
      for (const [name, so] of overlay.stores) {
        if (!overlay.has(name)) continue;
        const sorted = overlay.sorted(name, { empty: false }, false);
        next.set(name, applyToRows(this.state.get(name) ?? [], so.rangeDeletes, sorted));
      }
      this.state = next;
      return result;
    } finally {
      release();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const release = await this.mutex.lock();
    release();
    this.state = new Map();
  }

  private ensureOpen(): void {
    if (this.closed) throw new StorageClosedError('the memory database is closed');
  }
}

/**
 * Marks the transaction inactive if `fn` is still running when a timer fires (see module comment). Returns the
 * function to call once `fn` has settled.
 */
function watchLifetime(state: TxState): () => void {
  const timer = setTimeout(() => (state.active = false), 0);
  return () => {
    clearTimeout(timer);
    state.active = false;
  };
}

/** Opens an in-memory database. `name` is informational. */
export async function openMemoryKv(init: KvInit): Promise<MemoryKv> {
  return new MemoryKv(init);
}
