/**
 * IndexedDB backend (browser, service worker), through the `idb` promise wrapper.
 *
 * - One object store per declared store, keys out-of-line: our key tuples are IndexedDB array keys as they are,
 *   so IndexedDB's own order is the contract's order.
 * - A transaction spans every store (the contract does not ask `fn` which stores it will touch); so readwrite
 *   transactions run one at a time and a reader waits only for the writers that started before it.
 * - Writes are buffered (overlay.ts) and issued in one go after `fn` returns, then we wait for `complete`.
 *   A caller that awaits something foreign inside `fn` lets IndexedDB auto-commit an empty transaction; the flush
 *   then fails and we reject with TransactionInactiveError — never a partial write.
 * - Durability 'strict' (Chromium defaults to 'relaxed', which may lose the last writes on power loss).
 * - Row cache (option `cache`, for a connection that is its database's only writer — the service worker holds the
 *   instance lock): committed rows, and rows reads found (or found absent), stay in memory (value-cache.ts), so a
 *   `get` of a hot row (the stream position, a push-rules record, the event /sync is about to send) needs no
 *   request — each is a round trip to the browser's storage process. It stays exact because every change goes
 *   through this object: write transactions run one at a time (a mutex; IndexedDB ran them one at a time anyway,
 *   their scopes overlap) and update the cache once their transaction is complete. A read that starts while no write
 *   is running or waiting answers from the cache and opens an IndexedDB transaction only at its first miss; writes
 *   wait for such reads to end before opening theirs, so nothing commits under a read's feet. A read that starts
 *   while a write is running ignores the cache and opens its transaction at once, as without the cache (IndexedDB
 *   then orders it before or after that write, either consistent).
 * - Stores are created at open: if a declared store is missing we reopen with version + 1 and create it. We
 *   never delete a store. When another context upgrades the database we close ours (StorageClosedError after).
 *
 * `idb` checks values with `instanceof IDBDatabase` etc., so the IndexedDB classes must be globals (they are in
 * browsers; in Node tests, import 'fake-indexeddb/auto').
 */
import { unwrap, wrap } from 'idb';
import type { IDBPDatabase, IDBPTransaction } from 'idb';
import {
  INACTIVE_MESSAGE,
  QuotaExceededError,
  StorageClosedError,
  StorageError,
  TransactionInactiveError,
  declaredStores,
} from './kv.js';
import type { Entry, Key, KeyPart, Kv, KvInit, NormalRange, ReadTx, StoredValue, WriteTx } from './kv.js';
import { Mutex, Overlay, ReadTxImpl, WriteTxImpl } from './overlay.js';
import type { ReadSource, SourceQuery, TxState } from './overlay.js';
import { ValueCache } from './value-cache.js';

export interface IdbKvInit extends KvInit {
  /** Defaults to `globalThis.indexedDB`. */
  indexedDB?: IDBFactory;
  /** Defaults to 'strict': `write()` resolves only once the data is flushed to disk. */
  durability?: IDBTransactionDurability;
  /**
   * Keep a row cache (see the module comment). Only for a connection that is the only writer of its database:
   * writes by another connection (another tab, another worker) would not be seen. Default false.
   */
  cache?: boolean;
}

type Tx = IDBPTransaction<unknown, string[], IDBTransactionMode>;

/** Turns an IndexedDB failure into one of the contract's named errors. */
function mapError(err: unknown, closed: () => boolean): unknown {
  if (err instanceof StorageError || err instanceof TypeError) return err;
  const name = (err as { name?: unknown } | null)?.name;
  const message = (err as { message?: unknown } | null)?.message;
  if (closed()) return new StorageClosedError('the IndexedDB database is closed', { cause: err });
  switch (name) {
    case 'QuotaExceededError':
      return new QuotaExceededError('the browser refused to store more data (storage quota exceeded)', { cause: err });
    case 'TransactionInactiveError':
    case 'InvalidStateError': // objectStore() on a finished transaction
      return new TransactionInactiveError(INACTIVE_MESSAGE, { cause: err });
    default:
      return new StorageError(`IndexedDB failed: ${String(name)}: ${String(message)}`, { cause: err });
  }
}

function copyOut(value: StoredValue | undefined): StoredValue | undefined {
  return typeof value === 'object' && value !== null ? structuredClone(value) : value;
}

class IdbSource implements ReadSource {
  private current: Tx | undefined;

  private readonly open: (() => Tx) | undefined;

  /**
   * `tx`: the transaction, or a function that opens it at the first request (a read that started on the cache).
   * `cache`: answers gets first, and takes what gets find in IndexedDB — so pass it only where IndexedDB shows this
   * source the committed state the cache holds (a write transaction, a read that started on the cache).
   */
  constructor(
    tx: Tx | (() => Tx),
    private readonly keyRange: typeof IDBKeyRange,
    private readonly fail: (err: unknown) => unknown,
    private readonly cache?: ValueCache,
  ) {
    if (typeof tx === 'function') this.open = tx;
    else this.current = tx;
  }

  /** The IndexedDB transaction, if one was opened. */
  get opened(): Tx | undefined {
    return this.current;
  }

  private get tx(): Tx {
    this.current ??= this.open!();
    return this.current;
  }

  private async run<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw this.fail(err);
    }
  }

  private idbRange(r: NormalRange): IDBKeyRange | null {
    const lower = r.lower?.key;
    // "Every extension of P" ends below [...P, []]: an array sorts after every number and string.
    const upper = r.upper ? (r.upper.prefix ? [...r.upper.key, []] : r.upper.key) : undefined;
    const upperOpen = r.upper ? r.upper.prefix || r.upper.open : false;
    if (lower !== undefined && upper !== undefined) return this.keyRange.bound(lower, upper, r.lower!.open, upperOpen);
    if (lower !== undefined) return this.keyRange.lowerBound(lower, r.lower!.open);
    if (upper !== undefined) return this.keyRange.upperBound(upper, upperOpen);
    return null;
  }

  get(store: string, key: Key): Promise<StoredValue | undefined> {
    const hit = this.cache?.get(store, key);
    if (hit) return Promise.resolve(copyOut(hit.value));
    return this.run(async () => {
      const v = (await this.tx.objectStore(store).get(key as KeyPart[])) as StoredValue | undefined;
      this.cache?.set(store, key, copyOut(v));
      return v;
    });
  }

  getMany(store: string, keys: readonly Key[]): Promise<Array<StoredValue | undefined>> {
    const out = new Array<StoredValue | undefined>(keys.length);
    const miss: number[] = [];
    keys.forEach((k, i) => {
      const hit = this.cache?.get(store, k);
      if (hit) out[i] = copyOut(hit.value);
      else miss.push(i);
    });
    if (miss.length === 0) return Promise.resolve(out);
    return this.run(async () => {
      const os = this.tx.objectStore(store);
      const got = (await Promise.all(miss.map((i) => os.get(keys[i] as KeyPart[])))) as Array<StoredValue | undefined>;
      miss.forEach((i, j) => {
        out[i] = got[j];
        this.cache?.set(store, keys[i], copyOut(got[j]));
      });
      return out;
    });
  }

  range(store: string, q: SourceQuery): Promise<Entry[]> {
    return this.run(async () => {
      const os = this.tx.objectStore(store);
      const range = this.idbRange(q.range);
      if (!q.reverse) {
        const [keys, values] = await Promise.all([
          os.getAllKeys(range, q.limit),
          q.keysOnly ? undefined : os.getAll(range, q.limit),
        ]);
        return keys.map((k, i): Entry => [k as KeyPart[], values ? values[i] : null]);
      }
      const out: Entry[] = [];
      const limit = q.limit ?? Infinity;
      if (q.keysOnly) {
        let cursor = await os.openKeyCursor(range, 'prev');
        while (cursor && out.length < limit) {
          out.push([cursor.primaryKey as KeyPart[], null]);
          if (out.length < limit) cursor = await cursor.continue();
        }
      } else {
        let cursor = await os.openCursor(range, 'prev');
        while (cursor && out.length < limit) {
          out.push([cursor.primaryKey as KeyPart[], cursor.value as StoredValue]);
          if (out.length < limit) cursor = await cursor.continue();
        }
      }
      return out;
    });
  }

  count(store: string, range: NormalRange): Promise<number> {
    return this.run(() => this.tx.objectStore(store).count(this.idbRange(range) ?? undefined));
  }

  /** Issues the buffered writes without waiting for each (the transaction's completion reports any failure). */
  flush(overlay: Overlay): void {
    for (const [name, so] of overlay.stores) {
      const os = unwrap(this.tx.objectStore(name));
      for (const r of so.rangeDeletes) {
        const range = this.idbRange(r);
        if (range) os.delete(range);
        else os.clear();
      }
      for (const e of so.entries.values()) {
        if (e.value === undefined) os.delete(e.key);
        else os.put(e.value, e.key);
      }
    }
  }
}

function openRaw(factory: IDBFactory, name: string, version: number | undefined, stores: readonly string[]): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    let req: IDBOpenDBRequest;
    try {
      req = version === undefined ? factory.open(name) : factory.open(name, version);
    } catch (err) {
      reject(err);
      return;
    }
    req.onupgradeneeded = () => {
      const db = req.result;
      for (const s of stores) if (!db.objectStoreNames.contains(s)) db.createObjectStore(s);
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
    // onblocked: other connections get `versionchange` and close themselves (see IdbKv); we keep waiting.
  });
}

export class IdbKv implements Kv {
  readonly kind = 'idb';
  readonly stores: readonly string[];
  private readonly storeSet: ReadonlySet<string>;
  private readonly durability: IDBTransactionDurability;
  private closed = false;
  /** close() was called: new calls are refused while the ones made before it finish. */
  private closing = false;
  private closeReason = 'the IndexedDB database is closed';
  private readonly writes = new Set<Promise<unknown>>();
  private readonly cache: ValueCache | undefined;
  private readonly mutex = new Mutex();
  /** write() calls not finished (running or waiting for the mutex): reads then skip the cache. */
  private writers = 0;
  /** Reads answering from the cache; a write opens its transaction only once there are none. */
  private cacheReads = 0;
  private cacheReadsDone: Array<() => void> = [];

  constructor(
    private readonly db: IDBPDatabase,
    private readonly keyRange: typeof IDBKeyRange,
    stores: readonly string[],
    durability: IDBTransactionDurability,
    cache = false,
  ) {
    this.stores = stores;
    this.storeSet = new Set(stores);
    this.durability = durability;
    this.cache = cache ? new ValueCache() : undefined;
    db.addEventListener('versionchange', () => {
      this.closeReason = 'the IndexedDB database was closed because another context (tab) upgraded it; reload';
      this.closed = true;
      db.close();
    });
    db.addEventListener('close', () => {
      this.closeReason = 'the browser closed the IndexedDB database (storage cleared or failed)';
      this.closed = true;
    });
  }

  private readonly isClosed = (): boolean => this.closed;

  private ensureOpen(): void {
    if (this.closed) throw new StorageClosedError(this.closeReason);
  }

  /** For new calls: refused once close() has begun (calls made before it still run). */
  private ensureAccepting(): void {
    if (this.closing) throw new StorageClosedError('the IndexedDB database is closed');
    this.ensureOpen();
  }

  private transaction(mode: IDBTransactionMode): Tx {
    this.ensureOpen();
    try {
      return this.db.transaction([...this.stores], mode, { durability: mode === 'readwrite' ? this.durability : 'default' });
    } catch (err) {
      throw mapError(err, this.isClosed);
    }
  }

  async read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T> {
    this.ensureAccepting();
    if (this.cache && this.writers === 0) return this.readCached(fn, this.cache);
    const tx = this.transaction('readonly');
    tx.done.catch(() => undefined);
    const state: TxState = { active: true };
    const source = new IdbSource(tx, this.keyRange, (err) => mapError(err, this.isClosed));
    try {
      return await fn(new ReadTxImpl(source, this.storeSet, state));
    } finally {
      state.active = false;
    }
  }

  /**
   * A read on the cache, opening an IndexedDB transaction at its first miss. No write opens a transaction while it
   * runs (see `write`), so the cache and IndexedDB show it the same committed state. It ends — and stops holding
   * writes back — when `fn` settles, or when `fn` is found awaiting something foreign: still pending when a timer
   * fires with no transaction open, or when its transaction has completed.
   */
  private async readCached<T>(fn: (tx: ReadTx) => Promise<T>, cache: ValueCache): Promise<T> {
    this.ensureOpen();
    this.cacheReads++;
    let ended = false;
    const state: TxState = { active: true };
    const end = (): void => {
      state.active = false;
      if (ended) return;
      ended = true;
      if (--this.cacheReads === 0) for (const resolve of this.cacheReadsDone.splice(0)) resolve();
    };
    const source = new IdbSource(
      () => {
        const tx = this.transaction('readonly');
        tx.done.then(end, end);
        return tx;
      },
      this.keyRange,
      (err) => mapError(err, this.isClosed),
      cache,
    );
    const timer = setTimeout(() => {
      if (!source.opened) end();
    }, 0);
    try {
      return await fn(new ReadTxImpl(source, this.storeSet, state));
    } finally {
      clearTimeout(timer);
      end();
    }
  }

  /** Resolves once no read is answering from the cache. */
  private cacheReadsEnded(): Promise<void> | undefined {
    if (this.cacheReads === 0) return undefined;
    return new Promise((resolve) => this.cacheReadsDone.push(resolve));
  }

  async write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
    this.ensureAccepting();
    const work = this.cache ? this.writeSerial(fn, this.cache) : this.writeTx(fn, undefined);
    this.writes.add(work);
    try {
      return await work;
    } finally {
      this.writes.delete(work);
    }
  }

  /** A write with the cache: one at a time, and only once no read is on the cache. */
  private async writeSerial<T>(fn: (tx: WriteTx) => Promise<T>, cache: ValueCache): Promise<T> {
    this.writers++;
    try {
      const release = await this.mutex.lock();
      try {
        await this.cacheReadsEnded();
        return await this.writeTx(fn, cache);
      } finally {
        release();
      }
    } finally {
      this.writers--;
    }
  }

  /** One write transaction; with the cache, the caller holds the mutex and no read is on the cache. */
  private async writeTx<T>(fn: (tx: WriteTx) => Promise<T>, cache: ValueCache | undefined): Promise<T> {
    const tx = this.transaction('readwrite');
    const done = tx.done;
    done.catch(() => undefined);
    const state: TxState = { active: true };
    const overlay = new Overlay();
    const fail = (err: unknown): unknown => mapError(err, this.isClosed);
    const source = new IdbSource(tx, this.keyRange, fail, cache);
    const abort = async (): Promise<void> => {
      try {
        tx.abort();
      } catch {
        // already finished
      }
      await done.catch(() => undefined);
    };
    const work = (async () => {
      let result: T;
      try {
        result = await fn(new WriteTxImpl(source, this.storeSet, state, overlay, false));
      } catch (err) {
        state.active = false;
        await abort();
        throw err;
      }
      state.active = false;
      try {
        source.flush(overlay);
      } catch (err) {
        await abort();
        throw fail(err);
      }
      try {
        await done;
      } catch (err) {
        throw fail(tx.error ?? err);
      }
      if (cache) applyToCache(cache, overlay);
      return result;
    })();
    return work;
  }

  async close(): Promise<void> {
    if (this.closed || this.closing) return;
    this.closing = true;
    await Promise.allSettled([...this.writes]);
    this.closed = true;
    this.cache?.clear();
    this.db.close();
  }
}

/** A committed transaction's writes, into the cache (the overlay's values are its own copies: nobody else has them). */
function applyToCache(cache: ValueCache, overlay: Overlay): void {
  for (const [store, so] of overlay.stores) {
    for (const r of so.rangeDeletes) cache.forgetRange(store, r);
    for (const e of so.entries.values()) cache.set(store, e.key, e.value);
  }
}

/** Opens (creating or upgrading as needed) an IndexedDB database with the declared stores. */
export async function openIdbKv(init: IdbKvInit): Promise<IdbKv> {
  const factory = init.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  const keyRange = (globalThis as { IDBKeyRange?: typeof IDBKeyRange }).IDBKeyRange;
  if (!factory || !keyRange) throw new StorageError('IndexedDB is not available here');
  const stores = declaredStores(init.stores);
  const closed = (): boolean => false;
  let raw: IDBDatabase | undefined;
  // Another context may upgrade between our two opens (VersionError): try again a few times.
  for (let attempt = 0; attempt < 5 && !raw; attempt++) {
    try {
      let db = await openRaw(factory, init.name, undefined, stores);
      const missing = stores.filter((s) => !db.objectStoreNames.contains(s));
      if (missing.length > 0) {
        const version = db.version + 1;
        db.close();
        db = await openRaw(factory, init.name, version, stores);
      }
      raw = db;
    } catch (err) {
      if ((err as { name?: unknown } | null)?.name === 'VersionError' && attempt < 4) continue;
      throw mapError(err, closed);
    }
  }
  return new IdbKv(wrap(raw!), keyRange, stores, init.durability ?? 'strict', init.cache ?? false);
}
