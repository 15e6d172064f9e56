/**
 * LevelDB backend for the Node peer (`hearth serve`), through classic-level (prebuilt binaries in the npm package).
 * Node only: the one file under src/storage that may use Node built-ins.
 *
 * Layout: one LevelDB; every row's key is the tuple encoding (tuple-key.ts) of [store, ...key], so bytewise order
 * inside a store equals the contract's key order.
 * Values: a first byte says how the rest is encoded —
 *   0x01 UTF-8 JSON; 0x02 raw bytes (a top-level Uint8Array); 0x03 UTF-8 JSON in which nested Uint8Arrays are
 *   {"\u0000": base64} and object keys starting with "\u0000" get one more "\u0000" (so nothing is ambiguous).
 *
 * Transactions:
 * - `read(fn)` reads from a LevelDB snapshot taken at the start: never blocked by writers, never sees half a write.
 * - `write(fn)`: `fn`s run one at a time (an async mutex). Reads inside see, newest first: the transaction's own
 *   buffered writes → writes of earlier transactions not yet on disk (`pending`) → the database.
 * - Group commit: when `fn` returns, its writes go into a queue and the next `fn` may start at once. One sync
 *   batch is in flight at a time; everything queued meanwhile goes out as the next single
 *   `batch(…, { sync: true })` (after one `setImmediate`, so that writers resumed by the previous batch can
 *   join: a sync costs about the same for one transaction as for fifty). Each `write()` resolves only after the batch holding its writes has landed, so
 *   "resolved" still means "durable", and `read()`s see only landed data. If a batch fails, its transactions,
 *   everything queued after it and the transaction running at the time (which may have read the lost data) reject.
 */
import { ClassicLevel } from 'classic-level';
import {
  QuotaExceededError,
  StorageClosedError,
  StorageError,
  declaredStores,
} from './kv.js';
import type { Entry, Key, KeyPart, Kv, KvInit, NormalRange, ReadTx, StoredValue, WriteTx } from './kv.js';
import { Mutex, Overlay, OverlayView, ReadTxImpl, WriteTxImpl } from './overlay.js';
import type { ReadSource, SourceQuery, TxState } from './overlay.js';
import { PREFIX_END, decodeKey, encodeKey } from './tuple-key.js';

export interface LevelKvInit extends KvInit {
  /** Merge queued write transactions into one sync batch (default true). False: one sync batch per write(). */
  groupCommit?: boolean;
}

type Db = ClassicLevel<Uint8Array, Uint8Array>;
type Snapshot = ReturnType<Db['snapshot']>;
type BatchOp = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array };

const JSON_TAG = 0x01;
const BYTES_TAG = 0x02;
const TAGGED_JSON_TAG = 0x03;
const ESC = '\u0000';

/** Encodes a value that passed `checkValue`. */
export function encodeValue(value: StoredValue, nestedBytes: boolean): Uint8Array {
  if (value instanceof Uint8Array) {
    const out = Buffer.allocUnsafe(value.length + 1);
    out[0] = BYTES_TAG;
    out.set(value, 1);
    return out;
  }
  if (!nestedBytes) return Buffer.from('\u0001' + JSON.stringify(value), 'utf8');
  return Buffer.from('\u0003' + JSON.stringify(escapeBytes(value)), 'utf8');
}

function escapeBytes(v: StoredValue): unknown {
  if (v instanceof Uint8Array) return { [ESC]: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  if (Array.isArray(v)) return v.map(escapeBytes);
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k.startsWith(ESC) ? ESC + k : k] = escapeBytes(x);
    return out;
  }
  return v;
}

function unescapeBytes(_key: string, v: unknown): unknown {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
  const keys = Object.keys(v);
  if (keys.length === 1 && keys[0] === ESC) {
    const b = Buffer.from((v as Record<string, string>)[ESC], 'base64');
    return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  }
  if (!keys.some((k) => k.startsWith(ESC))) return v;
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k.startsWith(ESC) ? k.slice(1) : k] = (v as Record<string, unknown>)[k];
  return out;
}

export function decodeValue(bytes: Uint8Array): StoredValue {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (buf[0]) {
    case JSON_TAG:
      return JSON.parse(buf.toString('utf8', 1)) as StoredValue;
    case BYTES_TAG:
      return new Uint8Array(buf.subarray(1));
    case TAGGED_JSON_TAG:
      return JSON.parse(buf.toString('utf8', 1), unescapeBytes) as StoredValue;
    default:
      throw new StorageError(`unknown value encoding 0x${(buf[0] ?? 0).toString(16)}`);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function mapError(err: unknown): unknown {
  if (err instanceof StorageError || err instanceof TypeError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const causeCode = (err as { cause?: { code?: unknown } } | null)?.cause?.code;
  const message = String((err as { message?: unknown } | null)?.message ?? err);
  const causeMessage = String((err as { cause?: { message?: unknown } } | null)?.cause?.message ?? '');
  if (code === 'LEVEL_LOCKED' || causeCode === 'LEVEL_LOCKED') {
    return new StorageError('the LevelDB database is locked: another process (or instance) has it open', { cause: err });
  }
  if (/No space left|ENOSPC/i.test(message + causeMessage)) {
    return new QuotaExceededError('the disk is full: LevelDB could not write', { cause: err });
  }
  if (code === 'LEVEL_DATABASE_NOT_OPEN') return new StorageClosedError('the LevelDB database is not open', { cause: err });
  return new StorageError(`LevelDB failed: ${message}`, { cause: err });
}

interface Queued {
  ops: BatchOp[];
  seq: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class LevelKv implements Kv {
  readonly kind = 'level';
  readonly stores: readonly string[];
  private readonly storeSet: ReadonlySet<string>;
  private readonly prefixes = new Map<string, Uint8Array>();
  private readonly mutex = new Mutex();
  /** Writes of transactions whose `fn` has returned but whose batch has not landed yet. */
  private readonly pending = new Overlay();
  private readonly pendingView: OverlayView;
  private readonly queue: Queued[] = [];
  /** Whether `flushLoop` is running (set and cleared synchronously with the queue check: no entry is missed). */
  private flushActive = false;
  private flushed: Promise<void> = Promise.resolve();
  private seq = 0;
  /** Bumped when a batch fails, to reject the transaction that was running on top of the lost writes. */
  private epoch = 0;
  private closing = false;
  private readonly reads = new Set<Promise<unknown>>();

  constructor(
    private readonly db: Db,
    stores: readonly string[],
    private readonly groupCommit: boolean,
  ) {
    this.stores = stores;
    this.storeSet = new Set(stores);
    for (const s of stores) this.prefixes.set(s, encodeKey([s]));
    this.pendingView = new OverlayView(new LevelSource(this, undefined), this.pending);
  }

  /** @internal */
  get database(): Db {
    return this.db;
  }

  /** @internal full LevelDB key of a row */
  rowKey(store: string, key: Key): Uint8Array {
    return concat(this.prefixes.get(store)!, encodeKey(key));
  }

  /** @internal decodes a row key back to the contract's key (without the store). */
  userKey(store: string, row: Uint8Array): KeyPart[] {
    return decodeKey(row, this.prefixes.get(store)!.length);
  }

  /** @internal LevelDB iterator bounds for a store and range. */
  bounds(store: string, r: NormalRange): { gt?: Uint8Array; gte?: Uint8Array; lt?: Uint8Array; lte?: Uint8Array } {
    const prefix = this.prefixes.get(store)!;
    const out: { gt?: Uint8Array; gte?: Uint8Array; lt?: Uint8Array; lte?: Uint8Array } = {};
    if (r.lower) out[r.lower.open ? 'gt' : 'gte'] = this.rowKey(store, r.lower.key);
    else out.gte = prefix;
    if (!r.upper) out.lt = concat(prefix, Uint8Array.of(PREFIX_END));
    else if (r.upper.prefix) out.lt = concat(this.rowKey(store, r.upper.key), Uint8Array.of(PREFIX_END));
    else out[r.upper.open ? 'lt' : 'lte'] = this.rowKey(store, r.upper.key);
    return out;
  }

  private ensureOpen(): void {
    if (this.closing) throw new StorageClosedError('the LevelDB database is closed');
  }

  async read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T> {
    this.ensureOpen();
    let snapshot: Snapshot;
    try {
      snapshot = this.db.snapshot();
    } catch (err) {
      throw mapError(err);
    }
    const state: TxState = { active: true };
    const work = (async () => {
      try {
        return await fn(new ReadTxImpl(new LevelSource(this, snapshot), this.storeSet, state));
      } finally {
        state.active = false;
        await snapshot.close().catch(() => undefined);
      }
    })();
    this.reads.add(work);
    try {
      return await work;
    } finally {
      this.reads.delete(work);
    }
  }

  async write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
    this.ensureOpen();
    const release = await this.mutex.lock();
    let landed: Promise<void>;
    let result: T;
    try {
      const epoch = this.epoch;
      const overlay = new Overlay();
      const state: TxState = { active: true };
      try {
        result = await fn(new WriteTxImpl(this.pendingView, this.storeSet, state, overlay, true));
      } finally {
        state.active = false;
      }
      if (epoch !== this.epoch) {
        throw new StorageError('an earlier write failed while this transaction ran on top of it; nothing was written');
      }
      landed = this.enqueue(overlay);
      if (!this.groupCommit) await landed;
    } finally {
      release();
    }
    await landed;
    return result;
  }

  /** Moves a finished transaction's writes into `pending` and the commit queue; resolves once they are on disk. */
  private enqueue(overlay: Overlay): Promise<void> {
    const seq = ++this.seq;
    const ops: BatchOp[] = [];
    for (const [store, so] of overlay.stores) {
      for (const e of so.entries.values()) {
        const key = this.rowKey(store, e.key);
        if (e.value === undefined) ops.push({ type: 'del', key });
        else ops.push({ type: 'put', key, value: encodeValue(e.value, e.nestedBytes) });
        this.pending.set(store, { ...e, seq });
      }
    }
    // A write() that wrote nothing still waits for the batches before it: it may have read their data.
    const landed = new Promise<void>((resolve, reject) => this.queue.push({ ops, seq, resolve, reject }));
    if (!this.flushActive) {
      this.flushActive = true;
      this.flushed = this.flushLoop();
    }
    return landed;
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        // Let writers that are about to enqueue (e.g. the ones the last batch just resumed) join this batch:
        // a sync costs the same for one transaction or fifty.
        if (this.groupCommit) await new Promise<void>((resolve) => setImmediate(resolve));
        const group = this.queue.splice(0);
        const ops = group.length === 1 ? group[0].ops : group.flatMap((g) => g.ops);
        try {
          if (ops.length > 0) await this.db.batch(ops, { sync: true });
        } catch (err) {
          const failure = mapError(err);
          this.epoch++;
          const rest = this.queue.splice(0);
          this.pending.clear();
          for (const g of [...group, ...rest]) g.reject(failure);
          continue;
        }
        this.pending.removeUpTo(group[group.length - 1].seq);
        for (const g of group) g.resolve();
      }
    } finally {
      this.flushActive = false;
    }
  }

  /** Waits for queued writes and running reads, then closes LevelDB. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const release = await this.mutex.lock();
    try {
      while (this.flushActive) await this.flushed;
      await Promise.allSettled([...this.reads]);
      await this.db.close();
    } finally {
      release();
    }
  }
}

class LevelSource implements ReadSource {
  constructor(
    private readonly kv: LevelKv,
    private readonly snapshot: Snapshot | undefined,
  ) {}

  private get opts(): { snapshot?: Snapshot } {
    return this.snapshot ? { snapshot: this.snapshot } : {};
  }

  async get(store: string, key: Key): Promise<StoredValue | undefined> {
    try {
      const v = await this.kv.database.get(this.kv.rowKey(store, key), this.opts);
      return v === undefined ? undefined : decodeValue(v);
    } catch (err) {
      throw mapError(err);
    }
  }

  async getMany(store: string, keys: readonly Key[]): Promise<Array<StoredValue | undefined>> {
    try {
      const vs = await this.kv.database.getMany(
        keys.map((k) => this.kv.rowKey(store, k)),
        this.opts,
      );
      return vs.map((v) => (v === undefined ? undefined : decodeValue(v)));
    } catch (err) {
      throw mapError(err);
    }
  }

  async range(store: string, q: SourceQuery): Promise<Entry[]> {
    const options = { ...this.kv.bounds(store, q.range), reverse: q.reverse, limit: q.limit ?? -1, ...this.opts };
    try {
      if (q.keysOnly) {
        const keys = await this.kv.database.keys(options).all();
        return keys.map((k): Entry => [this.kv.userKey(store, k), null]);
      }
      const rows = await this.kv.database.iterator(options).all();
      return rows.map(([k, v]): Entry => [this.kv.userKey(store, k), decodeValue(v)]);
    } catch (err) {
      throw mapError(err);
    }
  }

  async count(store: string, range: NormalRange): Promise<number> {
    const it = this.kv.database.keys({ ...this.kv.bounds(store, range), ...this.opts });
    let n = 0;
    try {
      for (;;) {
        const chunk = await it.nextv(1024);
        if (chunk.length === 0) break;
        n += chunk.length;
      }
    } catch (err) {
      throw mapError(err);
    } finally {
      await it.close();
    }
    return n;
  }
}

/** Opens (creating if missing) a LevelDB database in the directory `init.name`. */
export async function openLevelKv(init: LevelKvInit): Promise<LevelKv> {
  const stores = declaredStores(init.stores);
  const db: Db = new ClassicLevel<Uint8Array, Uint8Array>(init.name, { keyEncoding: 'view', valueEncoding: 'view' });
  try {
    await db.open();
  } catch (err) {
    throw mapError(err);
  }
  return new LevelKv(db, stores, init.groupCommit ?? true);
}
