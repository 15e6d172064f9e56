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
import { Overlay, ReadTxImpl, WriteTxImpl } from './overlay.js';
import type { ReadSource, SourceQuery, TxState } from './overlay.js';

export interface IdbKvInit extends KvInit {
  /** Defaults to `globalThis.indexedDB`. */
  indexedDB?: IDBFactory;
  /** Defaults to 'strict': `write()` resolves only once the data is flushed to disk. */
  durability?: IDBTransactionDurability;
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

class IdbSource implements ReadSource {
  constructor(
    private readonly tx: Tx,
    private readonly keyRange: typeof IDBKeyRange,
    private readonly fail: (err: unknown) => unknown,
  ) {}

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
    return this.run(() => this.tx.objectStore(store).get(key as KeyPart[]));
  }

  getMany(store: string, keys: readonly Key[]): Promise<Array<StoredValue | undefined>> {
    return this.run(() => {
      const os = this.tx.objectStore(store);
      return Promise.all(keys.map((k) => os.get(k as KeyPart[])));
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
  private closeReason = 'the IndexedDB database is closed';
  private readonly writes = new Set<Promise<unknown>>();

  constructor(
    private readonly db: IDBPDatabase,
    private readonly keyRange: typeof IDBKeyRange,
    stores: readonly string[],
    durability: IDBTransactionDurability,
  ) {
    this.stores = stores;
    this.storeSet = new Set(stores);
    this.durability = durability;
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

  private transaction(mode: IDBTransactionMode): Tx {
    this.ensureOpen();
    try {
      return this.db.transaction([...this.stores], mode, { durability: mode === 'readwrite' ? this.durability : 'default' });
    } catch (err) {
      throw mapError(err, this.isClosed);
    }
  }

  async read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T> {
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

  async write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
    const tx = this.transaction('readwrite');
    const done = tx.done;
    done.catch(() => undefined);
    const state: TxState = { active: true };
    const overlay = new Overlay();
    const fail = (err: unknown): unknown => mapError(err, this.isClosed);
    const source = new IdbSource(tx, this.keyRange, fail);
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
      return result;
    })();
    this.writes.add(work);
    try {
      return await work;
    } finally {
      this.writes.delete(work);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.writes]);
    this.db.close();
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
  return new IdbKv(wrap(raw!), keyRange, stores, init.durability ?? 'strict');
}
