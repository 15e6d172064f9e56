/**
 * Stream positions and long-poll wake-ups. A write transaction that makes a client-visible change takes the next
 * stream position with `allocatePosition(tx)` (the counter lives in the same transaction, so positions are never
 * reused, survive restarts and are in commit order because writers are serialised). After the commit the service
 * calls `notifier.notify(pos)`, which wakes every waiting /sync at once; each re-checks what concerns it.
 */
import type { Entry, WriteTx, ReadTx } from '../storage/kv.js';
import type { StreamEntry } from '../storage/records.js';
import { STORES } from '../storage/schema.js';

const POS_KEY = ['streamPos'] as const;
/** Stream ranges at most this long are read as point reads (see `streamRange`). */
const STREAM_POINT_READ_SPAN = 16;

/** Takes the next stream position inside a write transaction. */
export async function allocatePosition(tx: WriteTx): Promise<number> {
  const last = (await tx.get<number>(STORES.server, POS_KEY)) ?? 0;
  const next = last + 1;
  await tx.put(STORES.server, POS_KEY, next);
  return next;
}

/**
 * Skips `n` positions that no stream entry will ever use, and returns the lowest. The federation layer reserves such
 * a gap below a remote join, for the room history it fetches later (timeline positions, never in /sync's stream).
 */
export async function reservePositions(tx: WriteTx, n: number): Promise<number> {
  const last = (await tx.get<number>(STORES.server, POS_KEY)) ?? 0;
  await tx.put(STORES.server, POS_KEY, last + n);
  return last + 1;
}

/**
 * The stream entries in (after, upTo], in order. A short range (a woken /sync's) is read as point reads of each
 * position — stream keys are exactly [pos], and the rows just committed are in the backend's row cache — rather
 * than through an iterator.
 */
export async function streamRange(tx: ReadTx, after: number, upTo: number): Promise<Array<Entry<StreamEntry>>> {
  if (upTo - after > STREAM_POINT_READ_SPAN) return tx.range<StreamEntry>(STORES.stream, { gt: [after], lte: [upTo] });
  if (upTo <= after) return [];
  const keys: number[][] = [];
  for (let p = after + 1; p <= upTo; p++) keys.push([p]);
  const values = await tx.getMany<StreamEntry>(STORES.stream, keys);
  const out: Array<Entry<StreamEntry>> = [];
  values.forEach((v, i) => {
    if (v !== undefined) out.push([keys[i], v]);
  });
  return out;
}

/** The last committed stream position. */
export async function currentPosition(tx: ReadTx): Promise<number> {
  return (await tx.get<number>(STORES.server, POS_KEY)) ?? 0;
}

/** The kinds of stream entry a commit wrote, when its writer says (see `Notifier.notify`). */
export type StreamKind = StreamEntry['kind'];

export class Notifier {
  private waiters = new Set<() => void>();
  private latest = 0;
  private readonly kindWatchers = new Set<{ kinds: ReadonlySet<StreamKind>; fn: () => void }>();

  /** Highest position notified in this process (a lower bound of the committed position). */
  get position(): number {
    return this.latest;
  }

  /**
   * `kinds`, when given, are every kind of stream entry the commit wrote (hot paths say `['event']`), so a
   * follower of other kinds (federation/edus.ts: presence, device lists) need not read the stream for it. Without
   * it the commit may have written anything.
   */
  notify(pos: number, kinds?: readonly StreamKind[]): void {
    if (pos > this.latest) this.latest = pos;
    const ws = this.waiters;
    this.waiters = new Set();
    for (const w of ws) w();
    for (const w of this.kindWatchers) {
      if (kinds === undefined || kinds.some((k) => w.kinds.has(k))) w.fn();
    }
  }

  /** Calls `fn` after each notify that may concern one of `kinds`. Returns the unsubscribe function. */
  watchKinds(kinds: readonly StreamKind[], fn: () => void): () => void {
    const w = { kinds: new Set(kinds), fn };
    this.kindWatchers.add(w);
    return () => this.kindWatchers.delete(w);
  }

  /**
   * Resolves at the next notify after this call, when `timeoutMs` passes, or when `signal` aborts — whichever is
   * first. Never rejects.
   */
  waitForChange(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted || timeoutMs <= 0) return resolve();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        this.waiters.delete(done);
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.add(done);
      timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}
