import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { describe, expect, it } from 'vitest';
import { QuotaExceededError, StorageClosedError } from '../../src/storage/kv.js';
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
