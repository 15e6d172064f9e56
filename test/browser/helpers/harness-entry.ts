/**
 * Test-only bundle injected into the app page by the browser tests (built by global-setup.ts into dist/test, never
 * part of dist/app): matrix-js-sdk and the page-side glue, exposed as `globalThis.hearthTest`.
 */
import * as sdk from 'matrix-js-sdk';
import { h, render } from 'preact';
import { ensureHomeserver, isControlled } from '../../../src/browser/register-sw.js';
import { requestPersistentStorage, storageStatus } from '../../../src/browser/storage.js';
import { serviceWorkerFetch } from '../../../src/browser/sw-fetch.js';
import { openIdbKv } from '../../../src/storage/idb-kv.js';
import { useSnapshot } from '../../../src/client/ui/hooks.js';
import * as bench from './bench-page.js';
import { measureConcurrentWrites, measureRawBatchedWrites } from '../../../src/storage/probe.js';

interface Emitter {
  on(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener: (...args: any[]) => void): unknown;
}

/**
 * Resolves with `check()`'s first truthy result, checked now and each time `emitter` emits one of `events`; rejects
 * after `timeoutMs` naming `what`.
 */
function waitFor<T>(emitter: Emitter, events: readonly string[], check: () => T | undefined | null | false, what: string, timeoutMs = 20_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const first = check();
    if (first) return resolve(first);
    const listener = (): void => {
      const v = check();
      if (!v) return;
      finish();
      resolve(v);
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const finish = (): void => {
      clearTimeout(timer);
      for (const e of events) emitter.off(e, listener);
    };
    for (const e of events) emitter.on(e, listener);
  });
}

/** The SDK logs every request at debug level: keep warnings and errors. */
const quietLogger = {
  trace() {},
  debug() {},
  info() {},
  warn: (...msg: unknown[]) => console.warn('[js-sdk]', ...msg),
  error: (...msg: unknown[]) => console.error('[js-sdk]', ...msg),
  getChild: () => quietLogger,
};

export interface HearthTestGlobal {
  sdk: typeof sdk;
  waitFor: typeof waitFor;
  quietLogger: typeof quietLogger;
  ensureHomeserver: typeof ensureHomeserver;
  isControlled: typeof isControlled;
  requestPersistentStorage: typeof requestPersistentStorage;
  storageStatus: typeof storageStatus;
  /** The message transport to the worker (src/browser/sw-fetch.ts). */
  serviceWorkerFetch: typeof serviceWorkerFetch;
  /** Workloads of bench/browser.ts. */
  bench: typeof bench;
  /** Preact and the app's store hook, to test the views' store subscription (src/client/ui/hooks.ts). */
  ui: { h: typeof h; render: typeof render; useSnapshot: typeof useSnapshot };
  /** Storage write-rate probes in the page, on a scratch database (bench/browser.ts). */
  probe: { openIdbKv: typeof openIdbKv; measureRawBatchedWrites: typeof measureRawBatchedWrites; measureConcurrentWrites: typeof measureConcurrentWrites };
}

(globalThis as unknown as { hearthTest: HearthTestGlobal }).hearthTest = {
  sdk,
  waitFor,
  quietLogger,
  ensureHomeserver,
  isControlled,
  requestPersistentStorage,
  storageStatus,
  serviceWorkerFetch,
  probe: { openIdbKv, measureRawBatchedWrites, measureConcurrentWrites },
  bench,
  ui: { h, render, useSnapshot },
};
