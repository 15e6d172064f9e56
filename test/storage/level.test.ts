import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { StorageError, type KeyPart } from '../../src/storage/kv.js';
import { openLevelKv, type LevelKv } from '../../src/storage/level-kv.js';
import { runKvSuite } from './kv-suite.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'hearth-level-'));
}

runKvSuite('level', async () => {
  const dir = await tempDir();
  return {
    open: (stores) => openLevelKv({ name: join(dir, 'db'), stores }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}, { persistent: true, detectsForeignAwait: false });

async function withLevel<T>(fn: (kv: LevelKv, dir: string) => Promise<T>, groupCommit = true): Promise<T> {
  const dir = await tempDir();
  const kv = await openLevelKv({ name: join(dir, 'db'), stores: ['events'], groupCommit });
  try {
    return await fn(kv, dir);
  } finally {
    await kv.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Counts the sync batches a LevelKv sends to LevelDB. */
function countBatches(kv: LevelKv): () => number {
  const db = kv.database;
  const original = db.batch.bind(db) as (...args: unknown[]) => unknown;
  let n = 0;
  (db as unknown as { batch: (...args: unknown[]) => unknown }).batch = (...args: unknown[]) => {
    n++;
    return original(...args);
  };
  return () => n;
}

describe('level specifics', () => {
  it('group commit: concurrent writers share sync batches, each resolving only once its batch landed', async () => {
    await withLevel(async (kv) => {
      const batches = countBatches(kv);
      let txs = 0;
      await Promise.all(
        Array.from({ length: 8 }, async (_, w) => {
          for (let i = 0; i < 25; i++) {
            await kv.write(async (tx) => {
              const n = (await tx.get<number>('events', ['n'])) ?? 0;
              await tx.put('events', ['n'], n + 1);
              await tx.put('events', ['e', w, i], { w, i });
            });
            txs++;
            // Resolved means landed: a snapshot read taken now must see it.
            expect(await kv.read((tx) => tx.get('events', ['e', w, i]))).toEqual({ w, i });
          }
        }),
      );
      expect(txs).toBe(200);
      expect(await kv.read((tx) => tx.get('events', ['n']))).toBe(200);
      // Several transactions per batch (exact grouping depends on timing).
      expect(batches()).toBeLessThan(150);
    });
  });

  it('without group commit: one batch per write, still no lost update', async () => {
    await withLevel(async (kv) => {
      const batches = countBatches(kv);
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let i = 0; i < 5; i++) {
            await kv.write(async (tx) => tx.put('events', ['n'], ((await tx.get<number>('events', ['n'])) ?? 0) + 1));
          }
        }),
      );
      expect(await kv.read((tx) => tx.get('events', ['n']))).toBe(20);
      expect(batches()).toBe(20);
    }, false);
  });

  it('a failed batch rejects its transactions and the ones that built on them, and nothing of theirs is visible', async () => {
    await withLevel(async (kv) => {
      await kv.write((tx) => tx.put('events', ['base'], 0));
      const db = kv as unknown as { writeBatch: (...args: unknown[]) => Promise<void> };
      const original = db.writeBatch.bind(db);
      let fail = true;
      db.writeBatch = async (...args: unknown[]) => {
        // Let the first failing batch take a moment so that later transactions run on top of its writes.
        if (fail) {
          fail = false;
          await new Promise((r) => setTimeout(r, 20));
          throw new Error('disk on fire');
        }
        return original(...args);
      };
      const first = kv.write((tx) => tx.put('events', ['lost'], 1));
      const second = kv.write(async (tx) => {
        // Reads the not-yet-landed write of `first`.
        expect(await tx.get('events', ['lost'])).toBe(1);
        await tx.put('events', ['built-on-lost'], 1);
      });
      await expect(first).rejects.toThrow(StorageError);
      await expect(second).rejects.toThrow(StorageError);
      await kv.write((tx) => tx.put('events', ['after'], 2));
      const keys = (await kv.read((tx) => tx.range('events'))).map(([k]) => k);
      expect(keys).toEqual([['after'], ['base']]);
    });
  });

  it('refuses a second open of the same directory with a clear error', async () => {
    await withLevel(async (_kv, dir) => {
      await expect(openLevelKv({ name: join(dir, 'db'), stores: [] })).rejects.toThrow(/locked/);
    });
  });

  it('keeps every acknowledged write when the process is killed with SIGKILL mid-load', async () => {
    const dir = await tempDir();
    try {
      const db = join(dir, 'db');
      const script = fileURLToPath(new URL('./crash-writer.ts', import.meta.url));
      const child = spawn(process.execPath, ['--import', 'tsx/esm', script, db], {
        cwd: fileURLToPath(new URL('../..', import.meta.url)),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const acked: number[] = [];
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
      let buffered = '';
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`child made too little progress: ${acked.length} acks; ${stderr}`)), 20_000);
        child.stdout.on('data', (d: Buffer) => {
          buffered += d.toString();
          const lines = buffered.split('\n');
          buffered = lines.pop()!; // a partial line is not an acknowledgement
          for (const line of lines) if (/^\d+$/.test(line)) acked.push(Number(line));
          if (acked.length >= 600) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.on('exit', () => reject(new Error(`child exited early: ${stderr}`)));
      });
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');

      const kv = await openLevelKv({ name: db, stores: ['events'] });
      try {
        const rows = await kv.read((tx) => tx.range<{ i: number; w: number }>('events', { prefix: ['e'] }));
        const present = new Set(rows.map(([k]) => k[1] as number));
        const missing = acked.filter((i) => !present.has(i));
        expect(missing).toEqual([]);
        // No transaction landed half: every event has its ['by', w, i] row and vice versa.
        const pairs = await kv.read((tx) => tx.range('events', { prefix: ['by'] }));
        expect(pairs.length).toBe(rows.length);
        const byKeys = await kv.read((tx) => tx.getMany('events', rows.map(([, v]): KeyPart[] => ['by', v.w, v.i])));
        expect(byKeys.every((v) => typeof v === 'number')).toBe(true);
        expect(rows.length).toBeGreaterThanOrEqual(acked.length);
      } finally {
        await kv.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
