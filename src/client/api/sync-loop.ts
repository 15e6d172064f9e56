/**
 * The /sync long-poll loop: an initial sync, then `since` + `timeout` polls, backing off on failure and starting
 * again quickly when the homeserver (a service worker that may have been restarted) answers again.
 * https://spec.matrix.org/v1.19/client-server-api/#syncing
 */
import type { MatrixApi } from './client.js';
import { MatrixApiError, NetworkError } from './http.js';
import type { SyncResponse } from './types.js';

export type SyncStatus = 'connecting' | 'online' | 'offline' | 'error';

/** Delay before retry number `attempt` (0-based): 0.5 s, 1 s, 2 s … at most 30 s. */
export function backoffDelay(attempt: number): number {
  return Math.min(30_000, 500 * 2 ** Math.max(0, attempt));
}

export interface SyncLoopInit {
  filter?: string;
  /** Long-poll timeout for incremental syncs. */
  timeoutMs?: number;
  onResponse: (res: SyncResponse, initial: boolean) => void;
  onStatus: (status: SyncStatus, error?: string) => void;
  /** The access token is no longer valid: the loop has stopped. */
  onLoggedOut: () => void;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });
}

export class SyncLoop {
  private abort: AbortController | undefined;
  private since: string | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly api: MatrixApi,
    private readonly init: SyncLoopInit,
  ) {}

  get nextBatch(): string | undefined {
    return this.since;
  }

  start(): void {
    if (this.running) return;
    this.abort = new AbortController();
    this.running = this.run(this.abort.signal).finally(() => (this.running = undefined));
  }

  async stop(): Promise<void> {
    this.abort?.abort();
    await this.running;
  }

  /** Cut a waiting backoff short (e.g. the browser says it is online again). */
  poke(): void {
    this.wake?.();
  }

  private wake: (() => void) | undefined;

  private async run(signal: AbortSignal): Promise<void> {
    const sleep = this.init.sleep ?? defaultSleep;
    let attempt = 0;
    this.init.onStatus('connecting');
    while (!signal.aborted) {
      const initial = this.since === undefined;
      try {
        const res = await this.api.sync({
          since: this.since,
          timeout: initial || attempt > 0 ? 0 : (this.init.timeoutMs ?? 30_000),
          filter: this.init.filter,
          signal,
        });
        if (signal.aborted) return;
        this.since = res.next_batch;
        attempt = 0;
        this.init.onStatus('online');
        this.init.onResponse(res, initial);
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof MatrixApiError && e.errcode === 'M_UNKNOWN_TOKEN') {
          this.init.onLoggedOut();
          return;
        }
        let delay = backoffDelay(attempt++);
        if (e instanceof MatrixApiError && e.errcode === 'M_LIMIT_EXCEEDED' && typeof e.body.retry_after_ms === 'number') {
          delay = Math.max(delay, e.body.retry_after_ms);
        }
        this.init.onStatus(e instanceof NetworkError ? 'offline' : 'error', (e as Error).message);
        const wakeCtl = new AbortController();
        this.wake = () => wakeCtl.abort();
        const onAbort = () => wakeCtl.abort();
        signal.addEventListener('abort', onAbort, { once: true });
        await sleep(delay, wakeCtl.signal);
        signal.removeEventListener('abort', onAbort);
        this.wake = undefined;
      }
    }
  }
}
