import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { describe, expect, it } from 'vitest';
import { QuotaExceededError, StorageClosedError, TransactionInactiveError } from '../../src/storage/kv.js';
import { openIdbKv } from '../../src/storage/idb-kv.js';
import { runKvSuite } from './kv-suite.js';

runKvSuite('idb (fake-indexeddb)', async () => {
  // A fresh factory per test: its databases live as long as it does, across close() and reopen.
  const factory = new IDBFactory();
  return {
    open: (stores) => openIdbKv({ name: 'hearth-test', stores, indexedDB: factory }),
    cleanup: async () => undefined,
  };
}, { persistent: true, detectsForeignAwait: true });

runKvSuite('idb (fake-indexeddb) with the row cache', async () => {
  const factory = new IDBFactory();
  return {
    open: (stores) => openIdbKv({ name: 'hearth-test', stores, indexedDB: factory, cache: true }),
    cleanup: async () => undefined,
  };
}, { persistent: true, detectsForeignAwait: true });

describe('idb specifics', () => {
  it('maps the browser\'s QuotaExceededError to ours, writing nothing', async () => {
    const kv = await openIdbKv({ name: 'quota', stores: ['things'], indexedDB: new IDBFactory() });
    await kv.write((tx) => tx.put('things', ['a'], 1));
    const proto = globalThis.IDBObjectStore.prototype;
    const put = proto.put;
    proto.put = function (this: IDBObjectStore, ...args: Parameters<IDBObjectStore['put']>) {
      if (args[0] === 'too big') throw new DOMException('quota', 'QuotaExceededError');
      return put.apply(this, args);
    };
    try {
      const err = await kv
        .write(async (tx) => {
          await tx.put('things', ['b'], 2);
          await tx.put('things', ['c'], 'too big');
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(QuotaExceededError);
      expect((err as Error).name).toBe('QuotaExceededError');
    } finally {
      proto.put = put;
    }
    expect(await kv.read((tx) => tx.range('things'))).toEqual([[['a'], 1]]);
    await kv.close();
  });

  it('closes itself when another context upgrades the database, and the upgrade keeps data', async () => {
    const factory = new IDBFactory();
    const first = await openIdbKv({ name: 'shared', stores: ['things'], indexedDB: factory });
    await first.write((tx) => tx.put('things', ['a'], 1));
    const second = await openIdbKv({ name: 'shared', stores: ['things', 'more'], indexedDB: factory });
    await expect(first.read((tx) => tx.get('things', ['a']))).rejects.toThrow(StorageClosedError);
    expect(await second.read((tx) => tx.get('things', ['a']))).toBe(1);
    await second.write((tx) => tx.put('more', ['b'], 2));
    await second.close();
    await first.close();
  });
});

describe('idb row cache', () => {
  const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  /** Counts IndexedDB transactions opened while `fn` runs. */
  async function countTransactions<T>(fn: () => Promise<T>): Promise<{ result: T; opened: number }> {
    const proto = globalThis.IDBDatabase.prototype;
    const transaction = proto.transaction;
    let opened = 0;
    proto.transaction = function (this: IDBDatabase, ...args: Parameters<IDBDatabase['transaction']>) {
      opened++;
      return transaction.apply(this, args);
    } as IDBDatabase['transaction'];
    try {
      return { result: await fn(), opened };
    } finally {
      proto.transaction = transaction;
    }
  }

  it('answers reads of written and already read rows without IndexedDB, with copies', async () => {
    const kv = await openIdbKv({ name: 'cache-hits', stores: ['things'], indexedDB: new IDBFactory(), cache: true });
    await kv.write((tx) => tx.put('things', ['a'], { n: 1 }));
    const first = await countTransactions(() => kv.read((tx) => tx.getMany('things', [['a'], ['absent']])));
    expect(first).toEqual({ result: [{ n: 1 }, undefined], opened: 1 }); // 'absent' was unknown: one request
    const again = await countTransactions(() => kv.read((tx) => tx.getMany('things', [['a'], ['absent']])));
    expect(again).toEqual({ result: [{ n: 1 }, undefined], opened: 0 });
    (again.result[0] as { n: number }).n = 99;
    expect(await kv.read((tx) => tx.get('things', ['a']))).toEqual({ n: 1 });
    // A range still goes to IndexedDB, and a range delete drops the cached rows it covers.
    await kv.write((tx) => tx.deleteRange('things', {}));
    const gone = await countTransactions(() => kv.read((tx) => tx.get('things', ['a'])));
    expect(gone).toEqual({ result: undefined, opened: 1 });
    // Without the option, every read opens a transaction.
    await kv.close();
    const plain = await openIdbKv({ name: 'cache-plain', stores: ['things'], indexedDB: new IDBFactory() });
    await plain.write((tx) => tx.put('things', ['a'], 1));
    expect((await countTransactions(() => plain.read((tx) => tx.get('things', ['a'])))).opened).toBe(1);
    await plain.close();
  });

  it('a read on the cache holds back a write that starts after it: it sees all of the old state', async () => {
    const kv = await openIdbKv({ name: 'cache-order', stores: ['things'], indexedDB: new IDBFactory(), cache: true });
    await kv.write(async (tx) => {
      await tx.put('things', ['a'], 1);
      await tx.put('things', ['r', 1], 1);
    });
    await kv.read((tx) => tx.get('things', ['a'])); // cached
    for (let i = 2; i < 6; i++) {
      // The read's gets are hits; its range needs IndexedDB, opened after the write below was called (and, without
      // the hold-back, after the write had opened its own transaction).
      const read = kv.read(async (tx) => {
        let a: number | undefined;
        for (let j = 0; j < 20; j++) a = await tx.get<number>('things', ['a']);
        const rows = await tx.range('things', { prefix: ['r'] });
        return { a, rows: rows.length };
      });
      const write = kv.write(async (tx) => {
        await tx.put('things', ['a'], i);
        await tx.put('things', ['r', i], i);
      });
      const [seen] = await Promise.all([read, write]);
      expect(seen).toEqual({ a: i - 1, rows: i - 1 });
    }
    await kv.close();
  });

  it('reads that start while a write runs see it entirely or not at all', async () => {
    const kv = await openIdbKv({ name: 'cache-during', stores: ['things'], indexedDB: new IDBFactory(), cache: true });
    await kv.write((tx) => tx.put('things', ['a'], 0));
    await kv.read((tx) => tx.get('things', ['a'])); // cached
    for (let i = 1; i < 6; i++) {
      const write = kv.write(async (tx) => {
        await tx.get('things', ['missing', i]); // a round trip to IndexedDB inside the write
        await tx.put('things', ['a'], i);
        await tx.put('things', ['r', i], i);
      });
      // `a` could come from the cache, `rows` only from IndexedDB: both must show the same state.
      const reads = [0, 1, 3].map(async (ms) => {
        await tick(ms);
        return kv.read(async (tx) => {
          const a = await tx.get<number>('things', ['a']);
          const rows = await tx.range('things', { prefix: ['r'] });
          return [a, rows.length];
        });
      });
      await write;
      for (const [a, rows] of await Promise.all(reads)) {
        expect(rows).toBe(a);
        expect([i - 1, i]).toContain(a);
      }
      expect(await kv.read((tx) => tx.get('things', ['a']))).toBe(i);
    }
    await kv.close();
  });

  it('a read on the cache that awaits something foreign fails and does not hold writes back', async () => {
    const kv = await openIdbKv({ name: 'cache-foreign', stores: ['things'], indexedDB: new IDBFactory(), cache: true });
    await kv.write((tx) => tx.put('things', ['a'], 1));
    let written = false;
    const read = kv.read(async (tx) => {
      await tx.get('things', ['a']);
      await tick(50);
      return written;
    });
    await tick(5);
    await kv.write((tx) => tx.put('things', ['a'], 2));
    written = true;
    // The read ran past its transaction's end: whatever fn returns, the write did not wait for it.
    expect(await read).toBe(true);
    await expect(kv.read(async (tx) => {
      await tx.get('things', ['a']);
      await tick(5);
      return tx.get('things', ['a']);
    })).rejects.toThrow(TransactionInactiveError);
    await kv.close();
  });
});
