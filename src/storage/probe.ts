/**
 * Raw write-rate probes, for benchmarks: how fast this engine persists batches through the contract, so that a
 * benchmark can report the homeserver's persisted events/s as a fraction of what storage alone can do.
 *
 * Both probes write event-sized JSON values under META_STORE key ['probe', runId, …] and delete them afterwards.
 */
import { META_STORE } from './kv.js';
import type { Kv } from './kv.js';

export interface WriteProbeResult {
  /** Write transactions committed. */
  transactions: number;
  /** Puts committed in total. */
  puts: number;
  ms: number;
  transactionsPerSecond: number;
  putsPerSecond: number;
}

export interface RawBatchedWritesOptions {
  /** Sequential write transactions (default 200). */
  batches?: number;
  /** Puts per transaction (default 1). */
  batchSize?: number;
  /** Approximate size of each value, in bytes of JSON (default 600, a typical room event). */
  valueBytes?: number;
}

export interface ConcurrentWritesOptions {
  /** Concurrent writers, each awaiting its previous write before the next (default 8). */
  writers?: number;
  /** Write transactions per writer (default 100). */
  transactionsPerWriter?: number;
  /** Puts per transaction (default 1). */
  putsPerTransaction?: number;
  valueBytes?: number;
}

function sampleValue(bytes: number, i: number): Record<string, unknown> {
  const base = {
    type: 'm.room.message',
    sender: '@probe:hearth.local',
    origin_server_ts: 1_700_000_000_000 + i,
    content: { msgtype: 'm.text', body: '' },
  };
  const pad = Math.max(0, bytes - JSON.stringify(base).length);
  return { ...base, content: { msgtype: 'm.text', body: 'x'.repeat(pad) } };
}

let runs = 0;
function runId(): string {
  return `${Date.now().toString(36)}-${(runs++).toString(36)}`;
}

async function cleanUp(kv: Kv, id: string): Promise<void> {
  await kv.write((tx) => tx.deleteRange(META_STORE, { prefix: ['probe', id] }));
}

function result(transactions: number, puts: number, ms: number): WriteProbeResult {
  return {
    transactions,
    puts,
    ms,
    transactionsPerSecond: (transactions * 1000) / ms,
    putsPerSecond: (puts * 1000) / ms,
  };
}

/** Sequential write transactions of `batchSize` puts each: the engine's raw durable write rate. */
export async function measureRawBatchedWrites(kv: Kv, options: RawBatchedWritesOptions = {}): Promise<WriteProbeResult> {
  const batches = options.batches ?? 200;
  const batchSize = options.batchSize ?? 1;
  const value = sampleValue(options.valueBytes ?? 600, 0);
  const id = runId();
  const start = performance.now();
  for (let b = 0; b < batches; b++) {
    await kv.write(async (tx) => {
      for (let i = 0; i < batchSize; i++) await tx.put(META_STORE, ['probe', id, b, i], value);
    });
  }
  const ms = performance.now() - start;
  await cleanUp(kv, id);
  return result(batches, batches * batchSize, ms);
}

/**
 * `writers` loops, each committing `transactionsPerWriter` write transactions one after another, all at once:
 * what concurrent senders get (with group commit on LevelDB, several of them share one sync batch).
 */
export async function measureConcurrentWrites(kv: Kv, options: ConcurrentWritesOptions = {}): Promise<WriteProbeResult> {
  const writers = options.writers ?? 8;
  const perWriter = options.transactionsPerWriter ?? 100;
  const puts = options.putsPerTransaction ?? 1;
  const value = sampleValue(options.valueBytes ?? 600, 0);
  const id = runId();
  const start = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let t = 0; t < perWriter; t++) {
        await kv.write(async (tx) => {
          for (let i = 0; i < puts; i++) await tx.put(META_STORE, ['probe', id, w, t, i], value);
        });
      }
    }),
  );
  const ms = performance.now() - start;
  await cleanUp(kv, id);
  return result(writers * perWriter, writers * perWriter * puts, ms);
}
