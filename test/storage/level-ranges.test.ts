/**
 * Range reads on LevelKv: complete and in order across many `nextv` calls, and asking LevelDB for small batches
 * first (classic-level reserves native memory for as many entries as each call asks for, until V8 collects the
 * iterator: see `drain` in src/storage/level-kv.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openLevelKv } from '../../src/storage/level-kv.js';
import type { LevelKv } from '../../src/storage/level-kv.js';

const N = 3000;

async function withRows(fn: (kv: LevelKv, nextvSizes: number[]) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-level-ranges-'));
  const kv = await openLevelKv({ name: join(dir, 'db'), stores: ['rows'], leveldb: { cacheSize: 1 << 20, writeBufferSize: 1 << 20 } });
  try {
    await kv.write(async (tx) => {
      for (let i = 0; i < N; i++) await tx.put('rows', [i], { i, pad: 'x'.repeat(i % 50) });
    });
    // Records the size every LevelDB iterator's nextv is asked for.
    const sizes: number[] = [];
    const db = kv.database as unknown as Record<'iterator' | 'keys', (...a: unknown[]) => { nextv: (n: number) => Promise<unknown[]> }>;
    for (const method of ['iterator', 'keys'] as const) {
      const original = db[method].bind(kv.database);
      db[method] = (...args: unknown[]) => {
        const it = original(...args);
        const nextv = it.nextv.bind(it);
        it.nextv = (n: number) => {
          sizes.push(n);
          return nextv(n);
        };
        return it;
      };
    }
    await fn(kv, sizes);
  } finally {
    await kv.close();
    await rm(dir, { recursive: true, force: true });
  }
}

describe('LevelKv range reads', () => {
  it('return every row in order, forwards and backwards', async () => {
    await withRows(async (kv, sizes) => {
      const all = await kv.read((tx) => tx.range('rows', {}));
      expect(all.map(([k]) => k[0])).toEqual(Array.from({ length: N }, (_, i) => i));
      expect(all[1234][1]).toEqual({ i: 1234, pad: 'x'.repeat(1234 % 50) });
      expect(sizes[0]).toBe(64);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(1024);

      const back = await kv.read((tx) => tx.range('rows', { reverse: true }));
      expect(back.map(([k]) => k[0])).toEqual(Array.from({ length: N }, (_, i) => N - 1 - i));

      const middle = await kv.read((tx) => tx.range('rows', { gte: [100], lt: [2900] }));
      expect(middle.map(([k]) => k[0])).toEqual(Array.from({ length: 2800 }, (_, i) => 100 + i));

      expect(await kv.read((tx) => tx.count('rows', {}))).toBe(N);
    });
  });

  it('stop at the limit', async () => {
    await withRows(async (kv, sizes) => {
      const one = await kv.read((tx) => tx.range('rows', { gte: [10], limit: 1 }));
      expect(one.map(([k]) => k[0])).toEqual([10]);
      // abstract-level clamps each nextv to what the limit leaves, so LevelDB is asked for one entry, once.
      expect(sizes[0]).toBe(64);

      const some = await kv.read((tx) => tx.range('rows', { limit: 200 }));
      expect(some.map(([k]) => k[0])).toEqual(Array.from({ length: 200 }, (_, i) => i));
    });
  });
});
