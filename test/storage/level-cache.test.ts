/**
 * LevelKv's row cache and `writeOrdered` (level-kv.ts): cached rows never show a snapshot anything newer than
 * LevelDB would, reads return fresh copies, and an ordered-but-not-durable transaction is visible to later writers
 * only — with its failure taking down what was built on it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { StorageError } from '../../src/storage/kv.js';
import { openLevelKv, type LevelKv } from '../../src/storage/level-kv.js';

async function withLevel<T>(fn: (kv: LevelKv) => Promise<T>, rowCache?: { bytes?: number; rows?: number }): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-level-cache-'));
  const kv = await openLevelKv({ name: join(dir, 'db'), stores: ['s'], ...(rowCache ? { rowCache } : {}) });
  try {
    return await fn(kv);
  } finally {
    await kv.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Makes LevelDB's batch() wait for `gate` before writing (the batch is then "in flight"). */
function holdBatches(kv: LevelKv): { release: () => void; fail: (e: Error) => void } {
  const db = kv as unknown as { writeBatch: (...args: unknown[]) => Promise<void> };
  const original = db.writeBatch.bind(db);
  let release!: () => void;
  let fail!: (e: Error) => void;
  const gate = new Promise<void>((resolve, reject) => {
    release = resolve;
    fail = reject;
  });
  gate.catch(() => {}); // failing before LevelKv's batch started waiting is fine
  db.writeBatch = async (...args: unknown[]) => {
    await gate;
    return original(...args);
  };
  return { release, fail };
}

/** Counts LevelDB point reads (get, getSync, getMany) from here on. */
function countLevelGets(kv: LevelKv): () => number {
  const db = kv.database as unknown as Record<string, (...args: unknown[]) => unknown>;
  let n = 0;
  for (const m of ['get', 'getSync', 'getMany']) {
    const original = db[m].bind(db);
    db[m] = (...args: unknown[]) => {
      n++;
      return original(...args);
    };
  }
  return () => n;
}

describe('LevelKv row cache', () => {
  it('a snapshot taken before a write landed keeps reading the old value, though the new one is cached', async () => {
    await withLevel(async (kv) => {
      await kv.write((tx) => tx.put('s', ['k'], 'v1'));
      let landed!: () => void;
      const wait = new Promise<void>((r) => (landed = r));
      const seen = kv.read(async (tx) => {
        const before = await tx.get('s', ['k']);
        // LevelKv cannot detect this foreign await (see kv.ts); here it lets a write land mid-snapshot.
        await wait;
        const after = await tx.get('s', ['k']);
        const many = await tx.getMany('s', [['k']]);
        return [before, after, many[0]];
      });
      await new Promise((r) => setTimeout(r, 10));
      await kv.write((tx) => tx.put('s', ['k'], 'v2'));
      landed();
      expect(await seen).toEqual(['v1', 'v1', 'v1']);
      expect(await kv.read((tx) => tx.get('s', ['k']))).toBe('v2');
    });
  });

  it('a row a write transaction read is not shown to an older snapshot after a later write', async () => {
    await withLevel(async (kv) => {
      await kv.write((tx) => tx.put('s', ['k'], 'v1'));
      let go!: () => void;
      const wait = new Promise<void>((r) => (go = r));
      const seen = kv.read(async (tx) => {
        await wait;
        return tx.get('s', ['k']);
      });
      await new Promise((r) => setTimeout(r, 10));
      await kv.write(async (tx) => {
        expect(await tx.get('s', ['k'])).toBe('v1');
      });
      await kv.write((tx) => tx.delete('s', ['k']));
      go();
      expect(await seen).toBe('v1');
      expect(await kv.read((tx) => tx.get('s', ['k']))).toBeUndefined();
    });
  });

  it('a row re-read after eviction is still too new for a snapshot older than its last write', async () => {
    await withLevel(async (kv) => {
      await kv.write((tx) => tx.put('s', ['k'], 'v1'));
      let go!: () => void;
      const wait = new Promise<void>((r) => (go = r));
      const seen = kv.read(async (tx) => {
        await wait;
        return tx.get('s', ['k']);
      });
      await new Promise((r) => setTimeout(r, 10));
      await kv.write((tx) => tx.put('s', ['k'], 'v2'));
      // Push 'k' out of the cache, then let a write transaction read it back in.
      await kv.write(async (tx) => {
        for (let i = 0; i < 6; i++) await tx.put('s', ['big', i], new Uint8Array(1024 * 1024));
      });
      await kv.write(async (tx) => {
        expect(await tx.get('s', ['k'])).toBe('v2');
      });
      go();
      expect(await seen).toBe('v1');
    });
  });

  it('a snapshot taken after a batch reached LevelDB, before LevelKv saw it land, sees all of that batch', async () => {
    await withLevel(async (kv) => {
      await kv.write((tx) => tx.put('s', ['a'], 'old'));
      // 'a' is now in the row cache as 'old'; 'b' is in neither. The next batch is written, but its completion is
      // held back.
      const db = kv as unknown as { writeBatch: (...args: unknown[]) => Promise<void> };
      const original = db.writeBatch.bind(db);
      let written!: () => void;
      const isWritten = new Promise<void>((r) => (written = r));
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      db.writeBatch = async (...args: unknown[]) => {
        await original(...args);
        written();
        await gate;
      };
      const w = kv.write(async (tx) => {
        await tx.put('s', ['a'], 'new');
        await tx.put('s', ['b'], 'new');
      });
      await isWritten;
      let seen: unknown[];
      let many: unknown[];
      try {
        seen = await kv.read(async (tx) => [await tx.get('s', ['a']), await tx.get('s', ['b'])]);
        many = await kv.read((tx) => tx.getMany('s', [['a'], ['b']]));
      } finally {
        release();
      }
      await w;
      // Whichever state the snapshot has, it must have it whole: ['old', undefined] or ['new', 'new'].
      expect(seen[1] === undefined ? 'old' : 'new').toBe(seen[0]);
      expect(many[1] === undefined ? 'old' : 'new').toBe(many[0]);
      expect(await kv.read((tx) => tx.getMany('s', [['a'], ['b']]))).toEqual(['new', 'new']);
    });
  });

  it('a snapshot read caches an absent row, and the write that adds it replaces that', async () => {
    await withLevel(async (kv) => {
      const dbGets = countLevelGets(kv);
      expect(await kv.read((tx) => tx.get('s', ['absent']))).toBeUndefined();
      expect(await kv.read((tx) => tx.getMany('s', [['absent']]))).toEqual([undefined]);
      // The second read was answered from the cache.
      expect(dbGets()).toBe(1);
      let go!: () => void;
      const wait = new Promise<void>((r) => (go = r));
      const old = kv.read(async (tx) => {
        await wait;
        return tx.get('s', ['absent']);
      });
      await new Promise((r) => setTimeout(r, 10));
      await kv.write((tx) => tx.put('s', ['absent'], 'now'));
      go();
      expect(await old).toBeUndefined();
      expect(await kv.read((tx) => tx.get('s', ['absent']))).toBe('now');
    });
  });

  it('a snapshot read of a row in a batch in flight is not cached', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hearth-level-cache-'));
    try {
      let kv = await openLevelKv({ name: join(dir, 'db'), stores: ['s'] });
      await kv.write((tx) => tx.put('s', ['k'], 'v1'));
      await kv.close();
      // Reopened: the cache is empty, so the reads below go to LevelDB.
      kv = await openLevelKv({ name: join(dir, 'db'), stores: ['s'] });
      const held = holdBatches(kv);
      const written = kv.write((tx) => tx.put('s', ['k'], 'v2'));
      await new Promise((r) => setTimeout(r, 10));
      expect(await kv.read((tx) => tx.get('s', ['k']))).toBe('v1');
      held.release();
      await written;
      expect(await kv.read((tx) => tx.get('s', ['k']))).toBe('v2');
      // A snapshot taken before the batch, read after it landed: LevelDB's answer, not cached for later readers.
      let go!: () => void;
      const wait = new Promise<void>((r) => (go = r));
      const before = kv.read(async (tx) => {
        await wait;
        return tx.get('s', ['other']);
      });
      await new Promise((r) => setTimeout(r, 10));
      await kv.write((tx) => tx.put('s', ['other'], 'x'));
      go();
      expect(await before).toBeUndefined();
      expect(await kv.read((tx) => tx.get('s', ['other']))).toBe('x');
      await kv.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('returns a fresh copy on every read', async () => {
    await withLevel(async (kv) => {
      await kv.write((tx) => tx.put('s', ['o'], { a: [1] }));
      const first = await kv.read((tx) => tx.get<{ a: number[] }>('s', ['o']));
      first!.a.push(2);
      expect(await kv.read((tx) => tx.get('s', ['o']))).toEqual({ a: [1] });
      expect(await kv.read((tx) => tx.getMany('s', [['o'], ['none']]))).toEqual([{ a: [1] }, undefined]);
    });
  });

  it('stays correct when far more rows are written than it keeps', async () => {
    await withLevel(async (kv) => {
      const big = 'x'.repeat(2000);
      for (let b = 0; b < 30; b++) {
        await kv.write(async (tx) => {
          for (let i = 0; i < 100; i++) await tx.put('s', ['r', b * 100 + i], { i: b * 100 + i, big });
        });
      }
      const keys = [0, 1, 1500, 2999].map((i) => ['r', i]);
      const got = await kv.read((tx) => tx.getMany<{ i: number }>('s', keys));
      expect(got.map((g) => g?.i)).toEqual([0, 1, 1500, 2999]);
    });
  });
});

describe('LevelKv row cache budget', () => {
  /** How many rows the cache holds (an internal, read only here). */
  const cached = (kv: LevelKv) => (kv as unknown as { cache: { size: number } }).cache.size;

  it('keeps at most `rows` rows, and evicted rows still read right, old snapshots included', async () => {
    await withLevel(
      async (kv) => {
        await kv.write((tx) => tx.put('s', ['k'], 'v1'));
        let go!: () => void;
        const wait = new Promise<void>((r) => (go = r));
        const seen = kv.read(async (tx) => {
          await wait;
          return tx.get('s', ['k']);
        });
        await new Promise((r) => setTimeout(r, 10));
        await kv.write((tx) => tx.put('s', ['k'], 'v2'));
        for (let i = 0; i < 20; i++) await kv.write((tx) => tx.put('s', ['n', i], i));
        expect(cached(kv)).toBeLessThanOrEqual(4);
        expect(await kv.read((tx) => tx.getMany('s', [['k'], ['n', 0], ['n', 19]]))).toEqual(['v2', 0, 19]);
        go();
        expect(await seen).toBe('v1');
      },
      { rows: 4 },
    );
  });

  it('keeps rows within `bytes`, counting each row at its value size plus a fixed overhead', async () => {
    await withLevel(
      async (kv) => {
        for (let i = 0; i < 50; i++) await kv.write((tx) => tx.put('s', ['b', i], 'x'.repeat(1000)));
        // ~1.4 KB a row against a 16 KiB budget: about a dozen rows, far from the 8,192-row default.
        expect(cached(kv)).toBeGreaterThan(0);
        expect(cached(kv)).toBeLessThanOrEqual(12);
        expect(await kv.read((tx) => tx.get('s', ['b', 0]))).toBe('x'.repeat(1000));
      },
      { bytes: 16 * 1024 },
    );
  });
});

describe('LevelKv writeOrdered', () => {
  it('resolves before its batch lands: later writers see it, readers only once durable', async () => {
    await withLevel(async (kv) => {
      const hold = holdBatches(kv);
      const { result, durable } = await kv.writeOrdered(async (tx) => {
        await tx.put('s', ['n'], 1);
        return 'ordered';
      });
      expect(result).toBe('ordered');
      let isDurable = false;
      void durable.then(() => (isDurable = true));
      expect(await kv.read((tx) => tx.get('s', ['n']))).toBeUndefined();
      const next = kv.writeOrdered(async (tx) => {
        const n = (await tx.get<number>('s', ['n'])) ?? 0;
        await tx.put('s', ['n'], n + 1);
      });
      const second = await next;
      expect(isDurable).toBe(false);
      hold.release();
      await durable;
      await second.durable;
      expect(await kv.read((tx) => tx.get('s', ['n']))).toBe(2);
    });
  });

  it('a failed batch rejects `durable` and the transactions ordered after it', async () => {
    await withLevel(async (kv) => {
      const hold = holdBatches(kv);
      const first = await kv.writeOrdered((tx) => tx.put('s', ['lost'], 1));
      const second = await kv.writeOrdered(async (tx) => {
        expect(await tx.get('s', ['lost'])).toBe(1);
        await tx.put('s', ['built-on-lost'], 1);
      });
      hold.fail(new Error('disk on fire'));
      await expect(first.durable).rejects.toThrow(StorageError);
      await expect(second.durable).rejects.toThrow(StorageError);
    });
  });
});
