import { describe, expect, it } from 'vitest';
import { openMemoryKv } from '../../src/storage/memory-kv.js';
import { measureConcurrentWrites, measureRawBatchedWrites } from '../../src/storage/probe.js';
import { META_STORE } from '../../src/storage/kv.js';
import { runKvSuite } from './kv-suite.js';

runKvSuite('memory', async () => ({
  open: (stores) => openMemoryKv({ name: 'test', stores }),
  cleanup: async () => undefined,
}), { persistent: false, detectsForeignAwait: true });

describe('write probes', () => {
  it('measure rates and clean up after themselves', async () => {
    const kv = await openMemoryKv({ name: 'probe', stores: [] });
    const raw = await measureRawBatchedWrites(kv, { batches: 20, batchSize: 5 });
    expect(raw.transactions).toBe(20);
    expect(raw.puts).toBe(100);
    expect(raw.putsPerSecond).toBeGreaterThan(0);
    const conc = await measureConcurrentWrites(kv, { writers: 4, transactionsPerWriter: 5 });
    expect(conc.transactions).toBe(20);
    expect(await kv.read((tx) => tx.count(META_STORE, { prefix: ['probe'] }))).toBe(0);
    await kv.close();
  });
});
