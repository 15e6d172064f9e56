/**
 * A bounded cache of committed rows as decoded values, for a backend whose connection is the only writer of its
 * database (the service worker's IndexedDB, held by the instance lock). It holds what a commit wrote and what a read
 * found, including "absent"; a hit saves an IndexedDB request (a round trip to the browser's storage process).
 *
 * Values are private copies: the cache copies nothing in (callers hand over copies they own) and the backend copies
 * every hit out (callers may mutate what they get). Oldest first out (Map insertion order), within a row and a
 * byte budget.
 */
import { inRange, keyId } from './kv.js';
import type { Key, NormalRange, StoredValue } from './kv.js';

/** A cached row: its value, or undefined when the row is known to be absent. */
export interface CachedValue {
  value: StoredValue | undefined;
}

interface Row extends CachedValue {
  store: string;
  key: Key;
  cost: number;
}

export interface ValueCacheLimits {
  rows: number;
  bytes: number;
}

const DEFAULT_LIMITS: ValueCacheLimits = { rows: 8192, bytes: 8 * 1024 * 1024 };

/** A row's ID: store and key, unambiguous (a key is a JSON array). */
function rowId(store: string, key: Key): string {
  return `${store}\u0000${keyId(key)}`;
}

/** A rough size in bytes (a budget, not an exact count). */
function approxBytes(v: StoredValue | undefined): number {
  if (v === undefined || v === null) return 8;
  switch (typeof v) {
    case 'string':
      return 16 + v.length * 2;
    case 'number':
    case 'boolean':
      return 8;
  }
  if (v instanceof Uint8Array) return 32 + v.byteLength;
  let n = 32;
  if (Array.isArray(v)) for (const x of v) n += approxBytes(x);
  else for (const k in v) n += 16 + k.length * 2 + approxBytes((v as Record<string, StoredValue>)[k]);
  return n;
}

export class ValueCache {
  private readonly rows = new Map<string, Row>();
  private bytes = 0;

  constructor(private readonly limits: ValueCacheLimits = DEFAULT_LIMITS) {}

  get size(): number {
    return this.rows.size;
  }

  get(store: string, key: Key): CachedValue | undefined {
    return this.rows.get(rowId(store, key));
  }

  /** Records a row's committed value (undefined: absent). `value` must be a copy nobody else holds. */
  set(store: string, key: Key, value: StoredValue | undefined): void {
    const id = rowId(store, key);
    const old = this.rows.get(id);
    if (old) {
      this.bytes -= old.cost;
      this.rows.delete(id);
    }
    const cost = 64 + id.length * 2 + approxBytes(value);
    if (cost > this.limits.bytes / 8) return; // one huge row would flush everything else
    this.rows.set(id, { store, key: [...key], value, cost });
    this.bytes += cost;
    while (this.bytes > this.limits.bytes || this.rows.size > this.limits.rows) {
      const [firstId, first] = this.rows.entries().next().value!;
      this.rows.delete(firstId);
      this.bytes -= first.cost;
    }
  }

  /** Forgets every cached row of `store` inside `range` (a range delete: absent rows in it are unknown to us). */
  forgetRange(store: string, range: NormalRange): void {
    for (const [id, row] of this.rows) {
      if (row.store === store && inRange(row.key, range)) {
        this.rows.delete(id);
        this.bytes -= row.cost;
      }
    }
  }

  clear(): void {
    this.rows.clear();
    this.bytes = 0;
  }
}
