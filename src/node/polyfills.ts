/**
 * Loaded first in Node (`node --import`, vitest setupFiles): Node 20 lacks Promise.withResolvers, which libp2p,
 * it-queue and matrix-js-sdk call, and a global WebSocket, which libp2p's WebSockets transport dials with.
 * Being the one module every Node entry loads first, it also gives the core its Node platform pieces
 * (node:crypto Ed25519).
 */
import { installNodeCrypto } from './crypto-backend.js';

if (typeof (Promise as { withResolvers?: unknown }).withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T>() {
      let resolve!: (value: T | PromiseLike<T>) => void;
      let reject!: (reason?: unknown) => void;
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}

// Node 20 has no global WebSocket (Node 22 does): libp2p's WebSockets transport dials with it.
if (typeof (globalThis as { WebSocket?: unknown }).WebSocket !== 'function') {
  const { WebSocket } = await import('ws');
  Object.defineProperty(globalThis, 'WebSocket', { configurable: true, writable: true, value: WebSocket });
}

installNodeCrypto();

export {};
