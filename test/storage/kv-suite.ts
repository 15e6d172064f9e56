/**
 * The one storage test suite every backend must pass (memory.test.ts, idb.test.ts, level.test.ts call it).
 * Expected orders are written out by hand, not computed with the code under test.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  META_STORE,
  StorageClosedError,
  TransactionInactiveError,
  compareKeys,
  type Kv,
  type KeyPart,
  type RangeOptions,
  type WriteTx,
} from '../../src/storage/kv.js';
import { SchemaTooNewError, getSchemaVersion, runMigrations, type Migration } from '../../src/storage/migrations.js';

export interface KvHarness {
  /** Opens the harness's database; calling it again after `close()` reopens the same data (if persistent). */
  open(stores: readonly string[]): Promise<Kv>;
  /** Removes everything the harness made (temp dirs, databases). */
  cleanup(): Promise<void>;
}

export interface BackendTraits {
  /** Whether data survives close() + open(). */
  persistent: boolean;
  /** Whether awaiting a foreign promise inside fn is detected (IndexedDB, memory: yes; LevelDB: no). */
  detectsForeignAwait: boolean;
}

export const STORES = ['things', 'other'];

const tick = (ms = 2): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Keys in the order IndexedDB defines, written out by hand. */
export const ORDERED_KEYS: KeyPart[][] = [
  [],
  [0],
  [0, 0],
  [0, 'x'],
  [1],
  [2],
  [127],
  [255],
  [256],
  [65_535],
  [65_536],
  [2 ** 32],
  [2 ** 48 + 7],
  [Number.MAX_SAFE_INTEGER],
  [''],
  ['', 0],
  ['', ''],
  ['\u0000'],
  ['\u0000', 5],
  ['\u0000\u0000'],
  ['\u0001'],
  ['A'],
  ['Z'],
  ['a'],
  ['a', 0],
  ['a', 10],
  ['a', 'a'],
  ['a', 'b', 0],
  ['a\u0000'],
  ['aa'],
  ['ab'],
  ['b'],
  ['~'],
  ['\u007f'],
  ['\u0080'],
  ['\u00e9'],
  ['\u00ff'],
  ['\u0100'],
  ['\u4000'],
  ['\u407e'],
  ['\u407f'],
  ['\u4080'],
  ['\u4e2d'],
  ['\ud7ff'],
  // Astral characters are surrogate pairs: by code units they sort below U+E000..U+FFFF (not by code point).
  ['\ud800\udc00'],
  ['\ud83d\ude00'],
  ['\ud83d\ude00', 0],
  ['\ud83d\ude01'],
  ['\udbff\udfff'],
  ['\ue000'],
  ['\uff5e'],
  ['\uffff'],
  ['\uffff\uffff'],
];

export function runKvSuite(name: string, factory: () => Promise<KvHarness>, traits: BackendTraits): void {
  describe(`kv contract: ${name}`, () => {
    let h: KvHarness;
    let kv: Kv;
    const opened: Kv[] = [];
    const open = async (stores: readonly string[] = STORES): Promise<Kv> => {
      const k = await h.open(stores);
      opened.push(k);
      return k;
    };

    beforeEach(async () => {
      h = await factory();
      kv = await open();
    });

    afterEach(async () => {
      for (const k of opened.splice(0)) await k.close();
      await h.cleanup();
    });

    const all = (store = 'things', options?: RangeOptions) => kv.read((tx) => tx.range(store, options));
    const keysOf = (rows: Array<[KeyPart[], unknown]>) => rows.map(([k]) => k);

    describe('ordering', () => {
      it('orders keys like IndexedDB: numbers before strings, UTF-16 code units, prefixes first', async () => {
        const shuffled = [...ORDERED_KEYS].sort((a, b) => JSON.stringify(b).localeCompare(JSON.stringify(a)));
        await kv.write(async (tx) => {
          for (const [i, k] of shuffled.entries()) await tx.put('things', k, i);
        });
        expect(keysOf(await all())).toEqual(ORDERED_KEYS);
        expect(keysOf(await all('things', { reverse: true }))).toEqual([...ORDERED_KEYS].reverse());
        // Every key reads back exactly, and each is distinct.
        const values = await kv.read((tx) => tx.getMany('things', ORDERED_KEYS));
        expect(values.every((v) => typeof v === 'number')).toBe(true);
        expect(new Set(values).size).toBe(ORDERED_KEYS.length);
        expect(await kv.read((tx) => tx.count('things'))).toBe(ORDERED_KEYS.length);
      });

      it('keeps stores apart', async () => {
        await kv.write(async (tx) => {
          await tx.put('things', ['k'], 1);
          await tx.put('other', ['k'], 2);
          await tx.put('other', ['l'], 3);
        });
        expect(await all('things')).toEqual([[['k'], 1]]);
        expect(await all('other')).toEqual([
          [['k'], 2],
          [['l'], 3],
        ]);
        await kv.write((tx) => tx.deleteRange('other', {}));
        expect(await all('things')).toEqual([[['k'], 1]]);
        expect(await all('other')).toEqual([]);
      });
    });

    describe('ranges', () => {
      // key: ['r', i] → i, plus ['r', 3, 'sub'], ['q'] and ['s'] around them
      const DATA: KeyPart[][] = [['q'], ...[0, 1, 2, 3].map((i) => ['r', i]), ['r', 3, 'sub'], ...[4, 5, 6, 7, 8, 9].map((i) => ['r', i]), ['r', 'x'], ['s']];
      beforeEach(async () => {
        await kv.write(async (tx) => {
          for (const k of DATA) await tx.put('things', k, k.join('/'));
        });
      });

      const cases: Array<[string, RangeOptions, KeyPart[][]]> = [
        ['everything', {}, DATA],
        ['prefix', { prefix: ['r'] }, DATA.slice(1, -1)],
        ['prefix of a number', { prefix: ['r', 3] }, [['r', 3], ['r', 3, 'sub']]],
        ['prefix with no match', { prefix: ['p'] }, []],
        ['gte', { gte: ['r', 8] }, [['r', 8], ['r', 9], ['r', 'x'], ['s']]],
        ['gt', { gt: ['r', 8] }, [['r', 9], ['r', 'x'], ['s']]],
        ['gt excludes the key but not its extensions', { gt: ['r', 3], lt: ['r', 4] }, [['r', 3, 'sub']]],
        ['lte', { lte: ['r', 1] }, [['q'], ['r', 0], ['r', 1]]],
        ['lt', { lt: ['r', 1] }, [['q'], ['r', 0]]],
        ['lte excludes extensions', { gte: ['r', 3], lte: ['r', 3] }, [['r', 3]]],
        ['gte + lt', { gte: ['r', 2], lt: ['r', 5] }, [['r', 2], ['r', 3], ['r', 3, 'sub'], ['r', 4]]],
        ['gt + lte', { gt: ['r', 2], lte: ['r', 5] }, [['r', 3], ['r', 3, 'sub'], ['r', 4], ['r', 5]]],
        ['prefix + gt', { prefix: ['r'], gt: ['r', 8] }, [['r', 9], ['r', 'x']]],
        ['prefix + lt', { prefix: ['r'], lt: ['r', 1] }, [['r', 0]]],
        ['prefix + bounds outside it', { prefix: ['r'], gte: ['a'], lte: ['z'] }, DATA.slice(1, -1)],
        ['bounds crossed', { gt: ['r', 5], lt: ['r', 2] }, []],
        ['equal exclusive bounds', { gt: ['r', 5], lt: ['r', 5] }, []],
        ['prefix and a lower bound past it', { prefix: ['r'], gt: ['r', 'y'] }, []],
        ['prefix and an upper bound before it', { prefix: ['r'], lt: ['q', 'z'] }, []],
        ['numbers before strings in a bound', { gt: ['r', 9] }, [['r', 'x'], ['s']]],
      ];

      for (const [what, options, expected] of cases) {
        it(`${what}: forward, reverse, limit, count`, async () => {
          expect(keysOf(await all('things', options))).toEqual(expected);
          expect(keysOf(await all('things', { ...options, reverse: true }))).toEqual([...expected].reverse());
          expect(keysOf(await all('things', { ...options, limit: 2 }))).toEqual(expected.slice(0, 2));
          expect(keysOf(await all('things', { ...options, reverse: true, limit: 2 }))).toEqual([...expected].reverse().slice(0, 2));
          expect(await all('things', { ...options, limit: 0 })).toEqual([]);
          expect(await kv.read((tx) => tx.count('things', options))).toBe(expected.length);
          // The same inside a write transaction (through the overlay), and deleteRange removes exactly these.
          await expect(
            kv.write(async (tx) => {
              expect(keysOf(await tx.range('things', { ...options, reverse: true, limit: 3 }))).toEqual([...expected].reverse().slice(0, 3));
              await tx.deleteRange('things', options);
              expect(await tx.count('things', options)).toBe(0);
              expect(await tx.count('things')).toBe(DATA.length - expected.length);
              throw new Error('roll back');
            }),
          ).rejects.toThrow('roll back');
          await kv.write((tx) => tx.deleteRange('things', options));
          const left = keysOf(await all());
          expect(left).toEqual(DATA.filter((k) => !expected.some((e) => JSON.stringify(e) === JSON.stringify(k))));
        });
      }

      it('returns values with keys', async () => {
        expect(await all('things', { prefix: ['r', 3] })).toEqual([
          [['r', 3], 'r/3'],
          [['r', 3, 'sub'], 'r/3/sub'],
        ]);
      });

      it('rejects bad ranges, keys, limits and stores', async () => {
        await expect(all('things', { limit: -1 })).rejects.toThrow(TypeError);
        await expect(all('things', { limit: 1.5 })).rejects.toThrow(TypeError);
        await expect(all('things', { gt: [-1] })).rejects.toThrow(TypeError);
        await expect(kv.read((tx) => tx.get('things', [1.5]))).rejects.toThrow(TypeError);
        await expect(kv.read((tx) => tx.get('things', [true as unknown as string]))).rejects.toThrow(TypeError);
        await expect(kv.read((tx) => tx.get('things', 'k' as unknown as KeyPart[]))).rejects.toThrow(TypeError);
        await expect(kv.read((tx) => tx.get('nope', ['k']))).rejects.toThrow(/unknown store/);
        await expect(kv.write((tx) => tx.put('nope', ['k'], 1))).rejects.toThrow(/unknown store/);
      });
    });

    describe('values', () => {
      it('round-trips JSON values and Uint8Array, nested too', async () => {
        const values: unknown[] = [
          null,
          true,
          false,
          0,
          -12.5,
          1e300,
          '',
          'plain',
          'h\u00e9llo \ud83d\ude00 \u0000 \ud800',
          [],
          [1, 'two', null, [3]],
          {},
          { a: 1, b: { c: [true, null, 'x'] }, 'with space': '', '\u0000': 'nul key', '\u0000\u0000x': 2 },
          new Uint8Array([0, 1, 2, 254, 255]),
          new Uint8Array(0),
          { bytes: new Uint8Array([9, 8, 7]), list: [new Uint8Array([1]), { deep: new Uint8Array(300).fill(7) }] },
          { '\u0000': new Uint8Array([1]) },
          { '\u0000': 'looks like a tag' },
        ];
        await kv.write(async (tx) => {
          for (const [i, v] of values.entries()) await tx.put('things', ['v', i], v as object);
        });
        const back = await kv.read((tx) => tx.getMany('things', values.map((_, i) => ['v', i])));
        expect(back).toEqual(values);
        for (const [i, v] of values.entries()) {
          if (v instanceof Uint8Array) expect(back[i]).toBeInstanceOf(Uint8Array);
        }
        expect((back[15] as { bytes: unknown }).bytes).toBeInstanceOf(Uint8Array);
      });

      it('refuses values that are not JSON-compatible, writing nothing', async () => {
        const bad: unknown[] = [undefined, NaN, Infinity, () => 1, new Date(0), new Map(), { a: undefined }, [1, undefined], 10n, Symbol('s')];
        for (const v of bad) {
          await expect(
            kv.write(async (tx) => {
              await tx.put('things', ['ok'], 1);
              await tx.put('things', ['bad'], v as object);
            }),
          ).rejects.toThrow(TypeError);
        }
        const cyclic: Record<string, unknown> = {};
        cyclic.self = cyclic;
        await expect(kv.write((tx) => tx.put('things', ['c'], cyclic))).rejects.toThrow(TypeError);
        expect(await all()).toEqual([]);
      });

      it('copies values in and out', async () => {
        const v = { n: 1, list: [1] };
        await kv.write(async (tx) => {
          await tx.put('things', ['k'], v);
          v.n = 2;
          const inside = await tx.get<{ n: number; list: number[] }>('things', ['k']);
          expect(inside?.n).toBe(1);
          inside!.list.push(2);
        });
        v.list.push(3);
        const got = await kv.read((tx) => tx.get<{ n: number; list: number[] }>('things', ['k']));
        expect(got).toEqual({ n: 1, list: [1] });
        got!.n = 5;
        expect(await kv.read((tx) => tx.get('things', ['k']))).toEqual({ n: 1, list: [1] });
      });

      it('get/getMany/delete', async () => {
        await kv.write(async (tx) => {
          await tx.put('things', ['a'], 1);
          await tx.put('things', ['b'], 2);
          await tx.put('things', ['a'], 3);
        });
        expect(await kv.read((tx) => tx.getMany('things', [['b'], ['x'], ['a']]))).toEqual([2, undefined, 3]);
        expect(await kv.read((tx) => tx.getMany('things', []))).toEqual([]);
        await kv.write((tx) => tx.delete('things', ['a']));
        await kv.write((tx) => tx.delete('things', ['never']));
        expect(await kv.read((tx) => tx.get('things', ['a']))).toBeUndefined();
        expect(await all()).toEqual([[['b'], 2]]);
      });
    });

    describe('transactions', () => {
      it('a throwing fn writes nothing and rejects with its error', async () => {
        await kv.write((tx) => tx.put('things', ['keep'], 1));
        const boom = new Error('boom');
        await expect(
          kv.write(async (tx) => {
            await tx.put('things', ['new'], 1);
            await tx.put('other', ['new'], 1);
            await tx.delete('things', ['keep']);
            await tx.deleteRange('things', {});
            throw boom;
          }),
        ).rejects.toBe(boom);
        expect(await all()).toEqual([[['keep'], 1]]);
        expect(await all('other')).toEqual([]);
      });

      it('returns fn\'s result', async () => {
        expect(await kv.write(async (tx) => (await tx.put('things', ['a'], 1), 'done'))).toBe('done');
        expect(await kv.read(async (tx) => tx.get('things', ['a']))).toBe(1);
      });

      it('reads see the transaction\'s own writes', async () => {
        await kv.write(async (tx) => {
          for (let i = 0; i < 100; i++) await tx.put('things', ['n', i], i);
        });
        await kv.write(async (tx) => {
          await tx.put('things', ['n', 1000], 'new');
          expect(await tx.get('things', ['n', 1000])).toBe('new');
          await tx.put('things', ['n', 5], 'changed');
          expect(await tx.getMany('things', [['n', 5], ['n', 6]])).toEqual(['changed', 6]);
          // Hide half of the stored rows: limited ranges must still fill up correctly.
          for (let i = 0; i < 100; i += 2) await tx.delete('things', ['n', i]);
          expect(await tx.get('things', ['n', 0])).toBeUndefined();
          expect(await tx.range('things', { prefix: ['n'], limit: 4 })).toEqual([
            [['n', 1], 1],
            [['n', 3], 3],
            [['n', 5], 'changed'],
            [['n', 7], 7],
          ]);
          expect(keysOf(await tx.range('things', { prefix: ['n'], reverse: true, limit: 3 }))).toEqual([['n', 1000], ['n', 99], ['n', 97]]);
          expect(keysOf(await tx.range('things', { prefix: ['n'], gt: ['n', 90] }))).toEqual([['n', 91], ['n', 93], ['n', 95], ['n', 97], ['n', 99], ['n', 1000]]);
          expect(await tx.count('things', { prefix: ['n'] })).toBe(51);
          await tx.deleteRange('things', { gte: ['n', 10], lt: ['n', 90] });
          expect(await tx.count('things', { prefix: ['n'] })).toBe(11);
          await tx.put('things', ['n', 50], 'back');
          expect(await tx.get('things', ['n', 50])).toBe('back');
          expect(await tx.get('things', ['n', 51])).toBeUndefined();
          expect(keysOf(await tx.range('things', { prefix: ['n'], gte: ['n', 9], limit: 3 }))).toEqual([['n', 9], ['n', 50], ['n', 91]]);
          expect(await tx.count('things', { prefix: ['n'] })).toBe(12);
          expect(await tx.count('things', { prefix: ['n'], gt: ['n', 40], lt: ['n', 95] })).toBe(3);
        });
        const after = await kv.read((tx) => tx.range('things', { prefix: ['n'] }));
        expect(after.map(([k]) => k[1])).toEqual([1, 3, 5, 7, 9, 50, 91, 93, 95, 97, 99, 1000]);
        expect(after.find(([k]) => k[1] === 5)?.[1]).toBe('changed');
        expect(await kv.read((tx) => tx.count('things', { prefix: ['n'] }))).toBe(12);
      });

      it('limited ranges inside a write continue correctly past many hidden rows', async () => {
        await kv.write(async (tx) => {
          for (let i = 0; i < 100; i++) await tx.put('things', ['n', i], i);
        });
        await kv.write(async (tx) => {
          await tx.deleteRange('things', { gte: ['n', 0], lt: ['n', 31] });
          await tx.deleteRange('things', { gt: ['n', 68], lte: ['n', 99] });
          expect(await tx.range('things', { prefix: ['n'], limit: 3 })).toEqual([
            [['n', 31], 31],
            [['n', 32], 32],
            [['n', 33], 33],
          ]);
          expect(keysOf(await tx.range('things', { prefix: ['n'], reverse: true, limit: 3 }))).toEqual([['n', 68], ['n', 67], ['n', 66]]);
          expect(keysOf(await tx.range('things', { prefix: ['n'] }))).toHaveLength(38);
          expect(await tx.count('things', { prefix: ['n'] })).toBe(38);
        });
        expect(await kv.read((tx) => tx.count('things', { prefix: ['n'] }))).toBe(38);
      });

      it('random puts, deletes and range deletes agree with a plain model, inside and after the transaction', async () => {
        let seed = 12345;
        const rand = (n: number): number => {
          seed = (seed * 1103515245 + 12345) % 2 ** 31;
          return seed % n;
        };
        const randomKey = (): KeyPart[] => {
          const n = rand(12);
          return [[], ['j'], ['k', n], ['k', n, 'x'], ['k', 'z'], ['l']][rand(6)];
        };
        const randomRange = (): RangeOptions => {
          const r: RangeOptions = {};
          if (rand(3) === 0) r.prefix = rand(2) ? ['k'] : ['k', rand(12)];
          if (rand(2)) r[rand(2) ? 'gte' : 'gt'] = randomKey();
          if (rand(2)) r[rand(2) ? 'lte' : 'lt'] = randomKey();
          if (rand(2)) r.reverse = true;
          if (rand(2)) r.limit = rand(6);
          return r;
        };
        const model = new Map<string, [KeyPart[], unknown]>();
        const within = (k: KeyPart[], r: RangeOptions): boolean =>
          (!r.prefix || (k.length >= r.prefix.length && r.prefix.every((p, i) => p === k[i]))) &&
          (!r.gte || compareKeys(k, r.gte) >= 0) &&
          (!r.gt || compareKeys(k, r.gt) > 0) &&
          (!r.lte || compareKeys(k, r.lte) <= 0) &&
          (!r.lt || compareKeys(k, r.lt) < 0);
        const expected = (m: Map<string, [KeyPart[], unknown]>, r: RangeOptions) => {
          const rows = [...m.values()].filter(([k]) => within(k, r)).sort((a, b) => compareKeys(a[0], b[0]));
          if (r.reverse) rows.reverse();
          return r.limit === undefined ? rows : rows.slice(0, r.limit);
        };
        for (let round = 0; round < 12; round++) {
          const next = new Map(model);
          await kv.write(async (tx) => {
            for (let op = 0; op < 15; op++) {
              const choice = rand(10);
              if (choice < 5) {
                const k = randomKey();
                await tx.put('things', k, { round, op });
                next.set(JSON.stringify(k), [k, { round, op }]);
              } else if (choice < 7) {
                const k = randomKey();
                await tx.delete('things', k);
                next.delete(JSON.stringify(k));
              } else if (choice < 8) {
                const r = randomRange();
                delete r.reverse;
                delete r.limit;
                await tx.deleteRange('things', r);
                for (const [id, [k]] of next) if (within(k, r)) next.delete(id);
              } else {
                const r = randomRange();
                expect(await tx.range('things', r), JSON.stringify(r)).toEqual(expected(next, r));
                expect(await tx.count('things', r)).toBe(expected(next, { ...r, limit: undefined }).length);
              }
            }
          });
          model.clear();
          for (const [id, row] of next) model.set(id, row);
          for (let q = 0; q < 5; q++) {
            const r = randomRange();
            expect(await kv.read((tx) => tx.range('things', r)), JSON.stringify(r)).toEqual(expected(model, r));
          }
        }
      });

      it('a reader never sees part of a concurrent write', async () => {
        const N = 40;
        let stop = false;
        const seen = new Set<number>();
        const writer = async () => {
          for (let gen = 1; gen <= 15; gen++) {
            await kv.write(async (tx) => {
              for (let i = 0; i < N; i++) await tx.put('things', ['iso', i], gen);
              await tx.put('other', ['gen'], gen);
            });
            await tick(0);
          }
          stop = true;
        };
        const reader = async () => {
          while (!stop) {
            const [rows, gen] = await kv.read(async (tx) => {
              const rows = await tx.range('things', { prefix: ['iso'] });
              const gen = await tx.get('other', ['gen']);
              return [rows, gen] as const;
            });
            const gens = new Set(rows.map(([, v]) => v));
            expect(rows.length === 0 || rows.length === N).toBe(true);
            expect(gens.size).toBeLessThanOrEqual(1);
            if (rows.length > 0) expect(gen).toBe(rows[0][1]);
            if (typeof gen === 'number') seen.add(gen);
            await tick(0);
          }
        };
        await Promise.all([writer(), reader(), reader(), reader()]);
        expect(seen.size).toBeGreaterThan(0);
      });

      it('many concurrent read-modify-write writers lose no update', async () => {
        const writers = 8;
        const each = 25;
        await Promise.all(
          Array.from({ length: writers }, async (_, w) => {
            for (let i = 0; i < each; i++) {
              await kv.write(async (tx) => {
                const n = (await tx.get<number>('things', ['counter'])) ?? 0;
                const mine = (await tx.get<number>('things', ['per', w])) ?? 0;
                await tx.put('things', ['counter'], n + 1);
                await tx.put('things', ['per', w], mine + 1);
                await tx.put('things', ['log', n], w);
              });
            }
          }),
        );
        expect(await kv.read((tx) => tx.get('things', ['counter']))).toBe(writers * each);
        expect(await kv.read((tx) => tx.count('things', { prefix: ['log'] }))).toBe(writers * each);
        const per = await kv.read((tx) => tx.range('things', { prefix: ['per'] }));
        expect(per.map(([, v]) => v)).toEqual(Array(writers).fill(each));
      });

      it('a write is visible to reads that start after it resolves', async () => {
        await Promise.all(
          Array.from({ length: 8 }, async (_, w) => {
            for (let i = 0; i < 10; i++) {
              await kv.write((tx) => tx.put('things', ['seen', w, i], true));
              expect(await kv.read((tx) => tx.get('things', ['seen', w, i]))).toBe(true);
            }
          }),
        );
      });

      it('refuses a tx used after fn settled', async () => {
        let kept: WriteTx | undefined;
        await kv.write(async (tx) => {
          kept = tx;
          await tx.put('things', ['a'], 1);
        });
        await expect(kept!.put('things', ['b'], 1)).rejects.toThrow(TransactionInactiveError);
        await expect(kept!.get('things', ['a'])).rejects.toThrow(TransactionInactiveError);
        expect(keysOf(await all())).toEqual([['a']]);
      });

      if (traits.detectsForeignAwait) it('reports awaiting something foreign inside fn, writing nothing', async () => {
        const err = await kv
          .write(async (tx) => {
            await tx.put('things', ['before'], 1);
            await tick(5);
            await tx.put('things', ['after'], 1);
          })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(TransactionInactiveError);
        expect((err as Error).name).toBe('TransactionInactiveError');
        // Writes only, then a foreign await at the end: still refused, still nothing written.
        const err2 = await kv
          .write(async (tx) => {
            await tx.get('things', ['x']);
            await tx.put('things', ['late'], 1);
            await tick(5);
          })
          .catch((e: unknown) => e);
        expect(err2).toBeInstanceOf(TransactionInactiveError);
        expect(await all()).toEqual([]);
        // Reads after a foreign await fail too.
        await expect(
          kv.read(async (tx) => {
            await tick(5);
            return tx.get('things', ['x']);
          }),
        ).rejects.toThrow(TransactionInactiveError);
        // The database still works afterwards.
        await kv.write((tx) => tx.put('things', ['fine'], 1));
        expect(keysOf(await all())).toEqual([['fine']]);
      });
    });

    describe('migrations', () => {
      it('runs each migration once, in order, and records the version', async () => {
        const calls: number[] = [];
        const list: Migration[] = [
          async (tx) => {
            calls.push(0);
            await tx.put('things', ['m', 0], 'first');
          },
          async (tx) => {
            calls.push(1);
            const v = await tx.get('things', ['m', 0]);
            await tx.put('things', ['m', 1], `after ${String(v)}`);
          },
        ];
        expect(await getSchemaVersion(kv)).toBe(0);
        expect(await runMigrations(kv, list)).toEqual({ from: 0, to: 2 });
        expect(await runMigrations(kv, list)).toEqual({ from: 2, to: 2 });
        expect(calls).toEqual([0, 1]);
        expect(await kv.read((tx) => tx.get('things', ['m', 1]))).toBe('after first');
        list.push(async (tx) => {
          calls.push(2);
          await tx.put('things', ['m', 2], 'third');
        });
        expect(await runMigrations(kv, list)).toEqual({ from: 2, to: 3 });
        expect(calls).toEqual([0, 1, 2]);
        expect(await kv.read((tx) => tx.get(META_STORE, ['schemaVersion']))).toBe(3);
        // An older build (shorter list) refuses the newer database and changes nothing.
        await expect(runMigrations(kv, list.slice(0, 1))).rejects.toThrow(SchemaTooNewError);
        expect(await getSchemaVersion(kv)).toBe(3);
      });

      it('a failing migration leaves the version and data of the steps before it', async () => {
        const list: Migration[] = [
          async (tx) => tx.put('things', ['m'], 1),
          async (tx) => {
            await tx.put('things', ['half'], 1);
            throw new Error('step 1 broke');
          },
        ];
        await expect(runMigrations(kv, list)).rejects.toThrow('step 1 broke');
        expect(await getSchemaVersion(kv)).toBe(1);
        expect(keysOf(await all())).toEqual([['m']]);
        list[1] = async (tx) => tx.put('things', ['fixed'], 1);
        expect(await runMigrations(kv, list)).toEqual({ from: 1, to: 2 });
      });

      it('concurrent runners apply each step once', async () => {
        let runs = 0;
        const list: Migration[] = [0, 1, 2].map(() => async (tx) => {
          runs++;
          const n = (await tx.get<number>('things', ['n'])) ?? 0;
          await tx.put('things', ['n'], n + 1);
        });
        await Promise.all([runMigrations(kv, list), runMigrations(kv, list), runMigrations(kv, list)]);
        expect(runs).toBe(3);
        expect(await kv.read((tx) => tx.get('things', ['n']))).toBe(3);
      });
    });

    describe('lifecycle', () => {
      it('rejects use after close()', async () => {
        await kv.write((tx) => tx.put('things', ['a'], 1));
        await kv.close();
        await expect(kv.read((tx) => tx.get('things', ['a']))).rejects.toThrow(StorageClosedError);
        await expect(kv.write((tx) => tx.put('things', ['a'], 1))).rejects.toThrow(StorageClosedError);
        await kv.close();
      });

      it('close() waits for writes already started', async () => {
        const writes = Array.from({ length: 5 }, (_, i) => kv.write((tx) => tx.put('things', ['w', i], i)));
        await kv.close();
        await Promise.all(writes);
        if (!traits.persistent) return;
        kv = await open();
        expect(await kv.read((tx) => tx.count('things', { prefix: ['w'] }))).toBe(5);
      });

      if (traits.persistent) it('keeps data across close and reopen, and across adding a store', async () => {
        await kv.write(async (tx) => {
          await tx.put('things', ['a'], { deep: [1, new Uint8Array([5])] });
          await tx.put('other', ['b'], 'B');
        });
        await runMigrations(kv, [async (tx) => tx.put('things', ['m'], 1)]);
        await kv.close();
        kv = await open();
        expect(await kv.read((tx) => tx.get('things', ['a']))).toEqual({ deep: [1, new Uint8Array([5])] });
        expect(await getSchemaVersion(kv)).toBe(1);
        await kv.close();
        // A later build declares one more store (and forgets one: its data must stay).
        kv = await open(['things', 'added']);
        await kv.write((tx) => tx.put('added', ['c'], 'C'));
        expect(keysOf(await all())).toEqual([['a'], ['m']]);
        await kv.close();
        kv = await open([...STORES, 'added']);
        expect(await kv.read((tx) => tx.get('other', ['b']))).toBe('B');
        expect(await kv.read((tx) => tx.get('added', ['c']))).toBe('C');
      });
    });
  });
}
