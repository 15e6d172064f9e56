/**
 * IdbKv's group commit (with the row cache, src/storage/idb-kv.ts): writes queued while a commit runs share one
 * IndexedDB transaction, each still all-or-nothing on its own and seeing the writes queued before it.
 */
import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { afterEach, describe, expect, it } from 'vitest';
import { TransactionInactiveError } from '../../src/storage/kv.js';
import { openIdbKv } from '../../src/storage/idb-kv.js';

const proto = globalThis.IDBDatabase.prototype;
const realTransaction = proto.transaction;
let readwrite = 0;

afterEach(() => {
  proto.transaction = realTransaction;
});

/** Counts the read-write transactions IndexedDB is asked for from now on. */
function countReadwrite(): void {
  readwrite = 0;
  proto.transaction = function (this: IDBDatabase, ...args: Parameters<IDBDatabase['transaction']>) {
    if (args[1] === 'readwrite') readwrite++;
    return realTransaction.apply(this, args);
  } as IDBDatabase['transaction'];
}

async function open() {
  return openIdbKv({ name: 'group', stores: ['n', 'log'], indexedDB: new IDBFactory(), cache: true });
}

describe('idb group commit', () => {
  it('commits writes queued behind a running one together, each seeing those before it', async () => {
    const kv = await open();
    await kv.write((tx) => tx.put('n', ['x'], 0));
    countReadwrite();
    const incr = (i: number) =>
      kv.write(async (tx) => {
        const n = (await tx.get<number>('n', ['x']))!;
        await tx.put('n', ['x'], n + 1);
        await tx.put('log', [i], n);
        return n;
      });
    const seen = await Promise.all(Array.from({ length: 10 }, (_, i) => incr(i)));
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // The first runs alone; the nine queued behind it share one commit.
    expect(readwrite).toBeLessThanOrEqual(2);
    await kv.close();
    expect(await kv.read((tx) => tx.get('n', ['x'])).catch((e: Error) => e.name)).toBe('StorageClosedError');
  });

  it('reads of a batched write reach IndexedDB for rows nobody cached, ranges included', async () => {
    const factory = new IDBFactory();
    const first = await openIdbKv({ name: 'cold', stores: ['n'], indexedDB: factory });
    await first.write(async (tx) => {
      for (let i = 0; i < 5; i++) await tx.put('n', [i], i * 10);
    });
    await first.close();
    const kv = await openIdbKv({ name: 'cold', stores: ['n'], indexedDB: factory, cache: true });
    const [a, b, c] = await Promise.all([
      kv.write((tx) => tx.put('n', [9], 90)),
      kv.write(async (tx) => {
        await tx.delete('n', [0]);
        return (await tx.range<number>('n')).map(([k]) => k[0]);
      }),
      kv.write(async (tx) => [await tx.get('n', [3]), await tx.count('n')]),
    ]);
    expect(a).toBeUndefined();
    expect(b).toEqual([1, 2, 3, 4, 9]);
    expect(c).toEqual([30, 5]);
    expect(await kv.read((tx) => tx.range('n'))).toEqual([
      [[1], 10],
      [[2], 20],
      [[3], 30],
      [[4], 40],
      [[9], 90],
    ]);
    await kv.close();
  });

  it('a write that throws fails alone: the others of its batch commit, and later ones do not see its writes', async () => {
    const kv = await open();
    await kv.write((tx) => tx.put('n', ['x'], 1));
    const results = await Promise.allSettled([
      kv.write((tx) => tx.put('n', ['a'], 'first')),
      kv.write(async (tx) => {
        await tx.put('n', ['x'], 100);
        throw new Error('changed my mind');
      }),
      kv.write(async (tx) => {
        await tx.put('n', ['b'], 'third');
        return tx.get('n', ['x']);
      }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason.message).toBe('changed my mind');
    expect((results[2] as PromiseFulfilledResult<unknown>).value).toBe(1);
    expect(await kv.read((tx) => tx.getMany('n', [['a'], ['b'], ['x']]))).toEqual(['first', 'third', 1]);
    await kv.close();
  });

  it('a write that awaits something foreign fails alone with TransactionInactiveError, writing nothing', async () => {
    const kv = await open();
    await kv.write((tx) => tx.put('n', ['x'], 1));
    const results = await Promise.allSettled([
      kv.write((tx) => tx.put('n', ['a'], 'first')),
      kv.write(async (tx) => {
        await tx.get('n', ['never-cached']);
        await new Promise((r) => setTimeout(r, 5));
        await tx.put('n', ['bad'], 'late');
      }),
      kv.write(async (tx) => {
        await new Promise((r) => setTimeout(r, 5));
        // Nothing touched after the foreign await: still refused.
      }),
      kv.write((tx) => tx.put('n', ['b'], 'fourth')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(TransactionInactiveError);
    expect((results[2] as PromiseRejectedResult).reason).toBeInstanceOf(TransactionInactiveError);
    expect(await kv.read((tx) => tx.getMany('n', [['a'], ['bad'], ['b']]))).toEqual(['first', undefined, 'fourth']);
    await kv.close();
  });
});
