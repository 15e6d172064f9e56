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
 * - `writeOrdered(fn)` is `write` without the wait: it resolves once the transaction is queued (later writers see
 *   it) and hands back the `durable` promise, so a caller with its own ordering can prepare the next transaction
 *   while this one's batch syncs.
 *
 * Row cache: rows of landed batches (and rows write transactions read) stay in a small bounded cache, tagged with the
 * commit that wrote them. A hot key — the stream position, a room record, the event just sent that /sync now
 * reads — then needs no LevelDB round trip (each is a hop to libuv's thread pool and back). A snapshot read uses an
 * entry only when it is at least as old as the snapshot, so it never sees a newer value than LevelDB would give it;
 * and not at all for the rows of a batch in flight when the snapshot was taken (LevelDB may already have applied
 * that batch, so the snapshot may hold its rows while the cache still has the older ones). A snapshot read that
 * misses fills the cache only while its snapshot is still the latest landed state (see `rememberRead`).
 * Point reads that miss use classic-level's `getSync`: served from LevelDB's memtable and caches, it costs less
 * than the round trip through the thread pool that the async `get` makes. Ranges still use async iterators.
 */
import { ClassicLevel } from 'classic-level';
import {
  QuotaExceededError,
  StorageClosedError,
  StorageError,
  declaredStores,
  keyId,
} from './kv.js';
import type { Entry, Key, KeyPart, Kv, KvInit, NormalRange, ReadTx, StoredValue, WriteTx } from './kv.js';
import { Mutex, Overlay, OverlayView, ReadTxImpl, WriteTxImpl } from './overlay.js';
import type { ReadSource, SourceQuery, TxState, ValueCodec } from './overlay.js';
import { decodeKey, encodeKey, encodeKeyAfter, encodePrefixEndAfter } from './tuple-key.js';

export interface LevelKvInit extends KvInit {
  /** Merge queued write transactions into one sync batch (default true). False: one sync batch per write(). */
  groupCommit?: boolean;
  /**
   * LevelDB's own memory: the block cache (`cacheSize`, default 8 MiB) and the memtable (`writeBufferSize`, default
   * 4 MiB; up to two exist while one is being written out). The Node peer's choice is in src/node/cli.ts.
   */
  leveldb?: { cacheSize?: number; writeBufferSize?: number };
  /** The row cache's budget (default 4 MiB of encoded rows, 8,192 rows). The Node peer's choice is in src/node/cli.ts. */
  rowCache?: Partial<RowCacheLimits>;
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

/** Write transactions keep object values encoded from put on (overlay.ts): one serialisation per put. */
const LEVEL_CODEC: ValueCodec = { encode: encodeValue, decode: decodeValue };

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
  /** Row-cache IDs and encoded values (undefined: deleted) of `ops`, cached once the batch has landed. */
  rows: Array<[id: string, value: Uint8Array | undefined]>;
  seq: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** How much the row cache keeps: encoded bytes (see `rowCost`) and rows. */
export interface RowCacheLimits {
  bytes: number;
  rows: number;
}
const ROW_CACHE_DEFAULTS: RowCacheLimits = { bytes: 4 * 1024 * 1024, rows: 8192 };
/** Cache misses of one `getMany` read with `getSync` one by one; more go to LevelDB's async getMany in one hop. */
const SYNC_GET_MAX = 32;

/** A cached row: its encoded value (undefined: absent) and the commit that wrote it (or the latest before a read). */
interface CachedRow {
  value: Uint8Array | undefined;
  seq: number;
}

/** Recently landed or read rows, oldest first (Map insertion order), within a byte and a row budget. */
class RowCache {
  private readonly rows = new Map<string, CachedRow>();
  private bytes = 0;

  constructor(private readonly limits: RowCacheLimits) {}

  get size(): number {
    return this.rows.size;
  }

  /** The row if cached and written at or before `maxSeq`. */
  get(id: string, maxSeq: number): CachedRow | undefined {
    const row = this.rows.get(id);
    return row !== undefined && row.seq <= maxSeq ? row : undefined;
  }

  set(id: string, value: Uint8Array | undefined, seq: number): void {
    const old = this.rows.get(id);
    if (old !== undefined) {
      if (old.seq > seq) return; // a newer commit's value is already here
      this.bytes -= rowCost(id, old.value);
      this.rows.delete(id);
    }
    // A small Buffer is a slice of a shared 8 KiB pool block: keep an exact copy, not the whole block.
    const own = value !== undefined && value.byteLength !== value.buffer.byteLength ? new Uint8Array(value) : value;
    this.rows.set(id, { value: own, seq });
    this.bytes += rowCost(id, own);
    while (this.bytes > this.limits.bytes || this.rows.size > this.limits.rows) {
      const [firstId, first] = this.rows.entries().next().value!;
      this.rows.delete(firstId);
      this.bytes -= rowCost(firstId, first.value);
    }
  }

  clear(): void {
    this.rows.clear();
    this.bytes = 0;
  }
}

/**
 * A row's memory, roughly: the value's bytes, its ID (a one-byte string), and ~320 bytes of objects around them (the
 * Map entry, the record, the Uint8Array and its ArrayBuffer with V8's and Node's bookkeeping for it) — which is
 * most of a small index row's cost.
 */
function rowCost(id: string, value: Uint8Array | undefined): number {
  return 320 + id.length + (value?.byteLength ?? 0);
}

/** A row's cache ID: its store and key, unambiguous (a key is a JSON array). */
function rowId(store: string, key: Key): string {
  return `${store}\u0000${keyId(key)}`;
}

export class LevelKv implements Kv {
  readonly kind = 'level';
  readonly stores: readonly string[];
  private readonly storeSet: ReadonlySet<string>;
  private readonly prefixes = new Map<string, Uint8Array>();
  private readonly mutex = new Mutex();
  /** Writes of transactions whose `fn` has returned but whose batch has not landed yet. */
  private readonly pending = new Overlay(LEVEL_CODEC);
  private readonly pendingView: OverlayView;
  private readonly queue: Queued[] = [];
  /** Whether `flushLoop` is running (set and cleared synchronously with the queue check: no entry is missed). */
  private flushActive = false;
  private flushed: Promise<void> = Promise.resolve();
  private seq = 0;
  /** The last commit whose batch has landed (its rows are in LevelDB and in the row cache). */
  private landedSeq = 0;
  private readonly cache: RowCache;
  /** Row-cache IDs of the batch being written (from before writeBatch until its landing is processed). */
  private inFlight: ReadonlySet<string> | undefined;
  /** Bumped when a batch fails, to reject the transaction that was running on top of the lost writes. */
  private epoch = 0;
  private closing = false;
  private readonly reads = new Set<Promise<unknown>>();

  constructor(
    private readonly db: Db,
    stores: readonly string[],
    private readonly groupCommit: boolean,
    rowCache: RowCacheLimits = ROW_CACHE_DEFAULTS,
  ) {
    this.cache = new RowCache(rowCache);
    this.stores = stores;
    this.storeSet = new Set(stores);
    for (const s of stores) this.prefixes.set(s, encodeKey([s]));
    this.pendingView = new OverlayView(new LevelSource(this, undefined, Infinity, undefined), this.pending);
  }

  /** @internal */
  get database(): Db {
    return this.db;
  }

  /** @internal full LevelDB key of a row */
  rowKey(store: string, key: Key): Uint8Array {
    return encodeKeyAfter(this.prefixes.get(store)!, key);
  }

  /** @internal decodes a row key back to the contract's key (without the store). */
  userKey(store: string, row: Uint8Array): KeyPart[] {
    return decodeKey(row, this.prefixes.get(store)!.length);
  }

  /** @internal a cached row written at or before commit `maxSeq`, unless it is one of `dirty`. */
  cachedRow(id: string, maxSeq: number, dirty: ReadonlySet<string> | undefined): CachedRow | undefined {
    return dirty?.has(id) ? undefined : this.cache.get(id, maxSeq);
  }

  /**
   * @internal caches a row read from LevelDB when that is safe:
   * - a write transaction's read (`snapshotSeq` undefined) found no write of the row pending (the overlay answered
   *   otherwise), so it is the latest landed value: it holds for snapshots from commit `seq` (the last landed) on;
   * - a snapshot read (taken when commit `snapshotSeq` was the last landed) holds the latest value only while no
   *   commit has landed since and no batch in flight (then or now) writes the row. A commit landing later caches
   *   its own, newer, value. This is what lets a row that is read often but rarely exists (a device's one-time-key
   *   counts) stop costing a LevelDB read per /sync.
   */
  rememberRead(id: string, value: Uint8Array | undefined, seq: number, snapshotSeq?: number, dirty?: ReadonlySet<string>): void {
    if (snapshotSeq !== undefined) {
      if (snapshotSeq !== this.landedSeq || dirty?.has(id) || this.inFlight?.has(id)) return;
    }
    this.cache.set(id, value, seq);
  }

  /** @internal the last landed commit. */
  get landed(): number {
    return this.landedSeq;
  }

  /** @internal LevelDB iterator bounds for a store and range. */
  bounds(store: string, r: NormalRange): { gt?: Uint8Array; gte?: Uint8Array; lt?: Uint8Array; lte?: Uint8Array } {
    const prefix = this.prefixes.get(store)!;
    const out: { gt?: Uint8Array; gte?: Uint8Array; lt?: Uint8Array; lte?: Uint8Array } = {};
    if (r.lower) out[r.lower.open ? 'gt' : 'gte'] = this.rowKey(store, r.lower.key);
    else out.gte = prefix;
    if (!r.upper) out.lt = encodePrefixEndAfter(prefix, []);
    else if (r.upper.prefix) out.lt = encodePrefixEndAfter(prefix, r.upper.key);
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
    // Taken with the snapshot: cached rows written after it must not answer this transaction.
    const seenSeq = this.landedSeq;
    const dirty = this.inFlight;
    const state: TxState = { active: true };
    const work = (async () => {
      try {
        return await fn(new ReadTxImpl(new LevelSource(this, snapshot, seenSeq, dirty), this.storeSet, state));
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
    const { result, durable } = await this.writeOrdered(fn);
    await durable;
    return result;
  }

  async writeOrdered<T>(fn: (tx: WriteTx) => Promise<T>): Promise<{ result: T; durable: Promise<void> }> {
    this.ensureOpen();
    const release = await this.mutex.lock();
    let landed: Promise<void>;
    let result: T;
    try {
      const epoch = this.epoch;
      const overlay = new Overlay(LEVEL_CODEC);
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
      // Without group commit a transaction is ordered only once it has landed.
      if (!this.groupCommit) await landed;
    } finally {
      release();
    }
    return { result, durable: landed };
  }

  /** Moves a finished transaction's writes into `pending` and the commit queue; resolves once they are on disk. */
  private enqueue(overlay: Overlay): Promise<void> {
    const seq = ++this.seq;
    const ops: BatchOp[] = [];
    const rows: Queued['rows'] = [];
    for (const [store, so] of overlay.stores) {
      // The overlay's map key is the key's keyId: the row-cache ID without serialising the key again.
      for (const [kid, e] of so.entries) {
        const key = this.rowKey(store, e.key);
        const value = e.value === undefined ? undefined : (e.encoded ?? encodeValue(e.value, e.nestedBytes));
        if (value === undefined) ops.push({ type: 'del', key });
        else ops.push({ type: 'put', key, value });
        rows.push([`${store}\u0000${kid}`, value]);
        this.pending.set(store, { ...e, seq });
      }
    }
    // A write() that wrote nothing still waits for the batches before it: it may have read their data.
    const landed = new Promise<void>((resolve, reject) => this.queue.push({ ops, rows, seq, resolve, reject }));
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
          if (ops.length > 0) {
            const ids = new Set<string>();
            for (const g of group) for (const row of g.rows) ids.add(row[0]);
            this.inFlight = ids;
            await this.writeBatch(ops);
          }
        } catch (err) {
          this.inFlight = undefined;
          const failure = mapError(err);
          this.epoch++;
          const rest = this.queue.splice(0);
          this.pending.clear();
          for (const g of [...group, ...rest]) g.reject(failure);
          continue;
        }
        for (const g of group) for (const [id, value] of g.rows) this.cache.set(id, value, g.seq);
        this.landedSeq = group[group.length - 1].seq;
        this.inFlight = undefined;
        this.pending.removeUpTo(this.landedSeq);
        for (const g of group) g.resolve();
      }
    } finally {
      this.flushActive = false;
    }
  }

  /**
   * @internal Writes one synced batch (tests replace this to delay or fail batches). A chained batch: abstract-level's
   * array form copies and checks every operation first, which costs about twice as much per commit.
   */
  async writeBatch(ops: readonly BatchOp[]): Promise<void> {
    const batch = this.db.batch();
    for (const op of ops) {
      if (op.type === 'put') batch.put(op.key, op.value);
      else batch.del(op.key);
    }
    await batch.write({ sync: true });
  }

  /** Waits for queued writes and running reads, then closes LevelDB. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const release = await this.mutex.lock();
    try {
      while (this.flushActive) await this.flushed;
      await Promise.allSettled([...this.reads]);
      this.cache.clear();
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
    /** Cached rows written after this commit are too new for this source (its snapshot predates them). */
    private readonly maxSeq: number,
    /** Rows of the batch in flight when the snapshot was taken: LevelDB, not the cache, knows which version it has. */
    private readonly dirty: ReadonlySet<string> | undefined,
  ) {}

  private get opts(): { snapshot?: Snapshot } {
    return this.snapshot ? { snapshot: this.snapshot } : {};
  }

  async get(store: string, key: Key): Promise<StoredValue | undefined> {
    const id = rowId(store, key);
    const hit = this.kv.cachedRow(id, this.maxSeq, this.dirty);
    if (hit) return hit.value === undefined ? undefined : decodeValue(hit.value);
    const v = this.readRow(store, key, id);
    return v === undefined ? undefined : decodeValue(v);
  }

  async getMany(store: string, keys: readonly Key[]): Promise<Array<StoredValue | undefined>> {
    const out = new Array<StoredValue | undefined>(keys.length);
    const missIdx: number[] = [];
    const missIds: string[] = [];
    for (let i = 0; i < keys.length; i++) {
      const id = rowId(store, keys[i]);
      const hit = this.kv.cachedRow(id, this.maxSeq, this.dirty);
      if (hit) out[i] = hit.value === undefined ? undefined : decodeValue(hit.value);
      else {
        missIdx.push(i);
        missIds.push(id);
      }
    }
    if (missIdx.length === 0) return out;
    if (missIdx.length <= SYNC_GET_MAX) {
      for (let j = 0; j < missIdx.length; j++) {
        const v = this.readRow(store, keys[missIdx[j]], missIds[j]);
        out[missIdx[j]] = v === undefined ? undefined : decodeValue(v);
      }
      return out;
    }
    const fillSeq = this.kv.landed;
    try {
      const vs = await this.kv.database.getMany(
        missIdx.map((i) => this.kv.rowKey(store, keys[i])),
        this.opts,
      );
      vs.forEach((v, j) => {
        this.kv.rememberRead(missIds[j], v, fillSeq, this.snapshot !== undefined ? this.maxSeq : undefined, this.dirty);
        out[missIdx[j]] = v === undefined ? undefined : decodeValue(v);
      });
      return out;
    } catch (err) {
      throw mapError(err);
    }
  }

  /**
   * One row from LevelDB with `getSync`: a point lookup served from LevelDB's memtable and block cache costs a few
   * microseconds, far less than a hop to libuv's thread pool and back (which is what the async `get` is).
   */
  private readRow(store: string, key: Key, id: string): Uint8Array | undefined {
    let v: Uint8Array | undefined;
    try {
      v = this.kv.database.getSync(this.kv.rowKey(store, key), this.opts);
    } catch (err) {
      throw mapError(err);
    }
    this.kv.rememberRead(id, v, this.kv.landed, this.snapshot !== undefined ? this.maxSeq : undefined, this.dirty);
    return v;
  }

  async range(store: string, q: SourceQuery): Promise<Entry[]> {
    const options = { ...this.kv.bounds(store, q.range), reverse: q.reverse, limit: q.limit ?? -1, ...this.opts };
    try {
      if (q.keysOnly) {
        const keys = await drain(this.kv.database.keys(options));
        return keys.map((k): Entry => [this.kv.userKey(store, k), null]);
      }
      const rows = await drain(this.kv.database.iterator(options));
      return rows.map(([k, v]): Entry => [this.kv.userKey(store, k), decodeValue(v)]);
    } catch (err) {
      throw mapError(err);
    }
  }

  async count(store: string, range: NormalRange): Promise<number> {
    const it = this.kv.database.keys({ ...this.kv.bounds(store, range), ...this.opts });
    let n = 0;
    try {
      for (let size = FIRST_CHUNK; ; size = Math.min(size * 4, MAX_CHUNK)) {
        const chunk = await it.nextv(size);
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

/** Entries asked of the first `nextv` of a range read, and the most asked of one (the size grows 4× per call). */
const FIRST_CHUNK = 64;
const MAX_CHUNK = 1024;

/**
 * Every entry of an iterator, then closes it. Not `iterator.all()`: each `nextv(size)` makes classic-level reserve
 * room for `size` entries (64 bytes each) in native memory that stays until V8 collects the iterator — which V8,
 * unaware of it, does late. all() asks for 1,000 every time (64 KiB per range read, ~20–70 MB of the server's peak
 * RSS under `npm run bench`); most ranges hold a few rows, and a call returns at most ~16 KiB of data anyway.
 */
async function drain<T>(it: { nextv(size: number): Promise<T[]>; close(): Promise<void> }): Promise<T[]> {
  const out: T[] = [];
  try {
    for (let size = FIRST_CHUNK; ; size = Math.min(size * 4, MAX_CHUNK)) {
      const chunk = await it.nextv(size);
      if (chunk.length === 0) return out;
      for (const x of chunk) out.push(x);
    }
  } finally {
    await it.close();
  }
}

/** Opens (creating if missing) a LevelDB database in the directory `init.name`. */
export async function openLevelKv(init: LevelKvInit): Promise<LevelKv> {
  const stores = declaredStores(init.stores);
  const db: Db = new ClassicLevel<Uint8Array, Uint8Array>(init.name, { ...init.leveldb, keyEncoding: 'view', valueEncoding: 'view' });
  try {
    await db.open();
  } catch (err) {
    throw mapError(err);
  }
  return new LevelKv(db, stores, init.groupCommit ?? true, { ...ROW_CACHE_DEFAULTS, ...init.rowCache });
}
